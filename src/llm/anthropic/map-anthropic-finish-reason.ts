import type { FinishReason, UnifiedFinishReason } from "../types.ts";

/**
 * Messages `stop_reason` → unified finish reason. `tool_use` is a normal stop when the adapter forced
 * the tool call (structured output), otherwise "other".
 */
export function mapAnthropicFinishReason(raw: string | null | undefined, opts: { forcedTool: boolean }): FinishReason {
  let unified: UnifiedFinishReason;
  switch (raw) {
    case "end_turn":
    case "stop_sequence":
      unified = "stop";
      break;
    case "tool_use":
      unified = opts.forcedTool ? "stop" : "other";
      break;
    case "max_tokens":
    case "model_context_window_exceeded":
      unified = "length";
      break;
    case "refusal":
      unified = "content-filter";
      break;
    default:
      // pause_turn, null, unknown
      unified = "other";
  }
  return { unified, raw: raw ?? undefined };
}
