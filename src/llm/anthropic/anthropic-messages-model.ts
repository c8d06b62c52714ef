/**
 * Anthropic Messages adapter. One call per generate(); SDK retries off (the orchestrator owns
 * retries); failures leave as ProviderCallError (ConfigError for a missing key).
 *
 * Input tokens are counted with the free `messages/count_tokens` endpoint (same system, messages and
 * tools as the real call); if that fails for any reason the count falls back to a conservative bound
 * (bytes + per-message overhead + the tool-use system prompt), marked `exact: false`.
 */
import type { z } from "zod";
import Anthropic from "@anthropic-ai/sdk";
import { loadApiKey } from "../../config/env.ts";
import { joinUrl, parseSettings, readResponseJson, redactingLogger, toProviderCallError } from "../errors.ts";
import { conservativeTokenBound, CONSERVATIVE_METHOD, utf8Bytes } from "../tokens.ts";
import type {
  CallWarning,
  ChatMessage,
  GenerateRequest,
  GenerateResult,
  JsonResponseFormat,
  LanguageModel,
  ModelCapabilities,
  TokenCount,
} from "../types.ts";
import { anthropicCountTokensResponseSchema, anthropicMessageResponseSchema } from "./anthropic-api.ts";
import { convertAnthropicUsage } from "./convert-anthropic-usage.ts";
import { mapAnthropicFinishReason } from "./map-anthropic-finish-reason.ts";
import {
  anthropicModelSettingsSchema,
  anthropicToolFor,
  buildAnthropicBody,
  toAnthropicMessages,
  type AnthropicModelSettings,
} from "./anthropic-options.ts";

/**
 * Upper bound on the hidden tool-use system prompt Anthropic adds when tools are present
 * (documented as 313–346 tokens for current models), plus the tool definition's own JSON.
 */
export const ANTHROPIC_TOOL_OVERHEAD_BOUND = 512;

/** Default per-request timeout: the SDK's non-streaming default (10 minutes). */
const DEFAULT_TIMEOUT_MS = 600_000;

export class AnthropicMessagesModel implements LanguageModel {
  readonly provider = "anthropic" as const;
  readonly modelId: string;
  readonly capabilities: ModelCapabilities = { guidance: false, structuredOutput: true, paid: true };
  private cached: { key: string; client: Anthropic } | undefined;

  constructor(
    private readonly settings: {
      model: string;
      apiKey: string | undefined;
      baseURL: string | undefined;
      fetch: typeof globalThis.fetch | undefined;
      timeoutMs: number | undefined;
    },
  ) {
    this.modelId = settings.model;
  }

  private resolveApiKey(): string {
    return loadApiKey({
      apiKey: this.settings.apiKey,
      envVar: "ANTHROPIC_API_KEY",
      option: "the apiKey option",
      provider: "anthropic",
    });
  }

  /** Throws ConfigError (exit 2) naming ANTHROPIC_API_KEY when no key is available. */
  checkApiKey(): void {
    this.resolveApiKey();
  }

  private client(): { client: Anthropic; apiKey: string } {
    const apiKey = this.resolveApiKey();
    if (!this.cached || this.cached.key !== apiKey) {
      const client = new Anthropic({
        apiKey,
        ...(this.settings.baseURL !== undefined ? { baseURL: this.settings.baseURL } : {}),
        ...(this.settings.fetch !== undefined ? { fetch: this.settings.fetch } : {}),
        maxRetries: 0,
        timeout: this.settings.timeoutMs ?? DEFAULT_TIMEOUT_MS,
        logger: redactingLogger([apiKey]),
      });
      this.cached = { key: apiKey, client };
    }
    return { client: this.cached.client, apiKey };
  }

  async generate(request: GenerateRequest): Promise<GenerateResult> {
    const { body, warnings, toolName } = buildAnthropicBody(request, { model: this.modelId });
    const { client, apiKey } = this.client();
    const url = joinUrl(client.baseURL, "/v1/messages");
    const secrets = [apiKey];
    let response: Response;
    try {
      response = await client.messages
        .create(body as Anthropic.MessageCreateParamsNonStreaming, {
          maxRetries: 0,
          timeout: request.timeoutMs ?? this.settings.timeoutMs ?? DEFAULT_TIMEOUT_MS,
          ...(request.abortSignal ? { signal: request.abortSignal } : {}),
        })
        .asResponse();
    } catch (e) {
      throw toProviderCallError(e, { url, provider: this.provider, secrets });
    }
    const { data, json, requestId } = await readResponseJson(
      response,
      (j) => anthropicMessageResponseSchema.safeParse(j),
      { provider: this.provider, url, requestIdHeader: "request-id", secrets },
    );
    return anthropicMessageResult(data, json, warnings, toolName, requestId);
  }

  async countInputTokens(
    messages: ChatMessage[],
    options?: { responseFormat?: JsonResponseFormat | undefined },
  ): Promise<TokenCount> {
    const format = options?.responseFormat;
    try {
      const { client } = this.client();
      const { system, messages: msgs } = toAnthropicMessages(messages);
      const tool = format ? anthropicToolFor(format) : undefined;
      const params = {
        model: this.modelId,
        messages: msgs,
        ...(system !== undefined ? { system } : {}),
        ...(tool ? { tools: [tool], tool_choice: { type: "tool" as const, name: tool.name } } : {}),
      };
      const response = await client.messages
        .countTokens(params as Anthropic.MessageCountTokensParams, {
          maxRetries: 0,
          timeout: this.settings.timeoutMs ?? 30_000,
        })
        .asResponse();
      const parsed = anthropicCountTokensResponseSchema.safeParse(await response.json());
      if (!parsed.success) throw new Error("count_tokens returned an unexpected body");
      // Anthropic documents the count as an estimate: the budget reserves it with a margin.
      return { tokens: parsed.data.input_tokens, exact: true, method: "anthropic count_tokens endpoint", quality: "estimate" };
    } catch (e) {
      return {
        tokens: anthropicConservativeBound(messages, format),
        exact: false,
        method: `${CONSERVATIVE_METHOD} + tool overhead (count_tokens unavailable: ${reasonOf(e)})`,
      };
    }
  }
}

/** A parsed Messages body → GenerateResult (shared by online calls and batch results). */
export function anthropicMessageResult(
  data: z.infer<typeof anthropicMessageResponseSchema>,
  json: unknown,
  warnings: readonly CallWarning[],
  toolName: string | undefined,
  requestId: string | undefined,
): GenerateResult {
  const out: CallWarning[] = [...warnings];
  let text = "";
  if (toolName !== undefined) {
    const block = data.content.find(
      (b): b is { type: "tool_use"; name: string; input: unknown } => b.type === "tool_use" && "name" in b && b.name === toolName,
    );
    if (block) text = JSON.stringify(block.input ?? null);
    else {
      text = textOf(data.content);
      out.push({ type: "other", message: `the forced tool call "${toolName}" is missing from the response; returning its text` });
    }
  } else text = textOf(data.content);
  return {
    text,
    finishReason: mapAnthropicFinishReason(data.stop_reason, { forcedTool: toolName !== undefined }),
    usage: convertAnthropicUsage(data.usage),
    warnings: out,
    requestId,
    raw: json,
  };
}

function textOf(content: Array<{ type: string }>): string {
  return content
    .filter((b): b is { type: "text"; text: string } => b.type === "text" && typeof (b as { text?: unknown }).text === "string")
    .map((b) => b.text)
    .join("");
}

function reasonOf(e: unknown): string {
  if (e instanceof Anthropic.APIError && typeof e.status === "number") return `HTTP ${e.status}`;
  if (e instanceof Error) return e.name === "ConfigError" ? "no API key" : e.name;
  return "error";
}

/** The conservative bound plus the forced tool's hidden system prompt and definition. */
export function anthropicConservativeBound(messages: ChatMessage[], format?: JsonResponseFormat | undefined): number {
  let n = conservativeTokenBound(messages, { responseFormat: format });
  if (format) n += ANTHROPIC_TOOL_OVERHEAD_BOUND + utf8Bytes(anthropicToolFor(format).description);
  return n;
}

/** Anthropic Messages. The key comes from `apiKey`, else ANTHROPIC_API_KEY, read at request time. */
export function createAnthropicModel(settings: AnthropicModelSettings): AnthropicMessagesModel {
  const given = { ...settings, baseURL: settings.baseURL === "" ? undefined : settings.baseURL };
  const s = parseSettings(anthropicModelSettingsSchema, given, "anthropic model");
  return new AnthropicMessagesModel({
    model: s.model,
    apiKey: settings.apiKey,
    baseURL: s.baseURL,
    fetch: settings.fetch,
    timeoutMs: s.timeoutMs,
  });
}
