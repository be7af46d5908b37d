// A new token's client setups, in the order a person reaches for them, each with the
// label its copy button is named after ("Copy Claude Code setup"). Two groups: Claude's
// (Claude Code, the Anthropic SDKs) and OpenAI's (Codex CLI, the OpenAI SDKs); the group
// of the provider the user is bound to comes first.
import type { Schemas } from "./api/client";

export type Provider = Schemas["Provider"];

export interface SetupSnippet {
  label: string;
  /** Where it goes, in one line. */
  hint: string;
  text: string;
}

export interface SetupGroup {
  provider: Provider;
  title: string;
  /** Whether the user is bound to an account or pool of this provider. */
  bound: boolean;
  snippets: SetupSnippet[];
}

const envLines = (env: Schemas["EnvVar"][]) => env.map((v) => `${v.name}=${v.value}`).join("\n") + "\n";

/** Claude Code's and the Anthropic SDKs' setups. */
export function claudeSnippets(setup: Schemas["ClientSetup"]): SetupSnippet[] {
  return [
    { label: "Claude Code setup", hint: "In the shell that runs claude, then run claude.", text: setup.shell },
    {
      label: "Claude Code settings",
      hint: "Or for every session: the env block of ~/.claude/settings.json.",
      text: setup.claude_code_settings,
    },
    {
      label: "Claude environment lines",
      hint: "The same variables as NAME=value lines, for a .env file or a service.",
      text: envLines(setup.env),
    },
    { label: "Anthropic Python SDK", hint: "pip install anthropic", text: setup.python },
    { label: "Anthropic TypeScript SDK", hint: "npm install @anthropic-ai/sdk", text: setup.typescript },
  ];
}

/** Codex CLI's and the OpenAI SDKs' setups. */
export function openaiSnippets(setup: Schemas["ClientSetup"]): SetupSnippet[] {
  return [
    {
      label: "Codex setup",
      hint: "In ~/.codex/config.toml: model_provider goes above the file's first [table]. Codex reads the token from CARPOOL_TOKEN (next).",
      text: setup.codex_config,
    },
    { label: "Codex token line", hint: "In the shell that runs codex, then run codex.", text: setup.codex_shell },
    {
      label: "OpenAI environment lines",
      hint: "OPENAI_BASE_URL and OPENAI_API_KEY, read by the OpenAI SDKs and many tools, for a .env file or a service.",
      text: envLines(setup.openai_env),
    },
    { label: "OpenAI Python SDK", hint: "pip install openai", text: setup.openai_python },
    { label: "OpenAI TypeScript SDK", hint: "npm install openai", text: setup.openai_typescript },
  ];
}

/**
 * Both groups: Claude's first when the user is bound to Claude (or to nothing known),
 * OpenAI's first when they are bound only to OpenAI.
 */
export function setupGroups(setup: Schemas["ClientSetup"], bindings: Pick<Schemas["Binding"], "provider">[]): SetupGroup[] {
  const has = (p: Provider) => bindings.some((b) => b.provider === p);
  const claude: SetupGroup = {
    provider: "anthropic",
    title: "Claude Code and the Anthropic SDKs",
    bound: has("anthropic"),
    snippets: claudeSnippets(setup),
  };
  const openai: SetupGroup = {
    provider: "openai",
    title: "Codex and the OpenAI SDKs",
    bound: has("openai"),
    snippets: openaiSnippets(setup),
  };
  return openai.bound && !claude.bound ? [openai, claude] : [claude, openai];
}

/** Every snippet, in the order of [`setupGroups`]. */
export function setupSnippets(setup: Schemas["ClientSetup"], bindings: Pick<Schemas["Binding"], "provider">[] = []): SetupSnippet[] {
  return setupGroups(setup, bindings).flatMap((g) => g.snippets);
}

export const PROVIDER_LABEL: Record<Provider, string> = { anthropic: "Claude", openai: "OpenAI" };
