import { join } from "node:path";
import { readLedgerTotals } from "../budget/ledger.ts";
import { readJsonObjectIfPresent } from "../store/json-file.ts";

/**
 * What a run cost, read defensively from the run directory: ledger.jsonl first (the complete money
 * record: every charge, rejected outputs and paid embeddings included, plus unsettled reservations
 * at their worst case, as the ledger itself counts them on resume), else run.json totals (field
 * names tried in order: totals.usd, totals.spent_usd, totals.spentUsd, spent_usd, usd), else the
 * sum of the chains' usage.usd (known only to the caller that streams them).
 */
export interface RunCost {
  usd: number | null;
  source: "run.json" | "ledger.jsonl" | "chains.jsonl" | "none";
  run_json_usd: number | null;
  ledger_usd: number | null;
  chains_usd: number | null;
  /** Spend per ledger stage (generate, validate, …), from ledger.jsonl; null without a ledger. */
  by_stage: Record<string, { usd: number; calls: number }> | null;
}

export function runJsonUsd(runDir: string): number | null {
  const d = readJsonObjectIfPresent(join(runDir, "run.json"));
  if (!d) return null;
  const totals = d.totals && typeof d.totals === "object" ? (d.totals as Record<string, unknown>) : {};
  for (const v of [totals.usd, totals.spent_usd, totals.spentUsd, d.spent_usd, d.usd]) {
    if (typeof v === "number" && Number.isFinite(v) && v >= 0) return v;
  }
  return null;
}

export async function ledgerUsd(runDir: string): Promise<number | null> {
  const t = await readLedgerTotals(join(runDir, "ledger.jsonl"));
  return t ? t.spentUsd : null;
}

export async function runCost(runDir: string, chainsUsd: number | null): Promise<RunCost> {
  const run = runJsonUsd(runDir);
  const totals = await readLedgerTotals(join(runDir, "ledger.jsonl"));
  const ledger = totals ? totals.spentUsd : null;
  const by_stage = totals ? Object.fromEntries(Object.entries(totals.byStage).map(([k, v]) => [k, { usd: v.usd, calls: v.calls }])) : null;
  const usd = ledger ?? run ?? chainsUsd;
  const source = ledger !== null ? "ledger.jsonl" : run !== null ? "run.json" : chainsUsd !== null ? "chains.jsonl" : "none";
  return { usd, source, run_json_usd: run, ledger_usd: ledger, chains_usd: chainsUsd, by_stage };
}
