import { describe, expect, it } from "vitest";
import { describeState } from "./status";

const now = new Date("2026-12-07T12:00:00Z");
const at = (minutes: number) => Math.floor(now.getTime() / 1000) + minutes * 60;

describe("describeState", () => {
  it("says why a paused account waits and until when", () => {
    const text = describeState({ state: "paused_by_reserve", window: "five_hour", percent: 81, cap: 80, until: at(134) }, now);
    expect(text.label).toBe("Paused by reserve");
    expect(text.tone).toBe("warn");
    expect(text.detail).toContain("5-hour window is at 81 %");
    expect(text.detail).toContain("Back in 2 hr, 14 min.");
  });

  it("tells the owner what to do when a login is gone", () => {
    expect(describeState({ state: "file_missing", path: "/home/a/.claude/.credentials.json" }, now)).toMatchObject({
      label: "Not logged in",
      tone: "bad",
    });
    expect(describeState({ state: "login_expired", reason: "The refresh token was refused." }, now).detail).toContain("Log in again");
  });

  it("counts a due circuit probe as due", () => {
    expect(describeState({ state: "circuit_open", until: at(-1), failures: 5 }, now).detail).toContain("The next request tries it again.");
    expect(describeState({ state: "circuit_open", until: at(3), failures: 5 }, now).detail).toContain("Tried again in 3 min.");
  });
});
