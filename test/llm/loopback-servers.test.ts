/**
 * The loopback servers themselves: default responder, usage bounds, recording, shutdown.
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { conservativeTokenBound } from "../../src/llm/tokens.ts";
import { anthropicConservativeBound } from "../../src/llm/anthropic/index.ts";
import {
  anthropicServerInputTokens,
  defaultReply,
  driftSentence,
  ladderSize,
  openAIServerPromptTokens,
  promptSentences,
  sequence,
  startAnthropicServer,
  startOpenAIServer,
  truncateToTokens,
} from "../servers/index.ts";

const stepwise = (chain: string[], step: number) =>
  `Anchor:\n<sentence>Rain fell softly on the quiet village square.</sentence>\n\nChain so far:\n${
    chain.length ? chain.map((s, i) => `${i + 1}. ${s}`).join("\n") : "(none yet)"
  }\n\nWrite step ${step} of 6: rewrite the last sentence.`;

describe("default responder", () => {
  it("stepwise: a one-line rewrite, different from every sentence shown, drifting further each step", () => {
    const chain: string[] = [];
    for (let step = 1; step <= 6; step++) {
      const r = defaultReply({ model: "m", maxTokens: 100, schema: undefined, messages: [{ role: "user", content: stepwise(chain, step) }] });
      expect(r.type).toBe("text");
      const text = (r as { text: string }).text;
      expect(text).not.toMatch(/[\n"'`]/);
      expect(promptSentences(stepwise(chain, step))).not.toContain(text);
      chain.push(text);
    }
    expect(new Set(chain).size).toBe(6);
    // Drift accumulates: the number of words differing from the anchor never decreases.
    const anchor = "Rain fell softly on the quiet village square.".split(" ");
    const diffs = chain.map((s) => s.split(" ").filter((w, i) => w !== anchor[i]).length + Math.max(0, s.split(" ").length - anchor.length));
    for (let i = 1; i < diffs.length; i++) expect(diffs[i]!).toBeGreaterThanOrEqual(diffs[i - 1]!);
  });

  it("ladder: N from the schema's maxItems/minItems, else from the prompt, else 8", () => {
    const schema = (extra: object) => ({ type: "object", properties: { steps: { type: "array", items: { type: "string" }, ...extra } } });
    expect(ladderSize(schema({ minItems: 5, maxItems: 5 }), "")).toBe(5);
    expect(ladderSize(schema({}), "Write a chain of exactly 12 sentences.")).toBe(12);
    expect(ladderSize(schema({}), "no number here")).toBe(8);
    const r = defaultReply({
      model: "m",
      maxTokens: 1000,
      schema: { type: "object", properties: { rewrites: { type: "array", items: { type: "string" }, maxItems: 3 } } },
      messages: [{ role: "user", content: "Anchor:\n<sentence>A small boat drifts.</sentence>" }],
    });
    expect(r).toEqual({ type: "json", value: { rewrites: [driftSentence("A small boat drifts.", 1), driftSentence("A small boat drifts.", 2), driftSentence("A small boat drifts.", 3)] } });
  });

  it("truncateToTokens keeps whole words when it can and never exceeds the limit", () => {
    const count = (t: string) => Math.ceil(Buffer.byteLength(t) / 4);
    fc.assert(
      fc.property(fc.string({ maxLength: 300 }), fc.integer({ min: 0, max: 40 }), (text, max) => {
        const r = truncateToTokens(text, max, count);
        return count(r.text) <= max || (!r.truncated && count(text) <= max);
      }),
    );
    expect(truncateToTokens("alpha beta gamma delta", 3, count)).toEqual({ text: "alpha beta", truncated: true });
  });
});

describe("reported usage never exceeds the adapters' bounds", () => {
  it("OpenAI server prompt_tokens ≤ conservativeTokenBound (OpenAI and other model ids)", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.string({ unit: "grapheme", maxLength: 120 }), { minLength: 1, maxLength: 3 }), async (contents) => {
        const msgs = contents.map((content) => ({ role: "user" as const, content }));
        for (const model of ["gpt-4o-mini", "llama-3.1-8b"]) {
          if ((await openAIServerPromptTokens(model, msgs)) > conservativeTokenBound(msgs)) return false;
        }
        return true;
      }),
      { numRuns: 60 },
    );
  });

  it("Anthropic server input_tokens ≤ the Anthropic conservative bound (with and without the tool)", () => {
    const format = { type: "json" as const, name: "ladder", schema: { type: "object", properties: { steps: { type: "array" } } } };
    fc.assert(
      fc.property(fc.string({ unit: "grapheme", maxLength: 200 }), fc.string({ maxLength: 80 }), (user, system) => {
        const msgs = [
          { role: "system" as const, content: system },
          { role: "user" as const, content: user },
        ];
        const body = { system, messages: [{ role: "user", content: user }] };
        const withTool = { ...body, tools: [{ name: "ladder", description: "Return the response as the input of this tool, exactly in its schema.", input_schema: format.schema }] };
        return (
          anthropicServerInputTokens(body) <= anthropicConservativeBound(msgs) &&
          anthropicServerInputTokens(withTool) <= anthropicConservativeBound(msgs, format)
        );
      }),
    );
  });
});

describe("server mechanics", () => {
  it("records requests, answers 404 in the provider's error shape, and frees the port on close", async () => {
    const srv = await startOpenAIServer({ responder: sequence({ type: "error", status: 503 }, { type: "text", text: "ok" }) });
    const post = (path: string, body: unknown) =>
      fetch(srv.url + path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    const body = { model: "x", messages: [{ role: "user", content: "hi" }] };
    const r1 = await post("/v1/chat/completions", body);
    expect(r1.status).toBe(503);
    expect(((await r1.json()) as { error: { type: string } }).error.type).toBe("server_error");
    const r2 = await post("/v1/chat/completions", body);
    expect(((await r2.json()) as { choices: Array<{ message: { content: string } }> }).choices[0]!.message.content).toBe("ok");
    const r3 = await post("/v1/nope", {});
    expect(r3.status).toBe(404);
    expect(srv.requests.map((r) => r.path)).toEqual(["/v1/chat/completions", "/v1/chat/completions", "/v1/nope"]);
    expect(srv.requests[0]!.body).toEqual(body);
    await srv.close();
    await expect(fetch(srv.url + "/v1/chat/completions", { method: "POST", body: "{}" })).rejects.toThrow();
  });

  it("rejects requests a real API would reject (so adapter bugs show up)", async () => {
    const o = await startOpenAIServer();
    const a = await startAnthropicServer();
    try {
      const post = (url: string, body: unknown) =>
        fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
      const msgs = [{ role: "user", content: "hi" }];
      expect((await post(o.url + "/v1/chat/completions", { model: "o3-mini", messages: msgs, max_tokens: 5 })).status).toBe(400);
      expect((await post(o.url + "/v1/chat/completions", { model: "gpt-5", messages: msgs, temperature: 0.2 })).status).toBe(400);
      expect((await post(a.url + "/v1/messages", { model: "claude", messages: msgs })).status).toBe(400); // no max_tokens
      expect((await post(a.url + "/v1/messages", { model: "claude", messages: msgs, max_tokens: 5, temperature: 1.5 })).status).toBe(400);
      const err = (await (await post(a.url + "/v1/messages", { model: "claude" })).json()) as { type: string; error: { type: string } };
      expect(err).toMatchObject({ type: "error", error: { type: "invalid_request_error" } });
    } finally {
      await o.close();
      await a.close();
    }
  });
});
