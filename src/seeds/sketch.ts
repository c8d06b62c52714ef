import type { Embedder } from "../embed/types.ts";

/**
 * Fixed-memory helpers for streaming seed extraction: a Bloom filter for exact duplicates (memory
 * does not grow with the corpus), 32-bit string hashes, a weighted reservoir (A-Res) and a
 * character-trigram feature-hashing embedder for surface near-duplicates.
 */

/** FNV-1a over UTF-16 code units, with a seed mixed in. */
export function hash32(s: string, seed = 0x811c9dc5): number {
  let h = seed >>> 0;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  // final avalanche (murmur3 fmix32) so nearby strings spread over all bits
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * A Bloom filter of `bytes` bytes with k hash functions (double hashing). `addIfNew` says whether the
 * key was (probably) new; a false "seen" happens with probability about (1 − e^(−kn/m))^k.
 */
export class BloomFilter {
  private readonly bits: Uint8Array;
  private readonly m: number;
  readonly k: number;
  count = 0;

  constructor(bytes: number, k = 7) {
    this.bits = new Uint8Array(Math.max(8, Math.floor(bytes)));
    this.m = this.bits.length * 8;
    this.k = k;
  }

  addIfNew(key: string): boolean {
    const h1 = hash32(key, 0x811c9dc5);
    const h2 = hash32(key, 0x9747b28c) | 1;
    let isNew = false;
    for (let i = 0; i < this.k; i++) {
      const bit = (h1 + Math.imul(i, h2)) >>> 0;
      const idx = bit % this.m;
      const byte = idx >>> 3;
      const mask = 1 << (idx & 7);
      if ((this.bits[byte]! & mask) === 0) {
        isNew = true;
        this.bits[byte]! |= mask;
      }
    }
    if (isNew) this.count++;
    return isNew;
  }

  /** Expected false-positive rate at the current fill. */
  falsePositiveRate(): number {
    return Math.pow(1 - Math.exp((-this.k * this.count) / this.m), this.k);
  }
}

/** A-Res weighted reservoir: keeps the `capacity` items with the largest log(u)/w keys (a min-heap). */
export class WeightedReservoir<T> {
  private readonly heap: { key: number; item: T }[] = [];
  seen = 0;
  constructor(
    readonly capacity: number,
    private readonly rand: () => number,
  ) {}

  offer(item: T, weight = 1): void {
    this.seen++;
    const key = Math.log(Math.max(this.rand(), 1e-300)) / weight;
    const h = this.heap;
    if (h.length < this.capacity) {
      h.push({ key, item });
      let i = h.length - 1;
      while (i > 0) {
        const p = (i - 1) >> 1;
        if (h[p]!.key <= h[i]!.key) break;
        [h[p], h[i]] = [h[i]!, h[p]!];
        i = p;
      }
    } else if (h.length > 0 && key > h[0]!.key) {
      h[0] = { key, item };
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && h[l]!.key < h[m]!.key) m = l;
        if (r < h.length && h[r]!.key < h[m]!.key) m = r;
        if (m === i) break;
        [h[m], h[i]] = [h[i]!, h[m]!];
        i = m;
      }
    }
  }

  get size(): number {
    return this.heap.length;
  }

  items(): T[] {
    return this.heap.map((e) => e.item);
  }
}

/** A uniform reservoir (Algorithm R) of one source's candidates. */
export class UniformReservoir<T> {
  readonly items: T[] = [];
  seen = 0;
  constructor(
    readonly capacity: number,
    private readonly rand: () => number,
  ) {}

  offer(item: T): void {
    this.seen++;
    if (this.items.length < this.capacity) this.items.push(item);
    else {
      const j = Math.floor(this.rand() * this.seen);
      if (j < this.capacity) this.items[j] = item;
    }
  }
}

/** Sparse unit vector of hashed character trigrams: parallel index/value arrays. */
export function trigramSparse(text: string, dims = 512): { idx: Int32Array; val: Float32Array } {
  const dense = trigramVector(text, dims);
  let nnz = 0;
  for (let i = 0; i < dims; i++) if (dense[i] !== 0) nnz++;
  const idx = new Int32Array(nnz);
  const val = new Float32Array(nnz);
  for (let i = 0, j = 0; i < dims; i++) if (dense[i] !== 0) (idx[j] = i), (val[j++] = dense[i]!);
  return { idx, val };
}

/**
 * Exact cosine search of short texts against a small fixed set (the chosen seeds) by character
 * trigrams, through an inverted index over the hashed dimensions: a query costs its non-zero
 * trigrams times the seeds sharing each one, not a dense pass over every seed.
 */
export class TrigramMatcher {
  private readonly postings: { seed: number; val: number }[][];
  private readonly acc: Float32Array;
  constructor(
    texts: readonly string[],
    private readonly dims = 512,
  ) {
    this.postings = Array.from({ length: dims }, () => []);
    this.acc = new Float32Array(texts.length);
    texts.forEach((t, seed) => {
      const { idx, val } = trigramSparse(t, dims);
      for (let j = 0; j < idx.length; j++) this.postings[idx[j]!]!.push({ seed, val: val[j]! });
    });
  }

  /** The highest cosine of `text` to any of the texts, with its index (-1 when none overlap). */
  best(text: string): { index: number; cosine: number } {
    const { idx, val } = trigramSparse(text, this.dims);
    const acc = this.acc;
    acc.fill(0);
    for (let j = 0; j < idx.length; j++) {
      const v = val[j]!;
      for (const p of this.postings[idx[j]!]!) acc[p.seed]! += v * p.val;
    }
    let index = -1;
    let cosine = 0;
    for (let i = 0; i < acc.length; i++) if (acc[i]! > cosine) (cosine = acc[i]!), (index = i);
    return { index, cosine };
  }
}

/** Unit vector of hashed character trigrams (of the lower-cased, space-padded text). */
export function trigramVector(text: string, dims = 512): Float32Array {
  const v = new Float32Array(dims);
  const s = " " + text.toLowerCase().replace(/\s+/g, " ").trim() + " ";
  for (let i = 0; i + 3 <= s.length; i++) {
    const h = hash32(s.slice(i, i + 3), 0x3c6ef372);
    v[h % dims]! += h & 0x80000000 ? -1 : 1;
  }
  let n = 0;
  for (let i = 0; i < dims; i++) n += v[i]! * v[i]!;
  n = Math.sqrt(n);
  if (n > 0) for (let i = 0; i < dims; i++) v[i]! /= n;
  return v;
}

/**
 * `--embedder hashed`: character-trigram feature hashing. No model, instant; similar spelling, not
 * similar meaning. For very large corpora, benchmarks, or machines without the ONNX model.
 */
export function createHashedEmbedder(dims = 512): Embedder {
  return {
    info: { id: `hashed:char3-${dims}`, backend: "hashed", model: "char-trigram-hashing", dtype: "fp32", pooling: "none", normalize: true, dimensions: dims, runtime: "rankchain (no model)" },
    embed: async (texts) => texts.map((t) => trigramVector(t, dims)),
    dispose: async () => undefined,
  };
}
