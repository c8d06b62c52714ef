import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ConfigError } from "../../src/errors.ts";
import { bestFixedSteps, exportDataset } from "../../src/export/index.ts";
import { RerankRecordSchema } from "../../src/eval/rerank.ts";

const tmp = mkdtempSync(join(tmpdir(), "rankchain-export-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function chain(i: number, steps: number, status: "accepted" | "repaired" | "rejected" | null, kept?: number) {
  return {
    id: `c${i}`,
    anchor: `anchor ${i}`,
    steps: Array.from({ length: steps }, (_, k) => `chain ${i} step ${k + 1}`),
    generator: { provider: "openai", model: "gpt-4o-mini", steering: "stepwise", prompt: "stepwise", prompt_version: 1 },
    usage: { input_tokens: 100, output_tokens: 20, usd: 0.001 },
    ...(status
      ? { validation: { embedder: "onnx:all-MiniLM-L6-v2", sims_to_anchor: [], spearman: 1, inversions: 0, status, reasons: [], ...(kept !== undefined ? { steps_kept: kept } : {}) } }
      : {}),
  };
}

function runDir(name: string, records: unknown[], validated = true): string {
  const dir = join(tmp, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, validated ? "validated.jsonl" : "chains.jsonl"), records.map((r) => JSON.stringify(r)).join("\n") + "\n");
  if (validated)
    writeFileSync(join(dir, "validation.json"), JSON.stringify({ policy: "repair", min_steps: 3, thresholds: { dupThreshold: 0.98 }, embedder: { id: "onnx:all-MiniLM-L6-v2" }, counts: { chains: records.length, accepted: 30, repaired: 1, rejected: 1 } }));
  return dir;
}

const records = [...Array.from({ length: 30 }, (_, i) => chain(i, 6, "accepted")), chain(30, 8, "repaired", 4), chain(31, 6, "rejected"), chain(32, 2, "accepted")];
const jsonl = (p: string) => readFileSync(p, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);

describe("rankchain export", () => {
  const dir = runDir("run", records);

  it("hf: fixed-K chain rows, full records, a card with licence, generator, cost, gate and acceptance; a stable split", async () => {
    const s = await exportDataset({ runDir: dir, format: "hf", out: join(tmp, "hf"), license: "cc-by-4.0", testFraction: 0.2 });
    expect(s.chains).toMatchObject({ read: 33, kept: 32, rejected: 1 });
    expect(s.steps).toBe(6); // 31 chains with >= 6 steps x 7 sentences beats 32 x 5
    const train = jsonl(join(tmp, "hf", "chains", "train.jsonl"));
    const test = jsonl(join(tmp, "hf", "chains", "test.jsonl"));
    expect(train.length + test.length).toBe(30); // the repaired chain has 4 kept steps, c32 has 2
    expect(test.length).toBeGreaterThan(0);
    expect(Object.keys(train[0]!)).toEqual(["anchor", "step_1", "step_2", "step_3", "step_4", "step_5", "step_6"]);
    const recs = [...jsonl(join(tmp, "hf", "records", "train.jsonl")), ...jsonl(join(tmp, "hf", "records", "test.jsonl"))];
    const repaired = recs.find((r) => r.id === "c30")!;
    expect(repaired.steps).toEqual(["chain 30 step 1", "chain 30 step 2", "chain 30 step 3", "chain 30 step 4"]);
    expect(JSON.parse(repaired.record_json as string).steps).toHaveLength(8);
    const card = readFileSync(join(tmp, "hf", "README.md"), "utf8");
    expect(card).toMatch(/^---\nlicense: "cc-by-4.0"\n/);
    expect(card).toContain('- config_name: "chains"\n  default: true');
    expect(card).toContain("openai / gpt-4o-mini / steering stepwise / prompt stepwise v1: 32 chains");
    expect(card).toContain("kept chains: $0.0320");
    expect(card).toContain("policy `repair`");
    expect(card).toContain("30 accepted, 1 repaired, 1 rejected");
    // the same ids land in the same split on a second export
    await exportDataset({ runDir: dir, format: "hf", out: join(tmp, "hf"), testFraction: 0.2, overwrite: true });
    expect(jsonl(join(tmp, "hf", "chains", "test.jsonl"))).toEqual(test);
  });

  it("st-triplets, st-scores and mteb-rerank rows come from chain positions", async () => {
    await exportDataset({ runDir: dir, format: "st-triplets", out: join(tmp, "t"), testFraction: 0, triplets: "all" });
    const t = jsonl(join(tmp, "t", "triplets", "train.jsonl")).filter((r) => r.anchor === "anchor 0");
    expect(t).toHaveLength(15); // 6 steps: every i < j
    for (const r of t) {
      const pos = Number(String(r.positive).split(" ").pop());
      const neg = Number(String(r.negative).split(" ").pop());
      expect(pos).toBeLessThan(neg);
    }
    await exportDataset({ runDir: dir, format: "st-scores", out: join(tmp, "s"), testFraction: 0 });
    const s = jsonl(join(tmp, "s", "scores", "train.jsonl")).filter((r) => r.sentence1 === "anchor 0");
    expect(s.map((r) => r.score)).toEqual([6, 5, 4, 3, 2, 1].map((k) => Number((k / 7).toFixed(6))));
    await exportDataset({ runDir: dir, format: "mteb-rerank", out: join(tmp, "r"), testFraction: 1 });
    const r = jsonl(join(tmp, "r", "rerank", "test.jsonl"));
    for (const rec of r) expect(RerankRecordSchema.safeParse(rec).success).toBe(true);
    const r0 = r.find((x) => x.query === "anchor 0")!;
    expect(r0).toMatchObject({ positive: ["chain 0 step 1", "chain 0 step 2"], negative: ["chain 0 step 5", "chain 0 step 6"], positive_relevance: [2, 1] });
  });

  it("refuses what it should, naming the file, line or flag", async () => {
    await expect(exportDataset({ runDir: runDir("raw", records, false), format: "hf", out: join(tmp, "x") })).rejects.toThrow(/no validated\.jsonl: run `rankchain validate` first/);
    await expect(exportDataset({ runDir: dir, format: "hf", out: join(tmp, "hf") })).rejects.toThrow(/output folder exists/);
    const dup = runDir("dup", [chain(1, 3, "accepted"), chain(1, 3, "accepted")]);
    await expect(exportDataset({ runDir: dup, format: "hf", out: join(tmp, "y") })).rejects.toThrow(/validated\.jsonl:2 \(field "id"\): duplicate chain id "c1"/);
    await expect(exportDataset({ runDir: dir, format: "mteb-rerank", out: join(tmp, "z"), testFraction: 0 })).rejects.toBeInstanceOf(ConfigError);
    const cli = spawnSync("node", ["bin/rankchain.js", "export", dir, "--format", "parquet", "--out", join(tmp, "q")], { encoding: "utf8" });
    expect(cli.status).toBe(2);
    expect(cli.stderr).toContain("--format");
    const ok = spawnSync("node", ["bin/rankchain.js", "export", runDir("raw2", records, false), "--format", "st-scores", "--out", join(tmp, "q"), "--allow-unvalidated"], { encoding: "utf8" });
    expect(ok.status, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout).chains.unvalidated).toBe(0);
  });

  it("bestFixedSteps keeps the most sentences", () => {
    expect(bestFixedSteps([6, 6, 6, 2])).toBe(6);
    expect(bestFixedSteps([8, 3, 3, 3, 3])).toBe(3);
  });
});
