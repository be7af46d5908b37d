// Chart.js with only the parts the usage charts draw (stacked bars and areas, their
// scales, tooltip and legend): the rest is shaken out. Imported lazily by UsageChart, so
// the sign-in page and the pages without a chart do not load it.
import {
  BarController,
  BarElement,
  CategoryScale,
  Chart,
  Filler,
  Legend,
  LinearScale,
  LineController,
  LineElement,
  PointElement,
  Tooltip,
} from "chart.js";

Chart.register(BarController, BarElement, LineController, LineElement, PointElement, Filler, CategoryScale, LinearScale, Tooltip, Legend);

export { Chart };
