import type { ChatMessage, GuidedGenerateRequest } from "../llm/types.ts";
import { delimit, loadPromptTemplate, renderTemplate, type PromptTemplate } from "./prompt-templates.ts";

/**
 * Logit-level direction control (local models): chain step i rewrites x(i−1) while guidance
 * pushes away from what the model would write for x(i−2):
 *
 *     score(t) = G · log p(t | prompt(x(i−1)), y<t) − (G − 1) · log p(t | prompt(x(i−2)), y<t)
 *
 * with x(0) = the anchor and x(−1) = the anchor too, so step 1 is plain decoding.
 */
export const CFG_PROMPT_NAME = "cfg-rewrite";
/**
 * v3 = v1's rewrite with the sentence delimited like the other templates; `--prompt-version 1`
 * (bare v1) and `2` (a drift instruction, bare) stay selectable.
 */
export const CFG_PROMPT_VERSION = 3;
export const DEFAULT_GUIDANCE = 1.5;

export function cfgTemplate(version: number = CFG_PROMPT_VERSION): PromptTemplate {
  return loadPromptTemplate(CFG_PROMPT_NAME, version);
}

/** The negative prompt of an anti-copy retry: "repeat the sentence". */
export function cfgRepeatTemplate(): PromptTemplate {
  return loadPromptTemplate("cfg-repeat", 1);
}

export interface CfgStepInput {
  anchor: string;
  /** Steps generated so far (x1 … x(i−1)); empty for step 1. */
  steps: readonly string[];
  /** G (>= 1); default 1.5. */
  guidance?: number | undefined;
  maxOutputTokens: number;
  temperature?: number | undefined;
  seed?: number | undefined;
  /** Template to use; default cfg-rewrite at CFG_PROMPT_VERSION. */
  template?: PromptTemplate | undefined;
  /**
   * Guide away from a "repeat the sentence" prompt for the previous sentence instead of the
   * rewrite of the sentence before it (a retry after the model copied its input; works at step 1
   * too, where the two rewrite prompts are identical and guidance cancels).
   */
  antiCopy?: boolean | undefined;
}

/** The chat messages asking for a rewrite of one sentence. */
export function cfgRewriteMessages(sentence: string, template: PromptTemplate = cfgTemplate()): ChatMessage[] {
  const oneLine = sentence.replace(/\s+/g, " ").trim();
  // a template that puts the sentence between <sentence> tags gets it delimited; bare ones as is
  const tagged = template.sections.some((s) => s.text.includes("<sentence>{{sentence}}</sentence>"));
  return renderTemplate(template, { sentence: tagged ? delimit(oneLine) : oneLine });
}

/**
 * The guided request for the next chain step: positive = rewrite the previous sentence,
 * negative = rewrite the one before it. In step 1 both would hold the anchor and guidance
 * cancels exactly, so the request asks for plain decoding (guidance 1) and skips the second
 * sequence. One sentence per step: the step ends at a newline. At temperature > 0 each step gets
 * its own seed derived from the run seed (see cfgStepSeed), so a step that repeats the previous
 * sentence is not bound to repeat the previous random draws too.
 */
export function buildCfgStepRequest(input: CfgStepInput): GuidedGenerateRequest {
  const guidance = input.guidance ?? DEFAULT_GUIDANCE;
  if (!Number.isFinite(guidance) || guidance < 1) throw new RangeError(`guidance must be >= 1, got ${guidance}`);
  const template = input.template ?? cfgTemplate();
  const n = input.steps.length;
  const previous = n >= 1 ? input.steps[n - 1]! : input.anchor;
  const beforePrevious = n >= 2 ? input.steps[n - 2]! : input.anchor;
  const negative = input.antiCopy ? cfgRewriteMessages(previous, cfgRepeatTemplate()) : cfgRewriteMessages(beforePrevious, template);
  return {
    positive: cfgRewriteMessages(previous, template),
    negative,
    guidance: !input.antiCopy && previous === beforePrevious ? 1 : guidance,
    maxOutputTokens: input.maxOutputTokens,
    temperature: input.temperature,
    seed: input.seed === undefined ? undefined : cfgStepSeed(input.seed, n),
    stopAtNewline: true,
  };
}

/** The sampling seed of chain step `stepIndex` (0-based): deterministic, different per step. */
export function cfgStepSeed(seed: number, stepIndex: number): number {
  return (Math.imul(seed | 0, 0x9e3779b1) + Math.imul(stepIndex + 1, 0x85ebca6b)) >>> 0;
}
