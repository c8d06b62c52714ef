import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { Embedder } from "../../src/embed/types.ts";
import { ChainValidator, type Policy } from "../../src/validate/index.ts";
import { record, REPO_ROOT } from "./helpers.ts";

/**
 * The labelled set that calibrates the gate (issue 14): the hand-written good chains of
 * test/fixtures/gate/good-chains.json, and copies of them with one planted defect each. Every
 * defect chain names the steps that are defective (1-based); a policy "keeps a defect" when it
 * keeps the chain with any of those steps still in it. Used by test/validate/gate-calibration.test.ts
 * and bench/validate/gate-calibration.ts.
 */
export interface LabelledChain {
  id: string;
  label: "good" | "defect";
  /** "walk" / "star" for good chains; the defect kind for defect chains. */
  kind: string;
  anchor: string;
  steps: string[];
  /** 1-based steps that carry the defect (empty for good chains). */
  defectSteps: number[];
}

interface GoodChain {
  id: string;
  shape: "walk" | "star";
  anchor: string;
  steps: string[];
}

export function goodChains(): GoodChain[] {
  const raw = JSON.parse(readFileSync(join(REPO_ROOT, "test", "fixtures", "gate", "good-chains.json"), "utf8")) as { chains: GoodChain[] };
  return raw.chains;
}

const UNRELATED = [
  "The quarterly report shows a sharp rise in steel exports.",
  "Quantum computers use qubits instead of classical bits.",
  "Please remember to renew your passport before it expires.",
  "The recipe calls for two cups of flour and a pinch of salt.",
];
const REFUSALS = [
  "I'm sorry, but I can't help with rewriting that sentence.",
  "As an AI language model, I cannot continue this chain.",
  "I apologize, but I am unable to provide a rewrite of this text.",
];
const ECHOES = [
  "To add a new sentence to the original sentence, rephrase it to use the same concept but with new words.",
  "Rewrite the sentence below using different words but the same meaning.",
  "Write only the new sentence that moves one step further from the anchor.",
];
const CLAUSES = [", just before sunset", " and then stops to rest for a while", " while talking loudly on the phone", " as it slowly starts to rain outside", " before finally heading back home"];

/** Planted defects, in a fixed order; each takes a good chain and returns steps + defective steps. */
const PLANTERS: { kind: string; plant: (c: GoodChain, k: number) => { steps: string[]; defectSteps: number[] } }[] = [
  { kind: "copy-previous", plant: (c) => ({ steps: [c.steps[0]!, c.steps[1]!, c.steps[1]!, ...c.steps.slice(3)], defectSteps: [3] }) },
  {
    kind: "copy-anchor",
    plant: (c) => ({ steps: [c.anchor.replace(/\.$/, "").toLowerCase(), ...c.steps.slice(1)], defectSteps: [1] }),
  },
  {
    kind: "copy-near",
    plant: (c) => ({ steps: [...c.steps.slice(0, 3), `${c.steps[2]!.replace(/\.$/, "")} !`, ...c.steps.slice(4)], defectSteps: [4] }),
  },
  { kind: "reversed", plant: (c) => ({ steps: [...c.steps].reverse(), defectSteps: [2, 3, 4, 5, 6] }) },
  { kind: "return-to-anchor", plant: (c) => ({ steps: [...c.steps.slice(1), c.steps[0]!], defectSteps: [6] }) },
  { kind: "refusal", plant: (c, k) => ({ steps: c.steps.map((s, i) => (i === 3 ? REFUSALS[k % REFUSALS.length]! : s)), defectSteps: [4] }) },
  {
    kind: "here-is-boilerplate",
    plant: (c, k) => {
      const wrap = [(s: string) => `Here is the rewritten sentence: ${s}`, (s: string) => `Sure! ${s}`, (s: string) => `Rewritten sentence: ${s}`][k % 3]!;
      return { steps: c.steps.map((s, i) => (i === 2 ? wrap(s) : s)), defectSteps: [3] };
    },
  },
  { kind: "instruction-echo", plant: (c, k) => ({ steps: [ECHOES[k % ECHOES.length]!, ...c.steps.slice(1)], defectSteps: [1] }) },
  {
    kind: "markup-debris",
    plant: (c, k) => {
      const wrap = [(s: string) => `&lt;nobody&gt;${s}`, (s: string) => `< sentence>${s}</sentence>`, (s: string) => `${s}<|im_end|>`][k % 3]!;
      return { steps: c.steps.map((s, i) => (i === 1 ? wrap(s) : s)), defectSteps: [2] };
    },
  },
  { kind: "unrelated-first-step", plant: (c, k) => ({ steps: [UNRELATED[k % UNRELATED.length]!, ...c.steps.slice(1)], defectSteps: [1] }) },
  { kind: "topic-jump", plant: (c, k) => ({ steps: c.steps.map((s, i) => (i === 3 ? UNRELATED[(k + 1) % UNRELATED.length]! : s)), defectSteps: [4] }) },
  {
    kind: "append-creep",
    plant: (c) => {
      const base = c.steps[0]!.replace(/\.$/, "");
      return { steps: [c.steps[0]!, ...CLAUSES.map((_, i) => `${base}${CLAUSES.slice(0, i + 1).join("")}.`)], defectSteps: [2, 3, 4, 5, 6] };
    },
  },
];

/** 30 good chains + 36 planted defects (each of the 12 kinds planted into 3 different good chains). */
export function labelledChains(): LabelledChain[] {
  const good = goodChains();
  const out: LabelledChain[] = good.map((c) => ({ id: c.id, label: "good", kind: c.shape, anchor: c.anchor, steps: c.steps, defectSteps: [] }));
  PLANTERS.forEach((p, pi) => {
    for (let k = 0; k < 3; k++) {
      const c = good[(pi * 3 + k * 7) % good.length]!;
      const planted = p.plant(c, k);
      out.push({ id: `${p.kind}-${k + 1}-${c.id}`, label: "defect", kind: p.kind, anchor: c.anchor, steps: planted.steps, defectSteps: planted.defectSteps });
    }
  });
  return out;
}

export interface GateOutcome {
  chain: LabelledChain;
  status: "accepted" | "repaired" | "rejected";
  stepsKept: number;
  reasons: string[];
  /** The embedder orders the good chain strictly: every step less similar to the anchor than the one before. */
  monotone: boolean;
  /** For good chains: kept with all steps. */
  keptWhole: boolean;
  /** For defect chains: kept with a defective step still in it. */
  defectKept: boolean;
}

export interface PolicyScore {
  policy: Policy;
  good: number;
  goodMonotone: number;
  /** Good chains kept whole / good chains. */
  recall: number;
  /** Monotone good chains kept whole / monotone good chains (target: 1). */
  recallMonotone: number;
  defects: number;
  /** Defect chains kept with the defect in them (target: 0). */
  defectsKept: number;
  /** Clean kept chains (good, or defect cut away) / all kept chains. */
  precision: number;
  outcomes: GateOutcome[];
}

/** Embeds every chain once, then applies the gate under each policy (file order; duplicate-chain check off). */
export async function scoreGate(embedder: Embedder, policies: readonly Policy[], options: { minSteps?: number; hardKinds?: string[] } = {}): Promise<PolicyScore[]> {
  const chains = labelledChains();
  const vectors = await Promise.all(chains.map((c) => embedder.embed([c.anchor, ...c.steps])));
  return policies.map((policy) => {
    // every chain gets a fresh validator: planted copies of one good chain must not be judged as duplicate chains
    const outcomes = chains.map((c, i): GateOutcome => {
      const v = new ChainValidator({ embedderId: embedder.info.id, policy, minSteps: options.minSteps ?? 3, hardKinds: options.hardKinds ?? [] });
      const out = v.validate(record(c.id, c.anchor, c.steps), vectors[i]!).validation;
      const sims = vectors[i]!.slice(1).map((x) => cosine(vectors[i]![0]!, x));
      const monotone = sims.every((s, k) => k === 0 || s < sims[k - 1]!);
      const kept = out.status === "rejected" ? 0 : out.steps_kept;
      return {
        chain: c,
        status: out.status,
        stepsKept: kept,
        reasons: out.reasons,
        monotone,
        keptWhole: c.label === "good" && out.status !== "rejected" && kept === c.steps.length,
        defectKept: c.label === "defect" && kept > 0 && c.defectSteps.some((s) => s <= kept),
      };
    });
    const good = outcomes.filter((o) => o.chain.label === "good");
    const mono = good.filter((o) => o.monotone);
    const defects = outcomes.filter((o) => o.chain.label === "defect");
    const kept = outcomes.filter((o) => o.status !== "rejected");
    const clean = kept.filter((o) => !o.defectKept);
    return {
      policy,
      good: good.length,
      goodMonotone: mono.length,
      recall: good.filter((o) => o.keptWhole).length / good.length,
      recallMonotone: mono.length ? mono.filter((o) => o.keptWhole).length / mono.length : 1,
      defects: defects.length,
      defectsKept: defects.filter((o) => o.defectKept).length,
      precision: kept.length ? clean.length / kept.length : 1,
      outcomes,
    };
  });
}

function cosine(a: Float32Array, b: Float32Array): number {
  let d = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    d += a[i]! * b[i]!;
    na += a[i]! * a[i]!;
    nb += b[i]! * b[i]!;
  }
  return d / Math.sqrt(na * nb);
}
