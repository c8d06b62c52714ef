import OpenAI, { APIError } from "openai";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { z } from "zod";
import { JsonlAppender, readJsonl } from "../store/jsonl.ts";
import { getEncoding, type Tiktoken } from "js-tiktoken";
import type { Ledger, LedgerStage, Reservation } from "../budget/types.ts";
import { settleFailure } from "../budget/billing.ts";
import { loadApiKey, redactSecrets, redactUrl } from "../config/env.ts";
import { costUsd, DEFAULT_PRICES, resolvePrice, type ModelPrice, type PriceTable } from "../config/prices.ts";
import { ConfigError, ProviderCallError, RankchainError } from "../errors.ts";
import { registryEntry } from "./registry.ts";
import { checkBaseUrlCredentials, splitBaseUrl } from "../llm/openai/openai-chat-model.ts";
import type { Embedder, EmbedderInfo } from "./types.ts";

/**
 * OpenAI embeddings API (or an OpenAI-compatible server) through the official SDK. With a ledger,
 * every request reserves its worst case first (input tokens counted with cl100k_base × the input
 * price) — a request that would cross the cap is not sent (BudgetExceededError) — and the
 * reservation is replaced by the reported `usage.prompt_tokens` afterwards. Each retry attempt
 * reserves again. The SDK's own retries are off so no attempt escapes the ledger.
 */
export interface OpenAIEmbedderOptions {
  /** Model id, e.g. text-embedding-3-small. */
  model: string;
  apiKey?: string;
  /** Default: $OPENAI_BASE_URL, else the SDK's default. */
  baseURL?: string;
  fetch?: typeof fetch;
  ledger?: Ledger;
  /** Ledger stage of the spend (default "validate"). */
  stage?: LedgerStage;
  /** USD per million tokens; default: the price table entry for openai/<model>. */
  price?: ModelPrice;
  priceTable?: PriceTable;
  /** Texts per request (default 256; the API allows 2,048). */
  batchSize?: number;
  /** Token budget per request (default 250,000; the API allows 300,000). */
  maxTokensPerRequest?: number;
  /** Output dimensions (text-embedding-3 models can shorten their vectors). */
  dimensions?: number;
  /** Attempts after the first for retryable failures (429, 5xx, connection); default 2. */
  maxRetries?: number;
  timeoutMs?: number;
  /** Injected for tests: waits between retries. */
  sleep?: (ms: number) => Promise<void>;
  /**
   * JSONL file of paid vectors (validate: RUN_DIR/embeddings-paid.jsonl). Texts found there are not
   * requested again; each answer is appended before its charge, so a rerun after kill -9 pays for
   * nothing twice.
   */
  cachePath?: string;
}

const PaidVectorSchema = z.object({ k: z.string(), v: z.string() });

/** Per-input limit of OpenAI's embedding models. */
export const MAX_INPUT_TOKENS = 8191;

let encoder: Tiktoken | undefined;
function cl100k(): Tiktoken {
  encoder ??= getEncoding("cl100k_base");
  return encoder;
}

export function countEmbeddingTokens(text: string): number {
  // special-token text such as <|endoftext|> is ordinary input to the embeddings API
  return cl100k().encode(text, [], []).length;
}

export class OpenAIEmbedder implements Embedder {
  readonly info: EmbedderInfo;
  private readonly client: OpenAI;
  private readonly price: ModelPrice | undefined;
  private readonly batchSize: number;
  private readonly maxTokensPerRequest: number;
  private readonly maxRetries: number;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly apiKey: string;
  private disposed = false;
  private readonly officialApi: boolean;

  constructor(private readonly opts: OpenAIEmbedderOptions) {
    this.apiKey = loadApiKey({ apiKey: opts.apiKey, envVar: "OPENAI_API_KEY", option: "an apiKey option", provider: "the OpenAI embedder" });
    const baseURL = opts.baseURL ?? (process.env.OPENAI_BASE_URL || undefined);
    // same base-URL rules as the chat adapter: user:password@ refused (fetch will not send it),
    // query parameters sent on every request through defaultQuery
    checkBaseUrlCredentials(baseURL, "the OpenAI embedder");
    const base = baseURL ? splitBaseUrl(baseURL) : undefined;
    this.client = new OpenAI({
      apiKey: this.apiKey,
      ...(base ? { baseURL: base.baseURL } : {}),
      ...(base?.query ? { defaultQuery: base.query } : {}),
      ...(opts.fetch ? { fetch: opts.fetch } : {}),
      maxRetries: 0,
      ...(opts.timeoutMs !== undefined ? { timeout: opts.timeoutMs } : {}),
    });
    this.officialApi = /^https:\/\/api\.openai\.com(\/|$)/.test(this.client.baseURL);
    this.price = opts.price ?? resolvePrice({
      table: opts.priceTable ?? DEFAULT_PRICES,
      provider: "openai",
      model: opts.model,
      required: opts.ledger?.capUsd !== undefined,
    });
    this.batchSize = Math.min(2048, opts.batchSize ?? 256);
    if (!Number.isInteger(this.batchSize) || this.batchSize < 1) throw new ConfigError(`embedder batchSize must be a positive integer, got ${opts.batchSize}`);
    this.maxTokensPerRequest = opts.maxTokensPerRequest ?? 250_000;
    this.maxRetries = opts.maxRetries ?? 2;
    this.sleep = opts.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms)));
    const entry = registryEntry(opts.model);
    this.info = {
      id: `openai:${opts.model}${opts.dimensions !== undefined ? `@${opts.dimensions}` : ""}`,
      backend: "openai",
      model: opts.model,
      dtype: "provider",
      pooling: "provider",
      normalize: true,
      dimensions: opts.dimensions ?? (entry?.backend === "openai" ? entry.dimensions : undefined),
      source: redactUrl(this.client.baseURL),
      runtime: "openai-sdk",
      batchSize: this.batchSize,
    };
  }

  /** Splits texts into requests by count and by counted tokens. */
  private plan(texts: string[]): Array<{ start: number; end: number; tokens: number }> {
    const out: Array<{ start: number; end: number; tokens: number }> = [];
    let start = 0;
    let tokens = 0;
    for (let i = 0; i < texts.length; i++) {
      const t = countEmbeddingTokens(texts[i]!);
      if (t > MAX_INPUT_TOKENS) {
        throw new ConfigError(`text ${i} has ${t} tokens; ${this.opts.model} accepts at most ${MAX_INPUT_TOKENS} per input`);
      }
      if (i > start && (i - start >= this.batchSize || tokens + t > this.maxTokensPerRequest)) {
        out.push({ start, end: i, tokens });
        start = i;
        tokens = 0;
      }
      tokens += t;
    }
    if (texts.length > start) out.push({ start, end: texts.length, tokens });
    return out;
  }

  async embed(texts: string[]): Promise<Float32Array[]> {
    if (this.disposed) throw new RankchainError(`embedder ${this.info.id} was disposed`);
    // The API rejects empty strings; a single space embeds "nothing" without failing the batch.
    const inputs = texts.map((t) => (t === "" ? " " : t));
    const out: Float32Array[] = new Array(texts.length);
    const cache = await this.cache();
    const missing: number[] = [];
    const firstOf = new Map<string, number>();
    inputs.forEach((t, i) => {
      const hit = cache?.vectors.get(this.cacheKey(t));
      if (hit) out[i] = hit;
      else if (!firstOf.has(t)) {
        firstOf.set(t, missing.length);
        missing.push(i);
      }
    });
    const todo = missing.map((i) => inputs[i]!);
    const got: Float32Array[] = new Array(todo.length);
    for (const batch of this.plan(todo)) {
      const vectors = await this.request(todo.slice(batch.start, batch.end), batch.tokens);
      vectors.forEach((v, k) => {
        got[batch.start + k] = v;
      });
    }
    inputs.forEach((t, i) => {
      if (!out[i]) out[i] = got[firstOf.get(t)!]!;
    });
    return out;
  }

  private cacheState: Promise<{ vectors: Map<string, Float32Array>; sink: JsonlAppender } | undefined> | undefined;

  private cache(): Promise<{ vectors: Map<string, Float32Array>; sink: JsonlAppender } | undefined> {
    const path = this.opts.cachePath;
    if (path === undefined) return Promise.resolve(undefined);
    this.cacheState ??= (async () => {
      const vectors = new Map<string, Float32Array>();
      if (existsSync(path)) {
        for await (const { value } of readJsonl(path, PaidVectorSchema, { onIssue: () => undefined })) {
          const b = Buffer.from(value.v, "base64");
          vectors.set(value.k, new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4).slice());
        }
      }
      return { vectors, sink: await JsonlAppender.open(path) };
    })();
    return this.cacheState;
  }

  /** Keyed by the embedder id (model, dimensions) and the text. */
  private cacheKey(text: string): string {
    return createHash("sha256").update(this.info.id).update("\0").update(text).digest("hex").slice(0, 40);
  }

  private async request(input: string[], countedTokens: number): Promise<Float32Array[]> {
    for (let attempt = 0; ; attempt++) {
      const reservation: Reservation | undefined = this.opts.ledger
        ? await this.opts.ledger.reserve({
            stage: this.opts.stage ?? "validate",
            model: `openai/${this.opts.model}`,
            inputTokens: countedTokens,
            maxOutputTokens: 0,
            // cl100k counts what OpenAI bills; another server behind the base URL may tokenize differently
            count: this.officialApi ? "exact" : "estimate",
            price: this.price,
          })
        : undefined;
      let res: OpenAI.CreateEmbeddingResponse;
      let requestId: string | null | undefined;
      try {
        ({ data: res, request_id: requestId } = await this.client.embeddings
          .create({
            model: this.opts.model,
            input,
            encoding_format: "float",
            ...(this.opts.dimensions !== undefined ? { dimensions: this.opts.dimensions } : {}),
          })
          .withResponse());
      } catch (e) {
        const err = this.toProviderError(e);
        // a 2xx that did not parse is charged; HTTP errors and never-sent attempts are released
        if (reservation) await settleFailure(this.opts.ledger!, reservation, err);
        if (!err.isRetryable || attempt >= this.maxRetries) throw err;
        await this.sleep(err.retryAfterMs ?? Math.min(60_000, 500 * 2 ** attempt * (1 + Math.random() * 0.25)));
        continue;
      }
      const vectors = toVectors(res.data, input.length, this.opts.model);
      // paid vectors are saved before the charge: a kill between the two leaves them saved and the
      // reservation open (charged at worst case on reopen), never a paid answer lost
      const cache = await this.cache();
      if (cache) {
        await Promise.all(
          input.map((t, k) => {
            const v = vectors[k]!;
            cache.vectors.set(this.cacheKey(t), v);
            return cache.sink.append({ k: this.cacheKey(t), v: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("base64") });
          }),
        );
      }
      const reported = res.usage?.prompt_tokens;
      if (reservation) {
        const tokens = typeof reported === "number" ? reported : reservation.inputTokens;
        await this.opts.ledger!.charge(reservation, {
          inputTokens: tokens,
          outputTokens: 0,
          requestId: requestId ?? undefined,
          ...(typeof reported === "number" ? {} : { estimated: true, note: "no usage in the response; charged the reserved worst case" }),
        });
      }
      return vectors;
    }
  }

  private toProviderError(e: unknown): ProviderCallError {
    if (e instanceof ProviderCallError) return e;
    if (e instanceof APIError) {
      const status = e.status;
      const headers = e.headers;
      const shouldRetry = headers?.get("x-should-retry");
      const ra = headers?.get("retry-after-ms") ?? undefined;
      const raS = headers?.get("retry-after") ?? undefined;
      const retryAfterMs = ra !== undefined && ra !== null ? Number(ra) : raS ? Number(raS) * 1000 : undefined;
      const retryable =
        shouldRetry === "true" ? true : shouldRetry === "false" ? false : status === undefined || status === 408 || status === 409 || status === 429 || status >= 500;
      return new ProviderCallError(redactSecrets(`OpenAI embeddings request failed: ${e.message}`, [this.apiKey]), {
        url: `${this.client.baseURL}/embeddings`,
        status,
        requestId: e.requestID ?? undefined,
        bodyExcerpt: e.error ? redactSecrets(JSON.stringify(e.error).slice(0, 500), [this.apiKey]) : undefined,
        isRetryable: retryable,
        shouldRetryHeader: shouldRetry === "true" ? true : shouldRetry === "false" ? false : undefined,
        retryAfterMs: retryAfterMs !== undefined && Number.isFinite(retryAfterMs) ? Math.min(60_000, retryAfterMs) : undefined,
        cause: e,
      });
    }
    return new ProviderCallError(redactSecrets(`OpenAI embeddings request failed: ${(e as Error).message}`, [this.apiKey]), {
      url: `${this.client.baseURL}/embeddings`,
      isRetryable: false,
      cause: e,
    });
  }

  async dispose(): Promise<void> {
    this.disposed = true;
    const cache = await this.cacheState?.catch(() => undefined);
    await cache?.sink.close();
  }
}

function toVectors(data: Array<{ embedding: number[] | string; index: number }>, n: number, model: string): Float32Array[] {
  if (!Array.isArray(data) || data.length !== n) {
    throw new RankchainError(`${model} returned ${Array.isArray(data) ? data.length : "no"} embeddings for ${n} inputs`);
  }
  const out: Float32Array[] = new Array(n);
  for (const d of data) {
    if (!Array.isArray(d.embedding)) throw new RankchainError(`${model} returned a non-float embedding`);
    out[d.index] = Float32Array.from(d.embedding);
  }
  for (let i = 0; i < n; i++) if (!out[i]) throw new RankchainError(`${model} returned no embedding for input ${i}`);
  return out;
}
