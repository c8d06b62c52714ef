import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { ConfigError, InterruptedError } from "../errors.ts";
import type { RerankRecord } from "../eval/rerank.ts";
import { ChainRecordSchema, type ChainRecord } from "../store/chain-record.ts";
import { readJsonl } from "../store/jsonl.ts";
import { readManifest, RUN_FILES } from "../store/run-dir.ts";
import { hash32 } from "../seeds/sketch.ts";
import { datasetCard, type CardConfig } from "./card.ts";

/**
 * `rankchain export RUN_DIR --format … --out DIR`: the kept chains (accepted and repaired, cut at
 * `validation.steps_kept`) as datasets other tools read as they are. Every format writes
 * `<config>/train.jsonl` and `<config>/test.jsonl` (chains whose id hashes below `testFraction`
 * go to test, so the split is stable across exports) and a README.md dataset card whose YAML lists
 * the files, so `datasets.load_dataset(DIR)` loads the folder directly.
 *
 * - `hf`: config `chains` (default): `anchor`, `step_1` … `step_K` (fixed K, so sentence-transformers'
 *   trainer gets K + 1 text columns; shorter chains are left out, longer ones cut), and config
 *   `records`: the full chain records (id, generator, usage, validation).
 * - `st-triplets`: `anchor`, `positive`, `negative` from chain positions (positive earlier in the
 *   chain than negative): `first-last` (step 1 vs the last step), `adjacent` (step i vs i + 1), `all` (every i < j).
 * - `st-scores`: `sentence1`, `sentence2`, `score` in [0, 1] from chain distance: 1 − d / (n + 1)
 *   for sentences d steps apart in a chain of n steps (anchor–step pairs, or every pair with `all`).
 * - `mteb-rerank`: held-out (test) chains as a reranking task (src/eval/rerank.ts): query = anchor,
 *   positive = the first steps, negative = the last steps, graded `positive_relevance`.
 */
export const EXPORT_FORMATS = ["hf", "st-triplets", "st-scores", "mteb-rerank"] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

export interface ExportOptions {
  runDir: string;
  format: ExportFormat;
  out: string;
  /** Share of chains (by id hash) in the test split (default 0.1). */
  testFraction?: number;
  /** Licence of the data for the dataset card (default "other"; say what your generator's terms allow). */
  license?: string;
  /** Read chains.jsonl when the run has no validated.jsonl. */
  allowUnvalidated?: boolean;
  /** hf: steps per chain (default: the K that keeps the most sentences). */
  steps?: number;
  triplets?: "first-last" | "adjacent" | "all";
  scorePairs?: "anchor" | "all";
  /** mteb-rerank: positives per query (default: the first third of the steps, at least 1). */
  positives?: number;
  /** mteb-rerank: negatives per query (default: the last third of the steps, at least 1). */
  negatives?: number;
  /** Replace an existing output folder. */
  overwrite?: boolean;
  signal?: AbortSignal;
  onProgress?: (event: { phase: "read" | "write"; chains: number }) => void;
}

export interface ExportSummary {
  format: ExportFormat;
  out: string;
  source: string;
  chains: { read: number; kept: number; rejected: number; unvalidated: number; too_short: number; train: number; test: number };
  rows: Record<string, { train: number; test: number }>;
  steps?: number;
}

interface KeptChain {
  id: string;
  sentences: string[];
  record: ChainRecord;
  split: "train" | "test";
}

const SPLITS = ["train", "test"] as const;

/** anchor + kept steps of a chain record, or why it is not kept. */
export function keptSentences(r: ChainRecord, allowUnvalidated: boolean): string[] | "rejected" | "unvalidated" {
  if (!r.validation) return allowUnvalidated ? [r.anchor, ...r.steps] : "unvalidated";
  if (r.validation.status === "rejected") return "rejected";
  const kept = (r.validation as { steps_kept?: unknown }).steps_kept;
  const steps = typeof kept === "number" && Number.isInteger(kept) && kept >= 0 ? r.steps.slice(0, kept) : r.steps;
  return [r.anchor, ...steps];
}

/** The test split of `export` (and of bench/rerank): stable per chain id, independent of file order. */
export function testSplit(id: string, fraction: number): boolean {
  return hash32(`split:${id}`) < Math.floor(fraction * 2 ** 32);
}

/** The number of steps that keeps the most sentences when every chain is cut to it (ties: longer). */
export function bestFixedSteps(stepCounts: readonly number[]): number {
  let best = 1;
  let bestSentences = -1;
  const max = Math.max(1, ...stepCounts);
  for (let k = 1; k <= max; k++) {
    const sentences = stepCounts.filter((n) => n >= k).length * (k + 1);
    if (sentences >= bestSentences) {
      best = k;
      bestSentences = sentences;
    }
  }
  return best;
}

function thirds(n: number): number {
  return Math.max(1, Math.ceil(n / 3));
}

export async function exportDataset(options: ExportOptions): Promise<ExportSummary> {
  const runDir = resolve(options.runDir);
  const fraction = options.testFraction ?? 0.1;
  if (!(EXPORT_FORMATS as readonly string[]).includes(options.format)) throw new ConfigError(`--format expects one of ${EXPORT_FORMATS.join(", ")}, got "${options.format}"`);
  if (!(fraction >= 0 && fraction <= 1)) throw new ConfigError(`--test-fraction expects a fraction in 0..1, got ${fraction}`);
  if (options.steps !== undefined && !(Number.isInteger(options.steps) && options.steps >= 1)) throw new ConfigError(`--steps expects an integer >= 1, got ${options.steps}`);
  if (!existsSync(runDir) || !statSync(runDir).isDirectory()) throw new ConfigError("run directory not found", { location: { file: options.runDir } });
  const validated = join(runDir, RUN_FILES.validated);
  const chainsPath = join(runDir, RUN_FILES.chains);
  let source: string;
  if (existsSync(validated)) source = validated;
  else if (options.allowUnvalidated && existsSync(chainsPath)) source = chainsPath;
  else
    throw new ConfigError(
      existsSync(chainsPath) ? "no validated.jsonl: run `rankchain validate` first, or pass --allow-unvalidated to export chains.jsonl" : "no validated.jsonl or chains.jsonl in the run directory",
      { location: { file: options.runDir } },
    );
  const out = resolve(options.out);
  if (existsSync(out) && !options.overwrite && !(statSync(out).isDirectory() && readdirEmpty(out))) {
    throw new ConfigError("output folder exists and is not empty (pass --overwrite to replace it)", { location: { file: options.out } });
  }

  // one streaming pass to read and split; the kept chains are held (they are the dataset)
  const chains: KeptChain[] = [];
  const counts = { read: 0, kept: 0, rejected: 0, unvalidated: 0, too_short: 0, train: 0, test: 0 };
  const seen = new Set<string>();
  for await (const { value, line } of readJsonl(source, ChainRecordSchema)) {
    if (options.signal?.aborted) throw new InterruptedError("export aborted", { cause: options.signal.reason });
    counts.read++;
    if (seen.has(value.id)) throw new ConfigError(`duplicate chain id "${value.id}"`, { location: { file: source, line, field: "id" } });
    seen.add(value.id);
    const s = keptSentences(value, options.allowUnvalidated ?? false);
    if (s === "rejected" || s === "unvalidated") {
      counts[s]++;
      continue;
    }
    if (s.length < 2) {
      counts.too_short++;
      continue;
    }
    const split = testSplit(value.id, fraction) ? "test" : "train";
    counts.kept++;
    counts[split]++;
    chains.push({ id: value.id, sentences: s, record: value, split });
    if (counts.read % 1000 === 0) options.onProgress?.({ phase: "read", chains: counts.read });
  }
  if (chains.length === 0) throw new ConfigError(`no kept chains to export (${counts.read} read: ${counts.rejected} rejected, ${counts.unvalidated} unvalidated, ${counts.too_short} without steps)`, { location: { file: source } });

  const tables = new Map<string, { train: unknown[]; test: unknown[] }>();
  const table = (name: string) => {
    let t = tables.get(name);
    if (!t) tables.set(name, (t = { train: [], test: [] }));
    return t;
  };
  let steps: number | undefined;
  const format = options.format;
  if (format === "hf") {
    steps = options.steps ?? bestFixedSteps(chains.map((c) => c.sentences.length - 1));
    for (const c of chains) {
      table("records")[c.split].push(flatRecord(c));
      if (c.sentences.length - 1 < steps) continue;
      const row: Record<string, string> = { anchor: c.sentences[0]! };
      for (let k = 1; k <= steps; k++) row[`step_${k}`] = c.sentences[k]!;
      table("chains")[c.split].push(row);
    }
    if (table("chains").train.length + table("chains").test.length === 0) throw new ConfigError(`--steps ${steps}: no kept chain has that many steps`);
  } else if (format === "st-triplets") {
    const mode = options.triplets ?? "first-last";
    for (const c of chains) {
      const n = c.sentences.length - 1;
      if (n < 2) continue;
      const pairs: [number, number][] = [];
      if (mode === "first-last") pairs.push([1, n]);
      else if (mode === "adjacent") for (let i = 1; i < n; i++) pairs.push([i, i + 1]);
      else for (let i = 1; i < n; i++) for (let j = i + 1; j <= n; j++) pairs.push([i, j]);
      for (const [i, j] of pairs) table("triplets")[c.split].push({ anchor: c.sentences[0], positive: c.sentences[i], negative: c.sentences[j] });
    }
  } else if (format === "st-scores") {
    const mode = options.scorePairs ?? "anchor";
    for (const c of chains) {
      const n = c.sentences.length - 1;
      const score = (d: number) => Number((1 - d / (n + 1)).toFixed(6));
      for (let i = 0; i <= (mode === "all" ? n : 0); i++)
        for (let j = i + 1; j <= n; j++) table("scores")[c.split].push({ sentence1: c.sentences[i], sentence2: c.sentences[j], score: score(j - i) });
    }
  } else {
    for (const c of chains) {
      if (c.split !== "test") continue;
      const steps = c.sentences.slice(1);
      const n = steps.length;
      if (n < 2) continue;
      const p = Math.min(options.positives ?? thirds(n), n - 1);
      const q = Math.min(options.negatives ?? thirds(n), n - p);
      const rec: RerankRecord = {
        id: c.id,
        query: c.sentences[0]!,
        positive: steps.slice(0, p),
        negative: steps.slice(n - q),
        positive_relevance: steps.slice(0, p).map((_, i) => p - i),
      };
      table("rerank").test.push(rec);
    }
    if (table("rerank").test.length === 0) {
      throw new ConfigError(`no held-out chain with 2+ steps for mteb-rerank (${counts.test} test chains at --test-fraction ${fraction}); raise --test-fraction`);
    }
  }

  // write into a temporary folder, then move it into place
  const tmp = out + ".partial";
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  const rows: ExportSummary["rows"] = {};
  const configs: CardConfig[] = [];
  for (const [name, t] of tables) {
    mkdirSync(join(tmp, name), { recursive: true });
    const files: CardConfig["files"] = [];
    for (const split of SPLITS) {
      if (t[split].length === 0) continue;
      const path = `${name}/${split}.jsonl`;
      writeFileSync(join(tmp, path), t[split].map((r) => JSON.stringify(r)).join("\n") + "\n");
      files.push({ split, path, rows: t[split].length });
    }
    rows[name] = { train: t.train.length, test: t.test.length };
    configs.push({ name, files, columns: columnsOf(t.train[0] ?? t.test[0]) });
    options.onProgress?.({ phase: "write", chains: chains.length });
  }
  const defaultConfig = format === "hf" ? "chains" : configs[0]!.name;
  configs.sort((a, b) => (a.name === defaultConfig ? -1 : b.name === defaultConfig ? 1 : 0));
  writeFileSync(
    join(tmp, "README.md"),
    datasetCard({
      format,
      configs,
      defaultConfig,
      license: options.license ?? "other",
      manifest: readManifest(runDir),
      validation: readJsonIfPresent(join(runDir, RUN_FILES.validation)),
      chains: chains.map((c) => c.record),
      counts,
      steps,
      options: { testFraction: fraction, triplets: options.triplets ?? "first-last", scorePairs: options.scorePairs ?? "anchor" },
    }),
  );
  if (existsSync(out)) rmSync(out, { recursive: true, force: true });
  renameSync(tmp, out);
  return { format, out, source, chains: counts, rows, ...(steps !== undefined ? { steps } : {}) };
}

/**
 * One row of the `records` config with the same columns on every row (Arrow needs one schema per
 * column across files; chain records differ in optional fields), plus the whole record as JSON.
 */
function flatRecord(c: KeptChain): Record<string, unknown> {
  const r = c.record;
  const v = r.validation;
  const num = (x: unknown) => (typeof x === "number" && Number.isFinite(x) ? x : null);
  return {
    id: r.id,
    anchor: c.sentences[0],
    steps: c.sentences.slice(1),
    provider: r.generator.provider,
    model: r.generator.model,
    steering: r.generator.steering,
    guidance: num(r.generator.guidance),
    prompt: r.generator.prompt,
    prompt_version: String(r.generator.prompt_version),
    usd: r.usage.usd,
    input_tokens: r.usage.input_tokens,
    output_tokens: r.usage.output_tokens,
    status: v?.status ?? null,
    spearman: num(v?.spearman),
    sims_to_anchor: v ? v.sims_to_anchor.slice(0, c.sentences.length - 1) : [],
    reasons: v?.reasons ?? [],
    record_json: JSON.stringify(r),
  };
}

function columnsOf(row: unknown): string[] {
  return row && typeof row === "object" ? Object.keys(row) : [];
}

function readdirEmpty(dir: string): boolean {
  return readdirSync(dir).length === 0;
}

function readJsonIfPresent(path: string): Record<string, unknown> | undefined {
  if (!existsSync(path)) return undefined;
  try {
    const v = JSON.parse(readFileSync(path, "utf8")) as unknown;
    return v && typeof v === "object" ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
