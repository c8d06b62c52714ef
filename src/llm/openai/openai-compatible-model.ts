/**
 * OpenAI-compatible servers (vLLM, llama.cpp server, Ollama, LM Studio, …): the OpenAI adapter in
 * its "compatible" dialect — `max_tokens` instead of `max_completion_tokens`, every sampling
 * setting passed through, input tokens estimated with the conservative bound (the server's own
 * tokenizer is unknown), and the server's reported usage after the call.
 *
 * Base URL: `baseURL`, else OPENAI_BASE_URL; one of them is required. Key: `apiKey`, else
 * OPENAI_API_KEY, else the placeholder "not-needed" (local servers ignore it).
 * Structured output is requested with `response_format: json_schema`; some servers ignore it, so the
 * caller must validate the output either way.
 */
import { z } from "zod";
import { ConfigError } from "../../errors.ts";
import { redactUrl } from "../../config/env.ts";
import { parseSettings } from "../errors.ts";
import { checkBaseUrlCredentials, NO_KEY_PLACEHOLDER, OpenAIChatModel } from "./openai-chat-model.ts";

export const openAICompatibleSettingsSchema = z.object({
  model: z.string().min(1, "model must be a non-empty model id"),
  baseURL: z.string().url().optional(),
  apiKey: z.string().optional(),
  timeoutMs: z.number().int().positive().optional(),
});

export interface OpenAICompatibleModelSettings {
  model: string;
  /** Required unless OPENAI_BASE_URL is set, e.g. http://localhost:8000/v1 (vLLM), http://localhost:11434/v1 (Ollama). */
  baseURL?: string | undefined;
  apiKey?: string | undefined;
  fetch?: typeof globalThis.fetch | undefined;
  timeoutMs?: number | undefined;
}

export function createOpenAICompatibleModel(settings: OpenAICompatibleModelSettings): OpenAIChatModel {
  const given = { ...settings, baseURL: settings.baseURL === "" ? undefined : settings.baseURL };
  const s = parseSettings(openAICompatibleSettingsSchema, given, "openai-compatible model");
  const envBase = process.env["OPENAI_BASE_URL"];
  const baseURL = s.baseURL ?? (envBase !== undefined && envBase !== "" ? envBase : undefined);
  if (baseURL === undefined) {
    throw new ConfigError(
      "openai-compatible needs the server's base URL: pass --base-url (e.g. http://localhost:8000/v1) or set OPENAI_BASE_URL",
    );
  }
  if (!/^https?:\/\//.test(baseURL)) {
    throw new ConfigError(`openai-compatible base URL must start with http:// or https:// (got "${redactUrl(baseURL)}")`);
  }
  checkBaseUrlCredentials(baseURL, "openai-compatible");
  return new OpenAIChatModel({
    provider: "openai-compatible",
    dialect: "compatible",
    model: s.model,
    baseURL,
    resolveApiKey: () => {
      if (settings.apiKey !== undefined && settings.apiKey !== "") return settings.apiKey;
      const env = process.env["OPENAI_API_KEY"];
      return env !== undefined && env !== "" ? env : NO_KEY_PLACEHOLDER;
    },
    fetch: settings.fetch,
    timeoutMs: s.timeoutMs,
    reasoningEffort: undefined,
  });
}
