import { copyFileSync, existsSync, mkdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { ConfigError, RankchainError } from "../errors.ts";
import { pythonExecutable, userPath, userPathOrId } from "../config/paths.ts";
import { readManifest } from "../store/run-dir.ts";
import { checkPythonSide, runPythonModule, type PythonEvent } from "../posttrain/python.ts";
import { readRerankFile } from "./rerank.ts";

export * from "./rerank.ts";

/** One row of eval.json's `metrics` (written by rankchain_posttrain.evaluate). */
export interface EvalMetric {
  name: string;
  baseline: number | null;
  model: number | null;
  delta: number | null;
  greater_is_better: boolean;
  description?: string;
}

/** eval.json: read by `rankchain report` for the before/after table and the cost per point. */
export interface EvalDocument {
  primary_metric: string;
  metrics: EvalMetric[];
  usd: number | null;
  usd_per_point: number | null;
  model: string;
  baseline: string | null;
  [key: string]: unknown;
}

export const EVAL_FILE = "eval.json";

export interface EvalOptions {
  model: string;
  baseline?: string;
  sts: string;
  chains?: string;
  /** Reranking file (src/eval/rerank.ts format) for MAP, MRR@10 and nDCG@10. */
  rerank?: string;
  /** The run directory the training data came from: its cost goes into usd, and eval.json is copied there. */
  data?: string;
  usd?: number;
  out?: string;
  device?: string;
  maxSeqLength?: number;
}

/** What generating the training data cost: run.json's totals.usd (null when the run has no manifest). */
export function runCostUsd(runDir: string): number | null {
  const manifest = readManifest(runDir);
  return manifest ? manifest.totals.usd : null;
}

export function parseEvalDocument(path: string): EvalDocument {
  let doc: unknown;
  try {
    doc = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new RankchainError(`${path} is not valid JSON: ${(e as Error).message}`);
  }
  const d = doc as Partial<EvalDocument>;
  if (!d || !Array.isArray(d.metrics) || typeof d.primary_metric !== "string") {
    throw new RankchainError(`${path} is not an eval.json document (no metrics / primary_metric)`);
  }
  return d as EvalDocument;
}

function num(v: number | null, digits = 2, sign = false): string {
  if (v === null || v === undefined) return "—";
  return (sign && v > 0 ? "+" : "") + v.toFixed(digits);
}

/** A plain-text before/after table for the terminal. */
export function formatEvalTable(doc: EvalDocument): string {
  const rows = [["metric", "baseline", "model", "delta"], ...doc.metrics.map((m) => [m.name + (m.name === doc.primary_metric ? " *" : ""), num(m.baseline), num(m.model), num(m.delta, 2, true)])];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const lines = rows.map((r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  "));
  lines.splice(1, 0, widths.map((w) => "-".repeat(w)).join("  "));
  if (doc.usd !== null) lines.push(`data cost: $${doc.usd.toFixed(4)}` + (doc.usd_per_point !== null ? `, $${doc.usd_per_point.toFixed(4)} per point of ${doc.primary_metric}` : ""));
  lines.push("* primary metric (higher is better)");
  return lines.join("\n");
}

export interface EvalResult {
  exitCode: number;
  outPath: string;
  copiedTo: string | undefined;
  document: EvalDocument | undefined;
  error: PythonEvent | undefined;
  stderrTail: string[];
}

/**
 * Runs `python -m rankchain_posttrain.evaluate`, then (with `data`) copies eval.json into the data
 * run directory so `rankchain report` shows the before/after table.
 */
export async function runEval(
  given: EvalOptions,
  hooks: { python?: string; env?: NodeJS.ProcessEnv; onStderr?: (line: string) => void } = {},
): Promise<EvalResult> {
  if (!given.model) throw new ConfigError("--model is required");
  if (!given.sts) throw new ConfigError("--sts is required (TSV: sentence1<TAB>sentence2<TAB>score with a header)");
  // every path against the caller's directory; the Python side gets absolute paths only
  const opts: EvalOptions = {
    ...given,
    model: userPathOrId(given.model),
    sts: userPath(given.sts),
    ...(given.baseline !== undefined ? { baseline: userPathOrId(given.baseline) } : {}),
    ...(given.chains !== undefined ? { chains: userPath(given.chains) } : {}),
    ...(given.data !== undefined ? { data: userPath(given.data) } : {}),
    ...(given.out !== undefined ? { out: userPath(given.out) } : {}),
    ...(given.rerank !== undefined ? { rerank: userPath(given.rerank) } : {}),
  };
  if (!existsSync(opts.sts)) throw new ConfigError("no such STS file", { location: { file: given.sts } });
  for (const [flag, ref, raw] of [["--model", opts.model, given.model], ["--baseline", opts.baseline, given.baseline]] as const) {
    // a path that does not exist is a typo, not a hub id: say so before Python loads anything
    if (ref !== undefined && raw !== undefined && ref !== raw && !existsSync(ref)) throw new ConfigError(`${flag}: no such model directory`, { location: { file: raw } });
  }
  if (opts.chains !== undefined && !existsSync(opts.chains)) throw new ConfigError("--chains: no such file or run directory", { location: { file: given.chains! } });
  if (opts.device !== undefined && !/^(auto|cpu|mps|cuda(:\d+)?)$/.test(opts.device)) {
    throw new ConfigError(`--device expects auto, cpu, mps, cuda or cuda:N, got "${opts.device}"`);
  }
  if (opts.data && !(existsSync(opts.data) && statSync(opts.data).isDirectory())) {
    throw new ConfigError("--data must be a run directory", { location: { file: given.data! } });
  }
  if (opts.rerank) {
    if (!existsSync(opts.rerank)) throw new ConfigError("no such reranking file (--rerank)", { location: { file: opts.rerank } });
    // checked here, so a bad line is reported (exit 2, file:line) before any model loads
    if ((await readRerankFile(opts.rerank)).length === 0) throw new ConfigError("no records in the reranking file (--rerank)", { location: { file: opts.rerank } });
  }
  const usd = opts.usd ?? (opts.data ? runCostUsd(opts.data) : null);
  const outPath = resolve(opts.out ?? (opts.data ? join(opts.data, EVAL_FILE) : EVAL_FILE));
  mkdirSync(dirname(outPath), { recursive: true });
  const python = hooks.python ?? pythonExecutable(hooks.env);
  checkPythonSide(python, hooks.env ?? process.env);
  const args = ["--model", opts.model, "--sts", opts.sts, "--out", outPath];
  if (opts.baseline) args.push("--baseline", opts.baseline);
  if (opts.chains) args.push("--chains", opts.chains);
  if (opts.rerank) args.push("--rerank", opts.rerank);
  if (usd !== null && usd !== undefined) args.push("--usd", String(usd));
  if (opts.device) args.push("--device", opts.device);
  if (opts.maxSeqLength) args.push("--max-seq-length", String(opts.maxSeqLength));
  const result = await runPythonModule({
    python,
    module: "rankchain_posttrain.evaluate",
    args,
    ...(hooks.env ? { env: hooks.env } : {}),
    ...(hooks.onStderr ? { onStderr: hooks.onStderr } : {}),
  });
  let document: EvalDocument | undefined;
  let copiedTo: string | undefined;
  if (result.exitCode === 0) {
    document = parseEvalDocument(outPath);
    if (opts.data) {
      const target = resolve(opts.data, EVAL_FILE);
      if (target !== outPath) {
        copyFileSync(outPath, target);
        copiedTo = target;
      }
    }
  }
  return { exitCode: result.exitCode, outPath, copiedTo, document, error: result.error, stderrTail: result.stderrTail };
}
export { evaluateRerankers, formatRerankTable, RERANKER_NAMES, type RerankerName, type RerankRow, type RerankEvaluation, type EvaluateRerankersOptions } from "./rerankers.ts";
