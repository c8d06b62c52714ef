/**
 * Gate calibration on the labelled set (test/validate/labelled-set.ts), with a held-out half:
 * thresholds are calibrated on the calibration half only (coordinate search over a fixed grid,
 * objective under the default policy repair: fewest defects kept, then recall of monotone good
 * chains, recall, precision), then accept precision and recall of each policy are reported on the
 * held-out half, which the search never saw. The shipped defaults are scored beside them (they
 * were chosen on the whole set before the split, so their held-out figures are not a clean test).
 * Last, the anchor-floor study: could a floor on each step's cosine to the anchor catch off-topic
 * steps without cutting monotone good chains (anchorFloorStudy)?
 *
 *   npx tsx bench/validate/gate-calibration.ts [--json FILE] [--embedder E] [--all]
 */
import { writeFileSync } from "node:fs";
import { createEmbedder } from "../../src/embed/index.ts";
import { POLICIES } from "../../src/validate/index.ts";
import { DEFAULT_GATE_THRESHOLDS } from "../../src/validate/validator.ts";
import { anchorFloorStudy, calibrateThresholds, CALIBRATION_GRID, embedChains, scoreEmbedded, splitLabelled, type PolicyScore } from "../../test/validate/labelled-set.ts";

const args = process.argv.slice(2);
const flag = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
process.env.HF_HUB_OFFLINE ??= "1";
const embedder = await createEmbedder(flag("--embedder") ?? "all-MiniLM-L6-v2");
try {
  const id = embedder.info.id;
  const halves = splitLabelled();
  const vectors = { calibration: await embedChains(embedder, halves.calibration), heldout: await embedChains(embedder, halves.heldout) };
  for (const h of ["calibration", "heldout"] as const) {
    const c = halves[h];
    const good = c.filter((x) => x.label === "good");
    console.log(
      `${h.padEnd(11)} half: ${good.length} good (${good.filter((x) => x.kind === "star").length} stars), ${c.length - good.length} defects of ${new Set(c.filter((x) => x.label === "defect").map((x) => x.kind)).size} kinds`,
    );
  }
  const cal = calibrateThresholds(halves.calibration, vectors.calibration, id, "repair");
  const shipped = Object.fromEntries(Object.keys(CALIBRATION_GRID).map((k) => [k, DEFAULT_GATE_THRESHOLDS[k as keyof typeof DEFAULT_GATE_THRESHOLDS]]));
  console.log(`thresholds calibrated on the calibration half: ${JSON.stringify(cal.thresholds)}`);
  console.log(`best-objective ranges (calibration half):     ${JSON.stringify(cal.ranges)}`);
  console.log(`shipped defaults:                             ${JSON.stringify(shipped)}`);
  const rows: { half: string; thresholds: string; score: PolicyScore }[] = [];
  for (const [name, th] of [["calibrated", cal.thresholds], ["shipped", shipped]] as const) {
    for (const half of ["calibration", "heldout"] as const) {
      for (const p of POLICIES) rows.push({ half, thresholds: name, score: scoreEmbedded(halves[half], vectors[half], p, id, { thresholds: th }) });
    }
  }
  console.log("half         thresholds  policy    recall(all good)  recall(monotone good)  defects kept  accept precision");
  for (const r of rows) {
    const s = r.score;
    console.log(
      `${r.half.padEnd(12)} ${r.thresholds.padEnd(11)} ${s.policy.padEnd(9)} ${`${s.recall.toFixed(3)} (${Math.round(s.recall * s.good)}/${s.good})`.padStart(16)}  ${`${s.recallMonotone.toFixed(3)} (${Math.round(s.recallMonotone * s.goodMonotone)}/${s.goodMonotone})`.padStart(21)}  ${`${s.defectsKept}/${s.defects}`.padStart(12)}  ${s.precision.toFixed(3).padStart(16)}`,
    );
  }
  const held = rows.find((r) => r.half === "heldout" && r.thresholds === "calibrated" && r.score.policy === "repair")!.score;
  console.log("held-out half, calibrated thresholds, repair:");
  for (const o of held.outcomes) {
    const wrong = (o.chain.label === "good" && !o.keptWhole) || o.defectKept;
    if (wrong || args.includes("--all")) {
      console.log(`  ${wrong ? "MISS" : "ok  "} ${o.chain.id} [${o.chain.label}${o.monotone ? ", monotone" : ""}] ${o.status} kept ${o.stepsKept}: ${o.reasons.join(" ")}`);
    }
  }
  const floor = await anchorFloorStudy(embedder);
  const pct = (x: { below: number; pairs: number }) => `${x.below}/${x.pairs} (${((100 * x.below) / x.pairs).toFixed(0)} %)`;
  console.log(`anchor floor (highest that keeps every monotone good chain of the calibration half whole): ${floor.floor.toFixed(3)}`);
  console.log(`  off-topic sentences below it: calibration ${pct(floor.offTopicBelow.calibration)}, held-out ${pct(floor.offTopicBelow.heldout)}`);
  console.log(`  held-out monotone good chains it would cut: ${floor.heldoutLost.join(" ") || "none"}`);
  const out = flag("--json");
  if (out) {
    writeFileSync(
      out,
      JSON.stringify(
        {
          embedder: id,
          split: "good chains at even positions of good-chains.json (and their planted defects) calibrate; odd positions are held out",
          grid: CALIBRATION_GRID,
          calibrated: cal.thresholds,
          ranges: cal.ranges,
          shipped,
          anchor_floor_study: floor,
          rows: rows.map(({ half, thresholds, score: { outcomes, ...s } }) => ({
            half,
            thresholds,
            ...s,
            misses: outcomes.filter((o) => (o.chain.label === "good" && !o.keptWhole) || o.defectKept).map((o) => o.chain.id),
          })),
        },
        null,
        2,
      ) + "\n",
    );
  }
} finally {
  await embedder.dispose();
}
