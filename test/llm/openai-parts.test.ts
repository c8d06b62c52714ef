import { describe, expect, it } from "vitest";
import { openAIChatResponseSchema } from "../../src/llm/openai/openai-api.ts";
import { convertOpenAIUsage } from "../../src/llm/openai/convert-openai-usage.ts";
import { mapOpenAIFinishReason } from "../../src/llm/openai/map-openai-finish-reason.ts";
import { buildOpenAIChatBody, isOpenAIReasoningModel } from "../../src/llm/openai/openai-options.ts";
import type { GenerateRequest } from "../../src/llm/types.ts";

const messages = [
  { role: "system" as const, content: "Rewrite." },
  { role: "user" as const, content: "<sentence>A cat.</sentence>" },
];

describe("openai-api (partial response schema)", () => {
  it("parses a full OpenAI response", () => {
    const r = openAIChatResponseSchema.parse({
      id: "chatcmpl-1",
      object: "chat.completion",
      created: 1,
      model: "gpt-4o-mini",
      choices: [{ index: 0, message: { role: "assistant", content: "Hi", refusal: null, annotations: [] }, logprobs: null, finish_reason: "stop" }],
      usage: { prompt_tokens: 5, completion_tokens: 1, total_tokens: 6, prompt_tokens_details: { cached_tokens: 0 } },
    });
    expect(r.choices[0]!.message.content).toBe("Hi");
  });

  it("parses minimal bodies of OpenAI-compatible servers (no id, no usage details, null fields)", () => {
    // llama.cpp server / Ollama style: no prompt_tokens_details, extra fields, nulls.
    const r = openAIChatResponseSchema.parse({
      choices: [{ message: { content: "Hi" }, finish_reason: null }],
      usage: { prompt_tokens: 3, completion_tokens: 1 },
      timings: { predicted_ms: 3 },
    });
    expect(r.usage?.prompt_tokens_details).toBeUndefined();
    expect(openAIChatResponseSchema.parse({ choices: [{ message: {} }], usage: null }).choices[0]!.message.content).toBeUndefined();
  });

  it("rejects a body without choices", () => {
    expect(openAIChatResponseSchema.safeParse({ id: "x" }).success).toBe(false);
    expect(openAIChatResponseSchema.safeParse({ choices: [] }).success).toBe(false);
  });
});

describe("convertOpenAIUsage", () => {
  it("maps prompt/completion/cached tokens", () => {
    expect(
      convertOpenAIUsage({ prompt_tokens: 100, completion_tokens: 20, prompt_tokens_details: { cached_tokens: 64 } }),
    ).toEqual({ inputTokens: 100, outputTokens: 20, cachedInputTokens: 64 });
  });
  it("leaves missing counts undefined (never 0)", () => {
    expect(convertOpenAIUsage(undefined)).toEqual({ inputTokens: undefined, outputTokens: undefined, cachedInputTokens: undefined });
    expect(convertOpenAIUsage({ prompt_tokens: 7, completion_tokens: null })).toEqual({
      inputTokens: 7,
      outputTokens: undefined,
      cachedInputTokens: undefined,
    });
  });
});

describe("mapOpenAIFinishReason", () => {
  it.each([
    ["stop", "stop"],
    ["length", "length"],
    ["content_filter", "content-filter"],
    ["tool_calls", "other"],
    ["function_call", "other"],
    ["eos", "stop"],
    [null, "other"],
    [undefined, "other"],
    ["something-new", "other"],
  ])("%s → %s", (raw, unified) => {
    const r = mapOpenAIFinishReason(raw);
    expect(r.unified).toBe(unified);
    expect(r.raw).toBe(raw ?? undefined);
  });
});

describe("buildOpenAIChatBody", () => {
  const req: GenerateRequest = { messages, maxOutputTokens: 100, temperature: 0.7, seed: 42, stop: ["\n"] };

  it("openai dialect sends max_completion_tokens and every setting for a chat model", () => {
    const { body, warnings } = buildOpenAIChatBody(req, { model: "gpt-4o-mini", dialect: "openai" });
    expect(body).toEqual({
      model: "gpt-4o-mini",
      messages,
      max_completion_tokens: 100,
      temperature: 0.7,
      seed: 42,
      stop: ["\n"],
    });
    expect(warnings).toEqual([]);
  });

  it("reasoning models: no temperature and no stop, with typed warnings; reasoning_effort passed", () => {
    const { body, warnings } = buildOpenAIChatBody(req, { model: "gpt-5-mini", dialect: "openai", reasoningEffort: "minimal" });
    expect(body).toEqual({ model: "gpt-5-mini", messages, max_completion_tokens: 100, seed: 42, reasoning_effort: "minimal" });
    expect(warnings.map((w) => (w.type === "unsupported-setting" ? w.setting : w.type))).toEqual(["temperature", "stop"]);
  });

  it("reasoning_effort on a non-reasoning model is a warning, not sent", () => {
    const { body, warnings } = buildOpenAIChatBody({ messages, maxOutputTokens: 5 }, { model: "gpt-4.1", dialect: "openai", reasoningEffort: "low" });
    expect(body.reasoning_effort).toBeUndefined();
    expect(warnings).toEqual([expect.objectContaining({ type: "unsupported-setting", setting: "reasoningEffort" })]);
  });

  it("compatible dialect sends max_tokens and passes temperature through whatever the model name", () => {
    const { body } = buildOpenAIChatBody(req, { model: "o3-lookalike-local", dialect: "compatible" });
    expect(body.max_tokens).toBe(100);
    expect(body.max_completion_tokens).toBeUndefined();
    expect(body.temperature).toBe(0.7);
  });

  it("a JSON response format becomes a strict json_schema response_format", () => {
    const schema = { type: "object", properties: { steps: { type: "array", items: { type: "string" } } }, required: ["steps"], additionalProperties: false };
    const { body } = buildOpenAIChatBody({ messages, maxOutputTokens: 10, responseFormat: { type: "json", name: "ladder", schema } }, { model: "gpt-4o", dialect: "openai" });
    expect(body.response_format).toEqual({ type: "json_schema", json_schema: { name: "ladder", schema, strict: true } });
  });

  it("classifies reasoning models", () => {
    for (const m of ["o1", "o3-mini", "o4-mini", "gpt-5", "gpt-5-nano-2025-08-07"]) expect(isOpenAIReasoningModel(m)).toBe(true);
    for (const m of ["gpt-4o", "gpt-4.1-mini", "gpt-5-chat-latest", "gpt-3.5-turbo"]) expect(isOpenAIReasoningModel(m)).toBe(false);
  });
});
