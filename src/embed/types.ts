/**
 * Embedding backends (src/embed). Every backend records what it is (model, dtype, pooling,
 * normalisation) so validation results name the embedder exactly, and has dispose().
 */
export interface EmbedderInfo {
  /** Stable id written into validation.embedder, e.g. "onnx:all-MiniLM-L6-v2" or "openai:text-embedding-3-small". */
  id: string;
  backend: "onnx" | "openai" | "hashed";
  model: string;
  dtype: string;
  pooling: "mean" | "cls" | "max" | "none" | "provider";
  normalize: boolean;
  dimensions: number | undefined;
  /** Where the weights came from: a local directory, "hf:<id>", or the provider's base URL. */
  source?: string;
  /** How it runs, e.g. "onnxruntime (pooling in graph)", "transformers.js", "openai-sdk". */
  runtime?: string;
  /** Token limit per text (longer texts are truncated, keeping the closing special token). */
  maxLength?: number;
  /** Texts per forward pass / per API request. */
  batchSize?: number;
  /** onnxruntime intra-op threads when set explicitly. */
  threads?: number;
}

export interface Embedder {
  readonly info: EmbedderInfo;
  /** Embeds texts in batches; vectors are L2-normalised when info.normalize is true. */
  embed(texts: string[]): Promise<Float32Array[]>;
  dispose(): Promise<void>;
}
