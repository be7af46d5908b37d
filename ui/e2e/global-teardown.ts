import { rmSync } from "node:fs";

export default function globalTeardown(): void {
  const home = process.env.CARPOOL_E2E_HOME;
  if (home) rmSync(home, { recursive: true, force: true });
}
