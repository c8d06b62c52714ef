/**
 * The quality row of bench/quality/run.ts for a run directory that already exists (e.g. a large
 * `rankchain generate` run): the same metrics (bench/quality/metrics.ts) on its chains.jsonl, and
 * chains/hour from its run.json timings (chains_done / totals.elapsed_s).
 *
 *   npx tsx bench/quality/corpus.ts RUN_DIR [--json FILE]
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createEmbedder } from "../../src/embed/index.ts";
import { ChainRecordSchema, type ChainRecord } from "../../src/store/chain-record.ts";
import { chainQuality, POLICIES } from "./metrics.ts";

const args = process.argv.slice(2);
const dir = args.find((a) => !a.startsWith("--") && args[args.indexOf(a) - 1] !== "--json");
if (!dir) {
  console.error("usage: npx tsx bench/quality/corpus.ts RUN_DIR [--json FILE]");
  process.exit(2);
}
const jsonOut = args.includes("--json") ? args[args.indexOf("--json") + 1] : undefined;
process.env.HF_HUB_OFFLINE ??= "1";

const run = JSON.parse(readFileSync(join(dir, "run.json"), "utf8")) as {
  status: string;
  fingerprint: { model: string; steering: string; guidance: number; cfg_top_k: number | null; temperature: number; steps: number; prompt_version: number };
  totals: { chains_done: number; elapsed_s: number; steps: number };
};
const chains: ChainRecord[] = [];
let torn = 0;
readFileSync(join(dir, "chains.jsonl"), "utf8")
  .split("\n")
  .forEach((line, i, all) => {
    if (line.trim() === "") return;
    try {
      chains.push(ChainRecordSchema.parse(JSON.parse(line)));
    } catch (e) {
      if (i >= all.length - 2) torn++;
      else throw new Error(`${join(dir, "chains.jsonl")}:${i + 1}: ${(e as Error).message}`);
    }
  });
const steps = run.fingerprint.steps;
const embedder = await createEmbedder("all-MiniLM-L6-v2");
try {
  const q = await chainQuality(chains, embedder, steps);
  const hours = run.totals.elapsed_s / 3600;
  const row = {
    dir,
    status: run.status,
    setting: run.fingerprint,
    chains: chains.length,
    torn_last_lines: torn,
    chains_per_hour: hours > 0 ? run.totals.chains_done / hours : null,
    elapsed_s: run.totals.elapsed_s,
    generated_steps_mean: chains.reduce((a, c) => a + c.steps.length, 0) / (chains.length || 1),
    retries_per_chain: chains.reduce((a, c) => a + (((c as Record<string, unknown>).retries as unknown[] | undefined)?.length ?? 0), 0) / (chains.length || 1),
    acceptance: q.acceptance,
    kept_whole: q.kept_whole,
    repair_kept_ge5: q.repair_kept_ge5,
    mean_kept_steps_repair: q.mean_kept_steps_repair,
    drift_span_median: q.median,
    spearman_mean: q.spearman_mean,
    distinct2: q.distinct2,
  };
  const f = (x: number | null, d = 2) => (x === null ? "–" : x.toFixed(d));
  console.log(JSON.stringify(row, null, 2));
  console.log(
    `| ${run.fingerprint.model} ${run.fingerprint.steering} v${run.fingerprint.prompt_version} γ${run.fingerprint.guidance} top-${run.fingerprint.cfg_top_k} T ${run.fingerprint.temperature}, ${steps} steps, ${chains.length} seeds | ${f(row.chains_per_hour, 0)} | ${f(row.generated_steps_mean, 1)} | ${POLICIES.map((p) => f(q.acceptance[p]!)).join(" / ")} | ${f(q.repair_kept_ge5)} | ${f(q.mean_kept_steps_repair, 1)} | ${f(q.median)} | ${f(q.spearman_mean)} | ${f(q.distinct2)} | ${f(row.retries_per_chain, 1)} |`,
  );
  if (jsonOut) writeFileSync(jsonOut, JSON.stringify(row, null, 2) + "\n");
} finally {
  await embedder.dispose();
}
