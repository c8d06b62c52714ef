export * from "./types.ts";
export { EMBEDDER_REGISTRY, DEFAULT_EMBEDDER, registryEntry, type RegistryEntry, type RegistryName } from "./registry.ts";
export { createEmbedder, resolveEmbedderSpec, isOffline, type CreateEmbedderOptions, type EmbedderSpec } from "./create.ts";
export { OnnxEmbedder, DEFAULT_BATCH_SIZE, type OnnxEmbedderOptions } from "./onnx-embedder.ts";
export { OpenAIEmbedder, countEmbeddingTokens, MAX_INPUT_TOKENS, type OpenAIEmbedderOptions } from "./openai-embedder.ts";
export { readModelDir, MARKER_FILE, ONNX_FILE_BY_DTYPE, type ModelDirConfig, type Pooling } from "./model-dir.ts";
export { poolHiddenStates } from "./pooling.ts";
export { cosine, dot, norm, l2normalize, cosineMatrix, type Vector } from "./similarity.ts";
