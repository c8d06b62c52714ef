import { mulberry32 } from "../../util/random.ts";

/**
 * The arithmetic of classifier-free guidance over two prompts, kept free of the model so it can
 * be read and tested on its own:
 *
 *     score(t) = G · log p(t | positive, y<t) − (G − 1) · log p(t | negative, y<t)
 *
 * Log-probabilities are computed here in float64 from the raw logits (not from float32
 * probabilities, whose logs underflow to −∞ for rare tokens and would turn −(G−1)·log p into +∞).
 */

/** Turns a dense logit vector (−∞ where absent) with known maximum into log-probabilities, in place. */
function normalizeLogits(out: Float64Array, max: number): Float64Array {
  if (max === -Infinity) throw new Error("no finite logits to normalise");
  let sum = 0;
  for (let i = 0; i < out.length; i++) {
    const v = out[i]!;
    if (v !== -Infinity) sum += Math.exp(v - max);
  }
  const logZ = max + Math.log(sum);
  for (let i = 0; i < out.length; i++) out[i] = out[i]! - logZ;
  return out;
}

/** Raw logits (token id → logit, any subset of the vocabulary) into a dense log-softmax vector. */
export function logSoftmax(logits: ReadonlyMap<number, number>, vocabSize: number): Float64Array {
  const out = new Float64Array(vocabSize).fill(-Infinity);
  let max = -Infinity;
  for (const [token, logit] of logits) {
    if (token >= 0 && token < vocabSize) {
      out[token] = logit;
      if (logit > max) max = logit;
    }
  }
  return normalizeLogits(out, max);
}

/**
 * The same as logSoftmax, from node-llama-cpp's flat native layout [token, logit, token, logit, …]
 * (no Map in between).
 */
export function logSoftmaxFlat(pairs: ArrayLike<number>, vocabSize: number): Float64Array {
  if (pairs.length % 2 !== 0) throw new Error("token/logit pairs expected");
  const out = new Float64Array(vocabSize).fill(-Infinity);
  let max = -Infinity;
  for (let i = 0; i < pairs.length; i += 2) {
    const token = pairs[i]!;
    const logit = pairs[i + 1]!;
    if (token >= 0 && token < vocabSize) {
      out[token] = logit;
      if (logit > max) max = logit;
    }
  }
  return normalizeLogits(out, max);
}

/**
 * Combined scores. G = 1 returns log p(t | positive) unchanged (the negative side is ignored, so
 * 0 · (−∞) never produces NaN). A token the positive side rules out (log p = −∞) stays −∞.
 */
export function guidanceScores(logpPositive: Float64Array, logpNegative: Float64Array | undefined, guidance: number): Float64Array {
  if (!(guidance >= 1) || !Number.isFinite(guidance)) throw new RangeError(`guidance must be a finite number >= 1, got ${guidance}`);
  if (guidance === 1 || logpNegative === undefined) {
    if (guidance !== 1) throw new Error("guidance > 1 needs the negative distribution");
    return logpPositive;
  }
  if (logpNegative.length !== logpPositive.length) throw new Error("positive and negative distributions differ in size");
  const out = new Float64Array(logpPositive.length);
  const g = guidance;
  const h = guidance - 1;
  for (let i = 0; i < out.length; i++) {
    const p = logpPositive[i]!;
    const n = logpNegative[i]!;
    // a token impossible in the positive context stays impossible; one impossible only in the
    // negative context is capped at the positive score instead of becoming +∞
    out[i] = p === -Infinity ? -Infinity : n === -Infinity ? p : g * p - h * n;
  }
  return out;
}

/**
 * Guidance scores over a candidate subset, from raw logits (token id → logit). The log-softmax
 * normalisers are constants over tokens — G·log Z_pos − (G−1)·log Z_neg is the same for every
 * token — so G·logit_pos − (G−1)·logit_neg orders (and, through softmax, samples) the candidates
 * exactly as G·log p_pos − (G−1)·log p_neg does. Candidates are returned in ascending token id so
 * that argmax's tie rule (lowest index) is the same as over the full vocabulary. Every candidate
 * needs a negative logit when guidance > 1.
 */
export function candidateScores(
  positive: ReadonlyMap<number, number>,
  negative: ReadonlyMap<number, number> | undefined,
  guidance: number,
): { tokens: number[]; scores: Float64Array } {
  if (!(guidance >= 1) || !Number.isFinite(guidance)) throw new RangeError(`guidance must be a finite number >= 1, got ${guidance}`);
  const tokens = [...positive.keys()].sort((a, b) => a - b);
  const scores = new Float64Array(tokens.length);
  const g = guidance;
  const h = guidance - 1;
  for (let i = 0; i < tokens.length; i++) {
    const p = positive.get(tokens[i]!)!;
    if (h === 0 || p === -Infinity) {
      scores[i] = p;
      continue;
    }
    const n = negative?.get(tokens[i]!);
    if (n === undefined) throw new Error(`no negative logit for candidate token ${tokens[i]}`);
    scores[i] = n === -Infinity ? p : g * p - h * n;
  }
  return { tokens, scores };
}

/** Index of the largest score; ties go to the lowest token id (deterministic). */
export function argmax(scores: Float64Array): number {
  let best = -1;
  let bestValue = -Infinity;
  for (let i = 0; i < scores.length; i++) {
    const v = scores[i]!;
    if (v > bestValue) {
      bestValue = v;
      best = i;
    }
  }
  if (best < 0) throw new Error("all scores are -Infinity");
  return best;
}

/** Draws a token from softmax(scores / temperature) with the given uniform random number in [0, 1). */
export function sampleToken(scores: Float64Array, temperature: number, uniform: number): number {
  if (!(temperature > 0)) return argmax(scores);
  let max = -Infinity;
  for (let i = 0; i < scores.length; i++) if (scores[i]! > max) max = scores[i]!;
  const weights = new Float64Array(scores.length);
  let total = 0;
  for (let i = 0; i < scores.length; i++) {
    const s = scores[i]!;
    const w = s === -Infinity ? 0 : Math.exp((s - max) / temperature);
    weights[i] = w;
    total += w;
  }
  let r = uniform * total;
  for (let i = 0; i < weights.length; i++) {
    r -= weights[i]!;
    if (r < 0) return i;
  }
  return argmax(scores);
}

/** A small seeded PRNG (mulberry32) for reproducible sampling at temperature > 0. */
export const seededRandom = mulberry32;

/**
 * Exact guidance scores over the whole vocabulary straight from two flat [token, logit, …] arrays
 * (node-llama-cpp's native layout), without log-softmax: as in candidateScores the normalisers
 * G·log Z_pos − (G−1)·log Z_neg are one constant over all tokens, so G·logit_pos − (G−1)·logit_neg
 * has the same argmax and the same softmax at any temperature as the log-probability form. Returns
 * undefined unless both arrays cover every token id of the vocabulary (then the log-softmax path
 * applies). `negative` undefined (or guidance 1): the positive logits.
 */
export function guidanceScoresFlat(positive: ArrayLike<number>, negative: ArrayLike<number> | undefined, vocabSize: number, guidance: number): Float64Array | undefined {
  if (!(guidance >= 1) || !Number.isFinite(guidance)) throw new RangeError(`guidance must be a finite number >= 1, got ${guidance}`);
  if (positive.length !== 2 * vocabSize || (guidance !== 1 && negative?.length !== 2 * vocabSize)) return undefined;
  const out = new Float64Array(vocabSize);
  const seen = new Uint8Array(vocabSize);
  const g = guidance;
  for (let i = 0; i < positive.length; i += 2) {
    const t = positive[i]!;
    if (!(t >= 0 && t < vocabSize) || seen[t]) return undefined;
    seen[t] = 1;
    out[t] = g * positive[i + 1]!;
  }
  if (guidance === 1 || negative === undefined) {
    if (guidance !== 1) throw new Error("guidance > 1 needs the negative distribution");
    return out;
  }
  const h = guidance - 1;
  for (let i = 0; i < negative.length; i += 2) {
    const t = negative[i]!;
    if (!(t >= 0 && t < vocabSize) || seen[t] !== 1) return undefined;
    seen[t] = 2;
    out[t] = out[t]! - h * negative[i + 1]!;
  }
  return out;
}
