import type { ChatMessage, GenerateRequest } from "../llm/types.ts";
import { conservativeTokenBound, countOpenAIChatTokens, openAIEncodingFor } from "../llm/tokens.ts";
import { costUsd, type ModelPrice } from "../config/prices.ts";
import type { PromptTemplate } from "../steering/prompt-templates.ts";
import { buildLadderRequest, buildStepwiseRequest } from "../steering/prompt.ts";
import type { Seed } from "../generate/seeds.ts";

/**
 * Projected cost of a generation run, computed offline (spends nothing, needs no key).
 *
 * - low: no retries; each step's output is as long as its anchor (a rewrite of similar length);
 *   input tokens counted with tiktoken (OpenAI models) or ≈ UTF-8 bytes / 4 (others).
 * - high: the worst case the budget ledger would reserve — every step uses --max-output-tokens,
 *   each step is retried once by the cleaner, and input tokens use the provider's counter (OpenAI)
 *   or the conservative byte bound (others, the same bound the ledger reserves with).
 * With more than `sampleSize` seeds, a sample is counted and scaled to all seeds.
 */
export interface CostEstimate {
  seeds: number;
  sampled: number;
  calls: { low: number; high: number };
  inputTokens: { low: number; high: number };
  outputTokens: { low: number; high: number };
  usd: { low: number; high: number } | undefined;
  method: string;
}

export async function estimateRunCost(opts: {
  seeds: readonly Seed[];
  provider: string;
  model: string;
  steering: "stepwise" | "ladder" | "cfg";
  steps: number;
  maxOutputTokens: number;
  template: PromptTemplate;
  price: ModelPrice | undefined;
  sampleSize?: number;
}): Promise<CostEstimate> {
  const sampleSize = opts.sampleSize ?? 200;
  const stride = Math.max(1, Math.ceil(opts.seeds.length / sampleSize));
  const sample = opts.seeds.filter((_, i) => i % stride === 0);
  const exactCounter = opts.provider === "openai" || openAIEncodingFor(opts.model) !== undefined;
  const countLow = async (req: GenerateRequest): Promise<number> =>
    exactCounter
      ? (await countOpenAIChatTokens(opts.model, req.messages, { responseFormat: req.responseFormat })).tokens
      : Math.ceil(bytes(req.messages) / 4);
  const countHigh = async (req: GenerateRequest): Promise<number> =>
    exactCounter
      ? (await countOpenAIChatTokens(opts.model, req.messages, { responseFormat: req.responseFormat })).tokens
      : conservativeTokenBound(req.messages, { responseFormat: req.responseFormat });

  let inLow = 0, inHigh = 0, outLow = 0, outHigh = 0, callsLow = 0, callsHigh = 0;
  for (const seed of sample) {
    const anchorTokens = Math.max(4, Math.ceil(Buffer.byteLength(seed.text) / 4));
    if (opts.steering === "ladder") {
      const req = buildLadderRequest(opts.template, { anchor: seed.text, totalSteps: opts.steps, maxOutputTokens: opts.maxOutputTokens });
      inLow += await countLow(req);
      outLow += anchorTokens * opts.steps + 8;
      callsLow += 1;
      const hi = await countHigh(req);
      inHigh += hi + hi; // one retry
      outHigh += opts.maxOutputTokens + opts.maxOutputTokens * 2; // the retry doubles the room
      callsHigh += 2;
    } else {
      const lowSteps: string[] = [];
      const highSteps: string[] = [];
      for (let i = 0; i < opts.steps; i++) {
        const reqLow = buildStepwiseRequest(opts.template, {
          anchor: seed.text,
          stepsSoFar: lowSteps,
          totalSteps: opts.steps,
          maxOutputTokens: opts.maxOutputTokens,
        });
        inLow += await countLow(reqLow);
        outLow += anchorTokens;
        callsLow += 1;
        lowSteps.push(seed.text);
        const reqHigh = buildStepwiseRequest(opts.template, {
          anchor: seed.text,
          stepsSoFar: highSteps,
          totalSteps: opts.steps,
          maxOutputTokens: opts.maxOutputTokens,
        });
        const hi = await countHigh(reqHigh);
        inHigh += hi * 2;
        outHigh += opts.maxOutputTokens * 3; // first try + one retry with doubled room
        callsHigh += 2;
        highSteps.push(worstCaseStep(opts.maxOutputTokens, exactCounter));
      }
    }
  }
  const scale = opts.seeds.length / Math.max(1, sample.length);
  const r = (n: number) => Math.round(n * scale);
  const est: CostEstimate = {
    seeds: opts.seeds.length,
    sampled: sample.length,
    calls: { low: r(callsLow), high: r(callsHigh) },
    inputTokens: { low: r(inLow), high: r(inHigh) },
    outputTokens: { low: r(outLow), high: r(outHigh) },
    usd: undefined,
    method: exactCounter ? "tiktoken counts of the real prompts" : "bytes/4 (low) and the ledger's conservative byte bound (high)",
  };
  if (opts.price) {
    est.usd = {
      low: costUsd(opts.price, est.inputTokens.low, est.outputTokens.low),
      high: costUsd(opts.price, est.inputTokens.high, est.outputTokens.high),
    };
  }
  return est;
}

/**
 * Text standing in for a step that used all of --max-output-tokens, as the later prompts will
 * count it: " x" is one tiktoken token, so N of them are N tokens; under the byte bound a step of
 * N tokens is taken as 4N bytes (English averages about 4 bytes per token).
 */
function worstCaseStep(maxOutputTokens: number, exactCounter: boolean): string {
  return exactCounter ? " x".repeat(maxOutputTokens).trim() : "x".repeat(4 * maxOutputTokens);
}

function bytes(messages: ChatMessage[]): number {
  return messages.reduce((n, m) => n + Buffer.byteLength(m.content), 0);
}
