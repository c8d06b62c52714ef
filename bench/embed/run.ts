/**
 * bench/embed: sentences per second of our ONNX embedder in Node (onnxruntime-node, pooling in the
 * graph) vs sentence-transformers (PyTorch, CPU) in Python — same model (all-MiniLM-L6-v2 exported
 * by scripts/setup-embedder.sh; sentence-transformers loads the same directory), same sentences,
 * same batch size, same thread count, one run. Also reports transformers.js' AutoModel on the same
 * graph.
 *
 *   npx tsx bench/embed/run.ts [--n 2000] [--batch 32] [--threads N] [--rounds 3] [--file PATH]
 *
 * Load times are excluded on both sides and each side embeds a warm-up batch first. The Python side
 * is one long-lived process driven over stdin, so rounds alternate Node and Python cheaply and
 * background load on a shared machine hits both alike; the best round of each side is reported.
 * OPENBLAS_* and similar variables are left as they are.
 */
import { spawn } from "node:child_process";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { join, relative } from "node:path";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { env as hfEnv } from "@huggingface/transformers";
import { PROJECT_ROOT, modelsDir, pythonExecutable } from "../../src/config/paths.ts";
import { cosine, createEmbedder, type Embedder } from "../../src/embed/index.ts";

hfEnv.allowRemoteModels = false;

const { values } = parseArgs({
  options: {
    n: { type: "string", default: "2000" },
    batch: { type: "string", default: "32" },
    threads: { type: "string" },
    rounds: { type: "string", default: "3" },
    file: { type: "string" },
  },
});
const N = Number(values.n);
const BATCH = Number(values.batch);
const THREADS = values.threads ? Number(values.threads) : availableParallelism();
const ROUNDS = Number(values.rounds);

const dataFile = values.file ?? join(PROJECT_ROOT, "..", "shared", "eval-data", "seeds-snli-dev-sentences.txt");
if (!existsSync(dataFile)) {
  console.log(`bench/embed skipped: ${dataFile} is absent (the eval data lives in ../shared/eval-data/)`);
  process.exit(0);
}
const modelDir = join(modelsDir(), "all-MiniLM-L6-v2");
if (!existsSync(join(modelDir, "onnx", "model.onnx"))) {
  console.log(`bench/embed skipped: ${modelDir} has no onnx/model.onnx; run scripts/setup-embedder.sh`);
  process.exit(0);
}
const sentences = readFileSync(dataFile, "utf8").split("\n").map((s) => s.trim()).filter((s) => s !== "").slice(0, N);
if (sentences.length < N) console.log(`note: ${dataFile} has only ${sentences.length} sentences`);

const PY = String.raw`
import json, sys, time, os
import torch
from sentence_transformers import SentenceTransformer
model_dir, batch, threads, path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
torch.set_num_threads(threads)
texts = json.load(open(path, encoding="utf-8"))
m = SentenceTransformer(model_dir, device="cpu")
m.encode(texts[:batch * 2], batch_size=batch)  # warm-up
print(json.dumps({"ready": True, "threads": torch.get_num_threads(), "torch": torch.__version__}), flush=True)
for line in sys.stdin:
    if line.strip() != "run":
        break
    t0 = time.perf_counter()
    with torch.inference_mode():
        emb = m.encode(texts, batch_size=batch, convert_to_numpy=True, show_progress_bar=False)
    dt = time.perf_counter() - t0
    print(json.dumps({"seconds": dt, "sample": emb[:50].tolist()}), flush=True)
`;

/** The Python side: one process, one "run" command per round. */
async function startPython(): Promise<{ info: { threads: number; torch: string }; run: () => Promise<{ seconds: number; sample: number[][] }>; close: () => void }> {
  const tmp = join(tmpdir(), `rankchain-bench-embed-${process.pid}.json`);
  writeFileSync(tmp, JSON.stringify(sentences));
  const child = spawn(pythonExecutable(), ["-c", PY, modelDir, String(BATCH), String(THREADS), tmp], {
    env: { ...process.env, HF_HUB_OFFLINE: "1", PYTHONWARNINGS: "ignore", TOKENIZERS_PARALLELISM: "false" },
    stdio: ["pipe", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const next = async <T>(): Promise<T> => {
    const r = await lines.next();
    if (r.done) throw new Error(`the Python side stopped:\n${stderr.slice(-2000)}`);
    return JSON.parse(r.value) as T;
  };
  const info = await next<{ threads: number; torch: string }>();
  rmSync(tmp, { force: true });
  return {
    info,
    run: async () => {
      child.stdin.write("run\n");
      return next<{ seconds: number; sample: number[][] }>();
    },
    close: () => child.stdin.end("stop\n"),
  };
}

async function timeNode(e: Embedder): Promise<{ seconds: number; vectors: Float32Array[] }> {
  const t0 = performance.now();
  const vectors = await e.embed(sentences);
  return { seconds: (performance.now() - t0) / 1000, vectors };
}

const ours = await createEmbedder(modelDir, { batchSize: BATCH, threads: THREADS, name: "all-MiniLM-L6-v2" });
const viaHf = await createEmbedder(modelDir, { batchSize: BATCH, threads: THREADS, runtime: "transformers.js", name: "all-MiniLM-L6-v2" });
await ours.embed(sentences.slice(0, BATCH * 2)); // warm-up
await viaHf.embed(sentences.slice(0, BATCH * 2));
const py = await startPython();

const best = { ours: Infinity, hf: Infinity, py: Infinity };
let pySample: number[][] = [];
let ourVectors: Float32Array[] = [];
for (let r = 0; r < ROUNDS; r++) {
  const o = await timeNode(ours);
  const p = await py.run();
  const h = await timeNode(viaHf);
  best.ours = Math.min(best.ours, o.seconds);
  best.py = Math.min(best.py, p.seconds);
  best.hf = Math.min(best.hf, h.seconds);
  ourVectors = o.vectors;
  pySample = p.sample;
  console.log(`round ${r + 1}: ours ${o.seconds.toFixed(2)} s, sentence-transformers ${p.seconds.toFixed(2)} s, transformers.js AutoModel ${h.seconds.toFixed(2)} s`);
}
py.close();
await ours.dispose();
await viaHf.dispose();

const minCos = Math.min(...pySample.map((v, i) => cosine(v, ourVectors[i]!)));
const sps = (s: number) => (sentences.length / s).toFixed(1).padStart(8);
console.log("");
console.log(
  `bench/embed: ${sentences.length} sentences from ${relative(PROJECT_ROOT, dataFile)}, batch ${BATCH}, threads ${THREADS} ` +
    `(onnxruntime intra-op ${THREADS}; torch.get_num_threads() = ${py.info.threads}), best of ${ROUNDS} alternating rounds`,
);
console.log(`  ours: ONNX in Node (onnxruntime-node, pooling in graph)  ${sps(best.ours)} sentences/s`);
console.log(`  transformers.js AutoModel, same graph                    ${sps(best.hf)} sentences/s`);
console.log(`  sentence-transformers, PyTorch ${py.info.torch} CPU     ${sps(best.py)} sentences/s`);
console.log(`  ratio ours / sentence-transformers: ${(best.py / best.ours).toFixed(2)}x (target >= 1.0)`);
console.log(`  ratio ours / transformers.js AutoModel: ${(best.hf / best.ours).toFixed(2)}x`);
console.log(`  parity on the first ${pySample.length} sentences: min cosine ${minCos.toFixed(5)}`);
