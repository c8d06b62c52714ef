/**
 * A loopback server speaking the OpenAI Chat Completions (non-streaming) and Embeddings wire
 * protocols, as the official `openai` SDK sees them: `chatcmpl-…` ids, `x-request-id` headers,
 * `usage.prompt_tokens / completion_tokens / prompt_tokens_details.cached_tokens`, `finish_reason`,
 * and errors as `{"error": {"message", "type", "param", "code"}}`.
 *
 * Token counts: for OpenAI model ids, tiktoken (the model's encoding) with the chat overhead — what
 * the real API reports — plus the tiktoken count of a response_format schema; for other model ids
 * ceil(UTF-8 bytes / 4) + 3 per message + 3. Both stay ≤ the adapters' conservative bound.
 * Output is cut to max_completion_tokens / max_tokens (finish_reason "length").
 *
 * Like the real API it rejects (400) a request without model or messages, `stream: true`, and for
 * reasoning models (o-series, gpt-5) `max_tokens` or a temperature other than 1.
 */
import { getEncoder, encodeOrdinary, openAIEncodingFor, utf8Bytes } from "../../src/llm/tokens.ts";
import {
  maskKey,
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
import { defaultReply, fnv1a, truncateToTokens, type RequestView } from "./default-responder.ts";
import { BatchEndpoints } from "./batches.ts";

/**
 * How the server treats `response_format`:
 * - "openai" (default): json_schema honoured (the reply is JSON of the schema), json_object too;
 * - "llama-cpp-python": like `python -m llama_cpp.server` 0.3.x — a json_schema request fails with
 *   HTTP 500 and its pydantic message ("Input should be 'text' or 'json_object'") in an OpenAI-style
 *   error of type internal_server_error; `{type: "json_object", schema}` is honoured (grammar);
 * - "ignore": response_format is dropped entirely, as by servers that do not know it: a ladder
 *   prompt gets a chatty answer, JSON in a code fence after a line of prose.
 */
export type StructuredOutputBehaviour = "openai" | "llama-cpp-python" | "ignore";

/** The 500 body llama-cpp-python 0.3.x sends for response_format json_schema (RouteErrorHandler). */
export const LLAMA_CPP_PYTHON_JSON_SCHEMA_ERROR =
  "1 validation error for CreateChatCompletionRequest\nresponse_format.type\n  Input should be 'text' or 'json_object' " +
  "[type=literal_error, input_value='json_schema', input_type=str]\n    For further information visit https://errors.pydantic.dev/2.11/v/literal_error";

export interface OpenAIServerOptions {
  /** How response_format is treated (default "openai"). */
  structuredOutput?: StructuredOutputBehaviour;
  /** Decides each chat completion reply; default: defaultReply (a deterministic rewrite). */
  responder?: Responder;
  /** Decides each embeddings reply (only error/malformed/reset/raw are used; else vectors). */
  embeddingsResponder?: Responder;
  /** When set, requests must carry `Authorization: Bearer <apiKey>` (else 401 invalid_api_key). */
  apiKey?: string;
  /** Default embedding size when a request has no `dimensions` (default 256). */
  embeddingDimensions?: number;
  /** Listen on this port (a server coming back at the same address); default: any free port. */
  port?: number;
  /**
   * A hidden prompt (system prompt, template) the server adds to every chat request and bills as
   * prompt tokens — invisible to any client-side count.
   */
  hiddenPromptTokens?: number;
  /** Bill the hidden prompt only from this chat request index on (default 0: from the start). */
  hiddenPromptFrom?: number;
  /**
   * Expose a server tokenize endpoint as real servers do (feature-detected by the client):
   * - "vllm": POST /tokenize {model, messages, add_generation_prompt} or {model, prompt} → {count, max_model_len, tokens}
   * - "llama.cpp": POST /apply-template {messages} → {prompt}; POST /tokenize {content} → {tokens}
   * - "llama-cpp-python": POST /extras/tokenize {input} → {tokens}; POST /extras/tokenize/count → {count}
   * With one set, the server bills (non-OpenAI model ids) the tokens of its chat template
   * (`renderChatTemplate`) and applies JSON schemas as a grammar (not as prompt tokens), like
   * llama.cpp and vLLM.
   */
  tokenize?: "vllm" | "llama.cpp" | "llama-cpp-python";
}

/** What the server billed for one answered request (every 2xx, cut-off bodies included). */
export interface BilledCall {
  path: string;
  inputTokens: number;
  outputTokens: number;
  replyType: string;
}

export interface OpenAIServer extends LoopbackServer {
  /** Files + Batches state (batches.ts): submitted batches, and the behaviour of the next ones. */
  readonly batchEndpoints: BatchEndpoints;
  setEmbeddingsResponder(responder: Responder | undefined): void;
  /** Every call the server billed, in order — what a provider's invoice would list. */
  readonly billed: BilledCall[];
}

/** The loopback servers' chat template for tokenize-capable dialects (ChatML, as Qwen uses). */
export function renderChatTemplate(messages: Array<{ role: string; content: string }>): string {
  return messages.map((m) => `<|im_start|>${m.role}\n${m.content}<|im_end|>\n`).join("") + "<|im_start|>assistant\n";
}

const TYPE_BY_STATUS: Record<number, { type: string; code: string | null; message: string }> = {
  400: { type: "invalid_request_error", code: null, message: "Invalid request." },
  401: { type: "invalid_request_error", code: "invalid_api_key", message: "Incorrect API key provided." },
  403: { type: "invalid_request_error", code: "unsupported_country_region_territory", message: "Country, region, or territory not supported" },
  404: { type: "invalid_request_error", code: "model_not_found", message: "The model does not exist or you do not have access to it." },
  408: { type: "server_error", code: null, message: "Request timed out." },
  409: { type: "server_error", code: null, message: "Conflict." },
  429: { type: "requests", code: "rate_limit_exceeded", message: "Rate limit reached for requests per min (RPM). Please try again later." },
  500: { type: "server_error", code: null, message: "The server had an error while processing your request. Sorry about that!" },
  502: { type: "server_error", code: null, message: "Bad gateway." },
  503: { type: "server_error", code: null, message: "The engine is currently overloaded, please try again later." },
};

function isReasoning(model: string): boolean {
  const m = model.toLowerCase();
  return !/^gpt-5(\.\d+)?-chat/.test(m) && /^(o1|o3|o4|gpt-5)/.test(m);
}

/** Token counters for one model id: tiktoken for OpenAI models, bytes/4 otherwise. */
export async function openAIServerCounter(model: string): Promise<(text: string) => number> {
  const enc = openAIEncodingFor(model);
  if (enc) {
    const e = await getEncoder(enc);
    return (t) => encodeOrdinary(e, t).length;
  }
  return (t) => Math.ceil(utf8Bytes(t) / 4);
}

/** prompt_tokens the server reports for a chat request. */
export async function openAIServerPromptTokens(
  model: string,
  messages: Array<{ role: string; content: string }>,
  schema?: unknown,
): Promise<number> {
  const count = await openAIServerCounter(model);
  let n = 3;
  for (const m of messages) n += 3 + count(m.role) + count(m.content);
  if (schema !== undefined) n += count(JSON.stringify(schema));
  return n;
}

function errorBody(status: number, message: string | undefined, type: string | undefined, code?: string | null): string {
  const d = TYPE_BY_STATUS[status] ?? { type: status >= 500 ? "server_error" : "invalid_request_error", code: null, message: statusText(status) };
  return JSON.stringify({ error: { message: message ?? d.message, type: type ?? d.type, param: null, code: code !== undefined ? code : d.code } });
}

function baseHeaders(requestId: string): Record<string, string> {
  return {
    "content-type": "application/json",
    "x-request-id": requestId,
    "openai-version": "2020-10-01",
    "openai-processing-ms": "42",
    "x-ratelimit-limit-requests": "10000",
    "x-ratelimit-remaining-requests": "9999",
  };
}

function errorResult(status: number, message: string, code: string | null = null, type?: string): RouteResult {
  const requestId = randomId("req_", 32).toLowerCase();
  return { status, headers: baseHeaders(requestId), body: errorBody(status, message, type, code) };
}

function authProblem(req: RecordedRequest, apiKey: string | undefined): RouteResult | undefined {
  if (apiKey === undefined) return undefined;
  const auth = req.headers["authorization"] ?? "";
  const given = auth.startsWith("Bearer ") ? auth.slice(7) : "";
  if (given === apiKey) return undefined;
  return errorResult(
    401,
    given === "" ? "You didn't provide an API key." : `Incorrect API key provided: ${maskKey(given)}. You can find your API key at https://platform.openai.com/account/api-keys.`,
    "invalid_api_key",
  );
}

/** Deterministic embedding: hashed bag of words + character trigrams, L2-normalised. */
export function hashEmbedding(text: string, dims: number): number[] {
  const v = new Array<number>(dims).fill(0);
  const lower = text.toLowerCase();
  const add = (feature: string, weight: number) => {
    const h = fnv1a(feature);
    v[h % dims]! += (h & 0x80000000 ? -1 : 1) * weight;
  };
  for (const w of lower.split(/[^\p{L}\p{N}]+/u)) if (w) add("w:" + w, 1);
  const padded = ` ${lower} `;
  for (let i = 0; i + 3 <= padded.length; i++) add("c:" + padded.slice(i, i + 3), 0.3);
  const norm = Math.sqrt(v.reduce((s, x) => s + x * x, 0)) || 1;
  return v.map((x) => x / norm);
}

function float32Base64(v: number[]): string {
  return Buffer.from(new Float32Array(v).buffer).toString("base64");
}

export async function startOpenAIServer(options: OpenAIServerOptions = {}): Promise<OpenAIServer> {
  let responder: Responder | undefined = options.responder;
  let embeddingsResponder: Responder | undefined = options.embeddingsResponder;
  const chatRequests: RecordedRequest[] = [];
  const embRequests: RecordedRequest[] = [];
  const billed: BilledCall[] = [];
  const tokenizeRoutes = tokenizeRoutesFor(options.tokenize);

  const renderFault = (reply: Reply, requestId: string): RouteResult | undefined => {
    const headers = { ...baseHeaders(requestId), ...(reply.headers ?? {}) };
    if (reply.type === "error") {
      return {
        status: reply.status,
        headers: { ...headers, ...retryHeaders(reply) },
        body: errorBody(reply.status, reply.message, reply.errorType),
      };
    }
    if (reply.type === "malformed") {
      return {
        status: reply.status ?? 200,
        headers: { ...headers, "content-type": reply.contentType ?? "application/json" },
        body:
          reply.body ??
          `{"id":"chatcmpl-${requestId.slice(4, 16)}","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"The cat sat`,
      };
    }
    if (reply.type === "raw") return { status: reply.status, headers, body: reply.body };
    return undefined;
  };

  const batchEndpoints = new BatchEndpoints();
  const server = await startLoopbackServer({
    baseURLSuffix: "/v1",
    ...(options.port !== undefined ? { port: options.port } : {}),
    notFound: (path) => errorResult(404, `Invalid URL (POST ${path})`, null),
    other: async (req, invoke) => {
      if (/^\/v1\/(files|batches)/.test(req.path)) return authProblem(req, options.apiKey) ?? batchEndpoints.openai(req, invoke);
      if (req.method === "GET" && req.path === "/v1/models") {
        const requestId = "req_" + randomId("", 32).toLowerCase();
        return { status: 200, headers: baseHeaders(requestId), body: JSON.stringify({ object: "list", data: [{ id: "loopback", object: "model", created: 0, owned_by: "rankchain-tests" }] }) };
      }
      return undefined;
    },
    routes: {
      ...tokenizeRoutes,
      "/v1/chat/completions": async (req, index) => {
        chatRequests.push(req);
        const auth = authProblem(req, options.apiKey);
        if (auth) return { kind: "result", result: auth };
        const b = req.body as Record<string, any> | undefined;
        if (!b || typeof b.model !== "string" || !Array.isArray(b.messages) || b.messages.length === 0) {
          return { kind: "result", result: errorResult(400, "'model' and a non-empty 'messages' are required.", null) };
        }
        const model: string = b.model;
        if (b.stream === true) {
          return { kind: "result", result: errorResult(400, "This loopback server does not stream.", null) };
        }
        if (isReasoning(model) && b.max_tokens !== undefined) {
          return {
            kind: "result",
            result: errorResult(400, "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.", "unsupported_parameter"),
          };
        }
        if (isReasoning(model) && b.temperature !== undefined && b.temperature !== 1) {
          return {
            kind: "result",
            result: errorResult(400, "Unsupported value: 'temperature' does not support " + b.temperature + " with this model. Only the default (1) value is supported.", "unsupported_value"),
          };
        }
        const messages: Array<{ role: string; content: string }> = b.messages.map((m: any) => ({
          role: String(m.role),
          content: typeof m.content === "string" ? m.content : JSON.stringify(m.content),
        }));
        const behaviour = options.structuredOutput ?? "openai";
        const rfType: unknown = b.response_format?.type;
        if (behaviour === "llama-cpp-python" && rfType === "json_schema") {
          return { kind: "result", result: errorResult(500, LLAMA_CPP_PYTHON_JSON_SCHEMA_ERROR, null, "internal_server_error") };
        }
        const schema =
          behaviour === "ignore"
            ? undefined
            : rfType === "json_schema"
              ? b.response_format.json_schema?.schema
              : rfType === "json_object"
                ? (b.response_format.schema ?? { type: "object", properties: { steps: { type: "array", items: { type: "string" } } } })
                : undefined;
        const chatty = behaviour === "ignore" && b.response_format !== undefined;
        const maxTokens: number | undefined = b.max_completion_tokens ?? b.max_tokens ?? undefined;
        const view: RequestView = { model, messages, maxTokens, schema };
        const ctx = {
          index,
          requests: chatRequests,
          defaultReply: (): Reply => {
            if (!chatty) return defaultReply(view);
            // what a model says to the ladder prompt without the constraint: prose, then fenced JSON
            const asJson = defaultReply({ ...view, schema: { type: "object", properties: { steps: { type: "array", items: { type: "string" } } } } });
            const value = asJson.type === "json" ? asJson.value : {};
            return { type: "text", text: "Sure! Here is the chain you asked for:\n\n```json\n" + JSON.stringify(value, null, 2) + "\n```" };
          },
        };
        const reply = await (responder ?? ((_r, c) => c.defaultReply()))(req, ctx);
        const count = await openAIServerCounter(model);
        const templated = options.tokenize !== undefined && openAIEncodingFor(model) === undefined;
        const promptTokens =
          (templated ? count(renderChatTemplate(messages)) : await openAIServerPromptTokens(model, messages, schema)) +
          (index >= (options.hiddenPromptFrom ?? 0) ? (options.hiddenPromptTokens ?? 0) : 0);
        return {
          kind: "reply",
          reply,
          render: (r) => {
            const requestId = "req_" + randomId("", 32).toLowerCase();
            const fault = renderFault(r, requestId);
            if (fault) {
              // a 2xx was processed and is billed, even when its body is cut off
              if (fault.status >= 200 && fault.status < 300) {
                const d = defaultReply(view);
                const full = d.type === "text" ? d.text : d.type === "json" ? JSON.stringify(d.value) : "";
                billed.push({ path: req.path, inputTokens: promptTokens, outputTokens: count(truncateToTokens(full, maxTokens, count).text), replyType: r.type });
              }
              return fault;
            }
            if (r.type !== "text" && r.type !== "json") throw new Error(`unhandled reply ${r.type}`);
            const full = r.type === "text" ? r.text : JSON.stringify(r.value);
            const { text, truncated } = truncateToTokens(full, maxTokens, count);
            const completionTokens = r.usage?.outputTokens ?? count(text);
            const prompt = r.usage?.inputTokens ?? promptTokens;
            billed.push({ path: req.path, inputTokens: prompt, outputTokens: completionTokens, replyType: r.type });
            const body = {
              id: randomId("chatcmpl-", 29),
              object: "chat.completion",
              created: Math.floor(Date.now() / 1000),
              model,
              choices: [
                {
                  index: 0,
                  message: { role: "assistant", content: text, refusal: null, annotations: [] },
                  logprobs: null,
                  finish_reason: r.finishReason ?? (truncated ? "length" : "stop"),
                },
              ],
              usage: {
                prompt_tokens: prompt,
                completion_tokens: completionTokens,
                total_tokens: prompt + completionTokens,
                prompt_tokens_details: { cached_tokens: r.usage?.cachedInputTokens ?? 0, audio_tokens: 0 },
                completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 0, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 },
              },
              service_tier: "default",
              system_fingerprint: "fp_" + (fnv1a(model) >>> 0).toString(16).padStart(8, "0"),
            };
            return { status: 200, headers: { ...baseHeaders(requestId), ...(r.headers ?? {}) }, body: JSON.stringify(body) };
          },
        };
      },
      "/v1/embeddings": async (req, index) => {
        embRequests.push(req);
        const auth = authProblem(req, options.apiKey);
        if (auth) return { kind: "result", result: auth };
        const b = req.body as Record<string, any> | undefined;
        const input = b?.input;
        const texts: unknown[] | undefined = typeof input === "string" ? [input] : Array.isArray(input) ? input : undefined;
        if (!b || typeof b.model !== "string" || !texts || texts.length === 0 || texts.some((t) => typeof t !== "string")) {
          return { kind: "result", result: errorResult(400, "'model' and 'input' (a string or an array of strings) are required.", null) };
        }
        const dims: number = typeof b.dimensions === "number" ? b.dimensions : (options.embeddingDimensions ?? 256);
        const format = b.encoding_format ?? "float";
        const model: string = b.model;
        const ok: Reply = { type: "json", value: null };
        const reply = embeddingsResponder
          ? await embeddingsResponder(req, { index, requests: embRequests, defaultReply: () => ok })
          : ok;
        const count = await openAIServerCounter(model);
        return {
          kind: "reply",
          reply,
          render: (r) => {
            const requestId = "req_" + randomId("", 32).toLowerCase();
            const fault = renderFault(r, requestId);
            if (fault) return fault;
            const tokens = (texts as string[]).reduce((s, t) => s + count(t), 0);
            billed.push({ path: req.path, inputTokens: tokens, outputTokens: 0, replyType: r.type });
            const data = (texts as string[]).map((t, i) => {
              const v = hashEmbedding(t, dims);
              return { object: "embedding", index: i, embedding: format === "base64" ? float32Base64(v) : v };
            });
            return {
              status: 200,
              headers: { ...baseHeaders(requestId), ...(r.headers ?? {}) },
              body: JSON.stringify({ object: "list", data, model, usage: { prompt_tokens: tokens, total_tokens: tokens } }),
            };
          },
        };
      },
    },
  });
  return {
    ...server,
    billed,
    requests: server.requests,
    setResponder: (r) => {
      responder = r;
    },
    setEmbeddingsResponder: (r) => {
      embeddingsResponder = r;
    },
    batchEndpoints,
    clearRequests: () => {
      server.clearRequests();
      chatRequests.length = 0;
      embRequests.length = 0;
      billed.length = 0;
    },
  };
}

/** Token ids of the loopback tokenizer for non-OpenAI models: one token per 4 UTF-8 bytes. */
function loopbackTokenIds(text: string): number[] {
  const n = Math.ceil(utf8Bytes(text) / 4);
  return Array.from({ length: n }, (_, i) => (fnv1a(text.slice(i * 4, i * 4 + 4)) % 50_000) + 10);
}

function jsonResult(status: number, value: unknown): RouteResult {
  return { status, headers: { "content-type": "application/json" }, body: JSON.stringify(value) };
}

type Route = Parameters<typeof startLoopbackServer>[0]["routes"][string];

/** The tokenize endpoints of vLLM, llama.cpp server and llama-cpp-python, with their request and response shapes. */
function tokenizeRoutesFor(dialect: OpenAIServerOptions["tokenize"]): Record<string, Route> {
  const messagesOf = (b: any): Array<{ role: string; content: string }> | undefined =>
    Array.isArray(b?.messages) ? b.messages.map((m: any) => ({ role: String(m.role), content: typeof m.content === "string" ? m.content : JSON.stringify(m.content) })) : undefined;
  if (dialect === "vllm") {
    return {
      "/tokenize": async (req) => {
        const b = req.body as any;
        const msgs = messagesOf(b);
        const text = msgs ? renderChatTemplate(msgs) : typeof b?.prompt === "string" ? b.prompt : undefined;
        if (text === undefined) return { kind: "result", result: jsonResult(400, { object: "error", message: "either prompt or messages is required", type: "BadRequestError", code: 400 }) };
        const tokens = loopbackTokenIds(text);
        return { kind: "result", result: jsonResult(200, { count: tokens.length, max_model_len: 32768, tokens, token_strs: null }) };
      },
    };
  }
  if (dialect === "llama.cpp") {
    return {
      "/apply-template": async (req) => {
        const msgs = messagesOf(req.body);
        if (!msgs) return { kind: "result", result: jsonResult(400, { error: { code: 400, message: "\"messages\" is required", type: "invalid_request_error" } }) };
        return { kind: "result", result: jsonResult(200, { prompt: renderChatTemplate(msgs) }) };
      },
      "/tokenize": async (req) => {
        const b = req.body as any;
        const tokens = typeof b?.content === "string" ? loopbackTokenIds(b.content) : [];
        return { kind: "result", result: jsonResult(200, { tokens }) };
      },
    };
  }
  if (dialect === "llama-cpp-python") {
    const input = (b: any) => (typeof b?.input === "string" ? b.input : undefined);
    const bad = jsonResult(422, { detail: [{ type: "missing", loc: ["body", "input"], msg: "Field required" }] });
    return {
      "/extras/tokenize": async (req) => {
        const t = input(req.body);
        return { kind: "result", result: t === undefined ? bad : jsonResult(200, { tokens: loopbackTokenIds(t) }) };
      },
      "/extras/tokenize/count": async (req) => {
        const t = input(req.body);
        return { kind: "result", result: t === undefined ? bad : jsonResult(200, { count: loopbackTokenIds(t).length }) };
      },
    };
  }
  return {};
}
