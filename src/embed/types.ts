/**
 * Embedding backends (src/embed). Every backend records what it is (model, dtype, pooling,
 * normalisation) so validation results name the embedder exactly, and has dispose().
 */
export interface EmbedderInfo {
  /** Stable id written into validation.embedder, e.g. "onnx:all-MiniLM-L6-v2" or "openai:text-embedding-3-small". */
  id: string;
  backend: "onnx" | "openai";
  model: string;
  dtype: string;
  pooling: "mean" | "cls" | "none" | "provider";
  normalize: boolean;
  dimensions: number | undefined;
}

export interface Embedder {
  readonly info: EmbedderInfo;
  /** Embeds texts in batches; vectors are L2-normalised when info.normalize is true. */
  embed(texts: string[]): Promise<Float32Array[]>;
  dispose(): Promise<void>;
}
