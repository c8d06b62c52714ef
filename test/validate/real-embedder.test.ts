import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { modelsDir } from "../../src/config/paths.ts";
import { createEmbedder } from "../../src/embed/index.ts";
import type { Embedder } from "../../src/embed/types.ts";
import { ChainValidator } from "../../src/validate/index.ts";
import { mulberry32 } from "../../src/util/random.ts";
import { record, REPO_ROOT } from "./helpers.ts";

/**
 * With the real embedder (all-MiniLM-L6-v2 exported by scripts/setup-embedder.sh): chains built
 * from STS-B dev pairs and ordered by gold score must score as more monotone than the same
 * chains shuffled. A chain is a sentence that occurs in several STS-B pairs (the anchor) and its
 * partners, most similar (gold score) first.
 */
const STSB = join(REPO_ROOT, "..", "shared", "eval-data", "stsb-dev.tsv");
const MODEL = join(modelsDir(), "all-MiniLM-L6-v2");
const missing = !existsSync(STSB) ? `${STSB} is absent` : !existsSync(MODEL) ? `${MODEL} is absent (run scripts/setup-embedder.sh)` : "";
if (missing) console.warn(`test/validate/real-embedder: skipped — ${missing}`);

function stsbChains(): { anchor: string; steps: string[] }[] {
  const partners = new Map<string, Map<string, number>>();
  const lines = readFileSync(STSB, "utf8").split("\n").slice(1);
  for (const line of lines) {
    const [a, b, score] = line.split("\t");
    if (!a || !b || score === undefined || a === b) continue;
    const s = Number.parseFloat(score);
    for (const [x, y] of [
      [a, b],
      [b, a],
    ] as const) {
      const m = partners.get(x) ?? new Map<string, number>();
      m.set(y, Math.max(m.get(y) ?? -Infinity, s));
      partners.set(x, m);
    }
  }
  const chains: { anchor: string; steps: string[] }[] = [];
  for (const [anchor, m] of partners) {
    if (m.size < 3) continue;
    const ordered = [...m].sort((p, q) => q[1] - p[1]);
    // skip anchors whose partners' scores barely differ: no order to recover
    if (ordered[0]![1] - ordered[ordered.length - 1]![1] < 1) continue;
    chains.push({ anchor, steps: ordered.map(([s]) => s) });
  }
  return chains;
}

function shuffled<T>(xs: T[], rand: () => number): T[] {
  const a = [...xs];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

describe.skipIf(Boolean(missing))("real embedder on STS-B chains", () => {
  let embedder: Embedder;
  beforeAll(async () => {
    process.env.HF_HUB_OFFLINE = "1";
    embedder = await createEmbedder("all-MiniLM-L6-v2");
  });
  afterAll(async () => {
    await embedder?.dispose();
  });

  it("scores gold-ordered chains as more monotone than the same chains shuffled", async () => {
    const chains = stsbChains();
    expect(chains.length).toBeGreaterThanOrEqual(5);
    const rand = mulberry32(2024);
    const validator = new ChainValidator({ embedderId: embedder.info.id, policy: "lenient", minSteps: 2, thresholds: { chainDupThreshold: 1.01 } });
    const score = async (anchor: string, steps: string[]) => {
      const vectors = await embedder.embed([anchor, ...steps]);
      return validator.validate(record("x", anchor, steps), vectors).validation;
    };
    const ordered: number[] = [];
    const shuffledRho: number[] = [];
    let orderedInv = 0;
    let shuffledInv = 0;
    let shuffledCount = 0;
    for (const c of chains) {
      const v = await score(c.anchor, c.steps);
      ordered.push(v.spearman ?? 0);
      orderedInv += v.inversions;
      for (let k = 0; k < 4; k++) {
        const w = await score(c.anchor, shuffled(c.steps, rand));
        shuffledRho.push(w.spearman ?? 0);
        shuffledInv += w.inversions;
        shuffledCount++;
      }
    }
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const mo = mean(ordered);
    const ms = mean(shuffledRho);
    console.info(`STS-B chains: ${chains.length}; mean Spearman ordered ${mo.toFixed(3)} vs shuffled ${ms.toFixed(3)}; inversions per chain ${(orderedInv / chains.length).toFixed(2)} vs ${(shuffledInv / shuffledCount).toFixed(2)}`);
    expect(mo).toBeGreaterThan(0.5);
    expect(mo - ms).toBeGreaterThan(0.4);
    expect(orderedInv / chains.length).toBeLessThan(shuffledInv / shuffledCount);
  });
});
