import { freemem } from "node:os";
import type { LlamaContextSequence, LlamaModel } from "node-llama-cpp";
import { ConfigError } from "../../errors.ts";

/**
 * Many chains in flight in one llama.cpp context (continuous batching), the part of the local model
 * that decides how sequences are shared, when a decode step is dispatched, and how big the context is.
 *
 * - A **slot** is what one request (one chain step) decodes in: two sequences (positive and negative
 *   prompt for CFG; plain decoding uses the first). `parallel` slots live in one context, so with
 *   `--concurrency N` N chains decode at once with 2N sequences.
 * - The **decode-step barrier** replaces node-llama-cpp's default dispatch ("on the next event-loop
 *   cycle") by "when every guided request in flight has queued its next token": each llama_decode
 *   then carries one token of every chain in flight (and a new chain's prompt next to the others'
 *   single tokens), instead of whichever chains happened to be ready in that cycle. A chain that
 *   finishes leaves the barrier and a new one joins without the others draining (continuous
 *   batching).
 */

/** What a guided request holds while it decodes: its two sequences. */
export type SequencePair = readonly [LlamaContextSequence, LlamaContextSequence];

/**
 * Free slots handed out to requests; a request waits when all are busy. Among the free slots the
 * one whose cached tokens share the longest prefix with the request's prompts is chosen, so a chain
 * whose step i+1 reuses step i's prompt (CFG: the positive prompt of step i is the negative of step
 * i+1) usually lands where that prompt is already evaluated.
 */
export class SlotPool<S> {
  private readonly free: S[];
  private readonly waiters: { score: (slot: S) => number; resolve: (slot: S) => void; reject: (e: unknown) => void }[] = [];
  private closed: Error | undefined;
  private readonly idleWaiters: (() => void)[] = [];

  constructor(readonly slots: readonly S[]) {
    if (slots.length === 0) throw new Error("a slot pool needs at least one slot");
    this.free = [...slots];
  }

  get size(): number {
    return this.slots.length;
  }

  /** Runs `fn` on a slot (the best-scoring free one, else the next to be released). */
  async use<T>(score: (slot: S) => number, fn: (slot: S) => Promise<T>): Promise<T> {
    const slot = await this.acquire(score);
    try {
      return await fn(slot);
    } finally {
      this.release(slot);
    }
  }

  /** Rejects every waiting and later request (dispose). */
  close(reason: Error): void {
    this.closed = reason;
    for (const w of this.waiters.splice(0)) w.reject(reason);
  }

  /** Resolves when no slot is in use (after close: when the requests decoding now are done). */
  idle(): Promise<void> {
    if (this.free.length === this.slots.length) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private acquire(score: (slot: S) => number): Promise<S> {
    if (this.closed) return Promise.reject(this.closed);
    if (this.free.length > 0) return Promise.resolve(this.take(score));
    return new Promise((resolve, reject) => this.waiters.push({ score, resolve, reject }));
  }

  private take(score: (slot: S) => number): S {
    let best = 0;
    let bestScore = -Infinity;
    for (let i = 0; i < this.free.length; i++) {
      const s = score(this.free[i]!);
      if (s > bestScore) {
        bestScore = s;
        best = i;
      }
    }
    return this.free.splice(best, 1)[0]!;
  }

  private release(slot: S): void {
    this.free.push(slot);
    const w = this.waiters.shift();
    if (w) w.resolve(this.take(w.score));
    else if (this.free.length === this.slots.length) for (const resolve of this.idleWaiters.splice(0)) resolve();
  }
}

/** One guided request taking part in the barrier. */
export interface BarrierMember {
  inFlight: number;
}

/**
 * The decode-step barrier (see the file comment). Give `dispatchSchedule` to the context's
 * `batching.dispatchSchedule`; a guided request `join`s before its first evaluation, wraps every
 * evaluation in `evaluate`, and `leave`s when done (also on error). Requests that never join
 * (plain decoding through node-llama-cpp's own generator) are decoded with whatever batch runs next.
 * The dispatch itself is deferred by one event-loop turn (as node-llama-cpp's default does), so that
 * evaluations queued in the same turn land in the same batch.
 */
export class DecodeStepBarrier {
  private readonly members = new Set<BarrierMember>();
  private pendingDispatch: (() => void) | undefined;
  private scheduled = false;
  /** Decode steps dispatched, and chains (members) they carried in total: batching observed. */
  readonly stats = { dispatches: 0, membersPerDispatch: 0 };

  /** For `createContext({ batching: { dispatchSchedule } })`. */
  readonly dispatchSchedule = (dispatch: () => void): void => {
    this.pendingDispatch = dispatch;
    this.check();
  };

  join(): BarrierMember {
    const m: BarrierMember = { inFlight: 0 };
    this.members.add(m);
    return m;
  }

  leave(m: BarrierMember): void {
    this.members.delete(m);
    this.check();
  }

  async evaluate<T>(m: BarrierMember, run: () => Promise<T>): Promise<T> {
    m.inFlight++;
    try {
      const p = run();
      this.check();
      return await p;
    } finally {
      m.inFlight--;
    }
  }

  /** Guided requests decoding now. */
  get active(): number {
    return this.members.size;
  }

  private check(): void {
    if (!this.pendingDispatch || this.scheduled) return;
    for (const m of this.members) if (m.inFlight === 0) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      const d = this.pendingDispatch;
      this.pendingDispatch = undefined;
      if (!d) return;
      this.stats.dispatches++;
      this.stats.membersPerDispatch += this.members.size;
      d();
    });
  }
}

/** Sequences per slot: always two (CFG needs both; plain decoding uses the first). */
export const SEQUENCES_PER_SLOT = 2;

/** How large one sequence's context must be for a generate run (tokens; prompt + output). */
export interface SequenceSizing {
  /** --max-output-tokens; a step retried after a length stop asks for twice as many. */
  maxOutputTokens: number;
  /** The longest prompt a request can hold, in tokens (an upper bound). */
  maxPromptTokens: number;
}

/** llama.cpp pads context sizes to multiples of 256. */
const CONTEXT_PAD = 256;

/**
 * Tokens per sequence: the longest prompt plus twice --max-output-tokens (a retried step doubles
 * it), padded to 256, at most the model's training context.
 */
export function sequenceContextSize(sizing: SequenceSizing, trainContextSize: number): number {
  if (!(sizing.maxOutputTokens >= 1) || !(sizing.maxPromptTokens >= 1)) throw new ConfigError("context sizing needs positive token counts");
  const want = Math.ceil((sizing.maxPromptTokens + 2 * sizing.maxOutputTokens) / CONTEXT_PAD) * CONTEXT_PAD;
  return Math.min(want, trainContextSize);
}

/**
 * An upper bound on the prompt tokens of a generate run's requests, from its settings: the chat
 * template and instructions (`templateTokens`), the seed (at most one token per character — byte-level
 * BPE on ASCII text), and the earlier steps a prompt can hold (CFG: one step, the older sentence;
 * stepwise: all earlier steps; ladder: none), each at most twice --max-output-tokens.
 */
export function maxPromptTokens(o: { steering: "cfg" | "stepwise" | "ladder"; steps: number; maxSeedChars: number; maxOutputTokens: number; templateTokens?: number }): number {
  const stepsInPrompt = o.steering === "cfg" ? 1 : o.steering === "stepwise" ? Math.max(0, o.steps - 1) : 0;
  return (o.templateTokens ?? 256) + o.maxSeedChars + stepsInPrompt * 2 * o.maxOutputTokens;
}

/**
 * Checks that a context of `sequences` sequences of `contextSize` tokens fits in memory (llama.cpp's
 * KV cache, compute buffers; node-llama-cpp's estimate), before it is allocated; the error names the
 * flags that size it. GPU: free VRAM; CPU: free RAM (the model weights are already loaded).
 */
export async function checkContextFits(o: {
  model: LlamaModel;
  contextSize: number;
  sequences: number;
  parallel: number;
  freeVram?: number | undefined;
  freeRam?: number | undefined;
}): Promise<{ cpuRam: number; gpuVram: number }> {
  const need = await o.model.fileInsights.estimateContextResourceRequirementsV2({
    contextSize: o.contextSize * o.sequences,
    modelGpuLayers: o.model.gpuLayers,
    sequences: o.sequences,
    swaFullCache: true,
  });
  const mb = (b: number) => `${Math.ceil(b / 2 ** 20)} MB`;
  const what = `${o.parallel} chain(s) in flight (--concurrency) × ${SEQUENCES_PER_SLOT} sequences × ${o.contextSize} tokens`;
  const fix = "lower --concurrency, --max-output-tokens or --max-seed-chars";
  if (o.model.gpuLayers > 0 && o.freeVram !== undefined && need.gpuVram > o.freeVram) {
    throw new ConfigError(`local model: ${what} needs about ${mb(need.gpuVram)} of GPU memory, ${mb(o.freeVram)} is free; ${fix}`);
  }
  const freeRam = o.freeRam ?? freemem();
  if (need.cpuRam > freeRam) {
    throw new ConfigError(`local model: ${what} needs about ${mb(need.cpuRam)} of RAM, ${mb(freeRam)} is free; ${fix}`);
  }
  return need;
}

/**
 * Deterministic decoding (`--deterministic`): what makes one sequence's logits independent of the
 * rest of the batch on llama.cpp's CPU backend (node-llama-cpp 3.22.1, its llama.cpp sources; probed
 * bitwise by bench/local-batch/shape-probe.ts):
 *
 * - The weight matrix products are row-independent: Q4_1 weights (SmolLM2) are neither repacked nor
 *   handled by llamafile's tinyBLAS on x86, so every row is one ggml vec_dot; the Q8_0 output matrix
 *   goes through tinyBLAS for ≥ 2 output rows and vec_dot for 1, and both give identical bits.
 * - Attention is not. node-llama-cpp fixes `kv_unified` off, so llama.cpp splits every batch into
 *   ubatches with equal token counts per sequence (split_equal), and how many of a prompt's tokens
 *   share a ubatch depends on what else is in the batch. Without flash attention, KQ and KQV are per
 *   sequence matrix products over those rows: one row goes through ggml_vec_dot_f16, two or more
 *   through tinyBLAS, with a different summation order (logits differ by up to ~0.5 after a prompt
 *   evaluated token by token vs in one piece; a near-tie then flips a late token).
 * - With flash attention each query row is computed on its own (online softmax over the KV cells in
 *   order, masked cells skipped), so a prompt evaluated token by token, in pieces or beside other
 *   sequences gives identical bits — except in two kernels: ≥ 64 query rows of one sequence in one
 *   ubatch use a tiled kernel (GGML_FA_TILE_Q), and a single query row with ≥ 512 KV cells is split
 *   over the threads (identical at one thread only).
 *
 * Hence: flash attention on, prompt tails evaluated in pieces of at most DETERMINISTIC_PIECE tokens
 * per sequence, one llama.cpp thread, CPU. GPU kernels give no such guarantee.
 */
export const DETERMINISTIC_PIECE = 32;

/** `tokens` cut into consecutive pieces of at most `size` tokens (at least one piece). */
export function pieces<T>(tokens: readonly T[], size: number): T[][] {
  if (tokens.length <= size) return [[...tokens]];
  const out: T[][] = [];
  for (let i = 0; i < tokens.length; i += size) out.push(tokens.slice(i, i + size));
  return out;
}
