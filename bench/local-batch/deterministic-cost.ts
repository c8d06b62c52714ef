/**
 * What --deterministic costs per operation, interleaved (each measurement alternates between the
 * two contexts, so load from other processes hits both alike): one llama.cpp thread each, the same
 * model, a context with flash attention (deterministic) and one without (default).
 *   decode step   one token on each of S sequences in one batch, logits of one token read back
 *   prefill       a P-token prompt tail: in one piece (default) vs in pieces of DETERMINISTIC_PIECE
 *                 (deterministic), each piece its own decode step
 * Run: npx tsx bench/local-batch/deterministic-cost.ts [REPEATS]
 */
import { loadavg } from "node:os";
import { getLlama, LlamaLogLevel, type LlamaContext, type LlamaContextSequence, type Token } from "node-llama-cpp";
import { DETERMINISTIC_PIECE, pieces } from "../../src/llm/local/index.ts";
import { resolveModelPath } from "../../src/models/installed.ts";

const REPEATS = Number(process.argv[2] ?? 15);
const r = resolveModelPath(undefined, process.env);
if (r.kind !== "file") throw new Error("default model not installed: rankchain models pull");
const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
const model = await llama.loadModel({ modelPath: r.path });
const load = () => loadavg().map((x) => x.toFixed(2)).join(" ");
const S = [2, 16];
const mk = (fa: boolean) => model.createContext({ sequences: 16, contextSize: 512, threads: 1, flashAttention: fa, batchSize: 512 });
const ctxs: Record<string, LlamaContext> = { default: await mk(false), deterministic: await mk(true) };
const seqs = Object.fromEntries(Object.entries(ctxs).map(([k, c]) => [k, Array.from({ length: 16 }, () => c.getSequence())])) as Record<string, LlamaContextSequence[]>;
const prompt = model.tokenize(Array.from({ length: 6 }, (_, i) => `Sentence ${i} is about boats, rain and bread in a small town.`).join(" "));
console.log(`load average ${load()}; prompt ${prompt.length} tokens; pieces of ${DETERMINISTIC_PIECE}; ${REPEATS} repeats`);
const one = (t: Token) => [[t, { generateNext: { logits: { filter: { tokens: [0 as Token] } } } }]] as never;
const times = new Map<string, number[]>();
const rec = (k: string, ms: number) => times.set(k, [...(times.get(k) ?? []), ms]);
// every sequence holds the prompt (evaluated whole; only timing below)
for (const k of Object.keys(ctxs)) for (const s of seqs[k]!) await s.controlledEvaluate(prompt);
for (let rep = 0; rep < REPEATS; rep++) {
  for (const k of rep % 2 ? ["deterministic", "default"] : ["default", "deterministic"]) {
    for (const n of S) {
      const t0 = performance.now();
      await Promise.all(seqs[k]!.slice(0, n).map((s) => s.controlledEvaluate(one(prompt[rep % prompt.length]!))));
      rec(`${k} decode step, ${n} sequences`, performance.now() - t0);
      await Promise.all(seqs[k]!.slice(0, n).map((s) => s.eraseContextTokenRanges([{ start: s.nextTokenIndex - 1, end: s.nextTokenIndex }])));
    }
    // prefill the prompt tail again on sequence 0 (the first 8 tokens kept as a cached prefix)
    const s0 = seqs[k]![0]!;
    await s0.eraseContextTokenRanges([{ start: 8, end: s0.nextTokenIndex }]);
    const tail = prompt.slice(8);
    const t0 = performance.now();
    if (k === "default") await s0.controlledEvaluate([...tail.slice(0, -1), ...one(tail.at(-1)!)]);
    else {
      const parts = pieces(tail, DETERMINISTIC_PIECE);
      for (const p of parts.slice(0, -1)) await s0.controlledEvaluate(p);
      const last = parts.at(-1)!;
      await s0.controlledEvaluate([...last.slice(0, -1), ...one(last.at(-1)!)]);
    }
    rec(`${k} prefill ${tail.length} tokens`, performance.now() - t0);
  }
}
const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
for (const what of [...S.map((n) => `decode step, ${n} sequences`), `prefill ${prompt.length - 8} tokens`]) {
  const a = med(times.get(`default ${what}`)!);
  const b = med(times.get(`deterministic ${what}`)!);
  console.log(`${what.padEnd(26)} default ${a.toFixed(1).padStart(7)} ms   deterministic ${b.toFixed(1).padStart(7)} ms   ratio ${(b / a).toFixed(2)}`);
}
console.log(`load average at the end ${load()}`);
for (const c of Object.values(ctxs)) await c.dispose();
await llama.dispose();
