/**
 * Where the time of one exact CFG token goes (SmolLM2, one llama.cpp thread, CPU): the two
 * sequences (positive, negative prompt) are evaluated in one batch per token, as in generateGuided,
 * and each row below times the same 2-sequence step with a different readback, interleaved token
 * by token (so load from other processes hits all rows alike):
 *   forward + 1 logit   the forward pass incl. the output layer; one filtered logit read back
 *   logits: true        node-llama-cpp's full readback (native std::sort of the vocabulary, a
 *                       98,304-element JS array built element by element), flat (no Map)
 *   top-V sampler       the full vocabulary through a top-k sampler with k = V (llama.cpp's
 *                       bucket sort instead of std::sort), the same (token, logit) pairs
 * and the JavaScript scoring of one token from two flat arrays: log-softmax both + guidance +
 * argmax (the path before this change) vs the raw-logit score G·l_pos − (G−1)·l_neg + argmax (the
 * normalisers cancel). Run: npx tsx bench/cfg/profile.ts [TOKENS]
 */
import { loadavg } from "node:os";
import { getLlama, LlamaLogLevel, type LlamaContextSequence, type Token } from "node-llama-cpp";
import { argmax, guidanceScores, guidanceScoresFlat, logSoftmaxFlat } from "../../src/llm/local/cfg-math.ts";
import { installFlatLogits } from "../../src/llm/local/local-model.ts";
import { resolveModelPath } from "../../src/models/installed.ts";

const TOKENS = Number(process.argv[2] ?? 40);
const r = resolveModelPath(undefined, process.env);
if (r.kind !== "file") throw new Error("default model not installed: rankchain models pull");
const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
const model = await llama.loadModel({ modelPath: r.path });
const V = (model.fileInfo.metadata as unknown as { tokenizer?: { ggml?: { tokens?: readonly unknown[] } } }).tokenizer?.ggml?.tokens?.length ?? 49152;
const ctx = await model.createContext({ sequences: 2, contextSize: 1024, threads: 1 });
if (!installFlatLogits(ctx, () => true)) throw new Error("flat readback unavailable");
const pos = ctx.getSequence();
const neg = ctx.getSequence();
const prompt = (t: string) => model.tokenize(`<|im_start|>user\nWrite a long paragraph about ${t}.<|im_end|>\n<|im_start|>assistant\n`, true);

type Next = Parameters<LlamaContextSequence["controlledEvaluate"]>[0][number];
const modes = {
  "forward + 1 logit": { logits: { filter: { tokens: [0 as Token] } } },
  "logits: true": { logits: true },
  "top-V sampler": { logits: { filter: { tokens: [], includeTop: V } }, options: { temperature: 1, topK: V, topP: 1, minP: 0, seed: 1 } },
} as const;
async function step(seq: LlamaContextSequence, token: Token, next: unknown): Promise<number[] | undefined> {
  const res = await seq.controlledEvaluate([[token, { generateNext: next }] as unknown as Next]);
  const flat = res[0]?.next?.totalLogitWeight as unknown;
  return Array.isArray(flat) ? (flat as number[]) : undefined;
}
const times = new Map<string, number[]>(Object.keys(modes).map((k) => [k, []]));
const js = { logSoftmax: [] as number[], raw: [] as number[] };
const G = 1.5;
console.log(`load average ${loadavg().map((x) => x.toFixed(2)).join(" ")}; vocabulary ${V}; ${TOKENS} tokens x 2 sequences per mode`);
const p = prompt("a lighthouse keeper's ordinary day");
const n = prompt("how bread is baked in a village bakery");
await Promise.all([pos.controlledEvaluate(p.slice(0, -1)), neg.controlledEvaluate(n.slice(0, -1))]);
let tokP = p.at(-1)!;
let tokN = n.at(-1)!;
let agree = 0;
for (let i = 0; i < TOKENS; i++) {
  const order = Object.entries(modes);
  if (i % 2) order.reverse();
  let last: [number[], number[]] | undefined;
  for (const [name, next] of order) {
    // the same token evaluated again at the same position in every mode (erase it first)
    const t0 = performance.now();
    const [a, b] = await Promise.all([step(pos, tokP, next), step(neg, tokN, next)]);
    times.get(name)!.push(performance.now() - t0);
    if (name === "logits: true") last = [a!, b!];
    await Promise.all([pos.eraseContextTokenRanges([{ start: pos.nextTokenIndex - 1, end: pos.nextTokenIndex }]), neg.eraseContextTokenRanges([{ start: neg.nextTokenIndex - 1, end: neg.nextTokenIndex }])]);
  }
  const [a, b] = last!;
  let t0 = performance.now();
  const chosenOld = argmax(guidanceScores(logSoftmaxFlat(a, V), logSoftmaxFlat(b, V), G));
  js.logSoftmax.push(performance.now() - t0);
  t0 = performance.now();
  const chosenNew = argmax(guidanceScoresFlat(a, b, V, G)!);
  js.raw.push(performance.now() - t0);
  if (chosenOld === chosenNew) agree++;
  await Promise.all([pos.controlledEvaluate([tokP]), neg.controlledEvaluate([tokN])]);
  tokP = tokN = chosenOld as Token;
}
const med = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
const base = med(times.get("forward + 1 logit")!);
console.log(`per token, 2 sequences in one batch (median ms)`);
for (const [name, xs] of times) console.log(`  ${name.padEnd(20)} ${med(xs).toFixed(1).padStart(6)}   readback over forward: ${(med(xs) - base).toFixed(1)}`);
console.log(`  JS scoring, log-softmax x2 + guidance + argmax: ${med(js.logSoftmax).toFixed(2)} ms; raw-logit score + argmax: ${med(js.raw).toFixed(2)} ms; same token ${agree}/${TOKENS}`);
console.log(`load average at the end ${loadavg().map((x) => x.toFixed(2)).join(" ")}`);
await ctx.dispose();
await model.dispose();
await llama.dispose();
