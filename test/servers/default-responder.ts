/**
 * The loopback servers' default behaviour: a plausible, deterministic rewrite of the sentence the
 * prompt asks about, so generator runs against the servers produce real-looking chains.
 *
 * - Source sentence: the last `<tag>…</tag>` content or numbered line ("3. …") in the last user
 *   message (so with the stepwise prompt: the last step of the chain so far, else the anchor);
 *   without either, the last non-empty line.
 * - Stepwise: driftSentence(anchor, k) for "step k" in the prompt (else k = sentences shown), i.e.
 *   the anchor with k words changed; never equal to a sentence already in the prompt; one line.
 * - Ladder (a JSON schema is requested): {"<array property>": [driftSentence(anchor, 1..N)]}. N = the array's maxItems/minItems in the schema, else "exactly N"
 *   / "N sentences|steps|rewrites" in the prompt, else 8.
 */
import type { Reply } from "./common.ts";

export interface RequestView {
  model: string;
  /** All messages in order, the system prompt as role "system". */
  messages: Array<{ role: string; content: string }>;
  maxTokens: number | undefined;
  /** The JSON schema of a structured-output request (OpenAI response_format / Anthropic forced tool). */
  schema: Record<string, unknown> | undefined;
}

export function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

const LEXICON = [
  "quietly", "yesterday", "orange", "mountain", "engine", "library", "winter", "festival", "river",
  "ancient", "electric", "garden", "market", "violin", "harbor", "desert", "planet", "kitchen",
  "soldier", "poem", "storm", "island", "coffee", "machine", "forest", "letter", "bridge", "circus",
  "signal", "castle", "copper", "meadow", "lantern", "glacier", "theatre", "compass",
];

const STOPWORDS = new Set(["the", "and", "for", "but", "with", "was", "are", "its", "this", "that", "from", "into", "onto"]);
function isContentWord(w: string): boolean {
  const core = w.replace(/[^\p{L}\p{N}]/gu, "").toLowerCase();
  return core.length >= 3 && !STOPWORDS.has(core);
}

function clean(s: string): string {
  return s.replace(/[\r\n]+/g, " ").replace(/["'`<>]/g, "").replace(/\s+/g, " ").trim();
}

/** Sentences the prompt shows, in order of appearance (tag contents and numbered lines). */
export function promptSentences(text: string): string[] {
  const found: Array<{ at: number; s: string }> = [];
  for (const m of text.matchAll(/<([a-zA-Z_][\w-]*)[^>]*>([\s\S]*?)<\/\1>/g)) {
    const s = clean(m[2] ?? "");
    if (s) found.push({ at: m.index ?? 0, s });
  }
  for (const m of text.matchAll(/^[ \t]*\d+[.)][ \t]+(.+)$/gm)) {
    const s = clean(m[1] ?? "");
    if (s) found.push({ at: m.index ?? 0, s });
  }
  found.sort((a, b) => a.at - b.at);
  return found.map((f) => f.s);
}

export function sourceSentence(userText: string): string {
  const all = promptSentences(userText);
  const last = all[all.length - 1];
  if (last) return last;
  const lines = userText.split(/\n/).map(clean).filter((l) => l !== "");
  return lines[lines.length - 1] ?? "A sentence.";
}

/** Changes one word of `source` (chosen by `salt`), avoiding every sentence in `avoid`. */
export function rewriteOnce(source: string, salt: number, avoid: ReadonlySet<string>): string {
  const base = clean(source) || "A sentence.";
  const words = base.split(" ");
  const content = words.map((w, i) => ({ w, i })).filter(({ w }) => w.replace(/\W/g, "").length > 3);
  const pool = content.length > 0 ? content : words.map((w, i) => ({ w, i }));
  for (let attempt = 0; attempt < LEXICON.length + 4; attempt++) {
    const s = (salt + attempt * 2654435761) >>> 0;
    const pick = pool[s % pool.length]!;
    const replacement = LEXICON[(s >>> 7) % LEXICON.length]!;
    const trailing = /[.,;:!?]+$/.exec(pick.w)?.[0] ?? "";
    const out = [...words];
    out[pick.i] = replacement + trailing;
    let candidate = out.join(" ");
    if (attempt >= LEXICON.length) candidate = candidate.replace(/[.!?]*$/, "") + ` near the ${replacement}.`;
    if (candidate !== base && !avoid.has(candidate)) return candidate;
  }
  return base.replace(/[.!?]*$/, "") + ` again ${salt % 1000}.`;
}

/** N for a ladder: schema maxItems/minItems of the array property, else the prompt, else 8. */
export function ladderSize(schema: Record<string, unknown> | undefined, promptText: string): number {
  const prop = schema ? arrayProperty(schema) : undefined;
  const items = prop?.schema as { maxItems?: unknown; minItems?: unknown } | undefined;
  for (const v of [items?.maxItems, items?.minItems]) if (typeof v === "number" && v > 0) return v;
  const m = /exactly\s+(\d+)/i.exec(promptText) ?? /(\d+)\s+(?:sentences|steps|rewrites)\b/i.exec(promptText);
  if (m) return Math.max(1, Math.min(256, Number(m[1])));
  return 8;
}

/** The first array-typed property of an object schema (the ladder's steps). */
export function arrayProperty(schema: Record<string, unknown>): { name: string; schema: Record<string, unknown> } | undefined {
  const props = schema["properties"] as Record<string, Record<string, unknown>> | undefined;
  if (!props) return undefined;
  for (const [name, s] of Object.entries(props)) if (s && s["type"] === "array") return { name, schema: s };
  return undefined;
}

/**
 * The anchor moved k steps: the first k content words (in a hash-chosen order) replaced by lexicon
 * words; beyond the number of content words, " near the <word>" phrases are appended. Changes
 * accumulate, so similarity to the anchor falls step by step, and different k give different text.
 */
export function driftSentence(anchor: string, k: number, salt: number = fnv1a(anchor)): string {
  const base = clean(anchor) || "A sentence.";
  const words = base.split(" ");
  const content = words
    .map((w, i) => ({ w, i, key: fnv1a(`${salt}:${i}`) }))
    .filter(({ w }) => isContentWord(w))
    .sort((a, b) => a.key - b.key);
  const out = [...words];
  const n = Math.min(k, content.length);
  for (let j = 0; j < n; j++) {
    const c = content[j]!;
    const trailing = /[.,;:!?]+$/.exec(c.w)?.[0] ?? "";
    out[c.i] = LEXICON[(salt + j * 7919) % LEXICON.length]! + trailing;
  }
  let text = out.join(" ");
  for (let j = n; j < k; j++) text = text.replace(/[.!?]*$/, "") + ` near the ${LEXICON[(salt + j * 104729) % LEXICON.length]}.`;
  return text;
}

export function defaultReply(view: RequestView): Reply {
  const users = view.messages.filter((m) => m.role === "user");
  const userText = users[users.length - 1]?.content ?? "";
  const shown = promptSentences(userText);
  const anchor = shown[0] ?? sourceSentence(userText);
  if (view.schema) {
    const n = ladderSize(view.schema, userText);
    const name = arrayProperty(view.schema)?.name ?? "steps";
    const steps: string[] = [];
    for (let i = 1; i <= n; i++) steps.push(driftSentence(anchor, i));
    return { type: "json", value: { [name]: steps } };
  }
  // Stepwise: "step k" in the prompt, else one more than the steps shown after the anchor.
  const stepMatch = /\bstep\s+(\d+)/i.exec(userText);
  const k = stepMatch ? Number(stepMatch[1]) : Math.max(1, shown.length);
  let text = driftSentence(anchor, k);
  const seen = new Set(shown);
  if (seen.has(text)) text = rewriteOnce(text, fnv1a(userText), seen);
  return { type: "text", text };
}

/**
 * Cuts `text` so that `count(result) <= maxTokens`: whole words while possible, else characters.
 * Returns the text unchanged (truncated=false) when it already fits.
 */
export function truncateToTokens(
  text: string,
  maxTokens: number | undefined,
  count: (t: string) => number,
): { text: string; truncated: boolean } {
  if (maxTokens === undefined || count(text) <= maxTokens) return { text, truncated: false };
  const words = text.split(/(?<=\s)/);
  let lo = 0;
  let hi = words.length;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (count(words.slice(0, mid).join("")) <= maxTokens) lo = mid;
    else hi = mid - 1;
  }
  if (lo > 0) return { text: words.slice(0, lo).join("").trimEnd(), truncated: true };
  let clo = 0;
  let chi = text.length;
  while (clo < chi) {
    const mid = Math.ceil((clo + chi) / 2);
    if (count(text.slice(0, mid)) <= maxTokens) clo = mid;
    else chi = mid - 1;
  }
  return { text: text.slice(0, clo), truncated: true };
}
