/**
 * rankchain as a library: the functions the CLI runs, with options objects, typed errors (and the
 * CLI's exit-code map), AbortSignal and progress events.
 *
 *   import { extractSeeds, estimate, generate, validate, exportDataset, exitCodeFor } from "rankchain";
 *
 * | CLI                 | library                                  |
 * |---------------------|------------------------------------------|
 * | rankchain seeds     | extractSeeds({ from, out, … })           |
 * | rankchain estimate  | estimate({ input, provider, model, … })  |
 * | rankchain generate  | generate({ input, out, provider, … })    |
 * | rankchain validate  | validate({ runDir, embedder, … })        |
 * | rankchain export    | exportDataset({ runDir, format, out })   |
 *
 * Option names are the flags in camelCase (--max-usd → maxUsd). Errors: ConfigError (exit 2),
 * BudgetExceededError (exit 3), InterruptedError (an AbortSignal or a process signal; exit 130),
 * anything else exit 1 — `exitCodeFor(error)` gives the CLI's code.
 */
export { generate, resolveGenerateConfig, type GenerateOptions, type GenerateProgress, type GenerateSettings } from "./api/generate.ts";
export type { GenerateSummary } from "./generate/run.ts";
export { estimate, type EstimateOptions, type EstimateResult } from "./api/estimate.ts";
export { validate, type ValidateOptions, type ValidateProgress, type ValidateResult } from "./api/validate.ts";
export { DEFAULT_GATE_THRESHOLDS, POLICIES, type GateThresholds, type Policy, type ValidationSummary } from "./validate/index.ts";
export { extractSeeds, kCenterGreedy, type SeedsOptions, type SeedsProgress, type SeedsSummary, type SeedRecord } from "./seeds/index.ts";
export { exportDataset, EXPORT_FORMATS, type ExportFormat, type ExportOptions, type ExportSummary } from "./export/index.ts";
export {
  RerankRecordSchema,
  readRerankFile,
  rerankMetrics,
  averagePrecision,
  reciprocalRankAt,
  ndcgAt,
  RERANK_METRICS,
  type RerankRecord,
  type RerankMetrics,
} from "./eval/rerank.ts";
export { ChainRecordSchema, type ChainRecord, type GeneratorInfo, type ChainValidation } from "./store/chain-record.ts";
export type { RunManifest, RunStatus } from "./store/run-dir.ts";
export type { Embedder, EmbedderInfo } from "./embed/types.ts";
export {
  RankchainError,
  ConfigError,
  BudgetExceededError,
  ProviderCallError,
  RetryError,
  InterruptedError,
  EXIT,
  exitCodeFor,
  formatLocation,
  type InputLocation,
  type RetryErrorReason,
} from "./errors.ts";

import type { CreateEmbedderOptions } from "./embed/create.ts";
import type { Embedder } from "./embed/types.ts";

/**
 * An embedder by spec (as `--embedder`): registry name, model directory, hub id or "openai:<model>".
 * Loaded on demand, so importing rankchain does not load the ONNX runtime. Call dispose() when done.
 */
export async function createEmbedder(spec: string, options: CreateEmbedderOptions = {}): Promise<Embedder> {
  const embed = await import("./embed/index.ts");
  return embed.createEmbedder(spec, options);
}
export type { CreateEmbedderOptions };
