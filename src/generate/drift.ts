import { isAppend, wordOverlap, words } from "../util/text.ts";

/**
 * Drift rules the generator applies to each cleaned step, before it is accepted, so a step that
 * cannot make a good rung is retried with changed settings instead of being kept:
 * - `length-band`: the step's word count is outside [max(3, 0.5·A), 1.5·A + 4] for an anchor of A
 *   words (length creep, or a fragment);
 * - `append`: the step repeats the sentence before it and adds words at its start or end;
 * - `return` (prompt steering only): the step shares clearly more words with the anchor than the
 *   step before it did (the chain walks back toward the anchor).
 * CFG keeps `return` off: there the guidance, not the prompt, sets the direction, and the gate's
 * inversion check judges it with embeddings.
 */
export type DriftFailure = "length-band" | "append" | "return";

export interface DriftRuleOptions {
  /** Check the lexical return toward the anchor (stepwise, ladder). */
  checkReturn: boolean;
  /** How much more word overlap with the anchor than the previous step counts as a return. */
  returnMargin?: number;
}

export function lengthBand(anchor: string): { min: number; max: number } {
  const a = words(anchor).length;
  return { min: Math.max(3, Math.floor(0.5 * a)), max: Math.ceil(1.5 * a) + 4 };
}

/** `steps` are the steps accepted so far (the candidate follows the last one, or the anchor). */
export function driftFailure(candidate: string, anchor: string, steps: readonly string[], options: DriftRuleOptions): DriftFailure | undefined {
  const n = words(candidate).length;
  const band = lengthBand(anchor);
  if (n < band.min || n > band.max) return "length-band";
  const previous = steps.length ? steps[steps.length - 1]! : anchor;
  if (isAppend(previous, candidate)) return "append";
  if (options.checkReturn && steps.length >= 1) {
    if (wordOverlap(candidate, anchor) > wordOverlap(previous, anchor) + (options.returnMargin ?? 0.15)) return "return";
  }
  return undefined;
}

/**
 * Keeps every k-th step of a long chain (steps k, 2k, …): the paper generates long chains and the
 * drift between kept rungs is then k steps wide. Returns the kept steps and their 1-based indexes
 * in the long chain.
 */
export function subsample(steps: readonly string[], every: number): { steps: string[]; indexes: number[] } {
  if (!Number.isInteger(every) || every < 1) throw new RangeError(`subsample: every must be a positive integer, got ${every}`);
  const indexes: number[] = [];
  for (let i = every; i <= steps.length; i += every) indexes.push(i);
  return { steps: indexes.map((i) => steps[i - 1]!), indexes };
}
