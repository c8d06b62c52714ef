import { BudgetExceededError, ProviderCallError, RankchainError, RetryError } from "../errors.ts";
import type { BudgetLedger } from "../budget/ledger.ts";
import { costUsd, type ModelPrice } from "../config/prices.ts";
import type {
  CallWarning,
  GenerateRequest,
  GenerateResult,
  GuidedGenerateRequest,
  LanguageModel,
} from "../llm/types.ts";
import type { ChainRecord, GeneratorInfo } from "../store/chain-record.ts";
import { hashJson, type CachedResponse } from "../store/run-dir.ts";
import type { JsonlAppender } from "../store/jsonl.ts";
import { buildLadderRequest, buildStepwiseRequest, parseLadderResponse } from "../steering/prompt.ts";
import type { PromptTemplate } from "../steering/prompt-templates.ts";
import { cleanStep, type CleanFailure } from "./clean.ts";
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
  concurrency: number;
  /** undefined only when no cap is set and the price is unknown: spend then counts tokens only. */
  price: ModelPrice | undefined;
  ledger: BudgetLedger;
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
  now?: () => Date;
}

export interface GenerateOutcome {
  /** ids of chains written in this process */
  written: string[];
  stoppedBy: "done" | "budget" | "interrupted";
  budgetError: BudgetExceededError | undefined;
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
 * The chain generator. It owns failure: concurrency, retries (each attempt reserves in the ledger
 * again), the ledger, appends and response caching. Adapters make one call and catch nothing.
 */
export class ChainGenerator {
  private stopping: "budget" | "interrupted" | undefined;
  private budgetError: BudgetExceededError | undefined;
  private reused = 0;
  private readonly warnings = new Map<string, CallWarning>();
  private readonly retryPolicy: RetryPolicy;

  constructor(private readonly o: GeneratorOptions) {
    if (o.steering === "cfg" && !o.model.capabilities.guidance) {
      throw new RankchainError(`--steering cfg needs next-token log-probabilities; provider ${o.model.provider} cannot give them`);
    }
    if (o.steering === "cfg" && !o.cfgBuilder) throw new RankchainError("cfg steering needs a step builder");
    this.retryPolicy = o.retryPolicy ?? DEFAULT_RETRY_POLICY;
    o.drainSignal?.addEventListener("abort", () => (this.stopping ??= "interrupted"), { once: true });
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
          if (e instanceof BudgetExceededError) {
            this.budgetError ??= e;
            this.stopping ??= "budget";
            return;
          }
          if ((e instanceof ProviderCallError || e instanceof RetryError) && !isFatalProviderError(e) && !this.o.abortSignal?.aborted) {
            failed.push({ id: seed.id, line: seed.line, error: e.message.slice(0, 300) });
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
      cachedResponsesReused: this.reused,
      warnings: [...this.warnings.values()],
      failed,
    };
  }

  private async chain(seed: Seed): Promise<ChainRecord> {
    const ctx = { chainId: seed.id, callIndex: 0 };
    const steps: string[] = [];
    let truncated: { at_step: number; reason: string } | undefined;
    const cleaningNotes: string[] = [];

    if (this.o.steering === "ladder") {
      const req = buildLadderRequest(this.o.template, {
        anchor: seed.text,
        totalSteps: this.o.steps,
        maxOutputTokens: this.o.maxOutputTokens,
        temperature: this.o.temperature,
        seed: this.o.seed,
      });
      let parsed: string[] | undefined;
      let res = await this.call(ctx, { kind: "plain", req });
      parsed = parseLadderResponse(res.text, this.o.steps);
      if (!parsed || parsed.length < this.o.steps) {
        // retry once with changed parameters: more room if it was cut off, else some temperature
        res = await this.call(ctx, { kind: "plain", req: this.retryVariant(req, res.finishReason.unified === "length") });
        const again = parseLadderResponse(res.text, this.o.steps);
        if (again && again.length >= (parsed?.length ?? 0)) parsed = again;
      }
      if (!parsed) {
        truncated = { at_step: 1, reason: res.finishReason.unified === "length" ? "unparsable-truncated" : "unparsable" };
      } else {
        for (const [i, raw] of parsed.entries()) {
          const c = cleanStep(raw, [seed.text, ...steps]);
          if (!c.ok) {
            truncated = { at_step: i + 1, reason: c.reason };
            break;
          }
          if (c.fixes.length) cleaningNotes.push(`${i + 1}:${c.fixes.join("+")}`);
          steps.push(c.text);
        }
        if (!truncated && steps.length < this.o.steps) truncated = { at_step: steps.length + 1, reason: "too-few-steps" };
      }
    } else {
      for (let i = 0; i < this.o.steps; i++) {
        const req = this.stepRequest(seed.text, steps);
        let res = await this.call(ctx, req);
        let c = cleanStep(res.text, [seed.text, ...steps], { finishedByLength: res.finishReason.unified === "length" });
        if (!c.ok) {
          res = await this.call(ctx, this.retryStep(req, c.reason));
          c = cleanStep(res.text, [seed.text, ...steps], { finishedByLength: res.finishReason.unified === "length" });
        }
        if (!c.ok) {
          truncated = { at_step: i + 1, reason: c.reason };
          break;
        }
        if (c.fixes.length) cleaningNotes.push(`${i + 1}:${c.fixes.join("+")}`);
        steps.push(c.text);
      }
    }
    const used = this.o.ledger.chainUsage(seed.id);
    return {
      id: seed.id,
      anchor: seed.text,
      steps,
      generator: this.generatorInfo(),
      usage: { input_tokens: used.input, output_tokens: used.output, usd: round(used.usd) },
      ...(truncated ? { truncated } : {}),
      ...(cleaningNotes.length ? { cleaning: cleaningNotes } : {}),
      seed_line: seed.line,
      created_at: (this.o.now ?? (() => new Date()))().toISOString(),
    };
  }

  private stepRequest(anchor: string, steps: readonly string[]): PlannedCall {
    if (this.o.steering === "cfg") {
      return {
        kind: "guided",
        req: this.o.cfgBuilder!({
          anchor,
          steps,
          guidance: this.o.guidance ?? 1.5,
          maxOutputTokens: this.o.maxOutputTokens,
          temperature: this.o.temperature,
          seed: this.o.seed,
        }),
      };
    }
    return {
      kind: "plain",
      req: buildStepwiseRequest(this.o.template, {
        anchor,
        stepsSoFar: steps,
        totalSteps: this.o.steps,
        maxOutputTokens: this.o.maxOutputTokens,
        temperature: this.o.temperature,
        seed: this.o.seed,
      }),
    };
  }

  /** The one retry after a bad step: never with unchanged parameters after a `length` stop. */
  private retryStep(planned: PlannedCall, reason: CleanFailure): PlannedCall {
    const lengthStop = reason === "truncated";
    if (planned.kind === "guided") {
      const r = planned.req;
      return {
        kind: "guided",
        req: {
          ...r,
          maxOutputTokens: lengthStop ? r.maxOutputTokens * 2 : r.maxOutputTokens,
          temperature: lengthStop ? r.temperature : Math.max(r.temperature ?? 0, 0.7),
          seed: lengthStop ? r.seed : retrySeed(r.seed),
        },
      };
    }
    return { kind: "plain", req: this.retryVariant(planned.req, lengthStop) };
  }

  private retryVariant(req: GenerateRequest, lengthStop: boolean): GenerateRequest {
    return lengthStop
      ? { ...req, maxOutputTokens: req.maxOutputTokens * 2 }
      : { ...req, temperature: Math.max(req.temperature ?? 0, 0.7), seed: retrySeed(req.seed) };
  }

  /**
   * One paid call: served from responses.jsonl when an earlier process already paid for it;
   * otherwise reserve the worst case, call, replace the reservation by the reported usage,
   * append the response. Retries (classified retryable only) reserve again each attempt.
   */
  private async call(ctx: { chainId: string; callIndex: number }, planned: PlannedCall): Promise<GenerateResult> {
    const callIndex = ctx.callIndex++;
    const fingerprint =
      planned.kind === "guided"
        ? { g: planned.req.guidance, p: planned.req.positive, n: planned.req.negative, m: planned.req.maxOutputTokens, t: planned.req.temperature, s: planned.req.seed }
        : { m: planned.req.messages, x: planned.req.maxOutputTokens, t: planned.req.temperature, s: planned.req.seed, f: planned.req.responseFormat };
    const key = hashJson({ c: ctx.chainId, i: callIndex, r: fingerprint }).slice(0, 32);
    const cached = this.o.cachedResponses.get(key);
    if (cached) {
      this.reused++;
      return {
        text: cached.text,
        finishReason: { unified: cached.finish_reason.unified as GenerateResult["finishReason"]["unified"], raw: cached.finish_reason.raw ?? undefined },
        usage: { inputTokens: cached.input_tokens, outputTokens: cached.output_tokens, cachedInputTokens: undefined },
        warnings: [],
        requestId: cached.request_id,
      };
    }
    const messages = planned.kind === "guided" ? [...planned.req.positive, ...planned.req.negative] : planned.req.messages;
    const maxOut = planned.req.maxOutputTokens;
    return withRetries(
      async () => {
        if (this.stopping) throw new StopSignal("stopping");
        const counted = await this.o.model.countInputTokens(messages, {
          responseFormat: planned.kind === "plain" ? planned.req.responseFormat : undefined,
        });
        const worst = this.o.price ? costUsd(this.o.price, counted.tokens, maxOut) : 0;
        const reservation = await this.o.ledger.reserve({
          usd: worst,
          chainId: ctx.chainId,
          inputTokens: counted.tokens,
          maxOutputTokens: maxOut,
          model: `${this.o.model.provider}/${this.o.model.modelId}`,
        });
        let result: GenerateResult;
        try {
          result =
            planned.kind === "guided"
              ? await this.o.model.generateGuided!({ ...planned.req, abortSignal: this.o.abortSignal, timeoutMs: this.o.timeoutMs })
              : await this.o.model.generate({ ...planned.req, abortSignal: this.o.abortSignal, timeoutMs: this.o.timeoutMs });
        } catch (error) {
          // An HTTP error answer is not billed. A timeout, reset or abort may have been processed:
          // charge its worst case so the ledger never under-counts.
          if (error instanceof ProviderCallError && error.status !== undefined) {
            await this.o.ledger.release(reservation, `HTTP ${error.status}`);
          } else {
            await this.o.ledger.charge(reservation, {
              usd: worst,
              inputTokens: counted.tokens,
              outputTokens: maxOut,
              estimated: true,
              note: `no answer (${error instanceof Error ? error.message.slice(0, 120) : "unknown"}); charged at worst case`,
            });
          }
          throw error;
        }
        const input = result.usage.inputTokens ?? counted.tokens;
        const output = result.usage.outputTokens ?? maxOut;
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
          usd: this.o.price ? costUsd(this.o.price, input, output, result.usage.cachedInputTokens ?? 0) : 0,
          inputTokens: input,
          outputTokens: output,
          cachedInputTokens: result.usage.cachedInputTokens,
          requestId: result.requestId,
          ...(estimated ? { estimated: true, note: "provider did not report usage; counted or worst case" } : {}),
        });
        return result;
      },
      this.retryPolicy,
      {
        signal: this.o.abortSignal,
        onRetry: (info) => this.o.onRetry?.({ chainId: ctx.chainId, ...info }),
      },
    );
  }
}

type PlannedCall = { kind: "plain"; req: GenerateRequest } | { kind: "guided"; req: GuidedGenerateRequest };

/** A retry after a bad sample must not draw the same sample again: move the seed (deterministically). */
function retrySeed(seed: number | undefined): number | undefined {
  return seed === undefined ? undefined : (seed + 7919) % 2 ** 31;
}

function round(usd: number): number {
  return Math.round(usd * 1e9) / 1e9;
}
