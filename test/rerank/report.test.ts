import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { readEval, readJudges, writeReport } from "../../src/report/index.ts";
import { buildValidatedRun } from "../report/fixture.ts";

describe("report: judges and rerankers", () => {
  it("shows the judges' agreement matrix from validation.json and the rerank table from eval.json", async () => {
    const dir = await buildValidatedRun();
    const summary = JSON.parse(readFileSync(join(dir, "validation.json"), "utf8"));
    summary.judges = {
      mode: "cascade",
      judges: { embedder: "onnx:mini", "cross-encoder": "cross-encoder:onnx:ce", llm: "llm:openai/gpt-4o-mini" },
      counts: { judged: 30, escalated: 6, llm_judged: 5, llm_skipped_budget: 1, rejected_by_judge: 2 },
      llm_usd: 0.0012,
      llm_cap_usd: 0.002,
      agreement: { judges: ["embedder", "cross-encoder", "llm"], matrix: [[1, 0.8, 0.4], [0.8, 1, 0.6], [0.4, 0.6, 1]], n: [[30, 30, 5], [30, 30, 5], [5, 5, 5]] },
      per_judge: { embedder: { chains: 30, in_order_rate: 0.9, mean_kendall: 0.8 }, llm: { chains: 5, in_order_rate: 0.6, mean_kendall: 0.4 } },
    };
    writeFileSync(join(dir, "validation.json"), JSON.stringify(summary));
    const ev = JSON.parse(readFileSync(join(dir, "eval.json"), "utf8"));
    ev.rerank = {
      file: "heldout-rerank.jsonl",
      queries: 12,
      rows: [
        { reranker: "embedder", id: "embedder:onnx:mini", depth: null, queries: 12, "ndcg@10": 0.71, map: 0.6, "mrr@10": 0.8, usd_per_query: 0, ms_per_query: 3.2 },
        { reranker: "llm", id: "llm:openai/gpt-4o-mini", depth: 20, queries: 7, "ndcg@10": 0.83, map: 0.7, "mrr@10": 0.9, usd_per_query: 0.0004, ms_per_query: 812, incomplete: "budget" },
      ],
    };
    writeFileSync(join(dir, "eval.json"), JSON.stringify(ev));
    const j = readJudges(summary)!;
    expect(j.matrix[0]).toEqual([1, 0.8, 0.4]);
    expect(j.counts.llm_skipped_budget).toBe(1);
    expect(readEval(dir)!.rerank!.rows[1]).toMatchObject({ reranker: "llm", depth: 20, ndcg10: 0.83, incomplete: true });
    const { path } = await writeReport(dir);
    const html = readFileSync(path, "utf8");
    expect(html).toContain("Judges (cascade)");
    expect(html).toContain("0.80 <span");
    expect(html).toContain("1 left to the cross-encoder at the cap");
    expect(html).toContain("Rerankers side by side");
    expect(html).toContain("7 (cap reached)");
    expect(html).toContain("heldout-rerank.jsonl: 12 queries");
  });

  it("tolerates odd judge sections", () => {
    expect(readJudges(null)).toBeNull();
    expect(readJudges({ judges: { agreement: { judges: [1, "x"], matrix: "no" } } })).toMatchObject({ judges: ["x"], matrix: [] });
  });
});
