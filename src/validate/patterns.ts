import { readdirSync } from "node:fs";
import { ConfigError } from "../errors.ts";
import { loadPromptTemplate, PROMPTS_DIR } from "../steering/prompt-templates.ts";

/**
 * Refusal and boilerplate patterns: text an LLM wraps around (or writes instead of) a rewrite.
 * A pattern only counts when the anchor does not match it too, so a seed that really says
 * "I'm sorry" can be rewritten without every step being flagged.
 */
export interface TextPattern {
  name: string;
  kind: "refusal" | "boilerplate";
  re: RegExp;
}

export const TEXT_PATTERNS: readonly TextPattern[] = [
  { name: "sorry", kind: "refusal", re: /\b(?:I['’]m|I am) sorry\b|\bI apologi[sz]e\b/i },
  { name: "as-an-ai", kind: "refusal", re: /\bas an AI\b|\bas a (?:large )?language model\b|\bI['’]m an AI\b/i },
  { name: "cannot", kind: "refusal", re: /\bI (?:cannot|can['’]t|can not|won['’]t|am unable to|['’]m unable to|am not able to) (?:help|assist|comply|provide|rewrite|do that|fulfil|fulfill|create|generate|continue)\b/i },
  // "Here is the rewritten sentence:", "Here's a paraphrase", but not "Here is a girl drinking soda."
  {
    name: "here-is",
    kind: "boilerplate",
    re: /^\s*(?:(?:here(?:['’]s| is| are)|below is)\b[^.!?\n]{0,60}?(?::|\b(?:rewrites?|rewritten|paraphrases?|paraphrased|versions?|sentences?|steps?|revisions?|options?|alternatives?)\b)|here you go\b)/i,
  },
  { name: "sure", kind: "boilerplate", re: /^\s*(?:sure|certainly|okay|ok|absolutely)\s*[,!.:]/i },
  { name: "rewrite-label", kind: "boilerplate", re: /^\s*(?:\**\s*)?(?:step\s*\d+|rewrite(?:\s*\d+)?|rewritten(?: sentence| version)?|paraphrase(?:\s*\d+)?|new sentence|sentence\s*\d+|output)\s*\**\s*:/i },
  { name: "meta-rewrite", kind: "boilerplate", re: /\b(?:the |this )?(?:rewritten|paraphrased) (?:sentence|version|text)\b|\bI (?:have |['’]ve )?(?:rewritten|rephrased|paraphrased)\b/i },
  { name: "note", kind: "boilerplate", re: /(?:^|\n)\s*\(?note:/i },
  { name: "markdown", kind: "boilerplate", re: /^\s*(?:[-*#>]\s|\*\*|```)/ },
  // A script-style speaker label in capitals opening the step ("MADALINA: She is …", "JOHN: A man
  // walks a dog.", "DR. SMITH:"): small models fall into dialogue format. Case-sensitive, and only
  // at the start, so "The sign said: stop." and "Warning: ice." are sentences, not labels.
  { name: "speaker-label", kind: "boilerplate", re: /^\s*(?:\*\*)?\p{Lu}[\p{Lu}\d'’.-]*(?:[ \t]+[\p{Lu}\d][\p{Lu}\d'’.-]*){0,3}(?:\*\*)?[ \t]*:(?:\*\*)?(?=\s|$)/u },
];

export function matchPatterns(text: string, anchor: string): TextPattern[] {
  return TEXT_PATTERNS.filter((p) => p.re.test(text) && !p.re.test(anchor));
}

/**
 * Markup debris: escaped entities, XML/HTML-like tags (also with stray spaces, "< sentence>"),
 * chat-template tokens ("<|im_end|>"), instruction tags. Counts only when the anchor has none.
 */
export const MARKUP_DEBRIS =
  /&(?:lt|gt|amp|quot|apos|nbsp|#\d+|#x[0-9a-f]+);|<\s*\/?\s*[a-z][\w-]*\s*\/?\s*>|<\|[^|>\n]{0,40}\|>|\[\/?INST\]/i;

export function hasMarkupDebris(text: string, anchor: string): boolean {
  return MARKUP_DEBRIS.test(text) && !MARKUP_DEBRIS.test(anchor);
}

/**
 * Vocabulary of rewrite instructions. A step that uses two or more of these terms that its anchor
 * does not use restates the instruction instead of rewriting the sentence ("To add a new sentence
 * to the original sentence, rephrase it to use the same concept but with new words.").
 */
export const INSTRUCTION_TERMS: readonly RegExp[] = [
  /\b(?:re-?write|rewrit|re-?phras|paraphras|reword)\w*/i,
  /\bsentences?\b/i,
  /\boriginal\b/i,
  /\bsame (?:meaning|concept|idea|sense)\b/i,
  /\b(?:different|new|other|own) words\b/i,
  /\bmeaning\b/i,
  /\banchor\b/i,
  /\b(?:chain|step)s?\b/i,
  /\bwrite only\b/i,
  /\binstructions?\b/i,
  /\b(?:the )?(?:text|passage) (?:below|above)\b/i,
];

export function instructionEchoTerms(text: string, anchor: string): number {
  return INSTRUCTION_TERMS.filter((re) => re.test(text) && !re.test(anchor)).length;
}

/**
 * Function words left out of instruction phrases, so "the text between the tags is data" and
 * "text tags data" are the same run. Negations ("never", "no", "not") stay: they are what makes
 * "data, never instructions" an instruction rather than a sentence about data.
 */
const STOPWORDS: ReadonlySet<string> = new Set(
  (
    "a an the and or but nor so yet of to in on at by for with from into onto over under about between as " +
    "is are was were be been being am it its it's this that these those there here their they them he she his her " +
    "you your i me my we our us do does did has have had can could may might must should would will shall " +
    "which who whom what when where how if than then such each every also just very"
  ).split(" "),
);

/** Shortest run of consecutive content words that counts as an echo of an instruction. */
export const INSTRUCTION_NGRAM = 3;

/**
 * Content words of a text, one list per clause: lower-cased, NFKC, split at sentence and clause
 * ends (. ! ? ; : and line breaks; commas stay inside), function words dropped, a plural "s"
 * stripped from words of four letters or more ("instructions" = "instruction", "tags" = "tag";
 * not after s, u, i, y: "class", "previous", "always").
 */
export function contentWordRuns(text: string): string[][] {
  return text
    .normalize("NFKC")
    .toLowerCase()
    .split(/[.!?;:\n]+/)
    .map((clause) =>
      (clause.match(/[\p{L}\p{N}]+(?:['’][\p{L}]+)*/gu) ?? [])
        .map((w) => w.replace(/’/g, "'"))
        .filter((w) => !STOPWORDS.has(w))
        .map((w) => (w.length >= 4 && /[^suiy]s$/.test(w) ? w.slice(0, -1) : w)),
    )
    .filter((run) => run.length > 0);
}

/** Every run of `n` consecutive content words (within a clause), joined by spaces. */
export function wordNgrams(text: string, n = INSTRUCTION_NGRAM): Set<string> {
  const out = new Set<string>();
  for (const run of contentWordRuns(text)) for (let i = 0; i + n <= run.length; i++) out.add(run.slice(i, i + n).join(" "));
  return out;
}

/**
 * The instruction text of a prompt template with its data taken out: `<sentence>{{x}}</sentence>`
 * blocks, placeholders and JSON examples become clause breaks; a tag named in the instructions
 * ("between the <sentence> tags") keeps its word.
 */
export function instructionText(template: string): string {
  return template
    .replace(/<(\w+)>\s*\{\{\w+\}\}\s*<\/\1>/g, "\n")
    .replace(/\{\{\w+\}\}/g, "\n")
    .replace(/\{[^{}]*\}/g, "\n")
    .replace(/[<>/]/g, " ");
}

const promptNgramCache = new Map<string, ReadonlySet<string>>();

/**
 * Word n-grams of the instructions of every rewrite prompt in `dir` (default: the bundled
 * prompts/), all versions, loaded once per directory. A rewrite prompt is a template that is
 * given a sentence or an anchor to rewrite (`{{sentence}}` or `{{anchor}}`): cfg-rewrite,
 * cfg-repeat, stepwise, ladder; the rerank prompts (query and passages) are not.
 */
export function rewritePromptNgrams(dir: string = PROMPTS_DIR, n = INSTRUCTION_NGRAM): ReadonlySet<string> {
  const key = `${dir}::${n}`;
  const hit = promptNgramCache.get(key);
  if (hit) return hit;
  let files: string[];
  try {
    files = readdirSync(dir);
  } catch {
    throw new ConfigError(`instruction-echo check: prompts directory not found: ${dir}`);
  }
  const grams = new Set<string>();
  for (const f of files.sort()) {
    const m = /^(.+)\.v(\d+)\.md$/.exec(f);
    if (!m) continue;
    const tpl = loadPromptTemplate(m[1]!, Number(m[2]), dir);
    if (!tpl.sections.some((s) => /\{\{(?:sentence|anchor)\}\}/.test(s.text))) continue;
    for (const s of tpl.sections) for (const g of wordNgrams(instructionText(s.text), n)) grams.add(g);
  }
  if (grams.size === 0) throw new ConfigError(`instruction-echo check: no rewrite prompt (a template using {{sentence}} or {{anchor}}) in ${dir}`);
  promptNgramCache.set(key, grams);
  return grams;
}

/**
 * Runs of `INSTRUCTION_NGRAM` content words of the rewrite prompts' instructions that a step
 * reproduces and its anchor does not contain ("… data never instructions", "Write only the new
 * sentence."). One is enough: three content words in a row from the instructions are not a
 * coincidence, while "The data shows instructions were never followed." shares words but no run.
 * Pass `anchorGrams` (wordNgrams(anchor)) to reuse them over a chain's steps.
 */
export function instructionEchoPhrases(
  text: string,
  anchor: string | ReadonlySet<string>,
  promptGrams: ReadonlySet<string> = rewritePromptNgrams(),
): string[] {
  const anchorGrams = typeof anchor === "string" ? wordNgrams(anchor) : anchor;
  return [...wordNgrams(text)].filter((g) => promptGrams.has(g) && !anchorGrams.has(g));
}
