export * from "./types.ts";
export * from "./window.ts";
export * from "./permutation.ts";
export { LlmListwiseReranker, type LlmListwiseOptions } from "./listwise.ts";
export { EmbedderReranker } from "./embedder.ts";
export { CrossEncoder, sigmoid, type CrossEncoderOptions } from "./cross-encoder.ts";
export { PointwiseYesNoReranker, logSumExp } from "./pointwise.ts";
export { createLlmReranker, type LlmJudgeSettings } from "./build.ts";
