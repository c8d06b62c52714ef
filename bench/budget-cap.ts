/**
 * The budget guarantee measured against loopback servers that log what they bill (README "Budget").
 *
 * 1. Over-billing: a server bills a hidden 2,000-token prompt on every call; generate at
 *    concurrency 16 under several caps, with and without a server tokenize endpoint. Prints the
 *    billed spend against the cap, the overshoot, and the documented bound (the excess of the
 *    calls in flight when the over-billing was first seen: at most 16 × 2,000 tokens).
 * 2. Spending the cap: a run capped at 40% of what it costs uncapped (6 seeds × 8 steps,
 *    concurrency 4, the setting), for each way of counting input tokens. Prints the share
 *    of the cap spent before exit 3.
 *
 *   npx tsx bench/budget-cap.ts
 */
import { join } from "node:path";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { runGenerate } from "../src/generate/run.ts";
import { BudgetExceededError } from "../src/errors.ts";
import { GenerateConfigSchema } from "../src/config/run-config.ts";
import { startOpenAIServer, type BilledCall } from "../test/servers/index.ts";

const PRICE = { input: 1, output: 4 };
const usd = (b: readonly BilledCall[]) => b.reduce((s, c) => s + (c.inputTokens * PRICE.input + c.outputTokens * PRICE.output) / 1e6, 0);
const SEEDS = readFileSync(join(import.meta.dirname, "../examples/seeds.txt"), "utf8").split("\n").filter((l) => l.trim() !== "");
const seeds = (n: number) => Array.from({ length: n }, (_, j) => `${SEEDS[j % SEEDS.length]!.replace(/\.$/, "")} (case ${j}).`);

async function run(baseURL: string, n: number, extra: Record<string, unknown>): Promise<{ out: string; error: unknown }> {
  const dir = mkdtempSync(join(tmpdir(), "rankchain-budget-bench-"));
  const input = join(dir, "seeds.txt");
  (await import("node:fs")).writeFileSync(input, seeds(n).join("\n") + "\n");
  const config = GenerateConfigSchema.parse({
    input,
    out: join(dir, "run"),
    provider: "openai-compatible",
    model: "qwen-loopback",
    baseUrl: baseURL,
    priceInput: PRICE.input,
    priceOutput: PRICE.output,
    quiet: true,
    ...extra,
  });
  try {
    await runGenerate(config);
    return { out: config.out, error: undefined };
  } catch (error) {
    if (!(error instanceof BudgetExceededError)) throw error;
    return { out: config.out, error };
  }
}

type Tok = "none" | "llama.cpp" | "vllm" | "llama-cpp-python";
console.log("1. hidden 2,000-token prompt billed on every call, concurrency 16, 40 seeds × 3 steps, max 60 output tokens");
let worst = -Infinity;
for (const tokenize of ["none", "llama.cpp"] as Tok[]) {
  for (const cap of [0.02, 0.05, 0.1, 0.2]) {
    const srv = await startOpenAIServer({ hiddenPromptTokens: 2000, ...(tokenize === "none" ? {} : { tokenize }) });
    const { out } = await run(srv.baseURL, 40, { steps: 3, concurrency: 16, maxUsd: cap, maxOutputTokens: 60 });
    const billed = usd(srv.billed);
    const totals = JSON.parse(readFileSync(join(out, "run.json"), "utf8")).totals;
    const over = Math.max(0, billed - cap) / cap;
    worst = Math.max(worst, over);
    console.log(
      `  count=${tokenize.padEnd(9)} cap $${cap.toFixed(2)}  billed $${billed.toFixed(5)}  ledger $${totals.usd.toFixed(5)}  overshoot ${(over * 100).toFixed(1).padStart(5)}%  over-billed calls ${totals.over_billed.calls}  16-call bound $${(cap + (16 * 2000 * PRICE.input) / 1e6).toFixed(3)}`,
    );
    await srv.close();
  }
}
console.log(`  worst overshoot (billed above the cap): ${(worst * 100).toFixed(1)}% of the cap`);

console.log("1b. the same server starts billing the hidden prompt only from request 20 on (the ledger has learned the model by then)");
let worstLate = 0;
for (const cap of [0.02, 0.05, 0.1]) {
  const srv = await startOpenAIServer({ hiddenPromptTokens: 2000, hiddenPromptFrom: 20 });
  const { out } = await run(srv.baseURL, 40, { steps: 3, concurrency: 16, maxUsd: cap, maxOutputTokens: 60 });
  const billed = usd(srv.billed);
  const totals = JSON.parse(readFileSync(join(out, "run.json"), "utf8")).totals;
  const over = Math.max(0, billed - cap) / cap;
  worstLate = Math.max(worstLate, over);
  console.log(
    `  cap $${cap.toFixed(2)}  billed $${billed.toFixed(5)}  ledger $${totals.usd.toFixed(5)}  overshoot ${(over * 100).toFixed(1).padStart(5)}%  over-billed calls ${totals.over_billed.calls}  16-call bound $${(cap + (16 * 2000 * PRICE.input) / 1e6).toFixed(3)}`,
  );
  await srv.close();
}
console.log(`  worst overshoot: ${(worstLate * 100).toFixed(1)}% of the cap`);

console.log("2. cap at 40% of the uncapped cost, 6 seeds × 8 steps, concurrency 4");
for (const tokenize of ["none", "llama.cpp", "vllm", "llama-cpp-python"] as Tok[]) {
  const srv = await startOpenAIServer(tokenize === "none" ? {} : { tokenize });
  await run(srv.baseURL, 6, { steps: 8, concurrency: 4 });
  const cost = usd(srv.billed);
  srv.clearRequests();
  const cap = 0.4 * cost;
  const { error } = await run(srv.baseURL, 6, { steps: 8, concurrency: 4, maxUsd: cap });
  const spent = usd(srv.billed);
  console.log(`  count=${tokenize.padEnd(16)} cost $${cost.toFixed(6)}  cap $${cap.toFixed(6)}  spent $${spent.toFixed(6)} = ${((spent / cap) * 100).toFixed(1)}% of the cap  (exit ${error ? 3 : 0})`);
  await srv.close();
}
