export { createAnthropicModel, AnthropicMessagesModel, anthropicConservativeBound, ANTHROPIC_TOOL_OVERHEAD_BOUND } from "./anthropic-messages-model.ts";
export type { AnthropicModelSettings } from "./anthropic-options.ts";
