import { availableParallelism } from "node:os";
import { basename } from "node:path";
import {
  getLlama,
  LlamaGrammarEvaluationState,
  LlamaLogLevel,
  resolveChatWrapper,
  resolveModelFile,
  type ChatHistoryItem,
  type ChatWrapper,
  type Llama,
  type LlamaContext,
  type LlamaContextSequence,
  type LlamaModel,
  type Token,
} from "node-llama-cpp";
import { modelsDir } from "../../config/paths.ts";
import { ConfigError, ProviderCallError } from "../../errors.ts";
import { resolveModelPath } from "../../models/installed.ts";
import type {
  CallWarning,
  ChatMessage,
  FinishReason,
  GenerateRequest,
  GenerateResult,
  GuidedGenerateRequest,
  LanguageModel,
  ModelCapabilities,
  TokenCount,
} from "../types.ts";
import { checkContextFits, DecodeStepBarrier, DETERMINISTIC_PIECE, pieces, SEQUENCES_PER_SLOT, sequenceContextSize, SlotPool, type BarrierMember, type SequencePair, type SequenceSizing } from "./batched-decoding.ts";
import { argmax, candidateScores, guidanceScores, guidanceScoresFlat, logSoftmax, logSoftmaxFlat, sampleToken, seededRandom } from "./cfg-math.ts";

export type LocalGpu = "auto" | "cuda" | "metal" | "off";

export interface LocalModelOptions {
  /** Registry name ("default" = the default entry), a GGUF path, or `hf:<repo>/<file>`. */
  model?: string | undefined;
  gpu?: LocalGpu | undefined;
  /** Tokens per sequence (prompt + output); default min(model's training context, 4096). */
  contextSize?: number | undefined;
  /** Default seed for sampling at temperature > 0 when a request gives none. */
  seed?: number | undefined;
  /**
   * CPU threads for llama.cpp; default: available parallelism − 1 (at least 1). One core is left
   * for the JavaScript thread, which reads back the logits; llama.cpp's threads spin-wait, and
   * on a busy 2-core machine 2 threads measured up to 10× slower than 1.
   */
  threads?: number | undefined;
  env?: NodeJS.ProcessEnv | undefined;
  /**
   * How the two CFG sequences are evaluated per token: "batched" (default; one batch holds both)
   * or "sequential" (one after the other; only for benchmarking the difference).
   */
  cfgEvaluation?: "batched" | "sequential" | undefined;
  /**
   * Opt-in approximation of CFG (not the reference formula): score only the positive prompt's K
   * most likely next tokens (a plausibility constraint, as in contrastive decoding), each with the
   * exact G·log p_pos − (G−1)·log p_neg. Much faster on small models (no full-vocabulary readback).
   * It picks the same token as exact CFG whenever the exact winner ranks within the positive's top
   * K; at K ≥ the vocabulary size it is the exact formula. Undefined (default) = exact CFG.
   * A request may override it with `candidates` (see LocalGuidedGenerateRequest).
   */
  cfgCandidates?: number | undefined;
  /**
   * How full-vocabulary logits reach JavaScript (exact CFG, nextTokenLogProbs). "flat" (default):
   * node-llama-cpp's native [token, logit, …] array is used directly, skipping the 49k-entry Map
   * that controlledEvaluate builds from it — this reaches into node-llama-cpp's internal context
   * object (`_ctx.sampleToken`), behind a feature check; when the internals are not as expected it
   * falls back to "map" by itself. "map": the public API only (`next.logits`, a Map).
   */
  logitsReadback?: "flat" | "map" | undefined;
  /**
   * Requests decoded at once (chains in flight; `--concurrency` for local models): each gets its own
   * two sequences of one context, and every decode step evaluates the next token of all of them in
   * one batch (see batched-decoding.ts). Default 1: calls queue.
   */
  parallel?: number | undefined;
  /**
   * Size each sequence's context from the run's settings instead of `contextSize` (prompt bound +
   * twice the output tokens, padded, at most the model's training context).
   */
  sizing?: SequenceSizing | undefined;
  /**
   * Bit-for-bit the same output for a request whatever else decodes beside it (`--deterministic`):
   * a chain's tokens then do not depend on `parallel` (--concurrency) or on timing. CPU only, and
   * llama.cpp threads 1. See DETERMINISTIC in batched-decoding.ts for what it changes and why.
   */
  deterministic?: boolean | undefined;
}

/** A guided request with the local model's extra knob. */
export interface LocalGuidedGenerateRequest extends GuidedGenerateRequest {
  /** See LocalModelOptions.cfgCandidates; overrides the model's setting for this request (null = exact). */
  candidates?: number | null | undefined;
}

/** What the guided and plain decoders report besides the text (in GenerateResult.raw). */
export interface LocalGenerationDetails {
  /** Generated token ids, including the token that ended the step (end-of-turn or newline). */
  tokens: Token[];
  promptTokens: { positive: number; negative: number | undefined };
  /** How the guided decoder scored tokens (generateGuided only). */
  cfg?: {
    /** "full": the whole vocabulary (exact); "candidates": the positive's top K (cfgCandidates). */
    scoring: "full" | "candidates";
    candidates?: number;
    /** Full scoring: how the logits arrived (see LocalModelOptions.logitsReadback). */
    readback?: "flat" | "map";
    /**
     * Tokens for which some positive candidate was outside the negative sequence's returned top
     * list, so the negative's last token was evaluated again to read those logits.
     */
    negativeReevaluations?: number;
  };
}

/** How many of the negative prompt's top logits the candidates path reads (at least). */
const NEGATIVE_TOP_MIN = 4096;

const FINISH_EOG: FinishReason = { unified: "stop", raw: "end-of-turn" };
const FINISH_NEWLINE: FinishReason = { unified: "stop", raw: "newline" };
const FINISH_STOP_SEQUENCE: FinishReason = { unified: "stop", raw: "stop-sequence" };
const FINISH_LENGTH: FinishReason = { unified: "length", raw: "max-output-tokens" };

/**
 * A GGUF model in-process through node-llama-cpp, with one context holding two sequences per slot
 * (`parallel` slots, default 1): plain generation uses one; classifier-free guidance feeds the
 * positive and negative prompts to the two sequences and evaluates both in the same batch for every
 * generated token. Up to `parallel` requests decode at once, all in the same batch per step; more
 * calls queue.
 */
export class LocalLanguageModel implements LanguageModel {
  readonly provider = "local" as const;
  readonly capabilities: ModelCapabilities = { guidance: true, structuredOutput: true, paid: false };
  private readonly pool: SlotPool<SequencePair>;
  private vocabSize: number | undefined;
  private readonly stopTokens: Set<Token>;
  private disposed = false;
  readonly flatLogitsAvailable: boolean;
  /**
   * How exact CFG scores the vocabulary: "raw" (default) G·logit_pos − (G−1)·logit_neg straight
   * from the flat arrays (the log-softmax normalisers are one constant over all tokens, so the
   * argmax and the softmax at any temperature are the same); "log-softmax" normalises both in
   * float64 first (the path before; for benchmarks). The Map readback always normalises.
   */
  public exactScoring: "raw" | "log-softmax";

  private constructor(
    readonly modelId: string,
    readonly modelPath: string,
    private readonly llama: Llama,
    private readonly model: LlamaModel,
    private readonly context: LlamaContext,
    slots: readonly SequencePair[],
    /** Decides when a decode step is dispatched (see batched-decoding.ts); its stats show the batching. */
    readonly barrier: DecodeStepBarrier,
    private readonly chatWrapper: ChatWrapper,
    private readonly defaultSeed: number | undefined,
    /** See LocalModelOptions.cfgEvaluation; may be switched between requests (benchmarks). */
    public cfgEvaluation: "batched" | "sequential",
    /** See LocalModelOptions.cfgCandidates; may be switched between requests. */
    public cfgCandidates: number | undefined,
    /** See LocalModelOptions.logitsReadback; may be switched between requests (benchmarks). */
    public logitsReadback: "flat" | "map",
    /** See LocalModelOptions.deterministic. */
    readonly deterministic: boolean,
  ) {
    this.exactScoring = "raw";
    /** Whether the flat-array readback could be installed on this context (see installFlatLogits). */
    this.flatLogitsAvailable = installFlatLogits(context, () => this.logitsReadback === "flat");
    if (cfgCandidates !== undefined) checkCandidates(cfgCandidates);
    this.pool = new SlotPool(slots);
    this.stopTokens = new Set();
    const probe = chatWrapper.generateContextState({ chatHistory: [{ type: "user", text: "x" }, { type: "model", response: [] }] });
    for (const trigger of probe.stopGenerationTriggers) {
      const ids = trigger.tokenize(model.tokenizer);
      if (ids.length === 1) this.stopTokens.add(ids[0]!);
    }
  }

  /** The chat wrapper node-llama-cpp chose from the GGUF's chat template. */
  get chatTemplate(): string {
    return this.chatWrapper.wrapperName;
  }

  /** Tokens per sequence (prompt + output of one request). */
  get contextSize(): number {
    return this.pool.slots[0]![0].contextSize;
  }

  /** Requests decoded at once (slots of two sequences in the one context). */
  get parallel(): number {
    return this.pool.size;
  }

  static async create(options: LocalModelOptions = {}): Promise<LocalLanguageModel> {
    const env = options.env ?? process.env;
    const resolved = resolveModelPath(options.model, env);
    let modelPath: string;
    let modelId: string;
    if (resolved.kind === "remote") {
      // users' machines: node-llama-cpp downloads hf: refs into the models cache
      modelPath = await resolveModelFile(resolved.uri, { directory: modelsDir(env), cli: false });
      modelId = resolved.uri;
    } else {
      modelPath = resolved.path;
      modelId = resolved.entry?.name ?? basename(resolved.path);
    }
    const deterministic = options.deterministic ?? false;
    if (deterministic && (options.gpu === "cuda" || options.gpu === "metal")) {
      throw new ConfigError(`--deterministic decodes on the CPU (GPU kernels give no bit-for-bit guarantee); use --gpu off or auto, not --gpu ${options.gpu}`);
    }
    if (deterministic && options.threads !== undefined && options.threads !== 1) {
      throw new ConfigError(`--deterministic needs one llama.cpp thread (attention over long caches is split across threads), got threads ${options.threads}`);
    }
    const gpu = deterministic ? "off" : (options.gpu ?? "auto");
    const llama = await getLlama({
      gpu: gpu === "off" ? false : gpu,
      build: "never",
      logLevel: env.RANKCHAIN_DEBUG ? LlamaLogLevel.info : LlamaLogLevel.error,
      progressLogs: false,
    }).catch((e: unknown) => {
      throw new ConfigError(
        `could not load llama.cpp for --gpu ${gpu}: ${e instanceof Error ? e.message : String(e)}. Use --gpu off for CPU, or install node-llama-cpp's prebuilt binaries for your GPU.`,
        { cause: e },
      );
    });
    try {
      const model = await llama.loadModel({ modelPath }).catch((e: unknown) => {
        throw new ConfigError(`could not load GGUF model ${modelPath}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
      });
      const parallel = options.parallel ?? 1;
      if (!Number.isInteger(parallel) || parallel < 1) throw new ConfigError(`local model: parallel requests (--concurrency) must be an integer >= 1, got ${parallel}`);
      const contextSize =
        options.contextSize ?? (options.sizing ? sequenceContextSize(options.sizing, model.trainContextSize) : Math.min(model.trainContextSize, 4096));
      const sequences = SEQUENCES_PER_SLOT * parallel;
      if (parallel > 1) {
        const vram = model.gpuLayers > 0 ? await llama.getVramState() : undefined;
        await checkContextFits({ model, contextSize, sequences, parallel, freeVram: vram?.free });
      }
      const barrier = new DecodeStepBarrier();
      const context = await model.createContext({
        sequences,
        contextSize,
        // one decode step carries every token queued for it: prompts of new chains next to one token per chain in flight
        batchSize: Math.max(512, sequences),
        threads: deterministic ? 1 : (options.threads ?? defaultThreads(env)),
        // deterministic: attention row by row (see DETERMINISTIC_PIECE in batched-decoding.ts)
        ...(deterministic ? { flashAttention: true } : {}),
        batching: { dispatchSchedule: barrier.dispatchSchedule },
        // keep the full KV cache on sliding-window models (Gemma 3) so prompt prefixes can be reused
        swaFullCache: true,
      });
      const slots = Array.from({ length: parallel }, () => [context.getSequence(), context.getSequence()] as const);
      const chatWrapper = resolveChatWrapper(model);
      return new LocalLanguageModel(modelId, modelPath, llama, model, context, slots, barrier, chatWrapper, options.seed, options.cfgEvaluation ?? "batched", options.cfgCandidates, options.logitsReadback ?? "flat", deterministic);
    } catch (e) {
      await llama.dispose();
      throw e;
    }
  }

  /** Renders chat messages with the model's chat template into prompt tokens. */
  promptTokens(messages: readonly ChatMessage[]): Token[] {
    if (messages.length === 0) throw new ConfigError("a request needs at least one message");
    const history: ChatHistoryItem[] = messages.map((m) =>
      m.role === "system" ? { type: "system", text: m.content } : m.role === "user" ? { type: "user", text: m.content } : { type: "model", response: [m.content] },
    );
    // a trailing assistant message is a prefill the model continues; otherwise open a new turn
    if (history[history.length - 1]!.type !== "model") history.push({ type: "model", response: [] });
    const state = this.chatWrapper.generateContextState({ chatHistory: history });
    return state.contextText.tokenize(this.model.tokenizer);
  }

  async countInputTokens(messages: ChatMessage[]): Promise<TokenCount> {
    return { tokens: this.promptTokens(messages).length, exact: true, method: `gguf-tokenizer:${this.modelId}` };
  }

  async generate(request: GenerateRequest): Promise<GenerateResult> {
    if (this.disposed) throw new Error("local model is disposed");
    const prompt = this.promptTokens(request.messages);
    return this.pool.use(
      (slot) => sharedPrefix(slot[0], prompt),
      (slot) => this.generateNow(request, slot, prompt),
    );
  }

  async generateGuided(request: LocalGuidedGenerateRequest): Promise<GenerateResult> {
    if (this.disposed) throw new Error("local model is disposed");
    const k = request.candidates === undefined ? this.cfgCandidates : (request.candidates ?? undefined);
    if (k !== undefined) checkCandidates(k);
    const pos = this.promptTokens(request.positive);
    const neg = request.guidance !== 1 ? this.promptTokens(request.negative) : undefined;
    return this.pool.use(
      (slot) => Math.max(sharedPrefix(slot[0], pos) + sharedPrefix(slot[1], neg), sharedPrefix(slot[1], pos) + sharedPrefix(slot[0], neg)),
      (slot) => this.guidedDecode(request, k, slot),
    );
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    // requests decoding now finish; queued ones are refused
    this.pool.close(new Error("local model is disposed"));
    await this.pool.idle();
    await this.context.dispose();
    await this.model.dispose();
    await this.llama.dispose();
  }

  /** Plain decoding with node-llama-cpp's own sampler (greedy at temperature 0). */
  private async generateNow(request: GenerateRequest, slot: SequencePair, prompt: Token[]): Promise<GenerateResult> {
    const warnings: CallWarning[] = [];
    this.checkFits(prompt.length, request.maxOutputTokens);
    const deadline = deadlineOf(request.timeoutMs);
    const seq = slot[0];
    const reused = await this.alignPrefix(seq, prompt);
    const [tail] = await this.prefeed([[seq, prompt.slice(reused)]]);
    let grammarEvaluationState: LlamaGrammarEvaluationState | undefined;
    if (request.responseFormat) {
      try {
        const grammar = await this.llama.createGrammarForJsonSchema(request.responseFormat.schema as never);
        grammarEvaluationState = new LlamaGrammarEvaluationState({ model: this.model, grammar });
      } catch (e) {
        throw new ProviderCallError(`local model: JSON schema "${request.responseFormat.name}" cannot be turned into a grammar: ${e instanceof Error ? e.message : String(e)}`, {
          isRetryable: false,
          cause: e,
        });
      }
    }
    const temperature = request.temperature ?? 0;
    const seed = request.seed ?? this.defaultSeed;
    const stops = request.stop ?? [];
    const out: Token[] = [];
    let finish: FinishReason = FINISH_LENGTH;
    let text = "";
    const iterator = seq.evaluate([...tail!], {
      temperature,
      ...(temperature > 0 && seed !== undefined ? { seed } : {}),
      ...(grammarEvaluationState ? { grammarEvaluationState } : {}),
      yieldEogToken: true,
    });
    try {
      if (request.maxOutputTokens > 0) {
        for await (const token of iterator) {
          request.abortSignal?.throwIfAborted();
          checkDeadline(deadline, request.timeoutMs, out.length);
          out.push(token);
          if (this.isStopToken(token)) {
            finish = FINISH_EOG;
            break;
          }
          text = this.outputText(out.filter((t) => !this.isStopToken(t)));
          const cut = firstStop(text, stops);
          if (cut !== undefined) {
            text = text.slice(0, cut);
            finish = FINISH_STOP_SEQUENCE;
            break;
          }
          if (out.length >= request.maxOutputTokens) break;
        }
      }
    } finally {
      await iterator.return();
    }
    if (finish === FINISH_EOG) text = this.outputText(out.slice(0, -1));
    const details: LocalGenerationDetails = { tokens: out, promptTokens: { positive: prompt.length, negative: undefined } };
    return {
      text,
      finishReason: finish,
      usage: { inputTokens: prompt.length, outputTokens: out.length, cachedInputTokens: reused },
      warnings,
      raw: details,
    };
  }

  /**
   * Classifier-free guidance: the positive and negative prompts go to the slot's two sequences,
   * both are fed every chosen token, and both are evaluated in one batch per token (together with
   * the other requests decoding now: the barrier). The next token is the argmax (temperature 0) or
   * a seeded sample of G·log p_pos − (G−1)·log p_neg, over the whole vocabulary (exact, the
   * default) or over the positive's top-K candidates (`candidates`).
   */
  private async guidedDecode(request: LocalGuidedGenerateRequest, candidates: number | undefined, slot: SequencePair): Promise<GenerateResult> {
    const member = this.barrier.join();
    try {
      return await this.guidedDecodeIn(request, candidates, slot, member);
    } finally {
      this.barrier.leave(member);
    }
  }

  private async guidedDecodeIn(request: LocalGuidedGenerateRequest, candidates: number | undefined, slot: SequencePair, member: BarrierMember): Promise<GenerateResult> {
    const G = request.guidance;
    if (!Number.isFinite(G) || G < 1) throw new ConfigError(`--guidance must be a number >= 1, got ${G}`);
    const guided = G !== 1;
    const posPrompt = this.promptTokens(request.positive);
    const negPrompt = guided ? this.promptTokens(request.negative) : undefined;
    this.checkFits(Math.max(posPrompt.length, negPrompt?.length ?? 0), request.maxOutputTokens);
    const deadline = deadlineOf(request.timeoutMs);
    const [posSeq, negSeq] = pickSequences(slot, posPrompt, negPrompt);
    const [posReused, negReused] = await Promise.all([this.alignPrefix(posSeq, posPrompt), negPrompt ? this.alignPrefix(negSeq, negPrompt) : Promise.resolve(0)]);
    const temperature = request.temperature ?? 0;
    const seed = request.seed ?? this.defaultSeed ?? Date.now();
    const random = seededRandom(seed);
    const stopAtNewline = request.stopAtNewline ?? true;
    const neg = negPrompt ? negSeq : undefined;

    let cfg: NonNullable<LocalGenerationDetails["cfg"]>;
    let posNext: NextRequest = { logits: true };
    let negNext: NextRequest = { logits: true };
    if (candidates === undefined) {
      cfg = { scoring: "full" };
    } else {
      const vocab = this.vocabularyHint();
      const k = Math.min(candidates, vocab);
      cfg = { scoring: "candidates", candidates: k, negativeReevaluations: 0 };
      posNext = topLogits(k);
      negNext = topLogits(Math.min(vocab, Math.max(NEGATIVE_TOP_MIN, 8 * k)));
    }
    const choose = async (posRead: ReadLogits, negRead: ReadLogits | undefined): Promise<Token> => {
      if (candidates === undefined) {
        cfg.readback = posRead instanceof Map ? "map" : "flat";
        const vocab = this.vocabularySize(posRead);
        // raw logits (the normalisers cancel) straight from the flat arrays, else log-softmax
        const raw =
          this.exactScoring === "raw" && !(posRead instanceof Map) && !(negRead instanceof Map) ? guidanceScoresFlat(posRead.flat, negRead?.flat, vocab, G) : undefined;
        const scores = raw ?? guidanceScores(toLogProbs(posRead, vocab), negRead ? toLogProbs(negRead, vocab) : undefined, G);
        return (temperature > 0 ? sampleToken(scores, temperature, random()) : argmax(scores)) as Token;
      }
      const posLogits = asMap(posRead);
      let negValues = negRead && valuesFor(negRead, posLogits);
      if (negValues && neg) {
        const found = negValues;
        const missing = [...posLogits.keys()].filter((t) => !found.has(t));
        if (missing.length > 0) {
          // a candidate the negative prompt ranks low: read its logit exactly (evaluate the
          // negative's last token again, returning only the missing tokens' logits)
          negValues = new Map([...found, ...(await this.barrier.evaluate(member, () => this.reevaluateLast(neg, missing)))]);
          cfg.negativeReevaluations = (cfg.negativeReevaluations ?? 0) + 1;
        }
      }
      const pick = candidateScores(posLogits, negValues, G);
      const i = temperature > 0 ? sampleToken(pick.scores, temperature, random()) : argmax(pick.scores);
      return pick.tokens[i]! as Token;
    };

    // prompt tails of both sequences in one batch; logits only at the last position
    let [posLogits, negLogits] = await this.barrier.evaluate(member, () =>
      this.evaluatePair(posSeq, posPrompt.slice(posReused), neg, negPrompt?.slice(negReused) ?? [], posNext, negNext),
    );
    const out: Token[] = [];
    let finish: FinishReason = FINISH_LENGTH;
    let text = "";
    while (out.length < request.maxOutputTokens) {
      request.abortSignal?.throwIfAborted();
      checkDeadline(deadline, request.timeoutMs, out.length);
      const token = await choose(posLogits, negLogits);
      out.push(token);
      if (this.isStopToken(token)) {
        finish = FINISH_EOG;
        break;
      }
      text = this.outputText(out);
      if (stopAtNewline) {
        const nl = text.indexOf("\n");
        if (nl >= 0) {
          text = text.slice(0, nl);
          finish = FINISH_NEWLINE;
          break;
        }
      }
      if (out.length >= request.maxOutputTokens) break;
      // the same token goes to both sequences, evaluated together in one batch
      [posLogits, negLogits] = await this.barrier.evaluate(member, () => this.evaluatePair(posSeq, [token], neg, [token], posNext, negNext));
    }
    if (finish === FINISH_EOG) text = this.outputText(out.slice(0, -1));
    const details: LocalGenerationDetails = { tokens: out, promptTokens: { positive: posPrompt.length, negative: negPrompt?.length }, cfg };
    return {
      text,
      finishReason: finish,
      usage: {
        inputTokens: posPrompt.length + (negPrompt?.length ?? 0),
        outputTokens: out.length,
        cachedInputTokens: posReused + negReused,
      },
      warnings: [],
      raw: details,
    };
  }

  /**
   * Next-token log-probabilities for one prompt after a given generated prefix, read back from
   * the model (for tests and diagnostics; uses the first sequence).
   */
  async nextTokenLogProbs(messages: readonly ChatMessage[], generated: readonly Token[] = [], options: { sequence?: 0 | 1 } = {}): Promise<Float64Array> {
    if (this.disposed) throw new Error("local model is disposed");
    const tokens = [...this.promptTokens(messages), ...generated];
    const which = options.sequence ?? 0;
    return this.pool.use(
      (slot) => sharedPrefix(slot[which], tokens),
      async (slot) => {
        const seq = slot[which];
        const reused = await this.alignPrefix(seq, tokens);
        const [tail] = await this.prefeed([[seq, tokens.slice(reused)]]);
        const logits = await this.evaluateForLogits(seq, tail!);
        return toLogProbs(logits, this.vocabularySize(logits));
      },
    );
  }

  /** Token ids of plain text with the model's tokenizer (no chat template, no special tokens). */
  tokenize(text: string): Token[] {
    return this.model.tokenize(text);
  }

  /** Detokenizes generated tokens; leading whitespace is dropped (a step starts at its first word). */
  outputText(tokens: readonly Token[]): string {
    return this.model.detokenize(tokens).replace(/^\s+/, "");
  }

  isStopToken(token: Token): boolean {
    return this.model.isEogToken(token) || this.stopTokens.has(token);
  }

  /** Vocabulary size from the GGUF metadata (or learnt from a full read); caps top-K requests. */
  private vocabularyHint(): number {
    if (this.vocabSize !== undefined) return this.vocabSize;
    const n = (this.model.fileInfo.metadata as { tokenizer?: { ggml?: { tokens?: readonly unknown[] } } }).tokenizer?.ggml?.tokens?.length;
    // without metadata: a generous cap (node-llama-cpp reserves memory for includeTop entries)
    return n !== undefined && n > 0 ? n : 1 << 18;
  }

  private vocabularySize(logits: ReadLogits): number {
    if (this.vocabSize === undefined) {
      let max = -1;
      if (logits instanceof Map) {
        for (const t of logits.keys()) if (t > max) max = t;
        this.vocabSize = Math.max(max + 1, logits.size);
      } else {
        for (let i = 0; i < logits.flat.length; i += 2) if (logits.flat[i]! > max) max = logits.flat[i]!;
        this.vocabSize = Math.max(max + 1, logits.flat.length / 2);
      }
    }
    return this.vocabSize;
  }

  /**
   * Evaluates new tokens on the positive and (when guided) the negative sequence. Batched: both
   * controlledEvaluate calls are queued in the same tick, so node-llama-cpp decodes them in one
   * llama.cpp batch.
   */
  private async evaluatePair(
    pos: LlamaContextSequence,
    posTokens: readonly Token[],
    neg: LlamaContextSequence | undefined,
    negTokens: readonly Token[],
    posNext: NextRequest = { logits: true },
    negNext: NextRequest = { logits: true },
  ): Promise<[ReadLogits, ReadLogits | undefined]> {
    if (posTokens.length > DETERMINISTIC_PIECE || negTokens.length > DETERMINISTIC_PIECE) {
      const [p, n] = await this.prefeed(neg ? [[pos, posTokens], [neg, negTokens]] : [[pos, posTokens]]);
      posTokens = p!;
      negTokens = n ?? [];
    }
    if (!neg) return [await this.evaluateForLogits(pos, posTokens, posNext), undefined];
    if (this.cfgEvaluation === "sequential") {
      const p = await this.evaluateForLogits(pos, posTokens, posNext);
      return [p, await this.evaluateForLogits(neg, negTokens, negNext)];
    }
    return Promise.all([this.evaluateForLogits(pos, posTokens, posNext), this.evaluateForLogits(neg, negTokens, negNext)]);
  }

  /**
   * Deterministic mode: evaluates the sequences' tokens in pieces of at most DETERMINISTIC_PIECE
   * (all sequences' pieces in one batch) until at most one piece is left of each, and returns what
   * is left, to be evaluated with logits; so no sequence ever puts more than DETERMINISTIC_PIECE
   * tokens into one llama.cpp batch (see batched-decoding.ts). Otherwise returns the tokens as they are.
   */
  private async prefeed(items: readonly (readonly [LlamaContextSequence, readonly Token[]])[]): Promise<(readonly Token[])[]> {
    const left = items.map(([, tokens]) => tokens);
    if (!this.deterministic) return left;
    for (;;) {
      const due = items.map(([seq], i) => [seq, i] as const).filter(([, i]) => left[i]!.length > DETERMINISTIC_PIECE);
      if (due.length === 0) return left;
      await Promise.all(
        due.map(([seq, i]) => {
          const [piece] = pieces(left[i]!, DETERMINISTIC_PIECE);
          left[i] = left[i]!.slice(DETERMINISTIC_PIECE);
          return seq.controlledEvaluate(piece!);
        }),
      );
    }
  }

  /** Evaluates the sequence's last token again (same position, same cache) and returns the logits of `tokens`. */
  private async reevaluateLast(seq: LlamaContextSequence, tokens: readonly Token[]): Promise<Map<Token, number>> {
    const end = seq.nextTokenIndex;
    const last = seq.contextTokens[end - 1];
    if (last === undefined) throw new Error("sequence is empty");
    await seq.eraseContextTokenRanges([{ start: end - 1, end }]);
    return asMap(await this.evaluateForLogits(seq, [last], { logits: { filter: { tokens: [...tokens] } } }));
  }

  private async evaluateForLogits(seq: LlamaContextSequence, tokens: readonly Token[], next: NextRequest = { logits: true }): Promise<ReadLogits> {
    if (tokens.length === 0) throw new Error("nothing to evaluate");
    const input: (Token | [Token, { generateNext: NextRequest }])[] = tokens.map((t, i) => (i === tokens.length - 1 ? [t, { generateNext: next }] : t));
    const result = await seq.controlledEvaluate(input);
    const out = result[tokens.length - 1]?.next;
    // the flat native array, when installFlatLogits moved it into this otherwise unused field
    const flat: unknown = out?.totalLogitWeight;
    if (Array.isArray(flat) && flat.length % 2 === 0) return { flat: flat as number[] };
    if (!out?.logits) throw new ProviderCallError("local model returned no logits", { isRetryable: false });
    return out.logits;
  }

  /**
   * Keeps the longest cached prefix of the sequence that matches `tokens` (at least the last
   * token is always evaluated again so that its logits are available) and returns its length.
   */
  private async alignPrefix(seq: LlamaContextSequence, tokens: readonly Token[]): Promise<number> {
    const keep = Math.min(seq.compareContextTokens(tokens as Token[]).firstDifferentIndex, tokens.length - 1);
    if (seq.nextTokenIndex > keep) await seq.eraseContextTokenRanges([{ start: keep, end: seq.nextTokenIndex }]);
    return keep;
  }

  private checkFits(promptTokens: number, maxOutputTokens: number): void {
    if (promptTokens + maxOutputTokens > this.contextSize) {
      throw new ProviderCallError(
        `local model: prompt (${promptTokens} tokens) + max output (${maxOutputTokens}) exceeds the context size ${this.contextSize}; raise contextSize or shorten the input`,
        { isRetryable: false },
      );
    }
  }
}

/** Tokens of `tokens` already in the sequence's cache, from the start. */
function sharedPrefix(seq: LlamaContextSequence, tokens: readonly Token[] | undefined): number {
  return tokens ? seq.compareContextTokens(tokens as Token[]).firstDifferentIndex : 0;
}

/** Chooses which sequence of the slot gets which prompt so that the most cached prefix is reused. */
function pickSequences(slot: SequencePair, positive: readonly Token[], negative: readonly Token[] | undefined): [LlamaContextSequence, LlamaContextSequence] {
  const [a, b] = slot;
  const straight = sharedPrefix(a, positive) + sharedPrefix(b, negative);
  const swapped = sharedPrefix(b, positive) + sharedPrefix(a, negative);
  return swapped > straight ? [b, a] : [a, b];
}

function deadlineOf(timeoutMs: number | undefined): number | undefined {
  return timeoutMs === undefined ? undefined : performance.now() + timeoutMs;
}

/** --timeout for local calls: checked before each token; the step is given up (not retried: it would take as long again). */
function checkDeadline(deadline: number | undefined, timeoutMs: number | undefined, tokens: number): void {
  if (deadline !== undefined && performance.now() > deadline) {
    throw new ProviderCallError(`local model: --timeout ${timeoutMs} ms reached after ${tokens} generated tokens`, { isRetryable: false });
  }
}

/** Logits as read back: node-llama-cpp's Map, or its flat native [token, logit, …] array. */
type ReadLogits = Map<Token, number> | { flat: readonly number[] };

function toLogProbs(logits: ReadLogits, vocab: number): Float64Array {
  return logits instanceof Map ? logSoftmax(logits, vocab) : logSoftmaxFlat(logits.flat, vocab);
}

/** The logits of the tokens in `wanted` (those present), without building a Map of the rest. */
function valuesFor(logits: ReadLogits, wanted: ReadonlyMap<Token, unknown>): Map<Token, number> {
  const out = new Map<Token, number>();
  if (logits instanceof Map) {
    for (const t of wanted.keys()) {
      const v = logits.get(t);
      if (v !== undefined) out.set(t, v);
    }
  } else {
    const f = logits.flat;
    for (let i = 0; i < f.length; i += 2) if (wanted.has(f[i]! as Token)) out.set(f[i]! as Token, f[i + 1]!);
  }
  return out;
}

function asMap(logits: ReadLogits): Map<Token, number> {
  if (logits instanceof Map) return logits;
  const m = new Map<Token, number>();
  for (let i = 0; i < logits.flat.length; i += 2) m.set(logits.flat[i]! as Token, logits.flat[i + 1]!);
  return m;
}

const FLAT_LOGITS_INSTALLED = Symbol("rankchain.flatLogits");

/**
 * node-llama-cpp 3.22 reads next-token logits in native code into a flat JavaScript array
 * [token, logit, token, logit, …] and then copies it into a Map (reviveTokenValuePair in
 * LlamaContext.js) — for a full vocabulary that copy costs several ms per sequence per token, and
 * no public API returns the array itself. This wraps the context's internal native
 * `_ctx.sampleToken` so that, for logit requests (`logits: true` or a filter; no totalLogitWeight), the
 * array is moved from the result's logits slot into its totalLogitWeight slot: controlledEvaluate
 * then skips the Map and passes the array through as `next.totalLogitWeight`, which
 * evaluateForLogits recognises. Everything else passes through untouched, and so does every call
 * while `enabled()` is false. Returns false (and changes nothing) when the internals are not
 * there; results of any other shape are passed through as they are, and evaluateForLogits then
 * reads the public Map.
 */
export function installFlatLogits(context: LlamaContext, enabled: () => boolean): boolean {
  const native = (context as unknown as { _ctx?: Record<PropertyKey, unknown> })._ctx;
  if (native === null || typeof native !== "object" || typeof native.sampleToken !== "function") return false;
  if (native[FLAT_LOGITS_INSTALLED]) return true;
  const original = native.sampleToken as (...args: unknown[]) => unknown;
  const wrapped = function (this: unknown, ...args: unknown[]): unknown {
    const result = original.apply(this, args);
    // (batchLogitIndex, sampler, probabilities, confidence, logits, totalLogitWeight)
    if (!enabled() || args.length !== 6 || (args[4] !== true && !Array.isArray(args[4])) || args[5] !== false || !(result instanceof Promise)) return result;
    return result.then((r: unknown) => {
      if (!Array.isArray(r) || !Array.isArray(r[3]) || r[4] !== undefined) return r;
      const moved = [...r];
      moved[4] = r[3];
      moved[3] = undefined;
      return moved;
    });
  };
  try {
    // the native method lives on the prototype as a read-only property: shadow it on this object
    Object.defineProperty(native, "sampleToken", { value: wrapped, writable: true, configurable: true, enumerable: false });
    Object.defineProperty(native, FLAT_LOGITS_INSTALLED, { value: true });
  } catch {
    return false;
  }
  return true;
}

/** What controlledEvaluate returns for a sequence's next token: all logits, or a filtered list. */
type NextRequest =
  | { logits: true }
  | {
      logits: { filter: { tokens: Token[]; includeTop?: number } };
      options?: { temperature: number; topK: number; topP: number; minP: number; seed: number };
    };

/**
 * The K largest logits of a sequence, cheaply: node-llama-cpp's `includeTop` alone sorts the whole
 * vocabulary in native code; with a top-K sampler in the chain (temperature 1 divides logits by
 * exactly 1, top-p 1 and min-p 0 are no-ops) the candidates arrive already partially sorted and
 * only K (token, logit) pairs cross into JavaScript. The sampled token itself is ignored.
 */
function topLogits(k: number): NextRequest {
  return { logits: { filter: { tokens: [], includeTop: k } }, options: { temperature: 1, topK: k, topP: 1, minP: 0, seed: 1 } };
}

function checkCandidates(k: number): void {
  if (!Number.isInteger(k) || k < 1) throw new ConfigError(`CFG candidates (--cfg-top-k) must be an integer >= 1, got ${k}`);
}

/** $RANKCHAIN_THREADS, else available parallelism − 1 (at least 1). */
export function defaultThreads(env: NodeJS.ProcessEnv = process.env): number {
  const fromEnv = Number(env.RANKCHAIN_THREADS);
  if (Number.isInteger(fromEnv) && fromEnv > 0) return fromEnv;
  return Math.max(1, availableParallelism() - 1);
}

function firstStop(text: string, stops: readonly string[]): number | undefined {
  let first: number | undefined;
  for (const s of stops) {
    if (s === "") continue;
    const i = text.indexOf(s);
    if (i >= 0 && (first === undefined || i < first)) first = i;
  }
  return first;
}

/** Loads a local GGUF model (see LocalModelOptions). Call dispose() when done. */
export function createLocalModel(options: LocalModelOptions = {}): Promise<LocalLanguageModel> {
  return LocalLanguageModel.create(options);
}
