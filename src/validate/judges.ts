import { existsSync, readFileSync } from "node:fs";
import { open, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { BudgetLedger } from "../budget/ledger.ts";
import { BudgetExceededError, ConfigError } from "../errors.ts";
import type { LlmListwiseReranker } from "../rerank/listwise.ts";
import { readJsonl } from "../store/jsonl.ts";
import { z } from "zod";
import { kendallTauB } from "./stats.ts";
import type { GateValidation, ValidationSummary } from "./validator.ts";

interface JudgedRecord {
  id: string;
  anchor: string;
  steps: string[];
  validation: GateValidation & { judges?: ChainJudgement };
  [key: string]: unknown;
}

/**
 * The judge cascade (issue 11): the embedding gate trusts one embedder — the family that is later
 * trained — so chains can be judged again by a cross-encoder and, where it is unsure, by an LLM.
 *
 * A judge orders a chain's steps by relevance to the anchor; its verdict is the Kendall tau-b of
 * that order against chain order (1 = every step further from the anchor than the one before) and
 * `in_order = kendall >= minKendall`. Modes:
 *   embedder       only the gate's own similarities (no extra pass; this file is not used)
 *   cross-encoder  the cross-encoder judges every kept chain
 *   llm            the LLM (RankGPT-style listwise) judges every kept chain, within its own cap
 *   cascade        the cross-encoder judges every kept chain; a chain goes to the LLM when the
 *                  embedder and the cross-encoder disagree, or when the cross-encoder's Kendall lies
 *                  within `margin` of `minKendall`; the LLM is used while its cap allows
 * The final verdict is the last judge's that ran. A kept chain whose final verdict is "out of
 * order" gets the reason `judge-out-of-order~<judge>` and is rejected (flagged only under lenient).
 * The LLM spends through the run's ledger under the stage "judge", capped by --judge-max-usd on that stage only; when
 * the cap is reached no further LLM call is made and the cheaper verdicts stand.
 */
export type JudgeMode = "embedder" | "cross-encoder" | "llm" | "cascade";
export const JUDGE_MODES: readonly JudgeMode[] = ["embedder", "cross-encoder", "llm", "cascade"];
export type JudgeName = "embedder" | "cross-encoder" | "llm";

export interface JudgeVerdict {
  id: string;
  kendall: number | null;
  in_order: boolean;
  /** Step numbers (1-based), most relevant to the anchor first. */
  order?: number[];
  scores?: number[];
  usd?: number;
}

export interface ChainJudgement {
  mode: JudgeMode;
  verdicts: Partial<Record<JudgeName, JudgeVerdict>>;
  /** Why the chain went to the LLM in cascade mode. */
  escalated?: "disagree" | "small-margin";
  /** The LLM was wanted but not asked because its cap was reached. */
  llm_skipped?: "budget";
  final: { judge: JudgeName; in_order: boolean };
}

export interface JudgeThresholds {
  /** A judge calls a chain in order when its Kendall tau-b is at least this. */
  minKendall: number;
  /** Cascade: escalate when |cross-encoder Kendall − minKendall| < margin. */
  margin: number;
}

export const DEFAULT_JUDGE_THRESHOLDS: Readonly<JudgeThresholds> = Object.freeze({ minKendall: 0.5, margin: 0.2 });

export interface JudgeSummary {
  mode: JudgeMode;
  thresholds: JudgeThresholds;
  judges: Partial<Record<JudgeName, string>>;
  counts: { judged: number; escalated: number; llm_judged: number; llm_skipped_budget: number; rejected_by_judge: number };
  llm_usd: number;
  llm_cap_usd: number | null;
  /** Fraction of chains on which two judges give the same in-order verdict (rows/cols = `judges` order). */
  agreement: { judges: JudgeName[]; matrix: (number | null)[][]; n: number[][] };
  per_judge: Partial<Record<JudgeName, { chains: number; in_order_rate: number | null; mean_kendall: number | null }>>;
  conventions: string;
}

/** Kendall tau-b of a judge's scores (higher = closer to the anchor) against chain order. */
export function chainOrderKendall(scores: readonly number[]): number | null {
  return kendallTauB(scores, scores.map((_, k) => -k));
}

/** Same, from an order (indices most relevant first): the score of step i is −(its rank). */
export function orderKendall(order: readonly number[]): number | null {
  const rank = new Array<number>(order.length);
  order.forEach((step, r) => (rank[step] = -r));
  return chainOrderKendall(rank);
}

function verdict(id: string, kendall: number | null, th: JudgeThresholds, extra: Partial<JudgeVerdict> = {}): JudgeVerdict {
  // fewer than 2 steps (or all ties): no order to violate
  return { id, kendall: kendall === null ? null : round(kendall), in_order: kendall === null || kendall >= th.minKendall, ...extra };
}

/** What the cascade needs of a cross-encoder (src/rerank/cross-encoder.ts implements it). */
export interface PairScorer {
  readonly id: string;
  scorePairs(pairs: ReadonlyArray<readonly [string, string]>): Promise<number[]>;
}

export interface JudgeRunOptions {
  runDir: string;
  mode: Exclude<JudgeMode, "embedder">;
  crossEncoder?: PairScorer | undefined;
  llm?: LlmListwiseReranker | undefined;
  /** The LLM judge's own ledger (its cap = --judge-max-usd). */
  llmLedger?: BudgetLedger | undefined;
  thresholds?: Partial<JudgeThresholds>;
  /** Records judged per cross-encoder batch. */
  batchChains?: number;
  onProgress?: (done: number, total: number) => void;
}

const RecordSchema = z.object({ id: z.string(), anchor: z.string(), steps: z.array(z.string()) }).passthrough();

/**
 * Judges the kept chains of a validated run: rewrites validated.jsonl and accepted.jsonl with
 * `validation.judges` on every kept record (and status changes), and adds `judges` to
 * validation.json. Files are replaced atomically (temporary file + rename).
 */
export async function judgeRun(o: JudgeRunOptions): Promise<JudgeSummary> {
  const th: JudgeThresholds = { ...DEFAULT_JUDGE_THRESHOLDS, ...o.thresholds };
  if (!(th.minKendall >= -1 && th.minKendall <= 1)) throw new ConfigError(`--judge-min-kendall must be in [-1, 1], got ${th.minKendall}`);
  if (!(th.margin >= 0)) throw new ConfigError(`--judge-margin must be >= 0, got ${th.margin}`);
  if ((o.mode === "cross-encoder" || o.mode === "cascade") && !o.crossEncoder) throw new ConfigError(`--judge ${o.mode} needs --cross-encoder DIR`);
  if ((o.mode === "llm" || o.mode === "cascade") && !o.llm) throw new ConfigError(`--judge ${o.mode} needs an LLM (--judge-provider/--judge-model)`);
  const paths = { validated: join(o.runDir, "validated.jsonl"), accepted: join(o.runDir, "accepted.jsonl"), summary: join(o.runDir, "validation.json") };
  if (!existsSync(paths.validated) || !existsSync(paths.summary)) throw new ConfigError("run `rankchain validate` first: no validated.jsonl / validation.json", { location: { file: o.runDir } });
  const summary = JSON.parse(readFileSync(paths.summary, "utf8")) as ValidationSummary & { judges?: JudgeSummary };
  const records: JudgedRecord[] = [];
  for await (const { value } of readJsonl(paths.validated, RecordSchema, {
    onIssue: (issue) => {
      throw new ConfigError(issue.message, { location: { file: paths.validated, line: issue.line } });
    },
  })) {
    if (!value.validation) throw new ConfigError("record has no validation field (run `rankchain validate` first)", { location: { file: paths.validated, field: "validation" } });
    records.push(value as unknown as JudgedRecord);
  }

  const judges: JudgeName[] = o.mode === "cross-encoder" ? ["embedder", "cross-encoder"] : o.mode === "llm" ? ["embedder", "llm"] : ["embedder", "cross-encoder", "llm"];
  const counts = { judged: 0, escalated: 0, llm_judged: 0, llm_skipped_budget: 0, rejected_by_judge: 0 };
  let llmUsd = 0;
  let llmClosed = false;
  const batch = o.batchChains ?? 64;
  const kept = records.filter((r) => r.validation.status !== "rejected");

  const askLlm = async (r: JudgedRecord): Promise<JudgeVerdict | "budget"> => {
    if (llmClosed) return "budget";
    try {
      const res = await o.llm!.rerank(r.anchor, r.steps, { chainId: r.id });
      llmUsd += res.usage.usd;
      return verdict(o.llm!.id, orderKendall(res.order), th, { order: res.order.map((i) => i + 1), usd: round(res.usage.usd, 9) });
    } catch (e) {
      if (e instanceof BudgetExceededError) {
        llmClosed = true;
        return "budget";
      }
      throw e;
    }
  };

  for (let b = 0; b < kept.length; b += batch) {
    const group = kept.slice(b, b + batch);
    let ceScores: number[][] | undefined;
    if (o.crossEncoder && o.mode !== "llm") {
      const flat = await o.crossEncoder.scorePairs(group.flatMap((r) => r.steps.map((s) => [r.anchor, s] as const)));
      let at = 0;
      ceScores = group.map((r) => flat.slice(at, (at += r.steps.length)));
    }
    for (const [gi, r] of group.entries()) {
      const v = r.validation;
      const verdicts: ChainJudgement["verdicts"] = { embedder: verdict(v.embedder, chainOrderKendall(v.sims_to_anchor), th) };
      let final: ChainJudgement["final"] = { judge: "embedder", in_order: verdicts.embedder!.in_order };
      let escalated: ChainJudgement["escalated"];
      let skipped: ChainJudgement["llm_skipped"];
      if (ceScores) {
        const scores = ceScores[gi]!;
        verdicts["cross-encoder"] = verdict(o.crossEncoder!.id, chainOrderKendall(scores), th, { scores: scores.map((s) => round(s)) });
        final = { judge: "cross-encoder", in_order: verdicts["cross-encoder"].in_order };
      }
      let wantLlm = o.mode === "llm";
      if (o.mode === "cascade") {
        const ce = verdicts["cross-encoder"]!;
        if (ce.in_order !== verdicts.embedder!.in_order) escalated = "disagree";
        else if (ce.kendall !== null && Math.abs(ce.kendall - th.minKendall) < th.margin) escalated = "small-margin";
        wantLlm = escalated !== undefined && r.steps.length >= 2;
        if (escalated) counts.escalated++;
      }
      if (wantLlm && r.steps.length >= 2) {
        const llm = await askLlm(r);
        if (llm === "budget") {
          skipped = "budget";
          counts.llm_skipped_budget++;
        } else {
          verdicts.llm = llm;
          counts.llm_judged++;
          final = { judge: "llm", in_order: llm.in_order };
        }
      }
      counts.judged++;
      const judgement: ChainJudgement = { mode: o.mode, verdicts, ...(escalated ? { escalated } : {}), ...(skipped ? { llm_skipped: skipped } : {}), final };
      const nv: GateValidation & { judges: ChainJudgement } = { ...v, judges: judgement };
      if (!final.in_order) {
        nv.reasons = [...v.reasons, `judge-out-of-order~${final.judge}`];
        if (v.policy !== "lenient") {
          nv.status = "rejected";
          nv.steps_kept = 0;
          counts.rejected_by_judge++;
          summary.counts[v.status]--;
          summary.counts.rejected++;
        }
        const e = (summary.reasons["judge-out-of-order"] ??= { chains: 0, occurrences: 0 });
        e.chains++;
        e.occurrences++;
      }
      r.validation = nv;
    }
    o.onProgress?.(Math.min(b + batch, kept.length), kept.length);
  }

  // agreement matrix over the chains each pair of judges both judged
  const matrix: (number | null)[][] = judges.map(() => judges.map(() => null));
  const n: number[][] = judges.map(() => judges.map(() => 0));
  const perJudge: JudgeSummary["per_judge"] = {};
  const judged = records.map((r) => (r.validation as GateValidation & { judges?: ChainJudgement }).judges).filter((j): j is ChainJudgement => j !== undefined);
  judges.forEach((a, i) =>
    judges.forEach((b, k) => {
      let agree = 0;
      let both = 0;
      for (const j of judged) {
        const va = j.verdicts[a];
        const vb = j.verdicts[b];
        if (!va || !vb) continue;
        both++;
        if (va.in_order === vb.in_order) agree++;
      }
      n[i]![k] = both;
      matrix[i]![k] = both ? round(agree / both) : null;
    }),
  );
  for (const a of judges) {
    const vs = judged.map((j) => j.verdicts[a]).filter((v): v is JudgeVerdict => v !== undefined);
    const ks = vs.map((v) => v.kendall).filter((k): k is number => k !== null);
    perJudge[a] = {
      chains: vs.length,
      in_order_rate: vs.length ? round(vs.filter((v) => v.in_order).length / vs.length) : null,
      mean_kendall: ks.length ? round(ks.reduce((s, x) => s + x, 0) / ks.length) : null,
    };
  }
  const ids: JudgeSummary["judges"] = { embedder: summary.embedder?.id ?? "embedder" };
  if (o.crossEncoder) ids["cross-encoder"] = o.crossEncoder.id;
  if (o.llm) ids.llm = o.llm.id;
  const result: JudgeSummary = {
    mode: o.mode,
    thresholds: th,
    judges: ids,
    counts,
    llm_usd: round(llmUsd, 9),
    llm_cap_usd: o.llmLedger?.capUsd ?? null,
    agreement: { judges, matrix, n },
    per_judge: perJudge,
    conventions:
      "a judge orders a chain's steps by relevance to the anchor; kendall = Kendall tau-b of that order vs chain order; in_order = kendall >= min_kendall; agreement[a][b] = share of chains judged by both on which their in_order verdicts agree",
  };

  const tmp = (p: string) => `${p}.tmp-${process.pid}`;
  const vOut = await open(tmp(paths.validated), "w");
  const aOut = await open(tmp(paths.accepted), "w");
  try {
    for (const r of records) {
      const line = JSON.stringify(r) + "\n";
      await vOut.write(line);
      if (r.validation.status !== "rejected") await aOut.write(line);
    }
  } catch (e) {
    await vOut.close().catch(() => undefined);
    await aOut.close().catch(() => undefined);
    await rm(tmp(paths.validated), { force: true });
    await rm(tmp(paths.accepted), { force: true });
    throw e;
  }
  await vOut.close();
  await aOut.close();
  await rename(tmp(paths.validated), paths.validated);
  await rename(tmp(paths.accepted), paths.accepted);
  await writeFile(paths.summary, JSON.stringify({ ...summary, judges: result }, null, 2) + "\n");
  return result;
}

function round(x: number, digits = 6): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}
