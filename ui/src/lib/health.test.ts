import { describe, expect, it } from "vitest";
import { health } from "./health";
import type { Schemas } from "./api/client";

type State = Schemas["AccountState"];
const ready: State = { state: "ready" };
const limited = { state: "rate_limited", until: null } as unknown as State;
const accounts = (...states: State[]) => ({ accounts: states.map((state) => ({ state }) as Schemas["AccountStatus"]) });

describe("health", () => {
  it("is green when every account is ready", () => {
    expect(health(accounts(ready, ready))).toEqual({ tone: "ok", label: "Carpool is healthy: all 2 accounts ready" });
    expect(health(accounts(ready)).label).toBe("Carpool is healthy: its account is ready");
  });
  it("is amber when some are not", () => {
    expect(health(accounts(ready, limited, ready))).toEqual({ tone: "warn", label: "2 of 3 accounts ready: see the overview" });
  });
  it("is red when none is, or there is none", () => {
    expect(health(accounts(limited)).tone).toBe("bad");
    expect(health(accounts())).toMatchObject({ tone: "bad", label: expect.stringContaining("no accounts yet") });
  });
});
