import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { Embedder } from "../../src/embed/types.ts";
import { ChainValidator, type Policy } from "../../src/validate/index.ts";
import { DEFAULT_GATE_THRESHOLDS, type GateThresholds } from "../../src/validate/validator.ts";
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
  /** Index in good-chains.json of the good chain this one is (or was planted into). */
  source: number;
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
/** Script-style speaker labels SmolLM2 put in front of steps ("MADALINA: She is a game of data …"). */
const SPEAKERS = ["MADALINA", "JOHN", "DR. SMITH"];
/**
 * Fragments of the cfg-rewrite v3 instructions that SmolLM2 appended to steps: each uses at most
 * one instruction term, so only the prompt-phrase rule catches them.
 */
const FRAGMENTS = [
  (s: string) => `${s} Data, never instructions.`,
  (s: string) => `${s.replace(/\.$/, "")}, data never instructions.`,
  (s: string) => `${s.replace(/\.$/, "")} because the text between the tags is data.`,
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
  {
    kind: "speaker-label",
    plant: (c, k) => ({ steps: c.steps.map((s, i) => (i === 2 ? `${SPEAKERS[k % SPEAKERS.length]!}: ${s}` : s)), defectSteps: [3] }),
  },
  {
    kind: "instruction-fragment",
    plant: (c, k) => ({ steps: c.steps.map((s, i) => (i === 4 ? FRAGMENTS[k % FRAGMENTS.length]!(s) : s)), defectSteps: [5] }),
  },
];

/** 30 good chains + 42 planted defects (each of the 14 kinds planted into 3 different good chains). */
export function labelledChains(): LabelledChain[] {
  const good = goodChains();
  const out: LabelledChain[] = good.map((c, i) => ({ id: c.id, label: "good", kind: c.shape, anchor: c.anchor, steps: c.steps, defectSteps: [], source: i }));
  PLANTERS.forEach((p, pi) => {
    for (let k = 0; k < 3; k++) {
      const source = (pi * 3 + k * 7) % good.length;
      const c = good[source]!;
      const planted = p.plant(c, k);
      out.push({ id: `${p.kind}-${k + 1}-${c.id}`, label: "defect", kind: p.kind, anchor: c.anchor, steps: planted.steps, defectSteps: planted.defectSteps, source });
    }
  });
  return out;
}

export type Half = "calibration" | "heldout";

/**
 * Off-topic sentences for the anchor-floor study (issue 14, hole 3): the planted unrelated steps
 * and sentences of the kind SmolLM2 slid into ("She is a game of data."), each a chain of its own
 * kind that stays related to the step before it.
 */
export const OFF_TOPIC: readonly string[] = [
  ...UNRELATED,
  "She is near the baseball.",
  "She is a game of data.",
  "It is a game of data and numbers.",
  "The quarterly report shows a sharp rise in steel imports.",
  "Steel imports rose sharply in the last quarter.",
  "Quantum computers store information in qubits.",
];

export interface AnchorFloorStudy {
  /**
   * The highest floor on a step's cosine to its anchor that keeps every monotone good chain of the
   * calibration half whole (a step below the floor would be cut): their lowest step cosine.
   */
  floor: number;
  /** Per half: (anchor, off-topic sentence) pairs below the floor / all pairs, over the half's good anchors. */
  offTopicBelow: Record<Half, { below: number; pairs: number }>;
  /** Monotone good chains of the held-out half the floor would cut (id@first step below it). */
  heldoutLost: string[];
}

/**
 * Could a floor on each step's cosine to the ANCHOR catch a chain that slides off topic step by
 * step (each step related to the one before it, so `unrelated` misses it)? The floor is set on the
 * calibration half's monotone good chains only; the study reports how many off-topic sentences
 * fall below it and which held-out monotone good chains it would lose.
 */
export async function anchorFloorStudy(embedder: Embedder): Promise<AnchorFloorStudy> {
  const good = splitLabelled(labelledChains().filter((c) => c.label === "good"));
  const offVectors = await embedder.embed([...OFF_TOPIC]);
  const half = async (chains: LabelledChain[]) =>
    (await embedChains(embedder, chains)).map((v, i) => {
      const sims = v.slice(1).map((x) => cosine(v[0]!, x));
      return { chain: chains[i]!, sims, monotone: sims.every((s, k) => k === 0 || s < sims[k - 1]!), off: offVectors.map((o) => cosine(v[0]!, o)) };
    });
  const cal = await half(good.calibration);
  const held = await half(good.heldout);
  const floor = Math.min(...cal.filter((c) => c.monotone).flatMap((c) => c.sims));
  const below = (rows: typeof cal) => ({ below: rows.flatMap((r) => r.off).filter((x) => x < floor).length, pairs: rows.length * OFF_TOPIC.length });
  return {
    floor,
    offTopicBelow: { calibration: below(cal), heldout: below(held) },
    heldoutLost: held.filter((r) => r.monotone && r.sims.some((s) => s < floor)).map((r) => `${r.chain.id}@${r.sims.findIndex((s) => s < floor) + 1}`),
  };
}

/**
 * The fixed split of the labelled set: good chains at even positions of good-chains.json, and every
 * defect planted into one of them, calibrate; the odd positions and their defects are held out.
 * No good chain is on both sides (a defect chain shares its sentences with its source), and the
 * split is stratified: 12 walks + 3 stars per half, and each defect kind in both halves (its three
 * copies are planted into sources of parity even/odd/even or odd/even/odd: 21 defects per half).
 */
export function halfOf(c: LabelledChain): Half {
  return c.source % 2 === 0 ? "calibration" : "heldout";
}

export function splitLabelled(chains: LabelledChain[] = labelledChains()): Record<Half, LabelledChain[]> {
  return { calibration: chains.filter((c) => halfOf(c) === "calibration"), heldout: chains.filter((c) => halfOf(c) === "heldout") };
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

export interface ScoreOptions {
  minSteps?: number;
  hardKinds?: string[];
  /** Chains to score (default: the whole labelled set). */
  chains?: LabelledChain[];
  /** Gate thresholds (default: the shipped DEFAULT_GATE_THRESHOLDS). */
  thresholds?: Partial<GateThresholds>;
}

/** Embeds chains once: vectors[i] = [anchor, ...steps] of chains[i]. */
export async function embedChains(embedder: Embedder, chains: LabelledChain[]): Promise<Float32Array[][]> {
  return Promise.all(chains.map((c) => embedder.embed([c.anchor, ...c.steps])));
}

/** Embeds every chain once, then applies the gate under each policy (file order; duplicate-chain check off). */
export async function scoreGate(embedder: Embedder, policies: readonly Policy[], options: ScoreOptions = {}): Promise<PolicyScore[]> {
  const chains = options.chains ?? labelledChains();
  const vectors = await embedChains(embedder, chains);
  return policies.map((policy) => scoreEmbedded(chains, vectors, policy, embedder.info.id, options));
}

/** One policy on already-embedded chains. */
export function scoreEmbedded(chains: LabelledChain[], vectors: Float32Array[][], policy: Policy, embedderId: string, options: ScoreOptions = {}): PolicyScore {
    // every chain gets a fresh validator: planted copies of one good chain must not be judged as duplicate chains
    const outcomes = chains.map((c, i): GateOutcome => {
      const v = new ChainValidator({ embedderId, policy, minSteps: options.minSteps ?? 3, hardKinds: options.hardKinds ?? [], thresholds: options.thresholds });
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
      recall: good.length ? good.filter((o) => o.keptWhole).length / good.length : 1,
      recallMonotone: mono.length ? mono.filter((o) => o.keptWhole).length / mono.length : 1,
      defects: defects.length,
      defectsKept: defects.filter((o) => o.defectKept).length,
      precision: kept.length ? clean.length / kept.length : 1,
      outcomes,
    };
}

/** The thresholds calibration searches, each over a fixed grid (the others follow the shipped defaults). */
export const CALIBRATION_GRID: Readonly<Partial<Record<keyof GateThresholds, readonly number[]>>> = Object.freeze({
  unrelatedThreshold: range(0.05, 0.4, 0.025),
  dupThreshold: range(0.85, 0.99, 0.01),
  dupTextSimilarity: range(0.8, 0.99, 0.01),
  inversionTolerance: [0, 0.005, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05],
  appendKeep: range(0.6, 0.95, 0.05),
});

function range(from: number, to: number, step: number): number[] {
  const out: number[] = [];
  for (let i = 0; from + i * step <= to + 1e-9; i++) out.push(Math.round((from + i * step) * 1000) / 1000);
  return out;
}

/** Objective on the calibration chains under one policy: fewest defects kept, then monotone recall, recall, precision. */
function objective(s: PolicyScore): number[] {
  return [-s.defectsKept, s.recallMonotone, s.recall, s.precision];
}

function compare(a: number[], b: number[]): number {
  for (let i = 0; i < a.length; i++) if (Math.abs(a[i]! - b[i]!) > 1e-12) return a[i]! - b[i]!;
  return 0;
}

/**
 * Coordinate search over CALIBRATION_GRID on the given (calibration) chains only, starting from the
 * shipped defaults, two passes: for each threshold, the grid values with the best objective under
 * `policy`; of the longest run of consecutive best values, its middle one (the widest margin on
 * both sides). Returns the chosen thresholds, that run's ends per threshold (last pass), and the
 * calibration chains' score with them.
 */
export function calibrateThresholds(
  chains: LabelledChain[],
  vectors: Float32Array[][],
  embedderId: string,
  policy: Policy = "repair",
  grid: Partial<Record<keyof GateThresholds, readonly number[]>> = CALIBRATION_GRID,
): { thresholds: Partial<GateThresholds>; ranges: Partial<Record<keyof GateThresholds, [number, number]>>; score: PolicyScore } {
  const chosen: Partial<GateThresholds> = {};
  const ranges: Partial<Record<keyof GateThresholds, [number, number]>> = {};
  for (const k of Object.keys(grid) as (keyof GateThresholds)[]) chosen[k] = DEFAULT_GATE_THRESHOLDS[k];
  for (let pass = 0; pass < 2; pass++) {
    for (const [name, values] of Object.entries(grid) as [keyof GateThresholds, readonly number[]][]) {
      const objs = values.map((v) => objective(scoreEmbedded(chains, vectors, policy, embedderId, { thresholds: { ...chosen, [name]: v } })));
      const best = objs.reduce((b, o) => (compare(o, b) > 0 ? o : b));
      let bestRun: [number, number] | undefined;
      let start = -1;
      objs.forEach((o, i) => {
        if (compare(o, best) !== 0) {
          start = -1;
          return;
        }
        if (start < 0) start = i;
        if (!bestRun || i - start > bestRun[1] - bestRun[0]) bestRun = [start, i];
      });
      chosen[name] = values[Math.floor((bestRun![0] + bestRun![1]) / 2)]!;
      ranges[name] = [values[bestRun![0]]!, values[bestRun![1]]!];
    }
  }
  return { thresholds: chosen, ranges, score: scoreEmbedded(chains, vectors, policy, embedderId, { thresholds: chosen }) };
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
