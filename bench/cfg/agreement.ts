/**
 * How often --cfg-top-k K (the opt-in approximation) picks the same token as exact CFG, on SEEDS
 * chains (default 50 seed sentences, 3 steps, greedy, G = 1.5):
 *   tokens: teacher-forced along the exact chains — at every guided decoding step (steps >= 2; step
 *           1 is plain decoding in both) the full next-token log-probabilities of both prompts are
 *           read back, and the argmax of G·log p_pos − (G−1)·log p_neg over the whole vocabulary is
 *           compared with the argmax over the positive's top K only;
 *   chains: free-running top-K chains compared with the exact chains, text of every step.
 * Seeds: ../shared/eval-data/seeds-snli-dev-sentences.txt (read in place) when present.
 * Run: npx tsx bench/cfg/agreement.ts [--seeds 50] [--k 20] [--steps 3] [--max-out 32] [--n 8]
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import type { Token } from "node-llama-cpp";
import { createLocalModel, defaultThreads, type LocalGenerationDetails, type LocalLanguageModel } from "../../src/llm/local/index.ts";
import type { GuidedGenerateRequest } from "../../src/llm/types.ts";
import { pullModel } from "../../src/models/index.ts";
import { PROJECT_ROOT } from "../../src/config/paths.ts";
import { buildCfgStepRequest } from "../../src/steering/cfg.ts";

const { values } = parseArgs({
  options: { seeds: { type: "string", default: "50" }, k: { type: "string", default: "20" }, steps: { type: "string", default: "3" }, "max-out": { type: "string", default: "32" }, n: { type: "string", default: "8" } },
});
const SEEDS = Number(values.seeds);
const K = Number(values.k);
const STEPS = Number(values.steps);
const MAX_OUT = Number(values["max-out"]);
const G = 1.5;
// ../shared beside the checkout; ../../shared from a git worktree one level deeper
const seedsPath = [join(PROJECT_ROOT, "..", "shared"), join(PROJECT_ROOT, "..", "..", "shared")].map((d) => join(d, "eval-data", "seeds-snli-dev-sentences.txt")).find((p) => existsSync(p)) ?? "../shared/eval-data/seeds-snli-dev-sentences.txt";
let seeds: string[];
try {
  seeds = readFileSync(seedsPath, "utf8").split("\n").map((l) => l.trim()).filter((l) => l.split(" ").length >= 6).slice(0, SEEDS);
} catch {
  console.log(`note: ${seedsPath} not found; using built-in sentences`);
  const subjects = ["A man", "Two children", "The old woman", "A dog", "The team", "A young chef", "The driver", "A student", "The band", "A farmer"];
  const rest = ["walks along the beach at sunset.", "waits for the bus in the rain.", "repairs a bicycle in the garage.", "reads a newspaper in the park.", "cooks dinner for the whole family."];
  seeds = Array.from({ length: SEEDS }, (_, i) => `${subjects[i % subjects.length]} ${rest[Math.floor(i / subjects.length) % rest.length]}`);
}

await pullModel(undefined);
const threads = defaultThreads();
const model = await createLocalModel({ model: "default", gpu: "off", threads, contextSize: 512, parallel: Number(values.n) });
console.log(`model ${model.modelId}; ${seeds.length} seeds x ${STEPS} steps, <= ${MAX_OUT} tokens/step, G = ${G}, K = ${K}; machine shared with other jobs`);

interface Step { req: GuidedGenerateRequest; tokens: Token[]; text: string }
async function chain(anchor: string, candidates: number | undefined): Promise<Step[]> {
  const steps: string[] = [];
  const out: Step[] = [];
  for (let i = 0; i < STEPS; i++) {
    const req = buildCfgStepRequest({ anchor, steps, guidance: G, maxOutputTokens: MAX_OUT });
    const r = await model.generateGuided({ ...req, candidates: candidates ?? null });
    out.push({ req, tokens: (r.raw as LocalGenerationDetails).tokens, text: r.text });
    steps.push(r.text.trim() || "(empty)");
  }
  return out;
}
async function all(candidates: number | undefined): Promise<Step[][]> {
  let next = 0;
  const res: Step[][] = new Array(seeds.length);
  await Promise.all(Array.from({ length: model.parallel }, async () => {
    while (next < seeds.length) {
      const i = next++;
      res[i] = await chain(seeds[i]!, candidates);
    }
  }));
  return res;
}

const exact = await all(undefined);
const approx = await all(K);
let sameChains = 0;
for (let i = 0; i < seeds.length; i++) if (exact[i]!.every((s, j) => s.text === approx[i]![j]!.text)) sameChains++;

let tokens = 0;
let agree = 0;
let exactCheck = 0;
for (const c of exact) {
  for (const step of c) {
    if (step.req.guidance === 1) continue;
    for (let j = 0; j < step.tokens.length; j++) {
      const prefix = step.tokens.slice(0, j);
      const [lp, ln] = [await model.nextTokenLogProbs(step.req.positive, prefix, { sequence: 0 }), await model.nextTokenLogProbs(step.req.negative, prefix, { sequence: 1 })];
      const score = (t: number) => (lp[t] === -Infinity ? -Infinity : ln[t] === -Infinity ? lp[t]! : G * lp[t]! - (G - 1) * ln[t]!);
      let best = 0;
      for (let t = 1; t < lp.length; t++) if (score(t) > score(best)) best = t;
      const top = [...lp.keys()].sort((a, b) => lp[b]! - lp[a]! || a - b).slice(0, K).sort((a, b) => a - b);
      let bestK = top[0]!;
      for (const t of top) if (score(t) > score(bestK)) bestK = t;
      tokens++;
      if (best === bestK) agree++;
      if (best === step.tokens[j]) exactCheck++;
    }
  }
}
console.log(`tokens (guided steps, teacher-forced): top-${K} picks the exact CFG token at ${agree}/${tokens} = ${((100 * agree) / tokens).toFixed(2)}% of steps (target >= 99%)`);
console.log(`  (re-read exact argmax equals the decoded token at ${exactCheck}/${tokens})`);
console.log(`chains: top-${K} chains identical to exact chains (all ${STEPS} steps): ${sameChains}/${seeds.length} = ${((100 * sameChains) / seeds.length).toFixed(0)}%`);
await model.dispose();
