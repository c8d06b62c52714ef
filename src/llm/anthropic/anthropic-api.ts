/**
 * Partial schemas of the Anthropic Messages responses (messages.create and messages.countTokens).
 * Fields the adapter reads are `.nullish()`; unknown content-block types (thinking, server tools)
 * pass through as generic blocks and are ignored.
 */
import { z } from "zod";

export const anthropicUsageSchema = z.object({
  input_tokens: z.number().nullish(),
  output_tokens: z.number().nullish(),
  cache_creation_input_tokens: z.number().nullish(),
  cache_read_input_tokens: z.number().nullish(),
});
export type AnthropicUsage = z.infer<typeof anthropicUsageSchema>;

const textBlock = z.object({ type: z.literal("text"), text: z.string() });
const toolUseBlock = z.object({
  type: z.literal("tool_use"),
  id: z.string().nullish(),
  name: z.string(),
  input: z.unknown(),
});
const otherBlock = z.object({ type: z.string() });

export const anthropicContentBlockSchema = z.union([textBlock, toolUseBlock, otherBlock]);
export type AnthropicContentBlock = z.infer<typeof anthropicContentBlockSchema>;

export const anthropicMessageResponseSchema = z.object({
  id: z.string().nullish(),
  type: z.string().nullish(),
  model: z.string().nullish(),
  content: z.array(anthropicContentBlockSchema),
  stop_reason: z.string().nullish(),
  stop_sequence: z.string().nullish(),
  usage: anthropicUsageSchema.nullish(),
});
export type AnthropicMessageResponse = z.infer<typeof anthropicMessageResponseSchema>;

export const anthropicCountTokensResponseSchema = z.object({
  input_tokens: z.number(),
});
