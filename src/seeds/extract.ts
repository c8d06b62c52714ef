import { createReadStream, createWriteStream, mkdirSync, renameSync, rmSync, writeFileSync, type WriteStream } from "node:fs";
import { createInterface } from "node:readline";
import { dirname, isAbsolute, join, relative, resolve } from "node:path";
import { ConfigError, InterruptedError } from "../errors.ts";
import type { Embedder } from "../embed/types.ts";
import { mulberry32 } from "../util/random.ts";
import { CosineLshIndex } from "../validate/lsh.ts";
import { BloomFilter, TrigramMatcher, UniformReservoir, WeightedReservoir, createHashedEmbedder, hash32 } from "./sketch.ts";
import { listSources, openSource, type BlockStats, type SourceFile } from "./sources.ts";
import { dedupKey, filterSentence, sentenceSegmenter, splitSentences, type FilterReason } from "./text.ts";

/**
 * `rankchain seeds`: documents → seed sentences that cover the corpus, plus held-out sentences.
 *
 * One streaming pass: files → paragraphs (markup stripped) → sentences (Intl.Segmenter) → filters →
 * exact duplicates (a fixed-size Bloom filter) → holdout split (a hash of the sentence, so every copy
 * of a sentence falls on the same side) → a bounded reservoir of candidates (uniform, or with
 * `bySource` equal weight per file). Memory is the reservoir, one paragraph and the Bloom filter,
 * whatever the corpus size. Then the pool is embedded, near duplicates are dropped with the cosine
 * LSH index, and `sample` seeds are picked by k-center greedy (each new seed is the candidate
 * farthest from the seeds picked so far; with `bySource`, from the least represented file). Held-out
 * sentences that are near copies of a chosen seed are dropped, so validate's `--holdout` check
 * measures the generator, not the split.
 */
export interface SeedsOptions {
  /** Files or folders of .txt, .md, .html, .jsonl, .csv/.tsv. */
  from: string[];
  /** seeds.jsonl to write: {"text", "source": {"file", "line"}} per line. */
  out: string;
  /** Held-out sentences (one per line; validate --holdout reads it). Default: holdout.txt beside `out`. */
  holdoutOut?: string;
  /** Share of (distinct, filtered) sentences held out, 0..0.9 (default 0.1). */
  holdout?: number;
  /** How many seeds to pick (default 100). */
  sample?: number;
  /** Candidates kept for selection (default max(1000, 20 × sample)). */
  pool?: number;
  /** Balance seeds across source files. */
  bySource?: boolean;
  /** BCP-47 locale for sentence splitting (default "en"). */
  lang?: string;
  /** JSONL: field holding the text (default "text"). */
  field?: string;
  /** CSV/TSV: column holding the text (default "text"). */
  column?: string;
  minWords?: number;
  maxWords?: number;
  /** Cosine at or above which two pool sentences are near duplicates (default 0.95). */
  nearDup?: number;
  /** Char-trigram cosine at or above which a held-out sentence copies a seed (default 0.8). */
  holdoutNearSeed?: number;
  /** Embedder for near duplicates and coverage; "hashed" = char trigrams, no model. Ignored when `embedderInstance` is given. */
  embedder?: string;
  embedderInstance?: Embedder;
  batchSize?: number;
  /** Bloom filter size for exact duplicates (default 32 MB: ~0.1% false "duplicate" at 20M sentences). */
  dedupMemoryMb?: number;
  seed?: number;
  signal?: AbortSignal;
  onProgress?: (event: SeedsProgress) => void;
}

export type SeedsProgress =
  | { phase: "list"; files: number; bytes: number }
  | { phase: "read"; done: number; total: number; unit: "bytes"; file: string; sentences: number }
  | { phase: "embed"; done: number; total: number; unit: "sentences" }
  | { phase: "select"; done: number; total: number; unit: "seeds" }
  | { phase: "holdout"; done: number; unit: "sentences" };

export interface SeedRecord {
  text: string;
  source: { file: string; line: number };
}

export interface SeedsSummary {
  out: string;
  holdout_out: string | null;
  files: number;
  skipped_files: number;
  bytes: number;
  paragraphs: number;
  sentences: number;
  filtered: Record<FilterReason, number>;
  dropped_lines: BlockStats;
  exact_duplicates: number;
  dedup_false_positive_rate: number;
  distinct: number;
  holdout: number;
  holdout_dropped_near_seed: number;
  pool: number;
  near_duplicates: number;
  seeds: number;
  seed_sources: number;
  embedder: string;
  selection: "k-center" | "k-center-by-source";
}

interface Candidate {
  text: string;
  file: string;
  line: number;
}

function check(cond: boolean, flag: string, message: string): void {
  if (!cond) throw new ConfigError(`${flag}: ${message}`);
}

function displayPath(p: string): string {
  const rel = relative(process.cwd(), p);
  return rel === "" || rel.startsWith("..") || isAbsolute(rel) ? p : rel;
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new InterruptedError("seed extraction aborted", { cause: signal.reason });
}

async function write(stream: WriteStream, text: string): Promise<void> {
  if (!stream.write(text)) await new Promise<void>((r) => stream.once("drain", () => r()));
}

async function close(stream: WriteStream): Promise<void> {
  await new Promise<void>((res, rej) => stream.end((e?: Error | null) => (e ? rej(e) : res())));
}

export async function extractSeeds(options: SeedsOptions): Promise<SeedsSummary> {
  const o = {
    holdout: options.holdout ?? 0.1,
    sample: options.sample ?? 100,
    bySource: options.bySource ?? false,
    lang: options.lang ?? "en",
    field: options.field ?? "text",
    column: options.column ?? "text",
    minWords: options.minWords ?? 5,
    maxWords: options.maxWords ?? 60,
    nearDup: options.nearDup ?? 0.95,
    holdoutNearSeed: options.holdoutNearSeed ?? 0.8,
    batchSize: options.batchSize ?? 64,
    dedupMemoryMb: options.dedupMemoryMb ?? 32,
    seed: options.seed ?? 0,
  };
  const pool = options.pool ?? Math.max(1000, 20 * o.sample);
  check(options.from.length > 0, "--from", "give at least one file or folder");
  check(o.holdout >= 0 && o.holdout <= 0.9, "--holdout", `expects a fraction in 0..0.9, got ${o.holdout}`);
  check(Number.isInteger(o.sample) && o.sample >= 1, "--sample", `expects an integer >= 1, got ${o.sample}`);
  check(Number.isInteger(pool) && pool >= o.sample, "--pool", `expects an integer >= --sample (${o.sample}), got ${pool}`);
  check(Number.isInteger(o.minWords) && o.minWords >= 1, "--min-words", `expects an integer >= 1, got ${o.minWords}`);
  check(Number.isInteger(o.maxWords) && o.maxWords >= o.minWords, "--max-words", `expects an integer >= --min-words (${o.minWords}), got ${o.maxWords}`);
  check(o.nearDup > 0 && o.nearDup <= 1, "--near-dup", `expects a cosine in (0, 1], got ${o.nearDup}`);
  check(o.dedupMemoryMb > 0 && o.dedupMemoryMb <= 4096, "--dedup-memory-mb", `expects 0 < MB <= 4096, got ${o.dedupMemoryMb}`);
  let segmenter: Intl.Segmenter;
  try {
    segmenter = sentenceSegmenter(o.lang);
  } catch (e) {
    throw new ConfigError(`--lang: not a usable locale "${o.lang}" (${(e as Error).message})`);
  }

  const out = resolve(options.out);
  const holdoutOut = o.holdout > 0 ? resolve(options.holdoutOut ?? join(dirname(out), "holdout.txt")) : null;
  check(holdoutOut !== out, "--holdout-out", "must differ from --out");
  const { files, skipped } = await listSources(options.from);
  if (files.length === 0) throw new ConfigError(`no .txt, .md, .html, .jsonl or .csv files under ${options.from.join(", ")}`);
  const totalBytes = files.reduce((s, f) => s + f.bytes, 0);
  options.onProgress?.({ phase: "list", files: files.length, bytes: totalBytes });

  throwIfAborted(options.signal);
  mkdirSync(dirname(out), { recursive: true });
  const holdoutTmp = holdoutOut ? holdoutOut + ".partial" : null;
  if (holdoutOut) mkdirSync(dirname(holdoutOut), { recursive: true });
  const holdoutStream = holdoutTmp ? createWriteStream(holdoutTmp, { encoding: "utf8" }) : null;

  const rand = mulberry32(o.seed ^ 0x5eed5);
  const bloom = new BloomFilter(o.dedupMemoryMb * 1024 * 1024);
  const reservoir = new WeightedReservoir<Candidate>(pool, rand);
  const holdoutThreshold = Math.floor(o.holdout * 2 ** 32);
  const holdoutSalt = hash32(`holdout:${o.seed}`);
  const filtered: Record<FilterReason, number> = { too_short: 0, too_long: 0, boilerplate: 0, code: 0, table: 0, non_letter: 0 };
  const blocks: BlockStats = { code_lines: 0, table_lines: 0 };
  let paragraphs = 0;
  let sentences = 0;
  let exactDup = 0;
  let distinct = 0;
  let held = 0;
  let bytesBefore = 0;

  try {
    for (const file of files) {
      throwIfAborted(options.signal);
      const shown = displayPath(file.path);
      const local = o.bySource ? new UniformReservoir<Candidate>(pool, rand) : undefined;
      const { stream, paragraphs: paras } = openSource(file, { field: o.field, column: o.column }, blocks);
      let lastReport = 0;
      try {
        for await (const p of paras) {
          paragraphs++;
          for (const s of splitSentences(p, segmenter)) {
            sentences++;
            const reason = filterSentence(s.text, o);
            if (reason) {
              filtered[reason]++;
              continue;
            }
            const key = dedupKey(s.text);
            if (!bloom.addIfNew(key)) {
              exactDup++;
              continue;
            }
            distinct++;
            if (holdoutStream && hash32(key, holdoutSalt) < holdoutThreshold) {
              held++;
              await write(holdoutStream, s.text.replace(/\s+/g, " ") + "\n");
              continue;
            }
            const c = { text: s.text.replace(/\s+/g, " "), file: shown, line: s.line };
            if (local) local.offer(c);
            else reservoir.offer(c);
          }
          if (options.onProgress && stream.bytesRead - lastReport >= 1 << 20) {
            lastReport = stream.bytesRead;
            options.onProgress({ phase: "read", done: bytesBefore + stream.bytesRead, total: totalBytes, unit: "bytes", file: shown, sentences });
            throwIfAborted(options.signal);
          }
        }
      } finally {
        stream.destroy();
      }
      // by source: every file gets the same total weight in the pool, whatever its size
      if (local) for (const c of local.items) reservoir.offer(c, 1 / local.items.length);
      bytesBefore += file.bytes;
      options.onProgress?.({ phase: "read", done: bytesBefore, total: totalBytes, unit: "bytes", file: shown, sentences });
    }
    if (holdoutStream) await close(holdoutStream);
  } catch (e) {
    if (holdoutStream) {
      // let a pending open finish before removing the file, so nothing is left behind
      const closed = new Promise<void>((r) => holdoutStream.once("close", () => r()));
      holdoutStream.destroy();
      await closed;
    }
    if (holdoutTmp) rmSync(holdoutTmp, { force: true });
    throw e;
  }

  // ---- pool: embed, drop near duplicates, pick covering seeds
  const candidates = reservoir.items().sort((a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : a.line - b.line));
  if (candidates.length === 0) {
    if (holdoutTmp) rmSync(holdoutTmp, { force: true });
    throw new ConfigError(
      `no seed candidates left after filtering (${sentences} sentences; filtered ${JSON.stringify(filtered)}, ${exactDup} duplicates, ${held} held out); check --min-words/--max-words, --field/--column`,
    );
  }
  const ownEmbedder = !options.embedderInstance;
  const embedder = options.embedderInstance ?? (await openEmbedder(options.embedder ?? "all-MiniLM-L6-v2", o.batchSize));
  let vectors: Float32Array[] = [];
  try {
    for (let i = 0; i < candidates.length; i += o.batchSize) {
      throwIfAborted(options.signal);
      vectors.push(...(await embedder.embed(candidates.slice(i, i + o.batchSize).map((c) => c.text))));
      options.onProgress?.({ phase: "embed", done: Math.min(candidates.length, i + o.batchSize), total: candidates.length, unit: "sentences" });
    }
  } finally {
    if (ownEmbedder) await embedder.dispose();
  }
  const dims = vectors[0]!.length;
  const lsh = new CosineLshIndex<number>({ dimensions: dims, seed: o.seed + 1 });
  const kept: number[] = [];
  let nearDup = 0;
  for (let i = 0; i < candidates.length; i++) {
    if (lsh.nearestOrAdd(i, vectors[i]!, o.nearDup)) nearDup++;
    else kept.push(i);
  }
  const keptCandidates = kept.map((i) => candidates[i]!);
  vectors = kept.map((i) => unit(vectors[i]!));
  const picked = kCenterGreedy(vectors, Math.min(o.sample, keptCandidates.length), o.bySource ? keptCandidates.map((c) => c.file) : undefined, (done, total) =>
    options.onProgress?.({ phase: "select", done, total, unit: "seeds" }),
  );
  const seeds: SeedRecord[] = picked
    .map((i) => keptCandidates[i]!)
    .sort((a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : a.line - b.line))
    .map((c) => ({ text: c.text, source: { file: c.file, line: c.line } }));
  const tmp = out + ".partial";
  writeFileSync(tmp, seeds.map((s) => JSON.stringify(s)).join("\n") + "\n");
  renameSync(tmp, out);

  // ---- holdout: drop near copies of the chosen seeds
  let droppedNearSeed = 0;
  if (holdoutOut && holdoutTmp) {
    const matcher = new TrigramMatcher(seeds.map((s) => s.text));
    const final = createWriteStream(holdoutOut + ".tmp", { encoding: "utf8" });
    let n = 0;
    const rl = createInterface({ input: createReadStream(holdoutTmp, { encoding: "utf8" }), crlfDelay: Infinity });
    for await (const line of rl) {
      if (line === "") continue;
      if (matcher.best(line).cosine >= o.holdoutNearSeed) {
        droppedNearSeed++;
        continue;
      }
      await write(final, line + "\n");
      if (++n % 100_000 === 0) options.onProgress?.({ phase: "holdout", done: n, unit: "sentences" });
    }
    await close(final);
    renameSync(holdoutOut + ".tmp", holdoutOut);
    rmSync(holdoutTmp, { force: true });
  }

  return {
    out,
    holdout_out: holdoutOut,
    files: files.length,
    skipped_files: skipped,
    bytes: totalBytes,
    paragraphs,
    sentences,
    filtered,
    dropped_lines: blocks,
    exact_duplicates: exactDup,
    dedup_false_positive_rate: Number(bloom.falsePositiveRate().toExponential(2)),
    distinct,
    holdout: held - droppedNearSeed,
    holdout_dropped_near_seed: droppedNearSeed,
    pool: candidates.length,
    near_duplicates: nearDup,
    seeds: seeds.length,
    seed_sources: new Set(seeds.map((s) => s.source.file)).size,
    embedder: embedder.info.id,
    selection: o.bySource ? "k-center-by-source" : "k-center",
  };
}

async function openEmbedder(spec: string, batchSize: number): Promise<Embedder> {
  if (spec === "hashed") return createHashedEmbedder();
  const { createEmbedder } = await import("../embed/index.ts");
  return createEmbedder(spec, { batchSize });
}

function unit(v: Float32Array): Float32Array {
  let n = 0;
  for (let i = 0; i < v.length; i++) n += v[i]! * v[i]!;
  n = Math.sqrt(n);
  if (n === 0 || Math.abs(n - 1) < 1e-6) return v;
  const u = new Float32Array(v.length);
  for (let i = 0; i < v.length; i++) u[i] = v[i]! / n;
  return u;
}

/**
 * k-center greedy over unit vectors (distance 1 − cosine): start at the vector closest to the mean,
 * then repeatedly add the vector farthest from everything picked so far. With `groups`, each pick
 * comes from the groups picked least often so far (among groups with candidates left), so every
 * group is covered before any gets a second seed. Returns indexes in pick order.
 */
export function kCenterGreedy(vectors: readonly Float32Array[], k: number, groups?: readonly string[], onPick?: (done: number, total: number) => void): number[] {
  const n = vectors.length;
  if (n === 0 || k <= 0) return [];
  const d = vectors[0]!.length;
  const flat = new Float32Array(n * d);
  vectors.forEach((v, i) => flat.set(v, i * d));
  const mean = new Float32Array(d);
  for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) mean[j]! += flat[i * d + j]!;
  const minDist = new Float64Array(n).fill(Infinity);
  const taken = new Uint8Array(n);
  // groups as small integers, so the balancing test in the inner loop is an array read
  const groupOf = new Int32Array(n);
  const groupIds = new Map<string, number>();
  if (groups) groups.forEach((g, i) => (groupOf[i] = groupIds.get(g) ?? groupIds.set(g, groupIds.size).get(g)!));
  const groupCount = new Int32Array(Math.max(1, groupIds.size));
  const groupLeft = new Int32Array(Math.max(1, groupIds.size));
  if (groups) for (let i = 0; i < n; i++) groupLeft[groupOf[i]!]!++;
  const picked: number[] = [];
  const want = Math.min(k, n);
  while (picked.length < want) {
    let least = 0;
    if (groups) {
      least = Infinity;
      for (let g = 0; g < groupLeft.length; g++) if (groupLeft[g]! > 0) least = Math.min(least, groupCount[g]!);
    }
    let best = -1;
    let bestScore = -Infinity;
    for (let i = 0; i < n; i++) {
      if (taken[i] || (groups && groupCount[groupOf[i]!] !== least)) continue;
      let score: number;
      if (picked.length === 0) {
        // first pick: the most typical vector
        score = 0;
        for (let j = 0, o = i * d; j < d; j++) score += flat[o + j]! * mean[j]!;
      } else score = minDist[i]!; // later: the farthest from the picked set
      if (score > bestScore) {
        bestScore = score;
        best = i;
      }
    }
    if (best < 0) break;
    taken[best] = 1;
    picked.push(best);
    if (groups) {
      groupCount[groupOf[best]!]!++;
      groupLeft[groupOf[best]!]!--;
    }
    const c = best * d;
    for (let i = 0; i < n; i++) {
      if (taken[i]) continue;
      let dot = 0;
      for (let j = 0, o = i * d; j < d; j++) dot += flat[o + j]! * flat[c + j]!;
      const dist = 1 - dot;
      if (dist < minDist[i]!) minDist[i] = dist;
    }
    onPick?.(picked.length, want);
  }
  return picked;
}
