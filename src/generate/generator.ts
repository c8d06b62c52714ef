import { BudgetExceededError, FarmMemberDownError, ProviderCallError, RankchainError, RetryError, PendingAtProviderError } from "../errors.ts";
import type { Ledger } from "../budget/types.ts";
import { countQuality, settleFailure } from "../budget/billing.ts";
import type { ModelPrice } from "../config/prices.ts";
import type {
  CallWarning,
  GenerateRequest,
  GenerateResult,
  GuidedGenerateRequest,
  LanguageModel,
  StructuredOutputMode,
} from "../llm/types.ts";
import { STRUCTURED_OUTPUT_MODES } from "../llm/types.ts";
import type { ChainRecord, GeneratorInfo } from "../store/chain-record.ts";
import { hashJson, type CachedResponse } from "../store/run-dir.ts";
import type { JsonlAppender } from "../store/jsonl.ts";
import { buildLadderRequest, buildStepwiseRequest, parseLadderItems } from "../steering/prompt.ts";
import type { PromptTemplate } from "../steering/prompt-templates.ts";
import { cleanStep, type CleanFailure } from "./clean.ts";
import { driftFailure, subsample, type DriftFailure } from "./drift.ts";
import { DEFAULT_RETRY_POLICY, withRetries, type RetryPolicy } from "./retry.ts";
import type { Seed } from "./seeds.ts";

export type Steering = "stepwise" | "ladder" | "cfg";

/** Builds the two prompts of one CFG step (src/steering/cfg.ts provides the real one). */
export type CfgStepBuilder = (input: {
  anchor: string;
  steps: readonly string[];
  guidance: number;
  maxOutputTokens: number;
  temperature?: number | undefined;
  seed?: number | undefined;
  /** Negative prompt = "repeat the sentence" instead of the older sentence's rewrite (a retry after a copy). */
  antiCopy?: boolean | undefined;
}) => GuidedGenerateRequest;

export interface GeneratorOptions {
  model: LanguageModel;
  steering: Steering;
  steps: number;
  /** Prompt template of the steering (for cfg, the template whose name/version goes into records). */
  template: PromptTemplate;
  cfgBuilder?: CfgStepBuilder | undefined;
  guidance?: number | undefined;
  /** Recorded in generator info: CFG scored only the positive prompt's top-K tokens (an approximation). */
  cfgTopK?: number | undefined;
  maxOutputTokens: number;
  temperature?: number | undefined;
  seed?: number | undefined;
  /** Generate steps × oversample steps and keep every oversample-th (the paper's long chains); default 1. */
  oversample?: number | undefined;
  /** Retries of a bad step, each with changed settings (recorded in the chain's `retries`); default 2. */
  stepRetries?: number | undefined;
  /** Apply the drift rules of drift.ts (length band, anti-append, anti-return) to each step; default true. */
  driftRules?: boolean | undefined;
  concurrency: number;
  /** undefined only when no cap is set and the price is unknown: spend then counts tokens only. */
  price: ModelPrice | undefined;
  ledger: Ledger;
  chainsOut: JsonlAppender;
  responsesOut: JsonlAppender;
  /** Responses paid for by an earlier process (resume). */
  cachedResponses: Map<string, CachedResponse>;
  retryPolicy?: RetryPolicy;
  timeoutMs?: number | undefined;
  /** First abort: finish calls in flight, start none. */
  drainSignal?: AbortSignal | undefined;
  /** Abort calls in flight too. */
  abortSignal?: AbortSignal | undefined;
  onChainDone?: (record: ChainRecord) => void;
  onChainFailed?: (info: { id: string; line: number; error: unknown }) => void;
  onRetry?: (info: { chainId: string; attempt: number; delayMs: number; error: unknown }) => void;
  /**
   * Circuit breaker: after this many consecutive connection failures (refused, reset, timed out;
   * retries included) the run starts no new call and stops with stoppedBy "unreachable". Default 5.
   */
  maxConnectionFailures?: number | undefined;
  /** Structured-output mode to start from (resume passes the mode the run had settled on). Default json_schema. */
  structuredMode?: StructuredOutputMode | undefined;
  now?: () => Date;
}

/** How ladder calls asked for JSON, and every step down a server forced (recorded in run.json). */
export interface StructuredOutputRecord {
  mode: StructuredOutputMode;
  changes: { from: StructuredOutputMode; to: StructuredOutputMode; reason: string }[];
}

export interface GenerateOutcome {
  /** ids of chains written in this process */
  written: string[];
  stoppedBy: "done" | "budget" | "interrupted" | "unreachable";
  budgetError: BudgetExceededError | undefined;
  /** Set when the circuit breaker stopped the run: how many consecutive failures, and the last one. */
  unreachable: { consecutiveFailures: number; lastError: string } | undefined;
  /** Ladder steering only: the structured-output mode the run ended with, and why it changed. */
  structuredOutput: StructuredOutputRecord | undefined;
  cachedResponsesReused: number;
  warnings: CallWarning[];
  /** Chains that failed with a provider error that concerns only them; not written, so --resume retries them. */
  failed: { id: string; line: number; error: string }[];
}

/**
 * Errors that will fail every chain alike (bad key, no access, unknown model): stop the run.
 * Anything else a provider says fails only the chain at hand.
 */
export function isFatalProviderError(e: unknown): boolean {
  const last = e instanceof RetryError ? e.lastError : e;
  return last instanceof ProviderCallError && (last.status === 401 || last.status === 403 || last.status === 404);
}

class StopSignal extends RankchainError {
  override readonly name = "StopSignal";
}

/**
 * A server's answer that rejects the requested response_format (HTTP 4xx/5xx whose message or body
 * names response_format / json_schema / json_object, e.g. llama-cpp-python's 500 "Input should be
 * 'text' or 'json_object'"). Retrying it unchanged would fail the same way; the generator steps
 * down to the next structured-output mode instead.
 */
export function isResponseFormatRejection(e: unknown): boolean {
  if (!(e instanceof ProviderCallError) || e.status === undefined || e.status < 400) return false;
  return /response_format|json_schema|json_object|guided_json/i.test(`${e.message}\n${e.bodyExcerpt ?? ""}`);
}

class StructuredOutputRejected extends RankchainError {
  override readonly name = "StructuredOutputRejected";
}

/** The default of GeneratorOptions.maxConnectionFailures. */
export const DEFAULT_MAX_CONNECTION_FAILURES = 5;

/**
 * A failure to reach the provider at all: a ProviderCallError without an HTTP status that is
 * retryable — connection refused or reset, DNS, a timeout. (Aborts are not retryable; HTTP errors
 * and malformed bodies carry a status.)
 */
export function isConnectionFailure(e: unknown): boolean {
  // a farm member's failure while others serve is routed elsewhere, not a sign the provider is down
  return e instanceof ProviderCallError && e.status === undefined && e.isRetryable && !(e instanceof FarmMemberDownError);
}

/** A message shortened at a word boundary (never mid-path), with an ellipsis when shortened. */
export function shortenMessage(message: string, max = 500): string {
  const oneLine = message.replace(/\s*\n\s*/g, " ");
  if (oneLine.length <= max) return oneLine;
  const cut = oneLine.lastIndexOf(" ", max);
  return (cut > max / 2 ? oneLine.slice(0, cut) : oneLine.slice(0, max)) + " …";
}

/**
 * The chain generator. It owns failure: concurrency, retries (each attempt reserves in the ledger
 * again), the ledger, appends and response caching. Adapters make one call and catch nothing.
 */
export class ChainGenerator {
  private stopping: "budget" | "interrupted" | "unreachable" | undefined;
  private budgetError: BudgetExceededError | undefined;
  private consecutiveConnectionFailures = 0;
  private unreachable: GenerateOutcome["unreachable"];
  /** Aborted when retries must stop waiting: the run's abort signal, or the circuit breaker. */
  private readonly halt = new AbortController();
  /** Feature detection, once per run: the strongest structured-output mode the server accepts. */
  private structuredMode: StructuredOutputMode;
  private readonly structuredChanges: StructuredOutputRecord["changes"] = [];
  private reused = 0;
  private readonly warnings = new Map<string, CallWarning>();
  private readonly retryPolicy: RetryPolicy;

  constructor(private readonly o: GeneratorOptions) {
    if (o.steering === "cfg" && !o.model.capabilities.guidance) {
      throw new RankchainError(`--steering cfg needs next-token log-probabilities; provider ${o.model.provider} cannot give them`);
    }
    if (o.steering === "cfg" && !o.cfgBuilder) throw new RankchainError("cfg steering needs a step builder");
    this.retryPolicy = o.retryPolicy ?? DEFAULT_RETRY_POLICY;
    this.structuredMode = o.structuredMode ?? "json_schema";
    o.drainSignal?.addEventListener("abort", () => (this.stopping ??= "interrupted"), { once: true });
    o.abortSignal?.addEventListener("abort", () => this.halt.abort(o.abortSignal?.reason), { once: true });
  }

  /** Counts a connection failure (or resets the count after an answer); trips the breaker at the limit. */
  private noteConnection(error: unknown): void {
    if (error === undefined) {
      this.consecutiveConnectionFailures = 0;
      return;
    }
    if (!isConnectionFailure(error)) return;
    this.consecutiveConnectionFailures++;
    const limit = this.o.maxConnectionFailures ?? DEFAULT_MAX_CONNECTION_FAILURES;
    if (this.consecutiveConnectionFailures >= limit && !this.unreachable) {
      this.unreachable = {
        consecutiveFailures: this.consecutiveConnectionFailures,
        lastError: shortenMessage(error instanceof Error ? error.message : String(error)),
      };
      this.stopping ??= "unreachable";
      // wake retries that are waiting out a backoff: no new call will be made
      this.halt.abort(new StopSignal("provider unreachable"));
    }
  }

  generatorInfo(): GeneratorInfo {
    const warnings = [...this.warnings.values()];
    return {
      provider: this.o.model.provider,
      model: this.o.model.modelId,
      steering: this.o.steering,
      ...(this.o.steering === "cfg" ? { guidance: this.o.guidance ?? 1.5 } : {}),
      ...(this.o.steering === "cfg" && this.o.cfgTopK !== undefined ? { cfg_top_k: this.o.cfgTopK } : {}),
      prompt: this.o.template.name,
      prompt_version: this.o.template.version,
      ...((this.o.oversample ?? 1) > 1 ? { oversample: this.o.oversample } : {}),
      ...(this.o.driftRules === false ? { drift_rules: false } : {}),
      ...(warnings.length ? { warnings } : {}),
    };
  }

  async run(seeds: readonly Seed[]): Promise<GenerateOutcome> {
    const written: string[] = [];
    const failed: GenerateOutcome["failed"] = [];
    let next = 0;
    const worker = async (): Promise<void> => {
      while (!this.stopping) {
        const seed = seeds[next++];
        if (!seed) return;
        try {
          const record = await this.chain(seed);
          await this.o.chainsOut.append(record);
          written.push(record.id);
          this.o.onChainDone?.(record);
        } catch (e) {
          if (e instanceof StopSignal) return;
          // the breaker tripped: this chain is not done, not failed; --resume does it
          if (this.stopping === "unreachable" && (isConnectionFailure(e) || (e instanceof RetryError && isConnectionFailure(e.lastError)))) return;
          if (e instanceof BudgetExceededError) {
            this.budgetError ??= e;
            this.stopping ??= "budget";
            return;
          }
          if ((e instanceof ProviderCallError || e instanceof RetryError) && !isFatalProviderError(e) && !this.o.abortSignal?.aborted) {
            failed.push({ id: seed.id, line: seed.line, error: shortenMessage(e.message) });
            this.o.onChainFailed?.({ id: seed.id, line: seed.line, error: e });
            continue;
          }
          this.stopping ??= "interrupted";
          throw e;
        }
      }
    };
    const n = Math.max(1, Math.min(this.o.concurrency, seeds.length));
    const results = await Promise.allSettled(Array.from({ length: n }, worker));
    const failure = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failure) throw failure.reason;
    return {
      written,
      stoppedBy: this.stopping ?? "done",
      budgetError: this.budgetError,
      unreachable: this.unreachable,
      structuredOutput: this.o.steering === "ladder" ? { mode: this.structuredMode, changes: [...this.structuredChanges] } : undefined,
      cachedResponsesReused: this.reused,
      warnings: [...this.warnings.values()],
      failed,
    };
  }

  private async chain(seed: Seed): Promise<ChainRecord> {
    const ctx = { chainId: seed.id, callIndex: 0 };
    let steps: string[] = [];
    let truncated: { at_step: number; reason: string; long_at_step?: number } | undefined;
    const cleaningNotes: string[] = [];
    const retries: StepRetry[] = [];
    const every = this.o.oversample ?? 1;
    const total = this.o.steps * every;
    const drift = (text: string, so_far: readonly string[]): DriftFailure | undefined =>
      this.o.driftRules === false ? undefined : driftFailure(text, seed.text, so_far, { checkReturn: this.o.steering !== "cfg" });

    if (this.o.steering === "ladder") {
      const req = buildLadderRequest(this.o.template, {
        anchor: seed.text,
        totalSteps: total,
        maxOutputTokens: this.o.maxOutputTokens * every,
        temperature: this.o.temperature,
        seed: this.o.seed,
      });
      let parsed: string[] | undefined;
      let res = await this.call(ctx, { kind: "plain", req });
      parsed = parseLadderItems(res.text, total);
      if (!parsed && res.structuredMode && res.structuredMode !== "prompt" && res.finishReason.unified !== "length" && !/^\s*[{[]/.test(res.text)) {
        // free text in answer to response_format: the server ignores the field (so any mode of it);
        // spell the schema out in the prompt instead
        this.stepDownStructured(res.structuredMode, "the server answered free text to response_format (ignored it)", "prompt");
      }
      if (!parsed || parsed.length < total) {
        // retry once with changed parameters: more room if it was cut off, else some temperature
        const lengthStop = res.finishReason.unified === "length";
        const variant = this.retryVariant(req, lengthStop);
        retries.push({ step: (parsed?.length ?? 0) + 1, reason: parsed ? "too-few-steps" : "unparsable", changed: changedSettings(req, variant) });
        res = await this.call(ctx, { kind: "plain", req: variant });
        const again = parseLadderItems(res.text, total);
        if (again && again.length >= (parsed?.length ?? 0)) parsed = again;
      }
      if (parsed) {
        // a first item that repeats the anchor is dropped, not a reason to discard the chain
        const first = cleanStep(parsed[0]!, [seed.text]);
        if (!first.ok && first.reason === "duplicate" && parsed.length > 1) {
          parsed = parsed.slice(1);
          cleaningNotes.push("1:dropped a copy of the anchor");
        }
        parsed = parsed.slice(0, total);
      }
      if (!parsed) {
        truncated = { at_step: 1, reason: res.finishReason.unified === "length" ? "unparsable-truncated" : "unparsable" };
      } else {
        for (const [i, raw] of parsed.entries()) {
          const c = cleanStep(raw, [seed.text, ...steps]);
          const bad = c.ok ? drift(c.text, steps) : c.reason;
          if (!c.ok || bad) {
            truncated = { at_step: i + 1, reason: bad! };
            break;
          }
          if (c.fixes.length) cleaningNotes.push(`${i + 1}:${c.fixes.join("+")}`);
          steps.push(c.text);
        }
        if (!truncated && steps.length < total) truncated = { at_step: steps.length + 1, reason: "too-few-steps" };
      }
    } else {
      const attempts = 1 + Math.max(0, this.o.stepRetries ?? 2);
      for (let i = 0; i < total; i++) {
        const first = this.stepRequest(seed.text, steps, false);
        let req = first;
        let failure: CleanFailure | DriftFailure | undefined;
        let accepted: { text: string; fixes: string[] } | undefined;
        for (let attempt = 0; attempt < attempts; attempt++) {
          if (attempt > 0) {
            req = this.retryStep(seed.text, steps, first, failure!, attempt);
            retries.push({ step: i + 1, reason: failure!, changed: changedSettings(first.req, req.req) });
          }
          const res = await this.call(ctx, req);
          const c = cleanStep(res.text, [seed.text, ...steps], { finishedByLength: res.finishReason.unified === "length" });
          failure = c.ok ? drift(c.text, steps) : c.reason;
          if (c.ok && !failure) {
            accepted = c;
            break;
          }
        }
        if (!accepted) {
          truncated = { at_step: i + 1, reason: failure! };
          break;
        }
        if (accepted.fixes.length) cleaningNotes.push(`${i + 1}:${accepted.fixes.join("+")}`);
        steps.push(accepted.text);
      }
    }
    let longChain: { steps: string[]; kept: number[] } | undefined;
    if (every > 1) {
      const sub = subsample(steps, every);
      longChain = { steps, kept: sub.indexes };
      if (truncated) truncated = { at_step: sub.steps.length + 1, reason: truncated.reason, long_at_step: truncated.at_step };
      steps = sub.steps;
    }
    const used = this.o.ledger.chainUsage(seed.id);
    return {
      id: seed.id,
      anchor: seed.text,
      steps,
      generator: this.generatorInfo(),
      usage: { input_tokens: used.input, output_tokens: used.output, usd: round(used.usd) },
      ...(truncated ? { truncated } : {}),
      ...(retries.length ? { retries } : {}),
      ...(longChain ? { long_chain: longChain } : {}),
      ...(cleaningNotes.length ? { cleaning: cleaningNotes } : {}),
      seed_line: seed.line,
      created_at: (this.o.now ?? (() => new Date()))().toISOString(),
    };
  }

  private stepRequest(anchor: string, steps: readonly string[], antiCopy: boolean, guidance = this.o.guidance ?? 1.5): PlannedCall {
    if (this.o.steering === "cfg") {
      return {
        kind: "guided",
        req: this.o.cfgBuilder!({
          anchor,
          steps,
          guidance,
          maxOutputTokens: this.o.maxOutputTokens,
          temperature: this.o.temperature,
          seed: this.o.seed,
          ...(antiCopy ? { antiCopy: true } : {}),
        }),
      };
    }
    const sampled = (this.o.temperature ?? 0) > 0 && this.o.seed !== undefined;
    return {
      kind: "plain",
      req: buildStepwiseRequest(this.o.template, {
        anchor,
        stepsSoFar: steps,
        totalSteps: this.o.steps * (this.o.oversample ?? 1),
        maxOutputTokens: this.o.maxOutputTokens,
        temperature: this.o.temperature,
        // each step draws with its own seed, so a step that repeats is not bound to repeat the draw
        seed: sampled ? stepSeed(this.o.seed!, steps.length) : this.o.seed,
      }),
    };
  }

  /**
   * A retry after a bad step, never with unchanged settings. After a `length` stop: twice the
   * room. Otherwise attempt 1 samples (temperature ≥ 0.7, a new seed) and, for CFG after a
   * copy, guides away from a "repeat the sentence" prompt; attempt 2 samples hotter
   * (temperature ≥ 1.0) with stronger guidance. What changed goes into the record's `retries`.
   */
  private retryStep(anchor: string, steps: readonly string[], planned: PlannedCall, reason: CleanFailure | DriftFailure, attempt: number): PlannedCall {
    const lengthStop = reason === "truncated";
    const temperature = attempt >= 2 ? 1.0 : 0.7;
    if (planned.kind === "guided") {
      const r = planned.req;
      if (lengthStop) return { kind: "guided", req: { ...r, maxOutputTokens: r.maxOutputTokens * 2 ** attempt } };
      const guidance = (this.o.guidance ?? 1.5) + (attempt >= 2 ? 1 : 0);
      const rebuilt = this.stepRequest(anchor, steps, reason === "duplicate", Math.max(guidance, 1.5));
      const g = rebuilt.req as GuidedGenerateRequest;
      return { kind: "guided", req: { ...g, temperature: Math.max(r.temperature ?? 0, temperature), seed: retrySeed(r.seed ?? this.o.seed ?? 0, attempt) } };
    }
    const req = planned.req;
    return lengthStop
      ? { kind: "plain", req: { ...req, maxOutputTokens: req.maxOutputTokens * 2 ** attempt } }
      : { kind: "plain", req: { ...req, temperature: Math.max(req.temperature ?? 0, temperature), seed: retrySeed(req.seed ?? this.o.seed ?? 0, attempt) } };
  }

  private retryVariant(req: GenerateRequest, lengthStop: boolean): GenerateRequest {
    return lengthStop
      ? { ...req, maxOutputTokens: req.maxOutputTokens * 2 }
      : { ...req, temperature: Math.max(req.temperature ?? 0, 0.7), seed: req.seed === undefined ? undefined : retrySeed(req.seed, 1) };
  }

  /**
   * One paid call: served from responses.jsonl when an earlier process already paid for it;
   * otherwise reserve the worst case, call, replace the reservation by the reported usage,
   * append the response. Retries (classified retryable only) reserve again each attempt.
   */
  /** Steps the structured-output mode down once (for every chain of the run) and records why. */
  private stepDownStructured(from: StructuredOutputMode, reason: string, to?: StructuredOutputMode): void {
    if (this.structuredMode !== from) return; // another chain already stepped down
    const next = to ?? STRUCTURED_OUTPUT_MODES[STRUCTURED_OUTPUT_MODES.indexOf(from) + 1];
    if (!next) return;
    this.structuredMode = next;
    this.structuredChanges.push({ from, to: next, reason: shortenMessage(reason, 300) });
  }

  /**
   * One logical call. A ladder request is sent in the run's current structured-output mode; a
   * server that rejects the mode makes the run step down (json_schema → json_object → prompt) and
   * the same call is made again in the next mode, under the same call index (so --resume finds it).
   */
  private async call(ctx: { chainId: string; callIndex: number }, planned: PlannedCall): Promise<GenerateResult & { structuredMode?: StructuredOutputMode }> {
    const callIndex = ctx.callIndex++;
    for (;;) {
      const rf = planned.kind === "plain" ? planned.req.responseFormat : undefined;
      const mode = this.structuredMode;
      const effective = inMode(planned, mode);
      if (rf && mode !== "json_schema") {
        // A call paid for before the run stepped down (an earlier process, or a chain in flight
        // when another chain's answer made the run step down) is stored under its own mode's key:
        // use that answer rather than paying for the call again in the new mode.
        for (const earlier of STRUCTURED_OUTPUT_MODES.slice(0, STRUCTURED_OUTPUT_MODES.indexOf(mode))) {
          const hit = this.fromCache(this.keyOf(ctx.chainId, callIndex, inMode(planned, earlier)));
          if (hit) return { ...hit, structuredMode: earlier };
        }
      }
      try {
        const result = await this.callOnce(ctx.chainId, callIndex, effective);
        return rf ? { ...result, structuredMode: mode } : result;
      } catch (e) {
        if (e instanceof StructuredOutputRejected && rf) {
          this.stepDownStructured(mode, e.message);
          if (this.structuredMode !== mode) continue;
        }
        throw e instanceof StructuredOutputRejected ? e.cause : e;
      }
    }
  }

  /** The key a call's answer is stored under in responses.jsonl: chain, call index and the request as sent. */
  private keyOf(chainId: string, callIndex: number, planned: PlannedCall): string {
    const fingerprint =
      planned.kind === "guided"
        ? { g: planned.req.guidance, p: planned.req.positive, n: planned.req.negative, m: planned.req.maxOutputTokens, t: planned.req.temperature, s: planned.req.seed }
        : { m: planned.req.messages, x: planned.req.maxOutputTokens, t: planned.req.temperature, s: planned.req.seed, f: planned.req.responseFormat };
    return hashJson({ c: chainId, i: callIndex, r: fingerprint }).slice(0, 32);
  }

  /** An answer an earlier process (or attempt) already paid for, counted as reused. */
  private fromCache(key: string): GenerateResult | undefined {
    const cached = this.o.cachedResponses.get(key);
    if (!cached) return undefined;
    this.reused++;
    return {
      text: cached.text,
      finishReason: { unified: cached.finish_reason.unified as GenerateResult["finishReason"]["unified"], raw: cached.finish_reason.raw ?? undefined },
      usage: { inputTokens: cached.input_tokens, outputTokens: cached.output_tokens, cachedInputTokens: undefined },
      warnings: [],
      requestId: cached.request_id,
    };
  }

  private async callOnce(chainId: string, callIndex: number, planned: PlannedCall): Promise<GenerateResult> {
    const ctx = { chainId };
    const key = this.keyOf(chainId, callIndex, planned);
    const cached = this.fromCache(key);
    if (cached) return cached;
    const messages = planned.kind === "guided" ? [...planned.req.positive, ...planned.req.negative] : planned.req.messages;
    const maxOut = planned.req.maxOutputTokens;
    return withRetries(
      async () => {
        if (this.stopping) throw new StopSignal("stopping");
        const counted = await this.o.model.countInputTokens(messages, {
          responseFormat: planned.kind === "plain" ? planned.req.responseFormat : undefined,
        });
        // Waits for calls in flight to settle when the worst case does not fit yet; throws
        // BudgetExceededError only when nothing is in flight and it still does not fit.
        // A call an earlier process submitted in a batch that is still pending keeps its reservation.
        const adopted = this.o.ledger.adopt?.(key, this.o.price);
        const reservation =
          adopted ??
          (await this.o.ledger.reserve({
            stage: "generate",
            model: `${this.o.model.provider}/${this.o.model.modelId}`,
            chainId: ctx.chainId,
            inputTokens: counted.tokens,
            maxOutputTokens: maxOut,
            count: countQuality(counted),
            price: this.o.price,
            signal: this.o.abortSignal,
            key,
          }));
        if (this.stopping) {
          // an adopted reservation belongs to a batch still at the provider: it stays open
          if (!adopted) await this.o.ledger.release(reservation, "run stopping; not sent");
          throw new StopSignal("stopping");
        }
        let result: GenerateResult;
        // One signal per call, linked to the run's: SDKs add an abort listener to the signal they
        // get, so handing every call the run-wide signal piles up listeners (MaxListenersExceeded).
        const callAbort = new AbortController();
        const run = this.o.abortSignal;
        const forward = () => callAbort.abort(run?.reason);
        if (run?.aborted) forward();
        else run?.addEventListener("abort", forward, { once: true });
        try {
          result =
            planned.kind === "guided"
              ? await this.o.model.generateGuided!({ ...planned.req, abortSignal: callAbort.signal, timeoutMs: this.o.timeoutMs })
              : await this.o.model.generate({ ...planned.req, abortSignal: callAbort.signal, timeoutMs: this.o.timeoutMs, callKey: key });
          this.noteConnection(undefined);
        } catch (error) {
          // Still pending at the provider (an aborted wait on a batch): the reservation stays open
          // and --resume collects the result.
          if (error instanceof PendingAtProviderError) throw error;
          this.noteConnection(error);
          // Any 2xx answer is charged (worst case when its usage cannot be read); an HTTP error answer
          // and an attempt that never reached the provider are released; a timeout, reset or abort
          // after sending is charged at worst case (src/budget/billing.ts).
          await settleFailure(this.o.ledger, reservation, error);
          const rfMode = planned.kind === "plain" ? (planned.req.responseFormat?.mode ?? "json_schema") : undefined;
          if (planned.kind === "plain" && planned.req.responseFormat && rfMode !== "prompt" && isResponseFormatRejection(error)) {
            // not retried blindly: the caller steps down to the next mode
            throw new StructuredOutputRejected(`${rfMode} rejected: ${(error as Error).message}`, { cause: error });
          }
          throw error;
        } finally {
          run?.removeEventListener("abort", forward);
        }
        const input = result.usage.inputTokens ?? reservation.inputTokens;
        const output = result.usage.outputTokens ?? reservation.maxOutputTokens;
        const estimated = result.usage.inputTokens === undefined || result.usage.outputTokens === undefined;
        for (const w of result.warnings) this.warnings.set(JSON.stringify(w), w);
        // The response is saved before the charge: a kill between the two leaves a saved response
        // and an open reservation, which resume charges at its worst case (never a lost response).
        await this.o.responsesOut.append({
          key,
          chain_id: ctx.chainId,
          call: callIndex,
          text: result.text,
          finish_reason: { unified: result.finishReason.unified, raw: result.finishReason.raw ?? null },
          input_tokens: input,
          output_tokens: output,
          ...(result.requestId ? { request_id: result.requestId } : {}),
          ts: (this.o.now ?? (() => new Date()))().toISOString(),
        } satisfies CachedResponse);
        await this.o.ledger.charge(reservation, {
          inputTokens: input,
          outputTokens: output,
          cachedInputTokens: result.usage.cachedInputTokens,
          requestId: result.requestId,
          ...(estimated ? { estimated: true, note: "provider did not report usage; charged the reserved worst case" } : {}),
        });
        return result;
      },
      this.retryPolicy,
      {
        signal: this.halt.signal,
        onRetry: (info) => this.o.onRetry?.({ chainId: ctx.chainId, ...info }),
      },
    );
  }
}

type PlannedCall = { kind: "plain"; req: GenerateRequest } | { kind: "guided"; req: GuidedGenerateRequest };

/** A retry after a bad sample must not draw the same sample again: move the seed (deterministically). */
function retrySeed(seed: number, attempt: number): number {
  return (seed + 7919 * attempt) % 2 ** 31;
}

/** The sampling seed of step `index` (0-based) of a chain: deterministic, different per step. */
export function stepSeed(seed: number, index: number): number {
  return (Math.imul(seed | 0, 0x9e3779b1) + Math.imul(index + 1, 0x85ebca6b)) >>> 0;
}

/** One retry of a chain step, recorded in the chain record's `retries`. */
export interface StepRetry {
  /** 1-based step number in the generated (long) chain. */
  step: number;
  /** Why the attempt before was not kept (a cleaning failure or a drift rule). */
  reason: string;
  /** The settings that differ from the step's first request. */
  changed: Record<string, unknown>;
}

function changedSettings(before: GenerateRequest | GuidedGenerateRequest, after: GenerateRequest | GuidedGenerateRequest): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (before.temperature !== after.temperature) out.temperature = after.temperature ?? 0;
  if (before.seed !== after.seed && after.seed !== undefined) out.seed = after.seed;
  if (before.maxOutputTokens !== after.maxOutputTokens) out.max_output_tokens = after.maxOutputTokens;
  if ("guidance" in before && "guidance" in after) {
    if (before.guidance !== after.guidance) out.guidance = after.guidance;
    // the only way a retry changes the negative prompt: guide away from repeating the sentence
    if (JSON.stringify(before.negative) !== JSON.stringify(after.negative)) out.negative_prompt = "repeat-the-sentence";
  }
  return out;
}

function round(usd: number): number {
  return Math.round(usd * 1e9) / 1e9;
}

/** The call as sent in a structured-output mode; json_schema is the request as it always was (same cache key as runs made before modes existed). */
function inMode(planned: PlannedCall, mode: StructuredOutputMode): PlannedCall {
  const rf = planned.kind === "plain" ? planned.req.responseFormat : undefined;
  return rf && planned.kind === "plain" && mode !== "json_schema" ? { kind: "plain", req: { ...planned.req, responseFormat: { ...rf, mode } } } : planned;
}
