/**
 * `--mode batch`: a LanguageModel that gathers the generator's calls into provider batches.
 *
 * The chain generator runs unchanged, with one worker per chain: every chain asks for its next
 * call, the calls gather in a queue, and once every running chain has queued its call (or no new
 * call has arrived for `gatherMs`) the queue is submitted as one batch (so stepwise submits one
 * batch per step wave, ladder one batch). The batch
 * is polled every `pollMs`; when it ends, each call gets its own result, and the generator charges
 * it (at the batch price it was given) exactly as an online answer. Failed requests reject with a
 * ProviderCallError (5xx retryable, 4xx not) and expired ones with a retryable 408, so the
 * generator's retries put them into a follow-up batch; their reservations are released (batch APIs
 * bill only what succeeded).
 *
 * Resume: batches.jsonl in the run directory records each batch before it is submitted
 * ("submitting": tag and custom_ids, which are the generator's call keys), after ("submitted": the
 * provider's id) and once every result was handed over ("collected"). A restarted process finds a
 * call's key in a submitted, uncollected batch and waits for that batch instead of submitting the
 * call again; its reservation, kept open by the ledger (BudgetLedger.open keepOpen), is settled by
 * the result. Nothing is paid for twice.
 */
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { z } from "zod";
import { PendingAtProviderError, ProviderCallError } from "../errors.ts";
import type { BatchClient, BatchItem, BatchStatus } from "../llm/batch/types.ts";
import type { ChatMessage, GenerateRequest, GenerateResult, JsonResponseFormat, LanguageModel, TokenCount } from "../llm/types.ts";
import { JsonlAppender, readJsonl } from "../store/jsonl.ts";
import { abortableSleep } from "./retry.ts";

export const BatchLogEntrySchema = z.discriminatedUnion("type", [
  z.object({ type: z.literal("submitting"), tag: z.string(), provider: z.string(), custom_ids: z.array(z.string()), ts: z.string() }),
  z.object({ type: z.literal("submitted"), tag: z.string(), id: z.string(), ts: z.string() }),
  z.object({ type: z.literal("collected"), id: z.string(), ts: z.string(), status: z.string(), succeeded: z.number(), failed: z.number() }),
]);
export type BatchLogEntry = z.infer<typeof BatchLogEntrySchema>;

/** What batches.jsonl says: batches submitted and not yet collected, and tags never confirmed. */
export interface BatchLogState {
  /** custom_id → provider batch id, for submitted, uncollected batches (latest wins). */
  pendingByKey: Map<string, string>;
  /** Batches recorded as submitting without a submitted entry (a kill in between). */
  unconfirmed: { tag: string; customIds: string[] }[];
  batches: number;
}

export async function readBatchLog(path: string): Promise<BatchLogState> {
  const submitting = new Map<string, string[]>();
  const idByTag = new Map<string, string>();
  const collected = new Set<string>();
  let batches = 0;
  if (existsSync(path)) {
    for await (const { value } of readJsonl(path, BatchLogEntrySchema, { onIssue: () => undefined })) {
      if (value.type === "submitting") submitting.set(value.tag, value.custom_ids);
      else if (value.type === "submitted") {
        idByTag.set(value.tag, value.id);
        batches++;
      } else collected.add(value.id);
    }
  }
  const pendingByKey = new Map<string, string>();
  const unconfirmed: BatchLogState["unconfirmed"] = [];
  for (const [tag, ids] of submitting) {
    const id = idByTag.get(tag);
    if (id === undefined) unconfirmed.push({ tag, customIds: ids });
    else if (!collected.has(id)) for (const k of ids) pendingByKey.set(k, id);
  }
  return { pendingByKey, unconfirmed, batches };
}

export interface BatchProgress {
  id: string;
  status: BatchStatus;
}

export interface BatchModelOptions {
  /** Quiet time after the last queued call before the queue is submitted. */
  gatherMs?: number;
  pollMs: number;
  /** Largest batch (OpenAI: 50,000 requests; Anthropic: 100,000). */
  maxBatchSize?: number;
  onProgress?: (p: BatchProgress) => void;
  onSubmit?: (info: { id: string; requests: number }) => void;
}

interface Waiter {
  key: string;
  request: GenerateRequest;
  resolve: (r: GenerateResult) => void;
  reject: (e: unknown) => void;
}

interface TrackedBatch {
  id: string;
  keys: Set<string>;
  claimed: Set<string>;
  done: Promise<{ results: Map<string, unknown>; status: BatchStatus }>;
}

export class BatchModel implements LanguageModel {
  readonly provider;
  readonly modelId;
  readonly capabilities;
  private queue: Waiter[] = [];
  private timer: NodeJS.Timeout | undefined;
  private readonly batches = new Map<string, TrackedBatch>();
  private readonly stop = new AbortController();
  private submitted = 0;
  /** Calls expected before a wave is complete (chains still running); undefined: unknown. */
  private expected: number | undefined;

  private constructor(
    private readonly inner: LanguageModel,
    private readonly client: BatchClient,
    private readonly log: JsonlAppender,
    private readonly state: BatchLogState,
    private readonly o: BatchModelOptions,
  ) {
    this.provider = inner.provider;
    this.modelId = inner.modelId;
    this.capabilities = inner.capabilities;
  }

  /**
   * Opens batches.jsonl. A batch recorded as submitting but never confirmed is looked up by its tag
   * (where the API can); found, it is pending like any other; not found, its calls are submitted
   * again (their old reservations having been charged at worst case: the ledger never under-counts).
   */
  static async open(inner: LanguageModel, client: BatchClient, logPath: string, options: BatchModelOptions): Promise<BatchModel> {
    const state = await readBatchLog(logPath);
    const log = await JsonlAppender.open(logPath, { durable: true });
    for (const u of state.unconfirmed) {
      const id = client.findByTag ? await client.findByTag(u.tag) : undefined;
      if (id === undefined) continue;
      await log.append({ type: "submitted", tag: u.tag, id, ts: new Date().toISOString() } satisfies BatchLogEntry);
      for (const k of u.customIds) state.pendingByKey.set(k, id);
    }
    state.unconfirmed = [];
    return new BatchModel(inner, client, log, state, options);
  }

  /** Keys of calls pending at the provider: their reservations stay open (BudgetLedger.open). */
  pendingKeys(): ReadonlySet<string> {
    return new Set(this.state.pendingByKey.keys());
  }

  batchesSubmitted(): number {
    return this.submitted;
  }

  countInputTokens(messages: ChatMessage[], options?: { responseFormat?: JsonResponseFormat | undefined }): Promise<TokenCount> {
    return this.inner.countInputTokens(messages, options);
  }

  generate(request: GenerateRequest): Promise<GenerateResult> {
    const key = request.callKey;
    if (key === undefined) return Promise.reject(new Error("batch mode needs the generator's call key"));
    return new Promise<GenerateResult>((resolve, reject) => {
      const waiter: Waiter = { key, request, resolve, reject };
      const signal = request.abortSignal;
      if (signal) {
        const onAbort = () =>
          reject(new PendingAtProviderError(`aborted while call ${key} waits on its batch; --resume collects it without paying again`));
        if (signal.aborted) return onAbort();
        signal.addEventListener("abort", onAbort, { once: true });
      }
      const pendingId = this.state.pendingByKey.get(key);
      if (pendingId !== undefined) {
        this.state.pendingByKey.delete(key);
        const tracked = this.track(pendingId, [...this.state.pendingByKey.entries()].filter(([, id]) => id === pendingId).map(([k]) => k).concat(key));
        this.deliver(tracked, waiter);
        return;
      }
      this.queue.push(waiter);
      if (this.timer) clearTimeout(this.timer);
      if (this.queue.length >= (this.o.maxBatchSize ?? 50_000) || this.waveComplete()) this.flush();
      else this.timer = setTimeout(() => this.flush(), this.o.gatherMs ?? 2000);
    });
  }

  /**
   * The run tells how many chains will call (one worker per chain); a wave is submitted as soon as
   * every running chain has queued its call, and otherwise after `gatherMs` without a new call (a
   * chain waiting on a batch from an earlier process, or on the budget).
   */
  setExpectedCallers(n: number): void {
    this.expected = n;
    if (this.waveComplete()) this.flush();
  }

  /** A chain finished (written, failed or stopped): one caller fewer in each later wave. */
  callerDone(): void {
    if (this.expected === undefined) return;
    this.expected = Math.max(0, this.expected - 1);
    if (this.waveComplete()) this.flush();
  }

  private waveComplete(): boolean {
    return this.expected !== undefined && this.queue.length > 0 && this.queue.length >= this.expected;
  }

  private flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const waiters = this.queue.splice(0, this.o.maxBatchSize ?? 50_000);
    if (waiters.length === 0) return;
    this.submit(waiters).catch((e: unknown) => {
      for (const w of waiters) w.reject(e);
    });
  }

  private async submit(waiters: Waiter[]): Promise<void> {
    const tag = randomBytes(8).toString("hex");
    const items: BatchItem[] = waiters.map((w) => ({ customId: w.key, request: w.request }));
    await this.log.append({ type: "submitting", tag, provider: this.client.provider, custom_ids: items.map((i) => i.customId), ts: new Date().toISOString() } satisfies BatchLogEntry);
    // The create call itself failing with an HTTP error means no batch exists: the generator
    // releases and retries. Without an answer it may exist: its tag lets a resume find it.
    const id = await this.client.submit(items, tag);
    await this.log.append({ type: "submitted", tag, id, ts: new Date().toISOString() } satisfies BatchLogEntry);
    this.submitted++;
    this.o.onSubmit?.({ id, requests: items.length });
    const tracked = this.track(id, items.map((i) => i.customId));
    for (const w of waiters) this.deliver(tracked, w);
  }

  private track(id: string, keys: string[]): TrackedBatch {
    const existing = this.batches.get(id);
    if (existing) return existing;
    const tracked: TrackedBatch = { id, keys: new Set(keys), claimed: new Set(), done: this.waitUntilEnded(id) };
    tracked.done.catch(() => undefined);
    this.batches.set(id, tracked);
    return tracked;
  }

  private async waitUntilEnded(id: string): Promise<{ results: Map<string, unknown>; status: BatchStatus }> {
    for (;;) {
      const status = await this.client.status(id);
      this.o.onProgress?.({ id, status });
      if (status.ended) return { results: await this.client.results(id), status };
      await abortableSleep(this.o.pollMs, this.stop.signal);
    }
  }

  private deliver(tracked: TrackedBatch, w: Waiter): void {
    tracked.done.then(
      async ({ results, status }) => {
        const raw = results.get(w.key) ?? results.get("*");
        if (raw === undefined) {
          w.reject(expired(w.key, status));
        } else {
          const outcome = this.client.parse(raw, w.request);
          if (outcome.ok) w.resolve(outcome.result);
          else if (outcome.kind === "errored") {
            const httpStatus = outcome.status ?? 500;
            w.reject(
              new ProviderCallError(`batch ${tracked.id}: request failed: ${outcome.message}`, {
                status: httpStatus,
                isRetryable: httpStatus === 408 || httpStatus === 409 || httpStatus === 429 || httpStatus >= 500,
              }),
            );
          } else w.reject(expired(w.key, status, outcome.kind));
        }
        tracked.claimed.add(w.key);
        if (tracked.claimed.size >= tracked.keys.size && [...tracked.keys].every((k) => tracked.claimed.has(k))) {
          await this.log.append({ type: "collected", id: tracked.id, ts: new Date().toISOString(), status: status.raw, succeeded: status.succeeded, failed: status.failed } satisfies BatchLogEntry);
        }
      },
      (e: unknown) => w.reject(e),
    );
  }

  async dispose(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.stop.abort(new Error("batch model disposed"));
    await this.log.close();
    await this.inner.dispose?.();
  }
}

function expired(key: string, status: BatchStatus, kind = "expired"): ProviderCallError {
  return new ProviderCallError(`batch ${status.id} (${status.raw}): request ${key} ${kind} before it ran; retried in a follow-up batch`, {
    status: 408,
    isRetryable: true,
  });
}
