import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { BudgetLedger } from "../../src/budget/ledger.ts";
import { BudgetExceededError, ConfigError, ProviderCallError } from "../../src/errors.ts";
import { countEmbeddingTokens, createEmbedder, OpenAIEmbedder } from "../../src/embed/index.ts";
import { failFirst, startOpenAIServer, type OpenAIServer } from "../servers/index.ts";

const KEY = "sk-test-embeddings-0123456789abcdef";
const PRICE = { input: 0.02, output: 0 }; // text-embedding-3-small, USD per million tokens
const TEXTS = [
  "A man is playing a guitar.",
  "A man plays the guitar on stage.",
  "",
  "Two dogs run across a snowy field in the early morning light.",
  "The stock market fell today.",
];

let srv: OpenAIServer;
beforeAll(async () => {
  srv = await startOpenAIServer({ apiKey: KEY, embeddingDimensions: 64 });
});
afterAll(async () => {
  await srv.close();
});
afterEach(() => {
  srv.clearRequests();
  srv.setEmbeddingsResponder(undefined);
  vi.unstubAllEnvs();
});

const tokensOf = (texts: string[]) => texts.reduce((s, t) => s + countEmbeddingTokens(t === "" ? " " : t), 0);

describe("OpenAI embeddings backend (loopback server)", () => {
  it("embeds in batches, keeps order and sends the documented request body", async () => {
    const e = await createEmbedder("openai:text-embedding-3-small", { apiKey: KEY, baseURL: srv.baseURL, batchSize: 2 });
    const vs = await e.embed(TEXTS);
    expect(vs).toHaveLength(5);
    vs.forEach((v) => expect(v.length).toBe(64));
    const reqs = srv.requestsTo("/v1/embeddings");
    expect(reqs.map((r) => r.body.input)).toEqual([[TEXTS[0], TEXTS[1]], [" ", TEXTS[3]], [TEXTS[4]]]);
    expect(reqs[0]!.body).toEqual({ model: "text-embedding-3-small", input: [TEXTS[0], TEXTS[1]], encoding_format: "float" });
    expect(reqs[0]!.headers.authorization).toBe(`Bearer ${KEY}`);
    // the same text gives the same vector from any batch
    const again = await e.embed([TEXTS[4]!]);
    expect(Array.from(again[0]!)).toEqual(Array.from(vs[4]!));
    expect(e.info).toMatchObject({ id: "openai:text-embedding-3-small", backend: "openai", pooling: "provider", normalize: true });
    await e.dispose();
    await expect(e.embed(["x"])).rejects.toThrow(/disposed/);
  });

  it("passes dimensions through and records them in the id", async () => {
    const e = await createEmbedder("openai:text-embedding-3-small", { apiKey: KEY, baseURL: srv.baseURL, dimensions: 16 });
    const [v] = await e.embed(["hello"]);
    expect(v!.length).toBe(16);
    expect(srv.requestsTo("/v1/embeddings")[0]!.body.dimensions).toBe(16);
    expect(e.info.id).toBe("openai:text-embedding-3-small@16");
    expect(e.info.dimensions).toBe(16);
  });

  it("reserves before each request and charges the reported usage into ledger.jsonl", async () => {
    const dir = mkdtempSync(join(tmpdir(), "rc-ledger-"));
    try {
      const path = join(dir, "ledger.jsonl");
      const ledger = await BudgetLedger.open(path, 1);
      // A fetch that reports a different prompt_tokens than the client counted: the charge must follow the report.
      const reporting: typeof fetch = async (input, init) => {
        const res = await fetch(input, init);
        const body = (await res.json()) as { usage: { prompt_tokens: number; total_tokens: number } };
        body.usage = { prompt_tokens: 1000, total_tokens: 1000 };
        return new Response(JSON.stringify(body), { status: res.status, headers: res.headers });
      };
      const e = new OpenAIEmbedder({ model: "text-embedding-3-small", apiKey: KEY, baseURL: srv.baseURL, ledger, batchSize: 3, fetch: reporting });
      await e.embed(TEXTS);
      await ledger.close();
      const entries = readFileSync(path, "utf8").trim().split("\n").map((l) => JSON.parse(l));
      expect(entries.map((x) => x.type)).toEqual(["reserve", "charge", "reserve", "charge"]);
      // a base URL other than api.openai.com may tokenize differently: the cl100k count is an estimate, reserved with a margin
      const counted = tokensOf(TEXTS.slice(0, 3));
      expect(entries[0]).toMatchObject({ counted_input_tokens: counted, count: "estimate", stage: "validate", model: "openai/text-embedding-3-small" });
      expect(entries[0].input_tokens).toBe(Math.ceil(counted * 1.1) + 16);
      expect(entries[0].usd).toBeCloseTo((entries[0].input_tokens * 0.02) / 1e6, 12);
      // the server billed 1000 tokens: the next reservation covers what it learned
      expect(entries[2].input_tokens).toBeGreaterThanOrEqual(1000);
      expect(entries[1]).toMatchObject({ id: entries[0].id, input_tokens: 1000, output_tokens: 0 });
      expect(entries[1].usd).toBeCloseTo((1000 * 0.02) / 1e6, 12);
      expect(entries[1].request_id).toMatch(/^req_/);
      expect(ledger.totals().spentUsd).toBeCloseTo((2000 * 0.02) / 1e6, 12);
      expect(ledger.totals().reservedUsd).toBe(0);
      expect(readFileSync(path, "utf8")).not.toContain(KEY);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("stops at the cap: the batch that would cross it is not sent (BudgetExceededError)", async () => {
    const first = tokensOf(TEXTS.slice(0, 2));
    const price = { input: 1000, output: 0 }; // make tokens expensive so the cap is easy to place
    const cap = ((Math.ceil(first * 1.1) + 16) * price.input) / 1e6 + 1e-9; // room for exactly the first request (count + estimate margin)
    const ledger = BudgetLedger.inMemory(cap);
    const e = await createEmbedder("openai:text-embedding-3-small", { apiKey: KEY, baseURL: srv.baseURL, ledger, price, batchSize: 2 });
    const err = await e.embed(TEXTS).catch((x: unknown) => x);
    expect(err).toBeInstanceOf(BudgetExceededError);
    expect(srv.requestsTo("/v1/embeddings")).toHaveLength(1);
    expect(ledger.totals().spentUsd).toBeLessThanOrEqual(cap);
    expect(ledger.totals().calls).toBe(1);
  });

  it("retries a 429 with a fresh reservation per attempt, releasing the failed one", async () => {
    srv.setEmbeddingsResponder(failFirst(1, { type: "error", status: 429, retryAfterMs: 5 }));
    const dir = mkdtempSync(join(tmpdir(), "rc-ledger-"));
    try {
      const path = join(dir, "ledger.jsonl");
      const ledger = await BudgetLedger.open(path, 1);
      const sleeps: number[] = [];
      const e = new OpenAIEmbedder({
        model: "text-embedding-3-small", apiKey: KEY, baseURL: srv.baseURL, ledger,
        sleep: async (ms) => void sleeps.push(ms),
      });
      const vs = await e.embed(["one", "two"]);
      expect(vs).toHaveLength(2);
      expect(sleeps).toEqual([5]);
      await ledger.close();
      const entries = readFileSync(path, "utf8").trim().split("\n").map((l) => JSON.parse(l));
      expect(entries.map((x) => x.type)).toEqual(["reserve", "release", "reserve", "charge"]);
      expect(entries[1].reason).toBe("HTTP 429");
      expect(entries[3].input_tokens).toBe(tokensOf(["one", "two"]));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("does not retry a 400 and throws a ProviderCallError without the key", async () => {
    srv.setEmbeddingsResponder(() => ({ type: "error", status: 400, message: "bad input" }));
    const ledger = BudgetLedger.inMemory(1);
    const e = new OpenAIEmbedder({ model: "text-embedding-3-small", apiKey: KEY, baseURL: srv.baseURL, ledger, sleep: async () => undefined });
    const err = await e.embed(["x"]).catch((x: unknown) => x);
    expect(err).toBeInstanceOf(ProviderCallError);
    expect((err as ProviderCallError).status).toBe(400);
    expect((err as ProviderCallError).isRetryable).toBe(false);
    expect(String((err as Error).message)).not.toContain(KEY);
    expect(srv.requestsTo("/v1/embeddings")).toHaveLength(1);
    expect(ledger.totals()).toMatchObject({ spentUsd: 0, reservedUsd: 0 });
  });

  it("names both ways to give the key when it is missing", async () => {
    vi.stubEnv("OPENAI_API_KEY", "");
    const err = await createEmbedder("openai:text-embedding-3-small", { baseURL: srv.baseURL }).catch((x: unknown) => x);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toContain("OPENAI_API_KEY");
  });

  it("refuses a capped ledger for a model with no price (never $0)", async () => {
    const err = await createEmbedder("openai:some-unknown-embedder", { apiKey: KEY, baseURL: srv.baseURL, ledger: BudgetLedger.inMemory(1) }).catch((x: unknown) => x);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toContain("some-unknown-embedder");
  });
});
