import { appendFileSync, existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError } from "../../src/errors.ts";
import { validateRun } from "../../src/validate/index.ts";
import { HashingEmbedder, record, sentences, TableEmbedder, tmpDir, vec } from "./helpers.ts";

function writeChains(dir: string, records: object[]): void {
  writeFileSync(join(dir, "chains.jsonl"), records.map((r) => JSON.stringify(r) + "\n").join(""));
}

describe("validateRun on a small run with known geometry", () => {
  it("writes validated.jsonl, accepted.jsonl and validation.json with counts, reasons, thresholds and cost", async () => {
    const dir = tmpDir("validate-run");
    const table = new Map<string, Float32Array>();
    const mk = (id: string, angles: number[], azimuth: number) => {
      const anchor = `Anchor ${id}: the quiet harbour sees boats at dawn.`;
      const steps = sentences(angles.length, `harbour-${id}`);
      table.set(anchor, vec(0, 0));
      steps.forEach((s, i) => table.set(s, vec(angles[i]! * 0.25, azimuth)));
      return record(id, anchor, steps, 0.01);
    };
    // every chain shares the anchor direction, so give each its own azimuth to keep centroids apart
    const good = mk("good", [1, 2, 3, 4, 5], 0);
    const bad = mk("inv", [1, 2, 3, 5, 4, 6], 2.1);
    const short = mk("short", [1, 3, 2, 4, 5, 6], 4.2);
    writeChains(dir, [good, bad, short]);
    writeFileSync(join(dir, "run.json"), JSON.stringify({ totals: { spent_usd: 0.09 } }));
    const progress: number[] = [];
    const summary = await validateRun({
      runDir: dir,
      embedder: new TableEmbedder(table),
      policy: "repair",
      minSteps: 3,
      batchSize: 4,
      thresholds: { chainDupThreshold: 0.999 },
      onProgress: (p) => progress.push(p.done),
    });
    expect(summary.counts).toEqual({ chains: 3, accepted: 1, repaired: 1, rejected: 1, skipped_torn_lines: 0 });
    expect(summary.reasons.inversion).toEqual({ chains: 2, occurrences: 2 });
    expect(summary.thresholds.leakThreshold).toBe(0.95);
    expect(summary.conventions.spearman).toMatch(/1\.0 = similarity falls/);
    expect(summary.cost).toMatchObject({ usd: 0.09, source: "run.json", chains_usd: 0.03, kept_chains: 2 });
    expect(summary.cost.usd_per_kept_chain).toBeCloseTo(0.045, 10);
    expect(progress[progress.length - 1]).toBe(3);

    const validated = readFileSync(join(dir, "validated.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    expect(validated.map((r) => [r.id, r.validation.status])).toEqual([
      ["good", "accepted"],
      ["inv", "repaired"],
      ["short", "rejected"],
    ]);
    expect(validated[1].steps).toHaveLength(4); // cut before step 5, the inversion
    expect(validated[1].validation.embedder).toBe("test:table");
    expect(validated[2].validation.reasons).toContain("too-short-after-repair@3");
    const accepted = readFileSync(join(dir, "accepted.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l).id);
    expect(accepted).toEqual(["good", "inv"]);
    const onDisk = JSON.parse(readFileSync(join(dir, "validation.json"), "utf8"));
    expect(onDisk.counts.chains).toBe(3);
    expect(readdirSync(dir).filter((f) => f.includes(".tmp-"))).toEqual([]);
  });

  it("falls back to ledger.jsonl, then to the chains' usage, for the cost", async () => {
    const dir = tmpDir("validate-cost");
    writeChains(dir, [record("a", "A quiet harbour at dawn.", sentences(3), 0.25)]);
    const emb = new HashingEmbedder();
    let s = await validateRun({ runDir: dir, embedder: emb, policy: "lenient" });
    expect(s.cost).toMatchObject({ source: "chains.jsonl", usd: 0.25 });
    writeFileSync(
      join(dir, "ledger.jsonl"),
      [
        { type: "reserve", id: "r1", ts: "t", usd: 0.5, input_tokens: 1, max_output_tokens: 1, model: "m" },
        { type: "charge", id: "r1", ts: "t", usd: 0.2, input_tokens: 1, output_tokens: 1 },
        { type: "reserve", id: "r2", ts: "t", usd: 0.3, input_tokens: 1, max_output_tokens: 1, model: "m" },
      ]
        .map((e) => JSON.stringify(e))
        .join("\n") + "\n",
    );
    s = await validateRun({ runDir: dir, embedder: emb, policy: "lenient" });
    expect(s.cost.source).toBe("ledger.jsonl");
    expect(s.cost.usd).toBeCloseTo(0.5, 10); // 0.2 charged + 0.3 unsettled at its worst case
  });
});

describe("input problems", () => {
  it("skips a torn last line with a warning", async () => {
    const dir = tmpDir("validate-torn");
    writeChains(dir, [record("a", "A quiet harbour at dawn.", sentences(3)), record("b", "A busy port at noon.", sentences(3, "port"))]);
    appendFileSync(join(dir, "chains.jsonl"), '{"id":"c","anchor":"Half a li');
    const warnings: string[] = [];
    const s = await validateRun({ runDir: dir, embedder: new HashingEmbedder(), policy: "lenient", onWarning: (w) => warnings.push(w) });
    expect(s.counts.chains).toBe(2);
    expect(s.counts.skipped_torn_lines).toBe(1);
    expect(warnings[0]).toMatch(/chains\.jsonl:3: skipped a torn last line/);
  });

  it("fails with file:line on a malformed line in the middle and leaves no partial output", async () => {
    const dir = tmpDir("validate-bad");
    const good = JSON.stringify(record("a", "A quiet harbour at dawn.", sentences(3)));
    writeFileSync(join(dir, "chains.jsonl"), `${good}\n{not json}\n${good}\n`);
    const err = await validateRun({ runDir: dir, embedder: new HashingEmbedder() }).catch((e) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.message).toMatch(/chains\.jsonl:2: invalid JSON/);
    const bad2 = JSON.stringify({ ...record("x", "a", ["b"]), steps: "not a list" });
    writeFileSync(join(dir, "chains.jsonl"), `${good}\n${bad2}\n`);
    const err2 = await validateRun({ runDir: dir, embedder: new HashingEmbedder() }).catch((e) => e);
    expect(err2).toBeInstanceOf(ConfigError);
    expect(err2.message).toMatch(/chains\.jsonl:2: steps:/);
    expect(existsSync(join(dir, "validated.jsonl"))).toBe(false);
    expect(readdirSync(dir).filter((f) => f.includes(".tmp-"))).toEqual([]);
  });

  it("reads holdout sentences from a TSV with a header", async () => {
    const dir = tmpDir("validate-holdout");
    const steps = sentences(4);
    writeChains(dir, [record("a", "A quiet harbour at dawn.", steps)]);
    writeFileSync(join(dir, "holdout.tsv"), `sentence1\tsentence2\tscore\nSomething else entirely here.\t${steps[2]}\t3.2\n`);
    const s = await validateRun({ runDir: dir, embedder: new HashingEmbedder(), policy: "strict", holdout: join(dir, "holdout.tsv") });
    expect(s.holdout).toMatchObject({ sentences: 2, threshold: 0.95 });
    const v = JSON.parse(readFileSync(join(dir, "validated.jsonl"), "utf8")).validation;
    expect(v.reasons).toContain("leak@3");
    expect(v.leaks[0]).toMatchObject({ step: 3, holdout_line: 2 });
    expect(v.status).toBe("rejected");
  });
});

describe("streaming mechanics (hashing embedder: mechanics only, no quality claims)", () => {
  it("validates 20,000 chains in bounded batches, writing output as it goes", async () => {
    const dir = tmpDir("validate-stream");
    const N = 20_000;
    const lines: string[] = [];
    for (let i = 0; i < N; i++) {
      // words unique to the chain, so chains do not share hash buckets by construction
      const steps = [0, 1, 2, 3].map((k) => `c${i} t${(i * 7 + k) % 997} w${(i * 13 + k * 3) % 991} s${i}x${k}`);
      lines.push(JSON.stringify(record(`c${i}`, `c${i} a${i % 997} b${i % 991}`, steps)));
    }
    writeFileSync(join(dir, "chains.jsonl"), lines.join("\n") + "\n");
    const emb = new HashingEmbedder();
    const batchSize = 50;
    const tmpSizes: number[] = [];
    let maxInFlightTexts = 0;
    emb.onEmbed = (texts) => {
      maxInFlightTexts = Math.max(maxInFlightTexts, texts.length);
      if (emb.calls.length % 400 === 0) {
        const tmp = readdirSync(dir).find((f) => f.startsWith("validated.jsonl.tmp-"));
        tmpSizes.push(tmp ? statSync(join(dir, tmp)).size : -1);
      }
    };
    const summary = await validateRun({ runDir: dir, embedder: emb, policy: "lenient", batchSize });
    expect(summary.counts.chains).toBe(N);
    // each embedding call holds at most one batch plus one chain's worth of texts
    expect(maxInFlightTexts).toBeLessThanOrEqual(batchSize + 5);
    expect(emb.calls.reduce((a, b) => a + b, 0)).toBe(N * 5);
    // the output file grows while the input is still being read
    expect(tmpSizes.length).toBeGreaterThan(3);
    for (let i = 1; i < tmpSizes.length; i++) expect(tmpSizes[i]!).toBeGreaterThan(tmpSizes[i - 1]!);
    const out = readFileSync(join(dir, "validated.jsonl"), "utf8").split("\n").filter(Boolean);
    expect(out).toHaveLength(N);
    expect(JSON.parse(out[N - 1]!).id).toBe(`c${N - 1}`);
    // the dedup index used candidate buckets, not all pairs
    expect(summary.dedup.exact_checks).toBeLessThan((N * (N - 1)) / 2 / 50);
    rmSync(dir, { recursive: true, force: true });
  }, 120_000);
});
