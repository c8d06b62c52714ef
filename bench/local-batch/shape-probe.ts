/**
 * Does one sequence's next-token logit vector depend on what else is in the llama.cpp batch?
 * Bitwise comparisons (no timing) of one sequence's logits under different batch shapes: a prompt
 * beside another sequence's prompt, in pieces, token by token, a long prompt (>= 64 tokens: ggml-cpu's
 * tiled flash-attention kernel) whole vs in pieces of 63, and a decode step beside other sequences.
 * What it found is written up in batched-decoding.ts (DETERMINISTIC_PIECE) and docs/local-models.md.
 * Run: npx tsx bench/local-batch/shape-probe.ts [flashAttention:0|1]
 */
import { getLlama, LlamaLogLevel, type LlamaContextSequence, type Token } from "node-llama-cpp";
import { resolveModelPath } from "../../src/models/installed.ts";

const fa = process.argv[2] === "1";
const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
const r = resolveModelPath(undefined, process.env);
if (r.kind !== "file") throw new Error("default model not installed");
const model = await llama.loadModel({ modelPath: r.path });
const P = model.tokenize("The quick brown fox jumps over the lazy dog near the riverbank while the farmer watches from a distance, thinking of rain.");
const Q = model.tokenize("A completely different sentence about interest rates.");
const t = model.tokenize(" And")[0]!;

async function logits(seq: LlamaContextSequence, tokens: Token[]): Promise<Float32Array> {
  const input = tokens.map((x, i) => (i === tokens.length - 1 ? ([x, { generateNext: { logits: true as const } }] as const) : x));
  const res = await seq.controlledEvaluate(input as never);
  const m = res[tokens.length - 1]!.next!.logits!;
  const out = new Float32Array(m.size);
  for (const [k, v] of m) out[k] = v;
  return out;
}
const diff = (a: Float32Array, b: Float32Array) => {
  let n = 0, max = 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) (n++, (max = Math.max(max, Math.abs(a[i]! - b[i]!))));
  return n === 0 ? "IDENTICAL" : `${n} differ, max |d| ${max.toExponential(2)}`;
};
async function fresh() {
  const ctx = await model.createContext({ sequences: 4, contextSize: 512, threads: 1, batchSize: 512, flashAttention: fa });
  return { ctx, s: [ctx.getSequence(), ctx.getSequence(), ctx.getSequence(), ctx.getSequence()] };
}
console.log(`flashAttention ${fa}; P ${P.length} tokens, Q ${Q.length}`);
// reference: P alone in one batch, then t alone
let { ctx, s } = await fresh();
const refP = await logits(s[0]!, P);
const refT = await logits(s[0]!, [t]);
await ctx.dispose();
// 1. P prefilled alongside Q (other sequence) in one batch (split_equal chunks P differently)
({ ctx, s } = await fresh());
const [p1] = await Promise.all([logits(s[0]!, P), logits(s[1]!, Q)]);
console.log("prefill P beside Q (one batch):          ", diff(refP, p1));
const t1 = await logits(s[0]!, [t]);
console.log("  then t alone:                          ", diff(refT, t1));
await ctx.dispose();
// 2. P prefilled alone, then t decoded beside 1 / 3 other sequences' single tokens
({ ctx, s } = await fresh());
await logits(s[0]!, P);
await logits(s[1]!, Q);
await logits(s[2]!, Q);
await logits(s[3]!, Q);
const [t2] = await Promise.all([logits(s[0]!, [t]), logits(s[1]!, [t])]);
console.log("t beside 1 single token (2 outputs):     ", diff(refT, t2));
await ctx.dispose();
// 3. P in two chunks (prefix, then rest) alone
({ ctx, s } = await fresh());
await logits(s[0]!, P.slice(0, 5));
const p3 = await logits(s[0]!, P.slice(5));
console.log("prefill P as 5 + rest, alone:            ", diff(refP, p3));
await ctx.dispose();
// 4. P token by token alone
({ ctx, s } = await fresh());
let p4!: Float32Array;
for (const x of P) p4 = await logits(s[0]!, [x]);
console.log("prefill P token by token, alone:         ", diff(refP, p4));
const t4 = await logits(s[0]!, [t]);
console.log("  then t alone:                          ", diff(refT, t4));
await ctx.dispose();
// 5. t decoded alone but with another sequence holding a longer cache (n_kv)
({ ctx, s } = await fresh());
await logits(s[0]!, P);
const longer = Array.from({ length: 300 }, (_, i) => Q[i % Q.length]!);
await logits(s[1]!, longer);
const [t5] = await Promise.all([logits(s[0]!, [t]), logits(s[1]!, [t])]);
console.log("t beside a sequence with 300 cached (n_kv 512):", diff(refT, t5));
await ctx.dispose();
// 6. a long prompt (>= 64 tokens: ggml-cpu's tiled flash-attention path for a chunk of >= 64 query rows)
const L = model.tokenize(Array.from({ length: 8 }, (_, i) => `Sentence number ${i} talks about a different topic, like boats, rain and bread.`).join(" "));
async function longIn(pieces: number, beside: boolean) {
  const c = await fresh();
  if (beside) await logits(c.s[1]!, Q);
  let last!: Float32Array;
  for (let i = 0; i < L.length; i += pieces) {
    const part = L.slice(i, i + pieces);
    if (beside && i === 0) [last] = await Promise.all([logits(c.s[0]!, part), logits(c.s[1]!, [t])]);
    else last = await logits(c.s[0]!, part);
  }
  const next = await logits(c.s[0]!, [t]);
  await c.ctx.dispose();
  return [last, next] as const;
}
const whole = await longIn(L.length, false);
const p63 = await longIn(63, false);
const tokByTok = await longIn(1, false);
const wholeBeside = await longIn(L.length, true);
const p63Beside = await longIn(63, true);
console.log(`long prompt ${L.length} tokens: one batch vs token by token:      `, diff(whole[0], tokByTok[0]), "| next token:", diff(whole[1], tokByTok[1]));
console.log(`long prompt: pieces of 63 vs token by token:                   `, diff(p63[0], tokByTok[0]), "| next token:", diff(p63[1], tokByTok[1]));
console.log(`long prompt: one batch beside a 1-token decode vs alone:        `, diff(whole[0], wholeBeside[0]), "| next token:", diff(whole[1], wholeBeside[1]));
console.log(`long prompt: pieces of 63 beside a 1-token decode vs alone:     `, diff(p63[0], p63Beside[0]), "| next token:", diff(p63[1], p63Beside[1]));
await model.dispose();
await llama.dispose();
