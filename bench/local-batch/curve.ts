/**
 * The cost curve of one llama.cpp decode step as the number of sequences in the batch grows: for
 * S = 1, 2, 4, 8, 16 sequences, each sequence evaluates one new token per step, all S in one batch
 * (node-llama-cpp queues the S controlledEvaluate calls of one tick into one llama_decode). Measured
 * at threads 1 and 2, with the next token only (what plain decoding reads back) and with the full
 * logits of every sequence read into JavaScript (what exact CFG needs). Rounds alternate the order
 * of all (threads, S, readback) cells so that load from other processes falls on all of them alike;
 * the median round is reported. Throughput ratio = (S tokens per step / step time) ÷ (1 / step time at S = 1).
 * Run: npx tsx bench/local-batch/curve.ts [MODEL] [ROUNDS] [STEPS]
 */
import { availableParallelism, cpus } from "node:os";
import { getLlama, LlamaLogLevel, type LlamaContextSequence, type Token } from "node-llama-cpp";
import { resolveModelPath } from "../../src/models/installed.ts";
import { pullModel } from "../../src/models/index.ts";

const modelName = process.argv[2] ?? "default";
const ROUNDS = Number(process.argv[3] ?? 3);
const STEPS = Number(process.argv[4] ?? 16);
const SIZES = [1, 2, 4, 8, 16];
const THREADS = [1, 2];
const READBACKS = ["token", "logits"] as const;

if (modelName === "default" || !modelName.includes("/")) await pullModel(modelName === "default" ? undefined : modelName);
const resolved = resolveModelPath(modelName);
if (resolved.kind !== "file") throw new Error("bench needs a local file");
// maxThreads 0: each context uses exactly its own thread count (no sharing between the two contexts)
const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error, maxThreads: 0 });
const model = await llama.loadModel({ modelPath: resolved.path });
const maxS = Math.max(...SIZES);
const contexts = new Map<number, LlamaContextSequence[]>();
for (const t of THREADS) {
  const ctx = await model.createContext({ contextSize: 512, sequences: maxS, threads: t });
  contexts.set(t, Array.from({ length: maxS }, () => ctx.getSequence()));
}
const prompt = model.tokenize("Once upon a time, in a village by the sea, there lived an old fisherman who");
console.log(`model ${resolved.path.split("/").pop()}, ${availableParallelism()} cores (${cpus()[0]?.model ?? "?"}), ${STEPS} steps per cell, ${ROUNDS} rounds; machine shared with other jobs`);

/** Resets S sequences to the prompt, then times STEPS decode steps of S tokens each; ms per step. */
async function cell(threads: number, s: number, readback: (typeof READBACKS)[number]): Promise<number> {
  const seqs = contexts.get(threads)!.slice(0, s);
  for (const q of seqs) await q.clearHistory();
  await Promise.all(seqs.map((q) => q.evaluateWithoutGeneratingNewTokens(prompt)));
  let tokens: Token[] = seqs.map((_, i) => prompt[prompt.length - 1 - (i % 3)]!);
  const next = readback === "token" ? { token: true as const } : { logits: true as const, token: true as const };
  const t0 = performance.now();
  for (let step = 0; step < STEPS; step++) {
    const results = await Promise.all(seqs.map((q, i) => q.controlledEvaluate([[tokens[i]!, { generateNext: next }]])));
    tokens = results.map((r) => r[0]!.next.token!);
  }
  return (performance.now() - t0) / STEPS;
}

const cells = THREADS.flatMap((t) => SIZES.flatMap((s) => READBACKS.map((r) => ({ t, s, r, key: `${t}/${s}/${r}` }))));
for (const c of cells) { await cell(c.t, c.s, c.r); if (process.env.DEBUG_CURVE) console.log("warm", c.key); } // warm-up
const samples = new Map(cells.map((c) => [c.key, [] as number[]]));
for (let round = 0; round < ROUNDS; round++) {
  const order = round % 2 === 0 ? cells : [...cells].reverse();
  for (const c of order) samples.get(c.key)!.push(await cell(c.t, c.s, c.r));
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
for (const r of READBACKS) {
  console.log(`\nreadback: ${r === "token" ? "next token only (plain decoding)" : "full logits of every sequence (exact CFG)"}`);
  console.log(`threads  S   ms/step   tokens/s   step cost vs S=1   throughput vs S=1`);
  for (const t of THREADS) {
    const base = median(samples.get(`${t}/1/${r}`)!);
    for (const s of SIZES) {
      const ms = median(samples.get(`${t}/${s}/${r}`)!);
      console.log(`${String(t).padStart(7)} ${String(s).padStart(3)} ${ms.toFixed(1).padStart(9)} ${((1000 * s) / ms).toFixed(1).padStart(10)} ${(ms / base).toFixed(2).padStart(18)} ${((s * base) / ms).toFixed(2).padStart(19)}`);
    }
  }
}
await llama.dispose();
