/**
 * Chains per hour with one local model at --concurrency 1 vs N (default 8), greedy CFG (G = 1.5),
 * exact and --cfg-top-k 20, measured side by side in one run: rounds alternate the order of the
 * four cells, each cell generates the same chains (cfg step builder, STEPS steps, <= MAX_OUT tokens
 * per step), and the median round per cell is reported. Concurrency 1 = one chain at a time on a
 * model with one slot; concurrency N = N chains at once on a model with N slots (one context, one
 * batch per decode step). Also: how many chains each decode step carried on average.
 * With --deterministic: the four cells are exact CFG at c=1 and c=N, without and with
 * deterministic decoding (createLocalModel({ deterministic: true }), CLI --deterministic), so the
 * flag's cost and whether c=N reproduces c=1 are measured side by side.
 * Run: npx tsx bench/local-batch/run.ts [--n 8] [--chains 8] [--steps 3] [--max-out 32] [--rounds 3] [--deterministic]
 */
import { availableParallelism, cpus } from "node:os";
import { parseArgs } from "node:util";
import { createLocalModel, defaultThreads, type LocalLanguageModel } from "../../src/llm/local/index.ts";
import { pullModel } from "../../src/models/index.ts";
import { buildCfgStepRequest } from "../../src/steering/cfg.ts";

const { values } = parseArgs({
  options: {
    n: { type: "string", default: "8" },
    chains: { type: "string", default: "8" },
    steps: { type: "string", default: "3" },
    "max-out": { type: "string", default: "32" },
    rounds: { type: "string", default: "3" },
    model: { type: "string", default: "default" },
    deterministic: { type: "boolean", default: false },
  },
});
const N = Number(values.n);
const CHAINS = Number(values.chains);
const STEPS = Number(values.steps);
const MAX_OUT = Number(values["max-out"]);
const ROUNDS = Number(values.rounds);
const ANCHORS = [
  "The library opens at nine and closes at five on weekdays.",
  "A cyclist repaired a flat tire at the side of the mountain road.",
  "The committee postponed its vote on the new budget until next month.",
  "Fresh bread from the corner bakery sells out before noon.",
  "The river flooded the lower fields after three days of heavy rain.",
  "Our team shipped the database migration without any downtime.",
  "A small dog waited patiently outside the grocery store.",
  "The museum added a wing for modern sculpture last spring.",
  "Interest rates rose sharply after the central bank meeting.",
  "She forgot her umbrella and got soaked on the way home.",
  "The orchestra rehearsed the symphony twice before the concert.",
  "Farmers harvested the wheat early because of the coming storm.",
];
const anchors = Array.from({ length: CHAINS }, (_, i) => ANCHORS[i % ANCHORS.length]!);

if (values.model === "default") await pullModel(undefined);
const threads = defaultThreads();
const one = await createLocalModel({ model: values.model, gpu: "off", threads, contextSize: 512 });
const many = await createLocalModel({ model: values.model, gpu: "off", threads, contextSize: 512, parallel: N });
const det = values.deterministic;
const oneDet = det ? await createLocalModel({ model: values.model, gpu: "off", contextSize: 512, deterministic: true }) : one;
const manyDet = det ? await createLocalModel({ model: values.model, gpu: "off", contextSize: 512, parallel: N, deterministic: true }) : many;
const { loadavg } = await import("node:os");
console.log(
  `load average ${loadavg().map((x) => x.toFixed(2)).join(" ")}; model ${one.modelId}, ${availableParallelism()} cores (${cpus()[0]?.model ?? "?"}), llama.cpp threads ${threads}; ${CHAINS} chains x ${STEPS} steps, <= ${MAX_OUT} tokens/step, G = 1.5 greedy; ${ROUNDS} rounds; machine shared with other jobs`,
);

async function chain(model: LocalLanguageModel, anchor: string, candidates: number | undefined): Promise<{ tokens: number; text: string }> {
  const steps: string[] = [];
  let tokens = 0;
  for (let i = 0; i < STEPS; i++) {
    const r = await model.generateGuided({ ...buildCfgStepRequest({ anchor, steps, guidance: 1.5, maxOutputTokens: MAX_OUT }), candidates });
    tokens += r.usage.outputTokens ?? 0;
    steps.push(r.text.trim() || "(empty)");
  }
  return { tokens, text: steps.join(" | ") };
}

/** Runs all chains with at most `concurrency` at once (a worker pool, as the generator does). */
async function runAll(model: LocalLanguageModel, concurrency: number, candidates: number | undefined) {
  let next = 0;
  const out: { tokens: number; text: string }[] = new Array(anchors.length);
  const worker = async () => {
    while (next < anchors.length) {
      const i = next++;
      out[i] = await chain(model, anchors[i]!, candidates);
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: concurrency }, worker));
  return { secs: (performance.now() - t0) / 1000, results: out };
}

const cells = det
  ? [
      { name: "exact   c=1", model: one, c: 1, k: undefined },
      { name: `exact   c=${N}`, model: many, c: N, k: undefined },
      { name: "determ. c=1", model: oneDet, c: 1, k: undefined },
      { name: `determ. c=${N}`, model: manyDet, c: N, k: undefined },
    ]
  : [
      { name: "exact   c=1", model: one, c: 1, k: undefined },
      { name: `exact   c=${N}`, model: many, c: N, k: undefined },
      { name: "top-20  c=1", model: one, c: 1, k: 20 },
      { name: `top-20  c=${N}`, model: many, c: N, k: 20 },
    ];
await runAll(one, 1, undefined); // warm-up
if (det) await runAll(oneDet, 1, undefined);
const secs = new Map(cells.map((c) => [c.name, [] as number[]]));
const tokens = new Map<string, number>();
const texts = new Map<string, string[]>();
let before = { ...many.barrier.stats };
for (let round = 0; round < ROUNDS; round++) {
  for (const c of round % 2 === 0 ? cells : [...cells].reverse()) {
    const r = await runAll(c.model, c.c, c.k);
    secs.get(c.name)!.push(r.secs);
    tokens.set(c.name, r.results.reduce((n, x) => n + x.tokens, 0));
    texts.set(c.name, r.results.map((x) => x.text));
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const perHour = (name: string) => (CHAINS * 3600) / median(secs.get(name)!);
console.log(`cell           chains/hour   tokens/s   per round (s)`);
for (const c of cells) {
  const s = median(secs.get(c.name)!);
  console.log(`${c.name.padEnd(14)} ${perHour(c.name).toFixed(0).padStart(11)} ${(tokens.get(c.name)! / s).toFixed(1).padStart(10)}   ${secs.get(c.name)!.map((x) => x.toFixed(1)).join(" ")}`);
}
const st = many.barrier.stats;
console.log(`chains per decode step at c=${N} (mean over dispatches): ${((st.membersPerDispatch - before.membersPerDispatch) / Math.max(1, st.dispatches - before.dispatches)).toFixed(2)}`);
console.log(`ratio exact  c=${N} / c=1 = ${(perHour(`exact   c=${N}`) / perHour("exact   c=1")).toFixed(2)}  (target >= 2)`);
const same = (a: string, b: string) => texts.get(a)!.filter((t, i) => t === texts.get(b)![i]).length;
if (det) {
  console.log(`ratio determ. c=${N} / c=1 = ${(perHour(`determ. c=${N}`) / perHour("determ. c=1")).toFixed(2)}`);
  console.log(`cost of --deterministic: c=1 ${(perHour("determ. c=1") / perHour("exact   c=1")).toFixed(2)}x, c=${N} ${(perHour(`determ. c=${N}`) / perHour(`exact   c=${N}`)).toFixed(2)}x the chains/hour without it`);
  console.log(`chains identical at c=${N} and c=1 (of ${CHAINS}): without ${same("exact   c=1", `exact   c=${N}`)}, with --deterministic ${same("determ. c=1", `determ. c=${N}`)}`);
} else {
  console.log(`ratio top-20 c=${N} / c=1 = ${(perHour(`top-20  c=${N}`) / perHour("top-20  c=1")).toFixed(2)}`);
  console.log(`chains identical at c=${N} and c=1 (of ${CHAINS}): exact ${same("exact   c=1", `exact   c=${N}`)}, top-20 ${same("top-20  c=1", `top-20  c=${N}`)}`);
}
console.log(`load average at the end ${loadavg().map((x) => x.toFixed(2)).join(" ")}`);
for (const m of new Set([one, many, oneDet, manyDet])) await m.dispose();
