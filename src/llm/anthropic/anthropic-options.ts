/**
 * Factory settings and request-body construction for the Anthropic Messages adapter.
 *
 * - System messages move to the top-level `system` string (joined by blank lines).
 * - `max_tokens` is required by the API and always sent.
 * - `temperature` is accepted in [0, 1]; a higher value is clamped to 1 with a warning.
 * - `seed` does not exist in the Messages API: not sent, `unsupported-setting` warning.
 * - A JSON response format becomes a forced tool call: one tool whose `input_schema` is the
 *   schema, and `tool_choice: { type: "tool", name }`; the adapter returns the tool input as JSON text.
 */
import { z } from "zod";
import type { CallWarning, ChatMessage, GenerateRequest, JsonResponseFormat } from "../types.ts";

export const anthropicModelSettingsSchema = z.object({
  model: z.string().min(1, "model must be a non-empty model id"),
  apiKey: z.string().optional(),
  /** Default: the SDK's (ANTHROPIC_BASE_URL, else https://api.anthropic.com). */
  baseURL: z.string().url().optional(),
  timeoutMs: z.number().int().positive().optional(),
});

export interface AnthropicModelSettings {
  model: string;
  /** Explicit key; otherwise ANTHROPIC_API_KEY is read at request time. */
  apiKey?: string | undefined;
  baseURL?: string | undefined;
  fetch?: typeof globalThis.fetch | undefined;
  timeoutMs?: number | undefined;
}

export interface AnthropicMessageParam {
  role: "user" | "assistant";
  content: string;
}

export interface AnthropicTool {
  name: string;
  description: string;
  input_schema: Record<string, unknown>;
}

export interface AnthropicMessagesBody {
  model: string;
  max_tokens: number;
  messages: AnthropicMessageParam[];
  system?: string;
  temperature?: number;
  stop_sequences?: string[];
  tools?: AnthropicTool[];
  tool_choice?: { type: "tool"; name: string };
}

/** Tool names must match ^[a-zA-Z0-9_-]{1,64}$. */
export function anthropicToolName(name: string): string {
  const clean = name.replace(/[^a-zA-Z0-9_-]/g, "_").slice(0, 64);
  return clean === "" ? "response" : clean;
}

export function anthropicToolFor(format: JsonResponseFormat): AnthropicTool {
  return {
    name: anthropicToolName(format.name),
    description: `Return the response as the input of this tool, exactly in its schema.`,
    input_schema: format.schema,
  };
}

/** Splits chat messages into Anthropic's `system` and `messages`. */
export function toAnthropicMessages(messages: ChatMessage[]): { system: string | undefined; messages: AnthropicMessageParam[] } {
  const system: string[] = [];
  const out: AnthropicMessageParam[] = [];
  for (const m of messages) {
    if (m.role === "system") system.push(m.content);
    else out.push({ role: m.role, content: m.content });
  }
  return { system: system.length > 0 ? system.join("\n\n") : undefined, messages: out };
}

export function buildAnthropicBody(
  request: GenerateRequest,
  opts: { model: string },
): { body: AnthropicMessagesBody; warnings: CallWarning[]; toolName: string | undefined } {
  const warnings: CallWarning[] = [];
  const { system, messages } = toAnthropicMessages(request.messages);
  const body: AnthropicMessagesBody = { model: opts.model, max_tokens: request.maxOutputTokens, messages };
  if (system !== undefined) body.system = system;
  if (request.temperature !== undefined) {
    if (request.temperature > 1) {
      warnings.push({
        type: "unsupported-setting",
        setting: "temperature",
        details: `Anthropic accepts temperature in [0, 1]; ${request.temperature} was clamped to 1`,
      });
      body.temperature = 1;
    } else body.temperature = request.temperature;
  }
  if (request.seed !== undefined) {
    warnings.push({ type: "unsupported-setting", setting: "seed", details: "the Anthropic Messages API has no seed; not sent" });
  }
  if (request.stop !== undefined && request.stop.length > 0) body.stop_sequences = request.stop;
  let toolName: string | undefined;
  if (request.responseFormat) {
    const tool = anthropicToolFor(request.responseFormat);
    toolName = tool.name;
    body.tools = [tool];
    body.tool_choice = { type: "tool", name: tool.name };
  }
  return { body, warnings, toolName };
}
