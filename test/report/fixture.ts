import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { validateRun } from "../../src/validate/index.ts";
import { mulberry32 } from "../../src/util/random.ts";
import { record, TableEmbedder, tmpDir, vec } from "../validate/helpers.ts";

export const HOSTILE = `<script>window.__pwned = true; alert("x")</script><img src=x onerror="window.__pwned=true">`;

/**
 * A validated run with known geometry: 40 chains of 6–9 steps whose angle to the anchor grows
 * with noise (some steps invert), a refusal, a reversed chain carrying hostile HTML, run.json
 * and eval.json.
 */
export async function buildValidatedRun(): Promise<string> {
  const dir = tmpDir("report-run");
  const rand = mulberry32(7);
  const table = new Map<string, Float32Array>();
  const lines: string[] = [];
  for (let c = 0; c < 40; c++) {
    const psi = (c / 40) * 2 * Math.PI;
    const anchor = `Chain ${c} anchor: the ferry leaves the quiet harbour at dawn.`;
    table.set(anchor, vec(0, 0));
    const n = 6 + (c % 4);
    const steps: string[] = [];
    for (let k = 1; k <= n; k++) {
      const text = `Chain ${c} step ${k}: the ferry ${["leaves", "departs", "sails", "goes", "drifts", "moves", "slips", "heads", "turns"][k - 1]} the harbour.`;
      const noise = (rand() - 0.5) * (c % 3 === 0 ? 0.7 : 0.1);
      table.set(text, vec(Math.max(0.05, k * 0.3 + noise), psi + k * 0.05));
      steps.push(text);
    }
    if (c === 7) {
      steps[2] = "I'm sorry, but I can't help with rewriting that sentence.";
      table.set(steps[2], vec(0.9, psi));
    }
    if (c === 39) {
      // walks back towards the anchor (Spearman −1) and carries hostile HTML: a "worst" example
      steps.reverse();
      steps[0] = HOSTILE;
      table.set(HOSTILE, vec(n * 0.3 + 0.05, psi));
    }
    lines.push(JSON.stringify(record(`chain-${c}`, anchor, steps, 0.004)));
  }
  writeFileSync(join(dir, "chains.jsonl"), lines.join("\n") + "\n");
  writeFileSync(join(dir, "run.json"), JSON.stringify({ status: "done", totals: { usd: 0.16 } }));
  writeFileSync(
    join(dir, "eval.json"),
    JSON.stringify({
      // the shape `rankchain eval` writes: metrics in points (×100), delta = improvement
      primary_metric: "stsb_spearman",
      metrics: [
        { name: "stsb_spearman", baseline: 82.03, model: 83.11, delta: 1.08, greater_is_better: true, description: "Spearman x100" },
        { name: "chain_order_kendall", baseline: null, model: 44.1 },
      ],
      usd: 0.2,
      usd_per_point: null,
    }),
  );
  await validateRun({ runDir: dir, embedder: new TableEmbedder(table), policy: "repair", minSteps: 3 });
  return dir;
}
