import type { Neighbours } from "./topk.ts";

/**
 * Approximate nearest neighbours for large pools: an HNSW graph from `usearch` (Unum's
 * single-file vector search engine; its npm package ships prebuilt N-API binaries for linux-x64,
 * linux-arm64, darwin and win32, so it installs without running a build). Cosine metric; the
 * library returns distances 1 − cos, turned back into cosine scores here. Loaded lazily, so
 * commands that never need it do not load the native addon.
 */
export interface HnswOptions {
  /** Graph degree M (default 16). */
  connectivity?: number;
  /** Candidate list while inserting, efConstruction (default 128). */
  expansionAdd?: number;
  /** Candidate list while searching, ef (default 128; raised to k when k is larger). */
  expansionSearch?: number;
  /** Threads for add and search (0 = the library's choice, one per core). */
  threads?: number;
}

export const DEFAULT_HNSW: Readonly<Required<HnswOptions>> = Object.freeze({
  connectivity: 16,
  expansionAdd: 128,
  expansionSearch: 128,
  threads: 0,
});

interface UsearchIndex {
  add(keys: BigUint64Array, vectors: Float32Array, threads?: number): void;
  search(vectors: Float32Array, k: number, threads: number): { keys: BigUint64Array; distances: Float32Array; counts?: BigUint64Array };
  size(): number;
}

interface UsearchModule {
  Index: new (config: {
    dimensions: number;
    metric: string;
    quantization: string;
    connectivity: number;
    expansion_add: number;
    expansion_search: number;
    multi: boolean;
  }) => UsearchIndex;
}

async function loadUsearch(): Promise<UsearchModule> {
  const mod = (await import("usearch")) as unknown as { default?: UsearchModule } & UsearchModule;
  return mod.default ?? mod;
}

export class HnswIndex {
  readonly kind = "hnsw";
  private constructor(
    private readonly index: UsearchIndex,
    readonly dimensions: number,
    readonly size: number,
    readonly options: Readonly<Required<HnswOptions>>,
  ) {}

  /** Indexes the rows of a flat matrix (row number = key). */
  static async build(pool: Float32Array, dimensions: number, options: HnswOptions = {}): Promise<HnswIndex> {
    if (!Number.isInteger(dimensions) || dimensions < 1) throw new Error(`HnswIndex: dimensions must be a positive integer, got ${dimensions}`);
    if (pool.length % dimensions !== 0) throw new Error(`HnswIndex: ${pool.length} numbers is not a multiple of ${dimensions} dimensions`);
    const opts = { ...DEFAULT_HNSW, ...options };
    const usearch = await loadUsearch();
    const index = new usearch.Index({
      dimensions,
      metric: "cos",
      quantization: "f32",
      connectivity: opts.connectivity,
      expansion_add: opts.expansionAdd,
      expansion_search: opts.expansionSearch,
      multi: false,
    });
    const n = pool.length / dimensions;
    if (n > 0) {
      const keys = new BigUint64Array(n);
      for (let i = 0; i < n; i++) keys[i] = BigInt(i);
      index.add(keys, pool, opts.threads);
    }
    return new HnswIndex(index, dimensions, n, opts);
  }

  /** Approximate top-k of each query row (fewer when the index holds fewer rows), best first. */
  search(queries: Float32Array, k: number): Neighbours[] {
    if (!Number.isInteger(k) || k < 1) throw new Error(`HnswIndex.search: k must be a positive integer, got ${k}`);
    if (queries.length % this.dimensions !== 0) throw new Error(`HnswIndex.search: ${queries.length} numbers is not a multiple of ${this.dimensions} dimensions`);
    const nq = queries.length / this.dimensions;
    const kk = Math.min(k, this.size);
    if (nq === 0 || kk === 0) return Array.from({ length: nq }, () => ({ ids: new Int32Array(0), scores: new Float32Array(0) }));
    const r = this.index.search(queries, kk, this.options.threads);
    const out: Neighbours[] = [];
    for (let q = 0; q < nq; q++) {
      const count = r.counts ? Number(r.counts[q]) : kk;
      const ids = new Int32Array(count);
      const scores = new Float32Array(count);
      for (let j = 0; j < count; j++) {
        ids[j] = Number(r.keys[q * kk + j]);
        scores[j] = 1 - r.distances[q * kk + j]!;
      }
      out.push({ ids, scores });
    }
    return out;
  }
}
