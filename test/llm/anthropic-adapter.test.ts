/**
 * The real `@anthropic-ai/sdk` client, through our adapter, against the loopback Messages server.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { ConfigError, ProviderCallError } from "../../src/errors.ts";
import { anthropicConservativeBound, createAnthropicModel } from "../../src/llm/anthropic/index.ts";
import type { ChatMessage } from "../../src/llm/types.ts";
import { startAnthropicServer, type AnthropicServer } from "../servers/index.ts";

const KEY = "sk-ant-api03_test-0123456789abcdefghijklmnop";
let srv: AnthropicServer;

const messages: ChatMessage[] = [
  { role: "system", content: "You build ranking chains. Answer with the new sentence only." },
  {
    role: "user",
    content:
      "Anchor:\n<sentence>The old ferry crossed the grey harbour at dawn.</sentence>\n\nChain so far:\n1. The old ferry crossed the grey harbour at dusk.\n\nWrite step 2 of 5.",
  },
];
const ladder = {
  type: "json" as const,
  name: "ladder",
  schema: {
    type: "object",
    properties: { steps: { type: "array", items: { type: "string" }, minItems: 5, maxItems: 5 } },
    required: ["steps"],
  },
};

function model(extra: Partial<Parameters<typeof createAnthropicModel>[0]> = {}) {
  return createAnthropicModel({ model: "claude-haiku-4-5", apiKey: KEY, baseURL: srv.baseURL, ...extra });
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
  srv = await startAnthropicServer({ apiKey: KEY });
});
afterAll(async () => {
  await srv.close();
});
beforeEach(() => {
  srv.setResponder(undefined);
  srv.setCountTokensResponder(undefined);
  srv.clearRequests();
  vi.unstubAllEnvs();
});

describe("Anthropic adapter: requests and responses", () => {
  it("sends the exact body (system split out, max_tokens, no seed) with the key; warns about seed", async () => {
    const r = await model().generate({ messages, maxOutputTokens: 64, temperature: 0.5, seed: 9, stop: ["\n"] });
    const [req] = srv.requestsTo("/v1/messages");
    expect(req!.body).toEqual({
      model: "claude-haiku-4-5",
      max_tokens: 64,
      system: messages[0]!.content,
      messages: [{ role: "user", content: messages[1]!.content }],
      temperature: 0.5,
      stop_sequences: ["\n"],
    });
    const auth = req!.headers["x-api-key"] ?? req!.headers["authorization"]?.replace(/^Bearer /, "");
    expect(auth).toBe(KEY);
    expect(req!.headers["anthropic-version"]).toBeTruthy();
    expect(r.warnings).toEqual([expect.objectContaining({ type: "unsupported-setting", setting: "seed" })]);
    expect(r.finishReason).toEqual({ unified: "stop", raw: "end_turn" });
    expect(r.text).not.toMatch(/dusk\.$|dawn\.$/); // step 2 differs from the anchor and step 1
    expect(r.requestId).toBe(req!.responseRequestId);
    const raw = r.raw as { usage: { input_tokens: number; output_tokens: number } };
    expect(r.usage).toEqual({ inputTokens: raw.usage.input_tokens, outputTokens: raw.usage.output_tokens, cachedInputTokens: 0 });
  });

  it("count_tokens (free endpoint) equals the input usage the call reports", async () => {
    const m = model();
    const c = await m.countInputTokens(messages);
    const r = await m.generate({ messages, maxOutputTokens: 64 });
    expect(c).toEqual({ tokens: r.usage.inputTokens, exact: true, method: "anthropic count_tokens endpoint", quality: "estimate" });
    const [countReq] = srv.requestsTo("/v1/messages/count_tokens");
    expect(countReq!.body).toEqual({ model: "claude-haiku-4-5", system: messages[0]!.content, messages: [messages[1]] });
  });

  it("ladder: a forced tool call; the tool input comes back as JSON text; count includes the tool", async () => {
    const m = model();
    const c = await m.countInputTokens(messages, { responseFormat: ladder });
    const r = await m.generate({ messages, maxOutputTokens: 500, responseFormat: ladder });
    const [req] = srv.requestsTo("/v1/messages");
    expect(req!.body.tools).toEqual([{ name: "ladder", description: expect.any(String), input_schema: ladder.schema }]);
    expect(req!.body.tool_choice).toEqual({ type: "tool", name: "ladder" });
    expect(srv.requestsTo("/v1/messages/count_tokens")[0]!.body.tools).toEqual(req!.body.tools);
    const steps = (JSON.parse(r.text) as { steps: string[] }).steps;
    expect(steps).toHaveLength(5);
    expect(new Set(steps).size).toBe(5);
    expect(r.finishReason).toEqual({ unified: "stop", raw: "tool_use" });
    expect(r.usage.inputTokens).toBe(c.tokens);
  });

  it("count_tokens failing → a conservative bound ≥ the real usage, marked not exact", async () => {
    srv.setCountTokensResponder(() => ({ type: "error", status: 500 }));
    const m = model();
    const c = await m.countInputTokens(messages, { responseFormat: ladder });
    expect(c.exact).toBe(false);
    expect(c.method).toMatch(/count_tokens unavailable: HTTP 500/);
    expect(c.tokens).toBe(anthropicConservativeBound(messages, ladder));
    const r = await m.generate({ messages, maxOutputTokens: 500, responseFormat: ladder });
    expect(r.usage.inputTokens!).toBeLessThanOrEqual(c.tokens);
  });

  it("uses an injected fetch for both endpoints and declares no guidance capability", async () => {
    const seen: string[] = [];
    const f: typeof fetch = (input, init) => {
      seen.push(new URL(String(input instanceof Request ? input.url : input)).pathname);
      return fetch(input, init);
    };
    const m = model({ fetch: f });
    expect(m.capabilities.guidance).toBe(false);
    await m.countInputTokens(messages);
    await m.generate({ messages, maxOutputTokens: 10 });
    expect(seen).toEqual(["/v1/messages/count_tokens", "/v1/messages"]);
  });

  it("cache reads are added to the input and reported as cached", async () => {
    srv.setResponder(() => ({ type: "text", text: "A ferry.", usage: { inputTokens: 1000, cachedInputTokens: 800, outputTokens: 4 } }));
    const r = await model().generate({ messages, maxOutputTokens: 10 });
    expect((r.raw as { usage: { input_tokens: number } }).usage.input_tokens).toBe(200);
    expect(r.usage).toEqual({ inputTokens: 1000, outputTokens: 4, cachedInputTokens: 800 });
  });

  it("max_tokens reached → finish 'length'", async () => {
    srv.setResponder(() => ({ type: "text", text: "one two three four five six seven eight nine ten eleven twelve thirteen" }));
    const r = await model().generate({ messages, maxOutputTokens: 4 });
    expect(r.finishReason).toEqual({ unified: "length", raw: "max_tokens" });
    expect(r.usage.outputTokens).toBeLessThanOrEqual(4);
  });

  it("temperature above 1 is clamped (and the server accepts it)", async () => {
    const r = await model().generate({ messages, maxOutputTokens: 30, temperature: 1.4 });
    expect(srv.requests[0]!.body.temperature).toBe(1);
    expect(r.warnings).toEqual([expect.objectContaining({ setting: "temperature" })]);
  });
});

describe("Anthropic adapter: faults → ProviderCallError", () => {
  it("429 with retry-after-ms and request id", async () => {
    srv.setResponder(() => ({ type: "error", status: 429, retryAfterMs: 1500 }));
    const e = await callError(model().generate({ messages, maxOutputTokens: 10 }));
    const [req] = srv.requestsTo("/v1/messages");
    expect(e).toMatchObject({ status: 429, retryAfterMs: 1500, isRetryable: true, requestId: req!.responseRequestId });
    expect(e.url).toBe(`${srv.baseURL}/v1/messages`);
    expect(e.bodyExcerpt).toContain("rate_limit_error");
    expect(srv.requestsTo("/v1/messages")).toHaveLength(1);
  });

  it("529 overloaded is retryable; 500 too; x-should-retry true on a 400 makes it retryable", async () => {
    srv.setResponder(() => ({ type: "error", status: 529, retryAfter: 3 }));
    const e = await callError(model().generate({ messages, maxOutputTokens: 10 }));
    expect(e).toMatchObject({ status: 529, isRetryable: true, retryAfterMs: 3000 });
    expect(e.message).toContain("529 Overloaded");
    srv.setResponder(() => ({ type: "error", status: 500 }));
    expect((await callError(model().generate({ messages, maxOutputTokens: 10 }))).isRetryable).toBe(true);
    srv.setResponder(() => ({ type: "error", status: 400, shouldRetry: true }));
    expect(await callError(model().generate({ messages, maxOutputTokens: 10 }))).toMatchObject({ isRetryable: true, shouldRetryHeader: true });
  });

  it("400 invalid request is not retryable", async () => {
    srv.setResponder(() => ({ type: "error", status: 400, message: "messages: roles must alternate" }));
    const e = await callError(model().generate({ messages, maxOutputTokens: 10 }));
    expect(e).toMatchObject({ status: 400, isRetryable: false });
    expect(e.message).toContain("roles must alternate");
  });

  it("malformed bodies → not retryable", async () => {
    srv.setResponder(() => ({ type: "malformed" }));
    const e = await callError(model().generate({ messages, maxOutputTokens: 10 }));
    expect(e).toMatchObject({ status: 200, isRetryable: false });
    expect(e.bodyExcerpt).toContain("msg_01broken");
    srv.setResponder(() => ({ type: "malformed", body: JSON.stringify({ type: "message", content: "not an array" }) }));
    expect((await callError(model().generate({ messages, maxOutputTokens: 10 }))).message).toMatch(/unexpected shape at content/);
  });

  it("connection reset → retryable; slow server past the timeout → retryable timeout", async () => {
    srv.setResponder(() => ({ type: "reset" }));
    expect((await callError(model().generate({ messages, maxOutputTokens: 10 }))).isRetryable).toBe(true);
    srv.setResponder(() => ({ type: "text", text: "late", delayMs: 5_000 }));
    const e = await callError(model({ timeoutMs: 100 }).generate({ messages, maxOutputTokens: 10 }));
    expect(e.isRetryable).toBe(true);
    expect(e.message).toMatch(/timed out/);
  });
});

describe("Anthropic adapter: keys", () => {
  it("missing key → ConfigError naming ANTHROPIC_API_KEY; count falls back to the bound", async () => {
    vi.stubEnv("ANTHROPIC_API_KEY", "");
    const m = createAnthropicModel({ model: "claude-haiku-4-5", baseURL: srv.baseURL });
    await expect(m.generate({ messages, maxOutputTokens: 5 })).rejects.toThrow(ConfigError);
    await expect(m.generate({ messages, maxOutputTokens: 5 })).rejects.toThrow(/ANTHROPIC_API_KEY/);
    const c = await m.countInputTokens(messages);
    expect(c).toMatchObject({ exact: false, method: expect.stringContaining("no API key") });
    expect(srv.requests).toHaveLength(0);
  });

  it("a wrong key: 401 not retryable, the key nowhere in the error", async () => {
    const wrong = "sk-ant-api03_wrong-zyxwvutsrqponmlkjihgfedcba";
    const e = await callError(model({ apiKey: wrong }).generate({ messages, maxOutputTokens: 5 }));
    expect(e).toMatchObject({ status: 401, isRetryable: false });
    expect([e.message, e.bodyExcerpt, e.stack, JSON.stringify({ ...e })].join("\n")).not.toContain(wrong);
  });
});
