/**
 * Gate calibration on the labelled set (test/validate/labelled-set.ts): accept precision and
 * recall of each policy with the real embedder, and every chain the default policy gets wrong.
 *
 *   npx tsx bench/validate/gate-calibration.ts [--json FILE] [--embedder E]
 */
import { writeFileSync } from "node:fs";
import { createEmbedder } from "../../src/embed/index.ts";
import { POLICIES } from "../../src/validate/index.ts";
import { scoreGate } from "../../test/validate/labelled-set.ts";

const args = process.argv.slice(2);
const flag = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
process.env.HF_HUB_OFFLINE ??= "1";
const embedder = await createEmbedder(flag("--embedder") ?? "all-MiniLM-L6-v2");
try {
  const scores = await scoreGate(embedder, POLICIES);
  console.log(`labelled set: ${scores[0]!.good} good chains (${scores[0]!.goodMonotone} ranked monotonically by ${embedder.info.id}), ${scores[0]!.defects} planted defects`);
  console.log("policy    recall(all good)  recall(monotone good)  defects kept  accept precision");
  for (const s of scores) {
    console.log(
      `${s.policy.padEnd(9)} ${s.recall.toFixed(3).padStart(16)}  ${s.recallMonotone.toFixed(3).padStart(21)}  ${`${s.defectsKept}/${s.defects}`.padStart(12)}  ${s.precision.toFixed(3).padStart(16)}`,
    );
  }
  const repair = scores.find((s) => s.policy === "repair")!;
  for (const o of repair.outcomes) {
    const wrong = (o.chain.label === "good" && !o.keptWhole) || o.defectKept;
    if (wrong || args.includes("--all")) {
      console.log(`  ${wrong ? "MISS" : "ok  "} ${o.chain.id} [${o.chain.label}${o.monotone ? ", monotone" : ""}] ${o.status} kept ${o.stepsKept}: ${o.reasons.join(" ")}`);
    }
  }
  const out = flag("--json");
  if (out) {
    writeFileSync(
      out,
      JSON.stringify(
        { embedder: embedder.info.id, policies: scores.map(({ outcomes, ...s }) => ({ ...s, misses: outcomes.filter((o) => (o.chain.label === "good" && !o.keptWhole) || o.defectKept).map((o) => o.chain.id) })) },
        null,
        2,
      ) + "\n",
    );
  }
} finally {
  await embedder.dispose();
}
