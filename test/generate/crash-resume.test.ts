import { spawn } from "node:child_process";
import { join } from "node:path";
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startOpenAIServer, type OpenAIServer } from "../servers/index.ts";
import { readJsonlFile, SEEDS, tmpDir, writeSeeds } from "./helpers.ts";
import { PROJECT_ROOT } from "../../src/config/paths.ts";

/**
 * kill -9 the CLI at random moments, resume until done, and check the ledger and the chains:
 * no chain twice, no completed chain requested again, no paid response requested again beyond the
 * calls in flight at each kill, and ledger total = reported usage + at most the in-flight reservations.
 */
const PRICE_IN = 1; // USD / M tokens
const PRICE_OUT = 2;
const USAGE = { inputTokens: 100, outputTokens: 20 };
const COST_PER_CALL = (USAGE.inputTokens * PRICE_IN + USAGE.outputTokens * PRICE_OUT) / 1e6;
const STEPS = 3;
const CONCURRENCY = 4;

let server: OpenAIServer;
let runIndex = 0;
const requestsByRun: Array<Array<string>> = [];

beforeAll(async () => {
  server = await startOpenAIServer({
    responder: (req, ctx) => {
      (requestsByRun[runIndex] ??= []).push(JSON.stringify(req.body.messages));
      const r = ctx.defaultReply();
      return { ...r, usage: USAGE, delayMs: 60 + (ctx.index % 5) * 40 } as typeof r;
    },
  });
});
afterAll(async () => server.close());

function runCli(args: string[], killAfterMs: number | undefined): Promise<{ code: number | null; killed: boolean; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(PROJECT_ROOT, "bin/rankchain.js"), ...args], {
      env: { ...process.env, OPENAI_API_KEY: "", ONNXRUNTIME_NODE_INSTALL: "skip" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    let killed = false;
    let timer: NodeJS.Timeout | undefined;
    // the kill clock starts when this run's first request reaches the server (start-up time varies)
    const poll = killAfterMs === undefined ? undefined : setInterval(() => {
      if ((requestsByRun[runIndex]?.length ?? 0) === 0 || timer) return;
      timer = setTimeout(() => {
        killed = true;
        child.kill("SIGKILL");
      }, killAfterMs);
    }, 5);
    child.on("exit", (code) => {
      if (poll) clearInterval(poll);
      if (timer) clearTimeout(timer);
      resolve({ code, killed, stderr });
    });
  });
}

describe("crash and resume (kill -9 at random moments)", () => {
  it("loses no paid response, repeats no completed chain, keeps the ledger honest", async () => {
    const dir = tmpDir("rankchain-crash-");
    const out = join(dir, "run");
    const seeds = [...SEEDS, ...SEEDS.map((s) => s.replace(/\.$/, " again."))];
    const input = writeSeeds(dir, seeds);
    const args = [
      "generate", "--input", input, "--out", out, "--provider", "openai-compatible", "--base-url", server.baseURL,
      "--model", "test-model", "--price-input", String(PRICE_IN), "--price-output", String(PRICE_OUT), "--max-usd", "5",
      "--steps", String(STEPS), "--concurrency", String(CONCURRENCY), "--quiet",
    ];
    // deterministic pseudo-random kill times
    let x = 12345;
    const rand = () => ((x = (x * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    let kills = 0;
    let finished = false;
    const completedBefore: Set<string>[] = [];
    for (let attempt = 0; attempt < 25 && !finished; attempt++) {
      runIndex = attempt;
      completedBefore[attempt] = new Set(readJsonlFile(join(out, "chains.jsonl")).map((c) => c.anchor as string));
      const resume = attempt === 0 ? [] : ["--resume"];
      const killAt = attempt < 6 ? 50 + Math.floor(rand() * 900) : undefined;
      const r = await runCli([...args, ...resume], killAt);
      if (r.killed) kills++;
      else {
        expect(r.code, r.stderr).toBe(0);
        finished = true;
      }
    }
    expect(finished).toBe(true);
    expect(kills).toBeGreaterThan(0);
    // at least one kill landed mid-run (some chains saved, some not)
    expect(completedBefore.some((c) => c.size > 0 && c.size < seeds.length)).toBe(true);

    const chains = readJsonlFile(join(out, "chains.jsonl"));
    const ids = chains.map((c) => c.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(chains.map((c) => c.anchor).sort()).toEqual([...seeds].sort());
    for (const c of chains) expect(c.steps).toHaveLength(STEPS);

    // no completed chain was requested again in a later run (every prompt names its anchor this way)
    expect(requestsByRun.flat().every((b) => b.includes("Anchor:\\n<sentence>"))).toBe(true);
    for (let k = 1; k < requestsByRun.length; k++) {
      for (const body of requestsByRun[k] ?? []) {
        for (const anchor of completedBefore[k] ?? []) expect(body.includes(`Anchor:\\n<sentence>${anchor}</sentence>`)).toBe(false);
      }
    }
    // paid responses are reused: at most the calls in flight at each kill are made twice
    const totalRequests = requestsByRun.reduce((n, r) => n + (r?.length ?? 0), 0);
    expect(totalRequests).toBeLessThanOrEqual(seeds.length * STEPS + kills * CONCURRENCY);

    // ledger total = provider-reported usage (+ at most the reservations in flight at the kills)
    const ledger = readJsonlFile<{ type: string; usd: number; estimated?: boolean }>(join(out, "ledger.jsonl"));
    const charges = ledger.filter((e) => e.type === "charge");
    const total = charges.reduce((s, c) => s + c.usd, 0);
    const estimated = charges.filter((c) => c.estimated).reduce((s, c) => s + c.usd, 0);
    const reported = totalRequests * COST_PER_CALL;
    expect(total).toBeGreaterThanOrEqual(reported - 1e-12);
    expect(total).toBeLessThanOrEqual(reported + estimated + 1e-12);
    expect(charges.filter((c) => c.estimated).length).toBeLessThanOrEqual(kills * CONCURRENCY);
    const run = JSON.parse(readFileSync(join(out, "run.json"), "utf8"));
    expect(run.status).toBe("completed");
    expect(run.totals.usd).toBeCloseTo(total, 9);
  }, 240_000);
});
