import { loadPolyfills } from "./lib/polyfills";

await loadPolyfills();
