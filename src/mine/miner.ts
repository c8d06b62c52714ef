import { mkdirSync, renameSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import type { Embedder, EmbedderInfo } from "../embed/types.ts";
import { ConfigError } from "../errors.ts";
import { exactTopK, normalizeRows, rowDot, type Neighbours } from "../vector/topk.ts";
import { DEFAULT_HNSW, HnswIndex, type HnswOptions } from "../vector/ann.ts";
import type { CorpusLine, MineChain } from "./chains.ts";
import { DEFAULT_RRF_K, fuse, guardTrips, type CandidateScores, type Fusion } from "./fusion.ts";

/**
 * Hard-negative mining with an ensemble of embedders (DESIGN.md, "Related methods").
 *
 * For every chain one (query, positive) pair: `first-step` = (anchor, step 1), `anchor` = (step 1,
 * anchor). Candidates are every other chain's sentences, the far steps of the same chain (position
 * >= farFrom) and the --corpus lines; the query, the positive and the same chain's near steps are
 * never candidates (they are related by design). Each embedder retrieves its top-k (exact search up
 * to `exactMax` pool texts, an HNSW index above), the union is scored by every embedder, the
 * positive-aware guard drops any candidate that some embedder scores above guard × its score of
 * the positive (a likely false negative), and the rest are fused (rrf or mean); the best
 * groupSize − 1 become the group's negatives.
 */
export const POSITIVE_MODES = ["first-step", "anchor"] as const;
export type PositiveMode = (typeof POSITIVE_MODES)[number];

export interface MineOptions {
  chains: MineChain[];
  corpus?: CorpusLine[];
  embedders: Embedder[];
  /** Per-embedder retrieval depth (default 50). */
  topK?: number;
  /** 1 positive + groupSize − 1 negatives (default 8). */
  groupSize?: number;
  fusion?: Fusion;
  rrfK?: number;
  /** Drop a candidate scored above guard × the positive's score by any embedder; null = no guard (default 0.95). */
  guard?: number | null;
  positive?: PositiveMode;
  /** Steps of the query's own chain at this position or later are candidates (default 3). */
  farFrom?: number;
  /** Pools up to this many texts are searched exactly; larger ones through HNSW (default 20000). */
  exactMax?: number;
  hnsw?: HnswOptions;
  /** Samples kept per drop rule in mine.json (default 5). */
  samples?: number;
  onPhase?: (message: string) => void;
}

export const MINE_DEFAULTS = Object.freeze({
  topK: 50,
  groupSize: 8,
  fusion: "rrf" as Fusion,
  rrfK: DEFAULT_RRF_K,
  guard: 0.95 as number | null,
  positive: "first-step" as PositiveMode,
  farFrom: 3,
  exactMax: 20_000,
  samples: 5,
});

export type CandidateSource =
  | { kind: "chain"; chain_id: string; position: number }
  | { kind: "same_chain"; chain_id: string; position: number }
  | { kind: "corpus"; line: number };

export interface GroupNegative {
  text: string;
  source: CandidateSource;
  fused: number;
  /** Cosine to the query under each embedder id. */
  scores: Record<string, number>;
  /** 1-based rank in each embedder's top-k (after exclusions), null where not retrieved. */
  ranks: Record<string, number | null>;
}

/** One line of groups.jsonl. */
export interface GroupRecord {
  id: string;
  chain_id: string;
  query: string;
  positive: string;
  positive_scores: Record<string, number>;
  negatives: GroupNegative[];
}

export interface DropSample {
  chain_id: string;
  query: string;
  positive: string;
  candidate: string;
  embedder?: string;
  score?: number;
  positive_score?: number;
  threshold?: number;
}

export interface MineSummary {
  format_version: 1;
  embedders: EmbedderInfo[];
  settings: {
    top_k: number;
    group_size: number;
    fusion: Fusion;
    rrf_k: number;
    guard: number | null;
    positive: PositiveMode;
    far_from: number;
    exact_max: number;
    hnsw: Required<HnswOptions>;
  };
  pool: { texts: number; chain_sentences: number; corpus_lines: number; duplicate_texts: number };
  index: Record<string, "exact" | "hnsw">;
  queries: number;
  groups: number;
  skipped: { too_few_negatives: number };
  dropped: {
    self_or_same_chain: { count: number; samples: DropSample[] };
    guard: { count: number; by_embedder: Record<string, number>; samples: DropSample[] };
  };
  not_selected: number;
  negatives_by_source: { chain: number; same_chain: number; corpus: number };
  seconds: { embed: Record<string, number>; index: Record<string, number>; search: Record<string, number>; fuse: number; total: number };
  conventions: Record<string, string>;
}

export interface MineResult {
  groups: GroupRecord[];
  summary: MineSummary;
}

interface TextEntry {
  text: string;
  /** (chain index, position) of every occurrence in a chain. */
  chains: [number, number][];
  corpusLine?: number;
}

function now(): number {
  return performance.now() / 1000;
}

function checkInt(name: string, v: number, min: number): number {
  if (!Number.isInteger(v) || v < min) throw new ConfigError(`${name} must be an integer >= ${min}, got ${v}`);
  return v;
}

/** Embeds every pool text with one embedder into a flat, L2-normalised matrix. */
async function embedPool(embedder: Embedder, texts: string[]): Promise<{ matrix: Float32Array; dimensions: number }> {
  const vectors = await embedder.embed(texts);
  if (vectors.length !== texts.length) throw new Error(`${embedder.info.id} returned ${vectors.length} vectors for ${texts.length} texts`);
  const d = vectors[0]?.length ?? 0;
  if (d === 0) throw new Error(`${embedder.info.id} returned empty vectors`);
  const matrix = new Float32Array(texts.length * d);
  for (let i = 0; i < vectors.length; i++) {
    if (vectors[i]!.length !== d) throw new Error(`${embedder.info.id} returned vectors of different dimensions (${d} and ${vectors[i]!.length})`);
    matrix.set(vectors[i]!, i * d);
  }
  return { matrix: normalizeRows(matrix, d), dimensions: d };
}

export async function mineHardNegatives(options: MineOptions): Promise<MineResult> {
  const started = now();
  const topK = checkInt("--top-k", options.topK ?? MINE_DEFAULTS.topK, 1);
  const groupSize = checkInt("--group-size", options.groupSize ?? MINE_DEFAULTS.groupSize, 2);
  const farFrom = checkInt("--far-from", options.farFrom ?? MINE_DEFAULTS.farFrom, 1);
  const exactMax = checkInt("--exact-max", options.exactMax ?? MINE_DEFAULTS.exactMax, 0);
  const nSamples = options.samples ?? MINE_DEFAULTS.samples;
  const fusion = options.fusion ?? MINE_DEFAULTS.fusion;
  const rrfK = options.rrfK ?? MINE_DEFAULTS.rrfK;
  const guard = options.guard === undefined ? MINE_DEFAULTS.guard : options.guard;
  const positiveMode = options.positive ?? MINE_DEFAULTS.positive;
  const hnsw = { ...DEFAULT_HNSW, ...options.hnsw };
  if (guard !== null && (!Number.isFinite(guard) || guard <= 0)) throw new ConfigError(`--guard must be a number > 0 (or "off"), got ${guard}`);
  if (groupSize - 1 > topK) throw new ConfigError(`--group-size ${groupSize} needs ${groupSize - 1} negatives but --top-k is ${topK}; raise --top-k`);
  if (options.embedders.length === 0) throw new ConfigError("--embedders names no embedder");
  const ids = options.embedders.map((e) => e.info.id);
  if (new Set(ids).size !== ids.length) throw new ConfigError(`--embedders lists the same embedder twice (${ids.join(", ")})`);
  const phase = options.onPhase ?? (() => undefined);

  // --- the pool: every chain sentence and corpus line, each unique text once
  const chains = options.chains;
  const entries: TextEntry[] = [];
  const byText = new Map<string, number>();
  let chainSentences = 0;
  const intern = (text: string): TextEntry & { id: number } => {
    let id = byText.get(text);
    if (id === undefined) {
      id = entries.length;
      byText.set(text, id);
      entries.push({ text, chains: [] });
    }
    return Object.assign(entries[id]!, { id });
  };
  const chainTextIds: number[][] = chains.map((c, ci) =>
    c.sentences.map((s, pos) => {
      chainSentences++;
      const e = intern(s);
      e.chains.push([ci, pos]);
      return e.id;
    }),
  );
  const corpus = options.corpus ?? [];
  for (const line of corpus) {
    const e = intern(line.text);
    if (e.corpusLine === undefined) e.corpusLine = line.line;
  }
  const texts = entries.map((e) => e.text);
  const poolSize = texts.length;

  // --- queries: one (query, positive) per chain with at least one step
  interface Query {
    chain: number;
    query: number;
    positive: number;
    near: Set<number>;
  }
  const queries: Query[] = [];
  for (let ci = 0; ci < chains.length; ci++) {
    const tids = chainTextIds[ci]!;
    if (tids.length < 2) continue;
    const [q, p] = positiveMode === "first-step" ? [tids[0]!, tids[1]!] : [tids[1]!, tids[0]!];
    const near = new Set<number>(tids.slice(0, Math.min(farFrom, tids.length)));
    near.add(q);
    near.add(p);
    // a far step whose text equals the query or the positive is not a candidate either
    queries.push({ chain: ci, query: q, positive: p, near });
  }
  const maxNear = queries.reduce((m, q) => Math.max(m, q.near.size), 0);
  const retrieve = Math.min(poolSize, topK + maxNear);

  // --- each embedder: embed, index, retrieve
  const E = options.embedders.length;
  const matrices: { matrix: Float32Array; dimensions: number }[] = [];
  const lists: Neighbours[][] = [];
  const seconds: MineSummary["seconds"] = { embed: {}, index: {}, search: {}, fuse: 0, total: 0 };
  const indexKind: Record<string, "exact" | "hnsw"> = {};
  for (const emb of options.embedders) {
    const id = emb.info.id;
    phase(`embedding ${poolSize} texts with ${id}`);
    let t = now();
    const m = await embedPool(emb, texts);
    seconds.embed[id] = round(now() - t);
    matrices.push(m);
    const qm = new Float32Array(queries.length * m.dimensions);
    queries.forEach((q, i) => qm.set(m.matrix.subarray(q.query * m.dimensions, (q.query + 1) * m.dimensions), i * m.dimensions));
    if (poolSize <= exactMax) {
      indexKind[id] = "exact";
      seconds.index[id] = 0;
      t = now();
      lists.push(queries.length ? exactTopK(m.matrix, qm, m.dimensions, retrieve) : []);
      seconds.search[id] = round(now() - t);
    } else {
      indexKind[id] = "hnsw";
      phase(`building an HNSW index of ${poolSize} vectors for ${id}`);
      t = now();
      const index = await HnswIndex.build(m.matrix, m.dimensions, hnsw);
      seconds.index[id] = round(now() - t);
      t = now();
      lists.push(index.search(qm, retrieve));
      seconds.search[id] = round(now() - t);
    }
  }

  // --- per query: exclusions, union, every embedder's scores, guard, fusion, selection
  const t0 = now();
  const dropped: MineSummary["dropped"] = {
    self_or_same_chain: { count: 0, samples: [] },
    guard: { count: 0, by_embedder: Object.fromEntries(ids.map((i) => [i, 0])), samples: [] },
  };
  const bySource = { chain: 0, same_chain: 0, corpus: 0 };
  let tooFew = 0;
  let notSelected = 0;
  const groups: GroupRecord[] = [];
  const sourceOf = (tid: number, chainIdx: number): CandidateSource => {
    const e = entries[tid]!;
    const own = e.chains.find(([c]) => c === chainIdx);
    if (own) return { kind: "same_chain", chain_id: chains[chainIdx]!.id, position: own[1] };
    const other = e.chains[0];
    if (other) return { kind: "chain", chain_id: chains[other[0]]!.id, position: other[1] };
    return { kind: "corpus", line: e.corpusLine ?? 0 };
  };
  queries.forEach((q, qi) => {
    const chainId = chains[q.chain]!.id;
    const sample = (extra: Partial<DropSample>, candidate: number): DropSample => ({
      chain_id: chainId,
      query: texts[q.query]!,
      positive: texts[q.positive]!,
      candidate: texts[candidate]!,
      ...extra,
    });
    const ranks = new Map<number, (number | null)[]>();
    const excludedSeen = new Set<number>();
    for (let e = 0; e < E; e++) {
      const list = lists[e]![qi]!;
      let kept = 0;
      for (let j = 0; j < list.ids.length && kept < topK; j++) {
        const tid = list.ids[j]!;
        if (q.near.has(tid)) {
          if (!excludedSeen.has(tid)) {
            excludedSeen.add(tid);
            dropped.self_or_same_chain.count++;
            if (dropped.self_or_same_chain.samples.length < nSamples && tid !== q.query && tid !== q.positive) {
              dropped.self_or_same_chain.samples.push(sample({ embedder: ids[e]! }, tid));
            }
          }
          continue;
        }
        kept++;
        let r = ranks.get(tid);
        if (!r) ranks.set(tid, (r = new Array<number | null>(E).fill(null)));
        r[e] = kept;
      }
    }
    const positiveScores = matrices.map((m) => rowDot(m.matrix, q.query, m.matrix, q.positive, m.dimensions));
    const candidates: CandidateScores[] = [];
    for (const [tid, r] of ranks) {
      const scores = matrices.map((m) => rowDot(m.matrix, q.query, m.matrix, tid, m.dimensions));
      if (guard !== null) {
        const e = guardTrips(scores, positiveScores, guard);
        if (e >= 0) {
          dropped.guard.count++;
          dropped.guard.by_embedder[ids[e]!]!++;
          if (dropped.guard.samples.length < nSamples) {
            dropped.guard.samples.push(
              sample({ embedder: ids[e]!, score: round6(scores[e]!), positive_score: round6(positiveScores[e]!), threshold: round6(guard * positiveScores[e]!) }, tid),
            );
          }
          continue;
        }
      }
      candidates.push({ id: tid, scores, ranks: r });
    }
    const fused = fuse(candidates, fusion, rrfK);
    const need = groupSize - 1;
    if (fused.length < need) {
      tooFew++;
      return;
    }
    notSelected += fused.length - need;
    const negatives: GroupNegative[] = fused.slice(0, need).map((c) => {
      const source = sourceOf(c.id, q.chain);
      bySource[source.kind]++;
      return {
        text: texts[c.id]!,
        source,
        fused: round6(c.fused),
        scores: Object.fromEntries(ids.map((id, e) => [id, round6(c.scores[e]!)])),
        ranks: Object.fromEntries(ids.map((id, e) => [id, c.ranks[e]!])),
      };
    });
    groups.push({
      id: `${chainId}:${positiveMode}`,
      chain_id: chainId,
      query: texts[q.query]!,
      positive: texts[q.positive]!,
      positive_scores: Object.fromEntries(ids.map((id, e) => [id, round6(positiveScores[e]!)])),
      negatives,
    });
  });
  seconds.fuse = round(now() - t0);
  seconds.total = round(now() - started);

  const summary: MineSummary = {
    format_version: 1,
    embedders: options.embedders.map((e) => e.info),
    settings: { top_k: topK, group_size: groupSize, fusion, rrf_k: rrfK, guard, positive: positiveMode, far_from: farFrom, exact_max: exactMax, hnsw },
    pool: { texts: poolSize, chain_sentences: chainSentences, corpus_lines: corpus.length, duplicate_texts: chainSentences + corpus.length - poolSize },
    index: indexKind,
    queries: queries.length,
    groups: groups.length,
    skipped: { too_few_negatives: tooFew },
    dropped,
    not_selected: notSelected,
    negatives_by_source: bySource,
    seconds,
    conventions: {
      query_positive: "first-step: query = anchor, positive = step 1; anchor: query = step 1, positive = anchor",
      candidates: "other chains' sentences, the same chain's steps at position >= far_from, and --corpus lines; each unique text once",
      self_or_same_chain: "retrieved texts that are the query, the positive or a step of the same chain before far_from (counted once per query)",
      guard: "a candidate is dropped when any embedder scores it above guard x that embedder's cosine of the positive (counted once per query and candidate, under the first embedder that trips it)",
      fusion: "rrf: sum over embedders of 1/(rrf_k + rank) where retrieved; mean: mean of every embedder's cosine",
      ranks: "1-based, within each embedder's top_k after exclusions; null = not retrieved by that embedder",
    },
  };
  return { groups, summary };
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}

function round6(x: number): number {
  return Math.round(x * 1e6) / 1e6;
}

/** Writes a file atomically (temp file + rename) so a reader never sees half of it. */
export function writeFileAtomic(path: string, content: string): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, content);
  renameSync(tmp, path);
}

export function groupsToJsonl(groups: readonly GroupRecord[]): string {
  return groups.map((g) => JSON.stringify(g)).join("\n") + (groups.length ? "\n" : "");
}
