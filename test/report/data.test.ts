import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { collectReportData, escapeHtml, jsonForScript, readEval, writeReport } from "../../src/report/index.ts";
import { record, tmpDir } from "../validate/helpers.ts";
import { buildValidatedRun, HOSTILE } from "./fixture.ts";

describe("report data", () => {
  it("summarises a validated run: counts, bands per step, Spearman bins, cost, examples, eval", async () => {
    const dir = await buildValidatedRun();
    const d = await collectReportData(dir);
    const summary = JSON.parse(readFileSync(join(dir, "validation.json"), "utf8"));
    expect(d.validated).toBe(true);
    expect(d.counts).toEqual({ chains: 40, accepted: summary.counts.accepted, repaired: summary.counts.repaired, rejected: summary.counts.rejected });
    expect(d.counts.accepted).toBeGreaterThan(0);
    expect(d.counts.rejected).toBeGreaterThan(0);
    // the geometry drifts: the median similarity falls from step 1 to the last step, bands are ordered
    const all = d.decay.all;
    expect(all[0]!.step).toBe(1);
    expect(all[0]!.median!).toBeGreaterThan(all[all.length - 1]!.median!);
    for (const b of all) expect(b.p25! <= b.median! && b.median! <= b.p75!).toBe(true);
    expect(d.decay.all[0]!.n).toBe(40);
    expect(d.spearman.all.reduce((a, b) => a + b, 0) + d.spearman.nulls).toBe(40);
    expect(d.cost).toMatchObject({ usd: 0.16, source: "run.json" });
    expect(d.cost.usd_per_kept_chain).toBeCloseTo(0.16 / (d.counts.accepted + d.counts.repaired), 10);
    expect(d.best).toHaveLength(3);
    expect(d.best[0]!.spearman).toBe(1);
    expect(d.worst[0]!.spearman!).toBeLessThanOrEqual(d.worst[2]!.spearman!);
    expect(d.reasons.find((r) => r.kind === "refusal")?.chains).toBe(1);
    expect(d.eval?.metrics[0]).toEqual({ name: "stsb_spearman", baseline: 82.03, model: 83.11, delta: 1.08, greater_is_better: true, description: "Spearman x100" });
    expect(d.eval?.primary_metric).toBe("stsb_spearman");
    expect(d.eval?.metrics[1]).toMatchObject({ baseline: null, delta: null, greater_is_better: true });
  });

  it("reports an unvalidated run with the chains' usage as the cost", async () => {
    const dir = tmpDir("report-raw");
    writeFileSync(join(dir, "chains.jsonl"), [record("a", "x", ["y", "z"], 0.5), record("b", "x2", ["y2"], 0.25)].map((r) => JSON.stringify(r)).join("\n") + "\n");
    const { path, data } = await writeReport(dir);
    expect(data.validated).toBe(false);
    expect(data.counts.chains).toBe(2);
    expect(data.cost).toMatchObject({ usd: 0.75, source: "chains.jsonl", kept_chains: 0, usd_per_kept_chain: null });
    expect(readFileSync(path, "utf8")).toContain("has not been validated yet");
  });

  it("tolerates a broken or partial eval.json", () => {
    const dir = tmpDir("report-eval");
    writeFileSync(join(dir, "eval.json"), "{not json");
    expect(readEval(dir)).toBeNull();
    writeFileSync(
      join(dir, "eval.json"),
      JSON.stringify({ primary_metric: "x", metrics: [{ name: "x", baseline: 0.5, model: 0.6 }, 7, { name: "loss", baseline: 2, model: 1.5, greater_is_better: false }] }),
    );
    const e = readEval(dir)!;
    expect(e.usd).toBeNull();
    expect(e.primary_metric).toBe("x");
    expect(e.metrics).toHaveLength(2);
    expect(e.metrics[0]!.delta).toBeCloseTo(0.1, 12);
    // without a delta, the gain is computed in the metric's direction (as rankchain eval does)
    expect(e.metrics[1]!.delta).toBeCloseTo(0.5, 12);
  });

  it("escapes text and script-embedded JSON", () => {
    expect(escapeHtml(HOSTILE)).not.toMatch(/<script|<img/);
    expect(jsonForScript({ t: "</script><b>&" })).not.toMatch(/<|>|&/);
    expect(JSON.parse(jsonForScript({ t: "</script><b>&" }))).toEqual({ t: "</script><b>&" });
  });
});
