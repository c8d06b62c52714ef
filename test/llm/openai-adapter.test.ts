/**
 * The real `openai` SDK client, through our adapter, against the loopback Chat Completions server.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import OpenAI from "openai";
import { ConfigError, ProviderCallError } from "../../src/errors.ts";
import { createOpenAICompatibleModel, createOpenAIModel } from "../../src/llm/openai/index.ts";
import { conservativeTokenBound } from "../../src/llm/tokens.ts";
import type { ChatMessage, GenerateRequest } from "../../src/llm/types.ts";
import { failFirst, hashEmbedding, startOpenAIServer, type OpenAIServer } from "../servers/index.ts";

const KEY = "sk-test-openai-0123456789abcdefghijklmn";
let srv: OpenAIServer;

const messages: ChatMessage[] = [
  { role: "system", content: "You build ranking chains. Answer with the new sentence only." },
  {
    role: "user",
    content: "Anchor:\n<sentence>The old ferry crossed the grey harbour at dawn.</sentence>\n\nChain so far:\n(none yet)\n\nWrite step 1 of 4.",
  },
];
const ladderSchema = {
  type: "object",
  properties: { steps: { type: "array", items: { type: "string" }, minItems: 4, maxItems: 4 } },
  required: ["steps"],
  additionalProperties: false,
};

function model(extra: Partial<Parameters<typeof createOpenAIModel>[0]> = {}) {
  return createOpenAIModel({ model: "gpt-4o-mini", apiKey: KEY, baseURL: srv.baseURL, ...extra });
}

async function callError(p: Promise<unknown>): Promise<ProviderCallError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(ProviderCallError);
    return e as ProviderCallError;
  }
  throw new Error("expected the call to fail");
}

beforeAll(async () => {
  srv = await startOpenAIServer({ apiKey: KEY });
});
afterAll(async () => {
  await srv.close();
});
beforeEach(() => {
  srv.setResponder(undefined);
  srv.clearRequests();
  vi.unstubAllEnvs();
});

describe("OpenAI adapter: requests and responses", () => {
  it("sends the exact request body and the key as a bearer token; returns text, usage, finish reason", async () => {
    const m = model();
    const r = await m.generate({ messages, maxOutputTokens: 60, temperature: 0.4, seed: 11 });
    const [req] = srv.requestsTo("/v1/chat/completions");
    expect(req!.body).toEqual({ model: "gpt-4o-mini", messages, max_completion_tokens: 60, temperature: 0.4, seed: 11 });
    expect(req!.headers["authorization"]).toBe(`Bearer ${KEY}`);
    expect(req!.headers["x-stainless-retry-count"]).toBe("0");
    expect(r.text).not.toBe("");
    expect(r.text).not.toContain("\n");
    expect(r.finishReason).toEqual({ unified: "stop", raw: "stop" });
    expect(r.requestId).toBe(req!.responseRequestId);
    expect(r.warnings).toEqual([]);
    const raw = r.raw as { usage: { prompt_tokens: number; completion_tokens: number } };
    expect(r.usage).toEqual({ inputTokens: raw.usage.prompt_tokens, outputTokens: raw.usage.completion_tokens, cachedInputTokens: 0 });
  });

  it("the tiktoken count before the call equals the usage the server reports after it", async () => {
    const m = model();
    const counted = await m.countInputTokens(messages);
    const r = await m.generate({ messages, maxOutputTokens: 60 });
    expect(counted.exact).toBe(true);
    expect(r.usage.inputTokens).toBe(counted.tokens);
    expect(counted.tokens).toBeLessThanOrEqual(conservativeTokenBound(messages));
  });

  it("uses an injected fetch and declares no guidance capability", async () => {
    const seen: string[] = [];
    const f: typeof fetch = (input, init) => {
      seen.push(String(input instanceof Request ? input.url : input));
      return fetch(input, init);
    };
    const m = model({ fetch: f });
    expect(m.capabilities).toEqual({ guidance: false, structuredOutput: true, paid: true });
    await m.generate({ messages, maxOutputTokens: 10 });
    expect(seen).toEqual([`${srv.baseURL}/chat/completions`]);
  });

  it("cached tokens are reported separately", async () => {
    srv.setResponder(() => ({ type: "text", text: "A ferry.", usage: { inputTokens: 500, cachedInputTokens: 384, outputTokens: 3 } }));
    const r = await model().generate({ messages, maxOutputTokens: 10 });
    expect(r.usage).toEqual({ inputTokens: 500, outputTokens: 3, cachedInputTokens: 384 });
  });

  it("output cut at max_completion_tokens → finish 'length'", async () => {
    srv.setResponder(() => ({ type: "text", text: "one two three four five six seven eight nine ten eleven twelve" }));
    const r = await model().generate({ messages, maxOutputTokens: 3 });
    expect(r.finishReason).toEqual({ unified: "length", raw: "length" });
    expect(r.usage.outputTokens).toBeLessThanOrEqual(3);
    expect(r.text.split(" ").length).toBeLessThan(12);
  });

  it("ladder: response_format json_schema (strict) and a JSON object with N steps back", async () => {
    const responseFormat = { type: "json" as const, name: "ladder", schema: ladderSchema };
    const m = model();
    const counted = await m.countInputTokens(messages, { responseFormat });
    const r = await m.generate({ messages, maxOutputTokens: 400, responseFormat });
    const [req] = srv.requestsTo("/v1/chat/completions");
    expect(req!.body.response_format).toEqual({ type: "json_schema", json_schema: { name: "ladder", schema: ladderSchema, strict: true } });
    const parsed = JSON.parse(r.text) as { steps: string[] };
    expect(parsed.steps).toHaveLength(4);
    expect(new Set(parsed.steps).size).toBe(4);
    expect(counted.exact).toBe(false);
    expect(r.usage.inputTokens!).toBeLessThanOrEqual(counted.tokens);
  });

  it("reasoning models: max_completion_tokens, no temperature (warned), accepted by the server", async () => {
    const r = await model({ model: "gpt-5-nano", reasoningEffort: "minimal" }).generate({ messages, maxOutputTokens: 50, temperature: 0.2 });
    const [req] = srv.requestsTo("/v1/chat/completions");
    expect(req!.body).toEqual({ model: "gpt-5-nano", messages, max_completion_tokens: 50, reasoning_effort: "minimal" });
    expect(r.warnings).toEqual([expect.objectContaining({ type: "unsupported-setting", setting: "temperature" })]);
  });

  it("a refusal is surfaced as a warning and content-filter when there is no content", async () => {
    srv.setResponder(() => ({
      type: "raw",
      status: 200,
      body: JSON.stringify({ choices: [{ index: 0, message: { role: "assistant", content: null, refusal: "I can't help with that." }, finish_reason: "stop" }] }),
    }));
    const r = await model().generate({ messages, maxOutputTokens: 10 });
    expect(r.text).toBe("");
    expect(r.finishReason.unified).toBe("content-filter");
    expect(r.warnings[0]).toMatchObject({ type: "other" });
    expect(r.usage).toEqual({ inputTokens: undefined, outputTokens: undefined, cachedInputTokens: undefined });
  });
});

describe("OpenAI adapter: faults → ProviderCallError", () => {
  it("429 with retry-after seconds", async () => {
    srv.setResponder(() => ({ type: "error", status: 429, retryAfter: 7 }));
    const e = await callError(model().generate({ messages, maxOutputTokens: 10 }));
    const [req] = srv.requestsTo("/v1/chat/completions");
    expect(e).toMatchObject({ status: 429, retryAfterMs: 7000, isRetryable: true, requestId: req!.responseRequestId });
    expect(e.url).toBe(`${srv.baseURL}/chat/completions`);
    expect(e.bodyExcerpt).toContain("rate_limit_exceeded");
    expect(srv.requestsTo("/v1/chat/completions")).toHaveLength(1); // the SDK did not retry on its own
  });

  it("429 with retry-after-ms", async () => {
    srv.setResponder(() => ({ type: "error", status: 429, retryAfterMs: 120, retryAfter: 1 }));
    const e = await callError(model().generate({ messages, maxOutputTokens: 10 }));
    expect(e.retryAfterMs).toBe(120);
  });

  it.each([500, 502, 503, 408, 409])("%i is retryable", async (status) => {
    srv.setResponder(() => ({ type: "error", status }));
    const e = await callError(model().generate({ messages, maxOutputTokens: 10 }));
    expect(e).toMatchObject({ status, isRetryable: true });
  });

  it("x-should-retry: false on a 500 → not retryable, hint kept", async () => {
    srv.setResponder(() => ({ type: "error", status: 500, shouldRetry: false }));
    const e = await callError(model().generate({ messages, maxOutputTokens: 10 }));
    expect(e).toMatchObject({ status: 500, isRetryable: false, shouldRetryHeader: false });
  });

  it.each([400, 404, 422])("%i is not retryable", async (status) => {
    srv.setResponder(() => ({ type: "error", status, message: "nope" }));
    const e = await callError(model().generate({ messages, maxOutputTokens: 10 }));
    expect(e).toMatchObject({ status, isRetryable: false });
    expect(e.message).toContain("nope");
  });

  it("a truncated JSON body → malformed, not retryable, with an excerpt", async () => {
    srv.setResponder(() => ({ type: "malformed" }));
    const e = await callError(model().generate({ messages, maxOutputTokens: 10 }));
    expect(e.isRetryable).toBe(false);
    expect(e.status).toBe(200);
    expect(e.message).toMatch(/malformed response body.*not JSON/);
    expect(e.bodyExcerpt).toContain("chatcmpl-");
    expect(e.requestId).toMatch(/^req_/);
  });

  it("valid JSON of the wrong shape and an HTML body → malformed", async () => {
    srv.setResponder(() => ({ type: "malformed", body: JSON.stringify({ object: "chat.completion", choices: [] }) }));
    const e1 = await callError(model().generate({ messages, maxOutputTokens: 10 }));
    expect(e1.message).toMatch(/unexpected shape at choices/);
    srv.setResponder(() => ({ type: "malformed", contentType: "text/html", body: "<html>502 Bad Gateway</html>" }));
    const e2 = await callError(model().generate({ messages, maxOutputTokens: 10 }));
    expect(e2.message).toMatch(/not JSON/);
    expect(e2.isRetryable).toBe(false);
  });

  it("a connection reset → retryable connection error", async () => {
    srv.setResponder(failFirst(1, { type: "reset" }));
    const e = await callError(model().generate({ messages, maxOutputTokens: 10 }));
    expect(e.isRetryable).toBe(true);
    expect(e.status).toBeUndefined();
    expect(e.message).toMatch(/connection error/);
    // the next call gets the default answer
    await expect(model().generate({ messages, maxOutputTokens: 10 })).resolves.toMatchObject({ finishReason: { unified: "stop" } });
  });

  it("a slow server and a per-request timeout → retryable timeout", async () => {
    srv.setResponder(() => ({ type: "text", text: "late", delayMs: 5_000 }));
    const e = await callError(model().generate({ messages, maxOutputTokens: 10, timeoutMs: 100 }));
    expect(e.isRetryable).toBe(true);
    expect(e.message).toMatch(/timed out/);
  });

  it("an abort → not retryable", async () => {
    srv.setResponder(() => ({ type: "text", text: "late", delayMs: 5_000 }));
    const ac = new AbortController();
    const p = model().generate({ messages, maxOutputTokens: 10, abortSignal: ac.signal });
    setTimeout(() => ac.abort(), 50);
    const e = await callError(p);
    expect(e.isRetryable).toBe(false);
    expect(e.message).toMatch(/aborted/);
  });
});

describe("OpenAI adapter: keys", () => {
  it("missing key → ConfigError naming OPENAI_API_KEY, nothing sent", async () => {
    vi.stubEnv("OPENAI_API_KEY", "");
    const m = createOpenAIModel({ model: "gpt-4o-mini", baseURL: srv.baseURL });
    await expect(m.generate({ messages, maxOutputTokens: 5 })).rejects.toThrow(ConfigError);
    await expect(m.generate({ messages, maxOutputTokens: 5 })).rejects.toThrow(/OPENAI_API_KEY/);
    expect(() => m.checkApiKey()).toThrow(/OPENAI_API_KEY/);
    expect(srv.requests).toHaveLength(0);
  });

  it("the key is read from the environment at request time", async () => {
    vi.stubEnv("OPENAI_API_KEY", "");
    const m = createOpenAIModel({ model: "gpt-4o-mini", baseURL: srv.baseURL });
    vi.stubEnv("OPENAI_API_KEY", KEY);
    await m.generate({ messages, maxOutputTokens: 5 });
    expect(srv.requests[0]!.headers["authorization"]).toBe(`Bearer ${KEY}`);
  });

  it("a wrong key: 401, not retryable, and the key appears nowhere in the error", async () => {
    const wrong = "sk-wrong-key-zyxwvutsrqponmlkjihgfedcba9876";
    const e = await callError(model({ apiKey: wrong }).generate({ messages, maxOutputTokens: 5 }));
    expect(e).toMatchObject({ status: 401, isRetryable: false });
    const everything = [e.message, e.bodyExcerpt, e.stack, JSON.stringify({ ...e })].join("\n");
    expect(everything).not.toContain(wrong);
    expect(everything).not.toContain(KEY);
  });

  it("no error of any fault kind carries the key", async () => {
    for (const reply of [
      { type: "error", status: 500, message: `echo ${KEY}` },
      { type: "malformed", body: `{"leak": "${KEY}"` },
      { type: "reset" },
    ] as const) {
      srv.setResponder(() => reply);
      const e = await callError(model().generate({ messages, maxOutputTokens: 5 }));
      expect([e.message, e.bodyExcerpt ?? ""].join(" ")).not.toContain(KEY);
    }
  });
});

describe("OpenAI-compatible configuration", () => {
  it("sends max_tokens and temperature, a placeholder key when none is set, and estimates with the bound", async () => {
    vi.stubEnv("OPENAI_API_KEY", "");
    const local = await startOpenAIServer(); // like vLLM / Ollama: no key configured
    try {
    const m = createOpenAICompatibleModel({ model: "qwen2.5-7b-instruct", baseURL: local.baseURL });
    expect(m.provider).toBe("openai-compatible");
    const req: GenerateRequest = { messages, maxOutputTokens: 80, temperature: 0.9, seed: 3 };
    const counted = await m.countInputTokens(messages);
    const r = await m.generate(req);
    const [got] = local.requestsTo("/v1/chat/completions");
    expect(got!.body).toEqual({ model: "qwen2.5-7b-instruct", messages, max_tokens: 80, temperature: 0.9, seed: 3 });
    expect(got!.headers["authorization"]).toBe("Bearer not-needed");
    expect(counted).toEqual({ tokens: conservativeTokenBound(messages), exact: false, method: expect.stringContaining("conservative"), quality: "bound" });
    expect(r.usage.inputTokens!).toBeLessThanOrEqual(counted.tokens);
    } finally {
      await local.close();
    }
  });

  it("OPENAI_BASE_URL is used when no base URL is given; neither → ConfigError", async () => {
    vi.stubEnv("OPENAI_BASE_URL", srv.baseURL);
    vi.stubEnv("OPENAI_API_KEY", KEY);
    await createOpenAICompatibleModel({ model: "local" }).generate({ messages, maxOutputTokens: 5 });
    expect(srv.requests).toHaveLength(1);
    vi.stubEnv("OPENAI_BASE_URL", "");
    expect(() => createOpenAICompatibleModel({ model: "local", baseURL: "" })).toThrow(ConfigError);
    expect(() => createOpenAICompatibleModel({ model: "local" })).toThrow(/--base-url.*OPENAI_BASE_URL/);
    expect(() => createOpenAICompatibleModel({ model: "local", baseURL: "localhost:8000" })).toThrow(ConfigError);
  });

  it("a server that ignores response_format still answers; the text is returned as is", async () => {
    srv.setResponder(() => ({ type: "text", text: "Sure! Here are the steps: one, two." }));
    const m = createOpenAICompatibleModel({ model: "local", baseURL: srv.baseURL, apiKey: KEY });
    const r = await m.generate({ messages, maxOutputTokens: 50, responseFormat: { type: "json", name: "ladder", schema: ladderSchema } });
    expect(srv.requests[0]!.body.response_format.type).toBe("json_schema");
    expect(r.text).toContain("Here are");
  });
});

describe("loopback embeddings endpoint (for the OpenAI embedder)", () => {
  it("returns deterministic normalised vectors through the SDK (base64 default and float)", async () => {
    const client = new OpenAI({ apiKey: KEY, baseURL: srv.baseURL, maxRetries: 0 });
    const a = await client.embeddings.create({ model: "text-embedding-3-small", input: ["a red car", "a red car", "quantum field theory"], dimensions: 64 });
    expect(a.data).toHaveLength(3);
    const [v0, v1, v2] = a.data.map((d) => d.embedding);
    expect(v0).toHaveLength(64);
    expect(v0).toEqual(v1);
    const norm = Math.sqrt(v0!.reduce((s, x) => s + x * x, 0));
    expect(norm).toBeCloseTo(1, 5);
    expect(v2).not.toEqual(v0);
    expect(a.usage.prompt_tokens).toBeGreaterThan(0);
    const f = await client.embeddings.create({ model: "text-embedding-3-small", input: "a red car", encoding_format: "float", dimensions: 64 });
    const expected = hashEmbedding("a red car", 64);
    f.data[0]!.embedding.forEach((x, i) => expect(x).toBeCloseTo(expected[i]!, 5));
    expect(srv.requestsTo("/v1/embeddings")[0]!.body.encoding_format).toBe("base64");
  });

  it("texts sharing words are closer than unrelated ones", () => {
    const cos = (a: number[], b: number[]) => a.reduce((s, x, i) => s + x * b[i]!, 0);
    const a = hashEmbedding("the cat sat on the mat", 256);
    const b = hashEmbedding("the cat sat on the rug", 256);
    const c = hashEmbedding("stock markets fell sharply", 256);
    expect(cos(a, b)).toBeGreaterThan(cos(a, c));
  });
});
