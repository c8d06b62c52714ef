/**
 * OpenAI Chat Completions adapter (also used, in its "compatible" dialect, for OpenAI-compatible
 * servers). One call per generate(); the SDK's own retries are off (maxRetries: 0) because the
 * orchestrator owns retries; every failure leaves as a ProviderCallError (or a ConfigError for a
 * missing key).
 */
import OpenAI from "openai";
import type { z } from "zod";
import { loadApiKey, redactUrl } from "../../config/env.ts";
import { ConfigError } from "../../errors.ts";
import { joinUrl, parseSettings, readResponseJson, redactingLogger, toProviderCallError } from "../errors.ts";
import { conservativeTokenBound, CONSERVATIVE_METHOD, countOpenAIChatTokens } from "../tokens.ts";
import type {
  CallWarning,
  ChatMessage,
  GenerateRequest,
  GenerateResult,
  JsonResponseFormat,
  LanguageModel,
  ModelCapabilities,
  ProviderName,
  TokenCount,
} from "../types.ts";
import { openAIChatResponseSchema } from "./openai-api.ts";
import { ServerTokenizer } from "./server-tokenize.ts";
import { convertOpenAIUsage } from "./convert-openai-usage.ts";
import { mapOpenAIFinishReason } from "./map-openai-finish-reason.ts";
import {
  buildOpenAIChatBody,
  openAIModelSettingsSchema,
  type OpenAIDialect,
  type OpenAIModelSettings,
  type ReasoningEffort,
} from "./openai-options.ts";

/**
 * A base URL as the SDK needs it: query parameters (`?api-version=…`, `?key=…`) become the SDK's
 * defaultQuery — the SDK appends paths to the base URL as a string, so a query left in it would
 * end up in front of "/chat/completions".
 */
export function splitBaseUrl(url: string): { baseURL: string; query: Record<string, string> | undefined } {
  const u = new URL(url);
  if (u.search === "") return { baseURL: url, query: undefined };
  const query = Object.fromEntries(u.searchParams.entries());
  u.search = "";
  return { baseURL: u.toString(), query };
}

/**
 * Refuses a base URL with user-info (`https://user:token@host`): Node's fetch will not send a
 * request to such a URL, so every call would fail as a "connection error". Exit 2 instead, with the
 * URL shown redacted.
 */
export function checkBaseUrlCredentials(url: string | undefined, what: string): void {
  if (url === undefined) return;
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return; // the settings schema reports a malformed URL
  }
  if (u.username !== "" || u.password !== "") {
    throw new ConfigError(
      `${what}: the base URL holds credentials (${redactUrl(url)}); Node's fetch refuses such URLs — ` +
        "remove the user:password@ part and put the key in OPENAI_API_KEY (a key in a query parameter such as ?key= is fine)",
    );
  }
}

/** Placeholder key for local servers that need none (they ignore the Authorization header). */
export const NO_KEY_PLACEHOLDER = "not-needed";

export interface OpenAIChatModelConfig {
  provider: ProviderName;
  dialect: OpenAIDialect;
  model: string;
  baseURL: string | undefined;
  /** Returns the key at request time (throws ConfigError when it is required and missing). */
  resolveApiKey: () => string;
  fetch: typeof globalThis.fetch | undefined;
  timeoutMs: number | undefined;
  reasoningEffort: ReasoningEffort | undefined;
}

export class OpenAIChatModel implements LanguageModel {
  readonly provider: ProviderName;
  readonly modelId: string;
  readonly capabilities: ModelCapabilities;
  private cached: { key: string; client: OpenAI } | undefined;
  /** OpenAI-compatible servers: their own tokenize endpoint, detected on first count. */
  private readonly serverTokenizer: ServerTokenizer | undefined;

  constructor(private readonly config: OpenAIChatModelConfig) {
    this.provider = config.provider;
    this.modelId = config.model;
    this.capabilities = { guidance: false, structuredOutput: true, paid: true };
    this.serverTokenizer =
      config.dialect === "compatible" && config.baseURL !== undefined
        ? new ServerTokenizer(config.baseURL, config.model, {
            fetch: config.fetch,
            apiKey: () => {
              const k = config.resolveApiKey();
              return k === NO_KEY_PLACEHOLDER ? undefined : k;
            },
          })
        : undefined;
  }

  /** The SDK client for the current key (rebuilt if the key changed). */
  private client(): { client: OpenAI; apiKey: string } {
    const apiKey = this.config.resolveApiKey();
    if (!this.cached || this.cached.key !== apiKey) {
      const base = this.config.baseURL !== undefined ? splitBaseUrl(this.config.baseURL) : undefined;
      const client = new OpenAI({
        apiKey,
        ...(base !== undefined ? { baseURL: base.baseURL } : {}),
        ...(base?.query !== undefined ? { defaultQuery: base.query } : {}),
        ...(this.config.fetch !== undefined ? { fetch: this.config.fetch } : {}),
        maxRetries: 0,
        ...(this.config.timeoutMs !== undefined ? { timeout: this.config.timeoutMs } : {}),
        logger: redactingLogger([apiKey]),
      });
      this.cached = { key: apiKey, client };
    }
    return { client: this.cached.client, apiKey };
  }

  /** Throws ConfigError (exit 2) naming the variable when the key is required and missing. */
  checkApiKey(): void {
    this.config.resolveApiKey();
  }

  async generate(request: GenerateRequest): Promise<GenerateResult> {
    const { body, warnings } = buildOpenAIChatBody(request, {
      model: this.modelId,
      dialect: this.config.dialect,
      reasoningEffort: this.config.reasoningEffort,
    });
    const { client, apiKey } = this.client();
    const url = joinUrl(client.baseURL, "/chat/completions");
    const secrets = [apiKey];
    let response: Response;
    try {
      response = await client.chat.completions
        .create(body as OpenAI.Chat.ChatCompletionCreateParamsNonStreaming, {
          maxRetries: 0,
          ...(request.abortSignal ? { signal: request.abortSignal } : {}),
          ...(request.timeoutMs !== undefined ? { timeout: request.timeoutMs } : {}),
        })
        .asResponse();
    } catch (e) {
      throw toProviderCallError(e, { url, provider: this.provider, secrets });
    }
    const { data, json, requestId } = await readResponseJson(response, (j) => openAIChatResponseSchema.safeParse(j), {
      provider: this.provider,
      url,
      requestIdHeader: "x-request-id",
      secrets,
    });
    return openAIChatResult(data, json, warnings, requestId ?? undefined);
  }

  async countInputTokens(
    messages: ChatMessage[],
    options?: { responseFormat?: JsonResponseFormat | undefined },
  ): Promise<TokenCount> {
    if (this.config.dialect === "openai") return countOpenAIChatTokens(this.modelId, messages, options);
    const counted = await this.serverTokenizer?.count(messages);
    if (counted) return counted;
    return { tokens: conservativeTokenBound(messages, options), exact: false, method: CONSERVATIVE_METHOD, quality: "bound" };
  }
}

/** A parsed chat completion body → GenerateResult (shared by online calls and batch results). */
export function openAIChatResult(
  data: z.infer<typeof openAIChatResponseSchema>,
  json: unknown,
  warnings: readonly CallWarning[],
  requestId: string | undefined,
): GenerateResult {
  const choice = data.choices[0]!;
  const out: CallWarning[] = [...warnings];
  let finishReason = mapOpenAIFinishReason(choice.finish_reason);
  const refusal = choice.message.refusal;
  if (refusal) {
    out.push({ type: "other", message: `the model refused: ${refusal}` });
    if (!choice.message.content) finishReason = { unified: "content-filter", raw: choice.finish_reason ?? "refusal" };
  }
  return {
    text: choice.message.content ?? "",
    finishReason,
    usage: convertOpenAIUsage(data.usage),
    warnings: out,
    requestId,
    raw: json,
  };
}

/**
 * OpenAI (api.openai.com or any base URL speaking its current dialect). The key comes from
 * `apiKey`, else OPENAI_API_KEY, read at request time.
 */
export function createOpenAIModel(settings: OpenAIModelSettings): OpenAIChatModel {
  const given = { ...settings, baseURL: settings.baseURL === "" ? undefined : settings.baseURL };
  const s = parseSettings(openAIModelSettingsSchema, given, "openai model");
  checkBaseUrlCredentials(s.baseURL, "openai");
  return new OpenAIChatModel({
    provider: "openai",
    dialect: "openai",
    model: s.model,
    baseURL: s.baseURL,
    resolveApiKey: () =>
      loadApiKey({ apiKey: settings.apiKey, envVar: "OPENAI_API_KEY", option: "the apiKey option", provider: "openai" }),
    fetch: settings.fetch,
    timeoutMs: s.timeoutMs,
    reasoningEffort: s.reasoningEffort,
  });
}
