import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { collectReportData, writeReport } from "../../src/report/index.ts";
import { record, tmpDir } from "../validate/helpers.ts";

const MINE = {
  format_version: 1,
  embedders: [{ id: "onnx:all-MiniLM-L6-v2" }, { id: "onnx:all-mpnet-base-v2" }],
  settings: { top_k: 50, group_size: 8, fusion: "rrf", rrf_k: 60, guard: 0.95, positive: "first-step" },
  pool: { texts: 1234, chain_sentences: 1200, corpus_lines: 34 },
  index: { "onnx:all-MiniLM-L6-v2": "exact", "onnx:all-mpnet-base-v2": "exact" },
  queries: 150,
  groups: 148,
  skipped: { too_few_negatives: 2 },
  dropped: {
    self_or_same_chain: { count: 300, samples: [] },
    guard: {
      count: 17,
      by_embedder: { "onnx:all-MiniLM-L6-v2": 11, "onnx:all-mpnet-base-v2": 6 },
      samples: [{ chain_id: "c0", query: "A man plays <b>guitar</b>.", positive: "A man plays a guitar.", candidate: "A man is playing the guitar & singing.", embedder: "onnx:all-MiniLM-L6-v2", score: 0.91, positive_score: 0.9, threshold: 0.855 }],
    },
  },
  negatives_by_source: { chain: 900, same_chain: 100, corpus: 36 },
  groups_file: "/x/groups.jsonl",
};

describe("report: mine.json", () => {
  it("shows what each rule dropped, with escaped samples", async () => {
    const dir = tmpDir("report-mine");
    writeFileSync(join(dir, "chains.jsonl"), JSON.stringify(record("a", "x", ["y", "z"], 0.5)) + "\n");
    writeFileSync(join(dir, "mine.json"), JSON.stringify(MINE));
    const d = await collectReportData(dir);
    expect(d.mine?.groups).toBe(148);
    expect(d.mine?.dropped[0]).toMatchObject({ rule: "false-negative guard", count: 17 });
    expect(d.mine?.dropped[0]!.detail).toBe("onnx:all-MiniLM-L6-v2: 11, onnx:all-mpnet-base-v2: 6");
    const { path } = await writeReport(dir);
    const html = readFileSync(path, "utf8");
    expect(html).toContain("Hard negatives (mine.json)");
    expect(html).toContain("A man plays &lt;b&gt;guitar&lt;/b&gt;.");
    expect(html).toContain("A man is playing the guitar &amp; singing.");
    expect(html).toContain("0.910 &gt; 0.855");
    expect(html).toContain("150 → 148 (too few negatives: 2)");
    expect(html).not.toContain("<b>guitar</b>");
  });

  it("has no mine section without mine.json, and survives a broken one", async () => {
    const dir = tmpDir("report-nomine");
    writeFileSync(join(dir, "chains.jsonl"), JSON.stringify(record("a", "x", ["y"], 0.5)) + "\n");
    expect((await collectReportData(dir)).mine).toBeNull();
    writeFileSync(join(dir, "mine.json"), "{broken");
    const { path } = await writeReport(dir);
    expect(readFileSync(path, "utf8")).not.toContain("Hard negatives");
  });
});
