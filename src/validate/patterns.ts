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
