/**
 * Plumbing shared by the loopback servers: an http server on 127.0.0.1 (port 0), request recording,
 * the Reply vocabulary a responder returns, delays, connection resets and clean shutdown.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { randomBytes } from "node:crypto";

/** One request as the server received it. Header names are lower-case. */
export interface RecordedRequest {
  method: string;
  /** Path without the query string, e.g. "/v1/chat/completions". */
  path: string;
  /** The query string without "?" ("" when there is none). */
  query: string;
  headers: Record<string, string>;
  rawBody: string;
  /** The parsed JSON body (undefined when the body was not JSON). */
  body: any;
  /** The request id the server sent back (x-request-id / request-id), once it replied. */
  responseRequestId?: string | undefined;
  /** What the server did: "text" | "json" | "error" | "malformed" | "reset" | "raw". */
  replyType?: string | undefined;
}

/** Token counts to report instead of the server's own count (unified names for both servers). */
export interface UsageOverride {
  inputTokens?: number;
  outputTokens?: number;
  cachedInputTokens?: number;
}

interface ReplyBase {
  /** Wait this long before sending anything (a slow server; lets clients time out). */
  delayMs?: number;
  /** Extra response headers. */
  headers?: Record<string, string>;
}

/**
 * What a responder wants the server to do with one request.
 * - text: a normal completion with this text (truncated to max_tokens → finish "length").
 * - json: a structured completion; OpenAI puts JSON.stringify(value) in content, Anthropic returns
 *   a tool_use block whose input is `value`.
 * - error: an HTTP error in the provider's error JSON shape, with optional retry hints.
 * - malformed: a 2xx (default 200) with a body that is not valid for the protocol.
 * - reset: destroy the connection without answering.
 * - raw: exactly this status, body and headers.
 */
export type Reply =
  | (ReplyBase & { type: "text"; text: string; finishReason?: string; usage?: UsageOverride })
  | (ReplyBase & { type: "json"; value: unknown; finishReason?: string; usage?: UsageOverride })
  | (ReplyBase & {
      type: "error";
      status: number;
      message?: string;
      /** Provider error type; default derived from the status (rate_limit_error, overloaded_error, …). */
      errorType?: string;
      /** `retry-after` header: seconds (number) or any string (e.g. an HTTP date). */
      retryAfter?: number | string;
      /** `retry-after-ms` header. */
      retryAfterMs?: number;
      /** `x-should-retry` header. */
      shouldRetry?: boolean;
    })
  | (ReplyBase & { type: "malformed"; body?: string; status?: number; contentType?: string })
  | (ReplyBase & { type: "reset" })
  | (ReplyBase & { type: "raw"; status: number; body: string });

export interface ResponderContext {
  /** 0-based index of this request among the requests to the same endpoint. */
  index: number;
  /** Every request received so far (this one last). */
  requests: readonly RecordedRequest[];
  /** What the default responder would answer (so a responder can fail first, then answer). */
  defaultReply: () => Reply;
}

export type Responder = (request: RecordedRequest, ctx: ResponderContext) => Reply | Promise<Reply>;

export interface LoopbackServer {
  /** Origin, e.g. http://127.0.0.1:41234 */
  url: string;
  /** What to pass as the SDK's baseURL (OpenAI: `${url}/v1`; Anthropic: `${url}`). */
  baseURL: string;
  port: number;
  /** Every request received, in arrival order. */
  readonly requests: RecordedRequest[];
  /** Requests to one path, e.g. "/v1/chat/completions". */
  requestsTo(path: string): RecordedRequest[];
  /** Replace the responder (undefined → the default responder). */
  setResponder(responder: Responder | undefined): void;
  /** Forget recorded requests and per-endpoint counters. */
  clearRequests(): void;
  close(): Promise<void>;
}

export interface RouteResult {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/**
 * Runs a POST route for a request the server makes to itself (a batch line), with the headers of
 * the request that caused it. Delays are skipped and a reset becomes a 500.
 */
export type InvokeRoute = (path: string, body: unknown, headers: Record<string, string>) => Promise<RouteResult>;

/** A route turns one recorded request (+ the decided Reply) into bytes; reset/delay are handled here. */
export type RouteHandler = (req: RecordedRequest, index: number) => Promise<
  { kind: "reply"; reply: Reply; render: (reply: Reply) => RouteResult } | { kind: "result"; result: RouteResult }
>;

const BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
export function randomId(prefix: string, length = 24): string {
  const bytes = randomBytes(length);
  let s = "";
  for (const b of bytes) s += BASE62[b % 62];
  return prefix + s;
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

export async function startLoopbackServer(opts: {
  routes: Record<string, RouteHandler>;
  baseURLSuffix: string;
  /** Headers every response carries (request id is added by routes). */
  notFound: (path: string) => RouteResult;
  /** Any request no POST route takes (GET routes, paths with ids); undefined → notFound. */
  other?: (req: RecordedRequest, invoke: InvokeRoute) => Promise<RouteResult | undefined>;
  /** Listen on this port (a restarted server coming back); default 0 = any free port. */
  port?: number;
}): Promise<LoopbackServer> {
  const requests: RecordedRequest[] = [];
  const counters = new Map<string, number>();
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();
  let closed = false;

  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        timers.delete(t);
        resolve();
      }, ms);
      timers.add(t);
    });

  const send = (res: ServerResponse, r: RouteResult) => {
    if (res.destroyed || res.writableEnded) return;
    res.writeHead(r.status, { "content-length": String(Buffer.byteLength(r.body)), ...r.headers });
    res.end(r.body);
  };

  const invoke: InvokeRoute = async (path, body, headers) => {
    const route = opts.routes[path];
    if (!route) return opts.notFound(path);
    const rawBody = JSON.stringify(body);
    const inner: RecordedRequest = { method: "POST", path, query: "", headers, rawBody, body };
    const index = counters.get(path) ?? 0;
    counters.set(path, index + 1);
    const decided = await route(inner, index);
    if (decided.kind === "result") return decided.result;
    if (decided.reply.type === "reset") {
      return { status: 500, headers: { "content-type": "application/json" }, body: JSON.stringify({ error: { message: "connection reset while processing the batch line", type: "server_error" } }) };
    }
    return decided.render(decided.reply);
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const rawBody = await readBody(req);
    const path = (req.url ?? "/").split("?")[0] ?? "/";
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers)) {
      if (v !== undefined) headers[k.toLowerCase()] = Array.isArray(v) ? v.join(", ") : v;
    }
    let body: unknown;
    try {
      body = rawBody === "" ? undefined : JSON.parse(rawBody);
    } catch {
      body = undefined;
    }
    const query = (req.url ?? "").includes("?") ? (req.url ?? "").slice((req.url ?? "").indexOf("?") + 1) : "";
    const recorded: RecordedRequest = { method: req.method ?? "GET", path, query, headers, rawBody, body };
    requests.push(recorded);
    const route = req.method === "POST" ? opts.routes[path] : undefined;
    if (!route) {
      recorded.replyType = "raw";
      const r = opts.other ? await opts.other(recorded, invoke) : undefined;
      recorded.responseRequestId = r?.headers["x-request-id"] ?? r?.headers["request-id"];
      send(res, r ?? opts.notFound(path));
      return;
    }
    const index = counters.get(path) ?? 0;
    counters.set(path, index + 1);
    const decided = await route(recorded, index);
    if (decided.kind === "result") {
      recorded.replyType = "raw";
      recorded.responseRequestId = decided.result.headers["x-request-id"] ?? decided.result.headers["request-id"];
      send(res, decided.result);
      return;
    }
    const reply = decided.reply;
    recorded.replyType = reply.type;
    if (reply.delayMs !== undefined && reply.delayMs > 0) await sleep(reply.delayMs);
    if (closed || res.destroyed) return;
    if (reply.type === "reset") {
      req.socket.destroy();
      return;
    }
    const result = decided.render(reply);
    recorded.responseRequestId = result.headers["x-request-id"] ?? result.headers["request-id"];
    send(res, result);
  };

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((e: unknown) => {
      if (!res.headersSent && !res.destroyed) {
        res.writeHead(500, { "content-type": "text/plain" });
        res.end(`loopback server bug: ${(e as Error).stack ?? String(e)}`);
      }
    });
  });
  server.on("connection", (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 0, "127.0.0.1", () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const url = `http://127.0.0.1:${port}`;
  return {
    url,
    baseURL: url + opts.baseURLSuffix,
    port,
    requests,
    requestsTo: (p) => requests.filter((r) => r.path === p),
    setResponder: () => {
      throw new Error("setResponder is provided by the protocol server");
    },
    clearRequests: () => {
      requests.length = 0;
      counters.clear();
    },
    close: async () => {
      if (closed) return;
      closed = true;
      for (const t of timers) clearTimeout(t);
      timers.clear();
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Standard status → text for error messages. */
export function statusText(status: number): string {
  const m: Record<number, string> = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    409: "Conflict",
    413: "Payload Too Large",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    529: "Overloaded",
  };
  return m[status] ?? "Error";
}

/** retry-after / retry-after-ms / x-should-retry headers of an error reply. */
export function retryHeaders(reply: { retryAfter?: number | string; retryAfterMs?: number; shouldRetry?: boolean }): Record<string, string> {
  const h: Record<string, string> = {};
  if (reply.retryAfter !== undefined) h["retry-after"] = String(reply.retryAfter);
  if (reply.retryAfterMs !== undefined) h["retry-after-ms"] = String(reply.retryAfterMs);
  if (reply.shouldRetry !== undefined) h["x-should-retry"] = String(reply.shouldRetry);
  return h;
}

/** "sk-abcdef…wxyz" style masking, as providers echo a wrong key in 401 messages. */
export function maskKey(key: string): string {
  if (key.length <= 12) return "*".repeat(key.length);
  return key.slice(0, 3) + "*".repeat(Math.min(20, key.length - 7)) + key.slice(-4);
}

/** The parts of a multipart/form-data body (text parts only: names, filenames, contents). */
export function parseMultipart(raw: string, contentType: string | undefined): Map<string, { filename?: string; content: string }> {
  const parts = new Map<string, { filename?: string; content: string }>();
  const m = /boundary=(?:"([^"]+)"|([^;]+))/i.exec(contentType ?? "");
  if (!m) return parts;
  const boundary = "--" + (m[1] ?? m[2]!).trim();
  for (const chunk of raw.split(boundary)) {
    const sep = chunk.indexOf("\r\n\r\n");
    if (sep < 0) continue;
    const head = chunk.slice(0, sep);
    const name = /name="([^"]*)"/i.exec(head)?.[1];
    if (name === undefined) continue;
    const filename = /filename="([^"]*)"/i.exec(head)?.[1];
    let content = chunk.slice(sep + 4);
    if (content.endsWith("\r\n")) content = content.slice(0, -2);
    parts.set(name, { ...(filename !== undefined ? { filename } : {}), content });
  }
  return parts;
}
