/**
 * CFG decoding speed on this machine, measured side by side in one run with the same model and
 * prompts:
 *   plain        generate(): node-llama-cpp's own greedy sampler, one sequence, no logits readback
 *   guided G=1   generateGuided() at G = 1: one sequence, full logits read back per token
 *   CFG batched  G = 1.5: two sequences evaluated in one batch per token (the default)
 *   CFG seq.     G = 1.5: the two sequences evaluated one after the other
 * and chains per minute for 4-step greedy CFG chains; then, with node-llama-cpp directly, the
 * forward pass alone (next token sampled natively, no logits read back) for one sequence vs two
 * sequences in one batch, which is what batching the CFG pair buys.
 * Run: npx tsx bench/cfg/run.ts [MODEL]
 */
import { availableParallelism, cpus } from "node:os";
import { getLlama, LlamaLogLevel, type Token } from "node-llama-cpp";
import { createLocalModel, defaultThreads } from "../../src/llm/local/index.ts";
import { pullModel } from "../../src/models/index.ts";
import { buildCfgStepRequest } from "../../src/steering/cfg.ts";

const modelName = process.argv[2] ?? "default";
const TOKENS = 48;
// prompts that make the model write a paragraph, so every run decodes close to TOKENS tokens
// (speed is tokens/s including each prompt's prefill; short rewrites would measure mostly prefill)
const topics = ["a lighthouse keeper's ordinary day", "how bread is baked in a village bakery", "a train journey through the mountains in winter"];
const ask = (t: string) => [{ role: "user" as const, content: `Write a long paragraph about ${t}.` }];
const pairs = topics.map((t, i) => ({ positive: ask(t), negative: ask(topics[(i + 1) % topics.length]!) }));
const anchors = [
  "Interest rates rose sharply after the central bank meeting.",
  "The library extended its opening hours during exam week.",
  "She forgot her umbrella and got soaked on the way home.",
];

if (modelName === "default" || !modelName.includes("/")) await pullModel(modelName === "default" ? undefined : modelName);
const model = await createLocalModel({ model: modelName, gpu: "off" });
console.log(`model ${model.modelId} (${model.chatTemplate}), ${availableParallelism()} cores (${cpus()[0]?.model ?? "?"}), ${TOKENS} new tokens per prompt, ${pairs.length} prompts`);

async function measure(name: string, run: (p: (typeof pairs)[number]) => Promise<number>): Promise<number> {
  await run(pairs[0]!); // warm-up (also fills the prompt cache)
  let tokens = 0;
  const t0 = performance.now();
  for (const p of pairs) tokens += await run(p);
  const secs = (performance.now() - t0) / 1000;
  const tps = tokens / secs;
  console.log(`${name.padEnd(14)} ${tokens} tokens in ${secs.toFixed(2)} s = ${tps.toFixed(1)} tokens/s`);
  return tps;
}

const plain = await measure("plain", async (p) => (await model.generate({ messages: p.positive, maxOutputTokens: TOKENS })).usage.outputTokens!);
const guided1 = await measure("guided G=1", async (p) => (await model.generateGuided({ ...p, guidance: 1, maxOutputTokens: TOKENS, stopAtNewline: false })).usage.outputTokens!);
model.cfgEvaluation = "batched";
const batched = await measure("CFG batched", async (p) => (await model.generateGuided({ ...p, guidance: 1.5, maxOutputTokens: TOKENS, stopAtNewline: false })).usage.outputTokens!);
model.cfgEvaluation = "sequential";
const sequential = await measure("CFG seq.", async (p) => (await model.generateGuided({ ...p, guidance: 1.5, maxOutputTokens: TOKENS, stopAtNewline: false })).usage.outputTokens!);
model.cfgEvaluation = "batched";

console.log(`ratio CFG batched / plain          = ${(batched / plain).toFixed(2)}  (target >= 0.6)`);
console.log(`ratio CFG batched / guided G=1     = ${(batched / guided1).toFixed(2)}  (cost of the second sequence)`);
console.log(`ratio CFG batched / CFG sequential = ${(batched / sequential).toFixed(2)}  (gain from batching)`);
console.log(`ratio guided G=1 / plain           = ${(guided1 / plain).toFixed(2)}  (cost of reading back full logits)`);

const t0 = performance.now();
let steps = 0;
for (const anchor of anchors) {
  const chain: string[] = [];
  for (let i = 0; i < 4; i++) {
    const r = await model.generateGuided(buildCfgStepRequest({ anchor, steps: chain, guidance: 1.5, maxOutputTokens: 48 }));
    chain.push(r.text.trim());
    steps++;
  }
}
const minutes = (performance.now() - t0) / 60000;
console.log(`4-step greedy CFG chains (G=1.5, <=48 tokens/step): ${anchors.length} chains in ${(minutes * 60).toFixed(1)} s = ${(anchors.length / minutes).toFixed(1)} chains/min`);
const modelPath = model.modelPath;
await model.dispose();

// forward pass only: one sequence vs two sequences decoded in the same batch
{
  const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
  const m = await llama.loadModel({ modelPath });
  const ctx = await m.createContext({ contextSize: 1024, sequences: 2, threads: defaultThreads() });
  const [a, b] = [ctx.getSequence(), ctx.getSequence()];
  const prompt = m.tokenize("Once upon a time, in a village by the sea, there lived");
  await Promise.all([a.evaluateWithoutGeneratingNewTokens(prompt), b.evaluateWithoutGeneratingNewTokens(prompt)]);
  const step = (s: typeof a, t: Token) => s.controlledEvaluate([[t, { generateNext: { token: true } }]]).then((r) => r[0]!.next.token!);
  const N = 48;
  const time = async (pair: boolean) => {
    let t = prompt[prompt.length - 1]!;
    const t0 = performance.now();
    for (let i = 0; i < N; i++) t = pair ? (await Promise.all([step(a, t), step(b, t)]))[0] : await step(a, t);
    return (performance.now() - t0) / N;
  };
  await time(false);
  const one = await time(false);
  const two = await time(true);
  console.log(`forward only: 1 sequence ${one.toFixed(1)} ms/token, 2 sequences batched ${two.toFixed(1)} ms/token, ratio ${(one / two).toFixed(2)} (>= 0.6 means the pair costs well under two passes)`);
  await llama.dispose();
}
