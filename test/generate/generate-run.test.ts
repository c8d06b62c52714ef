import { join } from "node:path";
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import { runGenerate } from "../../src/generate/run.ts";
import { BudgetExceededError, ConfigError, RankchainError } from "../../src/errors.ts";
import { costUsd, DEFAULT_PRICES } from "../../src/config/prices.ts";
import { startAnthropicServer, startOpenAIServer, failFirst, type AnthropicServer, type OpenAIServer } from "../servers/index.ts";
import { ChainRecordSchema } from "../../src/store/chain-record.ts";
import { allFileText, config, readJsonlFile, SEEDS, tmpDir, writeSeeds } from "./helpers.ts";

const OPENAI_KEY = "sk-test-openai-0123456789abcdefghijklmnop";
const ANTHROPIC_KEY = "sk-ant-test_0123456789abcdefghijklmnop";
let openai: OpenAIServer;
let anthropic: AnthropicServer;

beforeAll(async () => {
  process.env.OPENAI_API_KEY = OPENAI_KEY;
  process.env.ANTHROPIC_API_KEY = ANTHROPIC_KEY;
  openai = await startOpenAIServer({ apiKey: OPENAI_KEY });
  anthropic = await startAnthropicServer({ apiKey: ANTHROPIC_KEY });
});
afterAll(async () => {
  await openai.close();
  await anthropic.close();
});

const mini = DEFAULT_PRICES.models["openai/gpt-4o-mini"]!;

/** Sum of the cost of what the server reported, from the responses it sent. */
function ledgerCharges(out: string) {
  const entries = readJsonlFile<{ type: string; usd: number; input_tokens: number; output_tokens: number; estimated?: boolean }>(join(out, "ledger.jsonl"));
  return entries.filter((e) => e.type === "charge");
}

describe("generate with hosted providers (loopback servers, real SDK clients)", () => {
  it("stepwise on OpenAI: records chains per the contract and charges exactly the reported usage", async () => {
    openai.setResponder(undefined);
    openai.clearRequests();
    const dir = tmpDir();
    const out = join(dir, "run");
    const summary = await runGenerate(config({ input: writeSeeds(dir, SEEDS.slice(0, 4)), out, provider: "openai", model: "gpt-4o-mini", baseUrl: openai.baseURL, steps: 3 }));
    expect(summary.status).toBe("completed");
    const chains = readJsonlFile(join(out, "chains.jsonl"));
    expect(chains).toHaveLength(4);
    for (const c of chains) {
      const rec = ChainRecordSchema.parse(c);
      expect(rec.steps).toHaveLength(3);
      expect(new Set([rec.anchor, ...rec.steps]).size).toBe(4);
      expect(rec.generator).toMatchObject({ provider: "openai", model: "gpt-4o-mini", steering: "stepwise", prompt: "stepwise", prompt_version: 1 });
      expect(rec.usage.usd).toBeGreaterThan(0);
    }
    const reqs = openai.requestsTo("/v1/chat/completions");
    expect(reqs).toHaveLength(12);
    // the prompt delimits the seed and shows the chain so far
    expect(reqs.some((r) => JSON.stringify(r.body.messages).includes("<sentence>The library opens"))).toBe(true);
    // ledger: one reservation and one charge per call; the charge equals the usage the server reported
    const charges = ledgerCharges(out);
    expect(charges).toHaveLength(12);
    expect(charges.every((c) => !c.estimated)).toBe(true);
    const chargedUsd = charges.reduce((s, c) => s + c.usd, 0);
    const fromTokens = charges.reduce((s, c) => s + costUsd(mini, c.input_tokens, c.output_tokens), 0);
    expect(chargedUsd).toBeCloseTo(fromTokens, 12);
    expect(summary.manifest.totals.usd).toBeCloseTo(chargedUsd, 9);
    const sumChains = chains.reduce((s: number, c: any) => s + c.usage.usd, 0);
    expect(sumChains).toBeCloseTo(chargedUsd, 8);
    // the key is never written into the run directory
    expect(allFileText(out)).not.toContain(OPENAI_KEY);
    expect(allFileText(out)).not.toContain("sk-test");
  });

  it("ladder on Anthropic: one structured call per chain (forced tool), steps parsed and cleaned", async () => {
    anthropic.setResponder(undefined);
    anthropic.clearRequests();
    const dir = tmpDir();
    const out = join(dir, "run");
    await runGenerate(config({ input: writeSeeds(dir, SEEDS.slice(0, 3)), out, provider: "anthropic", model: "claude-haiku-4-5", baseUrl: anthropic.baseURL, steering: "ladder", steps: 5, maxOutputTokens: 600 }));
    const chains = readJsonlFile(join(out, "chains.jsonl"));
    expect(chains).toHaveLength(3);
    for (const c of chains) expect(c.steps).toHaveLength(5);
    const msgs = anthropic.requestsTo("/v1/messages");
    expect(msgs).toHaveLength(3);
    expect(msgs[0]!.body.tool_choice).toMatchObject({ type: "tool" });
    expect(allFileText(out)).not.toContain(ANTHROPIC_KEY);
  });

  it("retries 429 (retry-after) and 500, charging only answered calls", async () => {
    openai.clearRequests();
    openai.setResponder(failFirst(2, { type: "error", status: 429, retryAfterMs: 10 }));
    const dir = tmpDir();
    const out = join(dir, "run");
    await runGenerate(config({ input: writeSeeds(dir, SEEDS.slice(0, 1)), out, provider: "openai", model: "gpt-4o-mini", baseUrl: openai.baseURL, steps: 2, concurrency: 1 }));
    const entries = readJsonlFile<{ type: string }>(join(out, "ledger.jsonl"));
    expect(entries.filter((e) => e.type === "release")).toHaveLength(2);
    expect(entries.filter((e) => e.type === "charge")).toHaveLength(2);
    expect(openai.requestsTo("/v1/chat/completions")).toHaveLength(4);
    openai.setResponder(undefined);
  });

  it("a malformed body fails that chain only; the others are saved and --resume retries it", async () => {
    openai.clearRequests();
    const bad = SEEDS[1]!;
    openai.setResponder((req, ctx) => (JSON.stringify(req.body).includes(bad.slice(0, 20)) ? { type: "malformed", body: '{"id": "x", "choi' } : ctx.defaultReply()));
    const dir = tmpDir();
    const out = join(dir, "run");
    const input = writeSeeds(dir, SEEDS.slice(0, 3));
    await expect(runGenerate(config({ input, out, provider: "openai", model: "gpt-4o-mini", baseUrl: openai.baseURL, steps: 2 }))).rejects.toThrow(/1 chain\(s\) failed.*--resume/);
    expect(readJsonlFile(join(out, "chains.jsonl"))).toHaveLength(2);
    openai.setResponder(undefined);
    const s = await runGenerate(config({ input, out, provider: "openai", model: "gpt-4o-mini", baseUrl: openai.baseURL, steps: 2, resume: true }));
    expect(s.status).toBe("completed");
    expect(readJsonlFile(join(out, "chains.jsonl")).map((c) => c.anchor).sort()).toEqual(SEEDS.slice(0, 3).sort());
  });

  it("a bad key stops the run (not retried per chain)", async () => {
    openai.clearRequests();
    const dir = tmpDir();
    process.env.OPENAI_API_KEY = "sk-wrong-key-000000000000000000";
    try {
      await expect(
        runGenerate(config({ input: writeSeeds(dir, SEEDS.slice(0, 4)), out: join(dir, "run"), provider: "openai", model: "gpt-4o-mini", baseUrl: openai.baseURL, steps: 2 })),
      ).rejects.toSatisfy((e: unknown) => e instanceof RankchainError && /401/.test((e as Error).message) && !(e as Error).message.includes("sk-wrong-key"));
      expect(openai.requestsTo("/v1/chat/completions").length).toBeLessThanOrEqual(2);
    } finally {
      process.env.OPENAI_API_KEY = OPENAI_KEY;
    }
  });

  it("a missing key is a ConfigError naming the variable, before anything is written", async () => {
    const dir = tmpDir();
    delete process.env.ANTHROPIC_API_KEY;
    try {
      await expect(
        runGenerate(config({ input: writeSeeds(dir, SEEDS.slice(0, 1)), out: join(dir, "run"), provider: "anthropic", model: "claude-haiku-4-5", baseUrl: anthropic.baseURL })),
      ).rejects.toSatisfy((e: unknown) => e instanceof ConfigError && /ANTHROPIC_API_KEY/.test((e as Error).message));
    } finally {
      process.env.ANTHROPIC_API_KEY = ANTHROPIC_KEY;
    }
  });

  it("--max-usd with an unpriced model is an error unless prices are given", async () => {
    const dir = tmpDir();
    const input = writeSeeds(dir, SEEDS.slice(0, 1));
    await expect(
      runGenerate(config({ input, out: join(dir, "a"), provider: "openai-compatible", model: "llama-3-8b", baseUrl: openai.baseURL, maxUsd: 1 })),
    ).rejects.toThrow(/no price.*--price-input/);
    const s = await runGenerate(config({ input, out: join(dir, "b"), provider: "openai-compatible", model: "llama-3-8b", baseUrl: openai.baseURL, maxUsd: 1, priceInput: 0.1, priceOutput: 0.2, steps: 2 }));
    expect(s.manifest.totals.usd).toBeGreaterThan(0);
  });

  it("resume refuses changed settings with the field named, and an existing run without --resume", async () => {
    openai.setResponder(undefined);
    const dir = tmpDir();
    const out = join(dir, "run");
    const input = writeSeeds(dir, SEEDS.slice(0, 2));
    const base = { input, out, provider: "openai" as const, model: "gpt-4o-mini", baseUrl: openai.baseURL, steps: 2 };
    await runGenerate(config(base));
    await expect(runGenerate(config(base))).rejects.toThrow(/already holds a run; pass --resume/);
    await expect(runGenerate(config({ ...base, steps: 3, resume: true }))).rejects.toThrow(/--resume refused.*steps: was 2, now 3/);
    openai.clearRequests();
    const again = await runGenerate(config({ ...base, resume: true }));
    expect(again.chainsWrittenNow).toBe(0);
    expect(openai.requestsTo("/v1/chat/completions")).toHaveLength(0);
  });

  it("property: at concurrency 16 with random response sizes the cap is never exceeded", async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 2 ** 31 - 1 }), fc.double({ min: 0.0005, max: 0.01, noNaN: true }), async (salt, cap) => {
        let i = 0;
        openai.setResponder((_req, ctx) => {
          const k = (salt + i++ * 7919) % 97;
          const words = Array.from({ length: 1 + (k % 40) }, (_, j) => `word${(k * 31 + j) % 53}`).join(" ");
          const r = ctx.defaultReply();
          return r.type === "text" ? { ...r, text: `${r.text.replace(/\.$/, "")} ${words}.` } : r;
        });
        const dir = tmpDir();
        const out = join(dir, "run");
        const seeds = Array.from({ length: 40 }, (_, j) => `${SEEDS[j % SEEDS.length]!.replace(/\.$/, "")} number ${j}.`);
        try {
          await runGenerate(config({ input: writeSeeds(dir, seeds), out, provider: "openai", model: "gpt-4o", baseUrl: openai.baseURL, steps: 3, concurrency: 16, maxUsd: cap, maxOutputTokens: 80 }));
        } catch (e) {
          if (!(e instanceof BudgetExceededError)) throw e;
        }
        const total = ledgerCharges(out).reduce((s, c) => s + c.usd, 0);
        expect(total).toBeLessThanOrEqual(cap + 1e-12);
        // the cap is what stopped it (the run would cost far more), and run.json says so
        const run = JSON.parse(readFileSync(join(out, "run.json"), "utf8"));
        expect(run.status).toBe("budget_reached");
        expect(run.totals.usd).toBeLessThanOrEqual(cap + 1e-12);
      }),
      { numRuns: 6 },
    );
    openai.setResponder(undefined);
  });
});
