export * from "./types.ts";
export { OpenAIBatchClient, OPENAI_BATCH_TAG_KEY } from "./openai-batch.ts";
export { AnthropicBatchClient } from "./anthropic-batch.ts";
