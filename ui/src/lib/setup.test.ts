import { describe, expect, it } from "vitest";
import type { Schemas } from "./api/client";
import { setupGroups, setupSnippets } from "./setup";

const setup: Schemas["ClientSetup"] = {
  base_url: "http://carpool:7676",
  env: [
    { name: "ANTHROPIC_BASE_URL", value: "http://carpool:7676" },
    { name: "ANTHROPIC_AUTH_TOKEN", value: "cpk-1" },
  ],
  shell: "export A=1\n",
  claude_code_settings: "{}",
  python: "import anthropic\n",
  typescript: "import Anthropic\n",
  openai_base_url: "http://carpool:7676/v1",
  codex_config: 'model_provider = "carpool"\n',
  codex_shell: "export CARPOOL_TOKEN=cpk-1\n",
  openai_env: [
    { name: "OPENAI_BASE_URL", value: "http://carpool:7676/v1" },
    { name: "OPENAI_API_KEY", value: "cpk-1" },
  ],
  openai_python: "from openai import OpenAI\n",
  openai_typescript: "import OpenAI\n",
};

const CLAUDE = ["Claude Code setup", "Claude Code settings", "Claude environment lines", "Anthropic Python SDK", "Anthropic TypeScript SDK"];
const OPENAI = ["Codex setup", "Codex token line", "OpenAI environment lines", "OpenAI Python SDK", "OpenAI TypeScript SDK"];

describe("setupSnippets", () => {
  it("renders every setup the API returns, each once, Claude's first for a Claude user", () => {
    const snippets = setupSnippets(setup, [{ provider: "anthropic" }]);
    expect(snippets.map((s) => s.label)).toEqual([...CLAUDE, ...OPENAI]);
    expect(snippets[0]?.text).toBe("export A=1\n");
    expect(snippets[2]?.text).toBe("ANTHROPIC_BASE_URL=http://carpool:7676\nANTHROPIC_AUTH_TOKEN=cpk-1\n");
    expect(snippets[5]?.text).toBe('model_provider = "carpool"\n');
    expect(snippets[7]?.text).toBe("OPENAI_BASE_URL=http://carpool:7676/v1\nOPENAI_API_KEY=cpk-1\n");
    expect(new Set(snippets.map((s) => s.text)).size).toBe(snippets.length);
  });

  it("puts Codex first only for a user bound only to OpenAI", () => {
    expect(setupSnippets(setup, [{ provider: "openai" }]).map((s) => s.label)).toEqual([...OPENAI, ...CLAUDE]);
    expect(setupSnippets(setup, [{ provider: "anthropic" }, { provider: "openai" }])[0]?.label).toBe("Claude Code setup");
    expect(setupSnippets(setup, [])[0]?.label).toBe("Claude Code setup");
  });

  it("says which groups the user is bound to", () => {
    const groups = setupGroups(setup, [{ provider: "openai" }]);
    expect(groups.map((g) => [g.provider, g.bound])).toEqual([
      ["openai", true],
      ["anthropic", false],
    ]);
  });
});
