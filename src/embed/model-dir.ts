import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { ConfigError } from "../errors.ts";

/**
 * What a local embedding-model directory says about itself. Directory layout contract (written by
 * posttrain/rankchain_posttrain/export_onnx.py, also met by most transformers.js model repos):
 *
 *   config.json, tokenizer.json, tokenizer_config.json   the encoder and its tokenizer
 *   onnx/model.onnx (or model_fp16.onnx, model_quantized.onnx, … per dtype)
 *   rankchain_embedder.json   optional: { pooling, normalize, dimensions, max_seq_length, inputs, outputs }
 *   modules.json + 1_Pooling/config.json   optional sentence-transformers pipeline description
 *
 * Pooling and normalisation come from rankchain_embedder.json, else from the sentence-transformers
 * files, else mean pooling without normalisation (sentence-transformers' default for a plain encoder).
 */
export type Pooling = "mean" | "cls" | "max";

export interface ModelDirConfig {
  dir: string;
  onnxFile: string;
  dtype: string;
  pooling: Pooling;
  normalize: boolean;
  dimensions: number | undefined;
  maxLength: number;
  /** Where pooling/normalisation were read from. */
  configSource: "rankchain_embedder.json" | "sentence-transformers" | "default";
}

export const MARKER_FILE = "rankchain_embedder.json";

/** transformers.js' file naming of ONNX variants, by dtype. */
export const ONNX_FILE_BY_DTYPE: Readonly<Record<string, string>> = Object.freeze({
  fp32: "model.onnx",
  fp16: "model_fp16.onnx",
  q8: "model_quantized.onnx",
  int8: "model_int8.onnx",
  uint8: "model_uint8.onnx",
  q4: "model_q4.onnx",
  bnb4: "model_bnb4.onnx",
  q4f16: "model_q4f16.onnx",
});

function readJson(path: string): Record<string, unknown> | undefined {
  if (!existsSync(path)) return undefined;
  try {
    const v: unknown = JSON.parse(readFileSync(path, "utf8"));
    return v && typeof v === "object" ? (v as Record<string, unknown>) : undefined;
  } catch (e) {
    throw new ConfigError(`cannot parse ${path}: ${(e as Error).message}`, { location: { file: path } });
  }
}

export function poolingFromSentenceTransformersConfig(cfg: Record<string, unknown>, file: string): Pooling {
  const modes: string[] = [];
  if (typeof cfg.pooling_mode === "string") modes.push(cfg.pooling_mode);
  else {
    if (cfg.pooling_mode_cls_token) modes.push("cls");
    if (cfg.pooling_mode_mean_tokens) modes.push("mean");
    if (cfg.pooling_mode_max_tokens) modes.push("max");
    if (cfg.pooling_mode_mean_sqrt_len_tokens) modes.push("mean_sqrt_len_tokens");
    if (cfg.pooling_mode_weightedmean_tokens) modes.push("weightedmean");
    if (cfg.pooling_mode_lasttoken) modes.push("lasttoken");
  }
  const aliases: Record<string, string> = { cls_token: "cls", mean_tokens: "mean", max_tokens: "max" };
  const m = modes.map((x) => aliases[x] ?? x);
  if (m.length !== 1 || !["mean", "cls", "max"].includes(m[0]!)) {
    throw new ConfigError(`pooling ${JSON.stringify(m)} is not supported (supported: mean, cls, max)`, {
      location: { file, field: "pooling_mode" },
    });
  }
  return m[0] as Pooling;
}

/** Reads pooling and normalisation from a sentence-transformers modules.json (+ pooling config). */
export function sentenceTransformersPipeline(dir: string): { pooling: Pooling; normalize: boolean; dimensions: number | undefined } | undefined {
  const modulesPath = join(dir, "modules.json");
  let poolingDir = "1_Pooling";
  let normalize = false;
  if (existsSync(modulesPath)) {
    let modules: unknown;
    try {
      modules = JSON.parse(readFileSync(modulesPath, "utf8"));
    } catch (e) {
      throw new ConfigError(`cannot parse ${modulesPath}: ${(e as Error).message}`, { location: { file: modulesPath } });
    }
    if (Array.isArray(modules)) {
      for (const m of modules as Array<{ type?: string; path?: string }>) {
        if (typeof m.type !== "string") continue;
        if (m.type.endsWith(".Pooling") && typeof m.path === "string") poolingDir = m.path;
        if (m.type.endsWith(".Normalize")) normalize = true;
      }
    }
  }
  const poolPath = join(dir, poolingDir, "config.json");
  const pool = readJson(poolPath);
  if (!pool) return undefined;
  const dim = typeof pool.word_embedding_dimension === "number" ? pool.word_embedding_dimension : typeof pool.embedding_dimension === "number" ? pool.embedding_dimension : undefined;
  return { pooling: poolingFromSentenceTransformersConfig(pool, poolPath), normalize, dimensions: dim };
}

function maxLengthOf(dir: string, marker: Record<string, unknown> | undefined): number {
  const candidates: unknown[] = [
    marker?.max_seq_length,
    readJson(join(dir, "sentence_bert_config.json"))?.max_seq_length,
    readJson(join(dir, "tokenizer_config.json"))?.model_max_length,
    readJson(join(dir, "config.json"))?.max_position_embeddings,
  ];
  for (const c of candidates) if (typeof c === "number" && c > 0 && c < 100_000) return Math.min(c, 8192);
  return 512;
}

/**
 * Reads a local model directory. `setting` names where the directory came from (for the error
 * message), e.g. "--embedder" or "the registry entry all-MiniLM-L6-v2".
 */
export function readModelDir(dirIn: string, opts: { dtype?: string; setting?: string; hint?: string } = {}): ModelDirConfig {
  const dir = resolve(dirIn);
  const setting = opts.setting ?? "--embedder";
  const hint = opts.hint ?? "run scripts/setup-embedder.sh or pass --embedder";
  const dtype = opts.dtype ?? "fp32";
  const fileName = ONNX_FILE_BY_DTYPE[dtype];
  if (!fileName) {
    throw new ConfigError(`unknown embedder dtype "${dtype}" (known: ${Object.keys(ONNX_FILE_BY_DTYPE).join(", ")})`);
  }
  if (!existsSync(dir)) {
    throw new ConfigError(`embedder directory ${dir} (from ${setting}) does not exist; ${hint}`);
  }
  const onnxFile = join(dir, "onnx", fileName);
  if (!existsSync(onnxFile)) {
    throw new ConfigError(`embedder directory ${dir} (from ${setting}) has no onnx/${fileName}; ${hint}`);
  }
  if (!existsSync(join(dir, "tokenizer.json"))) {
    throw new ConfigError(`embedder directory ${dir} (from ${setting}) has no tokenizer.json; ${hint}`);
  }
  const marker = readJson(join(dir, MARKER_FILE));
  const maxLength = maxLengthOf(dir, marker);
  if (marker && (marker.pooling === "mean" || marker.pooling === "cls" || marker.pooling === "max")) {
    return {
      dir,
      onnxFile,
      dtype,
      pooling: marker.pooling,
      normalize: marker.normalize === true,
      dimensions: typeof marker.dimensions === "number" ? marker.dimensions : undefined,
      maxLength,
      configSource: MARKER_FILE,
    };
  }
  const st = sentenceTransformersPipeline(dir);
  if (st) return { dir, onnxFile, dtype, ...st, maxLength, configSource: "sentence-transformers" };
  return { dir, onnxFile, dtype, pooling: "mean", normalize: false, dimensions: undefined, maxLength, configSource: "default" };
}
