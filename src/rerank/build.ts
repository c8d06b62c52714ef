import { BudgetLedger } from "../budget/ledger.ts";
import { loadPriceTable, resolvePrice } from "../config/prices.ts";
import { ConfigError } from "../errors.ts";
import { createLanguageModel } from "../llm/create.ts";
import type { ProviderName } from "../llm/types.ts";
import { LlmListwiseReranker } from "./listwise.ts";

export interface LlmJudgeSettings {
  provider: ProviderName;
  model: string;
  baseUrl?: string | undefined;
  /** The LLM's own hard cap (USD); undefined = no cap (local models are free anyway). */
  maxUsd?: number | undefined;
  /** Where its ledger lives (append-only JSONL); undefined = in memory. */
  ledgerPath?: string | undefined;
  prices?: string | undefined;
  priceInput?: number | undefined;
  priceOutput?: number | undefined;
  width?: number | undefined;
  step?: number | undefined;
  timeoutMs?: number | undefined;
  gpu?: "auto" | "cuda" | "metal" | "off" | undefined;
  /** Ledger stage of the spend (default "judge"). */
  stage?: string | undefined;
}

/**
 * Builds the LLM listwise reranker of `validate --judge llm|cascade` and `eval --rerankers llm`
 * from flags: the provider adapter, its price (a cap on a model without a price is exit 2, never
 * "free"), and its own ledger. The reranker owns the model (dispose() releases it).
 */
export async function createLlmReranker(s: LlmJudgeSettings): Promise<{ reranker: LlmListwiseReranker; ledger: BudgetLedger }> {
  if (!s.model) throw new ConfigError("the LLM judge needs a model (--judge-model)");
  const price =
    s.provider === "local"
      ? undefined
      : resolvePrice({
          table: loadPriceTable(s.prices),
          provider: s.provider,
          model: s.model,
          priceInput: s.priceInput,
          priceOutput: s.priceOutput,
          required: s.maxUsd !== undefined,
        });
  // the cap applies to the judge's own spend only, even in the run's ledger
  const ledger = s.ledgerPath ? await BudgetLedger.open(s.ledgerPath, s.maxUsd, { capStage: s.stage ?? "judge" }) : BudgetLedger.inMemory(s.maxUsd, { capStage: s.stage ?? "judge" });
  const model = await createLanguageModel({ provider: s.provider, model: s.model, baseUrl: s.baseUrl, timeoutMs: s.timeoutMs ?? 60_000, gpu: s.gpu ?? "auto", seed: undefined });
  const reranker = new LlmListwiseReranker({
    model,
    ledger,
    price,
    ...(s.width !== undefined ? { width: s.width } : {}),
    ...(s.step !== undefined ? { step: s.step } : {}),
    ownsModel: true,
    stage: s.stage ?? "judge",
  });
  return { reranker, ledger };
}
