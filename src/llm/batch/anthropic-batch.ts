/**
 * Anthropic Message Batches: one POST with every request's params, status by id, and a JSONL of
 * results (succeeded / errored / expired / canceled per custom_id) from the batch's results_url.
 * Billed at 50% of the online price. The API has no metadata to find a batch by, so a kill between
 * the create call and its entry in batches.jsonl (a few milliseconds) leaves the requests charged at
 * their worst case in the ledger and submitted again on resume.
 */
import Anthropic from "@anthropic-ai/sdk";
import { z } from "zod";
import { SdkConnection, type BatchClientSettings } from "./sdk-connection.ts";
import { anthropicMessageResponseSchema } from "../anthropic/anthropic-api.ts";
import { anthropicMessageResult } from "../anthropic/anthropic-messages-model.ts";
import { buildAnthropicBody } from "../anthropic/anthropic-options.ts";
import type { GenerateRequest } from "../types.ts";
import type { BatchClient, BatchItem, BatchItemOutcome, BatchStatus } from "./types.ts";

const resultLineSchema = z.object({
  custom_id: z.string(),
  result: z.object({
    type: z.string(),
    message: z.unknown().optional(),
    error: z.object({ error: z.object({ type: z.string().nullish(), message: z.string().nullish() }).nullish() }).passthrough().nullish(),
  }),
});

export class AnthropicBatchClient implements BatchClient {
  readonly provider = "anthropic" as const;
  private readonly conn: SdkConnection<Anthropic>;

  constructor(private readonly settings: BatchClientSettings) {
    this.conn = new SdkConnection("anthropic", "ANTHROPIC_API_KEY", settings, (o) => new Anthropic(o));
  }

  private guarded<T>(path: string, fn: (client: Anthropic) => Promise<T>): Promise<T> {
    return this.conn.guarded(path, fn);
  }

  async submit(items: readonly BatchItem[], _tag: string): Promise<string> {
    const requests = items.map((i) => ({ custom_id: i.customId, params: buildAnthropicBody(i.request, { model: this.settings.model }).body }));
    const b = await this.guarded("/v1/messages/batches", (c) =>
      c.messages.batches.create({ requests: requests as unknown as Anthropic.Messages.BatchCreateParams.Request[] }),
    );
    return b.id;
  }

  async status(id: string): Promise<BatchStatus> {
    const b = await this.guarded(`/v1/messages/batches/${id}`, (c) => c.messages.batches.retrieve(id));
    const n = b.request_counts;
    return {
      id,
      ended: b.processing_status === "ended",
      raw: b.processing_status,
      total: n.processing + n.succeeded + n.errored + n.canceled + n.expired,
      succeeded: n.succeeded,
      failed: n.errored + n.canceled + n.expired,
    };
  }

  async results(id: string): Promise<Map<string, unknown>> {
    const out = new Map<string, unknown>();
    await this.guarded(`/v1/messages/batches/${id}/results`, async (c) => {
      const stream = await c.messages.batches.results(id);
      for await (const line of stream) out.set(line.custom_id, line);
    });
    return out;
  }

  parse(raw: unknown, request: GenerateRequest): BatchItemOutcome {
    const line = resultLineSchema.parse(raw);
    const r = line.result;
    if (r.type === "succeeded") {
      const msg = anthropicMessageResponseSchema.safeParse(r.message);
      if (!msg.success) return { ok: false, kind: "errored", status: 200, message: "batch result is not a message" };
      const { warnings, toolName } = buildAnthropicBody(request, { model: this.settings.model });
      return { ok: true, result: anthropicMessageResult(msg.data, r.message, warnings, toolName, undefined) };
    }
    if (r.type === "expired" || r.type === "canceled") return { ok: false, kind: r.type, status: undefined, message: `request ${r.type} in the batch` };
    const type = r.error?.error?.type ?? "api_error";
    const status = type === "invalid_request_error" ? 400 : type === "overloaded_error" ? 529 : 500;
    return { ok: false, kind: "errored", status, message: `${type}: ${r.error?.error?.message ?? ""}` };
  }
}
