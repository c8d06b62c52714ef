/**
 * Provider batch APIs (OpenAI Files + Batches, Anthropic Message Batches) behind one small
 * contract. A BatchClient submits, reports status and downloads raw per-request results; `parse`
 * turns one raw result into a GenerateResult (or a failure) with the original request in hand
 * (Anthropic's forced-tool name comes from it). Like the online adapters, clients make calls and
 * catch nothing; src/generate/batch-model.ts owns waiting, resume and the ledger's view.
 */
import type { GenerateRequest, GenerateResult } from "../types.ts";

export interface BatchItem {
  /** Unique within the batch; [A-Za-z0-9_-]{1,64} (Anthropic's rule, which OpenAI also accepts). */
  customId: string;
  request: GenerateRequest;
}

export interface BatchStatus {
  id: string;
  /** ended: results (or the reason there are none) are final. */
  ended: boolean;
  /** Provider's own word: validating, in_progress, finalizing, completed, expired, failed, ended, … */
  raw: string;
  total: number;
  succeeded: number;
  failed: number;
}

export type BatchItemOutcome =
  | { ok: true; result: GenerateResult }
  | {
      ok: false;
      /** errored: the provider answered with an error (status when it gave one); expired/canceled: never run. */
      kind: "errored" | "expired" | "canceled";
      status: number | undefined;
      message: string;
    };

export interface BatchClient {
  readonly provider: "openai" | "anthropic";
  /** Submits the items; `tag` is stored with the batch where the API allows (findByTag). */
  submit(items: readonly BatchItem[], tag: string): Promise<string>;
  status(id: string): Promise<BatchStatus>;
  /** Raw results by custom_id (only for an ended batch); items absent from the map never ran. */
  results(id: string): Promise<Map<string, unknown>>;
  parse(raw: unknown, request: GenerateRequest): BatchItemOutcome;
  /** A batch submitted with this tag, if the API can find it (a kill between submit and the log). */
  findByTag?(tag: string): Promise<string | undefined>;
}
