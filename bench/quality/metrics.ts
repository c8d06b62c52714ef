/**
 * The chain-quality metrics of the issue-14 table, shared by bench/quality/run.ts (a sweep that
 * generates) and bench/quality/corpus.ts (an existing run directory): each chain is validated
 * alone (no duplicate-chain index) with the real embedder under every policy, --min-steps 3.
 */
import type { Embedder } from "../../src/embed/types.ts";
import type { ChainRecord } from "../../src/store/chain-record.ts";
import { words } from "../../src/util/text.ts";
import { ChainValidator, type Policy } from "../../src/validate/index.ts";

export const POLICIES: Policy[] = ["strict", "repair", "lenient"];

export interface ChainQuality {
  byPolicy: Record<string, { kept: number; keptWhole: number }>;
  /** Kept chains / all chains, per policy. */
  acceptance: Record<string, number>;
  /** Kept with every requested step / all chains, per policy. */
  kept_whole: Record<string, number>;
  /** Chains kept under repair with >= 5 steps / all chains. */
  repair_kept_ge5: number;
  mean_kept_steps_repair: number;
  /** Median over chains kept under repair of 1 − cosine(last kept step, anchor). */
  median: number | null;
  spearman_mean: number | null;
  /** Distinct bigrams / all bigrams over the steps kept under repair. */
  distinct2: number | null;
}

export async function chainQuality(chains: ChainRecord[], embedder: Embedder, steps: number): Promise<ChainQuality> {
  const vectors = await Promise.all(chains.map((c) => (c.steps.length ? embedder.embed([c.anchor, ...c.steps]) : Promise.resolve([]))));
  const byPolicy: Record<string, { kept: number; keptWhole: number }> = {};
  const repairKept: { steps: string[]; sims: number[]; spearman: number | null }[] = [];
  for (const policy of POLICIES) {
    let kept = 0;
    let whole = 0;
    chains.forEach((c, i) => {
      if (c.steps.length === 0) return;
      const v = new ChainValidator({ embedderId: embedder.info.id, policy, minSteps: 3 }).validate(c, vectors[i]!);
      if (v.validation.status === "rejected") return;
      kept++;
      if (v.validation.steps_kept === steps) whole++;
      if (policy === "repair") repairKept.push({ steps: v.steps as string[], sims: v.validation.sims_to_anchor, spearman: v.validation.spearman });
    });
    byPolicy[policy] = { kept, keptWhole: whole };
  }
  const spans = repairKept.map((k) => 1 - k.sims[k.sims.length - 1]!).sort((a, b) => a - b);
  const median = spans.length ? spans[Math.floor((spans.length - 1) / 2)]! : null;
  const rhos = repairKept.map((k) => k.spearman).filter((x): x is number => x !== null);
  const bigrams = new Set<string>();
  let bigramCount = 0;
  for (const k of repairKept)
    for (const st of k.steps) {
      const w = words(st);
      for (let j = 1; j < w.length; j++) {
        bigrams.add(`${w[j - 1]} ${w[j]}`);
        bigramCount++;
      }
    }
  const n = chains.length || 1;
  return {
    byPolicy,
    acceptance: Object.fromEntries(POLICIES.map((p) => [p, byPolicy[p]!.kept / n])),
    kept_whole: Object.fromEntries(POLICIES.map((p) => [p, byPolicy[p]!.keptWhole / n])),
    repair_kept_ge5: repairKept.filter((k) => k.steps.length >= 5).length / n,
    mean_kept_steps_repair: repairKept.length ? repairKept.reduce((a, k) => a + k.steps.length, 0) / repairKept.length : 0,
    median,
    spearman_mean: rhos.length ? rhos.reduce((a, b) => a + b, 0) / rhos.length : null,
    distinct2: bigramCount ? bigrams.size / bigramCount : null,
  };
}
