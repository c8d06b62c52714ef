export { createOpenAIModel, OpenAIChatModel, NO_KEY_PLACEHOLDER } from "./openai-chat-model.ts";
export { createOpenAICompatibleModel, type OpenAICompatibleModelSettings } from "./openai-compatible-model.ts";
export { isOpenAIReasoningModel, type OpenAIModelSettings, type ReasoningEffort } from "./openai-options.ts";
export * from "./server-farm.ts";
