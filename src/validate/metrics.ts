import { isAppend } from "../util/text.ts";
import { hasMarkupDebris, instructionEchoPhrases, instructionEchoTerms, matchPatterns, wordNgrams } from "./patterns.ts";
import { kendallTauB, robustZ, spearman } from "./stats.ts";
import { cosineMatrix } from "./vector.ts";

/**
 * Per-chain metrics from embeddings. Positions are step numbers: the anchor is step 0, the first
 * rewrite step 1, … (so `sims_to_anchor[k]` belongs to step k + 1).
 *
 * Sign convention: `spearman` and `kendall` correlate the step number with the *distance* to the
 * anchor (1 − cosine), computed over steps 1..n (the anchor itself is left out, it would always
 * rank first). 1.0 = similarity to the anchor falls strictly with every step (perfect drift),
 * 0 = no order, −1 = the chain walks back towards the anchor. null when undefined (fewer than two
 * steps, or all similarities equal).
 */
export interface ChainThresholds {
  /** A step is an inversion when its similarity exceeds the previous step's by more than this. */
  inversionTolerance: number;
  /**
   * Two sentences of a chain (anchor included) are near-duplicates when they are nearly the same
   * text: identical after normalisation, or at or above this cosine AND at or above
   * `dupTextSimilarity`. A close paraphrase (high cosine, different words) is not a duplicate.
   */
  dupThreshold: number;
  /** Character-level similarity (1 − Levenshtein distance / longer length, normalised text) of near-duplicates. */
  dupTextSimilarity: number;
  /** A step below this cosine to the sentence it rewrites (the step before it; the anchor for step 1) is unrelated to it. */
  unrelatedThreshold: number;
  /** Append-creep: a step that keeps at least this share of the previous sentence's words in order … */
  appendKeep: number;
  /** … and adds at least this many words (and at least 30 % more). */
  appendMinWords: number;
  /** A step is a cycle when it is closer to an earlier non-adjacent sentence than to each neighbour by more than this. */
  cycleMargin: number;
  /** |robust z| of character length above this is a length outlier (soft flag). */
  lengthZ: number;
  /** A drop in similarity to the anchor larger than this between two steps is a jump (soft flag). */
  maxDrop: number;
}

export const DEFAULT_CHAIN_THRESHOLDS: Readonly<ChainThresholds> = Object.freeze({
  inversionTolerance: 0.01,
  dupThreshold: 0.95,
  dupTextSimilarity: 0.95,
  unrelatedThreshold: 0.15,
  appendKeep: 0.85,
  appendMinWords: 3,
  cycleMargin: 0.01,
  lengthZ: 3.5,
  maxDrop: 0.5,
});

export interface ChainMetrics {
  sims_to_anchor: number[];
  spearman: number | null;
  kendall: number | null;
  /** drops[k] = similarity of step k (anchor: 1) minus similarity of step k + 1. */
  drops: number[];
  inversions: number[];
  /** [later step, earlier step (0 = anchor)] */
  near_duplicates: [number, number][];
  /** [step, the earlier non-adjacent step it returns to] */
  cycles: [number, number][];
  length_outliers: number[];
  refusals: number[];
  boilerplate: number[];
  empty: number[];
  jumps: number[];
  /**
   * Steps that restate the rewrite instruction instead of rewriting the sentence: two or more
   * instruction terms, or a run of three content words from a rewrite prompt's instructions.
   */
  instruction_echoes: number[];
  /** Steps carrying markup debris (escaped entities, tags, chat-template tokens). */
  markup: number[];
  /** Steps that repeat the sentence before them and append words (length creep). */
  appends: number[];
  /** Steps unrelated to the sentence they rewrite (cosine below `unrelatedThreshold`). */
  unrelated: number[];
}

/** 1 − Levenshtein distance / length of the longer string (1 = identical). */
export function textSimilarity(a: string, b: string): number {
  if (a === b) return 1;
  const n = a.length;
  const m = b.length;
  if (n === 0 || m === 0) return 0;
  let prev = Array.from({ length: m + 1 }, (_, j) => j);
  for (let i = 1; i <= n; i++) {
    const cur = [i];
    for (let j = 1; j <= m; j++) cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return 1 - prev[m]! / Math.max(n, m);
}

/** Correlations for a similarity profile, in the documented sign convention. */
export function driftCorrelations(sims: readonly number[]): { spearman: number | null; kendall: number | null } {
  const steps = sims.map((_, k) => k + 1);
  const dist = sims.map((s) => 1 - s);
  return { spearman: spearman(steps, dist), kendall: kendallTauB(steps, dist) };
}

/** Indexes (step numbers) of adjacent inversions in a similarity profile. */
export function findInversions(sims: readonly number[], tolerance: number): number[] {
  const out: number[] = [];
  for (let k = 1; k < sims.length; k++) if (sims[k]! > sims[k - 1]! + tolerance) out.push(k + 1);
  return out;
}

/**
 * texts[0] is the anchor, texts[1..n] the steps; vectors align with texts (any norm; an empty
 * text may carry a zero vector).
 */
export function analyzeChain(
  texts: readonly string[],
  vectors: readonly Float32Array[],
  thresholds: ChainThresholds = DEFAULT_CHAIN_THRESHOLDS,
): ChainMetrics {
  if (texts.length !== vectors.length) throw new Error(`analyzeChain: ${texts.length} texts but ${vectors.length} vectors`);
  if (texts.length === 0) throw new Error("analyzeChain: a chain needs at least its anchor");
  const n = texts.length - 1;
  const m = cosineMatrix(vectors);
  const sims = Array.from({ length: n }, (_, k) => m[0]![k + 1]!);
  const { spearman: rho, kendall } = driftCorrelations(sims);

  const drops: number[] = [];
  const jumps: number[] = [];
  for (let k = 1; k <= n; k++) {
    const prev = k === 1 ? 1 : sims[k - 2]!;
    const d = prev - sims[k - 1]!;
    drops.push(d);
    if (d > thresholds.maxDrop) jumps.push(k);
  }

  const anchor = texts[0]!;
  const norm = (s: string) => s.trim().replace(/\s+/g, " ").toLowerCase();
  const normTexts = texts.map(norm);
  const empty: number[] = [];
  for (let i = 0; i <= n; i++) if (normTexts[i] === "") empty.push(i);

  // Near-duplicates are nearly the same text, not close paraphrases: a first step at cosine 0.98
  // to the anchor in other words is the closest rung of a good chain.
  const compact = texts.map(normalizeText);
  const near: [number, number][] = [];
  for (let i = 1; i <= n; i++) {
    if (normTexts[i] === "") continue;
    for (let j = 0; j < i; j++) {
      if (normTexts[j] === "") continue;
      const same = compact[i] === compact[j] || (m[i]![j]! >= thresholds.dupThreshold && textSimilarity(compact[i]!, compact[j]!) >= thresholds.dupTextSimilarity);
      if (same) near.push([i, j]);
    }
  }

  // A cycle: step i is closer to some earlier step k (1 ≤ k ≤ i − 2) than to each of its
  // neighbours. The anchor is left out: closeness to the anchor is what inversions measure, and
  // chains written all at once (ladder) are often star-shaped around it without looping.
  const cycles: [number, number][] = [];
  for (let i = 3; i <= n; i++) {
    const neighbour = Math.max(m[i]![i - 1]!, i + 1 <= n ? m[i]![i + 1]! : -Infinity);
    let best = -1;
    let bestSim = neighbour + thresholds.cycleMargin;
    for (let k = 1; k <= i - 2; k++) {
      if (m[i]![k]! > bestSim) {
        bestSim = m[i]![k]!;
        best = k;
      }
    }
    if (best >= 0) cycles.push([i, best]);
  }

  // Character lengths of the non-empty sentences (anchor included); empty steps are flagged as such.
  const present = texts.map((t, i) => [t.trim().length, i] as const).filter(([len]) => len > 0);
  const z = robustZ(present.map(([len]) => len));
  const lengthOutliers: number[] = [];
  present.forEach(([, i], k) => {
    if (i > 0 && Math.abs(z[k]!) > thresholds.lengthZ) lengthOutliers.push(i);
  });

  const refusals: number[] = [];
  const boilerplate: number[] = [];
  const echoes: number[] = [];
  const markup: number[] = [];
  const appends: number[] = [];
  const unrelated: number[] = [];
  const anchorGrams = wordNgrams(anchor);
  for (let i = 1; i <= n; i++) {
    if (normTexts[i] === "") continue;
    const hits = matchPatterns(texts[i]!, anchor);
    if (hits.some((h) => h.kind === "refusal")) refusals.push(i);
    else if (hits.some((h) => h.kind === "boilerplate")) boilerplate.push(i);
    if (instructionEchoTerms(texts[i]!, anchor) >= 2 || instructionEchoPhrases(texts[i]!, anchorGrams).length > 0) echoes.push(i);
    if (hasMarkupDebris(texts[i]!, anchor)) markup.push(i);
    if (normTexts[i - 1] !== "" && isAppend(texts[i - 1]!, texts[i]!, thresholds.appendKeep, thresholds.appendMinWords)) appends.push(i);
    if (normTexts[i - 1] !== "" && m[i]![i - 1]! < thresholds.unrelatedThreshold) unrelated.push(i);
  }

  return {
    sims_to_anchor: sims,
    spearman: rho,
    kendall,
    drops,
    inversions: findInversions(sims, thresholds.inversionTolerance),
    near_duplicates: near,
    cycles,
    length_outliers: lengthOutliers,
    refusals,
    boilerplate,
    empty,
    jumps,
    instruction_echoes: echoes,
    markup,
    appends,
    unrelated,
  };
}

/** Lower-cased, NFKC, punctuation and runs of whitespace folded to one space. */
function normalizeText(s: string): string {
  return s.toLowerCase().normalize("NFKC").replace(/[\s\p{P}\p{S}]+/gu, " ").trim();
}
