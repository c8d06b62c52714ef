import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { AutoModel, AutoTokenizer, env as hfEnv, Tensor as HfTensor, type PreTrainedTokenizer } from "@huggingface/transformers";
import * as ort from "onnxruntime-node";
import { ConfigError, RankchainError } from "../errors.ts";
import { readModelDir, sentenceTransformersPipeline, type ModelDirConfig, type Pooling } from "./model-dir.ts";
import { poolHiddenStates } from "./pooling.ts";
import type { Embedder, EmbedderInfo } from "./types.ts";

/**
 * The in-process ONNX backend. Texts are tokenised with transformers.js' tokenizer, sorted by
 * token length inside a window (less padding), cut into batches and run on onnxruntime-node —
 * directly on an InferenceSession (default for local directories), or through transformers.js'
 * AutoModel (hub ids, or `runtime: "transformers.js"`). When the graph has a `sentence_embedding`
 * output (our export) pooling and normalisation happen inside it; otherwise they are applied here
 * from the model's own configuration — never transformers.js' pooling:'none' default.
 */
export interface OnnxEmbedderOptions {
  /** Texts per forward pass (default 32). */
  batchSize?: number;
  /** Texts tokenised and length-sorted together (default batchSize × 32). */
  sortWindow?: number;
  /** onnxruntime intra-op threads (default: onnxruntime's own, one per physical core). */
  threads?: number;
  /** ONNX variant: fp32 (onnx/model.onnx), fp16, q8 (model_quantized.onnx), … (default fp32). */
  dtype?: string;
  /** "onnxruntime" (InferenceSession directly) or "transformers.js" (AutoModel). */
  runtime?: "onnxruntime" | "transformers.js";
  /** Token limit per text (default: the model's max_seq_length). */
  maxLength?: number;
  /** Name recorded in info.model / info.id (default: the directory name or hub id). */
  name?: string;
}

export const DEFAULT_BATCH_SIZE = 32;

interface Feeds {
  input_ids: BigInt64Array;
  attention_mask: BigInt64Array;
  token_type_ids: BigInt64Array;
}

interface RunOutput {
  sentence?: { data: Float32Array; dim: number };
  hidden?: { data: Float32Array; dims: [number, number, number] };
}

interface Runner {
  readonly inputNames: readonly string[];
  readonly hasSentenceEmbedding: boolean;
  run(feeds: Feeds, batch: number, seq: number): Promise<RunOutput>;
  dispose(): Promise<void>;
}

function toFloat32(data: unknown): Float32Array {
  if (data instanceof Float32Array) return data;
  return Float32Array.from(data as ArrayLike<number>);
}

function hiddenOutputName(names: readonly string[]): string {
  for (const n of ["last_hidden_state", "token_embeddings"]) if (names.includes(n)) return n;
  const first = names[0];
  if (!first) throw new RankchainError("the ONNX model has no outputs");
  return first;
}

/**
 * onnxruntime session settings. Threads: the caller's, else $RANKCHAIN_ORT_THREADS, else
 * onnxruntime's default (one intra-op thread per physical core). Spinning: onnxruntime's intra-op
 * threads busy-wait for work between operators unless `session.intra_op.allow_spinning` is 0. Off
 * by default here ($RANKCHAIN_ORT_SPIN=1 turns it on): on a shared 2-core machine validate ran 1.42x
 * faster without it and used 26 % less CPU (docs/validate.md).
 */
export function sessionOptions(threads: number | undefined, env: NodeJS.ProcessEnv = process.env): ort.InferenceSession.SessionOptions {
  const fromEnv = Number(env.RANKCHAIN_ORT_THREADS);
  const n = threads ?? (Number.isInteger(fromEnv) && fromEnv > 0 ? fromEnv : undefined);
  const spin = env.RANKCHAIN_ORT_SPIN || "0"; // empty (a blank line copied from .env.example) = unset
  if (spin !== "0" && spin !== "1") throw new ConfigError(`RANKCHAIN_ORT_SPIN must be 0 or 1, got "${spin}"`);
  return {
    graphOptimizationLevel: "all",
    executionProviders: ["cpu"],
    ...(n !== undefined ? { intraOpNumThreads: n, interOpNumThreads: 1 } : {}),
    extra: { session: { intra_op: { allow_spinning: spin }, inter_op: { allow_spinning: spin } } },
  };
}

class OrtRunner implements Runner {
  readonly inputNames: readonly string[];
  readonly hasSentenceEmbedding: boolean;
  private readonly hiddenName: string;
  private constructor(private readonly session: ort.InferenceSession) {
    this.inputNames = session.inputNames;
    this.hasSentenceEmbedding = session.outputNames.includes("sentence_embedding");
    this.hiddenName = hiddenOutputName(session.outputNames);
  }
  static async load(file: string, threads: number | undefined): Promise<OrtRunner> {
    return new OrtRunner(await ort.InferenceSession.create(file, sessionOptions(threads)));
  }
  async run(feeds: Feeds, batch: number, seq: number): Promise<RunOutput> {
    const inputs: Record<string, ort.Tensor> = {};
    for (const n of this.inputNames) {
      const data = feeds[n as keyof Feeds];
      if (!data) throw new RankchainError(`the ONNX model wants an input "${n}" that a text encoder does not provide`);
      inputs[n] = new ort.Tensor("int64", data, [batch, seq]);
    }
    if (this.hasSentenceEmbedding) {
      const out = await this.session.run(inputs, ["sentence_embedding"]);
      const t = out.sentence_embedding!;
      return { sentence: { data: toFloat32(t.data), dim: t.dims[1]! } };
    }
    const out = await this.session.run(inputs, [this.hiddenName]);
    const t = out[this.hiddenName]!;
    return { hidden: { data: toFloat32(t.data), dims: [t.dims[0]!, t.dims[1]!, t.dims[2]!] } };
  }
  async dispose(): Promise<void> {
    await this.session.release();
  }
}

interface HfModelLike {
  sessions?: Record<string, { inputNames: string[]; outputNames: string[] }>;
  (inputs: Record<string, HfTensor>): Promise<Record<string, HfTensor>>;
  dispose(): Promise<unknown>;
}

class TransformersJsRunner implements Runner {
  readonly inputNames: readonly string[];
  readonly hasSentenceEmbedding: boolean;
  private constructor(private readonly model: HfModelLike) {
    const session = Object.values(model.sessions ?? {})[0];
    this.inputNames = session?.inputNames ?? ["input_ids", "attention_mask"];
    this.hasSentenceEmbedding = session?.outputNames.includes("sentence_embedding") ?? false;
  }
  static async load(
    idOrDir: string,
    opts: { dtype: string; threads: number | undefined; localFilesOnly: boolean; cacheDir?: string | undefined },
  ): Promise<TransformersJsRunner> {
    const model = (await AutoModel.from_pretrained(idOrDir, {
      dtype: opts.dtype as "fp32",
      device: "cpu",
      local_files_only: opts.localFilesOnly,
      ...(opts.cacheDir ? { cache_dir: opts.cacheDir } : {}),
      session_options: sessionOptions(opts.threads),
    })) as unknown as HfModelLike;
    return new TransformersJsRunner(model);
  }
  async run(feeds: Feeds, batch: number, seq: number): Promise<RunOutput> {
    const inputs: Record<string, HfTensor> = {};
    for (const n of this.inputNames) {
      const data = feeds[n as keyof Feeds];
      if (data) inputs[n] = new HfTensor("int64", data, [batch, seq]);
    }
    const out = await this.model(inputs);
    const se = out.sentence_embedding;
    if (se) return { sentence: { data: toFloat32(se.data), dim: se.dims[1]! } };
    const name = hiddenOutputName(Object.keys(out));
    const t = out[name]!;
    return { hidden: { data: toFloat32(t.data), dims: [t.dims[0]!, t.dims[1]!, t.dims[2]!] } };
  }
  async dispose(): Promise<void> {
    await this.model.dispose();
  }
}

interface Encoded {
  input_ids: number[][];
  attention_mask: number[][];
  token_type_ids?: number[][];
}

export class OnnxEmbedder implements Embedder {
  readonly info: EmbedderInfo;
  private disposed = false;
  private readonly batchSize: number;
  private readonly sortWindow: number;
  private readonly specialIds: Set<number>;
  private readonly padId: number;

  private constructor(
    private readonly tokenizer: PreTrainedTokenizer,
    private readonly runner: Runner,
    private readonly pooling: Pooling,
    private readonly normalize: boolean,
    private readonly maxLength: number,
    info: EmbedderInfo,
    opts: OnnxEmbedderOptions,
  ) {
    this.batchSize = positiveInt(opts.batchSize ?? DEFAULT_BATCH_SIZE, "batchSize");
    this.sortWindow = Math.max(this.batchSize, positiveInt(opts.sortWindow ?? this.batchSize * 32, "sortWindow"));
    this.specialIds = new Set((tokenizer as unknown as { all_special_ids?: number[] }).all_special_ids ?? []);
    this.padId = (tokenizer as unknown as { pad_token_id?: number }).pad_token_id ?? 0;
    this.info = info;
  }

  /**
   * Loads an exported model directory (see model-dir.ts for the layout). `setting` and `hint`
   * shape the error message when the directory is incomplete.
   */
  static async fromDirectory(
    dir: string,
    opts: OnnxEmbedderOptions & { setting?: string; hint?: string; id?: string } = {},
  ): Promise<OnnxEmbedder> {
    const cfg = readModelDir(dir, { dtype: opts.dtype ?? "fp32", ...(opts.setting ? { setting: opts.setting } : {}), ...(opts.hint ? { hint: opts.hint } : {}) });
    const tokenizer = await loadTokenizer(cfg.dir, true, undefined, opts.setting ?? "--embedder");
    const runtime = opts.runtime ?? "onnxruntime";
    const runner =
      runtime === "onnxruntime"
        ? await OrtRunner.load(cfg.onnxFile, opts.threads)
        : await TransformersJsRunner.load(cfg.dir, { dtype: cfg.dtype, threads: opts.threads, localFilesOnly: true });
    const name = opts.name ?? basename(cfg.dir);
    return new OnnxEmbedder(tokenizer, runner, cfg.pooling, cfg.normalize, opts.maxLength ?? cfg.maxLength, {
      id: opts.id ?? `onnx:${name}`,
      backend: "onnx",
      model: name,
      dtype: cfg.dtype,
      pooling: cfg.pooling,
      normalize: cfg.normalize,
      dimensions: cfg.dimensions,
      source: cfg.dir,
      runtime: runner.hasSentenceEmbedding ? `${runtime} (pooling in graph)` : runtime,
      maxLength: opts.maxLength ?? cfg.maxLength,
      batchSize: opts.batchSize ?? DEFAULT_BATCH_SIZE,
      ...(opts.threads !== undefined ? { threads: opts.threads } : {}),
    }, opts);
  }

  /**
   * Loads a Hugging Face hub model through transformers.js (downloaded into `cacheDir` when
   * `allowRemote`, otherwise only from that cache). Pooling and normalisation come from the repo's
   * sentence-transformers files (modules.json, 1_Pooling/config.json).
   */
  static async fromHub(
    id: string,
    opts: OnnxEmbedderOptions & { allowRemote: boolean; cacheDir: string; fetch?: typeof fetch; remoteHost?: string },
  ): Promise<OnnxEmbedder> {
    const dtype = opts.dtype ?? "fp32";
    const tokenizer = await loadTokenizer(id, !opts.allowRemote, opts.cacheDir, "--embedder");
    let runner: Runner;
    try {
      runner = await TransformersJsRunner.load(id, { dtype, threads: opts.threads, localFilesOnly: !opts.allowRemote, cacheDir: opts.cacheDir });
    } catch (e) {
      throw new ConfigError(
        `cannot load the ONNX model of hub id "${id}" (from --embedder, cache ${opts.cacheDir}, remote downloads ${opts.allowRemote ? "allowed" : "off because HF_HUB_OFFLINE/RANKCHAIN_OFFLINE is set"}): ${(e as Error).message}`,
        { cause: e },
      );
    }
    const st = await hubPipelineConfig(id, opts);
    const pooling = st?.pooling ?? "mean";
    const normalize = st?.normalize ?? false;
    const maxLength = opts.maxLength ?? Math.min((tokenizer as unknown as { model_max_length?: number }).model_max_length ?? 512, 512);
    return new OnnxEmbedder(tokenizer, runner, pooling, normalize, maxLength, {
      id: `onnx:${opts.name ?? id}`,
      backend: "onnx",
      model: opts.name ?? id,
      dtype,
      pooling,
      normalize,
      dimensions: st?.dimensions,
      source: `hf:${id}`,
      runtime: "transformers.js",
      maxLength,
      batchSize: opts.batchSize ?? DEFAULT_BATCH_SIZE,
      ...(opts.threads !== undefined ? { threads: opts.threads } : {}),
    }, opts);
  }

  /** Tokenises without transformers.js' truncation (which drops the closing special token). */
  private encode(texts: string[]): Encoded {
    const enc = this.tokenizer(texts, { padding: false, truncation: false, return_tensor: false }) as unknown as Encoded;
    const max = this.maxLength;
    for (let i = 0; i < enc.input_ids.length; i++) {
      const ids = enc.input_ids[i]!;
      if (ids.length <= max) continue;
      // Keep the first tokens; a closing special token (e.g. [SEP]) stays at the end, as in the Python tokenizers.
      const keepLast = this.specialIds.has(ids[ids.length - 1]!);
      const cut = (row: number[]) => (keepLast ? [...row.slice(0, max - 1), row[row.length - 1]!] : row.slice(0, max));
      enc.input_ids[i] = cut(ids);
      enc.attention_mask[i] = cut(enc.attention_mask[i]!);
      if (enc.token_type_ids?.[i]) enc.token_type_ids[i] = cut(enc.token_type_ids[i]!);
    }
    return enc;
  }

  async embed(texts: string[]): Promise<Float32Array[]> {
    if (this.disposed) throw new RankchainError(`embedder ${this.info.id} was disposed`);
    const out: Float32Array[] = new Array(texts.length);
    const wantsTypes = this.runner.inputNames.includes("token_type_ids");
    for (let w0 = 0; w0 < texts.length; w0 += this.sortWindow) {
      const window = texts.slice(w0, w0 + this.sortWindow).map((t) => (typeof t === "string" ? t : String(t)));
      const enc = this.encode(window);
      const order = window.map((_, i) => i).sort((a, b) => enc.input_ids[b]!.length - enc.input_ids[a]!.length);
      for (let b0 = 0; b0 < order.length; b0 += this.batchSize) {
        const idx = order.slice(b0, b0 + this.batchSize);
        const seq = Math.max(...idx.map((i) => enc.input_ids[i]!.length));
        const n = idx.length;
        const feeds: Feeds = {
          input_ids: new BigInt64Array(n * seq).fill(BigInt(this.padId)),
          attention_mask: new BigInt64Array(n * seq),
          token_type_ids: new BigInt64Array(n * seq),
        };
        idx.forEach((i, r) => {
          const ids = enc.input_ids[i]!;
          const types = wantsTypes ? enc.token_type_ids?.[i] : undefined;
          for (let t = 0; t < ids.length; t++) {
            feeds.input_ids[r * seq + t] = BigInt(ids[t]!);
            feeds.attention_mask[r * seq + t] = 1n;
            if (types) feeds.token_type_ids[r * seq + t] = BigInt(types[t]!);
          }
        });
        const res = await this.runner.run(feeds, n, seq);
        let vectors: Float32Array[];
        if (res.sentence) {
          const { data, dim } = res.sentence;
          vectors = idx.map((_, r) => data.slice(r * dim, (r + 1) * dim));
        } else {
          const h = res.hidden!;
          vectors = poolHiddenStates(h.data, h.dims, feeds.attention_mask, this.pooling, this.normalize);
        }
        idx.forEach((i, r) => {
          out[w0 + i] = vectors[r]!;
        });
      }
    }
    return out;
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    await this.runner.dispose();
  }
}

function positiveInt(v: number, name: string): number {
  if (!Number.isInteger(v) || v < 1) throw new ConfigError(`embedder ${name} must be a positive integer, got ${v}`);
  return v;
}

async function loadTokenizer(idOrDir: string, localOnly: boolean, cacheDir: string | undefined, setting: string): Promise<PreTrainedTokenizer> {
  try {
    return await AutoTokenizer.from_pretrained(idOrDir, { local_files_only: localOnly, ...(cacheDir ? { cache_dir: cacheDir } : {}) });
  } catch (e) {
    throw new ConfigError(`cannot load the tokenizer of ${idOrDir} (from ${setting}): ${(e as Error).message}`, { cause: e });
  }
}

/**
 * Reads modules.json and the pooling config of a hub repo: from `<cacheDir>/<id>/` when cached,
 * else (remote allowed) downloads and caches them. Returns undefined when the repo has none.
 */
async function hubPipelineConfig(
  id: string,
  opts: { allowRemote: boolean; cacheDir: string; fetch?: typeof fetch; remoteHost?: string },
): Promise<ReturnType<typeof sentenceTransformersPipeline>> {
  const local = join(opts.cacheDir, id);
  const files = ["modules.json", "1_Pooling/config.json"];
  if (opts.allowRemote) {
    const doFetch = opts.fetch ?? fetch;
    const host = (opts.remoteHost ?? hfEnv.remoteHost ?? "https://huggingface.co/").replace(/\/?$/, "/");
    for (const f of files) {
      const path = join(local, f);
      if (existsSync(path)) continue;
      try {
        const res = await doFetch(`${host}${id}/resolve/main/${f}`);
        if (!res.ok) continue; // not a sentence-transformers repo: mean pooling, no normalisation
        const text = await res.text();
        mkdirSync(dirname(path), { recursive: true });
        writeFileSync(path, text);
      } catch (e) {
        // Guessing the pooling would give wrong vectors silently; fail instead.
        throw new ConfigError(`cannot read ${f} of hub id "${id}" from ${host}: ${(e as Error).message}`, { cause: e });
      }
    }
  }
  if (!existsSync(join(local, "1_Pooling", "config.json"))) return undefined;
  // Only the default layout (1_Pooling/) is fetched; a repo pointing elsewhere falls back to mean.
  return sentenceTransformersPipeline(local);
}
