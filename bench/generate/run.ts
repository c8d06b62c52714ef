/**
 * bench/generate: the chain generator against the loopback OpenAI server (real SDK client, real
 * ledger and run directory on disk), measured side by side in one run:
 *   1. chains per second at concurrency 1, 4 and 16 (server latency fixed at LATENCY_MS per call),
 *      as ratios to concurrency 1;
 *   2. requests and tokens per chain for `ladder` vs `stepwise` at the same N, as ratios.
 * Run: npx tsx bench/generate/run.ts [--chains 48] [--steps 6] [--latency 40]
 */
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { runGenerate } from "../../src/generate/run.ts";
import { GenerateConfigSchema } from "../../src/config/run-config.ts";
import { startOpenAIServer } from "../../test/servers/index.ts";
import { writeFileSync } from "node:fs";

const { values } = parseArgs({ options: { chains: { type: "string", default: "48" }, steps: { type: "string", default: "6" }, latency: { type: "string", default: "40" } } });
const CHAINS = Number(values.chains);
const STEPS = Number(values.steps);
const LATENCY_MS = Number(values.latency);

const seedsPath = join("..", "shared", "eval-data", "seeds-snli-dev-sentences.txt");
let seeds: string[];
try {
  seeds = readFileSync(seedsPath, "utf8").split("\n").filter((l) => l.trim()).slice(0, CHAINS);
} catch {
  console.log(`note: ${seedsPath} not found; using generated seed sentences`);
  seeds = Array.from({ length: CHAINS }, (_, i) => `Seed sentence number ${i} describes a person walking a dog in the park.`);
}

process.env.OPENAI_API_KEY = "sk-bench-000000000000000000000000";
const server = await startOpenAIServer({
  responder: (_req, ctx) => ({ ...ctx.defaultReply(), delayMs: LATENCY_MS }) as ReturnType<typeof ctx.defaultReply>,
});
const dir = mkdtempSync(join(tmpdir(), "rankchain-bench-gen-"));
const input = join(dir, "seeds.txt");
writeFileSync(input, seeds.join("\n") + "\n");

async function run(name: string, over: Record<string, unknown>) {
  server.clearRequests();
  const out = join(dir, name);
  const t0 = performance.now();
  const s = await runGenerate(
    GenerateConfigSchema.parse({ input, out, provider: "openai", model: "gpt-4o-mini", baseUrl: server.baseURL, steps: STEPS, quiet: true, ...over }),
  );
  const secs = (performance.now() - t0) / 1000;
  const t = s.manifest.totals;
  return { name, secs, chainsPerSec: t.chains_done / secs, requests: server.requestsTo("/v1/chat/completions").length / t.chains_done, inTok: t.input_tokens / t.chains_done, outTok: t.output_tokens / t.chains_done, usd: t.usd / t.chains_done };
}

console.log(`bench/generate: ${seeds.length} chains × ${STEPS} steps, loopback latency ${LATENCY_MS} ms/call, node ${process.version}`);
const conc = [];
for (const c of [1, 4, 16]) conc.push(await run(`stepwise-c${c}`, { concurrency: c }));
console.log("\nthroughput (stepwise)          chains/s   ratio vs c=1");
for (const r of conc) console.log(`  concurrency ${String(r.name.split("-c")[1]).padEnd(16)} ${r.chainsPerSec.toFixed(2).padStart(8)}   ${(r.chainsPerSec / conc[0]!.chainsPerSec).toFixed(2)}×`);

const step = conc[2]!;
const ladder = await run("ladder-c16", { concurrency: 16, steering: "ladder", maxOutputTokens: 100 * STEPS });
console.log(`\nper chain at N=${STEPS}            stepwise     ladder   ladder/stepwise`);
const row = (label: string, a: number, b: number) => console.log(`  ${label.padEnd(26)} ${a.toFixed(1).padStart(8)} ${b.toFixed(1).padStart(10)}   ${(b / a).toFixed(2)}×`);
row("requests", step.requests, ladder.requests);
row("input tokens", step.inTok, ladder.inTok);
row("output tokens", step.outTok, ladder.outTok);
console.log(`  ${"USD (gpt-4o-mini prices)".padEnd(26)} ${step.usd.toExponential(2).padStart(8)} ${ladder.usd.toExponential(2).padStart(10)}   ${(ladder.usd / step.usd).toFixed(2)}×`);
console.log(`  ${"chains/s at c=16".padEnd(26)} ${step.chainsPerSec.toFixed(2).padStart(8)} ${ladder.chainsPerSec.toFixed(2).padStart(10)}   ${(ladder.chainsPerSec / step.chainsPerSec).toFixed(2)}×`);
await server.close();
