import { describe, expect, it } from "vitest";
import fc from "fast-check";
import OpenAI from "openai";
import Anthropic from "@anthropic-ai/sdk";
import { ConfigError, ProviderCallError } from "../../src/errors.ts";
import {
  isRetryableStatus,
  parseRetryAfterMs,
  parseShouldRetryHeader,
  toProviderCallError,
} from "../../src/llm/errors.ts";
import {
  conservativeTokenBound,
  countOpenAIChatTokens,
  countTextTokens,
  encodeOrdinary,
  getEncoder,
  openAIEncodingFor,
} from "../../src/llm/tokens.ts";

const ctx = { url: "https://api.example/v1/chat/completions", provider: "openai" };

describe("retry hints", () => {
  it("retry-after-ms wins over retry-after", () => {
    expect(parseRetryAfterMs(new Headers({ "retry-after-ms": "250.5", "retry-after": "9" }))).toBe(250.5);
  });
  it("retry-after in seconds", () => {
    expect(parseRetryAfterMs(new Headers({ "retry-after": "3" }))).toBe(3000);
  });
  it("retry-after as an HTTP date, relative to the injected clock", () => {
    const now = Date.parse("2026-01-01T00:00:00Z");
    expect(parseRetryAfterMs(new Headers({ "retry-after": "Thu, 01 Jan 2026 00:00:05 GMT" }), () => now)).toBe(5000);
    expect(parseRetryAfterMs(new Headers({ "retry-after": "Wed, 31 Dec 2025 23:59:00 GMT" }), () => now)).toBe(0);
  });
  it("garbage and absence → undefined", () => {
    expect(parseRetryAfterMs(new Headers({ "retry-after": "soon" }))).toBeUndefined();
    expect(parseRetryAfterMs(new Headers({ "retry-after-ms": "-5" }))).toBeUndefined();
    expect(parseRetryAfterMs(undefined)).toBeUndefined();
  });
  it("x-should-retry", () => {
    expect(parseShouldRetryHeader(new Headers({ "x-should-retry": "true" }))).toBe(true);
    expect(parseShouldRetryHeader(new Headers({ "x-should-retry": "false" }))).toBe(false);
    expect(parseShouldRetryHeader(new Headers({ "x-should-retry": "maybe" }))).toBeUndefined();
  });
  it("retryable statuses", () => {
    expect([408, 409, 429, 500, 502, 503, 529].every(isRetryableStatus)).toBe(true);
    expect([400, 401, 403, 404, 413, 422].some(isRetryableStatus)).toBe(false);
  });
});

describe("toProviderCallError", () => {
  it("converts an SDK status error with request id, hints and a redacted excerpt", () => {
    const key = "sk-proj-abcdefghijklmnopqrstuvwxyz0123";
    const e = OpenAI.APIError.generate(
      429,
      { error: { message: `slow down, key ${key}`, type: "requests", code: "rate_limit_exceeded" } },
      undefined,
      new Headers({ "x-request-id": "req_123", "retry-after": "2", "x-should-retry": "true" }),
    );
    const p = toProviderCallError(e, { ...ctx, secrets: [key] }) as ProviderCallError;
    expect(p).toBeInstanceOf(ProviderCallError);
    expect(p).toMatchObject({ status: 429, requestId: "req_123", retryAfterMs: 2000, shouldRetryHeader: true, isRetryable: true, url: ctx.url });
    expect(p.message).not.toContain(key);
    expect(p.bodyExcerpt).not.toContain(key);
    expect(p.bodyExcerpt).toContain("rate_limit_exceeded");
    expect(p.cause).toBe(e);
  });

  it("x-should-retry: false overrides a retryable status; 4xx are not retryable", () => {
    const e500 = OpenAI.APIError.generate(500, { error: { message: "x" } }, undefined, new Headers({ "x-should-retry": "false" }));
    expect((toProviderCallError(e500, ctx) as ProviderCallError).isRetryable).toBe(false);
    const e400 = Anthropic.APIError.generate(400, { type: "error", error: { type: "invalid_request_error", message: "bad" } }, undefined, new Headers({ "request-id": "req_a" }));
    const p = toProviderCallError(e400, { ...ctx, provider: "anthropic" }) as ProviderCallError;
    expect(p).toMatchObject({ status: 400, isRetryable: false, requestId: "req_a" });
    expect(p.message).toContain("400 bad");
  });

  it("connection errors and timeouts are retryable; aborts are not", () => {
    expect((toProviderCallError(new OpenAI.APIConnectionError({ message: "boom" }), ctx) as ProviderCallError).isRetryable).toBe(true);
    expect((toProviderCallError(new Anthropic.APIConnectionTimeoutError(), ctx) as ProviderCallError).isRetryable).toBe(true);
    expect((toProviderCallError(new OpenAI.APIUserAbortError(), ctx) as ProviderCallError).isRetryable).toBe(false);
  });

  it("passes rankchain errors through and wraps anything else as non-retryable", () => {
    const c = new ConfigError("no key");
    expect(toProviderCallError(c, ctx)).toBe(c);
    const p = toProviderCallError(new TypeError("weird"), ctx) as ProviderCallError;
    expect(p.isRetryable).toBe(false);
    expect(p.message).toContain("weird");
  });
});

describe("token counting", () => {
  it("picks tiktoken encodings by model family", () => {
    expect(openAIEncodingFor("gpt-4o-mini-2024-07-18")).toBe("o200k_base");
    expect(openAIEncodingFor("gpt-5-nano")).toBe("o200k_base");
    expect(openAIEncodingFor("o3-mini")).toBe("o200k_base");
    expect(openAIEncodingFor("gpt-4.1")).toBe("o200k_base");
    expect(openAIEncodingFor("gpt-4-turbo")).toBe("cl100k_base");
    expect(openAIEncodingFor("gpt-3.5-turbo")).toBe("cl100k_base");
    expect(openAIEncodingFor("llama-3-8b")).toBeUndefined();
  });

  it("counts chat tokens as the cookbook does: 3/message + role + content + 3 priming", async () => {
    const enc = await getEncoder("o200k_base");
    const msgs = [
      { role: "system" as const, content: "You are helpful." },
      { role: "user" as const, content: "Hello world, rewrite this sentence." },
    ];
    const expected = 3 + msgs.reduce((s, m) => s + 3 + encodeOrdinary(enc, m.role).length + encodeOrdinary(enc, m.content).length, 0);
    const c = await countOpenAIChatTokens("gpt-4o", msgs);
    expect(c).toEqual({ tokens: expected, exact: true, method: expect.stringContaining("o200k_base"), quality: "exact" });
    expect(encodeOrdinary(enc, "Hello world").length).toBe(2);
  });

  it("a response format makes the count a bound (not exact) and larger", async () => {
    const msgs = [{ role: "user" as const, content: "hi" }];
    const plain = await countOpenAIChatTokens("gpt-4o", msgs);
    const withSchema = await countOpenAIChatTokens("gpt-4o", msgs, { responseFormat: { type: "json", name: "l", schema: { type: "object" } } });
    expect(withSchema.exact).toBe(false);
    expect(withSchema.tokens).toBeGreaterThan(plain.tokens);
  });

  it("special-token text is counted as ordinary text, not rejected", async () => {
    const c = await countTextTokens("<|endoftext|> hi", "gpt-4o");
    expect(c.tokens).toBeGreaterThan(2);
  });

  it("conservativeTokenBound = bytes + 16/message + 64", () => {
    const msgs = [
      { role: "user" as const, content: "héllo" }, // 6 bytes
      { role: "assistant" as const, content: "" },
    ];
    expect(conservativeTokenBound(msgs)).toBe(6 + 32 + 64);
  });

  it("property: the conservative bound is ≥ the exact tiktoken count for any text (both encodings)", async () => {
    const o200k = await getEncoder("o200k_base");
    const cl100k = await getEncoder("cl100k_base");
    fc.assert(
      fc.property(fc.array(fc.string({ unit: "grapheme", maxLength: 200 }), { minLength: 1, maxLength: 4 }), (contents) => {
        const msgs = contents.map((content) => ({ role: "user" as const, content }));
        const bound = conservativeTokenBound(msgs);
        for (const enc of [o200k, cl100k]) {
          const exact = 3 + msgs.reduce((s, m) => s + 3 + encodeOrdinary(enc, m.role).length + encodeOrdinary(enc, m.content).length, 0);
          if (exact > bound) return false;
        }
        return true;
      }),
      { numRuns: 200 },
    );
  });
});
