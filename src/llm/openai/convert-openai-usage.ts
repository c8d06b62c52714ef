import type { LanguageModelUsage } from "../types.ts";
import type { OpenAIUsage } from "./openai-api.ts";

/**
 * Chat Completions usage → rankchain usage. `prompt_tokens` already includes cached tokens
 * (`prompt_tokens_details.cached_tokens` is the cached share); `completion_tokens` includes
 * reasoning tokens, which are billed as output. Missing fields stay undefined.
 */
export function convertOpenAIUsage(usage: OpenAIUsage | null | undefined): LanguageModelUsage {
  return {
    inputTokens: usage?.prompt_tokens ?? undefined,
    outputTokens: usage?.completion_tokens ?? undefined,
    cachedInputTokens: usage?.prompt_tokens_details?.cached_tokens ?? undefined,
  };
}
