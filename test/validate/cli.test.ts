import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { modelsDir } from "../../src/config/paths.ts";
import { record, REPO_ROOT, sentences, tmpDir } from "./helpers.ts";

const BIN = join(REPO_ROOT, "bin", "rankchain.js");
const haveModel = existsSync(join(modelsDir(), "all-MiniLM-L6-v2"));
if (!haveModel) console.warn("test/validate/cli: real-embedder cases skipped — run scripts/setup-embedder.sh");

function cli(args: string[], env: NodeJS.ProcessEnv = {}) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: "utf8", env: { ...process.env, HF_HUB_OFFLINE: "1", ...env } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function smallRun(): string {
  const dir = tmpDir("cli-run");
  const chains = [
    record("a", "A man is playing a guitar on the stage.", [
      "A man plays the guitar on a stage.",
      "A musician performs a song with his guitar.",
      "A band gives a concert in a small club.",
      "People listen to live music at night.",
      "The city is loud on Friday evenings.",
    ]),
    record("b", "A woman is slicing an onion in the kitchen.", [
      "I'm sorry, but I can't help with that request.",
      "Someone is preparing vegetables for dinner.",
      "A family cooks a meal together.",
      "Dinner is served at a long table.",
    ]),
  ];
  writeFileSync(join(dir, "chains.jsonl"), chains.map((c) => JSON.stringify(c)).join("\n") + "\n");
  return dir;
}

describe("rankchain validate / report (CLI)", () => {
  it("exits 2 on bad usage: unknown policy, missing run directory", () => {
    const dir = smallRun();
    const bad = cli(["validate", dir, "--policy", "sometimes"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--policy expects one of strict, repair, lenient/);
    const none = cli(["validate", join(dir, "nope")]);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/run directory not found/);
  });

  it("exits 2 and says how to get the embedder when its model directory is missing", () => {
    const dir = smallRun();
    const cache = tmpDir("empty-cache");
    mkdirSync(join(cache, "models"), { recursive: true });
    const r = cli(["validate", dir, "--quiet"], { RANKCHAIN_CACHE: cache });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/setup-embedder\.sh/);
  });

  it.skipIf(!haveModel)("validates a run with the real embedder, writes outputs and the report", () => {
    const dir = smallRun();
    const r = cli(["validate", dir, "--policy", "repair", "--min-steps", "2", "--quiet"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/validated 2 chains with onnx:all-MiniLM-L6-v2 \(policy repair\)/);
    for (const f of ["validated.jsonl", "accepted.jsonl", "validation.json", "report.html"]) expect(existsSync(join(dir, f))).toBe(true);
    const rows = readFileSync(join(dir, "validated.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    expect(rows[1].validation.reasons).toContain("refusal@1");
    expect(rows[1].validation.status).toBe("rejected");
    expect(rows[0].validation.sims_to_anchor.length).toBeGreaterThanOrEqual(2);
    const summary = JSON.parse(readFileSync(join(dir, "validation.json"), "utf8"));
    expect(summary.embedder.id).toBe("onnx:all-MiniLM-L6-v2");
    expect(summary.min_steps).toBe(2);

    const rep = cli(["report", dir, "--out", join(dir, "r2.html")]);
    expect(rep.code).toBe(0);
    expect(readFileSync(join(dir, "r2.html"), "utf8")).toContain("Similarity to the anchor by step");
  });

  it.skipIf(!haveModel)("exits 2 naming file:line for a malformed line in the middle of chains.jsonl", () => {
    const dir = smallRun();
    const good = JSON.stringify(record("c", "A cat sleeps.", sentences(3)));
    writeFileSync(join(dir, "chains.jsonl"), `${good}\n{"id": oops}\n${good}\n`);
    const r = cli(["validate", dir, "--quiet", "--no-report"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/chains\.jsonl:2: invalid JSON/);
  });
});
