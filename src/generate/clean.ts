/**
 * Output cleaning for one chain step. Cleans what is safe to clean (wrapping quotes or backticks,
 * a "Here is …:" preamble, step numbering, surrounding whitespace, markup debris: tags such as
 * "< sentence>…</sentence>" or "<a>…</a>" and HTML escapes such as "&lt;" that the sentences
 * before it did not contain); reports what is not (empty,
 * several sentences on several lines, a refusal, a copy of an earlier sentence), so the generator
 * can retry once and otherwise truncate the chain with the reason recorded.
 */
export type CleanResult =
  | { ok: true; text: string; fixes: string[] }
  | { ok: false; reason: CleanFailure; text: string };

export type CleanFailure = "empty" | "multi-line" | "refusal" | "explanation" | "duplicate" | "truncated";

const REFUSAL =
  /^(i['’]m sorry|i am sorry|sorry,|i can(['’]t|not)|i won['’]t|i will not|i['’]m (not able|unable)|i am (not able|unable)|as an ai\b|as a language model|i apologi[sz]e)/i;
const PREAMBLE =
  /^(here(['’]s| is| are)\b[^:\n]*:|sure[,!.]?[^:\n]*:|certainly[,!.]?[^:\n]*:|okay[,!.]?[^:\n]*:|ok[,!.]?[^:\n]*:|(the )?(rewritten|new|next|revised) (sentence|version|step)[^:\n]*:|step \d+[^:\n]*:|sentence \d+[^:\n]*:)\s*/i;
const EXPLANATION_ONLY = /^(here(['’]s| is)|sure|certainly|this (rewrite|sentence|version)|i (changed|replaced|modified))\b/i;
const NUMBERING = /^(\(?\d{1,2}[.)]|[-*•])\s+/;
const WRAPPERS: [string, string][] = [
  ['"', '"'],
  ["'", "'"],
  ["“", "”"],
  ["‘", "’"],
  ["«", "»"],
  ["`", "`"],
  ["```", "```"],
  ["**", "**"],
  ["<sentence>", "</sentence>"],
];

/**
 * A tag as a model leaves it behind: `<name …>`, `</name>`, `<name/>`, plus our own delimiter
 * written with spaces ("< sentence>", "</ sentence >"). "a < b > c" is not a tag (space after <).
 */
const TAG = /<\/?[A-Za-z][\w:.-]*(?:\s+[\w:.-]+(?:\s*=\s*(?:"[^"]*"|'[^']*'|[^\s"'<>]+))?)*\s*\/?>|<\s*\/?\s*sentence\s*\/?\s*>/gi;
const ENTITY = /&(?:lt|gt|amp|quot|apos|nbsp|#\d{1,6}|#x[0-9a-f]{1,6});/gi;
const NAMED: Record<string, string> = { lt: "<", gt: ">", amp: "&", quot: '"', apos: "'", nbsp: " " };

function decodeEntity(e: string): string {
  const body = e.slice(1, -1).toLowerCase();
  if (body.startsWith("#x")) return safeCodePoint(parseInt(body.slice(2), 16), e);
  if (body.startsWith("#")) return safeCodePoint(parseInt(body.slice(1), 10), e);
  return NAMED[body] ?? e;
}
function safeCodePoint(cp: number, fallback: string): string {
  return Number.isInteger(cp) && cp >= 0x20 && cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff) && !(cp >= 0x7f && cp <= 0x9f) ? String.fromCodePoint(cp) : fallback;
}

/**
 * Removes markup debris that the sentences before this step did not have: HTML escapes are
 * decoded (repeatedly: "&amp;lt;" → "<"), then tags are removed, keeping any escape or tag that
 * an earlier sentence (the anchor, a previous step) holds verbatim — a seed about HTML keeps its
 * "<div>". What the model was shown round-trips; what it invented goes.
 */
export function stripMarkupDebris(text: string, earlier: readonly string[], fixes: string[]): string {
  const before = earlier.join("\n");
  let t = text;
  for (let i = 0; i < 4; i++) {
    const next = t.replace(ENTITY, (e) => (before.includes(e) ? e : decodeEntity(e)));
    if (next === t) break;
    t = next;
    if (!fixes.includes("decoded html escapes")) fixes.push("decoded html escapes");
  }
  // a delimiter the model garbled ("<sentenceAddRewrit…", maybe unclosed): the fragment up to a space or ">" goes
  const unclosed = t.replace(TAG, (tag) => (before.includes(tag) ? tag : " ")).replace(/<\s*\/?\s*sentence[^\s<>]*>?/gi, (frag) => (before.includes(frag) ? frag : " "));
  const stripped = unclosed;
  if (stripped !== t) {
    t = stripped.replace(/\s+([.,;:!?])/g, "$1").replace(/\s{2,}/g, " ").trim();
    fixes.push("removed markup");
  }
  return t;
}

export function normalizeForCompare(s: string): string {
  return s
    .toLowerCase()
    .normalize("NFKC")
    .replace(/[\s\p{P}]+/gu, " ")
    .trim();
}

function stripWrappers(text: string, fixes: string[]): string {
  let t = text.trim();
  let changed = true;
  while (changed) {
    changed = false;
    for (const [open, close] of WRAPPERS) {
      if (t.length >= open.length + close.length && t.startsWith(open) && t.endsWith(close)) {
        const inner = t.slice(open.length, t.length - close.length).trim();
        // only strip when the wrapper is not also used inside (a quoted phrase inside a sentence)
        if (open === close && open.length === 1 && inner.includes(open)) continue;
        t = inner;
        fixes.push(`unwrapped ${open}${close}`);
        changed = true;
      }
    }
  }
  return t;
}

export function cleanStep(raw: string, earlier: readonly string[], opts: { finishedByLength?: boolean } = {}): CleanResult {
  const fixes: string[] = [];
  let text = raw.replace(/\r\n?/g, "\n").trim();
  if (text.startsWith("```")) {
    text = text.replace(/^```[a-z]*\n?/i, "").replace(/\n?```$/, "").trim();
    fixes.push("removed code fence");
  }
  if (text === "") return { ok: false, reason: "empty", text: raw };

  let lines = text.split("\n").map((l) => l.trim()).filter((l) => l !== "");
  // A preamble line ("Here is the rewritten sentence:") followed by the sentence.
  if (lines.length > 1 && PREAMBLE.test(lines[0]!) && lines[0]!.replace(PREAMBLE, "").trim() === "") {
    lines = lines.slice(1);
    fixes.push("removed preamble line");
  }
  if (lines.length > 1) {
    // Trailing commentary after the sentence ("This keeps ..."), or several candidate sentences.
    return { ok: false, reason: "multi-line", text: raw };
  }
  text = lines[0] ?? "";
  if (REFUSAL.test(text)) return { ok: false, reason: "refusal", text: raw };
  if (PREAMBLE.test(text)) {
    const rest = text.replace(PREAMBLE, "").trim();
    if (rest === "") return { ok: false, reason: "explanation", text: raw };
    text = rest;
    fixes.push("removed preamble");
  }
  if (NUMBERING.test(text)) {
    text = text.replace(NUMBERING, "");
    fixes.push("removed numbering");
  }
  text = stripWrappers(text, fixes);
  text = stripMarkupDebris(text, earlier, fixes);
  text = stripWrappers(text, fixes);
  if (text === "") return { ok: false, reason: "empty", text: raw };
  if (REFUSAL.test(text)) return { ok: false, reason: "refusal", text: raw };
  if (EXPLANATION_ONLY.test(text) && /:\s*$/.test(text)) return { ok: false, reason: "explanation", text: raw };
  if (opts.finishedByLength) return { ok: false, reason: "truncated", text: raw };
  const norm = normalizeForCompare(text);
  if (earlier.some((e) => normalizeForCompare(e) === norm)) return { ok: false, reason: "duplicate", text: raw };
  return { ok: true, text, fixes };
}
