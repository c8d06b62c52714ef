import { estimateRunCost, type CostEstimate } from "../budget/estimate.ts";
import { batchPrice, loadPriceTable, resolvePrice, type ModelPrice } from "../config/prices.ts";
import { readSeeds } from "../generate/seeds.ts";
import { loadPromptTemplate } from "../steering/prompt-templates.ts";
import { resolveGenerateConfig, type GenerateOptions } from "./generate.ts";

export type EstimateOptions = Omit<GenerateOptions, "out" | "signal" | "drainSignal" | "onProgress" | "languageModel" | "resume" | "concurrency"> & { out?: string };

export interface EstimateResult extends CostEstimate {
  /** The price the estimate uses: the batch price (half the list price) under mode "batch". */
  price: ModelPrice | null;
  /** online or batch (the provider's batch API, billed at half the list price). */
  mode: "online" | "batch";
  /** Under mode "batch": the online list price the batch price derives from. */
  list_price?: ModelPrice;
  price_table_as_of: string;
  /** With maxUsd: how many seeds fit under the cap, typically and guaranteed (at the worst case). */
  seeds_fitting_cap: { typical: number | null; guaranteed: number | null } | null;
  /** Seeds counted (after `limit`) — the denominator of seeds_fitting_cap. */
  seed_count: number;
}

/**
 * The typical cost of a generate run and a worst-case bound (what `rankchain estimate` prints).
 * Spends nothing, needs no key or server: it renders the real prompts and counts them offline.
 */
export async function estimate(options: EstimateOptions): Promise<EstimateResult> {
  const config = resolveGenerateConfig({
    ...options,
    out: options.out ?? "(estimate)",
    // estimate never contacts a server: an openai-compatible model needs no base URL here
    baseUrl: options.baseUrl ?? (options.provider === "openai-compatible" ? "http://estimate.invalid/v1" : undefined),
  });
  const seedFile = readSeeds(config.input, { maxChars: config.maxSeedChars });
  const seeds = config.limit !== undefined ? seedFile.seeds.slice(0, config.limit) : seedFile.seeds;
  const table = loadPriceTable(config.prices);
  const listPrice = resolvePrice({ table, provider: config.provider, model: config.model, priceInput: config.priceInput, priceOutput: config.priceOutput, required: false });
  const batch = config.mode === "batch";
  const price = listPrice && batch ? batchPrice(listPrice) : listPrice;
  const template = loadPromptTemplate(config.steering === "ladder" ? "ladder" : "stepwise", config.promptVersion);
  const est = await estimateRunCost({
    seeds,
    provider: config.provider,
    model: config.model,
    steering: config.steering,
    steps: config.steps,
    maxOutputTokens: config.maxOutputTokens,
    template,
    price,
    oversample: config.oversample,
    stepRetries: config.stepRetries,
  });
  const fitAt = (usd: number | undefined) =>
    config.maxUsd !== undefined && usd !== undefined && usd > 0 ? Math.min(seeds.length, Math.floor((config.maxUsd / usd) * seeds.length)) : undefined;
  return {
    ...est,
    price: price ?? null,
    mode: batch ? "batch" : "online",
    ...(batch && listPrice ? { list_price: listPrice } : {}),
    price_table_as_of: table.as_of,
    seeds_fitting_cap: config.maxUsd !== undefined ? { typical: fitAt(est.usd?.typical) ?? null, guaranteed: fitAt(est.usd?.worst) ?? null } : null,
    seed_count: seeds.length,
  };
}
