import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import * as lib from "../../src/index.ts";
import { modelsDir } from "../../src/config/paths.ts";
import { defaultModelDir } from "../embed/helpers.ts";

const tmp = mkdtempSync(join(tmpdir(), "rankchain-lib-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const env = { ...process.env, HF_HUB_OFFLINE: "1", TRANSFORMERS_OFFLINE: "1", ONNXRUNTIME_NODE_INSTALL: "skip" };

describe("library API (src/index.ts)", () => {
  it("estimate() is what `rankchain estimate --json` prints", async () => {
    const opts = { input: "examples/seeds.txt", provider: "openai" as const, model: "gpt-4o-mini", steps: 4, maxUsd: 0.01 };
    const fromLib = await lib.estimate(opts);
    const cli = spawnSync("node", ["bin/rankchain.js", "estimate", "--input", opts.input, "--provider", "openai", "--model", opts.model, "--steps", "4", "--max-usd", "0.01", "--json"], { env, encoding: "utf8" });
    expect(cli.status, cli.stderr).toBe(0);
    expect(JSON.parse(cli.stdout)).toEqual(JSON.parse(JSON.stringify(fromLib)));
    expect(fromLib.usd!.worst).toBeGreaterThan(fromLib.usd!.typical);
  });

  it("typed errors carry the CLI's exit codes; an aborted signal stops generate before anything runs", async () => {
    const bad = await lib.generate({ input: "examples/seeds.txt", out: join(tmp, "g"), steps: 0 }).catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(lib.ConfigError);
    expect((bad as Error).message).toContain("--steps");
    expect(lib.exitCodeFor(bad)).toBe(lib.EXIT.usage);
    const aborted = await lib.generate({ input: "examples/seeds.txt", out: join(tmp, "a"), signal: AbortSignal.abort() }).catch((e: unknown) => e);
    expect(aborted).toBeInstanceOf(lib.InterruptedError);
    expect(lib.exitCodeFor(aborted)).toBe(130);
    expect(existsSync(join(tmp, "a"))).toBe(false); // nothing started
    expect(lib.exitCodeFor(new lib.BudgetExceededError("cap", 1, 1, 0.1))).toBe(3);
    expect(lib.exitCodeFor(new lib.RetryError("x", "maxRetriesExceeded", [new lib.BudgetExceededError("cap", 1, 1, 0.1)]))).toBe(3);
    expect(lib.exitCodeFor(new Error("boom"))).toBe(1);
    const missing = await lib.validate({ runDir: join(tmp, "nope") }).catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(lib.ConfigError);
  });

  it("extractSeeds() stops on an AbortSignal with InterruptedError", async () => {
    const ac = new AbortController();
    const p = lib.extractSeeds({ from: ["test/seeds/corpus"], out: join(tmp, "s.jsonl"), embedder: "hashed", signal: ac.signal, onProgress: (e) => e.phase === "list" && ac.abort() });
    await expect(p).rejects.toBeInstanceOf(lib.InterruptedError);
  });
});

const smol = join(modelsDir(), "SmolLM2-135M-Instruct.Q4_1.gguf");
const minilm = defaultModelDir();
describe.skipIf(minilm.missing || !existsSync(smol))("the published entry point (package.json exports → dist/)", () => {
  it("builds, type-checks examples/library.ts against dist/index.d.ts, and runs it end to end", () => {
    execFileSync("npx", ["tsc", "-p", "tsconfig.build.json"], { env, stdio: "pipe" });
    const pkg = JSON.parse(readFileSync("package.json", "utf8")) as { exports: Record<string, { types: string; import: string }> };
    expect(existsSync(pkg.exports["."]!.types)).toBe(true);
    expect(existsSync(pkg.exports["."]!.import)).toBe(true);
    const check = spawnSync("npx", ["tsc", "-p", "examples/tsconfig.json"], { env, encoding: "utf8" });
    expect(check.status, check.stdout + check.stderr).toBe(0);

    const run = spawnSync("npx", ["tsx", "examples/library.ts", "test/seeds/corpus", join(tmp, "example")], { env, encoding: "utf8", timeout: 600_000 });
    expect(run.status, run.stderr).toBe(0);
    const out = JSON.parse(run.stdout.trim().split("\n").pop()!) as {
      seeds: number;
      seed_phases: string[];
      estimate_usd: { typical: number; worst: number };
      chains: number;
      progress_events: number;
      validated: { chains: number };
      dataset_rows: Record<string, { train: number }> | string;
      exit_codes: Record<string, number>;
    };
    expect(out.seeds).toBe(3);
    expect(out.seed_phases).toEqual(["embed", "list", "read", "select"]);
    expect(out.estimate_usd.worst).toBeGreaterThan(0);
    expect(out.chains).toBe(3);
    expect(out.progress_events).toBe(3);
    expect(out.validated.chains).toBe(3);
    // a 135M model may keep no step; then export must say so rather than write an empty dataset
    if (typeof out.dataset_rows === "string") expect(out.dataset_rows).toMatch(/no kept chains/);
    else expect(out.dataset_rows.scores!.train).toBeGreaterThan(0);
    expect(out.exit_codes).toEqual({ bad_option: 2, aborted: 130 });
  }, 900_000);
});
