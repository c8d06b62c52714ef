/**
 * Converts whatever an SDK call throws into a ProviderCallError (src/errors.ts) with the URL, status,
 * request id, a redacted body excerpt, `isRetryable`, and the server's retry hints already parsed.
 * Adapters call `toProviderCallError` in their single catch and rethrow; they decide nothing else —
 * the retry helper in src/generate owns the policy.
 *
 * Retryable: 408, 409, 429, 5xx (incl. Anthropic's 529 overloaded), connection errors and timeouts,
 * unless the server says otherwise with `x-should-retry: false` (or `true` for any status).
 * Not retryable: other 4xx, aborts, malformed success bodies.
 */
import * as OpenAISdk from "openai";
import * as AnthropicSdk from "@anthropic-ai/sdk";
import { ConfigError, ProviderCallError, RankchainError } from "../errors.ts";
import { inspect } from "node:util";
import { redactSecrets, redactUrl } from "../config/env.ts";

/** How many characters of a response body an error keeps. */
export const BODY_EXCERPT_CHARS = 500;

export interface ErrorContext {
  /** The endpoint that was called. */
  url: string;
  /** Provider label used in messages, e.g. "openai". */
  provider: string;
  /** Secrets to scrub from messages and excerpts in addition to the generic patterns. */
  secrets?: Array<string | undefined>;
  /** Clock for HTTP-date retry-after values (tests inject it). */
  now?: () => number;
}

export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 409 || status === 429 || status >= 500;
}

/** `x-should-retry: true|false` → boolean; anything else → undefined. */
export function parseShouldRetryHeader(headers: Headers | undefined): boolean | undefined {
  const v = headers?.get("x-should-retry")?.trim().toLowerCase();
  if (v === "true") return true;
  if (v === "false") return false;
  return undefined;
}

/**
 * `retry-after-ms` (milliseconds, may be fractional) first; else `retry-after` as seconds or as an
 * HTTP date (relative to `now`). Negative or unparseable values → undefined. No cap here: the retry
 * helper applies its own limit (60 s).
 */
export function parseRetryAfterMs(headers: Headers | undefined, now: () => number = Date.now): number | undefined {
  if (!headers) return undefined;
  const ms = headers.get("retry-after-ms");
  if (ms !== null && ms.trim() !== "") {
    const v = Number(ms.trim());
    if (Number.isFinite(v) && v >= 0) return v;
  }
  const ra = headers.get("retry-after");
  if (ra !== null && ra.trim() !== "") {
    const s = ra.trim();
    if (/^\d+(\.\d+)?$/.test(s)) return Number(s) * 1000;
    const at = Date.parse(s);
    if (!Number.isNaN(at)) return Math.max(0, at - now());
  }
  return undefined;
}

export function excerpt(text: string, secrets: Array<string | undefined> = []): string {
  const clean = redactSecrets(text, secrets);
  return clean.length > BODY_EXCERPT_CHARS ? clean.slice(0, BODY_EXCERPT_CHARS) + "…" : clean;
}

function isSdkAbort(e: unknown): boolean {
  return e instanceof OpenAISdk.APIUserAbortError || e instanceof AnthropicSdk.APIUserAbortError;
}
function isSdkTimeout(e: unknown): boolean {
  return e instanceof OpenAISdk.APIConnectionTimeoutError || e instanceof AnthropicSdk.APIConnectionTimeoutError;
}
function isSdkConnection(e: unknown): boolean {
  return e instanceof OpenAISdk.APIConnectionError || e instanceof AnthropicSdk.APIConnectionError;
}
function isSdkApiError(e: unknown): e is OpenAISdk.APIError | AnthropicSdk.APIError {
  return e instanceof OpenAISdk.APIError || e instanceof AnthropicSdk.APIError;
}

function bodyText(body: unknown): string | undefined {
  if (body === undefined || body === null) return undefined;
  if (typeof body === "string") return body;
  try {
    return JSON.stringify(body);
  } catch {
    return String(body);
  }
}

/**
 * Any thrown value → ProviderCallError. Errors that are already RankchainErrors (a ConfigError for a
 * missing key, a ProviderCallError made by the adapter) pass through unchanged.
 */
export function toProviderCallError(e: unknown, ctx: ErrorContext): RankchainError {
  if (e instanceof RankchainError) return e;
  const secrets = ctx.secrets ?? [];
  const red = (s: string) => redactSecrets(s, secrets);

  if (isSdkAbort(e)) {
    return new ProviderCallError(`${ctx.provider}: request aborted (${ctx.url})`, {
      url: ctx.url,
      isRetryable: false,
      cause: e,
    });
  }
  if (isSdkTimeout(e)) {
    return new ProviderCallError(`${ctx.provider}: request timed out (${ctx.url})`, {
      url: ctx.url,
      isRetryable: true,
      cause: e,
    });
  }
  if (isSdkConnection(e)) {
    const cause = (e as Error).cause;
    const detail = cause instanceof Error ? `${cause.message}${codeOf(cause)}` : (e as Error).message;
    return new ProviderCallError(red(`${ctx.provider}: connection error calling ${ctx.url}: ${detail}`), {
      url: ctx.url,
      isRetryable: true,
      cause: e,
    });
  }
  if (isSdkApiError(e) && typeof e.status === "number") {
    const headers = e.headers;
    const shouldRetryHeader = parseShouldRetryHeader(headers);
    const retryAfterMs = parseRetryAfterMs(headers, ctx.now);
    const text = bodyText(e.error) ?? e.message;
    // Anthropic's SDK puts the whole error body in .message; its apiMessage is the readable part.
    const apiMessage = (e as { apiMessage?: unknown }).apiMessage;
    const summary = typeof apiMessage === "string" && apiMessage !== "" ? `${e.status} ${apiMessage}` : e.message;
    return new ProviderCallError(red(`${ctx.provider}: HTTP ${summary} (${ctx.url})`), {
      url: ctx.url,
      status: e.status,
      requestId: e.requestID ?? undefined,
      bodyExcerpt: text === undefined ? undefined : excerpt(text, secrets),
      isRetryable: shouldRetryHeader ?? isRetryableStatus(e.status),
      shouldRetryHeader,
      retryAfterMs,
      cause: e,
    });
  }
  // A DOM-style AbortError (signal passed through to fetch) is an abort, never retried.
  if (e instanceof Error && e.name === "AbortError") {
    return new ProviderCallError(`${ctx.provider}: request aborted (${ctx.url})`, {
      url: ctx.url,
      isRetryable: false,
      cause: e,
    });
  }
  const msg = e instanceof Error ? e.message : String(e);
  return new ProviderCallError(red(`${ctx.provider}: call to ${ctx.url} failed: ${msg}`), {
    url: ctx.url,
    isRetryable: false,
    cause: e,
  });
}

function codeOf(e: Error): string {
  const c = (e as { code?: unknown }).code ?? ((e.cause as { code?: unknown } | undefined)?.code);
  return typeof c === "string" ? ` (${c})` : "";
}

/**
 * A 2xx response whose body is not what the protocol promises (not JSON, or JSON of the wrong
 * shape). Not retryable: the same request would most likely get the same answer.
 */
export function malformedResponseError(opts: {
  provider: string;
  url: string;
  status: number;
  requestId: string | undefined;
  body: string;
  problem: string;
  secrets?: Array<string | undefined>;
  cause?: unknown;
}): ProviderCallError {
  return new ProviderCallError(
    redactSecrets(`${opts.provider}: malformed response body from ${opts.url} (HTTP ${opts.status}): ${opts.problem}`, opts.secrets),
    {
      url: opts.url,
      status: opts.status,
      requestId: opts.requestId,
      bodyExcerpt: excerpt(opts.body, opts.secrets),
      isRetryable: false,
      cause: opts.cause,
    },
  );
}

/**
 * The endpoint as errors show it: base URL and path joined without doubling slashes, with any
 * credentials in the URL (user-info, `?key=`) redacted — errors are printed and stored.
 */
export function joinUrl(base: string, path: string): string {
  const u = new URL(base);
  const query = u.search;
  u.search = "";
  return redactUrl(u.toString().replace(/\/+$/, "") + "/" + path.replace(/^\/+/, "") + query);
}

/**
 * A logger for the SDK clients (their `logger` option): everything goes to stderr with the key and
 * `authorization` / `x-api-key` values redacted, whatever OPENAI_LOG / ANTHROPIC_LOG asks for.
 */
export function redactingLogger(secrets: Array<string | undefined>): {
  error: (msg: string, ...rest: unknown[]) => void;
  warn: (msg: string, ...rest: unknown[]) => void;
  info: (msg: string, ...rest: unknown[]) => void;
  debug: (msg: string, ...rest: unknown[]) => void;
} {
  const write = (level: string) => (msg: string, ...rest: unknown[]) => {
    const parts = [msg, ...rest.map((r) => (typeof r === "string" ? r : inspect(r, { depth: 4, breakLength: Infinity })))];
    process.stderr.write(`[sdk ${level}] ${redactSecrets(parts.join(" "), secrets)}\n`);
  };
  return { error: write("error"), warn: write("warn"), info: write("info"), debug: write("debug") };
}

/**
 * Reads a successful response's body and parses it with a zod schema. A body that is not JSON or
 * not of the schema's shape → malformedResponseError (not retryable); a connection lost while the
 * body streams in → retryable ProviderCallError.
 */
export async function readResponseJson<T>(
  response: Response,
  parse: (json: unknown) => { success: true; data: T } | { success: false; error: { issues: Array<{ path: PropertyKey[]; message: string }> } },
  ctx: { provider: string; url: string; requestIdHeader: string; secrets?: Array<string | undefined> },
): Promise<{ data: T; json: unknown; requestId: string | undefined }> {
  const requestId = response.headers.get(ctx.requestIdHeader) ?? undefined;
  let text: string;
  try {
    text = await response.text();
  } catch (e) {
    throw new ProviderCallError(
      redactSecrets(`${ctx.provider}: connection lost while reading the response from ${ctx.url}: ${(e as Error).message}`, ctx.secrets),
      { url: ctx.url, status: response.status, requestId, isRetryable: true, cause: e },
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw malformedResponseError({
      provider: ctx.provider,
      url: ctx.url,
      status: response.status,
      requestId,
      body: text,
      problem: text.trim() === "" ? "empty body" : `not JSON (${(e as Error).message})`,
      secrets: ctx.secrets,
      cause: e,
    });
  }
  const parsed = parse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue ? issue.path.map(String).join(".") || "(root)" : "(root)";
    throw malformedResponseError({
      provider: ctx.provider,
      url: ctx.url,
      status: response.status,
      requestId,
      body: text,
      problem: `unexpected shape at ${where}: ${issue?.message ?? "invalid"}`,
      secrets: ctx.secrets,
    });
  }
  return { data: parsed.data, json, requestId };
}

/** Validates factory settings; a bad value → ConfigError naming the field and the value's problem. */
export function parseSettings<T>(
  schema: { safeParse: (v: unknown) => { success: true; data: T } | { success: false; error: { issues: Array<{ path: PropertyKey[]; message: string }> } } },
  value: unknown,
  what: string,
): T {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const i = r.error.issues[0];
  const field = i ? i.path.map(String).join(".") : "";
  throw new ConfigError(`${what}: invalid setting ${field ? `"${field}"` : ""}: ${i?.message ?? "invalid"}`);
}
