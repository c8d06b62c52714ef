/**
 * Paid validation (openai: embedder) through the CLI: --max-usd caps validate's own spend, every
 * entry carries its stage, and kill -9 during a paid validate followed by a rerun pays for nothing
 * twice (answered batches are kept; only the batch in flight at the kill is charged at worst case).
 */
import { spawn } from "node:child_process";
import { join } from "node:path";
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runGenerate } from "../../src/generate/run.ts";
import { PROJECT_ROOT } from "../../src/config/paths.ts";
import { startOpenAIServer, type OpenAIServer } from "../servers/index.ts";
import { config, readJsonlFile, SEEDS, tmpDir, writeSeeds } from "../generate/helpers.ts";

const KEY = "sk-validate-spend-0123456789abcdefghijklmn";
let srv: OpenAIServer;
beforeAll(async () => {
  process.env.OPENAI_API_KEY = KEY;
  srv = await startOpenAIServer({ apiKey: KEY });
});
afterAll(async () => srv.close());

function cli(args: string[], onSpawn?: (kill: (sig: NodeJS.Signals) => void) => void): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const env = { ...process.env, ONNXRUNTIME_NODE_INSTALL: "skip", OPENAI_API_KEY: KEY, OPENAI_BASE_URL: srv.baseURL };
    const child = spawn(process.execPath, [join(PROJECT_ROOT, "bin/rankchain.js"), ...args], { env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    onSpawn?.((sig) => child.kill(sig));
    child.on("exit", (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

async function generatedRun(seeds: number): Promise<string> {
  const dir = tmpDir();
  const out = join(dir, "run");
  await runGenerate(config({ input: writeSeeds(dir, SEEDS.slice(0, seeds)), out, provider: "openai", model: "gpt-4o-mini", baseUrl: srv.baseURL, steps: 3 }));
  return out;
}

interface Entry {
  type: string;
  id: string;
  usd: number;
  stage?: string;
  estimated?: boolean;
}

const validateArgs = (run: string, extra: string[] = []) => ["validate", run, "--embedder", "openai:text-embedding-3-small", "--batch-size", "2", "--quiet", "--no-report", ...extra];

// each test spawns the CLI three times (seconds each on a busy machine)
describe("paid validate", { timeout: 240_000 }, () => {
  it("--max-usd caps validate's own spend, not the run's: generation already spent more than the cap", async () => {
    const run = await generatedRun(3);
    const genUsd = JSON.parse(readFileSync(join(run, "run.json"), "utf8")).totals.usd as number;
    const cap = genUsd / 4;
    const r = await cli(validateArgs(run, ["--max-usd", String(cap)]));
    expect(r.code, r.stderr).toBe(0);
    const summary = JSON.parse(r.stdout.trim().split("\n").pop()!);
    expect(summary).toMatchObject({ status: "completed", exit_code: 0, chains: 3, cap_usd: cap, reason: null });
    const entries = readJsonlFile<Entry>(join(run, "ledger.jsonl"));
    expect(entries.every((e) => e.stage === "generate" || e.stage === "validate")).toBe(true);
    const validateUsd = entries.filter((e) => e.type === "charge" && e.stage === "validate").reduce((s, e) => s + e.usd, 0);
    expect(validateUsd).toBeGreaterThan(0);
    expect(validateUsd).toBeLessThanOrEqual(cap);
    const byStage = JSON.parse(readFileSync(join(run, "run.json"), "utf8")).totals.by_stage;
    expect(byStage.generate.usd).toBeCloseTo(genUsd, 9);
    expect(byStage.validate.usd).toBeCloseTo(validateUsd, 9);
    expect(summary.by_stage.validate.usd).toBeCloseTo(validateUsd, 12);
    // a cap below validate's first batch stops it with exit 3 and the JSON summary
    const again = await generatedRun(2);
    const low = await cli(validateArgs(again, ["--max-usd", "0.0000000001"]));
    expect(low.code, low.stderr).toBe(3);
    expect(JSON.parse(low.stdout.trim().split("\n").pop()!)).toMatchObject({ status: "budget_reached", exit_code: 3, reason: expect.stringMatching(/validate stage/) });
  });

  it("kill -9 during a paid validate, then a rerun, pays for nothing twice", async () => {
    const run = await generatedRun(4);
    srv.clearRequests();
    // the third embeddings request hangs until the process is killed
    srv.setEmbeddingsResponder((_req, ctx) => (ctx.index === 2 ? { ...ctx.defaultReply(), delayMs: 60_000 } : ctx.defaultReply()));
    const first = await cli(validateArgs(run, ["--max-usd", "1"]), (kill) => {
      const t = setInterval(() => {
        if (srv.requestsTo("/v1/embeddings").length >= 3) {
          clearInterval(t);
          setTimeout(() => kill("SIGKILL"), 200);
        }
      }, 10);
    });
    expect(first.signal).toBe("SIGKILL");
    const answered = srv.billed.filter((b) => b.path === "/v1/embeddings");
    expect(answered).toHaveLength(2);
    const paidTexts = srv.requestsTo("/v1/embeddings").slice(0, 2).flatMap((r) => r.body.input as string[]);
    const before = readJsonlFile<Entry>(join(run, "ledger.jsonl")).filter((e) => e.stage === "validate");
    expect(before.filter((e) => e.type === "charge")).toHaveLength(2);
    expect(before.filter((e) => e.type === "reserve")).toHaveLength(3); // one open: in flight at the kill

    srv.setEmbeddingsResponder(undefined);
    srv.clearRequests();
    const second = await cli(validateArgs(run, ["--max-usd", "1"]));
    expect(second.code, second.stderr).toBe(0);
    const rerunTexts = srv.requestsTo("/v1/embeddings").flatMap((r) => r.body.input as string[]);
    expect(rerunTexts.length).toBeGreaterThan(0);
    expect(rerunTexts.filter((t) => paidTexts.includes(t))).toEqual([]);
    const after = readJsonlFile<Entry>(join(run, "ledger.jsonl")).filter((e) => e.stage === "validate");
    // the open reservation was settled once, at its worst case; nothing is left open
    expect(after.filter((e) => e.type === "charge" && e.estimated)).toHaveLength(1);
    const ids = new Set(after.filter((e) => e.type === "reserve").map((e) => e.id));
    const settled = new Set(after.filter((e) => e.type !== "reserve").map((e) => e.id));
    expect([...ids].filter((id) => !settled.has(id))).toEqual([]);
    expect(readJsonlFile(join(run, "validated.jsonl"))).toHaveLength(4);
  });
});
