import { afterEach, describe, expect, it, vi } from "vitest";
import { api } from "./api/client";
import { changedFields, fieldOf, movedTo, said, saveSettings } from "./settings";

afterEach(() => vi.restoreAllMocks());

describe("fieldOf", () => {
  it("finds the field a refusal names", () => {
    expect(fieldOf('timeouts.connect: `banana` is not a duration; write it like "30s"')).toEqual({
      field: "timeouts.connect",
      problem: '`banana` is not a duration; write it like "30s"',
    });
    expect(fieldOf("max_body_bytes: must be greater than 0")).toEqual({ field: "max_body_bytes", problem: "must be greater than 0" });
    expect(fieldOf("prices.my-model: missing field `output` at line 40 column 5").field).toBe("prices.my-model");
    expect(fieldOf("headers.x-foo: must be a string").field).toBe("headers.x-foo");
  });

  it("names no field when the message does not start with one", () => {
    const message = "the running Carpool refused it: cannot listen on 0.0.0.0:41571 (`listen`/`listen_port`): Address already in use";
    expect(fieldOf(message)).toEqual({ field: null, problem: message });
    expect(fieldOf("Carpool runs without a config file").field).toBeNull();
  });
});

describe("said", () => {
  it("says what applied now and what waits for a restart", () => {
    expect(said({ applied: ["timeouts"], needs_restart: [] })).toBe("Saved and applied now (timeouts).");
    expect(said({ applied: [], needs_restart: ["listen"] })).toBe("Saved; listen takes effect when Carpool restarts.");
    expect(said({ applied: ["headers", "prices"], needs_restart: ["a", "b"] })).toBe(
      "Saved and applied now (headers and prices). Saved; a and b take effect when Carpool restarts.",
    );
    expect(said({ applied: [], needs_restart: [] })).toBe("Nothing changed: that is how it was.");
  });
});

describe("movedTo", () => {
  const here = { protocol: "http:", hostname: "box.lan" };
  it("is the new address, or this page's host for a wildcard", () => {
    expect(movedTo("127.0.0.1", 7000, here)).toBe("http://127.0.0.1:7000/");
    expect(movedTo("0.0.0.0", 7000, here)).toBe("http://box.lan:7000/");
    expect(movedTo("::1", 7000, here)).toBe("http://[::1]:7000/");
  });
});

describe("changedFields", () => {
  it("keeps only what differs", () => {
    expect(changedFields({ a: "1", b: "2" }, { a: "1", b: "3" })).toEqual({ b: "2" });
    expect(changedFields({ a: "1" }, { a: "1" })).toEqual({});
  });
});

describe("saveSettings", () => {
  it("says what the answer says", async () => {
    vi.spyOn(api, "PATCH").mockResolvedValue({
      data: { settings: {} as never, applied: ["timeouts"], needs_restart: [] },
      response: new Response("{}", { status: 200 }),
    } as never);
    await expect(saveSettings({ timeouts: { connect: "5s" } })).resolves.toMatchObject({ ok: true, said: "Saved and applied now (timeouts)." });
    expect(api.PATCH).toHaveBeenCalledWith("/api/v1/settings", { body: { timeouts: { connect: "5s" } } });
  });

  it("names the field of a 422, and not of other refusals", async () => {
    const refuse = (status: number, message: string) =>
      vi.spyOn(api, "PATCH").mockResolvedValue({
        error: { error: { code: "invalid", message } },
        response: new Response("{}", { status }),
      } as never);
    refuse(422, "max_body_bytes: must be greater than 0");
    await expect(saveSettings({ max_body_bytes: 0 })).resolves.toMatchObject({ ok: false, field: "max_body_bytes", problem: "must be greater than 0" });
    refuse(409, "config.json: changed on disk since Carpool read it");
    await expect(saveSettings({ max_body_bytes: 1 })).resolves.toMatchObject({ ok: false, field: null, problem: "config.json: changed on disk since Carpool read it" });
  });
});
