import { spawnSync } from "node:child_process";
import { copyFileSync, cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { candidates, readRerankFile, rerankMetrics, type RerankRecord } from "../../src/eval/rerank.ts";
import { mulberry32 } from "../../src/util/random.ts";
import { collectReportData } from "../../src/report/data.ts";
import { renderReportHtml } from "../../src/report/html.ts";
import { defaultModelDir, pythonMissing, runPythonJson } from "../embed/helpers.ts";

const tmp = mkdtempSync(join(tmpdir(), "rankchain-rerank-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const rec = (over: Partial<RerankRecord> = {}): RerankRecord => ({ query: "q", positive: ["a", "b"], negative: ["c", "d"], ...over });

describe("reranking metrics", () => {
  it("match hand-computed MAP, MRR@10 and nDCG@10", () => {
    const m = rerankMetrics([rec()], [[0.9, 0.2, 0.5, 0.1]]); // ranking a c b d
    expect(m.rerank_map).toBeCloseTo(((1 + 2 / 3) / 2) * 100, 6);
    expect(m["rerank_mrr@10"]).toBeCloseTo(100, 6);
    expect(m["rerank_ndcg@10"]).toBeCloseTo((1.5 / (1 + 1 / Math.log2(3))) * 100, 6);
    // graded gains: b (gain 1) first, then c, then a (gain 2)
    const g = rerankMetrics([rec({ positive_relevance: [2, 1] })], [[0.2, 0.9, 0.5, 0.1]]);
    expect(g["rerank_ndcg@10"]).toBeCloseTo((2 / (2 + 1 / Math.log2(3))) * 100, 6);
  });

  it("ties are broken against the positives: a constant scorer gets the worst ranking", () => {
    const m = rerankMetrics([rec()], [[0, 0, 0, 0]]); // c d a b
    expect(m.rerank_map).toBeCloseTo(((1 / 3 + 2 / 4) / 2) * 100, 6);
    expect(m["rerank_mrr@10"]).toBeCloseTo(100 / 3, 6);
  });

  it.skipIf(pythonMissing())("the Python evaluator (rankchain_posttrain.rerank) gives the same numbers on the same scores", () => {
    const rand = mulberry32(3);
    const records: RerankRecord[] = Array.from({ length: 40 }, (_, i) => {
      const p = 1 + Math.floor(rand() * 4);
      const n = Math.floor(rand() * 12);
      return {
        query: `q${i}`,
        positive: Array.from({ length: p }, (_, j) => `p${j}`),
        negative: Array.from({ length: n }, (_, j) => `n${j}`),
        ...(i % 2 ? { positive_relevance: Array.from({ length: p }, () => 1 + Math.floor(rand() * 3)) } : {}),
      };
    });
    // coarse scores, so ties happen and the tie rule is compared too
    const scores = records.map((r) => candidates(r).map(() => Math.round(rand() * 5) / 5));
    const file = join(tmp, "parity.jsonl");
    writeFileSync(file, records.map((r) => JSON.stringify(r)).join("\n") + "\n");
    const py = runPythonJson<Record<string, number>>(
      "import json, sys; from rankchain_posttrain.rerank import load_rerank, rerank_metrics; print(json.dumps(rerank_metrics(load_rerank(sys.argv[1]), json.load(sys.stdin))))",
      scores,
      [file],
    );
    const ts = rerankMetrics(records, scores);
    for (const k of ["rerank_map", "rerank_mrr@10", "rerank_ndcg@10"] as const) expect(py[k]).toBeCloseTo(ts[k], 9);
  });

  it("a bad reranking file names file:line and field", async () => {
    const file = join(tmp, "bad.jsonl");
    writeFileSync(file, JSON.stringify(rec()) + "\n" + JSON.stringify({ query: "q", positive: ["a"], negative: [], positive_relevance: [1, 2] }) + "\n");
    await expect(readRerankFile(file)).rejects.toThrow(/bad\.jsonl:2 \(field "positive_relevance"\): has 2 values for 1 positives/);
  });
});

const model = defaultModelDir();
describe.skipIf(model.missing || pythonMissing())("rankchain eval --rerank (real all-MiniLM-L6-v2)", () => {
  it("writes MAP, MRR@10 and nDCG@10 into eval.json next to STS and the report; a bad file exits 2 before any model loads", async () => {
    const file = join(tmp, "task.jsonl");
    writeFileSync(
      file,
      [
        { query: "A man is playing a guitar.", positive: ["Someone plays an instrument."], negative: ["The stock market fell sharply today.", "A cat sleeps on the sofa."] },
        { query: "The train arrived late at the station.", positive: ["The train was delayed."], negative: ["Children build a sandcastle.", "A woman slices tomatoes."] },
      ]
        .map((r) => JSON.stringify(r))
        .join("\n") + "\n",
    );
    const out = join(tmp, "eval.json");
    const env = { ...process.env, HF_HUB_OFFLINE: "1", TRANSFORMERS_OFFLINE: "1", PYTHONPATH: resolve("posttrain") };
    const r = spawnSync("node", ["bin/rankchain.js", "eval", "--model", model.dir, "--baseline", model.dir, "--sts", "examples/sts-mini.tsv", "--rerank", file, "--out", out], { env, encoding: "utf8" });
    expect(r.status, r.stderr).toBe(0);
    const doc = JSON.parse(readFileSync(out, "utf8")) as { metrics: { name: string; model: number; delta: number }[]; rerank: { records: number } };
    expect(doc.metrics.map((m) => m.name)).toEqual(["stsb_spearman", "rerank_map", "rerank_mrr@10", "rerank_ndcg@10"]);
    const map = doc.metrics.find((m) => m.name === "rerank_map")!;
    expect(map.model).toBeCloseTo(100, 6); // the unrelated negatives are easy for MiniLM
    expect(map.delta).toBe(0); // model = baseline
    expect(doc.rerank.records).toBe(2);
    expect(r.stdout).toContain("rerank_ndcg@10");
    // the report's before/after table shows them
    const run = join(tmp, "run");
    cpSync("generations/example", run, { recursive: true });
    copyFileSync(out, join(run, "eval.json"));
    const html = renderReportHtml(await collectReportData(run));
    for (const name of ["rerank_map", "rerank_mrr@10", "rerank_ndcg@10"]) expect(html).toContain(name);

    writeFileSync(join(tmp, "bad.jsonl"), '{"query": "q", "positive": [], "negative": []}\n');
    const bad = spawnSync("node", ["bin/rankchain.js", "eval", "--model", model.dir, "--sts", "examples/sts-mini.tsv", "--rerank", join(tmp, "bad.jsonl"), "--out", out], { env, encoding: "utf8" });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/bad\.jsonl:1 \(field "positive"\): needs at least one positive/);
  }, 300_000);
});
