/**
 * Sentence-level text handling for seed extraction: inline Markdown stripping, sentence splitting
 * with Intl.Segmenter (mapping each sentence back to its source line), and the filters that keep
 * boilerplate, code, tables and mostly-non-letter text out of the seeds.
 */

/** A paragraph of running text and the source line each of its characters came from. */
export interface Paragraph {
  text: string;
  /** Ascending [charOffset, line] pairs: text from charOffset on starts at that line. */
  lines: [number, number][];
}

/** Builds a paragraph from consecutive source lines (joined with single spaces). */
export class ParagraphBuilder {
  private parts: string[] = [];
  private lines: [number, number][] = [];
  private length = 0;

  add(text: string, line: number): void {
    const t = text.trim();
    if (t === "") return;
    if (this.parts.length > 0) {
      this.parts.push(" ");
      this.length += 1;
    }
    this.lines.push([this.length, line]);
    this.parts.push(t);
    this.length += t.length;
  }

  get empty(): boolean {
    return this.parts.length === 0;
  }

  /** The paragraph so far (undefined when empty); the builder starts over. */
  take(): Paragraph | undefined {
    if (this.parts.length === 0) return undefined;
    const p = { text: this.parts.join(""), lines: this.lines };
    this.parts = [];
    this.lines = [];
    this.length = 0;
    return p;
  }
}

/** The source line of a character offset in a paragraph. */
export function lineAt(p: Paragraph, offset: number): number {
  let lo = 0;
  let hi = p.lines.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (p.lines[mid]![0] <= offset) lo = mid;
    else hi = mid - 1;
  }
  return p.lines[lo]?.[1] ?? 1;
}

const segmenters = new Map<string, Intl.Segmenter>();

/** Intl.Segmenter sentence segmenter for a BCP-47 locale (cached); a bad locale names the flag. */
export function sentenceSegmenter(lang: string): Intl.Segmenter {
  let s = segmenters.get(lang);
  if (!s) {
    s = new Intl.Segmenter(lang, { granularity: "sentence" });
    segmenters.set(lang, s);
  }
  return s;
}

/** Splits a paragraph into trimmed sentences, each with the line it starts on. */
export function* splitSentences(p: Paragraph, segmenter: Intl.Segmenter): Generator<{ text: string; line: number }> {
  for (const seg of segmenter.segment(p.text)) {
    const raw = seg.segment;
    const lead = raw.length - raw.trimStart().length;
    const text = raw.trim();
    if (text === "") continue;
    yield { text, line: lineAt(p, seg.index + lead) };
  }
}

/** Inline Markdown → plain text: images dropped, links keep their text, emphasis and code marks removed. */
export function stripInlineMarkdown(s: string): string {
  return s
    .replace(/<!--.*?-->/g, " ")
    .replace(/!\[[^\]]*\]\([^)]*\)/g, " ")
    .replace(/\[([^\]]*)\]\([^)]*\)/g, "$1")
    .replace(/\[([^\]]*)\]\[[^\]]*\]/g, "$1")
    .replace(/<(https?:\/\/[^>]+)>/g, " ")
    .replace(/<\/?[A-Za-z][^>]*>/g, " ")
    .replace(/`([^`]*)`/g, "$1")
    .replace(/(\*\*|__)(?=\S)(.+?)(?<=\S)\1/g, "$2")
    .replace(/(^|[\s(])[*_](?=\S)(.+?)(?<=\S)[*_](?=[\s).,;:!?]|$)/g, "$1$2")
    .replace(/~~(.+?)~~/g, "$1")
    .replace(/\s+/g, " ")
    .trim();
}

export type FilterReason = "too_short" | "too_long" | "boilerplate" | "code" | "table" | "non_letter";

export interface SentenceFilterOptions {
  minWords: number;
  maxWords: number;
  /** Minimum share of letters among non-space characters (default 0.6). */
  minLetterRatio?: number;
}

const BOILERPLATE = [
  /\ball rights reserved\b/i,
  /\bcopyright\b|©|\(c\)\s*\d{4}/i,
  /\b(cookie|cookies)\b.*\b(use|accept|policy|consent)\b|\b(accept|use)\b.*\bcookies\b/i,
  /\bprivacy policy\b|\bterms (of|and) (use|service|conditions)\b/i,
  /\b(subscribe|sign up|log ?in|sign in)\b.*\b(newsletter|account|updates|now|here|today)\b/i,
  /\bclick here\b|\bread more\b|\bskip to (main )?content\b|\bback to top\b|\bpowered by\b/i,
  /\bpage \d+ of \d+\b/i,
  /\b(previous|next) (page|post|article)\b/i,
  /\bshare (this|on) (article|page|post|facebook|twitter|x|linkedin)\b/i,
  /\bthis (page|site|website) (uses|was last (updated|modified|edited))\b/i,
];

const CODE = [
  /[;{}]\s*$/,
  /^\s*(import|from|export|def|class|function|const|let|var|return|public|private|#include|package|using)\b.*[=({;:.]/,
  /=>|::|===|!==|&&|\|\||\+\+|\+=|-=|<\/?\w+>/,
  /\b\w+\.\w+\(.*\)/,
  /\b\w+\([^)]*\)\s*[;{]?\s*$/,
  /^\s*[$>#]\s+\w+/,
  /\b[a-z]+_[a-z_]+\b.*[=(]|\b[a-z]+[A-Z]\w*\(/,
];

/** Why a sentence is not a seed candidate, or undefined when it is one. */
export function filterSentence(text: string, opts: SentenceFilterOptions): FilterReason | undefined {
  const nonSpace = text.replace(/\s+/g, "");
  if (nonSpace.length === 0) return "non_letter";
  if ((text.match(/\|/g)?.length ?? 0) >= 2 || /\t\S+\t/.test(text) || /-{3,}\s*\|?\s*-{3,}/.test(text)) return "table";
  const letters = nonSpace.match(/\p{L}/gu)?.length ?? 0;
  if (letters / nonSpace.length < (opts.minLetterRatio ?? 0.6)) {
    return CODE.some((r) => r.test(text)) ? "code" : "non_letter";
  }
  if (CODE.some((r) => r.test(text))) return "code";
  if (BOILERPLATE.some((r) => r.test(text))) return "boilerplate";
  const words = text.split(/\s+/).filter((w) => /\p{L}|\p{N}/u.test(w)).length;
  if (words < opts.minWords) return "too_short";
  if (words > opts.maxWords) return "too_long";
  return undefined;
}

/** The key exact duplicates share: case, punctuation and spacing do not matter. */
export function dedupKey(text: string): string {
  return text
    .normalize("NFKC")
    .toLowerCase()
    .replace(/[^\p{L}\p{N}]+/gu, " ")
    .trim();
}
