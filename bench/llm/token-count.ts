/**
 * bench/llm/token-count: the pre-call input-token counts the budget reserves, side by side on the
 * same stepwise prompts built from real seed sentences:
 *
 *   - tiktoken (o200k_base / cl100k_base) with the chat overhead — exact for OpenAI models;
 *   - conservativeTokenBound (UTF-8 bytes + 16/message + 64) — what openai-compatible servers and the
 *     Anthropic fallback reserve.
 *
 * Prints how much the bound over-reserves (bound / exact, i.e. the budget headroom it costs) and
 * how fast each counts (prompts per second), as ratios measured in one run.
 *
 *   npx tsx bench/llm/token-count.ts [--n 2000] [--file ../shared/eval-data/seeds-wiki1m-head.txt]
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { PROJECT_ROOT } from "../../src/config/paths.ts";
import { conservativeTokenBound, countOpenAIChatTokens, getEncoder } from "../../src/llm/tokens.ts";
import type { ChatMessage } from "../../src/llm/types.ts";

const { values } = parseArgs({
  options: {
    n: { type: "string", default: "2000" },
    file: { type: "string" },
  },
});
const n = Number(values.n);
const files = values.file
  ? [values.file]
  : ["seeds-wiki1m-head.txt", "seeds-snli-dev-sentences.txt"].map((f) => join(PROJECT_ROOT, "..", "shared", "eval-data", f));

const system =
  "You build ranking chains for training sentence-embedding models. A chain starts at an anchor sentence; each following sentence is a rewrite of the previous one that drifts a little further in meaning from the anchor. Answer with the new sentence only.";

function prompts(seeds: string[]): ChatMessage[][] {
  return seeds.map((s, i) => [
    { role: "system", content: system },
    {
      role: "user",
      content: `Anchor:\n<sentence>${s}</sentence>\n\nChain so far:\n1. ${seeds[(i + 1) % seeds.length]}\n\nWrite step 2 of 8: rewrite the last sentence one small step further from the anchor.`,
    },
  ]);
}

function best<T>(rounds: number, f: () => T): { ms: number; value: T } {
  let bestMs = Infinity;
  let value!: T;
  for (let r = 0; r < rounds; r++) {
    const t = performance.now();
    value = f();
    bestMs = Math.min(bestMs, performance.now() - t);
  }
  return { ms: bestMs, value };
}

const rows: string[][] = [["seeds", "encoding", "mean exact", "mean bound", "bound/exact", "tiktoken prompts/s", "bound prompts/s", "speed ratio"]];
let ran = 0;
for (const file of files) {
  if (!existsSync(file)) {
    console.error(`skip: ${file} not found (the eval data lives in ../shared/eval-data)`);
    continue;
  }
  const seeds = readFileSync(file, "utf8").split("\n").map((l) => l.trim()).filter(Boolean).slice(0, n);
  const ps = prompts(seeds);
  for (const [model, enc] of [["gpt-4o-mini", "o200k_base"], ["gpt-4-turbo", "cl100k_base"]] as const) {
    await getEncoder(enc);
    await countOpenAIChatTokens(model, ps[0]!); // warm-up
    let exactTotal = 0;
    const t = performance.now();
    for (const p of ps) exactTotal += (await countOpenAIChatTokens(model, p)).tokens;
    const tiktokenMs = performance.now() - t;
    const bound = best(3, () => ps.reduce((s, p) => s + conservativeTokenBound(p), 0));
    rows.push([
      file.split("/").pop()!,
      enc,
      (exactTotal / ps.length).toFixed(1),
      (bound.value / ps.length).toFixed(1),
      (bound.value / exactTotal).toFixed(2) + "x",
      Math.round((ps.length / tiktokenMs) * 1000).toString(),
      Math.round((ps.length / bound.ms) * 1000).toString(),
      (tiktokenMs / bound.ms).toFixed(0) + "x faster",
    ]);
    ran++;
  }
}
if (ran === 0) {
  console.error("no seed files found; pass --file PATH");
  process.exit(0);
}
const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
for (const r of rows) console.log(r.map((c, i) => c.padEnd(widths[i]!)).join("  "));
console.log(`\n${n} prompts per file (stepwise prompt, 2 messages). bound/exact = how much more budget the conservative bound reserves than tiktoken would.`);
