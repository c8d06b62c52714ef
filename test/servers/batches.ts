/**
 * Batch endpoints for the loopback servers, as the official SDKs see them.
 *
 * OpenAI (Files + Batches): POST /v1/files (multipart, purpose "batch") → `file-…`; POST
 * /v1/batches {input_file_id, endpoint, completion_window, metadata} → `batch_…` (status
 * "validating"); GET /v1/batches/{id} (in_progress until `pollsBeforeEnd` polls, then completed /
 * expired / failed with request_counts, output_file_id, error_file_id); GET /v1/batches (list);
 * GET /v1/files/{id}/content. Output lines `{id, custom_id, response: {status_code, request_id,
 * body}, error: null}`; failed lines go to the error file, expired ones as `{response: null, error:
 * {code: "batch_expired"}}`.
 *
 * Anthropic (Message Batches): POST /v1/messages/batches {requests: [{custom_id, params}]} →
 * `msgbatch_…`; GET /v1/messages/batches/{id} (processing_status in_progress → ended,
 * request_counts, results_url); GET /v1/messages/batches/{id}/results (JSONL of `{custom_id,
 * result: {type: succeeded | errored | expired | canceled, …}}`).
 *
 * Each line is answered by the server's own chat/messages route (so the responder decides it:
 * an error reply makes a failed line). Behaviour per batch: `pollsBeforeEnd` (default 1),
 * `expireAfter` (lines run before the window "expires"; the rest expire), `failValidation`.
 */
import { randomId, parseMultipart, type InvokeRoute, type RecordedRequest, type RouteResult } from "./common.ts";

export interface BatchBehavior {
  pollsBeforeEnd?: number;
  expireAfter?: number;
  failValidation?: string;
}

export interface LoopbackBatch {
  id: string;
  lines: Array<{ custom_id: string; body: unknown }>;
  polls: number;
  status: string;
  behavior: BatchBehavior;
  /** Lines that were run (each one billed by the real API). */
  ran: number;
  metadata: Record<string, string> | null;
}

const json = (status: number, body: unknown, extra: Record<string, string> = {}): RouteResult => ({
  status,
  headers: { "content-type": "application/json", "x-request-id": "req_" + randomId("", 24).toLowerCase(), "request-id": "req_" + randomId("", 24), ...extra },
  body: JSON.stringify(body),
});

export class BatchEndpoints {
  readonly batches: LoopbackBatch[] = [];
  private readonly files = new Map<string, { content: string; filename: string; purpose: string }>();
  behavior: (index: number) => BatchBehavior = () => ({});

  private newBatch(lines: LoopbackBatch["lines"], metadata: Record<string, string> | null, prefix: string): LoopbackBatch {
    const b: LoopbackBatch = { id: randomId(prefix, 24), lines, polls: 0, status: "in_progress", behavior: this.behavior(this.batches.length), ran: 0, metadata };
    this.batches.push(b);
    return b;
  }

  /** Runs every line once, through the server's own route (a later poll reuses the outcome). */
  private async run(b: LoopbackBatch, path: string, headers: Record<string, string>, invoke: InvokeRoute) {
    const out: Array<{ custom_id: string; result?: RouteResult; expired?: boolean }> = [];
    for (const [i, line] of b.lines.entries()) {
      if (b.behavior.expireAfter !== undefined && i >= b.behavior.expireAfter) out.push({ custom_id: line.custom_id, expired: true });
      else {
        b.ran++;
        out.push({ custom_id: line.custom_id, result: await invoke(path, line.body, headers) });
      }
    }
    return out;
  }

  // ---- OpenAI ----------------------------------------------------------------------------------
  private openaiOutcome = new Map<string, { output?: string; error?: string; completed: number; failed: number }>();

  private openaiBatchObject(b: LoopbackBatch, inputFileId: string) {
    const o = this.openaiOutcome.get(b.id);
    const now = Math.floor(Date.now() / 1000);
    return {
      id: b.id,
      object: "batch",
      endpoint: "/v1/chat/completions",
      errors: b.status === "failed" ? { object: "list", data: [{ code: "invalid_request", message: b.behavior.failValidation, param: null, line: null }] } : null,
      input_file_id: inputFileId,
      completion_window: "24h",
      status: b.status,
      output_file_id: o?.output ?? null,
      error_file_id: o?.error ?? null,
      created_at: now,
      in_progress_at: now,
      expires_at: now + 86400,
      finalizing_at: null,
      completed_at: b.status === "completed" ? now : null,
      failed_at: b.status === "failed" ? now : null,
      expired_at: b.status === "expired" ? now : null,
      cancelling_at: null,
      cancelled_at: null,
      request_counts: { total: b.lines.length, completed: o?.completed ?? 0, failed: o?.failed ?? 0 },
      metadata: b.metadata,
    };
  }

  private inputFileOf = new Map<string, string>();

  async openai(req: RecordedRequest, invoke: InvokeRoute): Promise<RouteResult | undefined> {
    const { method, path } = req;
    if (method === "POST" && path === "/v1/files") {
      const parts = parseMultipart(req.rawBody, req.headers["content-type"]);
      const file = parts.get("file");
      const purpose = parts.get("purpose")?.content ?? "";
      if (!file || purpose !== "batch") return json(400, { error: { message: "'file' and purpose 'batch' are required.", type: "invalid_request_error", param: null, code: null } });
      const id = randomId("file-", 22);
      this.files.set(id, { content: file.content, filename: file.filename ?? "upload.jsonl", purpose });
      return json(200, { id, object: "file", bytes: Buffer.byteLength(file.content), created_at: Math.floor(Date.now() / 1000), filename: file.filename, purpose, status: "processed" });
    }
    if (method === "POST" && path === "/v1/batches") {
      const b = req.body as { input_file_id?: string; endpoint?: string; completion_window?: string; metadata?: Record<string, string> } | undefined;
      const file = b?.input_file_id ? this.files.get(b.input_file_id) : undefined;
      if (!file || b?.endpoint !== "/v1/chat/completions" || b.completion_window !== "24h") {
        return json(400, { error: { message: "input_file_id (an uploaded batch file), endpoint and completion_window '24h' are required.", type: "invalid_request_error", param: null, code: null } });
      }
      const lines = file.content
        .split("\n")
        .filter((l) => l.trim() !== "")
        .map((l) => JSON.parse(l) as { custom_id: string; method: string; url: string; body: unknown });
      const batch = this.newBatch(lines.map((l) => ({ custom_id: l.custom_id, body: l.body })), b.metadata ?? null, "batch_");
      this.inputFileOf.set(batch.id, b.input_file_id!);
      batch.status = "validating";
      return json(200, this.openaiBatchObject(batch, b.input_file_id!));
    }
    if (method === "GET" && path === "/v1/batches") {
      const data = [...this.batches].reverse().filter((b) => this.inputFileOf.has(b.id)).map((b) => this.openaiBatchObject(b, this.inputFileOf.get(b.id)!));
      return json(200, { object: "list", data, first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null, has_more: false });
    }
    let m = /^\/v1\/batches\/([^/]+)$/.exec(path);
    if (method === "GET" && m) {
      const b = this.batches.find((x) => x.id === m![1]);
      if (!b) return json(404, { error: { message: `No batch found with id '${m[1]}'.`, type: "invalid_request_error", param: null, code: null } });
      b.polls++;
      const ended = ["completed", "expired", "failed"].includes(b.status);
      if (!ended && b.polls >= (b.behavior.pollsBeforeEnd ?? 1)) {
        if (b.behavior.failValidation) b.status = "failed";
        else {
          const outcome = await this.run(b, "/v1/chat/completions", req.headers, invoke);
          const ok: string[] = [];
          const bad: string[] = [];
          for (const o of outcome) {
            const id = randomId("batch_req_", 24);
            if (o.expired) {
              bad.push(JSON.stringify({ id, custom_id: o.custom_id, response: null, error: { code: "batch_expired", message: "This request could not be executed before the completion window expired." } }));
              continue;
            }
            const r = o.result!;
            const line = JSON.stringify({ id, custom_id: o.custom_id, response: { status_code: r.status, request_id: r.headers["x-request-id"] ?? null, body: safeJson(r.body) }, error: null });
            (r.status === 200 ? ok : bad).push(line);
          }
          const put = (lines: string[]) => {
            if (lines.length === 0) return undefined;
            const id = randomId("file-", 22);
            this.files.set(id, { content: lines.join("\n") + "\n", filename: "batch_output.jsonl", purpose: "batch_output" });
            return id;
          };
          this.openaiOutcome.set(b.id, { output: put(ok), error: put(bad), completed: ok.length, failed: bad.length });
          b.status = b.behavior.expireAfter !== undefined ? "expired" : "completed";
        }
      } else if (!ended) b.status = "in_progress";
      return json(200, this.openaiBatchObject(b, this.inputFileOf.get(b.id)!));
    }
    m = /^\/v1\/files\/([^/]+)\/content$/.exec(path);
    if (method === "GET" && m) {
      const f = this.files.get(m[1]!);
      if (!f) return json(404, { error: { message: `No such File object: ${m[1]}`, type: "invalid_request_error", param: "id", code: null } });
      return { status: 200, headers: { "content-type": "application/octet-stream" }, body: f.content };
    }
    return undefined;
  }

  // ---- Anthropic -------------------------------------------------------------------------------
  private anthropicResults = new Map<string, { lines: string; counts: Record<string, number> }>();
  private origin = "";

  private anthropicBatchObject(b: LoopbackBatch) {
    const r = this.anthropicResults.get(b.id);
    const now = new Date().toISOString();
    const counts = r?.counts ?? { processing: b.lines.length, succeeded: 0, errored: 0, canceled: 0, expired: 0 };
    return {
      id: b.id,
      type: "message_batch",
      processing_status: b.status === "ended" ? "ended" : "in_progress",
      request_counts: { processing: 0, succeeded: 0, errored: 0, canceled: 0, expired: 0, ...counts },
      ended_at: b.status === "ended" ? now : null,
      created_at: now,
      expires_at: new Date(Date.now() + 86_400_000).toISOString(),
      archived_at: null,
      cancel_initiated_at: null,
      results_url: b.status === "ended" ? `${this.origin}/v1/messages/batches/${b.id}/results` : null,
    };
  }

  async anthropic(req: RecordedRequest, invoke: InvokeRoute, origin: string): Promise<RouteResult | undefined> {
    this.origin = origin;
    const { method, path } = req;
    const notFound = (what: string) => json(404, { type: "error", error: { type: "not_found_error", message: `${what} not found` } });
    if (method === "POST" && path === "/v1/messages/batches") {
      const reqs = (req.body as { requests?: Array<{ custom_id: string; params: unknown }> } | undefined)?.requests;
      if (!Array.isArray(reqs) || reqs.length === 0 || reqs.some((r) => !/^[a-zA-Z0-9_-]{1,64}$/.test(r.custom_id))) {
        return json(400, { type: "error", error: { type: "invalid_request_error", message: "requests: each needs a custom_id matching ^[a-zA-Z0-9_-]{1,64}$ and params" } });
      }
      const b = this.newBatch(reqs.map((r) => ({ custom_id: r.custom_id, body: r.params })), null, "msgbatch_");
      return json(200, this.anthropicBatchObject(b));
    }
    let m = /^\/v1\/messages\/batches\/([^/]+)$/.exec(path);
    if (method === "GET" && m) {
      const b = this.batches.find((x) => x.id === m![1]);
      if (!b) return notFound(`message batch ${m[1]}`);
      b.polls++;
      if (b.status !== "ended" && b.polls >= (b.behavior.pollsBeforeEnd ?? 1)) {
        const outcome = await this.run(b, "/v1/messages", req.headers, invoke);
        const counts = { processing: 0, succeeded: 0, errored: 0, canceled: 0, expired: 0 };
        const lines = outcome.map((o) => {
          if (o.expired) {
            counts.expired++;
            return JSON.stringify({ custom_id: o.custom_id, result: { type: "expired" } });
          }
          const body = safeJson(o.result!.body) as Record<string, unknown>;
          if (o.result!.status === 200) {
            counts.succeeded++;
            return JSON.stringify({ custom_id: o.custom_id, result: { type: "succeeded", message: body } });
          }
          counts.errored++;
          return JSON.stringify({ custom_id: o.custom_id, result: { type: "errored", error: { type: "error", error: (body as { error?: unknown }).error ?? { type: "api_error", message: "error" } } } });
        });
        this.anthropicResults.set(b.id, { lines: lines.join("\n") + "\n", counts });
        b.status = "ended";
      }
      return json(200, this.anthropicBatchObject(b));
    }
    m = /^\/v1\/messages\/batches\/([^/]+)\/results$/.exec(path);
    if (method === "GET" && m) {
      const r = this.anthropicResults.get(m[1]!);
      if (!r) return notFound(`results of ${m[1]}`);
      return { status: 200, headers: { "content-type": "application/binary" }, body: r.lines };
    }
    return undefined;
  }
}

function safeJson(s: string): unknown {
  try {
    return JSON.parse(s);
  } catch {
    return s;
  }
}
