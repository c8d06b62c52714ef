/**
 * Chain quality sweep: generates chains from one seed sample under several generator settings
 * (model, steering, γ, prompt version, steps, temperature, oversample, concurrency), validates them with the
 * real embedder, and prints one table (plus JSON with --json FILE):
 *
 *   chains/hour, acceptance per policy (strict / repair / lenient kept-whole), mean kept steps under
 *   repair, share of chains kept with ≥ 5 steps under repair, drift span (1 − cosine of the last
 *   kept step to the anchor; median), mean Spearman of kept chains, distinct-2 over all kept
 *   steps, and USD per accepted chain.
 *
 *   npx tsx bench/quality/run.ts [--n 4] [--steps 6] [--grid small|models|FILE.json] [--json out.json] [--seeds FILE]
 *
 * Settings run one after another in one process, so contention from other work on the machine
 * hits them alike; chains/hour is still only comparable inside one run of this script.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { PROJECT_ROOT } from "../../src/config/paths.ts";
import { GenerateConfigSchema, type GenerateConfig } from "../../src/config/run-config.ts";
import { createEmbedder } from "../../src/embed/index.ts";
import { runGenerate } from "../../src/generate/run.ts";
import { ChainRecordSchema, type ChainRecord } from "../../src/store/chain-record.ts";
import { mulberry32 } from "../../src/util/random.ts";
import { words } from "../../src/util/text.ts";
import { chainQuality, POLICIES } from "./metrics.ts";

interface Setting {
  name: string;
  model: string;
  steering: "cfg" | "stepwise" | "ladder";
  guidance?: number;
  promptVersion?: number;
  temperature?: number;
  steps?: number;
  oversample?: number;
  cfgTopK?: number;
  /** Chains generated at once (default 1; local models batch them in one context). */
  concurrency?: number;
}

const GRIDS: Record<string, Setting[]> = {
  small: [
    { name: "smol cfg v1 g1.5 t0", model: "smollm2-135m-instruct", steering: "cfg", guidance: 1.5, promptVersion: 1, temperature: 0 },
    { name: "smol cfg v2 g1.5 t0", model: "smollm2-135m-instruct", steering: "cfg", guidance: 1.5, promptVersion: 2, temperature: 0 },
    { name: "smol cfg v2 g1.5 t0.7", model: "smollm2-135m-instruct", steering: "cfg", guidance: 1.5, promptVersion: 2, temperature: 0.7 },
    { name: "smol cfg v2 g3 t0", model: "smollm2-135m-instruct", steering: "cfg", guidance: 3, promptVersion: 2, temperature: 0 },
    { name: "smol stepwise t0.7", model: "smollm2-135m-instruct", steering: "stepwise", temperature: 0.7 },
  ],
  models: [
    { name: "qwen1.5b cfg v2 g1.5 t0", model: "qwen2.5-coder-1.5b-instruct", steering: "cfg", guidance: 1.5, promptVersion: 2, temperature: 0 },
    { name: "qwen1.5b stepwise t0", model: "qwen2.5-coder-1.5b-instruct", steering: "stepwise", temperature: 0 },
    { name: "qwen0.5b cfg v2 g1.5 t0", model: "qwen2.5-coder-0.5b-instruct", steering: "cfg", guidance: 1.5, promptVersion: 2, temperature: 0 },
  ],
};

const args = process.argv.slice(2);
const flag = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const n = Number(flag("--n") ?? 4);
const steps = Number(flag("--steps") ?? 6);
const gridArg = flag("--grid") ?? "small";
const grid: Setting[] = GRIDS[gridArg] ?? (JSON.parse(readFileSync(gridArg, "utf8")) as Setting[]);
const shared = resolve(PROJECT_ROOT, "..", "shared", "eval-data", "seeds-snli-dev-sentences.txt");
const seedsFile = flag("--seeds") ?? (existsSync(shared) ? shared : join(PROJECT_ROOT, "examples", "seeds.txt"));
process.env.HF_HUB_OFFLINE ??= "1";

// a fixed random sample of seed sentences (the same for every setting)
const all = readFileSync(seedsFile, "utf8").split("\n").map((l) => l.trim()).filter((l) => l !== "" && words(l).length >= 5 && words(l).length <= 25);
const rand = mulberry32(14);
const sample: string[] = [];
const used = new Set<number>();
while (sample.length < Math.min(n, all.length)) {
  const i = Math.floor(rand() * all.length);
  if (!used.has(i)) {
    used.add(i);
    sample.push(all[i]!);
  }
}
const work = mkdtempSync(join(tmpdir(), "rankchain-quality-"));
const seedPath = join(work, "seeds.txt");
writeFileSync(seedPath, sample.join("\n") + "\n");

const embedder = await createEmbedder("all-MiniLM-L6-v2");
const rows: Record<string, unknown>[] = [];
console.log(`seeds: ${sample.length} from ${seedsFile}; ${steps} steps; embedder ${embedder.info.id}`);
try {
  for (const s of grid) {
    const out = join(work, s.name.replace(/[^a-z0-9.]+/gi, "_"));
    const chainSteps = s.steps ?? steps;
    const cfg: GenerateConfig = GenerateConfigSchema.parse({
      input: seedPath,
      out,
      provider: "local",
      model: s.model,
      steering: s.steering,
      guidance: s.guidance ?? 1.5,
      promptVersion: s.promptVersion,
      temperature: s.temperature ?? 0,
      seed: 1,
      steps: chainSteps,
      oversample: s.oversample ?? 1,
      cfgTopK: s.steering === "cfg" ? (s.cfgTopK ?? 20) : undefined,
      concurrency: s.concurrency ?? 1,
      // 48 tokens per sentence; a ladder call writes every step in one answer
      maxOutputTokens: s.steering === "ladder" ? 48 * chainSteps : 48,
      quiet: true,
      // a batched call on a slow CPU can take minutes; the sweep measures, it does not time out
      timeoutMs: 600_000,
      gpu: "off",
    });
    const t0 = performance.now();
    try {
      await runGenerate(cfg);
    } catch (e) {
      console.log(`${s.name}: failed: ${(e as Error).message}`);
      continue;
    }
    const hours = (performance.now() - t0) / 3.6e6;
    const chains: ChainRecord[] = readFileSync(join(out, "chains.jsonl"), "utf8")
      .split("\n")
      .filter((l) => l.trim() !== "")
      .map((l) => ChainRecordSchema.parse(JSON.parse(l)));
    const q = await chainQuality(chains, embedder, chainSteps);
    const { byPolicy, median } = q;
    const usd = chains.reduce((a, c) => a + c.usage.usd, 0);
    const row = {
      setting: s.name,
      ...s,
      chains: chains.length,
      chains_per_hour: Math.round(chains.length / hours),
      generated_steps_mean: chains.reduce((a, c) => a + c.steps.length, 0) / chains.length,
      retries_per_chain: chains.reduce((a, c) => a + (((c as Record<string, unknown>).retries as unknown[] | undefined)?.length ?? 0), 0) / chains.length,
      acceptance: q.acceptance,
      kept_whole: q.kept_whole,
      repair_kept_ge5: q.repair_kept_ge5,
      mean_kept_steps_repair: q.mean_kept_steps_repair,
      drift_span_median: median,
      spearman_mean: q.spearman_mean,
      distinct2: q.distinct2,
      usd_per_accepted_chain: byPolicy.repair!.kept ? usd / byPolicy.repair!.kept : null,
      example: chains.find((c) => c.steps.length >= 3) ?? chains[0],
    };
    rows.push(row);
    console.log(
      `${s.name.padEnd(26)} ch/h ${String(row.chains_per_hour).padStart(5)}  gen ${row.generated_steps_mean.toFixed(1)}  acc s/r/l ${POLICIES.map((p) => row.acceptance[p]!.toFixed(2)).join("/")}  ≥5@repair ${row.repair_kept_ge5.toFixed(2)}  kept ${row.mean_kept_steps_repair.toFixed(1)}  span ${median === null ? "-" : median.toFixed(2)}  rho ${row.spearman_mean === null ? "-" : row.spearman_mean.toFixed(2)}  d2 ${row.distinct2 === null ? "-" : row.distinct2.toFixed(2)}  retries ${row.retries_per_chain.toFixed(1)}`,
    );
  }
} finally {
  await embedder.dispose();
  const out = flag("--json");
  if (out) writeFileSync(out, JSON.stringify({ seeds_file: seedsFile, n: sample.length, steps, rows }, null, 2) + "\n");
  if (!args.includes("--keep")) rmSync(work, { recursive: true, force: true });
  else console.log(`run dirs kept in ${work}`);
}
