// A new token's client setups, in the order a person reaches for them, each with the
// label its copy button is named after ("Copy Claude Code setup").
import type { Schemas } from "./api/client";

export interface SetupSnippet {
  label: string;
  /** Where it goes, in one line. */
  hint: string;
  text: string;
}

export function setupSnippets(setup: Schemas["ClientSetup"]): SetupSnippet[] {
  return [
    { label: "Claude Code setup", hint: "In the shell that runs claude, then run claude.", text: setup.shell },
    {
      label: "Claude Code settings",
      hint: "Or for every session: the env block of ~/.claude/settings.json.",
      text: setup.claude_code_settings,
    },
    {
      label: "environment lines",
      hint: "The same variables as NAME=value lines, for a .env file or a service.",
      text: setup.env.map((v) => `${v.name}=${v.value}`).join("\n") + "\n",
    },
    { label: "Python SDK", hint: "pip install anthropic", text: setup.python },
    { label: "TypeScript SDK", hint: "npm install @anthropic-ai/sdk", text: setup.typescript },
  ];
}
