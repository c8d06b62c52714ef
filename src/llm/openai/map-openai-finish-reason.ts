import type { FinishReason, UnifiedFinishReason } from "../types.ts";

/** Chat Completions `finish_reason` → unified finish reason (raw value kept). */
export function mapOpenAIFinishReason(raw: string | null | undefined): FinishReason {
  let unified: UnifiedFinishReason;
  switch (raw) {
    case "stop":
      unified = "stop";
      break;
    case "length":
      unified = "length";
      break;
    case "content_filter":
      unified = "content-filter";
      break;
    case "error":
      unified = "error";
      break;
    default:
      // tool_calls, function_call, eos (some servers), null, unknown
      unified = raw === "eos" || raw === "eos_token" ? "stop" : "other";
  }
  return { unified, raw: raw ?? undefined };
}
