/**
 * Money against servers that log what they bill (test/servers: `srv.billed`): the ledger records
 * exactly what was billed, the cap holds when a server bills more than the client counted, cut-off
 * 2xx bodies are charged, refused connections are not, and a cap is spent rather than abandoned.
 */
import { join } from "node:path";
import { createServer } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { runGenerate } from "../../src/generate/run.ts";
import { BudgetExceededError } from "../../src/errors.ts";
import { startOpenAIServer, type BilledCall, type OpenAIServer } from "../servers/index.ts";
import { config, readJsonlFile, SEEDS, tmpDir, writeSeeds } from "../generate/helpers.ts";

const PRICE = { input: 1, output: 4 }; // USD per million tokens
const MODEL = "qwen-loopback";
const billedUsd = (calls: readonly BilledCall[]) => calls.reduce((s, c) => s + (c.inputTokens * PRICE.input + c.outputTokens * PRICE.output) / 1e6, 0);

interface Entry {
  type: "reserve" | "charge" | "release";
  id: string;
  usd: number;
  stage?: string;
  estimated?: boolean;
  reason?: string;
  input_tokens: number;
  output_tokens: number;
}
const ledgerOf = (out: string) => readJsonlFile<Entry>(join(out, "ledger.jsonl"));
const charged = (out: string) => ledgerOf(out).filter((e) => e.type === "charge").reduce((s, e) => s + e.usd, 0);

function seeds(n: number): string[] {
  return Array.from({ length: n }, (_, j) => `${SEEDS[j % SEEDS.length]!.replace(/\.$/, "")} (case ${j}).`);
}

const servers: OpenAIServer[] = [];
async function server(opts: Parameters<typeof startOpenAIServer>[0]): Promise<OpenAIServer> {
  const s = await startOpenAIServer(opts);
  servers.push(s);
  return s;
}
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close();
});

const base = (srv: OpenAIServer, dir: string, input: string, extra: Partial<Parameters<typeof config>[0]> = {}) =>
  config({ input, out: join(dir, "run"), provider: "openai-compatible", model: MODEL, baseUrl: srv.baseURL, priceInput: PRICE.input, priceOutput: PRICE.output, ...extra });

describe("the ledger against billing servers", () => {
  it("a server billing a hidden 2,000-token prompt: the ledger records exactly what was billed, learns the ratio, and overshoots the cap by at most the one call in flight when it was first seen (concurrency 16)", async () => {
    const srv = await server({ hiddenPromptTokens: 2000, tokenize: "llama.cpp" });
    const dir = tmpDir();
    const cap = 0.05;
    const err = await runGenerate(base(srv, dir, writeSeeds(dir, seeds(40)), { steps: 3, concurrency: 16, maxUsd: cap, maxOutputTokens: 60 })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BudgetExceededError);
    const out = join(dir, "run");
    const billed = billedUsd(srv.billed);
    expect(charged(out)).toBeCloseTo(billed, 12); // exactly what was billed
    const entries = ledgerOf(out);
    expect(entries.every((e) => e.stage === "generate")).toBe(true);
    // over-billed calls are only those in flight when the first over-billing settled; under a cap a
    // model's first call goes out alone, so that is one call, not the 16 the concurrency allows
    const run = JSON.parse((await import("node:fs")).readFileSync(join(out, "run.json"), "utf8"));
    expect(run.totals.over_billed.calls).toBe(1);
    const hiddenCost = (2000 * PRICE.input) / 1e6;
    expect(billed).toBeLessThanOrEqual(cap + hiddenCost);
    // and calls kept going after the ratio was learned (the cap was spent with correct reservations)
    expect(srv.billed.length).toBeGreaterThan(run.totals.over_billed.calls);
    console.log(`[over-billing c=16] cap $${cap} billed $${billed.toFixed(6)} overshoot ${(((billed - cap) / cap) * 100).toFixed(1)}% over-billed calls ${run.totals.over_billed.calls}`);
  });

  it("over-billing that starts mid-run (after the ledger learned the model) overshoots by at most the 16 calls in flight", async () => {
    const srv = await server({ hiddenPromptTokens: 2000, hiddenPromptFrom: 20 });
    const dir = tmpDir();
    const cap = 0.02;
    const err = await runGenerate(base(srv, dir, writeSeeds(dir, seeds(40)), { steps: 3, concurrency: 16, maxUsd: cap, maxOutputTokens: 60 })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BudgetExceededError);
    const billed = billedUsd(srv.billed);
    expect(charged(join(dir, "run"))).toBeCloseTo(billed, 12);
    const excess = srv.billed.filter((_, i) => i >= 20).length; // calls that carried the hidden prompt
    expect(excess).toBeGreaterThan(0);
    expect(billed).toBeLessThanOrEqual(cap + (16 * 2000 * PRICE.input) / 1e6);
  });

  it("cut-off 200 bodies are charged (worst case), never released; every other call is charged exactly as billed", async () => {
    const srv = await server({
      tokenize: "llama.cpp",
      responder: (_req, ctx) => (ctx.index % 4 === 1 ? { type: "malformed" } : ctx.defaultReply()),
    });
    const dir = tmpDir();
    await runGenerate(base(srv, dir, writeSeeds(dir, seeds(6)), { steps: 2, concurrency: 1 })).catch((e: unknown) => e);
    const out = join(dir, "run");
    const entries = ledgerOf(out);
    const cut = srv.billed.filter((b) => b.replyType === "malformed");
    expect(cut.length).toBeGreaterThan(0);
    const estimated = entries.filter((e) => e.type === "charge" && e.estimated);
    expect(estimated).toHaveLength(cut.length);
    expect(entries.filter((e) => e.type === "release")).toHaveLength(0);
    // exact where the usage was readable; at least the bill where it was not
    const exact = entries.filter((e) => e.type === "charge" && !e.estimated).reduce((s, e) => s + e.usd, 0);
    expect(exact).toBeCloseTo(billedUsd(srv.billed.filter((b) => b.replyType !== "malformed")), 12);
    expect(estimated.reduce((s, e) => s + e.usd, 0)).toBeGreaterThanOrEqual(billedUsd(cut));
    expect(charged(out)).toBeGreaterThanOrEqual(billedUsd(srv.billed) - 1e-12);
  });

  it("attempts refused by a stopped server are released, not charged: nothing phantom stays in the ledger", async () => {
    const port = await freePort();
    const dir = tmpDir();
    const cfg = config({
      input: writeSeeds(dir, seeds(2)),
      out: join(dir, "run"),
      provider: "openai-compatible",
      model: MODEL,
      baseUrl: `http://127.0.0.1:${port}/v1`,
      priceInput: PRICE.input,
      priceOutput: PRICE.output,
      steps: 2,
      maxRetries: 2,
      concurrency: 1,
    });
    await expect(runGenerate({ ...cfg, maxUsd: 1 })).rejects.toThrow();
    const entries = ledgerOf(join(dir, "run"));
    expect(entries.filter((e) => e.type === "reserve").length).toBeGreaterThan(0);
    expect(entries.filter((e) => e.type === "charge")).toHaveLength(0);
    const releases = entries.filter((e) => e.type === "release");
    expect(releases.length).toBe(entries.filter((e) => e.type === "reserve").length);
    expect(releases.every((e) => /ECONNREFUSED/.test(e.reason ?? ""))).toBe(true);
    const run = JSON.parse((await import("node:fs")).readFileSync(join(dir, "run", "run.json"), "utf8"));
    expect(run.totals).toMatchObject({ usd: 0, calls: 0, input_tokens: 0 });
  });

  it("a timeout after the request was sent and a reset connection stay charged at worst case", async () => {
    const srv = await server({
      tokenize: "llama.cpp",
      responder: (_req, ctx) => (ctx.index === 0 ? { ...ctx.defaultReply(), delayMs: 3000 } : ctx.index === 1 ? { type: "reset" } : ctx.defaultReply()),
    });
    const dir = tmpDir();
    await runGenerate(base(srv, dir, writeSeeds(dir, seeds(1)), { steps: 1, concurrency: 1, maxRetries: 2, timeoutMs: 300, maxUsd: 1 }));
    const entries = ledgerOf(join(dir, "run"));
    const worst = entries.filter((e) => e.type === "charge" && e.estimated);
    expect(worst).toHaveLength(2); // the timed-out attempt and the reset one
    expect(entries.filter((e) => e.type === "release")).toHaveLength(0);
    const reserves = entries.filter((e) => e.type === "reserve");
    for (const w of worst) expect(w.usd).toBeCloseTo(reserves.find((r) => r.id === w.id)!.usd, 15);
  });

  it("a cap at 40% of the run's cost is spent (>= 85%) before exit 3, not abandoned at the first misfit", async () => {
    const srv = await server({ tokenize: "llama.cpp" });
    const input = (d: string) => writeSeeds(d, seeds(6));
    const full = tmpDir();
    await runGenerate(base(srv, full, input(full), { steps: 8, concurrency: 4 }));
    const cost = billedUsd(srv.billed);
    srv.clearRequests();
    const dir = tmpDir();
    const cap = 0.4 * cost;
    const err = await runGenerate(base(srv, dir, input(dir), { steps: 8, concurrency: 4, maxUsd: cap })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BudgetExceededError);
    const spent = billedUsd(srv.billed);
    expect(spent).toBeLessThanOrEqual(cap + 1e-12);
    expect(charged(join(dir, "run"))).toBeCloseTo(spent, 12);
    expect(spent / cap).toBeGreaterThanOrEqual(0.85);
    console.log(`[cap 40%] cost $${cost.toFixed(6)} cap $${cap.toFixed(6)} spent $${spent.toFixed(6)} = ${((spent / cap) * 100).toFixed(1)}% of the cap`);
  });
});

/** A port nothing listens on (bound once by the OS, then closed): connections to it are refused. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}
