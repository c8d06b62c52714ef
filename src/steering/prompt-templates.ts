import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { createHash } from "node:crypto";
import { ConfigError } from "../errors.ts";
import type { ChatMessage } from "../llm/types.ts";
import { PROJECT_ROOT } from "../config/paths.ts";

/**
 * Versioned prompt templates: one file per template and version, `prompts/<name>.v<version>.md`.
 * A file holds `## system` and `## user` sections (and optionally `## assistant` for a prefill);
 * `{{name}}` placeholders are filled from a values object. Records name the template and version,
 * so a changed prompt gets a new file instead of silently changing old runs' meaning.
 *
 * Seed text is always inserted between <sentence> tags by the caller via `delimit()` (which only
 * neutralises a <sentence> tag inside the text), so instructions inside a seed are treated as text.
 */
export interface PromptTemplate {
  name: string;
  version: number;
  /** sha-256 prefix of the file, recorded in run.json so resume can refuse a changed template. */
  hash: string;
  sections: { role: ChatMessage["role"]; text: string }[];
}

export const PROMPTS_DIR = join(PROJECT_ROOT, "prompts");

const cache = new Map<string, PromptTemplate>();

export function loadPromptTemplate(name: string, version?: number, dir = PROMPTS_DIR): PromptTemplate {
  const v = version ?? latestVersion(name, dir);
  const key = `${dir}::${name}@${v}`;
  const hit = cache.get(key);
  if (hit) return hit;
  const file = join(dir, `${name}.v${v}.md`);
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch {
    throw new ConfigError(`prompt template "${name}" version ${v} not found (expected ${file})`);
  }
  const sections: PromptTemplate["sections"] = [];
  let current: { role: ChatMessage["role"]; lines: string[] } | undefined;
  for (const line of text.split("\n")) {
    const m = /^## (system|user|assistant)\s*$/.exec(line);
    if (m) {
      if (current) sections.push({ role: current.role, text: current.lines.join("\n").trim() });
      current = { role: m[1] as ChatMessage["role"], lines: [] };
    } else if (current) current.lines.push(line);
  }
  if (current) sections.push({ role: current.role, text: current.lines.join("\n").trim() });
  if (!sections.some((s) => s.role === "user")) {
    throw new ConfigError(`prompt template has no "## user" section`, { location: { file } });
  }
  const tpl: PromptTemplate = { name, version: v, hash: createHash("sha256").update(text).digest("hex").slice(0, 16), sections };
  cache.set(key, tpl);
  return tpl;
}

function latestVersion(name: string, dir: string): number {
  let best = 0;
  let files: string[] = [];
  try {
    files = readdirSync(dir);
  } catch {
    throw new ConfigError(`prompts directory not found: ${dir}`);
  }
  for (const f of files) {
    const m = new RegExp(`^${name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\\.v(\\d+)\\.md$`).exec(f);
    if (m) best = Math.max(best, Number(m[1]));
  }
  if (best === 0) throw new ConfigError(`no prompt template named "${name}" in ${dir}`);
  return best;
}

/** Fills `{{key}}` placeholders; an unknown placeholder is an error (a typo must not ship). */
export function renderTemplate(tpl: PromptTemplate, values: Record<string, string | number>): ChatMessage[] {
  return tpl.sections.map((s) => ({
    role: s.role,
    content: s.text.replace(/\{\{(\w+)\}\}/g, (_, k: string) => {
      const v = values[k];
      if (v === undefined) throw new ConfigError(`prompt template ${tpl.name}.v${tpl.version} uses {{${k}}} but no value was given`);
      return String(v);
    }),
  }));
}

/**
 * Prepares a seed or generated sentence for insertion between `<sentence>` tags (or a reranker's
 * `<query>` / `<passage>` tags). The text goes in
 * as it is stored — no XML escaping: a model copies what it sees, so an escaped `&lt;` came back
 * as `&lt;`, was escaped again to `&amp;lt;` in the next prompt, and the chain accumulated escapes
 * step after step. What the model sees and what is stored must round-trip. Only a delimiter tag
 * (`<sentence>`, `</passage>`, …) inside the text, which could end the data block early, is
 * neutralised with the look-alike brackets ‹ ›.
 */
export function delimit(text: string): string {
  return text.replace(/<(\s*\/?\s*(?:sentence|passage|query)\b[^<>]*)>/gi, "‹$1›");
}
