import { existsSync } from "node:fs";
import { join } from "node:path";
import { readJsonObjectIfPresent } from "../store/json-file.ts";
import { exitCodeFor } from "./exit-codes.ts";

/**
 * The one-line JSON summary a run prints on stdout at every exit — done, budget reached (3),
 * interrupted, failed (1) or refused input (2): status, counts, spend and the reason. Read from
 * run.json when the run got that far, so it says exactly what the run directory says.
 */
export interface RunSummaryLine {
  status: string;
  exit_code: number;
  out: string;
  chains: number | null;
  seeds: number | null;
  truncated: number | null;
  /** chains with 0 steps / fewer than --min-steps / at least --min-steps */
  empty: number | null;
  short: number | null;
  usable: number | null;
  usd: number | null;
  by_stage: Record<string, unknown> | null;
  calls: number | null;
  input_tokens: number | null;
  output_tokens: number | null;
  cap_usd: number | null;
  reason: string | null;
}

export function runSummaryLine(out: string, opts: { error?: unknown; capUsd?: number | undefined }): RunSummaryLine {
  const run = existsSync(join(out, "run.json")) ? (readJsonObjectIfPresent(join(out, "run.json")) ?? undefined) : undefined;
  const totals = (run?.totals ?? {}) as Record<string, unknown>;
  const num = (v: unknown) => (typeof v === "number" && Number.isFinite(v) ? v : null);
  const err = opts.error;
  const exit = err === undefined ? 0 : exitCodeFor(err);
  const fallbackStatus = exit === 0 ? "completed" : exit === 2 ? "bad_input" : exit === 3 ? "budget_reached" : exit === 4 ? "provider_unreachable" : exit === 130 ? "interrupted" : "failed";
  // run.json says "running" only if the process died before its last write; prefer the exit's status then
  const recorded = exit !== 2 && typeof run?.status === "string" && run.status !== "running" ? run.status : undefined;
  const message = err instanceof Error ? err.message : err !== undefined ? String(err) : typeof run?.message === "string" ? run.message : null;
  return {
    status: recorded ?? fallbackStatus,
    exit_code: exit,
    out,
    chains: num(totals.chains_done),
    seeds: num(totals.seeds),
    truncated: num(totals.chains_truncated),
    empty: num(totals.chains_empty),
    short: num(totals.chains_short),
    usable: num(totals.chains_usable),
    usd: num(totals.usd),
    by_stage: totals.by_stage && typeof totals.by_stage === "object" ? (totals.by_stage as Record<string, unknown>) : null,
    calls: num(totals.calls),
    input_tokens: num(totals.input_tokens),
    output_tokens: num(totals.output_tokens),
    cap_usd: opts.capUsd ?? null,
    reason: message,
  };
}

export function printRunSummary(out: string, opts: { error?: unknown; capUsd?: number | undefined }): void {
  process.stdout.write(JSON.stringify(runSummaryLine(out, opts)) + "\n");
}
