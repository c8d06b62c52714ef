/**
 * `rankchain validate` at corpus scale: a run directory with STEPS chain steps (default 100,000;
 * 8 steps per chain plus its anchor), validated with the default in-process ONNX embedder
 * (all-MiniLM-L6-v2) at --batch-size 16, 64 and 256. Each run is a separate `rankchain validate`
 * process under /usr/bin/time, so its peak RSS is its own; rounds alternate the order of the batch
 * sizes and the fastest round per size is reported (the machine may be shared). Reports sentences/s
 * (anchors + steps embedded, over the whole command: start-up, embedding, gates, writing) and peak RSS.
 * Chains are built from ../shared/eval-data/seeds-snli-dev-sentences.txt when present (each step
 * swaps more words of the anchor for words of other seeds), else from built-in sentences.
 * --ort compares onnxruntime session settings (env of the validate process), each a cell next to
 * the batch sizes: "default" (onnxruntime's threads, no spinning: rankchain's default), "spin1"
 * (RANKCHAIN_ORT_SPIN=1: idle intra-op threads busy-wait, onnxruntime's own default), "spin0",
 * "t1" (RANKCHAIN_ORT_THREADS=1), "t1spin0", "t2spin0"; CPU seconds
 * (user + sys) are reported next to wall time.
 * Run: npx tsx bench/validate/scale.ts [--steps 100000] [--sizes 16,64,256] [--rounds 1] [--ort default,spin0,t1]
 */
import { spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { PROJECT_ROOT } from "../../src/config/paths.ts";
import { mulberry32 } from "../../src/util/random.ts";

const { values } = parseArgs({ options: { steps: { type: "string", default: "100000" }, sizes: { type: "string", default: "16,64,256" }, rounds: { type: "string", default: "1" }, ort: { type: "string", default: "default" } } });
const ORT_VARIANTS: Record<string, Record<string, string>> = {
  default: {},
  spin1: { RANKCHAIN_ORT_SPIN: "1" },
  spin0: { RANKCHAIN_ORT_SPIN: "0" },
  t1: { RANKCHAIN_ORT_THREADS: "1" },
  t1spin0: { RANKCHAIN_ORT_THREADS: "1", RANKCHAIN_ORT_SPIN: "0" },
  t2spin0: { RANKCHAIN_ORT_THREADS: "2", RANKCHAIN_ORT_SPIN: "0" },
};
const VARIANTS = values.ort.split(",");
for (const v of VARIANTS) if (!ORT_VARIANTS[v]) throw new Error(`--ort: unknown setting "${v}" (${Object.keys(ORT_VARIANTS).join(", ")})`);
const STEPS = Number(values.steps);
const SIZES = values.sizes.split(",").map(Number);
const ROUNDS = Number(values.rounds);
const PER_CHAIN = 8;

const seedsPath = [join(PROJECT_ROOT, "..", "shared"), join(PROJECT_ROOT, "..", "..", "shared")].map((d) => join(d, "eval-data", "seeds-snli-dev-sentences.txt")).find((p) => existsSync(p));
const lines = seedsPath
  ? readFileSync(seedsPath, "utf8").split("\n").map((l) => l.trim()).filter((l) => l.split(" ").length >= 6)
  : ["A man is playing a guitar on the stage in front of a large crowd.", "Two children are building a sandcastle on the beach near the water.", "A woman is slicing tomatoes in the kitchen for a fresh salad.", "The train arrived at the station later than the passengers expected."];
if (!seedsPath) console.log("note: ../shared/eval-data/seeds-snli-dev-sentences.txt not found; chains from built-in sentences");
const vocab = lines.flatMap((l) => l.split(" "));
const rand = mulberry32(1);
const chains = Math.ceil(STEPS / PER_CHAIN);
const base = mkdtempSync(join(tmpdir(), "rankchain-validate-scale-"));
const template = join(base, "template");
mkdirSync(template);
const out: string[] = [];
for (let c = 0; c < chains; c++) {
  const anchor = lines[c % lines.length]!;
  const words = anchor.split(" ");
  const order = words.map((_, i) => i).sort(() => rand() - 0.5);
  const steps: string[] = [];
  for (let t = 1; t <= PER_CHAIN; t++) {
    const w = [...words];
    for (const pos of order.slice(0, Math.max(1, Math.round((words.length * t) / PER_CHAIN)))) w[pos] = vocab[Math.floor(rand() * vocab.length)]!;
    steps.push(w.join(" "));
  }
  out.push(JSON.stringify({ id: `c${c}`, anchor, steps, generator: { provider: "bench", model: "synthetic", steering: "stepwise", prompt: "stepwise", prompt_version: 1 }, usage: { input_tokens: 0, output_tokens: 0, usd: 0 } }));
}
writeFileSync(join(template, "chains.jsonl"), out.join("\n") + "\n");
const sentences = chains * (PER_CHAIN + 1);
const load = () => loadavg().map((x) => x.toFixed(2)).join(" ");
console.log(`validate at scale: ${chains} chains, ${chains * PER_CHAIN} steps, ${sentences} sentences embedded; ${availableParallelism()} cores; load average ${load()}; machine shared with other jobs`);

const cells = VARIANTS.flatMap((variant) => SIZES.map((size) => ({ variant, size, key: `${variant} ${size}` })));
const best = new Map<string, { secs: number; rssMb: number; cpu: number }>();
for (let round = 0; round < ROUNDS; round++) {
  for (const { variant, size, key } of round % 2 === 0 ? cells : [...cells].reverse()) {
    const dir = join(base, `run-${size}`);
    rmSync(dir, { recursive: true, force: true });
    cpSync(template, dir, { recursive: true });
    const t0 = performance.now();
    const r = spawnSync("/usr/bin/time", ["-v", process.execPath, join(PROJECT_ROOT, "bin", "rankchain.js"), "validate", dir, "--batch-size", String(size), "--quiet", "--no-report"], {
      encoding: "utf8",
      env: { ...process.env, ONNXRUNTIME_NODE_INSTALL: "skip", ...ORT_VARIANTS[variant] },
      maxBuffer: 1 << 26,
    });
    const secs = (performance.now() - t0) / 1000;
    if (r.status !== 0) {
      console.log(`--batch-size ${size}: exit ${r.status}\n${r.stderr.slice(-2000)}`);
      continue;
    }
    const rssKb = Number(/Maximum resident set size \(kbytes\): (\d+)/.exec(r.stderr)?.[1] ?? NaN);
    const cpu = Number(/User time \(seconds\): ([\d.]+)/.exec(r.stderr)?.[1] ?? NaN) + Number(/System time \(seconds\): ([\d.]+)/.exec(r.stderr)?.[1] ?? NaN);
    const prev = best.get(key);
    if (!prev || secs < prev.secs) best.set(key, { secs, rssMb: rssKb / 1024, cpu });
    console.log(`  round ${round + 1} ${variant} --batch-size ${size}: ${secs.toFixed(1)} s, ${(sentences / secs).toFixed(1)} sentences/s, CPU ${cpu.toFixed(1)} s, peak RSS ${(rssKb / 1024).toFixed(0)} MB; load ${load()}`);
  }
}
const ref = best.get(`${VARIANTS[0]} 64`) ?? [...best.values()][0];
console.log(`ort setting  batch size   seconds   sentences/s   CPU s   peak RSS MB   speed vs ${VARIANTS[0]} 64`);
for (const { variant, size, key } of cells) {
  const b = best.get(key);
  if (!b) continue;
  console.log(`${variant.padEnd(11)} ${String(size).padStart(11)} ${b.secs.toFixed(1).padStart(9)} ${(sentences / b.secs).toFixed(1).padStart(13)} ${b.cpu.toFixed(1).padStart(7)} ${b.rssMb.toFixed(0).padStart(13)} ${ref ? (ref.secs / b.secs).toFixed(2).padStart(13) : ""}`);
}
console.log(`load average at the end ${load()}`);
rmSync(base, { recursive: true, force: true });
