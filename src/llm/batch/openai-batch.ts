/**
 * OpenAI Batch API: the requests go up as a JSONL file (Files API, purpose "batch"), a batch is
 * created on /v1/chat/completions with a 24 h window and our tag in its metadata; results come back
 * as the output file (successes and per-request HTTP errors) and the error file (per-request
 * errors, including `batch_expired` for requests the window did not reach). Billed at the batch
 * price (about half the online price).
 */
import OpenAI, { toFile } from "openai";
import { z } from "zod";
import { SdkConnection, type BatchClientSettings } from "./sdk-connection.ts";
import { openAIChatResponseSchema } from "../openai/openai-api.ts";
import { openAIChatResult } from "../openai/openai-chat-model.ts";
import { buildOpenAIChatBody } from "../openai/openai-options.ts";
import type { GenerateRequest } from "../types.ts";
import type { BatchClient, BatchItem, BatchItemOutcome, BatchStatus } from "./types.ts";

const outputLineSchema = z.object({
  custom_id: z.string(),
  response: z.object({ status_code: z.number(), request_id: z.string().nullish(), body: z.unknown() }).nullish(),
  error: z.object({ code: z.string().nullish(), message: z.string().nullish() }).nullish(),
});

export const OPENAI_BATCH_TAG_KEY = "rankchain_batch";

export class OpenAIBatchClient implements BatchClient {
  readonly provider = "openai" as const;
  private readonly conn: SdkConnection<OpenAI>;

  constructor(private readonly settings: BatchClientSettings) {
    this.conn = new SdkConnection("openai", "OPENAI_API_KEY", settings, (o) => new OpenAI(o));
  }

  private guarded<T>(path: string, fn: (client: OpenAI) => Promise<T>): Promise<T> {
    return this.conn.guarded(path, fn);
  }

  async submit(items: readonly BatchItem[], tag: string): Promise<string> {
    const lines = items.map((i) => {
      const { body } = buildOpenAIChatBody(i.request, { model: this.settings.model, dialect: "openai" });
      return JSON.stringify({ custom_id: i.customId, method: "POST", url: "/v1/chat/completions", body });
    });
    const file = await this.guarded("/files", async (c) =>
      c.files.create({ file: await toFile(Buffer.from(lines.join("\n") + "\n"), `rankchain-${tag}.jsonl`, { type: "application/jsonl" }), purpose: "batch" }),
    );
    const batch = await this.guarded("/batches", (c) =>
      c.batches.create({ input_file_id: file.id, endpoint: "/v1/chat/completions", completion_window: "24h", metadata: { [OPENAI_BATCH_TAG_KEY]: tag } }),
    );
    return batch.id;
  }

  async status(id: string): Promise<BatchStatus> {
    const b = await this.guarded(`/batches/${id}`, (c) => c.batches.retrieve(id));
    const counts = b.request_counts ?? { total: 0, completed: 0, failed: 0 };
    return {
      id,
      ended: ["completed", "expired", "failed", "cancelled"].includes(b.status),
      raw: b.status,
      total: counts.total,
      succeeded: counts.completed,
      failed: counts.failed,
    };
  }

  async results(id: string): Promise<Map<string, unknown>> {
    const b = await this.guarded(`/batches/${id}`, (c) => c.batches.retrieve(id));
    const out = new Map<string, unknown>();
    for (const fileId of [b.output_file_id, b.error_file_id]) {
      if (!fileId) continue;
      const text = await this.guarded(`/files/${fileId}/content`, async (c) => (await c.files.content(fileId)).text());
      for (const line of text.split("\n")) {
        if (line.trim() === "") continue;
        const parsed = outputLineSchema.safeParse(JSON.parse(line));
        if (parsed.success) out.set(parsed.data.custom_id, parsed.data);
      }
    }
    if (b.status === "failed") {
      // the whole batch was refused (validation): every request errored, with the batch's reason
      const reason = b.errors?.data?.map((e) => e.message).join("; ") || "batch failed validation";
      out.set("*", { custom_id: "*", error: { code: "batch_failed", message: reason } });
    }
    return out;
  }

  parse(raw: unknown, request: GenerateRequest): BatchItemOutcome {
    const line = outputLineSchema.parse(raw);
    if (line.error) {
      const expired = line.error.code === "batch_expired";
      return { ok: false, kind: expired ? "expired" : "errored", status: undefined, message: `${line.error.code ?? "error"}: ${line.error.message ?? ""}` };
    }
    const res = line.response;
    if (!res) return { ok: false, kind: "errored", status: undefined, message: "batch result without a response" };
    if (res.status_code !== 200) {
      const msg = (res.body as { error?: { message?: string } } | undefined)?.error?.message ?? `HTTP ${res.status_code}`;
      return { ok: false, kind: "errored", status: res.status_code, message: msg };
    }
    const body = openAIChatResponseSchema.safeParse(res.body);
    if (!body.success) return { ok: false, kind: "errored", status: 200, message: "batch result body is not a chat completion" };
    const { warnings } = buildOpenAIChatBody(request, { model: this.settings.model, dialect: "openai" });
    return { ok: true, result: openAIChatResult(body.data, res.body, warnings, res.request_id ?? undefined) };
  }

  async findByTag(tag: string): Promise<string | undefined> {
    const page = await this.guarded("/batches", (c) => c.batches.list({ limit: 100 }));
    return page.data.find((b) => b.metadata?.[OPENAI_BATCH_TAG_KEY] === tag)?.id;
  }
}
