/**
 * The retrieval part of `rankchain mine` at pool sizes 10k, 100k and 1M: exact top-k (what mine
 * uses up to --exact-max) vs the usearch HNSW index (above it), on synthetic clustered unit
 * vectors (sentence embeddings are clustered; uniform random vectors would make HNSW look worse
 * and exact search look the same). Each size runs in its own child process so peak RSS is per size.
 *
 *   npx tsx bench/mine/run.ts [--sizes 10000,100000,1000000] [--dim 384] [--queries 1000] [--k 58] [--exact-queries 50]
 *                             [--connectivity 16] [--ef-add 128] [--ef-search 128] [--threads 1]
 *
 * Prints per size: HNSW build (vectors/s), HNSW search (queries/s and candidates/s = queries × pool
 * / s, the brute-force-equivalent rate), exact search on a subsample of the queries (queries/s,
 * candidates/s), recall@k of HNSW against exact on that subsample, and the child's peak RSS.
 * The speed ratio HNSW/exact is measured in the same process, one after the other.
 *
 * The pool is handed to usearch as one Float32Array batch; --threads sets usearch's threads for
 * add and search (0 = one per core; the default 1 keeps the bench to one core on a shared machine).
 * Exact search costs queries × pool dot products, so at 1M a few dozen exact queries are enough for
 * recall and rate. Each row carries the 1-minute load average at the child's start and end.
 */
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { loadavg } from "node:os";
import { exactTopK, HnswIndex, normalizeRows } from "../../src/vector/index.ts";
import { mulberry32 } from "../../src/util/random.ts";

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1]! : def;
}

function clustered(n: number, d: number, clusters: number, seed: number): Float32Array {
  const rand = mulberry32(seed);
  const centres = new Float32Array(clusters * d);
  for (let i = 0; i < centres.length; i++) centres[i] = rand() * 2 - 1;
  normalizeRows(centres, d);
  const m = new Float32Array(n * d);
  for (let r = 0; r < n; r++) {
    const c = Math.floor(rand() * clusters);
    for (let i = 0; i < d; i++) m[r * d + i] = centres[c * d + i]! + (rand() - 0.5) * 0.15;
  }
  return normalizeRows(m, d);
}

async function child(size: number): Promise<void> {
  const d = Number(arg("dim", "384"));
  const nq = Number(arg("queries", "1000"));
  const k = Number(arg("k", "58")); // top-k 50 + the near steps mine over-fetches
  const exactQ = Math.min(nq, Number(arg("exact-queries", "50")));
  const threads = Number(arg("threads", "1"));
  const loadStart = loadavg()[0]!;
  const clusters = Math.max(16, Math.round(size / 200));
  const pool = clustered(size, d, clusters, 1);
  const queries = clustered(nq, d, clusters, 1); // same centres (same seed), new noise below
  const rand = mulberry32(99);
  for (let i = 0; i < queries.length; i++) queries[i]! += (rand() - 0.5) * 0.05;
  normalizeRows(queries, d);

  let t = performance.now();
  const index = await HnswIndex.build(pool, d, {
    connectivity: Number(arg("connectivity", "16")),
    expansionAdd: Number(arg("ef-add", "128")),
    expansionSearch: Number(arg("ef-search", "128")),
    threads,
  });
  const buildS = (performance.now() - t) / 1000;
  t = performance.now();
  const approx = index.search(queries, k);
  const searchS = (performance.now() - t) / 1000;

  const sub = queries.subarray(0, exactQ * d);
  t = performance.now();
  const exact = exactTopK(pool, sub, d, k);
  const exactS = (performance.now() - t) / 1000;
  let hits = 0;
  for (let q = 0; q < exactQ; q++) {
    const truth = new Set(exact[q]!.ids);
    for (const id of approx[q]!.ids) if (truth.has(id)) hits++;
  }
  const row = {
    size,
    dim: d,
    k,
    hnsw_build_s: +buildS.toFixed(2),
    hnsw_vectors_per_s: Math.round(size / buildS),
    hnsw_queries_per_s: Math.round(nq / searchS),
    hnsw_candidates_per_s: Math.round((nq * size) / searchS),
    exact_queries: exactQ,
    exact_queries_per_s: +(exactQ / exactS).toFixed(1),
    exact_candidates_per_s: Math.round((exactQ * size) / exactS),
    search_speedup_hnsw_vs_exact: +((nq / searchS) / (exactQ / exactS)).toFixed(1),
    recall_at_k: +(hits / (exactQ * k)).toFixed(4),
    peak_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024),
    vectors_mb: Math.round((size * d * 4) / 2 ** 20),
    connectivity: index.options.connectivity,
    ef_add: index.options.expansionAdd,
    threads,
    load_start: +loadStart.toFixed(2),
    load_end: +loadavg()[0]!.toFixed(2),
  };
  process.stdout.write(JSON.stringify(row) + "\n");
}

async function main(): Promise<void> {
  const childSize = arg("child", "");
  if (childSize) return child(Number(childSize));
  const sizes = arg("sizes", "10000,100000,1000000").split(",").map(Number);
  const rows: Record<string, number>[] = [];
  const self = fileURLToPath(import.meta.url);
  for (const size of sizes) {
    const pass = process.argv.slice(2).filter((_, i, a) => a[i - 1] !== "--sizes" && a[i] !== "--sizes");
    const r = spawnSync(process.execPath, ["--import", "tsx", self, "--child", String(size), ...pass], { encoding: "utf8", maxBuffer: 1 << 24 });
    if (r.status !== 0) {
      process.stderr.write(`size ${size} failed (exit ${r.status}): ${r.stderr.slice(-2000)}\n`);
      continue;
    }
    const row = JSON.parse(r.stdout.trim().split("\n").pop()!) as Record<string, number>;
    rows.push(row);
    process.stderr.write(`size ${size}: ${JSON.stringify(row)}\n`);
  }
  console.table(rows);
}

await main();
