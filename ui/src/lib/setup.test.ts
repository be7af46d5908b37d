import { describe, expect, it } from "vitest";
import { setupSnippets } from "./setup";

describe("setupSnippets", () => {
  it("renders every setup the API returns, each once", () => {
    const snippets = setupSnippets({
      base_url: "http://carpool:7676",
      env: [
        { name: "ANTHROPIC_BASE_URL", value: "http://carpool:7676" },
        { name: "ANTHROPIC_AUTH_TOKEN", value: "cpk-1" },
      ],
      shell: "export A=1\n",
      claude_code_settings: "{}",
      python: "import anthropic\n",
      typescript: "import Anthropic\n",
    });
    expect(snippets.map((s) => s.label)).toEqual([
      "Claude Code setup",
      "Claude Code settings",
      "environment lines",
      "Python SDK",
      "TypeScript SDK",
    ]);
    expect(snippets[0]?.text).toBe("export A=1\n");
    expect(snippets[2]?.text).toBe("ANTHROPIC_BASE_URL=http://carpool:7676\nANTHROPIC_AUTH_TOKEN=cpk-1\n");
  });
});
