import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createHash } from "node:crypto";
import { z } from "zod";
import { ConfigError } from "../errors.ts";
import { ChainRecordSchema, type ChainRecord } from "./chain-record.ts";
import { JsonlAppender, readJsonl } from "./jsonl.ts";

/**
 * The run directory (DESIGN.md): run.json, chains.jsonl, ledger.jsonl, plus responses.jsonl — every
 * paid response, appended as soon as it arrives, keyed by a hash of (chain, call index, request),
 * so `--resume` never pays twice for the same call even inside an unfinished chain.
 */
export const RUN_FILES = {
  run: "run.json",
  chains: "chains.jsonl",
  ledger: "ledger.jsonl",
  responses: "responses.jsonl",
  /** --mode batch: every batch submitted (before and after) and collected, for resume. */
  batches: "batches.jsonl",
  validated: "validated.jsonl",
  validation: "validation.json",
  report: "report.html",
} as const;

export const RunStatusSchema = z.enum([
  "running",
  "completed",
  "incomplete",
  "budget_reached",
  "interrupted",
  "failed",
  /** the circuit breaker stopped the run (exit 4) */
  "provider_unreachable",
  /** finished, but every chain is empty or shorter than --min-steps (exit 1) */
  "no_usable_chains",
]);
export type RunStatus = z.infer<typeof RunStatusSchema>;

export const RunTotalsSchema = z.object({
  seeds: z.number(),
  chains_done: z.number(),
  chains_truncated: z.number(),
  /** chains with 0 steps, with fewer than min_steps, and with at least min_steps (absent in older runs) */
  chains_empty: z.number().optional(),
  chains_short: z.number().optional(),
  chains_usable: z.number().optional(),
  min_steps: z.number().optional(),
  steps: z.number(),
  usd: z.number(),
  reserved_usd: z.number(),
  input_tokens: z.number(),
  output_tokens: z.number(),
  calls: z.number(),
  /** Attempts released without a charge (HTTP errors, never sent); absent in older runs. */
  released_attempts: z.number().optional(),
  /** Charges above their reservation (the provider billed more than was counted). */
  over_billed: z.object({ calls: z.number(), usd: z.number() }).optional(),
  /** Spend per ledger stage (generate, validate, …) over the whole run directory. */
  by_stage: z.record(z.string(), z.object({ usd: z.number(), inputTokens: z.number(), outputTokens: z.number(), calls: z.number() })).optional(),
  cached_responses_reused: z.number(),
  elapsed_s: z.number(),
});
export type RunTotals = z.infer<typeof RunTotalsSchema>;

export const RunManifestSchema = z
  .object({
    rankchain_version: z.string(),
    created_at: z.string(),
    updated_at: z.string(),
    status: RunStatusSchema,
    /** Everything that changes what a chain is: resume refuses a mismatch. */
    fingerprint: z.record(z.string(), z.unknown()),
    fingerprint_hash: z.string(),
    config: z.record(z.string(), z.unknown()),
    totals: RunTotalsSchema,
    warnings: z.array(z.unknown()),
    versions: z.record(z.string(), z.string()),
    price: z.unknown().optional(),
    message: z.string().optional(),
  })
  .passthrough();
export type RunManifest = z.infer<typeof RunManifestSchema>;

export const CachedResponseSchema = z.object({
  key: z.string(),
  chain_id: z.string(),
  call: z.number(),
  text: z.string(),
  finish_reason: z.object({ unified: z.string(), raw: z.string().optional().nullable() }),
  input_tokens: z.number(),
  output_tokens: z.number(),
  request_id: z.string().optional(),
  ts: z.string(),
});
export type CachedResponse = z.infer<typeof CachedResponseSchema>;

export function hashJson(value: unknown): string {
  return createHash("sha256").update(stableStringify(value)).digest("hex");
}

/** JSON with sorted object keys, so equal values hash equally. */
export function stableStringify(value: unknown): string {
  if (value === null || typeof value !== "object") return JSON.stringify(value) ?? "null";
  if (Array.isArray(value)) return "[" + value.map(stableStringify).join(",") + "]";
  const keys = Object.keys(value as Record<string, unknown>)
    .filter((k) => (value as Record<string, unknown>)[k] !== undefined)
    .sort();
  return "{" + keys.map((k) => JSON.stringify(k) + ":" + stableStringify((value as Record<string, unknown>)[k])).join(",") + "}";
}

export function readManifest(dir: string): RunManifest | undefined {
  const p = join(dir, RUN_FILES.run);
  if (!existsSync(p)) return undefined;
  try {
    return RunManifestSchema.parse(JSON.parse(readFileSync(p, "utf8")));
  } catch (e) {
    throw new ConfigError(`run.json is not a valid run manifest: ${(e as Error).message}`, { location: { file: p } });
  }
}

/** Writes run.json atomically (temp file + rename): a kill never leaves half a manifest. */
export function writeManifest(dir: string, manifest: RunManifest): void {
  const p = join(dir, RUN_FILES.run);
  const tmp = p + ".tmp";
  writeFileSync(tmp, JSON.stringify(manifest, null, 2) + "\n");
  renameSync(tmp, p);
}

export interface OpenRunOptions {
  dir: string;
  resume: boolean;
  fingerprint: Record<string, unknown>;
}

export interface ResumeState {
  completed: Map<string, ChainRecord>;
  responses: Map<string, CachedResponse>;
  previous: RunManifest | undefined;
  tornLines: number;
}

/**
 * Prepares the run directory. Without --resume the directory must not already hold a run (so
 * nothing paid for is overwritten). With --resume the fingerprint must match (else exit 2, naming
 * the fields that differ); completed chains and cached responses are loaded; a torn final line
 * from a kill is tolerated.
 */
export async function openRunDir(opts: OpenRunOptions): Promise<ResumeState> {
  const { dir } = opts;
  const previous = existsSync(dir) ? readManifest(dir) : undefined;
  const hasData = existsSync(join(dir, RUN_FILES.chains)) || existsSync(join(dir, RUN_FILES.ledger));
  if (!opts.resume && (previous || hasData)) {
    throw new ConfigError(`${dir} already holds a run; pass --resume to continue it, or choose another --out`);
  }
  if (opts.resume && previous) {
    const diffs = Object.keys({ ...previous.fingerprint, ...opts.fingerprint }).filter(
      (k) => stableStringify(previous.fingerprint[k]) !== stableStringify(opts.fingerprint[k]),
    );
    if (diffs.length > 0) {
      const detail = diffs
        .map((k) => `${k}: was ${stableStringify(previous.fingerprint[k])}, now ${stableStringify(opts.fingerprint[k])}`)
        .join("; ");
      throw new ConfigError(`--resume refused: the run in ${dir} was made with different settings (${detail})`);
    }
  }
  mkdirSync(dir, { recursive: true });
  const completed = new Map<string, ChainRecord>();
  const responses = new Map<string, CachedResponse>();
  let tornLines = 0;
  if (opts.resume) {
    const chainsPath = join(dir, RUN_FILES.chains);
    if (existsSync(chainsPath)) {
      for await (const { value } of readJsonl(chainsPath, ChainRecordSchema, {
        onIssue: (issue) => {
          if (issue.torn) tornLines++;
          else throw new ConfigError(issue.message, { location: { file: chainsPath, line: issue.line } });
        },
      })) {
        completed.set(value.id, value);
      }
    }
    const respPath = join(dir, RUN_FILES.responses);
    if (existsSync(respPath)) {
      for await (const { value } of readJsonl(respPath, CachedResponseSchema, {
        onIssue: (issue) => {
          if (issue.torn) tornLines++;
        },
      })) {
        responses.set(value.key, value);
      }
    }
  }
  return { completed, responses, previous, tornLines };
}

export async function openAppenders(dir: string): Promise<{ chains: JsonlAppender; responses: JsonlAppender }> {
  return {
    chains: await JsonlAppender.open(join(dir, RUN_FILES.chains)),
    responses: await JsonlAppender.open(join(dir, RUN_FILES.responses)),
  };
}
