/**
 * Factory settings and request-body construction for the OpenAI Chat Completions adapter and its
 * OpenAI-compatible configuration.
 *
 * Dialects:
 * - "openai": `max_completion_tokens` (what current models take; `max_tokens` is deprecated and
 *   rejected by the o-series and gpt-5). Reasoning models (o1/o3/o4, gpt-5 except gpt-5-chat) reject
 *   `temperature` and `stop`: those are left out with an `unsupported-setting` warning.
 * - "compatible": `max_tokens` (vLLM, llama.cpp server and Ollama all know it; not all know
 *   `max_completion_tokens`), every sampling setting passed through.
 * Both send `response_format: { type: "json_schema", json_schema: { name, schema, strict: true } }`
 * for a JSON response format by default; the request's `mode` can ask for `json_object` + schema
 * (llama-cpp-python) or for the schema in the prompt instead (servers that reject or ignore
 * response_format). The caller validates the output either way.
 */
import { z } from "zod";
import type { CallWarning, GenerateRequest } from "../types.ts";

export const REASONING_EFFORTS = ["none", "minimal", "low", "medium", "high"] as const;
export type ReasoningEffort = (typeof REASONING_EFFORTS)[number];

export const openAIModelSettingsSchema = z.object({
  model: z.string().min(1, "model must be a non-empty model id"),
  /** Explicit key; otherwise OPENAI_API_KEY is read at request time. */
  apiKey: z.string().optional(),
  /** Default: the SDK's (OPENAI_BASE_URL, else https://api.openai.com/v1). */
  baseURL: z.string().url().optional(),
  /** Default per-request timeout in ms (a request's own timeoutMs wins). */
  timeoutMs: z.number().int().positive().optional(),
  /** Reasoning models only (o-series, gpt-5): sent as reasoning_effort. */
  reasoningEffort: z.enum(REASONING_EFFORTS).optional(),
});

export interface OpenAIModelSettings {
  model: string;
  apiKey?: string | undefined;
  baseURL?: string | undefined;
  /** Injected fetch (tests, proxies); default: global fetch. */
  fetch?: typeof globalThis.fetch | undefined;
  timeoutMs?: number | undefined;
  reasoningEffort?: ReasoningEffort | undefined;
}

export type OpenAIDialect = "openai" | "compatible";

/** o1 / o3 / o4 families and gpt-5 (not gpt-5-chat): no temperature, no stop. */
export function isOpenAIReasoningModel(model: string): boolean {
  const m = model.toLowerCase();
  if (/^gpt-5(\.\d+)?-chat/.test(m)) return false;
  return /^(o1|o3|o4|gpt-5)/.test(m);
}

export interface OpenAIChatMessageBody {
  role: "system" | "user" | "assistant";
  content: string;
}

/** The request body this adapter sends (a subset of ChatCompletionCreateParamsNonStreaming). */
export interface OpenAIChatBody {
  model: string;
  messages: OpenAIChatMessageBody[];
  max_completion_tokens?: number;
  max_tokens?: number;
  temperature?: number;
  seed?: number;
  stop?: string[];
  reasoning_effort?: ReasoningEffort;
  response_format?:
    | { type: "json_schema"; json_schema: { name: string; schema: Record<string, unknown>; strict: true } }
    | { type: "json_object"; schema: Record<string, unknown> };
}

/** The instruction appended to the last user message when the schema cannot be sent (mode "prompt"). */
export function schemaInstruction(schema: Record<string, unknown>): string {
  return `\n\nAnswer with one JSON object only, no prose and no code fence, valid against this JSON Schema:\n${JSON.stringify(schema)}`;
}

export function buildOpenAIChatBody(
  request: GenerateRequest,
  opts: { model: string; dialect: OpenAIDialect; reasoningEffort?: ReasoningEffort | undefined },
): { body: OpenAIChatBody; warnings: CallWarning[] } {
  const warnings: CallWarning[] = [];
  const reasoning = opts.dialect === "openai" && isOpenAIReasoningModel(opts.model);
  const body: OpenAIChatBody = {
    model: opts.model,
    messages: request.messages.map((m) => ({ role: m.role, content: m.content })),
  };
  if (opts.dialect === "openai") body.max_completion_tokens = request.maxOutputTokens;
  else body.max_tokens = request.maxOutputTokens;

  if (request.temperature !== undefined) {
    if (reasoning) {
      warnings.push({
        type: "unsupported-setting",
        setting: "temperature",
        details: `${opts.model} is a reasoning model and does not accept temperature; it was not sent`,
      });
    } else body.temperature = request.temperature;
  }
  if (request.seed !== undefined) body.seed = request.seed;
  if (request.stop !== undefined && request.stop.length > 0) {
    if (reasoning) {
      warnings.push({
        type: "unsupported-setting",
        setting: "stop",
        details: `${opts.model} is a reasoning model and does not accept stop sequences; they were not sent`,
      });
    } else body.stop = request.stop;
  }
  if (opts.reasoningEffort !== undefined) {
    if (reasoning) body.reasoning_effort = opts.reasoningEffort;
    else warnings.push({ type: "unsupported-setting", setting: "reasoningEffort", details: `${opts.model} is not a reasoning model` });
  }
  const rf = request.responseFormat;
  if (rf) {
    const mode = rf.mode ?? "json_schema";
    if (mode === "json_schema") {
      body.response_format = { type: "json_schema", json_schema: { name: rf.name, schema: rf.schema, strict: true } };
    } else if (mode === "json_object") {
      body.response_format = { type: "json_object", schema: rf.schema };
    } else {
      // no response_format at all: the schema goes into the prompt; the caller extracts and repairs
      const last = body.messages.map((m) => m.role).lastIndexOf("user");
      if (last >= 0) body.messages[last] = { ...body.messages[last]!, content: body.messages[last]!.content + schemaInstruction(rf.schema) };
    }
  }
  return { body, warnings };
}
