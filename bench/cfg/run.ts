/**
 * CFG decoding speed on this machine, measured side by side in one run with the same model and
 * prompts, in alternating rounds (the median round per mode is reported, so other load on the
 * machine hits every mode alike):
 *   plain         generate(): node-llama-cpp's own greedy sampler, one sequence, no logits readback
 *   guided G=1    generateGuided() at G = 1: one sequence, full logits read back per token
 *   CFG exact     G = 1.5, the whole vocabulary scored (the default): two sequences in one batch,
 *                 logits read as node-llama-cpp's flat native array (logitsReadback "flat"),
 *                 scored from raw logits (exactScoring "raw")
 *   CFG exact lsm the same, scored after a float64 log-softmax of both (exactScoring
 *                 "log-softmax"), the path before that change
 *   CFG exact Map the same through the public API only: logits as a Map (logitsReadback "map"),
 *                 the path before this change
 *   CFG top-K     G = 1.5, only the positive's top K tokens scored (opt-in `candidates: K`,
 *                 CLI --cfg-top-k K); also how often a candidate needed a negative re-evaluation
 * then chains per minute for 4-step greedy CFG chains (exact and top-20), and, with node-llama-cpp
 * directly, the forward pass alone for one sequence vs two sequences in one batch (the floor for
 * any CFG: the negative prompt's forward pass is not free).
 * Run: npx tsx bench/cfg/run.ts [MODEL] [ROUNDS] [MODES: comma-separated names, default all]
 */
import { availableParallelism, cpus } from "node:os";
import { getLlama, LlamaLogLevel, type Token } from "node-llama-cpp";
import { createLocalModel, defaultThreads, type LocalGenerationDetails, type LocalGuidedGenerateRequest } from "../../src/llm/local/index.ts";
import { pullModel } from "../../src/models/index.ts";
import { buildCfgStepRequest } from "../../src/steering/cfg.ts";

const modelName = process.argv[2] ?? "default";
const ROUNDS = Number(process.argv[3] ?? 3);
const TOKENS = 48;
const TOP_KS = [20, 100];
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
if (!model.flatLogitsAvailable) console.log("note: node-llama-cpp internals differ; the flat readback is unavailable, both exact modes use the Map");
const { loadavg } = await import("node:os");
const load = () => loadavg().map((x) => x.toFixed(2)).join(" ");
console.log(
  `load average ${load()}; model ${model.modelId} (${model.chatTemplate}), ${availableParallelism()} cores (${cpus()[0]?.model ?? "?"}), ${TOKENS} new tokens per prompt, ${pairs.length} prompts, ${ROUNDS} rounds`,
);

type Pair = (typeof pairs)[number];
interface Mode {
  name: string;
  run: (p: Pair) => Promise<{ tokens: number; reevaluations: number }>;
}
const guidedMode = (name: string, guidance: number, extra: Partial<LocalGuidedGenerateRequest>, readback: "flat" | "map" = "flat", scoring: "raw" | "log-softmax" = "raw"): Mode => ({
  name,
  run: async (p) => {
    model.logitsReadback = readback;
    model.exactScoring = scoring;
    const r = await model.generateGuided({ ...p, guidance, maxOutputTokens: TOKENS, stopAtNewline: false, ...extra });
    model.logitsReadback = "flat";
    model.exactScoring = "raw";
    return { tokens: r.usage.outputTokens!, reevaluations: (r.raw as LocalGenerationDetails).cfg?.negativeReevaluations ?? 0 };
  },
});
const allModes: Mode[] = [
  { name: "plain", run: async (p) => ({ tokens: (await model.generate({ messages: p.positive, maxOutputTokens: TOKENS })).usage.outputTokens!, reevaluations: 0 }) },
  guidedMode("guided G=1", 1, {}),
  guidedMode("CFG exact", 1.5, {}),
  guidedMode("CFG exact lsm", 1.5, {}, "flat", "log-softmax"),
  guidedMode("CFG exact Map", 1.5, {}, "map"),
  ...TOP_KS.map((k) => guidedMode(`CFG top-${k}`, 1.5, { candidates: k })),
];
const only = process.argv[4]?.split(",");
const modes = only ? allModes.filter((m) => m.name === "plain" || m.name === "CFG exact" || only.includes(m.name)) : allModes;
const has = (name: string) => modes.some((m) => m.name === name);

for (const m of modes) await m.run(pairs[0]!); // warm-up (also fills the prompt caches)
// interleaved: every prompt is decoded by every mode before the next prompt, in an order that
// alternates between rounds, so a burst of load from other processes falls on all modes alike
const totals = new Map(modes.map((m) => [m.name, { tokens: 0, secs: 0, reevaluations: 0, rounds: [] as number[] }]));
for (let round = 0; round < ROUNDS; round++) {
  const order = round % 2 === 0 ? modes : [...modes].reverse();
  const roundTotals = new Map(modes.map((m) => [m.name, { tokens: 0, secs: 0 }]));
  for (const p of pairs) {
    for (const m of order) {
      const t0 = performance.now();
      const r = await m.run(p);
      const secs = (performance.now() - t0) / 1000;
      const acc = totals.get(m.name)!;
      acc.tokens += r.tokens;
      acc.secs += secs;
      acc.reevaluations += r.reevaluations;
      const rt = roundTotals.get(m.name)!;
      rt.tokens += r.tokens;
      rt.secs += secs;
    }
  }
  for (const [name, rt] of roundTotals) totals.get(name)!.rounds.push(rt.tokens / rt.secs);
}
const tps = new Map([...totals].map(([n, t]) => [n, t.tokens / t.secs]));
const plain = tps.get("plain")!;
console.log(`mode            tokens/s   vs plain   per round`);
for (const m of modes) {
  const v = tps.get(m.name)!;
  const t = totals.get(m.name)!;
  const extra = m.name.startsWith("CFG top") ? `   (negative re-evaluated on ${((100 * t.reevaluations) / t.tokens).toFixed(1)}% of tokens)` : "";
  console.log(`${m.name.padEnd(15)} ${v.toFixed(1).padStart(8)}   ${(v / plain).toFixed(2).padStart(8)}   ${t.rounds.map((x) => x.toFixed(1)).join(" ")}${extra}`);
}
const ratio = (a: string, b: string) => (tps.get(a)! / tps.get(b)!).toFixed(2);
console.log(`ratio CFG exact / plain            = ${ratio("CFG exact", "plain")}  (target >= 0.6)`);
for (const k of TOP_KS) if (has(`CFG top-${k}`)) console.log(`ratio CFG top-${k} / plain`.padEnd(35) + `= ${ratio(`CFG top-${k}`, "plain")}  (opt-in approximation)`);
if (has(`CFG top-${TOP_KS[0]}`)) console.log(`ratio CFG top-${TOP_KS[0]} / CFG exact`.padEnd(35) + `= ${ratio(`CFG top-${TOP_KS[0]}`, "CFG exact")}`);
if (has("CFG exact lsm")) console.log(`ratio CFG exact / CFG exact lsm    = ${ratio("CFG exact", "CFG exact lsm")}  (raw-logit scoring vs log-softmax first)`);
if (has("CFG exact Map")) console.log(`ratio CFG exact / CFG exact Map    = ${ratio("CFG exact", "CFG exact Map")}  (flat native array vs public Map)`);
if (has("guided G=1")) console.log(`ratio guided G=1 / plain           = ${ratio("guided G=1", "plain")}  (cost of reading back full logits)`);

for (const candidates of process.env.CFG_BENCH_CHAINS === "0" ? [] : [undefined, TOP_KS[0]]) {
  const t0 = performance.now();
  for (const anchor of anchors) {
    const chain: string[] = [];
    for (let i = 0; i < 4; i++) {
      const r = await model.generateGuided({ ...buildCfgStepRequest({ anchor, steps: chain, guidance: 1.5, maxOutputTokens: 48 }), candidates });
      chain.push(r.text.trim());
    }
  }
  const minutes = (performance.now() - t0) / 60000;
  console.log(
    `4-step greedy CFG chains (G=1.5, <=48 tokens/step, ${candidates ? `top-${candidates}` : "exact"}): ${anchors.length} chains in ${(minutes * 60).toFixed(1)} s = ${(anchors.length / minutes).toFixed(1)} chains/min`,
  );
}
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
console.log(`load average at the end ${load()}`);
