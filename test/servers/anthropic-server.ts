/**
 * A loopback server speaking the Anthropic Messages protocol (non-streaming) as the official
 * `@anthropic-ai/sdk` sees it: POST /v1/messages and /v1/messages/count_tokens, `msg_…` ids,
 * `request-id` headers, `usage.input_tokens / output_tokens / cache_read_input_tokens /
 * cache_creation_input_tokens`, `stop_reason`, forced tool calls answered with a `tool_use` block,
 * and errors as `{"type":"error","error":{"type","message"},"request_id"}` (529 overloaded_error).
 *
 * Token counts: ceil(UTF-8 bytes / 4) of the system prompt and each message + 3 per message, plus
 * 313 (the documented tool-use system prompt) + ceil(bytes / 4) of the tool definitions when tools
 * are present. count_tokens returns exactly what messages would report as input_tokens. Both stay
 * ≤ the adapter's conservative bound. Output is cut to max_tokens (stop_reason "max_tokens").
 *
 * Like the real API it rejects (400) a request without model, max_tokens or messages, and (401) a
 * request without the key (`x-api-key` or `Authorization: Bearer`) when an apiKey is configured.
 */
import { utf8Bytes } from "../../src/llm/tokens.ts";
import {
  randomId,
  retryHeaders,
  startLoopbackServer,
  statusText,
  type LoopbackServer,
  type RecordedRequest,
  type Reply,
  type Responder,
  type RouteResult,
} from "./common.ts";
import { defaultReply, truncateToTokens, type RequestView } from "./default-responder.ts";
import { BatchEndpoints } from "./batches.ts";

export interface AnthropicServerOptions {
  /** Decides each /v1/messages reply; default: defaultReply (a deterministic rewrite). */
  responder?: Responder;
  /** Decides each count_tokens reply (only error/malformed/reset/raw are used; else the count). */
  countTokensResponder?: Responder;
  /** When set, requests must carry the key as `x-api-key` or `Authorization: Bearer` (else 401 authentication_error). */
  apiKey?: string;
}

export interface AnthropicServer extends LoopbackServer {
  setCountTokensResponder(responder: Responder | undefined): void;
  /** Message Batches state (batches.ts): submitted batches, and the behaviour of the next ones. */
  readonly batchEndpoints: BatchEndpoints;
}

/** The documented hidden system prompt for tool use (tool_choice any/tool). */
export const ANTHROPIC_SERVER_TOOL_PROMPT_TOKENS = 313;

const TYPE_BY_STATUS: Record<number, string> = {
  400: "invalid_request_error",
  401: "authentication_error",
  403: "permission_error",
  404: "not_found_error",
  408: "timeout_error",
  413: "request_too_large",
  429: "rate_limit_error",
  500: "api_error",
  504: "timeout_error",
  529: "overloaded_error",
};
const MESSAGE_BY_TYPE: Record<string, string> = {
  rate_limit_error: "Number of request tokens has exceeded your per-minute rate limit.",
  overloaded_error: "Overloaded",
  api_error: "Internal server error",
  authentication_error: "invalid x-api-key",
};

export function anthropicServerCount(text: string): number {
  return Math.ceil(utf8Bytes(text) / 4);
}

/** input_tokens the server reports for a request body (messages or count_tokens). */
export function anthropicServerInputTokens(body: Record<string, any>): number {
  let n = 0;
  const system = body.system;
  if (typeof system === "string") n += anthropicServerCount(system) + 3;
  else if (Array.isArray(system)) n += anthropicServerCount(JSON.stringify(system)) + 3;
  for (const m of body.messages as Array<{ role: string; content: unknown }>) {
    n += 3 + anthropicServerCount(typeof m.content === "string" ? m.content : JSON.stringify(m.content));
  }
  if (Array.isArray(body.tools) && body.tools.length > 0) {
    n += ANTHROPIC_SERVER_TOOL_PROMPT_TOKENS + anthropicServerCount(JSON.stringify(body.tools));
  }
  return n;
}

function requestIdNew(): string {
  return randomId("req_011C", 20);
}

function headersFor(requestId: string): Record<string, string> {
  return {
    "content-type": "application/json",
    "request-id": requestId,
    "anthropic-organization-id": "00000000-0000-4000-8000-000000000000",
    "anthropic-ratelimit-requests-limit": "4000",
    "anthropic-ratelimit-requests-remaining": "3999",
  };
}

function errorJson(status: number, message: string | undefined, type: string | undefined, requestId: string): string {
  const t = type ?? TYPE_BY_STATUS[status] ?? (status >= 500 ? "api_error" : "invalid_request_error");
  return JSON.stringify({
    type: "error",
    error: { type: t, message: message ?? MESSAGE_BY_TYPE[t] ?? statusText(status) },
    request_id: requestId,
  });
}

function errorResult(status: number, message: string, type?: string): RouteResult {
  const id = requestIdNew();
  return { status, headers: headersFor(id), body: errorJson(status, message, type, id) };
}

function authProblem(req: RecordedRequest, apiKey: string | undefined): RouteResult | undefined {
  if (apiKey === undefined) return undefined;
  // Older SDKs send x-api-key; current ones send the key as Authorization: Bearer.
  const auth = req.headers["authorization"] ?? "";
  const given = req.headers["x-api-key"] ?? (auth.startsWith("Bearer ") ? auth.slice(7) : undefined);
  if (given === apiKey) return undefined;
  return errorResult(401, given ? "invalid x-api-key" : "x-api-key header is required", "authentication_error");
}

function validate(b: Record<string, any> | undefined, needMaxTokens: boolean): string | undefined {
  if (!b || typeof b.model !== "string") return "model: Field required";
  if (!Array.isArray(b.messages) || b.messages.length === 0) return "messages: Field required";
  if (needMaxTokens && typeof b.max_tokens !== "number") return "max_tokens: Field required";
  if (b.temperature !== undefined && (typeof b.temperature !== "number" || b.temperature < 0 || b.temperature > 1)) {
    return "temperature: Input should be less than or equal to 1";
  }
  if (b.tool_choice?.type === "tool" && !(b.tools ?? []).some((t: any) => t?.name === b.tool_choice.name)) {
    return `tool_choice: tool '${b.tool_choice.name}' not found in 'tools'`;
  }
  return undefined;
}

export async function startAnthropicServer(options: AnthropicServerOptions = {}): Promise<AnthropicServer> {
  let responder: Responder | undefined = options.responder;
  let countResponder: Responder | undefined = options.countTokensResponder;
  const msgRequests: RecordedRequest[] = [];
  const countRequests: RecordedRequest[] = [];

  const renderFault = (reply: Reply, requestId: string): RouteResult | undefined => {
    const headers = { ...headersFor(requestId), ...(reply.headers ?? {}) };
    if (reply.type === "error") {
      return {
        status: reply.status,
        headers: { ...headers, ...retryHeaders(reply) },
        body: errorJson(reply.status, reply.message, reply.errorType, requestId),
      };
    }
    if (reply.type === "malformed") {
      return {
        status: reply.status ?? 200,
        headers: { ...headers, "content-type": reply.contentType ?? "application/json" },
        body: reply.body ?? `{"id":"msg_01broken","type":"message","role":"assistant","content":[{"type":"text","text":"The cat`,
      };
    }
    if (reply.type === "raw") return { status: reply.status, headers, body: reply.body };
    return undefined;
  };

  const batchEndpoints = new BatchEndpoints();
  const server = await startLoopbackServer({
    baseURLSuffix: "",
    other: async (req, invoke) => authProblem(req, options.apiKey) ?? batchEndpoints.anthropic(req, invoke, `http://${req.headers["host"]}`),
    notFound: (path) => errorResult(404, `Not found: ${path}`, "not_found_error"),
    routes: {
      "/v1/messages": async (req, index) => {
        msgRequests.push(req);
        const auth = authProblem(req, options.apiKey);
        if (auth) return { kind: "result", result: auth };
        const b = req.body as Record<string, any> | undefined;
        const problem = validate(b, true);
        if (problem) return { kind: "result", result: errorResult(400, problem) };
        if (b!.stream === true) return { kind: "result", result: errorResult(400, "This loopback server does not stream.") };
        const body = b!;
        const messages: Array<{ role: string; content: string }> = [];
        if (typeof body.system === "string") messages.push({ role: "system", content: body.system });
        for (const m of body.messages) {
          messages.push({ role: String(m.role), content: typeof m.content === "string" ? m.content : JSON.stringify(m.content) });
        }
        const forced =
          body.tool_choice?.type === "tool" ? (body.tools as any[]).find((t) => t.name === body.tool_choice.name) : undefined;
        const view: RequestView = { model: body.model, messages, maxTokens: body.max_tokens, schema: forced?.input_schema };
        const reply = await (responder ?? ((_r, c) => c.defaultReply()))(req, { index, requests: msgRequests, defaultReply: () => defaultReply(view) });
        const inputTokens = anthropicServerInputTokens(body);
        return {
          kind: "reply",
          reply,
          render: (r) => {
            const requestId = requestIdNew();
            const fault = renderFault(r, requestId);
            if (fault) return fault;
            let content: unknown[];
            let outputTokens: number;
            let stopReason: string;
            if (r.type === "json" && forced) {
              const json = JSON.stringify(r.value);
              const cut = truncateToTokens(json, body.max_tokens, anthropicServerCount);
              content = [{ type: "tool_use", id: randomId("toolu_01", 22), name: forced.name, input: cut.truncated ? {} : r.value }];
              outputTokens = anthropicServerCount(cut.text) + (cut.truncated ? 0 : 10);
              if (outputTokens > body.max_tokens) outputTokens = body.max_tokens;
              stopReason = r.finishReason ?? (cut.truncated ? "max_tokens" : "tool_use");
            } else if (r.type === "text" || r.type === "json") {
              const full = r.type === "text" ? r.text : JSON.stringify(r.value);
              const cut = truncateToTokens(full, body.max_tokens, anthropicServerCount);
              content = [{ type: "text", text: cut.text }];
              outputTokens = anthropicServerCount(cut.text);
              stopReason = r.finishReason ?? (cut.truncated ? "max_tokens" : "end_turn");
            } else throw new Error(`unhandled reply ${r.type}`);
            const cached = r.usage?.cachedInputTokens ?? 0;
            const totalInput = r.usage?.inputTokens ?? inputTokens;
            const payload = {
              id: randomId("msg_01", 22),
              type: "message",
              role: "assistant",
              model: body.model,
              content,
              stop_reason: stopReason,
              stop_sequence: null,
              usage: {
                input_tokens: Math.max(0, totalInput - cached),
                cache_creation_input_tokens: 0,
                cache_read_input_tokens: cached,
                output_tokens: r.usage?.outputTokens ?? outputTokens,
                service_tier: "standard",
              },
            };
            return { status: 200, headers: { ...headersFor(requestId), ...(r.headers ?? {}) }, body: JSON.stringify(payload) };
          },
        };
      },
      "/v1/messages/count_tokens": async (req, index) => {
        countRequests.push(req);
        const auth = authProblem(req, options.apiKey);
        if (auth) return { kind: "result", result: auth };
        const b = req.body as Record<string, any> | undefined;
        const problem = validate(b, false);
        if (problem) return { kind: "result", result: errorResult(400, problem) };
        if (b!.max_tokens !== undefined) return { kind: "result", result: errorResult(400, "max_tokens: Extra inputs are not permitted") };
        const ok: Reply = { type: "json", value: null };
        const reply = countResponder ? await countResponder(req, { index, requests: countRequests, defaultReply: () => ok }) : ok;
        const tokens = anthropicServerInputTokens(b!);
        return {
          kind: "reply",
          reply,
          render: (r) => {
            const requestId = requestIdNew();
            const fault = renderFault(r, requestId);
            if (fault) return fault;
            return { status: 200, headers: { ...headersFor(requestId), ...(r.headers ?? {}) }, body: JSON.stringify({ input_tokens: tokens }) };
          },
        };
      },
    },
  });
  return {
    ...server,
    requests: server.requests,
    setResponder: (r) => {
      responder = r;
    },
    setCountTokensResponder: (r) => {
      countResponder = r;
    },
    batchEndpoints,
    clearRequests: () => {
      server.clearRequests();
      msgRequests.length = 0;
      countRequests.length = 0;
    },
  };
}
