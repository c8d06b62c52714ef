import { spawn } from "node:child_process";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import pg from "pg";
import { PgLedger } from "../../src/budget/pg-ledger.ts";
import { BudgetExceededError } from "../../src/errors.ts";
import { PROJECT_ROOT } from "../../src/config/paths.ts";
import { startOpenAIServer } from "../servers/index.ts";
import { readJsonlFile, SEEDS, tmpDir, writeSeeds } from "../generate/helpers.ts";
import { testPostgresUrl } from "./postgres.ts";

const { url, reason } = testPostgresUrl();
const pool = url ? new pg.Pool({ connectionString: url, max: 2 }) : undefined;
afterAll(async () => pool?.end());
const budgetName = (p: string) => `${p}-${process.pid}-${Date.now()}-${Math.floor(Math.random() * 1e6)}`;
const price = { input: 1, output: 1 };

async function row(budgetId: string) {
  const r = await pool!.query("SELECT cap_usd, spent_usd, reserved_usd, calls FROM rankchain_budgets WHERE budget_id = $1", [budgetId]);
  return r.rows[0] as { cap_usd: number; spent_usd: number; reserved_usd: number; calls: string };
}
async function entriesUsd(budgetId: string): Promise<number> {
  const r = await pool!.query("SELECT coalesce(sum((entry->>'usd')::float8), 0) AS usd FROM rankchain_ledger_entries WHERE budget_id = $1 AND entry->>'type' = 'charge'", [budgetId]);
  return Number(r.rows[0].usd);
}

function run(args: string[], env: Record<string, string> = {}): { done: Promise<{ code: number | null; stdout: string; stderr: string }>; kill: (s: NodeJS.Signals) => void; ready: Promise<void> } {
  const child = spawn(process.execPath, args, { env: { ...process.env, ONNXRUNTIME_NODE_INSTALL: "skip", ...env }, stdio: ["ignore", "pipe", "pipe"], cwd: PROJECT_ROOT });
  let stdout = "";
  let stderr = "";
  let onReady: () => void = () => undefined;
  const ready = new Promise<void>((r) => (onReady = r));
  child.stdout.on("data", (d: Buffer) => {
    stdout += d.toString();
    if (stdout.includes("ready\n")) onReady();
  });
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<{ code: number | null; stdout: string; stderr: string }>((r) => child.on("exit", (code) => r({ code, stdout, stderr })));
  void done.then(onReady);
  return { done, kill: (s) => child.kill(s), ready };
}

/** How many of the first n processes were really killed (exit code null) rather than finished. */
function killed(results: Array<{ code: number | null }>, n: number): number {
  return results.slice(0, n).filter((r) => r.code === null).length;
}

describe.skipIf(!url)(`PostgreSQL ledger${url ? "" : ` (skipped: ${reason})`}`, { timeout: 300_000 }, () => {
  it("64 concurrent reservers in 4 pools never cross the cap; the cap is reached, not abandoned", async () => {
    const id = budgetName("atomic");
    const ledgers = await Promise.all(Array.from({ length: 4 }, () => PgLedger.open({ url: url!, budgetId: id, capUsd: 0.05 })));
    let granted = 0;
    let maxSeen = 0;
    await Promise.all(
      Array.from({ length: 64 }, async (_, i) => {
        const l = ledgers[i % 4]!;
        for (;;) {
          try {
            const r = await l.reserve({ stage: "generate", model: "m/x", inputTokens: 700, maxOutputTokens: 300, price, wait: false });
            granted++;
            const s = await row(id);
            maxSeen = Math.max(maxSeen, s.spent_usd + s.reserved_usd);
            await l.charge(r, { inputTokens: 700, outputTokens: 300 });
          } catch (e) {
            if (e instanceof BudgetExceededError) return;
            throw e;
          }
        }
      }),
    );
    const s = await row(id);
    expect(granted).toBe(50); // $0.001 per call, cap $0.05
    expect(s.spent_usd).toBeCloseTo(0.05, 12);
    expect(s.reserved_usd).toBeCloseTo(0, 12);
    expect(maxSeen).toBeLessThanOrEqual(0.05 + 1e-9);
    expect(await entriesUsd(id)).toBeCloseTo(0.05, 12);
    await Promise.all(ledgers.map((l) => l.close()));
  });

  it("8 processes × concurrency 8 with random kill -9s never cross the cap; the next process settles the dead ones' leases at worst case", async () => {
    let killedTotal = 0;
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 1e9 }), fc.array(fc.integer({ min: 0, max: 400 }), { minLength: 1, maxLength: 3 }), async (seed, killAfterMs) => {
        const id = budgetName("fleet");
        const cap = 0.5;
        const setup = await PgLedger.open({ url: url!, budgetId: id, capUsd: cap });
        await setup.close();
        const procs = Array.from({ length: 8 }, (_, i) => run(["--import", "tsx", join(PROJECT_ROOT, "test/budget/fixtures/pg-reserver.mts"), url!, id, String(seed + i), "8"]));
        let crossed = 0;
        let sampling = true;
        const sampler = (async () => {
          while (sampling) {
            const s = await row(id);
            if (s.spent_usd + s.reserved_usd > cap + 1e-9) crossed++;
            await new Promise((r) => setTimeout(r, 10));
          }
        })();
        // kill -9 some processes a random time after they start reserving
        const killers = killAfterMs.map((ms, k) => procs[k]!.ready.then(() => new Promise<void>((r) => setTimeout(() => (procs[k]!.kill("SIGKILL"), r()), ms))));
        const results = await Promise.all(procs.map((p) => p.done));
        await Promise.all(killers);
        sampling = false;
        await sampler;
        for (const [i, r] of results.entries()) if (i >= killAfterMs.length) expect(r.code, r.stderr).toBe(0);
        expect(crossed).toBe(0);
        // leases of killed processes expire (400 ms); the next process to open the budget settles them
        await new Promise((r) => setTimeout(r, 500));
        const next = await PgLedger.open({ url: url!, budgetId: id, capUsd: cap });
        killedTotal += killed(results, killAfterMs.length);
        const summary = await next.summary();
        await next.close();
        expect(summary.open).toBe(0);
        expect(summary.reservedUsd).toBeCloseTo(0, 12);
        expect(summary.spentUsd).toBeLessThanOrEqual(cap + 1e-9);
        expect(await entriesUsd(id)).toBeCloseTo(summary.spentUsd, 9);
      }),
      { numRuns: 2 },
    );
    // the kills land while the processes reserve (not after they finished)
    expect(killedTotal).toBeGreaterThan(0);
  });

  it("generate --ledger postgres:// killed with calls in flight: `budget settle --force` charges them at worst case, nothing billed is lost", async () => {
    const KEY = "sk-test-pg-0123456789abcdefghijklmnop";
    const server = await startOpenAIServer({ apiKey: KEY, responder: async (_r, ctx) => ({ ...ctx.defaultReply(), delayMs: 1500 }) });
    try {
      const id = budgetName("settle");
      const dir = tmpDir();
      const out = join(dir, "run");
      const bin = join(PROJECT_ROOT, "bin/rankchain.js");
      const args = [bin, "generate", "--input", writeSeeds(dir, SEEDS.slice(0, 6)), "--out", out, "--provider", "openai", "--model", "gpt-4o-mini", "--base-url", server.baseURL, "--steps", "2", "--concurrency", "3", "--max-usd", "1", "--ledger", url!, "--budget-id", id, "--quiet"];
      const p = run(args, { OPENAI_API_KEY: KEY });
      for (let i = 0; i < 2400 && server.requestsTo("/v1/chat/completions").length < 3; i++) await new Promise((r) => setTimeout(r, 50));
      expect(server.requestsTo("/v1/chat/completions").length).toBeGreaterThanOrEqual(3);
      p.kill("SIGKILL");
      await p.done;
      const before = await row(id);
      expect(before.reserved_usd).toBeGreaterThan(0);
      const settle = run([bin, "budget", "settle", "--force", "--ledger", url!, "--budget-id", id]);
      const r = await settle.done;
      expect(r.code, r.stderr).toBe(0);
      const out2 = JSON.parse(r.stdout.trim());
      expect(out2.settled_now.settled).toBeGreaterThanOrEqual(3);
      expect(out2.budget).toMatchObject({ open: 0, budgetId: id });
      const after = await row(id);
      expect(after.reserved_usd).toBeCloseTo(0, 12);
      // everything reserved is now spent: at least what any answered call could have cost
      expect(after.spent_usd).toBeCloseTo(before.spent_usd + before.reserved_usd, 12);
      const show = await run([bin, "budget", "show", "--ledger", url!, "--budget-id", id]).done;
      expect(JSON.parse(show.stdout.trim())).toMatchObject({ budgetId: id, open: 0, capUsd: 1 });
      const missing = await run([bin, "budget", "show", "--ledger", url!, "--budget-id", id + "-nope"]).done;
      expect(missing.code).toBe(2);
      expect(missing.stderr).toMatch(/no shared budget named/);
      // the run's own ledger.jsonl keeps its part; the password-free URL only in run.json
      expect(readJsonlFile(join(out, "ledger.jsonl")).filter((e) => e.type === "reserve").length).toBeGreaterThanOrEqual(3);
    } finally {
      await server.close();
    }
  });

  it("--mode batch with the shared ledger: kill -9 while polling, --resume adopts the pending batch's reservations (nothing charged twice)", async () => {
    const KEY = "sk-test-pgbatch-0123456789abcdefghijkl";
    const server = await startOpenAIServer({ apiKey: KEY });
    try {
      server.batchEndpoints.behavior = () => ({ pollsBeforeEnd: 1_000_000 });
      const id = budgetName("batch");
      const dir = tmpDir();
      const out = join(dir, "run");
      const bin = join(PROJECT_ROOT, "bin/rankchain.js");
      const args = [bin, "generate", "--input", writeSeeds(dir, SEEDS.slice(0, 3)), "--out", out, "--provider", "openai", "--model", "gpt-4o-mini", "--base-url", server.baseURL, "--steps", "2", "--mode", "batch", "--poll-seconds", "0.02", "--max-usd", "1", "--ledger", url!, "--budget-id", id, "--quiet"];
      const p = run(args, { OPENAI_API_KEY: KEY });
      for (let i = 0; i < 2400 && (server.batchEndpoints.batches[0]?.polls ?? 0) < 3; i++) await new Promise((r) => setTimeout(r, 50));
      expect(server.batchEndpoints.batches).toHaveLength(1);
      p.kill("SIGKILL");
      await p.done;
      const held = await row(id);
      expect(held.reserved_usd).toBeGreaterThan(0);
      // another process of the fleet opening the budget leaves them alone (their lease is the batch window)
      const other = await PgLedger.open({ url: url!, budgetId: id, capUsd: undefined });
      expect(other.settledOnOpen.settled).toBe(0);
      await other.close();
      server.batchEndpoints.batches[0]!.behavior.pollsBeforeEnd = 0;
      server.batchEndpoints.behavior = () => ({});
      const r = await run([...args, "--resume"], { OPENAI_API_KEY: KEY }).done;
      expect(r.code, r.stderr).toBe(0);
      expect(server.batchEndpoints.batches).toHaveLength(2);
      expect(server.batchEndpoints.batches[0]!.ran).toBe(3);
      const s = await row(id);
      expect(s.reserved_usd).toBeCloseTo(0, 12);
      expect(Number(s.calls)).toBe(6);
      const charges = readJsonlFile(join(out, "ledger.jsonl")).filter((e) => e.type === "charge");
      expect(charges).toHaveLength(6);
      expect(charges.every((c) => !c.estimated)).toBe(true);
      expect(s.spent_usd).toBeCloseTo(charges.reduce((a, c) => a + c.usd, 0), 12);
    } finally {
      await server.close();
    }
  });
});
