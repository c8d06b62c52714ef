import type { z } from "zod";
import { GenerateConfigSchema, type GenerateConfig } from "../config/run-config.ts";
import { InterruptedError } from "../errors.ts";
import type { BatchProgress } from "../generate/batch-model.ts";
import { runGenerate, type GenerateSummary } from "../generate/run.ts";
import type { LanguageModel } from "../llm/types.ts";
import { parseOptions } from "./options.ts";

/** The settings of `rankchain generate`, as an options object (flag --max-usd = option maxUsd). */
export type GenerateSettings = z.input<typeof GenerateConfigSchema>;

export type GenerateProgress =
  | { phase: "start"; total: number; alreadyDone: number; capUsd: number | undefined; spentUsd: number; duplicateSeeds: { line: number; firstLine: number }[] }
  | { phase: "chain"; chainId: string; done: number; total: number; spentUsd: number }
  | { phase: "retry"; chainId: string; attempt: number; delayMs: number; error: unknown }
  | { phase: "chain-failed"; chainId: string; line: number; error: unknown }
  | { phase: "batch-submit"; id: string; requests: number }
  | ({ phase: "batch-progress" } & BatchProgress);

export interface GenerateOptions extends Omit<GenerateSettings, "provider" | "model"> {
  provider?: GenerateSettings["provider"];
  model?: GenerateSettings["model"];
  /** Aborting stops new calls and aborts calls in flight (they are charged at their worst case); throws InterruptedError. */
  signal?: AbortSignal;
  /** Aborting stops new calls and lets calls in flight finish (the CLI's first Ctrl-C); throws InterruptedError. */
  drainSignal?: AbortSignal;
  onProgress?: (event: GenerateProgress) => void;
  /** A model to use instead of the one the settings name (tests, custom providers). */
  languageModel?: LanguageModel;
}

/** Fills what the CLI fills (provider local + the default model, max output tokens per steering) and validates. */
export function resolveGenerateConfig(settings: Omit<GenerateOptions, "signal" | "drainSignal" | "onProgress" | "languageModel">): GenerateConfig {
  const steering = settings.steering ?? "stepwise";
  return parseOptions(GenerateConfigSchema, {
    provider: "local",
    model: "smollm2-135m-instruct",
    ...settings,
    maxOutputTokens: settings.maxOutputTokens ?? (steering === "ladder" ? 100 * (settings.steps ?? 8) : 100),
  });
}

/**
 * Generates ranking chains into a run directory (what `rankchain generate` runs): chains.jsonl,
 * ledger.jsonl, run.json. Throws ConfigError (bad settings or input, exit 2), BudgetExceededError
 * (the cap was reached; everything paid for is saved; exit 3), InterruptedError (a signal; exit 130).
 */
export async function generate(options: GenerateOptions): Promise<GenerateSummary> {
  const { signal, drainSignal, onProgress, languageModel, ...settings } = options;
  const config = resolveGenerateConfig(settings);
  if (signal?.aborted || drainSignal?.aborted) throw new InterruptedError("generate aborted before it started", { cause: signal?.reason ?? drainSignal?.reason });
  // one signal for both: the caller's abort also stops new calls
  const drain = new AbortController();
  const stopNew = () => drain.abort();
  signal?.addEventListener("abort", stopNew, { once: true });
  drainSignal?.addEventListener("abort", stopNew, { once: true });
  try {
    return await runGenerate(config, {
      drainSignal: drain.signal,
      ...(signal ? { abortSignal: signal } : {}),
      ...(languageModel ? { model: languageModel } : {}),
      onStart: (i) => onProgress?.({ phase: "start", total: i.total, alreadyDone: i.alreadyDone, capUsd: i.capUsd, spentUsd: i.spentUsd, duplicateSeeds: i.seedFile.duplicates }),
      onChainDone: (i) => onProgress?.({ phase: "chain", chainId: i.record.id, done: i.done, total: i.total, spentUsd: i.spentUsd }),
      onRetry: (i) => onProgress?.({ phase: "retry", chainId: i.chainId, attempt: i.attempt, delayMs: i.delayMs, error: i.error }),
      onChainFailed: (i) => onProgress?.({ phase: "chain-failed", chainId: i.id, line: i.line, error: i.error }),
      onBatchSubmit: (i) => onProgress?.({ phase: "batch-submit", id: i.id, requests: i.requests }),
      onBatchProgress: (p) => onProgress?.({ phase: "batch-progress", ...p }),
    });
  } finally {
    signal?.removeEventListener("abort", stopNew);
    drainSignal?.removeEventListener("abort", stopNew);
  }
}
