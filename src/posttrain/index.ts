import { existsSync, statSync } from "node:fs";
import { ConfigError } from "../errors.ts";
import { pythonExecutable, userPath, userPathOrId } from "../config/paths.ts";
import { checkPythonSide, runPythonModule, type PythonEvent, type RunPythonResult } from "./python.ts";

export { PYTHON_INSTALL_HINT, checkPythonSide, runPythonModule, type PythonEvent, type RunPythonResult } from "./python.ts";
export { TrainingProgressRenderer, describeStep, formatDuration } from "./progress.ts";

/** Options of `rankchain posttrain`; each maps to a flag of `python -m rankchain_posttrain.train`. */
export interface PosttrainOptions {
  data: string;
  baseModel: string;
  out: string;
  loss?: string;
  teacher?: string;
  /** Train a cross-encoder (one-label head on baseModel) instead of an embedder. */
  crossEncoder?: boolean;
  /** Cross-encoder directory for --loss distill. */
  crossEncoderTeacher?: string;
  /** --cross-encoder: bce (graded targets), ranknet (pairwise within a query) or bce+ranknet. */
  ceLoss?: "bce" | "ranknet" | "bce+ranknet";
  /** --cross-encoder: learning rate of the fresh classification head. */
  ceHeadLr?: number;
  /** --cross-encoder: all (i < j) pairs of a chain, or only anchor -> step. */
  cePairs?: "all" | "anchor";
  /** --cross-encoder: full-batch steps fitting the fresh head on frozen features first (0 = off). */
  ceProbeSteps?: number;
  device?: "auto" | "cuda" | "cpu";
  precision?: "auto" | "fp32" | "fp16" | "bf16";
  epochs?: number;
  maxSteps?: number;
  lr?: number;
  batchChains?: number;
  tau?: number;
  tau2?: number;
  omega?: number;
  pooling?: "auto" | "cls" | "mean";
  maxSeqLength?: number;
  encodeChunk?: number;
  /** Cache the frozen teacher's embeddings across epochs when they fit in this many MB (0 = off; default 4096). */
  teacherCacheMb?: number;
  evalSts?: string;
  select?: "auto" | "heldout-chains" | "sts" | "last";
  control?: "none" | "shuffled";
  evalEvery?: number;
  checkpointEvery?: number;
  holdoutFraction?: number;
  seed?: number;
  resume?: boolean;
  gradientCheckpointing?: boolean;
  allowUnvalidated?: boolean;
  noExport?: boolean;
  // mined groups (--loss lce), see docs/posttrain.md
  groups?: string;
  batchGroups?: number;
  negatives?: "mined" | "cache";
  corrector?: boolean;
  refreshEvery?: number;
  correctorSample?: number;
  correctorEvery?: number;
  cacheGuard?: number;
}

const FLAGS: Array<[keyof PosttrainOptions, string]> = [
  ["data", "--data"],
  ["baseModel", "--base-model"],
  ["out", "--out"],
  ["loss", "--loss"],
  ["teacher", "--teacher"],
  ["crossEncoderTeacher", "--cross-encoder-teacher"],
  ["ceLoss", "--ce-loss"],
  ["ceHeadLr", "--ce-head-lr"],
  ["cePairs", "--ce-pairs"],
  ["ceProbeSteps", "--ce-probe-steps"],
  ["device", "--device"],
  ["precision", "--precision"],
  ["epochs", "--epochs"],
  ["maxSteps", "--max-steps"],
  ["lr", "--lr"],
  ["batchChains", "--batch-chains"],
  ["tau", "--tau"],
  ["tau2", "--tau2"],
  ["omega", "--omega"],
  ["pooling", "--pooling"],
  ["maxSeqLength", "--max-seq-length"],
  ["encodeChunk", "--encode-chunk"],
  ["teacherCacheMb", "--teacher-cache-mb"],
  ["evalSts", "--eval-sts"],
  ["select", "--select"],
  ["control", "--control"],
  ["evalEvery", "--eval-every"],
  ["checkpointEvery", "--checkpoint-every"],
  ["holdoutFraction", "--holdout-fraction"],
  ["seed", "--seed"],
  ["groups", "--groups"],
  ["batchGroups", "--batch-groups"],
  ["negatives", "--negatives"],
  ["refreshEvery", "--refresh-every"],
  ["correctorSample", "--corrector-sample"],
  ["correctorEvery", "--corrector-every"],
  ["cacheGuard", "--cache-guard"],
];
const SWITCHES: Array<[keyof PosttrainOptions, string]> = [
  ["resume", "--resume"],
  ["gradientCheckpointing", "--gradient-checkpointing"],
  ["allowUnvalidated", "--allow-unvalidated"],
  ["noExport", "--no-export"],
  ["crossEncoder", "--cross-encoder"],
  ["corrector", "--corrector"],
];

/** The argument list for `python -m rankchain_posttrain.train` (only options that were given). */
export function posttrainArgs(opts: PosttrainOptions): string[] {
  const args: string[] = [];
  for (const [key, flag] of FLAGS) {
    const v = opts[key];
    if (v !== undefined && v !== false) args.push(flag, String(v));
  }
  for (const [key, flag] of SWITCHES) if (opts[key] === true) args.push(flag);
  return args;
}

/**
 * The options with every path made absolute against the caller's directory (the Python side runs
 * as a child process and must never guess); model references that are hub ids stay as they are.
 */
export function absolutePaths(opts: PosttrainOptions, cwd: string = process.cwd()): PosttrainOptions {
  return {
    ...opts,
    data: userPath(opts.data, cwd),
    out: userPath(opts.out, cwd),
    baseModel: userPathOrId(opts.baseModel, cwd),
    ...(opts.teacher !== undefined ? { teacher: userPathOrId(opts.teacher, cwd) } : {}),
    ...(opts.evalSts !== undefined ? { evalSts: userPath(opts.evalSts, cwd) } : {}),
  };
}

export interface PosttrainHooks {
  python?: string;
  env?: NodeJS.ProcessEnv;
  onEvent?: (ev: PythonEvent) => void;
  onStderr?: (line: string) => void;
  signal?: AbortSignal;
}

export interface PosttrainResult extends RunPythonResult {
  done: PythonEvent | undefined;
}

/**
 * Runs the Python trainer after checking the Python side is installed (ConfigError, exit 2, with
 * the install command otherwise). The trainer's exit code is returned for the CLI to forward.
 */
export async function runPosttrain(opts: PosttrainOptions, hooks: PosttrainHooks = {}): Promise<PosttrainResult> {
  if (!opts.data) throw new ConfigError("--data is required (a run directory with validated.jsonl, or a groups file from rankchain mine)");
  if (!opts.baseModel) throw new ConfigError("--base-model is required (a sentence-transformers or Hugging Face model dir)");
  if (!opts.out) throw new ConfigError("--out is required (where the post-trained model goes)");
  const abs = absolutePaths(opts);
  // checked before Python (and torch) load: a typo costs a second, not a minute
  if (!existsSync(abs.data) || !statSync(abs.data).isDirectory()) throw new ConfigError("--data must be a run directory", { location: { file: opts.data } });
  if (abs.evalSts !== undefined && !existsSync(abs.evalSts)) throw new ConfigError("--eval-sts: no such STS file", { location: { file: opts.evalSts! } });
  for (const [flag, ref, raw] of [["--base-model", abs.baseModel, opts.baseModel], ["--teacher", abs.teacher, opts.teacher]] as const) {
    if (ref !== undefined && raw !== undefined && ref !== raw && !existsSync(ref)) throw new ConfigError(`${flag}: no such model directory`, { location: { file: raw } });
  }
  const python = hooks.python ?? pythonExecutable(hooks.env);
  checkPythonSide(python, hooks.env ?? process.env);
  const result = await runPythonModule({
    python,
    module: "rankchain_posttrain.train",
    args: posttrainArgs(abs),
    ...(hooks.env ? { env: hooks.env } : {}),
    ...(hooks.onEvent ? { onEvent: hooks.onEvent } : {}),
    ...(hooks.onStderr ? { onStderr: hooks.onStderr } : {}),
    ...(hooks.signal ? { signal: hooks.signal } : {}),
  });
  return { ...result, done: result.events.find((e) => e.event === "done") };
}
