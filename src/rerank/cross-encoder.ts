import { existsSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { basename, isAbsolute, join, resolve } from "node:path";
import { AutoModelForSequenceClassification, AutoTokenizer, Tensor as HfTensor, type PreTrainedTokenizer } from "@huggingface/transformers";
import * as ort from "onnxruntime-node";
import { cacheDir } from "../config/paths.ts";
import { isOffline } from "../embed/create.ts";
import { ConfigError, RankchainError } from "../errors.ts";
import { orderByScores, zeroUsage, type RerankResult, type Reranker } from "./types.ts";

/**
 * A cross-encoder in-process: query and passage go through the encoder together and a
 * classification head gives one relevance logit per pair. Tokenised by transformers.js; run on
 * onnxruntime-node directly (a local directory with onnx/model.onnx, e.g. the one
 * `rankchain posttrain --cross-encoder` writes) or through transformers.js'
 * AutoModelForSequenceClassification (a Hugging Face hub id such as
 * cross-encoder/ms-marco-MiniLM-L6-v2, downloaded unless offline).
 *
 * Scores are the raw logit of the single label (for two-label heads: label 1 minus label 0);
 * `probability` maps them through a sigmoid, which is how sentence-transformers' CrossEncoder
 * reports one-label models.
 */
export interface CrossEncoderOptions {
  batchSize?: number;
  /** Token limit per pair (default: the model's, at most 512). */
  maxLength?: number;
  threads?: number;
  env?: NodeJS.ProcessEnv;
  allowRemote?: boolean;
  /** Name recorded in the id (default: directory name or hub id). */
  name?: string;
}

interface PairRunner {
  run(inputs: Record<string, { data: BigInt64Array; dims: number[] }>): Promise<{ data: Float32Array; dims: readonly number[] }>;
  readonly inputNames: readonly string[];
  dispose(): Promise<void>;
}

function toFloat32(data: unknown): Float32Array {
  return data instanceof Float32Array ? data : Float32Array.from(data as ArrayLike<number>);
}

function toBigInt64(data: unknown): BigInt64Array {
  if (data instanceof BigInt64Array) return data;
  return BigInt64Array.from(Array.from(data as ArrayLike<number | bigint>, (x) => BigInt(x)));
}

export const sigmoid = (x: number): number => 1 / (1 + Math.exp(-x));

export class CrossEncoder implements Reranker {
  readonly kind = "cross-encoder" as const;
  private disposed = false;
  private readonly batchSize: number;

  private constructor(
    readonly id: string,
    readonly source: string,
    private readonly tokenizer: PreTrainedTokenizer,
    private readonly runner: PairRunner,
    private readonly maxLength: number,
    opts: CrossEncoderOptions,
  ) {
    this.batchSize = opts.batchSize ?? 32;
    if (!Number.isInteger(this.batchSize) || this.batchSize < 1) throw new ConfigError(`cross-encoder batch size must be a positive integer, got ${this.batchSize}`);
  }

  /**
   * `spec`: an existing directory (onnx/model.onnx + tokenizer.json), a path (./x, /x, ~/x), or a
   * hub id owner/name. Errors name the flag and what is missing.
   */
  static async load(spec: string, opts: CrossEncoderOptions & { setting?: string } = {}): Promise<CrossEncoder> {
    const setting = opts.setting ?? "--cross-encoder";
    const s = spec.trim();
    if (!s) throw new ConfigError(`${setting} is empty`);
    const expanded = s === "~" || s.startsWith("~/") ? join(homedir(), s.slice(1)) : s;
    const pathLike = isAbsolute(expanded) || /^\.\.?([/\\]|$)/.test(expanded) || s.startsWith("~") || existsSync(expanded);
    if (pathLike) return CrossEncoder.fromDirectory(resolve(expanded), { ...opts, setting });
    if (/^[A-Za-z0-9][\w.-]*\/[\w.-]+$/.test(s)) return CrossEncoder.fromHub(s, opts);
    throw new ConfigError(`${setting} "${s}" is neither an existing directory nor a Hugging Face id (owner/name)`);
  }

  static async fromDirectory(dir: string, opts: CrossEncoderOptions & { setting?: string } = {}): Promise<CrossEncoder> {
    const setting = opts.setting ?? "--cross-encoder";
    const hint = "train one with `rankchain posttrain --cross-encoder` or pass a Hugging Face cross-encoder directory with onnx/model.onnx";
    if (!existsSync(dir)) throw new ConfigError(`cross-encoder directory ${dir} (from ${setting}) does not exist; ${hint}`);
    const onnxFile = join(dir, "onnx", "model.onnx");
    if (!existsSync(onnxFile)) throw new ConfigError(`cross-encoder directory ${dir} (from ${setting}) has no onnx/model.onnx; ${hint}`);
    if (!existsSync(join(dir, "tokenizer.json"))) throw new ConfigError(`cross-encoder directory ${dir} (from ${setting}) has no tokenizer.json; ${hint}`);
    let tokenizer: PreTrainedTokenizer;
    try {
      tokenizer = await AutoTokenizer.from_pretrained(dir, { local_files_only: true });
    } catch (e) {
      throw new ConfigError(`cannot load the tokenizer of cross-encoder ${dir} (from ${setting}): ${(e as Error).message}`, { cause: e });
    }
    const session = await ort.InferenceSession.create(onnxFile, {
      graphOptimizationLevel: "all",
      executionProviders: ["cpu"],
      ...(opts.threads !== undefined ? { intraOpNumThreads: opts.threads, interOpNumThreads: 1 } : {}),
    });
    const outName = session.outputNames.includes("logits") ? "logits" : session.outputNames[0]!;
    const runner: PairRunner = {
      inputNames: session.inputNames,
      async run(inputs) {
        const feeds: Record<string, ort.Tensor> = {};
        for (const n of session.inputNames) {
          const t = inputs[n];
          if (!t) throw new RankchainError(`the cross-encoder ONNX model wants an input "${n}" that the tokenizer does not produce`);
          feeds[n] = new ort.Tensor("int64", t.data, t.dims);
        }
        const out = await session.run(feeds, [outName]);
        const t = out[outName]!;
        return { data: toFloat32(t.data), dims: t.dims };
      },
      dispose: () => session.release(),
    };
    const marker = readJsonSafe(join(dir, "rankchain_cross_encoder.json"));
    const maxLength = opts.maxLength ?? (typeof marker?.max_seq_length === "number" ? marker.max_seq_length : modelMaxLength(tokenizer));
    return new CrossEncoder(`cross-encoder:onnx:${opts.name ?? basename(dir)}`, dir, tokenizer, runner, maxLength, opts);
  }

  static async fromHub(id: string, opts: CrossEncoderOptions = {}): Promise<CrossEncoder> {
    const env = opts.env ?? process.env;
    const allowRemote = opts.allowRemote ?? !isOffline(env);
    const cache = join(cacheDir(env), "hf");
    try {
      const tokenizer = await AutoTokenizer.from_pretrained(id, { local_files_only: !allowRemote, cache_dir: cache });
      const model = (await AutoModelForSequenceClassification.from_pretrained(id, {
        dtype: "fp32",
        device: "cpu",
        local_files_only: !allowRemote,
        cache_dir: cache,
      })) as unknown as { (inputs: Record<string, HfTensor>): Promise<Record<string, HfTensor>>; dispose(): Promise<unknown>; sessions?: Record<string, { inputNames: string[] }> };
      const inputNames = Object.values(model.sessions ?? {})[0]?.inputNames ?? ["input_ids", "attention_mask", "token_type_ids"];
      const runner: PairRunner = {
        inputNames,
        async run(inputs) {
          const feeds: Record<string, HfTensor> = {};
          for (const n of inputNames) {
            const t = inputs[n];
            if (t) feeds[n] = new HfTensor("int64", t.data, t.dims);
          }
          const out = await model(feeds);
          const t = out.logits!;
          return { data: toFloat32(t.data), dims: t.dims };
        },
        dispose: async () => {
          await model.dispose();
        },
      };
      return new CrossEncoder(`cross-encoder:hf:${opts.name ?? id}`, `hf:${id}`, tokenizer, runner, opts.maxLength ?? modelMaxLength(tokenizer), opts);
    } catch (e) {
      if (e instanceof RankchainError) throw e;
      throw new ConfigError(
        `cannot load cross-encoder "${id}" (from --cross-encoder, cache ${cache}, remote downloads ${allowRemote ? "allowed" : "off because HF_HUB_OFFLINE/RANKCHAIN_OFFLINE is set"}): ${(e as Error).message}`,
        { cause: e },
      );
    }
  }

  /** One relevance logit per (query, passage) pair, in input order. */
  async score(query: string, passages: readonly string[]): Promise<number[]> {
    return this.scorePairs(passages.map((p) => [query, p] as const));
  }

  async scorePairs(pairs: ReadonlyArray<readonly [string, string]>): Promise<number[]> {
    if (this.disposed) throw new RankchainError(`${this.id} was disposed`);
    const out: number[] = [];
    for (let b = 0; b < pairs.length; b += this.batchSize) {
      const batch = pairs.slice(b, b + this.batchSize);
      const enc = this.tokenizer(
        batch.map((p) => p[0]),
        { text_pair: batch.map((p) => p[1]), padding: true, truncation: true, max_length: this.maxLength },
      ) as unknown as Record<string, HfTensor>;
      const inputs: Record<string, { data: BigInt64Array; dims: number[] }> = {};
      for (const [k, t] of Object.entries(enc)) inputs[k] = { data: toBigInt64(t.data), dims: [...t.dims] };
      if (!inputs.token_type_ids && this.runner.inputNames.includes("token_type_ids")) {
        inputs.token_type_ids = { data: new BigInt64Array(inputs.input_ids!.data.length), dims: inputs.input_ids!.dims };
      }
      const { data, dims } = await this.runner.run(inputs);
      const labels = dims.length > 1 ? dims[dims.length - 1]! : 1;
      for (let r = 0; r < batch.length; r++) out.push(labels === 1 ? data[r]! : data[r * labels + labels - 1]! - data[r * labels]!);
    }
    return out;
  }

  async rerank(query: string, passages: readonly string[]): Promise<RerankResult> {
    const scores = await this.score(query, passages);
    return { order: orderByScores(scores), scores, usage: zeroUsage() };
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    await this.runner.dispose();
  }
}

function modelMaxLength(tokenizer: PreTrainedTokenizer): number {
  const m = (tokenizer as unknown as { model_max_length?: number }).model_max_length;
  return typeof m === "number" && m > 0 && m < 100_000 ? Math.min(m, 512) : 512;
}

function readJsonSafe(path: string): Record<string, unknown> | undefined {
  if (!existsSync(path)) return undefined;
  try {
    const v: unknown = JSON.parse(readFileSync(path, "utf8"));
    return v && typeof v === "object" ? (v as Record<string, unknown>) : undefined;
  } catch (e) {
    throw new ConfigError(`cannot parse ${path}: ${(e as Error).message}`, { location: { file: path } });
  }
}
