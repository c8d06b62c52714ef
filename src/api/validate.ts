import { existsSync, renameSync, statSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { BudgetLedger } from "../budget/ledger.ts";
import type { LedgerTotals } from "../budget/types.ts";
import type { Embedder } from "../embed/types.ts";
import { ConfigError, InterruptedError } from "../errors.ts";
import { writeReport } from "../report/index.ts";
import { readJsonObjectIfPresent } from "../store/json-file.ts";
import { validateRun, type GateThresholds, type Policy, type ValidationSummary } from "../validate/index.ts";

export type ValidateProgress =
  | { phase: "start"; total: number }
  | { phase: "chains"; done: number; total: number | undefined; accepted: number; repaired: number; rejected: number }
  | { phase: "message"; message: string }
  | { phase: "warning"; message: string };

export interface ValidateOptions {
  runDir: string;
  /** Registry name, model directory, hub id or "openai:<model>" (default all-MiniLM-L6-v2), or an Embedder you made (you dispose it). */
  embedder?: string | Embedder;
  policy?: Policy;
  minSteps?: number;
  batchSize?: number;
  thresholds?: Partial<GateThresholds>;
  holdout?: string;
  softKinds?: string[];
  hardKinds?: string[];
  /** Cap on validate's own spend (paid embedder), recorded in the run's ledger as stage "validate". */
  maxUsd?: number;
  /** (Re)write report.html (default true). */
  report?: boolean;
  /** Checked between embedding batches; an aborted validate throws InterruptedError and leaves partial outputs (run it again). */
  signal?: AbortSignal;
  onProgress?: (event: ValidateProgress) => void;
}

export interface ValidateResult extends ValidationSummary {
  report_path: string | null;
}

/**
 * The embedding gate over a run directory (what `rankchain validate` runs): validated.jsonl,
 * accepted.jsonl, validation.json and report.html. Throws ConfigError (exit 2), BudgetExceededError
 * (a paid embedder reached maxUsd; exit 3), InterruptedError (signal; exit 130).
 */
export async function validate(options: ValidateOptions): Promise<ValidateResult> {
  const dir = resolve(options.runDir);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new ConfigError("run directory not found", { location: { file: options.runDir } });
  if (!existsSync(join(dir, "chains.jsonl"))) throw new ConfigError("no chains.jsonl in the run directory", { location: { file: options.runDir } });
  if (options.holdout && !existsSync(options.holdout)) throw new ConfigError("holdout file not found (--holdout)", { location: { file: options.holdout } });
  const signal = options.signal;
  const check = () => {
    if (signal?.aborted) throw new InterruptedError("validate aborted", { cause: signal.reason });
  };
  check();
  const batchSize = options.batchSize ?? 64;
  let embedder: Embedder;
  let ledger: BudgetLedger | undefined;
  const own = typeof options.embedder !== "object";
  if (typeof options.embedder === "object") embedder = options.embedder;
  else {
    // loaded on demand: the ONNX runtime and tokenizers take seconds to import
    const { createEmbedder, resolveEmbedderSpec } = await import("../embed/index.ts");
    const spec = options.embedder ?? "all-MiniLM-L6-v2";
    if (resolveEmbedderSpec(spec).kind === "openai") ledger = await BudgetLedger.open(join(dir, "ledger.jsonl"), options.maxUsd, { capStage: "validate" });
    embedder = await createEmbedder(spec, { batchSize, ...(ledger ? { ledger, cachePath: join(dir, "embeddings-paid.jsonl") } : {}) });
  }
  try {
    const summary = await validateRun({
      runDir: dir,
      embedder,
      batchSize,
      ...(options.policy ? { policy: options.policy } : {}),
      ...(options.minSteps !== undefined ? { minSteps: options.minSteps } : {}),
      ...(options.thresholds ? { thresholds: options.thresholds } : {}),
      holdout: options.holdout,
      softKinds: options.softKinds ?? [],
      hardKinds: options.hardKinds ?? [],
      onStart: (total) => {
        check();
        options.onProgress?.({ phase: "start", total });
      },
      onProgress: (p) => {
        check();
        options.onProgress?.({ phase: "chains", ...p });
      },
      onWarning: (message) => options.onProgress?.({ phase: "warning", message }),
      onPhase: (message) => {
        check();
        options.onProgress?.({ phase: "message", message });
      },
    });
    const report_path = options.report === false ? null : (await writeReport(dir)).path;
    return { ...summary, report_path };
  } finally {
    if (own) await embedder.dispose();
    await ledger?.close();
    if (ledger) recordStageSpend(dir, ledger.totals());
  }
}

/** run.json's totals.by_stage follow the ledger after a paid validate (totals.usd stays generation's spend). */
export function recordStageSpend(dir: string, totals: LedgerTotals): void {
  const path = join(dir, "run.json");
  const run = readJsonObjectIfPresent(path);
  if (!run || typeof run.totals !== "object" || run.totals === null) return;
  const byStage = Object.fromEntries(Object.entries(totals.byStage).map(([k, v]) => [k, { ...v, usd: Math.round(v.usd * 1e9) / 1e9 }]));
  const next = { ...run, totals: { ...(run.totals as Record<string, unknown>), by_stage: byStage } };
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, JSON.stringify(next, null, 2) + "\n");
  renameSync(tmp, path);
}
