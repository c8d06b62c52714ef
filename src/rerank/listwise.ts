import { countQuality, settleFailure } from "../budget/billing.ts";
import type { Ledger, LedgerStage } from "../budget/types.ts";
import { costUsd, type ModelPrice } from "../config/prices.ts";
import { DEFAULT_RETRY_POLICY, withRetries, type RetryPolicy } from "../generate/retry.ts";
import type { GenerateResult, LanguageModel } from "../llm/types.ts";
import { delimit, loadPromptTemplate, renderTemplate, type PromptTemplate } from "../steering/prompt-templates.ts";
import { parsePermutation } from "./permutation.ts";
import { addUsage, zeroUsage, type PermutationIssues, type RerankOptions, type RerankResult, type Reranker, type RerankUsage } from "./types.ts";
import { DEFAULT_STEP, DEFAULT_WINDOW, slidingWindows } from "./window.ts";

export interface LlmListwiseOptions {
  model: LanguageModel;
  /** Every call reserves its worst case here first; a call that would cross the cap is not made. */
  ledger: Ledger;
  /** Ledger stage the spend is booked under (default "judge"). */
  stage?: LedgerStage;
  /** undefined = free (local models); a paid model with a cap needs a price (resolvePrice). */
  price: ModelPrice | undefined;
  width?: number;
  step?: number;
  /** Passages longer than this are cut (RankGPT cuts at 300 words); default 1000 characters. */
  maxPassageChars?: number;
  /** Max output tokens per window; default 6 per passage + 16 ("[12] > " is at most ~5 tokens). */
  maxOutputTokens?: (windowSize: number) => number;
  template?: PromptTemplate;
  retryPolicy?: RetryPolicy;
  timeoutMs?: number;
  sleep?: (ms: number) => Promise<void>;
  /** dispose() also disposes the model (default false: the caller owns it). */
  ownsModel?: boolean;
}

/**
 * An LLM listwise reranker in the RankGPT style (Sun et al. 2023): the current ranking is reviewed
 * in sliding windows from back to front (default 20 wide, step 10); in each window the model
 * returns a permutation of the window's passages, which replaces that slice of the ranking.
 * Spends through the ledger like generation does: reserve the worst case, call, charge the
 * reported usage (an HTTP error answer is released; a timeout or reset is charged at worst case).
 * Throws BudgetExceededError (from the ledger) when the next window would cross the cap; the
 * windows done so far are paid for and lost to this call, so callers check `ledger.fits` first.
 */
export class LlmListwiseReranker implements Reranker {
  readonly kind = "llm" as const;
  readonly id: string;
  readonly width: number;
  readonly step: number;
  private readonly template: PromptTemplate;

  constructor(private readonly o: LlmListwiseOptions) {
    this.width = o.width ?? DEFAULT_WINDOW;
    this.step = o.step ?? DEFAULT_STEP;
    slidingWindows(this.width, this.width, this.step); // validates width and step
    this.template = o.template ?? loadPromptTemplate("rerank-listwise");
    this.id = `llm:${o.model.provider}/${o.model.modelId}`;
  }

  /** The chat messages of one window (exposed for tests and cost estimates). */
  windowMessages(query: string, passages: readonly string[]) {
    const max = this.o.maxPassageChars ?? 1000;
    const list = passages.map((p, i) => `[${i + 1}] <passage>${delimit(p.length > max ? p.slice(0, max) : p)}</passage>`).join("\n");
    return renderTemplate(this.template, { n: passages.length, query: delimit(query), passages: list });
  }

  maxOutputTokens(windowSize: number): number {
    return this.o.maxOutputTokens ? this.o.maxOutputTokens(windowSize) : 6 * windowSize + 16;
  }

  /** Reranks `passages` given in their current (first-stage) order. */
  async rerank(query: string, passages: readonly string[], options: RerankOptions = {}): Promise<RerankResult> {
    let ranking = passages.map((_, i) => i);
    let usage = zeroUsage();
    const repairs: PermutationIssues[] = [];
    for (const w of slidingWindows(ranking.length, this.width, this.step)) {
      const slice = ranking.slice(w.start, w.end);
      const { text, usage: u } = await this.call(this.windowMessages(query, slice.map((i) => passages[i]!)), slice.length, options);
      usage = addUsage(usage, u);
      const { order, issues } = parsePermutation(text, slice.length);
      if (issues.duplicates || issues.missing || issues.outOfRange || issues.unparsable) repairs.push(issues);
      ranking = [...ranking.slice(0, w.start), ...order.map((k) => slice[k]!), ...ranking.slice(w.end)];
    }
    return { order: ranking, usage, ...(repairs.length ? { repairs } : {}) };
  }

  private async call(messages: ReturnType<LlmListwiseReranker["windowMessages"]>, n: number, options: RerankOptions): Promise<{ text: string; usage: RerankUsage }> {
    const { model, ledger, price } = this.o;
    const maxOut = this.maxOutputTokens(n);
    return withRetries(
      async () => {
        const counted = await model.countInputTokens(messages);
        const reservation = await ledger.reserve({
          stage: this.o.stage ?? "judge",
          model: `${model.provider}/${model.modelId}`,
          chainId: options.chainId,
          inputTokens: counted.tokens,
          maxOutputTokens: maxOut,
          count: countQuality(counted),
          price,
          signal: options.abortSignal,
        });
        let result: GenerateResult;
        try {
          result = await model.generate({ messages, maxOutputTokens: maxOut, temperature: 0, abortSignal: options.abortSignal, timeoutMs: this.o.timeoutMs });
        } catch (error) {
          await settleFailure(ledger, reservation, error);
          throw error;
        }
        const input = result.usage.inputTokens ?? reservation.inputTokens;
        const output = result.usage.outputTokens ?? reservation.maxOutputTokens;
        const estimated = result.usage.inputTokens === undefined || result.usage.outputTokens === undefined;
        const usd = estimated ? reservation.usd : price ? costUsd(price, input, output, result.usage.cachedInputTokens ?? 0) : 0;
        await ledger.charge(reservation, {
          usd,
          inputTokens: input,
          outputTokens: output,
          cachedInputTokens: result.usage.cachedInputTokens,
          requestId: result.requestId,
          ...(estimated ? { estimated: true, note: "rerank: provider did not report usage; charged the reserved worst case" } : {}),
        });
        return { text: result.text, usage: { usd, inputTokens: input, outputTokens: output, calls: 1 } };
      },
      this.o.retryPolicy ?? DEFAULT_RETRY_POLICY,
      { signal: options.abortSignal, ...(this.o.sleep ? { sleep: (ms: number) => this.o.sleep!(ms) } : {}) },
    );
  }

  /** Disposes the model only when this reranker owns it (ownsModel). */
  async dispose(): Promise<void> {
    if (this.o.ownsModel) await this.o.model.dispose?.();
  }
}
