import type { ChatMessage, GenerateRequest } from "../llm/types.ts";
import { conservativeTokenBound, countOpenAIChatTokens, countTextTokens, openAIEncodingFor } from "../llm/tokens.ts";
import { costUsd, type ModelPrice } from "../config/prices.ts";
import type { PromptTemplate } from "../steering/prompt-templates.ts";
import { buildLadderRequest, buildStepwiseRequest } from "../steering/prompt.ts";
import type { Seed } from "../generate/seeds.ts";

/**
 * Projected cost of a generation run, computed offline (spends nothing, needs no key or server).
 *
 * - typical: what a run usually costs — no retries; each step's output as long as its anchor (a
 *   rewrite of similar length). Tokens from the real tokenizer where it is known (tiktoken for
 *   OpenAI model ids); otherwise from bytes-per-token ratios measured on the carried GGUF models
 *   (bench/bytes-per-token.ts): prompt text 4.27 bytes/token, sentences 3.54, plus 5 template
 *   tokens per request.
 * - worst: a true upper bound on what the ledger can charge for answered calls — every call uses
 *   its full max output tokens, every step uses all its --step-retries, each doubling the room (a
 *   ladder call is retried once with doubled room), and
 *   every later prompt holds max-length steps; input tokens exact (tiktoken, OpenAI) or bounded by
 *   UTF-8 bytes (any byte-level BPE tokenizer). Outside it: transport failures that are billed
 *   (a timeout after sending adds at most one call's worst case per retry) and a provider billing
 *   tokens the request does not contain (hidden prompts), which the ledger learns during the run.
 * With more than `sampleSize` seeds, a sample is counted and scaled to all seeds.
 */
export interface CostEstimate {
  seeds: number;
  sampled: number;
  calls: { typical: number; worst: number };
  inputTokens: { typical: number; worst: number };
  outputTokens: { typical: number; worst: number };
  usd: { typical: number; worst: number } | undefined;
  method: { typical: string; worst: string };
}

/** Measured on SmolLM2-135M and Qwen2.5-Coder-0.5B/1.5B (bench/bytes-per-token.ts): the most tokens per byte seen. */
export const PROMPT_BYTES_PER_TOKEN = 4.27;
export const SENTENCE_BYTES_PER_TOKEN = 3.54;
export const TEMPLATE_TOKENS_PER_REQUEST = 5;

export async function estimateRunCost(opts: {
  seeds: readonly Seed[];
  provider: string;
  model: string;
  steering: "stepwise" | "ladder" | "cfg";
  steps: number;
  maxOutputTokens: number;
  template: PromptTemplate;
  price: ModelPrice | undefined;
  /** Rewrites generated per kept step (generate --oversample); default 1. */
  oversample?: number;
  /** Retries of a bad step (generate --step-retries); each after a length stop doubles the room again. Default 2. */
  stepRetries?: number;
  sampleSize?: number;
}): Promise<CostEstimate> {
  const every = opts.oversample ?? 1;
  const total = opts.steps * every;
  const retries = Math.max(0, opts.stepRetries ?? 2);
  // attempt a may have 2^a × the room: the worst step uses M × (2^(R+1) − 1) output tokens over R + 1 calls
  const worstStepOutput = opts.maxOutputTokens * (2 ** (retries + 1) - 1);
  const sampleSize = opts.sampleSize ?? 200;
  const stride = Math.max(1, Math.ceil(opts.seeds.length / sampleSize));
  const sample = opts.seeds.filter((_, i) => i % stride === 0);
  const tiktoken = (opts.provider === "openai" || opts.provider === "openai-compatible") && openAIEncodingFor(opts.model) !== undefined;
  const exactWorst = opts.provider === "openai" && openAIEncodingFor(opts.model) !== undefined;
  const countTypical = async (req: GenerateRequest): Promise<number> =>
    tiktoken
      ? (await countOpenAIChatTokens(opts.model, req.messages, { responseFormat: req.responseFormat })).tokens
      : Math.ceil(bytes(req.messages) / PROMPT_BYTES_PER_TOKEN) + TEMPLATE_TOKENS_PER_REQUEST;
  const countWorst = async (req: GenerateRequest): Promise<number> =>
    exactWorst
      ? (await countOpenAIChatTokens(opts.model, req.messages, { responseFormat: req.responseFormat })).tokens
      : conservativeTokenBound(req.messages, { responseFormat: req.responseFormat });
  const sentenceTokens = async (text: string): Promise<number> =>
    tiktoken ? (await countTextTokens(text, opts.model)).tokens : Math.ceil(Buffer.byteLength(text) / SENTENCE_BYTES_PER_TOKEN);

  let inT = 0, inW = 0, outT = 0, outW = 0, callsT = 0, callsW = 0;
  for (const seed of sample) {
    const anchorTokens = Math.max(4, await sentenceTokens(seed.text));
    if (opts.steering === "ladder") {
      const maxOut = opts.maxOutputTokens * every;
      const req = buildLadderRequest(opts.template, { anchor: seed.text, totalSteps: total, maxOutputTokens: maxOut });
      inT += await countTypical(req);
      outT += Math.min(maxOut, (anchorTokens + 2) * total + 8);
      callsT += 1;
      const w = await countWorst(req);
      inW += 2 * w; // one retry
      outW += maxOut * 3; // the retry doubles the room
      callsW += 2;
    } else {
      const typicalSteps: string[] = [];
      const worstSteps: string[] = [];
      for (let i = 0; i < total; i++) {
        const common = { anchor: seed.text, totalSteps: total, maxOutputTokens: opts.maxOutputTokens };
        inT += await countTypical(buildStepwiseRequest(opts.template, { ...common, stepsSoFar: typicalSteps }));
        outT += Math.min(opts.maxOutputTokens, anchorTokens);
        callsT += 1;
        typicalSteps.push(seed.text);
        const w = await countWorst(buildStepwiseRequest(opts.template, { ...common, stepsSoFar: worstSteps }));
        inW += (retries + 1) * w;
        outW += worstStepOutput;
        callsW += retries + 1;
        worstSteps.push(worstCaseStep(opts.maxOutputTokens, exactWorst));
      }
    }
  }
  const scale = opts.seeds.length / Math.max(1, sample.length);
  const r = (n: number) => Math.round(n * scale);
  const est: CostEstimate = {
    seeds: opts.seeds.length,
    sampled: sample.length,
    calls: { typical: r(callsT), worst: r(callsW) },
    inputTokens: { typical: r(inT), worst: r(inW) },
    outputTokens: { typical: r(outT), worst: r(outW) },
    usd: undefined,
    method: {
      typical: tiktoken
        ? `tiktoken ${openAIEncodingFor(opts.model)} counts of the real prompts; outputs as long as the anchor; no retries`
        : `${PROMPT_BYTES_PER_TOKEN} prompt bytes/token + ${TEMPLATE_TOKENS_PER_REQUEST} template tokens per request, ${SENTENCE_BYTES_PER_TOKEN} bytes/token for outputs as long as the anchor (measured on the carried GGUF models); no retries`,
      worst: `bound: max output tokens on every call, ${retries} retr${retries === 1 ? "y" : "ies"} per step each doubling the room (ladder: one), input ${exactWorst ? "counted with tiktoken" : `bounded by UTF-8 bytes + 16/message + 64, earlier steps taken as ${WORST_OUTPUT_BYTES_PER_TOKEN} bytes/token`}; excludes billed transport retries and hidden server-side prompts`,
    },
  };
  if (opts.price) {
    est.usd = {
      typical: costUsd(opts.price, est.inputTokens.typical, est.outputTokens.typical),
      worst: costUsd(opts.price, est.inputTokens.worst, est.outputTokens.worst),
    };
  }
  return est;
}

/**
 * Bytes per output token assumed for max-length steps shown in later prompts when the tokenizer is
 * unknown: twice the 3.54–4.58 measured on natural text (a degenerate output of longer tokens can
 * exceed it; the estimate's `worst` method says so).
 */
export const WORST_OUTPUT_BYTES_PER_TOKEN = 8;

/**
 * Text standing in for a step that used all of --max-output-tokens, as the later prompts will
 * count it: " x" is one tiktoken token, so N of them are N tokens; under the byte bound a step of
 * N tokens is taken as 8N bytes.
 */
function worstCaseStep(maxOutputTokens: number, exactCounter: boolean): string {
  return exactCounter ? " x".repeat(maxOutputTokens).trim() : "x".repeat(WORST_OUTPUT_BYTES_PER_TOKEN * maxOutputTokens);
}

function bytes(messages: ChatMessage[]): number {
  return messages.reduce((n, m) => n + Buffer.byteLength(m.content), 0);
}
