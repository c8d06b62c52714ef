/**
 * Protocol-faithful loopback servers for provider tests, generator/crash tests and benchmarks.
 * Both listen on 127.0.0.1 with an OS-assigned port, speak the providers' real wire formats (so the
 * official SDK clients drive them unmodified) and record every request.
 *
 *   const srv = await startOpenAIServer({ responder?, embeddingsResponder?, apiKey?, embeddingDimensions?,
 *                                         hiddenPromptTokens?, hiddenPromptFrom?, tokenize? });
 *   //   POST /v1/chat/completions (non-streaming), POST /v1/embeddings (float or base64 vectors)
 *   //   tokenize: "vllm" (/tokenize), "llama.cpp" (/apply-template, /tokenize), "llama-cpp-python" (/extras/tokenize)
 *   //   srv.billed: every call the server billed (2xx, cut-off bodies included) — its invoice;
 *   //   hiddenPromptTokens bills a prompt the client never sent (from request hiddenPromptFrom on)
 *   //   SDK: new OpenAI({ baseURL: srv.baseURL /* = `${srv.url}/v1` *\/, apiKey })
 *   const srv = await startAnthropicServer({ responder?, countTokensResponder?, apiKey? });
 *   //   POST /v1/messages, POST /v1/messages/count_tokens
 *   //   SDK: new Anthropic({ baseURL: srv.baseURL /* = srv.url *\/, apiKey })
 *
 *   srv.url / srv.baseURL / srv.port
 *   srv.requests: RecordedRequest[]          { method, path, headers (lower-case), rawBody, body, responseRequestId, replyType }
 *   srv.requestsTo("/v1/chat/completions")
 *   srv.setResponder(fn | undefined); srv.clearRequests(); await srv.close();
 *
 * A Responder `(request, ctx) => Reply | Promise<Reply>` decides each reply; `ctx.index` is the
 * 0-based index of the request on its endpoint, `ctx.defaultReply()` is what the default responder
 * would say. Replies (all accept `delayMs` and extra `headers`):
 *   { type: "text", text, finishReason?, usage? }      normal completion (cut to max tokens → "length"/"max_tokens")
 *   { type: "json", value, finishReason?, usage? }     structured: OpenAI content = JSON text; Anthropic tool_use input
 *   { type: "error", status, message?, errorType?, retryAfter?, retryAfterMs?, shouldRetry? }
 *                                                       provider error JSON; e.g. 429 + retryAfter: 2, 500, 529 (Anthropic overloaded)
 *   { type: "malformed", body?, status?, contentType? } 2xx with a truncated / wrong-shaped body
 *   { type: "reset" }                                   connection destroyed without a response
 *   { type: "raw", status, body }                       anything else
 *   usage override: { inputTokens?, outputTokens?, cachedInputTokens? }
 *
 * Helpers: `failFirst(n, reply)` answers the first n requests with `reply`, then the default;
 * `sequence(...replies)` answers request i with replies[i] (the last one repeats).
 *
 * The default responder (default-responder.ts) returns a deterministic one-line rewrite of the last
 * `<sentence>`/numbered sentence of the prompt (one more word changed per step), or for a JSON-schema
 * (ladder) request `{"steps": [N sentences]}` with N read from the schema's maxItems/minItems or the
 * prompt. Reported usage is realistic (tiktoken for OpenAI model ids, bytes/4 otherwise) and never
 * exceeds `conservativeTokenBound` from src/llm/tokens.ts.
 */
export * from "./common.ts";
export * from "./default-responder.ts";
export * from "./openai-server.ts";
export * from "./anthropic-server.ts";
export * from "./batches.ts";

import type { Reply, Responder } from "./common.ts";

/** Answers the first `n` requests of an endpoint with `reply`, later ones with the default reply. */
export function failFirst(n: number, reply: Reply): Responder {
  return (_req, ctx) => (ctx.index < n ? reply : ctx.defaultReply());
}

/** Answers request i with replies[i]; the last reply repeats. A function entry is called with ctx. */
export function sequence(...replies: Array<Reply | Responder>): Responder {
  return (req, ctx) => {
    const r = replies[Math.min(ctx.index, replies.length - 1)];
    if (r === undefined) return ctx.defaultReply();
    return typeof r === "function" ? r(req, ctx) : r;
  };
}
