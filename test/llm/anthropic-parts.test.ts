import { describe, expect, it } from "vitest";
import { anthropicMessageResponseSchema } from "../../src/llm/anthropic/anthropic-api.ts";
import { convertAnthropicUsage } from "../../src/llm/anthropic/convert-anthropic-usage.ts";
import { mapAnthropicFinishReason } from "../../src/llm/anthropic/map-anthropic-finish-reason.ts";
import { anthropicToolName, buildAnthropicBody, toAnthropicMessages } from "../../src/llm/anthropic/anthropic-options.ts";

describe("anthropic-api (partial response schema)", () => {
  it("parses text, tool_use and unknown blocks", () => {
    const r = anthropicMessageResponseSchema.parse({
      id: "msg_1",
      type: "message",
      content: [
        { type: "thinking", thinking: "…", signature: "x" },
        { type: "text", text: "Hi" },
        { type: "tool_use", id: "toolu_1", name: "ladder", input: { steps: ["a"] } },
      ],
      stop_reason: "tool_use",
      usage: { input_tokens: 3, output_tokens: 2 },
    });
    expect(r.content).toHaveLength(3);
  });
  it("rejects a body without a content array", () => {
    expect(anthropicMessageResponseSchema.safeParse({ type: "message" }).success).toBe(false);
  });
});

describe("convertAnthropicUsage", () => {
  it("adds cache reads and writes to input (Anthropic's input_tokens excludes them)", () => {
    expect(
      convertAnthropicUsage({ input_tokens: 10, output_tokens: 5, cache_read_input_tokens: 100, cache_creation_input_tokens: 7 }),
    ).toEqual({ inputTokens: 117, outputTokens: 5, cachedInputTokens: 100 });
  });
  it("keeps missing counts undefined", () => {
    expect(convertAnthropicUsage(null)).toEqual({ inputTokens: undefined, outputTokens: undefined, cachedInputTokens: undefined });
    expect(convertAnthropicUsage({ input_tokens: 4 })).toEqual({ inputTokens: 4, outputTokens: undefined, cachedInputTokens: undefined });
  });
});

describe("mapAnthropicFinishReason", () => {
  it.each([
    ["end_turn", false, "stop"],
    ["stop_sequence", false, "stop"],
    ["max_tokens", false, "length"],
    ["model_context_window_exceeded", false, "length"],
    ["refusal", false, "content-filter"],
    ["tool_use", true, "stop"],
    ["tool_use", false, "other"],
    ["pause_turn", false, "other"],
    [null, false, "other"],
  ] as const)("%s (forced tool %s) → %s", (raw, forcedTool, unified) => {
    expect(mapAnthropicFinishReason(raw, { forcedTool })).toEqual({ unified, raw: raw ?? undefined });
  });
});

describe("buildAnthropicBody", () => {
  const messages = [
    { role: "system" as const, content: "Be brief." },
    { role: "user" as const, content: "<sentence>A cat.</sentence>" },
    { role: "system" as const, content: "Second rule." },
  ];

  it("moves system messages to `system`, always sends max_tokens, warns about seed", () => {
    const { body, warnings, toolName } = buildAnthropicBody(
      { messages, maxOutputTokens: 64, temperature: 0.3, seed: 7, stop: ["\n\n"] },
      { model: "claude-haiku-4-5" },
    );
    expect(body).toEqual({
      model: "claude-haiku-4-5",
      max_tokens: 64,
      system: "Be brief.\n\nSecond rule.",
      messages: [{ role: "user", content: "<sentence>A cat.</sentence>" }],
      temperature: 0.3,
      stop_sequences: ["\n\n"],
    });
    expect(warnings).toEqual([expect.objectContaining({ type: "unsupported-setting", setting: "seed" })]);
    expect(toolName).toBeUndefined();
  });

  it("clamps temperature above 1 with a warning", () => {
    const { body, warnings } = buildAnthropicBody({ messages, maxOutputTokens: 8, temperature: 1.5 }, { model: "m" });
    expect(body.temperature).toBe(1);
    expect(warnings[0]).toMatchObject({ type: "unsupported-setting", setting: "temperature" });
  });

  it("a JSON response format becomes a forced tool call", () => {
    const schema = { type: "object", properties: { steps: { type: "array", items: { type: "string" } } }, required: ["steps"] };
    const { body, toolName } = buildAnthropicBody(
      { messages, maxOutputTokens: 8, responseFormat: { type: "json", name: "chain ladder/v1", schema } },
      { model: "m" },
    );
    expect(toolName).toBe("chain_ladder_v1");
    expect(body.tools).toEqual([{ name: "chain_ladder_v1", description: expect.any(String), input_schema: schema }]);
    expect(body.tool_choice).toEqual({ type: "tool", name: "chain_ladder_v1" });
  });

  it("sanitises tool names and splits messages", () => {
    expect(anthropicToolName("")).toBe("response");
    expect(anthropicToolName("x".repeat(80))).toHaveLength(64);
    expect(toAnthropicMessages([{ role: "user", content: "u" }])).toEqual({ system: undefined, messages: [{ role: "user", content: "u" }] });
  });
});
