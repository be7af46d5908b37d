// Fails the run at once, with what to do, when a prerequisite is missing: better than 40
// tests timing out one after the other.
import { accessSync, constants } from "node:fs";
import { spawnSync } from "node:child_process";
import { carpoolBin } from "../scripts/stack.mjs";
import { chromiumPath } from "../playwright.config";
import { python } from "./fixtures";

export default function globalSetup(): void {
  const missing: string[] = [];
  try {
    accessSync(chromiumPath, constants.X_OK);
  } catch {
    missing.push(
      `no Chromium at ${chromiumPath}: install Debian's \`chromium\` package, or set CARPOOL_CHROMIUM to a Chrome/Chromium binary (macOS: "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome")`,
    );
  }
  try {
    accessSync(carpoolBin(), constants.X_OK);
  } catch {
    missing.push(`no carpool binary at ${carpoolBin()}: run \`cargo build --bin carpool\`, or set CARPOOL_BIN`);
  }
  const sdk = spawnSync(python(), ["-c", "import importlib.util, sys; sys.exit(importlib.util.find_spec('anthropic') is None)"], { encoding: "utf8" });
  if (sdk.status !== 0) {
    missing.push(
      `${python()} has no anthropic SDK${sdk.error ? ` (${sdk.error.message})` : ""}: set CARPOOL_TEST_PYTHON to a Python with tests/clients/requirements.txt installed (scripts/test.sh builds one in .test-deps/venv)`,
    );
  }
  if (missing.length > 0) throw new Error(`e2e prerequisites missing:\n- ${missing.join("\n- ")}`);
}
