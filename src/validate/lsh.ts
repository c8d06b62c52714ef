import { mulberry32 } from "../util/random.ts";
import { dot, normalize } from "./vector.ts";

/**
 * A small approximate-nearest-neighbour index for cosine similarity: random-hyperplane LSH
 * (SimHash). A vector's signs against `poolBits` random Gaussian hyperplanes form its SimHash;
 * each of `bands` bands reads its own random subset of `bandBits` of those bits as a bucket key.
 * Items that share a bucket with the query in at least one band become candidates, and only
 * candidates get an exact cosine check. Two vectors at angle θ agree on one bit with probability
 * p = 1 − θ/π, so a pair becomes a candidate with probability about 1 − (1 − p^bandBits)^bands
 * (see `candidateProbability`; bands that share pool bits are slightly correlated, which the
 * tests check empirically). With the defaults (12 bits × 20 bands from a pool of 128) that is
 * 0.998 at cosine 0.95, 0.97 at cosine 0.90, and about 1% at cosine 0.1. Sampling bands from one
 * pool costs poolBits·d multiplications per vector instead of bands·bandBits·d.
 *
 * Memory per item: the unit vector (4·d bytes) plus one bucket entry per band. Nothing else grows.
 */
export interface CosineLshOptions {
  dimensions: number;
  /** Sign bits per band (1..30). More bits: fewer false candidates, lower recall per band. */
  bandBits?: number;
  /** Number of bands. More bands: higher recall, more candidates. */
  bands?: number;
  /** Hyperplanes in the shared pool the bands sample their bits from (≥ bandBits). */
  poolBits?: number;
  /** Seed of the hyperplanes, so an index is reproducible. */
  seed?: number;
}

export interface LshMatch<T> {
  key: T;
  cosine: number;
}

export class CosineLshIndex<T = number> {
  readonly dimensions: number;
  readonly bandBits: number;
  readonly bands: number;
  readonly poolBits: number;
  private readonly planes: Float32Array;
  /** bands × bandBits indexes into the pool of sign bits. */
  private readonly bandBitIndex: Uint16Array;
  private readonly bits: Uint8Array;
  private readonly buckets: Map<number, number[]>[];
  private readonly vectors: Float32Array[] = [];
  private readonly keys: T[] = [];
  private stamp: Uint32Array = new Uint32Array(1024);
  private queryNo = 0;
  /** Exact cosine computations made by queries so far (the work LSH saves vs all pairs). */
  exactChecks = 0;

  constructor(options: CosineLshOptions) {
    const { dimensions, bandBits = 12, bands = 20, poolBits = 128, seed = 0x5eed } = options;
    if (!Number.isInteger(dimensions) || dimensions < 1) throw new Error(`CosineLshIndex: dimensions must be a positive integer, got ${dimensions}`);
    if (!Number.isInteger(bandBits) || bandBits < 1 || bandBits > 30) throw new Error(`CosineLshIndex: bandBits must be an integer in 1..30, got ${bandBits}`);
    if (!Number.isInteger(bands) || bands < 1) throw new Error(`CosineLshIndex: bands must be a positive integer, got ${bands}`);
    if (!Number.isInteger(poolBits) || poolBits < bandBits || poolBits > 4096) throw new Error(`CosineLshIndex: poolBits must be an integer in bandBits..4096, got ${poolBits}`);
    this.dimensions = dimensions;
    this.bandBits = bandBits;
    this.bands = bands;
    this.poolBits = poolBits;
    this.planes = gaussianArray(poolBits * dimensions, seed);
    this.bits = new Uint8Array(poolBits);
    this.bandBitIndex = new Uint16Array(bands * bandBits);
    const rand = mulberry32(seed ^ 0x9e3779b9);
    const order = Array.from({ length: poolBits }, (_, i) => i);
    for (let b = 0; b < bands; b++) {
      // a random subset of the pool per band (partial Fisher–Yates)
      for (let j = 0; j < bandBits; j++) {
        const k = j + Math.floor(rand() * (poolBits - j));
        [order[j], order[k]] = [order[k]!, order[j]!];
        this.bandBitIndex[b * bandBits + j] = order[j]!;
      }
    }
    this.buckets = Array.from({ length: bands }, () => new Map<number, number[]>());
  }

  /** Probability that a pair at this cosine shares at least one band (becomes a candidate). */
  static candidateProbability(cosineSimilarity: number, bandBits = 12, bands = 20): number {
    const theta = Math.acos(Math.max(-1, Math.min(1, cosineSimilarity)));
    const p = 1 - theta / Math.PI;
    return 1 - Math.pow(1 - Math.pow(p, bandBits), bands);
  }

  get size(): number {
    return this.vectors.length;
  }

  /** Band keys of a unit vector. */
  private signature(unit: Float32Array): number[] {
    const d = this.dimensions;
    const planes = this.planes;
    const bits = this.bits;
    for (let p = 0, off = 0; p < this.poolBits; p++, off += d) {
      let s = 0;
      for (let i = 0; i < d; i++) s += planes[off + i]! * unit[i]!;
      bits[p] = s >= 0 ? 1 : 0;
    }
    const keys = new Array<number>(this.bands);
    const idx = this.bandBitIndex;
    const r = this.bandBits;
    for (let b = 0; b < this.bands; b++) {
      let key = 0;
      for (let j = 0; j < r; j++) key |= bits[idx[b * r + j]!]! << j;
      keys[b] = key;
    }
    return keys;
  }

  private unit(vector: Float32Array): Float32Array {
    if (vector.length !== this.dimensions) {
      throw new Error(`CosineLshIndex: expected a ${this.dimensions}-dimensional vector, got ${vector.length}`);
    }
    return normalize(vector);
  }

  add(key: T, vector: Float32Array): void {
    const unit = this.unit(vector);
    this.insert(key, unit, this.signature(unit));
  }

  private insert(key: T, unit: Float32Array, sig: number[]): void {
    const id = this.vectors.length;
    this.vectors.push(unit);
    this.keys.push(key);
    for (let b = 0; b < this.bands; b++) {
      const bucket = this.buckets[b]!;
      const list = bucket.get(sig[b]!);
      if (list) list.push(id);
      else bucket.set(sig[b]!, [id]);
    }
  }

  /** Every indexed item with cosine ≥ threshold among the LSH candidates, best first. */
  query(vector: Float32Array, threshold: number): LshMatch<T>[] {
    const unit = this.unit(vector);
    return this.search(unit, this.signature(unit), threshold);
  }

  private search(unit: Float32Array, sig: number[], threshold: number): LshMatch<T>[] {
    if (this.stamp.length < this.vectors.length) {
      const grown = new Uint32Array(Math.max(this.vectors.length, this.stamp.length * 2));
      grown.set(this.stamp);
      this.stamp = grown;
    }
    const q = ++this.queryNo;
    const out: LshMatch<T>[] = [];
    for (let b = 0; b < this.bands; b++) {
      const list = this.buckets[b]!.get(sig[b]!);
      if (!list) continue;
      for (const id of list) {
        if (this.stamp[id] === q) continue;
        this.stamp[id] = q;
        this.exactChecks++;
        const c = dot(unit, this.vectors[id]!);
        if (c >= threshold) out.push({ key: this.keys[id]!, cosine: c });
      }
    }
    return out.sort((a, b) => b.cosine - a.cosine);
  }

  /** The most similar candidate with cosine ≥ threshold, if any. */
  nearest(vector: Float32Array, threshold: number): LshMatch<T> | undefined {
    return this.query(vector, threshold)[0];
  }

  /**
   * Dedup in one step (one signature): returns the best earlier match with cosine ≥ threshold, or
   * adds the vector under `key` (when `addIfNew`) and returns undefined.
   */
  nearestOrAdd(key: T, vector: Float32Array, threshold: number, addIfNew = true): LshMatch<T> | undefined {
    const unit = this.unit(vector);
    const sig = this.signature(unit);
    const hit = this.search(unit, sig, threshold)[0];
    if (!hit && addIfNew) this.insert(key, unit, sig);
    return hit;
  }
}

/** Deterministic standard-normal numbers (mulberry32 + Box–Muller). */
export function gaussianArray(n: number, seed: number): Float32Array {
  const rand = mulberry32(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const u1 = Math.max(rand(), 1e-12);
    const u2 = rand();
    const r = Math.sqrt(-2 * Math.log(u1));
    out[i] = r * Math.cos(2 * Math.PI * u2);
    if (i + 1 < n) out[i + 1] = r * Math.sin(2 * Math.PI * u2);
  }
  return out;
}
