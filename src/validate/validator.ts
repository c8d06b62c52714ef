import { createReadStream, existsSync } from "node:fs";
import { open, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { ConfigError } from "../errors.ts";
import type { Embedder, EmbedderInfo } from "../embed/types.ts";
import { ChainRecordSchema, type ChainRecord } from "../store/chain-record.ts";
import { readJsonl, type JsonlReadIssue } from "../store/jsonl.ts";
import { runCost, type RunCost } from "./cost.ts";
import { StreamingHistogram } from "./histogram.ts";
import { buildHoldoutIndex } from "./holdout.ts";
import { CosineLshIndex, type CosineLshOptions } from "./lsh.ts";
import { analyzeChain, DEFAULT_CHAIN_THRESHOLDS, driftCorrelations, findInversions, type ChainThresholds } from "./metrics.ts";
import { decide, findingsOf, reasonKind, type Policy, type Status } from "./policy.ts";
import { centroid } from "./vector.ts";

export interface GateThresholds extends ChainThresholds {
  /** A sentence at or above this cosine to a holdout sentence is a leak. */
  leakThreshold: number;
  /** Two chains whose centroids (anchor + kept steps) reach this cosine are duplicates. */
  chainDupThreshold: number;
}

export const DEFAULT_GATE_THRESHOLDS: Readonly<GateThresholds> = Object.freeze({
  ...DEFAULT_CHAIN_THRESHOLDS,
  leakThreshold: 0.95,
  chainDupThreshold: 0.98,
});

export const DEFAULT_LSH: Readonly<Required<Omit<CosineLshOptions, "dimensions">>> = Object.freeze({ bandBits: 12, bands: 20, poolBits: 128, seed: 0x5eed });

/** The conventions written into validation.json, so readers never have to guess a sign. */
export const CONVENTIONS = Object.freeze({
  steps: "step 0 is the anchor, steps 1..n are the rewrites; sims_to_anchor[k] is the cosine of step k+1 to the anchor",
  spearman:
    "Spearman rho between step number (1..n) and distance to the anchor (1 - cosine), anchor excluded: 1.0 = similarity falls with every step (perfect drift), -1.0 = it rises; null with fewer than 2 steps or constant similarity",
  kendall: "Kendall tau-b, same variables and sign as spearman",
  drops: "drops[k] = similarity of step k (anchor: 1) minus similarity of step k+1; positive = drifted away",
  inversions: "count of steps more similar to the anchor than the step before them by more than inversion_tolerance",
  reasons:
    "kind@step, kind@step~other_step, or kind~chain_id; hard kinds (reject under strict, cut under repair): inversion, near-duplicate-steps, refusal, boilerplate, instruction-echo, markup, append, unrelated, empty, leak; chain-level: duplicate-chain, too-short; soft (flag only): cycle, length-outlier, jump; repair adds truncated@k (steps k..n cut)",
  repaired_records: "a repaired record's steps, sims_to_anchor, spearman, kendall, drops and inversions describe the kept prefix; the cut steps are in validation.dropped_steps",
  duplicate_chains: "first come, first kept: a chain is compared with the chains kept before it in file order",
});

export interface GateValidation {
  embedder: string;
  policy: Policy;
  sims_to_anchor: number[];
  spearman: number | null;
  kendall: number | null;
  inversions: number;
  drops: number[];
  status: Status;
  reasons: string[];
  steps_total: number;
  steps_kept: number;
  truncated_at?: number;
  dropped_steps?: string[];
  dropped_sims_to_anchor?: number[];
  leaks?: { step: number; cosine: number; holdout_line: number }[];
  duplicate_of?: { id: string; cosine: number };
}

export type ValidatedRecord = Omit<ChainRecord, "validation"> & { validation: GateValidation };

/**
 * Applies the gate to one chain at a time, given its embeddings. Holds the corpus state: the
 * duplicate-chain index (one unit centroid per kept chain) and the optional holdout index.
 */
export class ChainValidator {
  readonly thresholds: GateThresholds;
  private dupIndex: CosineLshIndex<string> | undefined;

  constructor(
    readonly options: {
      embedderId: string;
      policy: Policy;
      minSteps: number;
      thresholds?: Partial<GateThresholds>;
      lsh?: Omit<CosineLshOptions, "dimensions">;
      holdoutIndex?: CosineLshIndex<number> | undefined;
      /** Hard reason kinds to treat as flags only (e.g. ["cycle", "boilerplate"]). */
      softKinds?: readonly string[];
      /** Soft reason kinds to treat as hard (e.g. ["cycle"]). */
      hardKinds?: readonly string[];
    },
  ) {
    this.thresholds = { ...DEFAULT_GATE_THRESHOLDS, ...options.thresholds };
  }

  get indexedChains(): number {
    return this.dupIndex?.size ?? 0;
  }

  get exactChecks(): number {
    return (this.dupIndex?.exactChecks ?? 0) + (this.options.holdoutIndex?.exactChecks ?? 0);
  }

  /** vectors[0] is the anchor's embedding, vectors[k] step k's (a zero vector for an empty text). */
  validate(record: ChainRecord, vectors: readonly Float32Array[]): ValidatedRecord {
    const texts = [record.anchor, ...record.steps];
    const th = this.thresholds;
    const { policy, minSteps } = this.options;
    const metrics = analyzeChain(texts, vectors, th);

    const leaks: { step: number; cosine: number; holdout_line: number }[] = [];
    const holdout = this.options.holdoutIndex;
    if (holdout) {
      texts.forEach((t, i) => {
        if (t.trim() === "") return;
        const hit = holdout.nearest(vectors[i]!, th.leakThreshold);
        if (hit) leaks.push({ step: i, cosine: round(hit.cosine), holdout_line: hit.key });
      });
    }

    const n = record.steps.length;
    const soft = new Set(this.options.softKinds ?? []);
    const promoted = new Set(this.options.hardKinds ?? []);
    const findings = findingsOf(
      metrics,
      leaks.map((l) => l.step),
    ).map((f) => (soft.has(f.kind) ? { ...f, hard: false } : promoted.has(f.kind) ? { ...f, hard: true } : f));
    const decision = decide(n, findings, policy, minSteps);
    let status = decision.status;
    const reasons = [...decision.reasons];
    let kept = status === "rejected" ? n : decision.stepsKept;

    let duplicateOf: { id: string; cosine: number } | undefined;
    if (status !== "rejected") {
      const live = vectors.slice(0, kept + 1).filter((v, i) => texts[i]!.trim() !== "" && v.some((x) => x !== 0));
      if (live.length > 0) {
        const c = centroid(live);
        this.dupIndex ??= new CosineLshIndex<string>({ dimensions: c.length, ...DEFAULT_LSH, ...this.options.lsh });
        // a kept chain enters the index; a lenient duplicate is kept but not indexed again
        const hit = this.dupIndex.nearestOrAdd(record.id, c, th.chainDupThreshold);
        if (hit) {
          duplicateOf = { id: hit.key, cosine: round(hit.cosine) };
          reasons.push(`duplicate-chain~${hit.key}`);
          if (policy !== "lenient") {
            status = "rejected";
            kept = n;
          }
        }
      }
    }

    const sims = metrics.sims_to_anchor.map(round);
    const keptSims = sims.slice(0, kept);
    const corr = status === "repaired" ? driftCorrelations(metrics.sims_to_anchor.slice(0, kept)) : metrics;
    const validation: GateValidation = {
      embedder: this.options.embedderId,
      policy,
      sims_to_anchor: keptSims,
      spearman: roundOrNull(corr.spearman),
      kendall: roundOrNull(corr.kendall),
      inversions: status === "repaired" ? findInversions(metrics.sims_to_anchor.slice(0, kept), th.inversionTolerance).length : metrics.inversions.length,
      drops: metrics.drops.slice(0, kept).map(round),
      status,
      reasons,
      steps_total: n,
      steps_kept: status === "rejected" ? 0 : kept,
    };
    if (status === "repaired") {
      validation.truncated_at = decision.truncatedAt!;
      validation.dropped_steps = record.steps.slice(kept);
      validation.dropped_sims_to_anchor = sims.slice(kept);
    }
    if (leaks.length > 0) validation.leaks = leaks;
    if (duplicateOf) validation.duplicate_of = duplicateOf;
    const steps = status === "repaired" ? record.steps.slice(0, kept) : record.steps;
    return { ...record, steps, validation };
  }
}

function round(x: number): number {
  return Math.round(x * 1e6) / 1e6;
}
function roundOrNull(x: number | null): number | null {
  return x === null ? null : round(x);
}

export interface ValidationProgress {
  done: number;
  total: number | undefined;
  accepted: number;
  repaired: number;
  rejected: number;
}

export interface ValidateRunOptions {
  runDir: string;
  embedder: Embedder;
  policy?: Policy;
  minSteps?: number;
  /** Sentences per embedding call (chains are grouped until a batch is full). */
  batchSize?: number;
  thresholds?: Partial<GateThresholds>;
  holdout?: string | undefined;
  lsh?: Omit<CosineLshOptions, "dimensions">;
  /** Hard reason kinds to treat as flags only. */
  softKinds?: readonly string[];
  /** Soft reason kinds to treat as hard. */
  hardKinds?: readonly string[];
  /** Input file inside runDir (default chains.jsonl). */
  input?: string;
  onStart?: (total: number) => void;
  onProgress?: (p: ValidationProgress) => void;
  onWarning?: (message: string) => void;
  /** Called before long phases that have no per-chain progress (embedding the holdout). */
  onPhase?: (message: string) => void;
}

export interface ValidationSummary {
  version: 1;
  created_at: string;
  input: string;
  embedder: EmbedderInfo;
  policy: Policy;
  min_steps: number;
  batch_size: number;
  thresholds: GateThresholds;
  /** Hard reason kinds demoted to flags for this run (--soft). */
  soft_kinds: string[];
  /** Soft reason kinds promoted to hard for this run (--hard). */
  hard_kinds: string[];
  conventions: typeof CONVENTIONS;
  counts: { chains: number; accepted: number; repaired: number; rejected: number; skipped_torn_lines: number };
  steps: { total: number; kept: number };
  reasons: Record<string, { chains: number; occurrences: number }>;
  spearman: { all: SpearmanStats; kept: SpearmanStats };
  holdout: { file: string; sentences: number; threshold: number } | null;
  dedup: {
    index: Required<Omit<CosineLshOptions, "dimensions">>;
    candidate_probability_at_chain_dup_threshold: number;
    candidate_probability_at_leak_threshold: number;
    indexed_chains: number;
    exact_checks: number;
    memory_note: string;
  };
  cost: RunCost & { kept_chains: number; usd_per_kept_chain: number | null; usd_per_accepted_chain: number | null };
  outputs: string[];
}

interface SpearmanStats {
  n: number;
  null_count: number;
  mean: number | null;
  p25: number | null;
  median: number | null;
  p75: number | null;
}

function spearmanStats(h: StreamingHistogram, nulls: number): SpearmanStats {
  const q = (x: number) => {
    const v = h.quantile(x);
    return v === null ? null : round(v);
  };
  return { n: h.count, null_count: nulls, mean: h.mean === null ? null : round(h.mean), p25: q(0.25), median: q(0.5), p75: q(0.75) };
}

/** Counts the lines of a file without holding it (for the progress bar's total). */
export async function countLines(path: string): Promise<number> {
  let n = 0;
  let last = 0x0a;
  for await (const chunk of createReadStream(path) as AsyncIterable<Buffer>) {
    for (let i = 0; i < chunk.length; i++) if (chunk[i] === 0x0a) n++;
    if (chunk.length) last = chunk[chunk.length - 1]!;
  }
  return last === 0x0a ? n : n + 1;
}

/**
 * Validates a run directory: streams chains.jsonl, embeds chain by chain in batches, writes
 * validated.jsonl (every chain + validation), accepted.jsonl (accepted and repaired chains) and
 * validation.json (the summary). Memory stays flat: only the current batch of chains, fixed-size
 * histograms and the LSH indexes (one unit vector + band keys per kept chain / holdout sentence)
 * are held. Outputs are written to temporary files and renamed at the end, so a failed run never
 * leaves half a validated.jsonl behind.
 */
export async function validateRun(options: ValidateRunOptions): Promise<ValidationSummary> {
  const { runDir, embedder } = options;
  const policy = options.policy ?? "repair";
  const minSteps = options.minSteps ?? 3;
  const batchSize = options.batchSize ?? 64;
  const inputName = options.input ?? "chains.jsonl";
  const input = join(runDir, inputName);
  if (!existsSync(input)) throw new ConfigError(`no ${inputName} in the run directory`, { location: { file: input } });
  const lsh = { ...DEFAULT_LSH, ...options.lsh };
  const thresholds: GateThresholds = { ...DEFAULT_GATE_THRESHOLDS, ...options.thresholds };

  let holdoutInfo: ValidationSummary["holdout"] = null;
  let holdoutIndex: CosineLshIndex<number> | undefined;
  if (options.holdout) {
    options.onPhase?.(`embedding holdout ${options.holdout}`);
    const built = await buildHoldoutIndex(options.holdout, embedder, { batchSize, lsh });
    holdoutIndex = built.index;
    holdoutInfo = { file: options.holdout, sentences: built.sentences, threshold: thresholds.leakThreshold };
  }

  const softKinds = [...(options.softKinds ?? [])];
  const hardKinds = [...(options.hardKinds ?? [])];
  const validator = new ChainValidator({ embedderId: embedder.info.id, policy, minSteps, thresholds, lsh, holdoutIndex, softKinds, hardKinds });
  const total = await countLines(input);
  options.onStart?.(total);

  const paths = {
    validated: join(runDir, "validated.jsonl"),
    accepted: join(runDir, "accepted.jsonl"),
    summary: join(runDir, "validation.json"),
  };
  const tmp = (p: string) => `${p}.tmp-${process.pid}`;
  const validatedOut = await open(tmp(paths.validated), "w");
  const acceptedOut = await open(tmp(paths.accepted), "w");

  const counts = { chains: 0, accepted: 0, repaired: 0, rejected: 0, skipped_torn_lines: 0 };
  const steps = { total: 0, kept: 0 };
  const reasons: Record<string, { chains: number; occurrences: number }> = {};
  const rhoAll = new StreamingHistogram(-1, 1, 2000);
  const rhoKept = new StreamingHistogram(-1, 1, 2000);
  let nullAll = 0;
  let nullKept = 0;
  let chainsUsd = 0;
  let sawUsage = false;

  const onIssue = (issue: JsonlReadIssue) => {
    if (issue.torn) {
      counts.skipped_torn_lines++;
      options.onWarning?.(`${input}:${issue.line}: skipped a torn last line (${issue.message})`);
      return;
    }
    throw new ConfigError(issue.message, { location: { file: input, line: issue.line } });
  };

  let pending: ChainRecord[] = [];
  let pendingTexts = 0;
  const flush = async () => {
    if (pending.length === 0) return;
    const texts: string[] = [];
    for (const r of pending) for (const t of [r.anchor, ...r.steps]) if (t.trim() !== "") texts.push(t);
    const vectors = texts.length > 0 ? await embedder.embed(texts) : [];
    if (vectors.length !== texts.length) throw new Error(`embedder ${embedder.info.id} returned ${vectors.length} vectors for ${texts.length} texts`);
    const dim = vectors[0]?.length ?? embedder.info.dimensions ?? 1;
    let at = 0;
    let validatedLines = "";
    let acceptedLines = "";
    for (const r of pending) {
      const vs = [r.anchor, ...r.steps].map((t) => (t.trim() !== "" ? vectors[at++]! : new Float32Array(dim)));
      const out = validator.validate(r, vs);
      const v = out.validation;
      const line = JSON.stringify(out) + "\n";
      validatedLines += line;
      counts.chains++;
      counts[v.status]++;
      steps.total += v.steps_total;
      steps.kept += v.steps_kept;
      if (v.status !== "rejected") acceptedLines += line;
      const kinds = new Map<string, number>();
      for (const reason of v.reasons) kinds.set(reasonKind(reason), (kinds.get(reasonKind(reason)) ?? 0) + 1);
      for (const [k, c] of kinds) {
        const e = (reasons[k] ??= { chains: 0, occurrences: 0 });
        e.chains++;
        e.occurrences += c;
      }
      if (v.spearman === null) nullAll++;
      else rhoAll.add(v.spearman);
      if (v.status !== "rejected") {
        if (v.spearman === null) nullKept++;
        else rhoKept.add(v.spearman);
      }
      if (typeof r.usage?.usd === "number") {
        chainsUsd += r.usage.usd;
        sawUsage = true;
      }
    }
    await validatedOut.write(validatedLines);
    if (acceptedLines) await acceptedOut.write(acceptedLines);
    pending = [];
    pendingTexts = 0;
    options.onProgress?.({ done: counts.chains, total, accepted: counts.accepted, repaired: counts.repaired, rejected: counts.rejected });
  };

  try {
    for await (const { value } of readJsonl(input, ChainRecordSchema, { onIssue })) {
      pending.push(value);
      pendingTexts += 1 + value.steps.length;
      if (pendingTexts >= batchSize) await flush();
    }
    await flush();
    await validatedOut.close();
    await acceptedOut.close();
  } catch (e) {
    await validatedOut.close().catch(() => undefined);
    await acceptedOut.close().catch(() => undefined);
    await rm(tmp(paths.validated), { force: true });
    await rm(tmp(paths.accepted), { force: true });
    throw e;
  }

  const cost = await runCost(runDir, sawUsage ? round(chainsUsd) : null);
  const keptChains = counts.accepted + counts.repaired;
  const summary: ValidationSummary = {
    version: 1,
    created_at: new Date().toISOString(),
    input: inputName,
    embedder: embedder.info,
    policy,
    min_steps: minSteps,
    batch_size: batchSize,
    thresholds,
    soft_kinds: softKinds,
    hard_kinds: hardKinds,
    conventions: CONVENTIONS,
    counts,
    steps,
    reasons,
    spearman: { all: spearmanStats(rhoAll, nullAll), kept: spearmanStats(rhoKept, nullKept) },
    holdout: holdoutInfo,
    dedup: {
      index: lsh,
      candidate_probability_at_chain_dup_threshold: round(CosineLshIndex.candidateProbability(thresholds.chainDupThreshold, lsh.bandBits, lsh.bands)),
      candidate_probability_at_leak_threshold: round(CosineLshIndex.candidateProbability(thresholds.leakThreshold, lsh.bandBits, lsh.bands)),
      indexed_chains: validator.indexedChains,
      exact_checks: validator.exactChecks,
      memory_note:
        "the duplicate-chain index keeps one unit vector and one bucket entry per band for every kept chain; the holdout index the same per holdout sentence; everything else is streamed",
    },
    cost: {
      ...cost,
      kept_chains: keptChains,
      usd_per_kept_chain: cost.usd !== null && keptChains > 0 ? cost.usd / keptChains : null,
      usd_per_accepted_chain: cost.usd !== null && counts.accepted > 0 ? cost.usd / counts.accepted : null,
    },
    outputs: ["validated.jsonl", "accepted.jsonl", "validation.json"],
  };
  await rename(tmp(paths.validated), paths.validated);
  await rename(tmp(paths.accepted), paths.accepted);
  await writeFile(paths.summary, JSON.stringify(summary, null, 2) + "\n");
  return summary;
}
