import type { ChainMetrics } from "./metrics.ts";

/**
 * Gate policies.
 * - strict: any ordering violation (inversion, cycle) or hard defect rejects the chain.
 * - repair: the chain is cut before its first violating step; kept when at least `minSteps` steps
 *   remain ("repaired"), else rejected. Chain-level defects (a defect of the anchor, a duplicate
 *   chain, too few steps) cannot be cut away and reject.
 * - lenient: nothing is rejected; every finding is recorded in `reasons`.
 * Soft flags (length outliers, jumps) are recorded under every policy and never reject.
 */
export type Policy = "strict" | "repair" | "lenient";
export const POLICIES: readonly Policy[] = ["strict", "repair", "lenient"];

export type Status = "accepted" | "repaired" | "rejected";

/** Reason kinds that reject under strict and cut under repair. */
export const HARD_KINDS = [
  "inversion",
  "near-duplicate-steps",
  "refusal",
  "boilerplate",
  "instruction-echo",
  "markup",
  "append",
  "unrelated",
  "empty",
  "leak",
] as const;
/**
 * Reason kinds that are only flagged by default. A cycle (a step closer to an earlier step than
 * to its neighbours) is soft: good star-shaped chains have them, and a real return toward the
 * anchor is an inversion. `--hard cycle` makes it cut again.
 */
export const SOFT_KINDS = ["cycle", "length-outlier", "jump"] as const;
/** Reason kinds about the whole chain. */
export const CHAIN_KINDS = ["duplicate-chain", "too-short"] as const;

export interface Finding {
  kind: string;
  /** Step number the finding belongs to (0 = anchor); undefined for chain-level findings. */
  step: number | undefined;
  /** The reason string, e.g. "inversion@3", "near-duplicate-steps@4~2", "duplicate-chain~abc". */
  reason: string;
  hard: boolean;
}

export interface Decision {
  status: Status;
  /** Steps kept (after repair), ≤ the chain's step count; 0 when rejected. */
  stepsKept: number;
  /** First step cut away by repair, when repaired. */
  truncatedAt: number | undefined;
  reasons: string[];
}

/** Findings of one chain's metrics plus the corpus checks (holdout leaks), in step order. */
export function findingsOf(metrics: ChainMetrics, leaks: readonly number[] = []): Finding[] {
  const f: Finding[] = [];
  const hard = (kind: string, step: number, suffix = "") => f.push({ kind, step, reason: `${kind}@${step}${suffix}`, hard: true });
  const soft = (kind: string, step: number) => f.push({ kind, step, reason: `${kind}@${step}`, hard: false });
  for (const s of metrics.empty) hard("empty", s);
  for (const s of leaks) hard("leak", s);
  for (const s of metrics.refusals) hard("refusal", s);
  for (const s of metrics.boilerplate) hard("boilerplate", s);
  for (const s of metrics.instruction_echoes) hard("instruction-echo", s);
  for (const s of metrics.markup) hard("markup", s);
  for (const s of metrics.unrelated) hard("unrelated", s);
  for (const s of metrics.appends) hard("append", s);
  for (const s of metrics.inversions) hard("inversion", s);
  for (const [s, e] of metrics.near_duplicates) hard("near-duplicate-steps", s, `~${e}`);
  for (const [s, e] of metrics.cycles) f.push({ kind: "cycle", step: s, reason: `cycle@${s}~${e}`, hard: false });
  for (const s of metrics.length_outliers) soft("length-outlier", s);
  for (const s of metrics.jumps) soft("jump", s);
  return f.sort((a, b) => (a.step ?? -1) - (b.step ?? -1));
}

export function reasonKind(reason: string): string {
  const m = /^[a-z-]+/.exec(reason);
  return m ? m[0] : reason;
}

/**
 * Applies a policy to a chain of `steps` steps with the given findings (a chain with fewer than
 * `minSteps` steps gets the chain-level finding "too-short"). Repair adds "truncated@k" (steps k..n
 * cut away) or, when too little would remain, "too-short-after-repair@k".
 */
export function decide(steps: number, findings: readonly Finding[], policy: Policy, minSteps: number): Decision {
  const all = [...findings];
  if (steps < minSteps) all.unshift({ kind: "too-short", step: undefined, reason: "too-short", hard: true });
  const reasons = all.map((x) => x.reason);
  const hardFindings = all.filter((x) => x.hard);
  if (policy === "lenient") return { status: "accepted", stepsKept: steps, truncatedAt: undefined, reasons };
  if (hardFindings.length === 0) return { status: "accepted", stepsKept: steps, truncatedAt: undefined, reasons };
  if (policy === "strict") return { status: "rejected", stepsKept: 0, truncatedAt: undefined, reasons };
  // repair
  const chainLevel = hardFindings.some((x) => x.step === undefined || x.step === 0);
  if (chainLevel) return { status: "rejected", stepsKept: 0, truncatedAt: undefined, reasons };
  const first = Math.min(...hardFindings.map((x) => x.step!));
  const kept = first - 1;
  if (kept < minSteps) return { status: "rejected", stepsKept: 0, truncatedAt: undefined, reasons: [...reasons, `too-short-after-repair@${first}`] };
  return { status: "repaired", stepsKept: kept, truncatedAt: first, reasons: [...reasons, `truncated@${first}`] };
}
