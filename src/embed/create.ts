import { existsSync } from "node:fs";
import { homedir } from "node:os";
import { isAbsolute, join, resolve } from "node:path";
import type { Ledger } from "../budget/types.ts";
import { cacheDir, modelsDir } from "../config/paths.ts";
import type { ModelPrice, PriceTable } from "../config/prices.ts";
import { ConfigError } from "../errors.ts";
import { OnnxEmbedder, type OnnxEmbedderOptions } from "./onnx-embedder.ts";
import { OpenAIEmbedder } from "./openai-embedder.ts";
import { DEFAULT_EMBEDDER, EMBEDDER_REGISTRY, registryEntry } from "./registry.ts";
import type { Embedder } from "./types.ts";

/**
 * How an `--embedder` value is understood, in this order:
 *   "openai:<model>"          OpenAI embeddings API (spend through the ledger)
 *   a registry name           e.g. "all-MiniLM-L6-v2" → <cache>/models/all-MiniLM-L6-v2
 *   an existing directory     exported model (onnx/model.onnx + tokenizer.json); also ./x, ../x, /x, ~/x
 *   "<owner>/<name>"          Hugging Face hub id, through transformers.js (downloads unless offline)
 */
export type EmbedderSpec =
  | { kind: "openai"; model: string }
  | { kind: "registry"; name: string; dir: string }
  | { kind: "directory"; dir: string }
  | { kind: "hub"; id: string };

export interface CreateEmbedderOptions extends OnnxEmbedderOptions {
  /** Environment for the cache location and offline switches (default process.env). */
  env?: NodeJS.ProcessEnv;
  /**
   * May hub ids be downloaded? Default: yes unless HF_HUB_OFFLINE, TRANSFORMERS_OFFLINE or
   * RANKCHAIN_OFFLINE is set to a true value.
   */
  allowRemote?: boolean;
  /** Where hub downloads are cached (default <cache>/hf). */
  hubCacheDir?: string;
  /** Injected for tests: fetch for hub sentence-transformers config files and for the OpenAI SDK. */
  fetch?: typeof fetch;
  // OpenAI backend
  apiKey?: string;
  baseURL?: string;
  ledger?: Ledger;
  price?: ModelPrice;
  priceTable?: PriceTable;
  dimensions?: number;
  maxRetries?: number;
  timeoutMs?: number;
  sleep?: (ms: number) => Promise<void>;
  /** Paid vectors already bought are read from / appended to this JSONL file (OpenAI backend). */
  cachePath?: string;
  /** Ledger stage of the spend (default "validate"; `mine` passes "mine"). */
  stage?: string;
}

const HUB_ID = /^[A-Za-z0-9][\w.-]*\/[\w.-]+$/;

function truthy(v: string | undefined): boolean {
  return v !== undefined && v !== "" && !/^(0|false|no|off)$/i.test(v);
}

export function isOffline(env: NodeJS.ProcessEnv = process.env): boolean {
  return truthy(env.HF_HUB_OFFLINE) || truthy(env.TRANSFORMERS_OFFLINE) || truthy(env.RANKCHAIN_OFFLINE);
}

/** Resolves an --embedder value without loading anything. */
export function resolveEmbedderSpec(spec: string | undefined, env: NodeJS.ProcessEnv = process.env): EmbedderSpec {
  const s = (spec ?? DEFAULT_EMBEDDER).trim();
  if (s === "") throw new ConfigError("--embedder is empty");
  if (s.startsWith("openai:")) {
    const model = s.slice("openai:".length);
    if (!model) throw new ConfigError(`--embedder "${s}" names no model (e.g. openai:text-embedding-3-small)`);
    return { kind: "openai", model };
  }
  const entry = registryEntry(s);
  if (entry) {
    if (entry.backend === "openai") return { kind: "openai", model: entry.model };
    return { kind: "registry", name: s, dir: join(modelsDir(env), entry.localDir ?? s) };
  }
  const expanded = s === "~" || s.startsWith("~/") ? join(homedir(), s.slice(1)) : s;
  const pathLike = isAbsolute(expanded) || /^\.\.?([/\\]|$)/.test(expanded) || s.startsWith("~");
  if (pathLike || existsSync(expanded)) return { kind: "directory", dir: resolve(expanded) };
  if (HUB_ID.test(s)) return { kind: "hub", id: s };
  throw new ConfigError(
    `--embedder "${s}" is neither a registry name (${Object.keys(EMBEDDER_REGISTRY).join(", ")}), an existing directory, a Hugging Face id (owner/name) nor openai:<model>`,
  );
}

/** Creates an embedder from an --embedder value (default: the registry's all-MiniLM-L6-v2). */
export async function createEmbedder(spec: string | undefined, options: CreateEmbedderOptions = {}): Promise<Embedder> {
  const env = options.env ?? process.env;
  const r = resolveEmbedderSpec(spec, env);
  switch (r.kind) {
    case "openai":
      return new OpenAIEmbedder({
        model: r.model,
        ...(options.apiKey !== undefined ? { apiKey: options.apiKey } : {}),
        ...(options.baseURL !== undefined ? { baseURL: options.baseURL } : {}),
        ...(options.fetch !== undefined ? { fetch: options.fetch } : {}),
        ...(options.ledger !== undefined ? { ledger: options.ledger } : {}),
        ...(options.price !== undefined ? { price: options.price } : {}),
        ...(options.priceTable !== undefined ? { priceTable: options.priceTable } : {}),
        ...(options.batchSize !== undefined ? { batchSize: options.batchSize } : {}),
        ...(options.dimensions !== undefined ? { dimensions: options.dimensions } : {}),
        ...(options.maxRetries !== undefined ? { maxRetries: options.maxRetries } : {}),
        ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
        ...(options.cachePath !== undefined ? { cachePath: options.cachePath } : {}),
        ...(options.stage !== undefined ? { stage: options.stage } : {}),
        ...(options.sleep !== undefined ? { sleep: options.sleep } : {}),
      });
    case "registry":
      return OnnxEmbedder.fromDirectory(r.dir, {
        ...options,
        name: options.name ?? r.name,
        setting: `--embedder ${r.name} (RANKCHAIN_CACHE=${cacheDir(env)})`,
        hint: "run scripts/setup-embedder.sh or pass --embedder",
      });
    case "directory":
      return OnnxEmbedder.fromDirectory(r.dir, { ...options, setting: "--embedder" });
    case "hub":
      return OnnxEmbedder.fromHub(r.id, {
        ...options,
        allowRemote: options.allowRemote ?? !isOffline(env),
        cacheDir: options.hubCacheDir ?? join(cacheDir(env), "hf"),
        ...(options.fetch ? { fetch: options.fetch } : {}),
      });
  }
}
