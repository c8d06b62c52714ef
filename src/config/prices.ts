import { readFileSync } from "node:fs";
import { z } from "zod";
import { ConfigError } from "../errors.ts";

/**
 * USD per million tokens. One dated table; a JSON config file (--prices FILE) or --price-input /
 * --price-output override it. An unknown model has NO price (never $0): with --max-usd that is a
 * ConfigError (exit 2) unless prices are given.
 */
export const ModelPriceSchema = z.object({
  input: z.number().nonnegative(),
  output: z.number().nonnegative(),
  cached_input: z.number().nonnegative().optional(),
});
export type ModelPrice = z.infer<typeof ModelPriceSchema>;

export const PriceTableSchema = z.object({
  as_of: z.string(),
  source: z.string().optional(),
  /** keys: "provider/model" or a bare model id */
  models: z.record(z.string(), ModelPriceSchema),
});
export type PriceTable = z.infer<typeof PriceTableSchema>;

export const DEFAULT_PRICES: PriceTable = {
  as_of: "2025-10-01",
  source: "providers' public price pages as of the date; check before large runs and override with --prices",
  models: {
    "openai/gpt-4o": { input: 2.5, output: 10, cached_input: 1.25 },
    "openai/gpt-4o-mini": { input: 0.15, output: 0.6, cached_input: 0.075 },
    "openai/gpt-4.1": { input: 2, output: 8, cached_input: 0.5 },
    "openai/gpt-4.1-mini": { input: 0.4, output: 1.6, cached_input: 0.1 },
    "openai/gpt-4.1-nano": { input: 0.1, output: 0.4, cached_input: 0.025 },
    "openai/gpt-5": { input: 1.25, output: 10, cached_input: 0.125 },
    "openai/gpt-5-mini": { input: 0.25, output: 2, cached_input: 0.025 },
    "openai/gpt-5-nano": { input: 0.05, output: 0.4, cached_input: 0.005 },
    "openai/text-embedding-3-small": { input: 0.02, output: 0 },
    "openai/text-embedding-3-large": { input: 0.13, output: 0 },
    "anthropic/claude-3-5-haiku-latest": { input: 0.8, output: 4, cached_input: 0.08 },
    "anthropic/claude-haiku-4-5": { input: 1, output: 5, cached_input: 0.1 },
    "anthropic/claude-sonnet-4-5": { input: 3, output: 15, cached_input: 0.3 },
    "anthropic/claude-sonnet-4-0": { input: 3, output: 15, cached_input: 0.3 },
    "anthropic/claude-opus-4-1": { input: 15, output: 75, cached_input: 1.5 },
  },
};

export function loadPriceTable(path: string | undefined): PriceTable {
  if (!path) return DEFAULT_PRICES;
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new ConfigError(`cannot read price table: ${(e as Error).message}`, { location: { file: path } });
  }
  const partial = PriceTableSchema.partial({ as_of: true }).safeParse(raw);
  if (!partial.success) {
    const i = partial.error.issues[0];
    throw new ConfigError(i?.message ?? "invalid price table", {
      location: { file: path, field: i?.path.join(".") ?? "" },
    });
  }
  // A config file overrides entries of the built-in table and adds new ones.
  return {
    as_of: partial.data.as_of ?? DEFAULT_PRICES.as_of,
    source: partial.data.source ?? path,
    models: { ...DEFAULT_PRICES.models, ...partial.data.models },
  };
}

/**
 * Finds a model's price: exact "provider/model", then the bare id, then the longest table key
 * that the model id starts with (dated snapshots such as gpt-4o-mini-2024-07-18). Local models are
 * free. Returns undefined when the price is unknown.
 */
export function lookupPrice(table: PriceTable, provider: string, model: string): ModelPrice | undefined {
  if (provider === "local") return { input: 0, output: 0, cached_input: 0 };
  const keys = [`${provider}/${model}`, model];
  for (const k of keys) {
    const p = table.models[k];
    if (p) return p;
  }
  const prefix = provider === "openai-compatible" ? undefined : `${provider}/`;
  if (!prefix) return undefined;
  let best: { key: string; price: ModelPrice } | undefined;
  for (const [key, price] of Object.entries(table.models)) {
    if (!key.startsWith(prefix)) continue;
    const id = key.slice(prefix.length);
    if (model.startsWith(id + "-") && (!best || key.length > best.key.length)) best = { key, price };
  }
  return best?.price;
}

export function resolvePrice(opts: {
  table: PriceTable;
  provider: string;
  model: string;
  priceInput?: number | undefined;
  priceOutput?: number | undefined;
  required: boolean;
}): ModelPrice | undefined {
  const found = lookupPrice(opts.table, opts.provider, opts.model);
  if (opts.priceInput !== undefined || opts.priceOutput !== undefined) {
    const input = opts.priceInput ?? found?.input;
    const output = opts.priceOutput ?? found?.output;
    if (input === undefined || output === undefined) {
      throw new ConfigError(
        `model "${opts.model}" has no price in the table; give both --price-input and --price-output (USD per million tokens)`,
      );
    }
    return { input, output, ...(found?.cached_input !== undefined ? { cached_input: found.cached_input } : {}) };
  }
  if (!found && opts.required) {
    throw new ConfigError(
      `model "${opts.model}" (provider ${opts.provider}) has no price in the table (as of ${opts.table.as_of}); ` +
        `a budget cap needs one: pass --price-input and --price-output (USD per million tokens) or --prices FILE`,
    );
  }
  return found;
}

export function costUsd(price: ModelPrice, input: number, output: number, cachedInput = 0): number {
  const cachedPrice = price.cached_input ?? price.input;
  const uncached = Math.max(0, input - cachedInput);
  return (uncached * price.input + cachedInput * cachedPrice + output * price.output) / 1e6;
}

/** OpenAI's Batch API and Anthropic's Message Batches both bill 50% of the online price. */
export const BATCH_PRICE_FACTOR = 0.5;

export function batchPrice(price: ModelPrice): ModelPrice {
  return {
    input: price.input * BATCH_PRICE_FACTOR,
    output: price.output * BATCH_PRICE_FACTOR,
    ...(price.cached_input !== undefined ? { cached_input: price.cached_input * BATCH_PRICE_FACTOR } : {}),
  };
}
