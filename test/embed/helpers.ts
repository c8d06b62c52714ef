import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { modelsDir, pythonExecutable } from "../../src/config/paths.ts";

/** The default embedder's exported directory (made by scripts/setup-embedder.sh), or why it is missing. */
export function defaultModelDir(): { dir: string; missing: string | undefined } {
  const dir = join(modelsDir(), "all-MiniLM-L6-v2");
  const missing = existsSync(join(dir, "onnx", "model.onnx"))
    ? undefined
    : `${dir} has no onnx/model.onnx (run scripts/setup-embedder.sh)`;
  return { dir, missing };
}

/** Why the Python side cannot run sentence-transformers, or undefined when it can. */
export function pythonMissing(): string | undefined {
  const py = pythonExecutable();
  try {
    execFileSync(py, ["-c", "import sentence_transformers, onnx"], { stdio: "ignore", env: { ...process.env, HF_HUB_OFFLINE: "1" } });
    return undefined;
  } catch {
    return `${py} cannot import sentence_transformers (run scripts/setup-python.sh)`;
  }
}

/** Runs a Python snippet with the project's interpreter, offline; stdin is JSON, stdout is JSON. */
export function runPythonJson<T>(code: string, input: unknown, args: string[] = []): T {
  const out = execFileSync(pythonExecutable(), ["-c", code, ...args], {
    input: JSON.stringify(input),
    env: { ...process.env, HF_HUB_OFFLINE: "1", TRANSFORMERS_OFFLINE: "1", PYTHONWARNINGS: "ignore", TOKENIZERS_PARALLELISM: "false" },
    maxBuffer: 256 * 1024 * 1024,
    stdio: ["pipe", "pipe", "pipe"],
  });
  return JSON.parse(out.toString("utf8")) as T;
}

/** sentence-transformers embeddings of `sentences` with the model in `dir` (the reference side of parity tests). */
export function sentenceTransformersEmbed(dir: string, sentences: string[]): number[][] {
  const code = [
    "import json, sys",
    "from sentence_transformers import SentenceTransformer",
    "texts = json.load(sys.stdin)",
    "m = SentenceTransformer(sys.argv[1], device='cpu')",
    "print(json.dumps(m.encode(texts, batch_size=16, convert_to_numpy=True).tolist()))",
  ].join("\n");
  return runPythonJson<number[][]>(code, sentences, [dir]);
}
