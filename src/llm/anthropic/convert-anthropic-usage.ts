import type { LanguageModelUsage } from "../types.ts";
import type { AnthropicUsage } from "./anthropic-api.ts";

/**
 * Messages usage → rankchain usage. Anthropic's `input_tokens` EXCLUDES cache reads and cache
 * writes, so the total input is input + cache_read + cache_creation, and the cached share is
 * cache_read (cache writes are billed at a premium over the input price; rankchain does not set
 * cache breakpoints, so they are normally 0). Missing fields stay undefined.
 */
export function convertAnthropicUsage(usage: AnthropicUsage | null | undefined): LanguageModelUsage {
  const input = usage?.input_tokens ?? undefined;
  const read = usage?.cache_read_input_tokens ?? undefined;
  const write = usage?.cache_creation_input_tokens ?? undefined;
  return {
    inputTokens: input === undefined ? undefined : input + (read ?? 0) + (write ?? 0),
    outputTokens: usage?.output_tokens ?? undefined,
    cachedInputTokens: read,
  };
}
