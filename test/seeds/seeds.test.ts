import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { readSeeds } from "../../src/generate/seeds.ts";
import { extractSeeds, kCenterGreedy, filterSentence, type SeedRecord, type SeedsProgress } from "../../src/seeds/index.ts";
import { BloomFilter, WeightedReservoir } from "../../src/seeds/sketch.ts";
import { mulberry32 } from "../../src/util/random.ts";
import { defaultModelDir } from "../embed/helpers.ts";

const CORPUS = resolve("test/seeds/corpus");
const tmp = mkdtempSync(join(tmpdir(), "rankchain-seeds-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const model = defaultModelDir();
const env = { ...process.env, HF_HUB_OFFLINE: "1", TRANSFORMERS_OFFLINE: "1", ONNXRUNTIME_NODE_INSTALL: "skip" };

/** Everything planted in the fixture corpus that must never become a seed or a held-out sentence. */
const PLANTED = [
  "All rights reserved", // boilerplate (markdown footer and HTML footer)
  "cookie", // cookie banner
  "Log in", // navigation
  "refund(ticket_id", // fenced code
  "computeRefund", // indented code
  "curl -X", // <pre><code>
  "tracking = function", // <script>
  "color: red", // <style>
  "Response time", // markdown table
  "4.99 USD", // HTML table
  "foo.bar", // code in a CSV cell
  "12345 67890", // mostly non-letters
  "author: test fixture", // front matter
];

function readJsonl<T>(p: string): T[] {
  return readFileSync(p, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l) as T);
}

/** The source line, stripped the way a reader would see it, contains the sentence's first words. */
function lineShowsSeed(seed: SeedRecord): boolean {
  const lines = readFileSync(seed.source.file, "utf8").split("\n");
  // a sentence may start at the end of its line and go on in the next one
  const line = `${lines[seed.source.line - 1] ?? ""} ${lines[seed.source.line] ?? ""}`;
  const plain = line.replace(/<[^>]+>/g, " ").replace(/\[([^\]]*)\]\([^)]*\)/g, "$1").replace(/&amp;/g, "&").replace(/\s+/g, " ");
  const firstWords = seed.text.split(/\s+/).slice(0, 3).join(" ");
  return plain.includes(firstWords) && (lines[seed.source.line - 1] ?? "").includes(seed.text.split(/\s+/)[0]!);
}

describe.skipIf(model.missing)("rankchain seeds on a fixture corpus (real all-MiniLM-L6-v2)", () => {
  it("keeps prose, drops markup/boilerplate/code/tables and duplicates, keeps sources, holds out a split", async () => {
    const out = join(tmp, "a", "seeds.jsonl");
    const events: SeedsProgress[] = [];
    const summary = await extractSeeds({
      from: [CORPUS],
      out,
      field: "doc.body",
      column: "body",
      sample: 50,
      holdout: 0.3,
      embedder: model.dir,
      onProgress: (e) => events.push(e),
    });
    const seeds = readJsonl<SeedRecord>(out);
    const holdout = readFileSync(summary.holdout_out!, "utf8").split("\n").filter(Boolean);
    const all = [...seeds.map((s) => s.text), ...holdout];

    for (const p of PLANTED) expect(all.filter((t) => t.includes(p)), p).toEqual([]);
    // planted exact duplicates: the same sentence in handbook.md and faq.html / tickets.csv; a CSV
    // row that differs only in punctuation
    expect(all.filter((t) => t.startsWith("Our support team answers every ticket"))).toHaveLength(1);
    expect(all.filter((t) => t.startsWith("The warehouse ships most orders"))).toHaveLength(1);
    expect(all.filter((t) => t.startsWith("I was charged twice"))).toHaveLength(1);
    // planted near duplicate (one added word): at most one of the pair is a seed
    expect(seeds.filter((s) => /customers (have )?complained that the tracking page/.test(s.text)).length).toBeLessThanOrEqual(1);
    // seeds and holdout are disjoint, and the holdout is a real share
    const seedTexts = new Set(seeds.map((s) => s.text));
    expect(holdout.filter((h) => seedTexts.has(h))).toEqual([]);
    expect(holdout.length).toBeGreaterThan(0);
    expect(seeds.length).toBeGreaterThan(8);
    // every seed names the file and line it came from
    for (const s of seeds) expect(lineShowsSeed(s), JSON.stringify(s)).toBe(true);
    expect(new Set(seeds.map((s) => s.source.file.split("/").pop()))).toEqual(new Set(["faq.html", "handbook.md", "tickets.csv", "meeting.txt", "data.jsonl"]));
    // markup was stripped: link text kept, entity decoded
    expect(all).toContain("Please read the escalation policy before your first shift on the queue.");
    expect(all.some((t) => t.includes("thirty days & a replacement"))).toBe(true);
    // counts say what happened
    expect(summary.skipped_files).toBe(1); // notes/ignored.pdf
    expect(summary.filtered.boilerplate).toBeGreaterThanOrEqual(2);
    expect(summary.filtered.code).toBeGreaterThanOrEqual(1);
    expect(summary.dropped_lines.code_lines).toBeGreaterThan(3);
    expect(summary.dropped_lines.table_lines).toBeGreaterThanOrEqual(4);
    expect(summary.exact_duplicates).toBeGreaterThanOrEqual(3);
    expect(events.some((e) => e.phase === "read" && e.done === e.total)).toBe(true);
    // generate reads the file as it is
    const seedFile = readSeeds(out);
    expect(seedFile.seeds.map((s) => s.text)).toEqual(seeds.map((s) => s.text));
  });

  it("the near duplicate planted in meeting.txt is caught by the embedding LSH when both are candidates", async () => {
    const out = join(tmp, "b", "seeds.jsonl");
    const summary = await extractSeeds({ from: [join(CORPUS, "notes", "meeting.txt")], out, sample: 10, holdout: 0, embedder: model.dir });
    const seeds = readJsonl<SeedRecord>(out);
    expect(summary.near_duplicates).toBe(1);
    expect(seeds.filter((s) => /complained that the tracking page/.test(s.text))).toHaveLength(1);
  });

  it("--by-source picks from every file before any file gets a second seed", async () => {
    const out = join(tmp, "c", "seeds.jsonl");
    await extractSeeds({ from: [CORPUS], out, field: "doc.body", column: "body", sample: 5, holdout: 0, bySource: true, embedder: model.dir });
    const files = readJsonl<SeedRecord>(out).map((s) => s.source.file);
    expect(new Set(files).size).toBe(5);
  });

  it("CLI: prints a JSON summary; bad input exits 2 naming file:line, column or flag", () => {
    const out = join(tmp, "d", "seeds.jsonl");
    const ok = spawnSync("node", ["bin/rankchain.js", "seeds", "--from", CORPUS, "--out", out, "--field", "doc.body", "--column", "body", "--sample", "3", "--quiet", "--embedder", model.dir], { env, encoding: "utf8" });
    expect(ok.status, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout).seeds).toBe(3);
    expect(readJsonl(out)).toHaveLength(3);

    const badColumn = spawnSync("node", ["bin/rankchain.js", "seeds", "--from", join(CORPUS, "tickets.csv"), "--out", out, "--quiet"], { env, encoding: "utf8" });
    expect(badColumn.status).toBe(2);
    expect(badColumn.stderr).toContain('tickets.csv:1: no column "text" (--column); the header has: id, subject, body');

    const badJson = join(tmp, "bad.jsonl");
    writeFileSync(badJson, '{"text": "A fine sentence with enough words in it."}\n{"text": oops}\n');
    const r = spawnSync("node", ["bin/rankchain.js", "seeds", "--from", badJson, "--out", out, "--quiet"], { env, encoding: "utf8" });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/bad\.jsonl:2: invalid JSON/);

    const badFlag = spawnSync("node", ["bin/rankchain.js", "seeds", "--from", CORPUS, "--out", out, "--holdout", "1.5"], { env, encoding: "utf8" });
    expect(badFlag.status).toBe(2);
    expect(badFlag.stderr).toContain("--holdout");
  });
});

describe("seed extraction parts", () => {
  it("filters name why a sentence is not a seed", () => {
    const o = { minWords: 5, maxWords: 60 };
    expect(filterSentence("Refunds above five hundred dollars need approval.", o)).toBeUndefined();
    expect(filterSentence("Copyright 2024 Example Corp. All rights reserved.", o)).toBe("boilerplate");
    expect(filterSentence("const total = items.reduce((a, b) => a + b, 0);", o)).toBe("code");
    expect(filterSentence("| High | One hour |", o)).toBe("table");
    expect(filterSentence("12345 67890 !!! ### $$$ %%% 2024-01-01", o)).toBe("non_letter");
    expect(filterSentence("Thanks a lot!", o)).toBe("too_short");
  });

  it("k-center greedy covers every cluster before repeating one; groups are balanced", () => {
    const rand = mulberry32(7);
    const centers = [0, 1, 2].map(() => Float32Array.from({ length: 16 }, () => rand() - 0.5));
    const vecs: Float32Array[] = [];
    const cluster: number[] = [];
    for (let c = 0; c < 3; c++)
      for (let i = 0; i < 20; i++) {
        const v = Float32Array.from(centers[c]!, (x) => x + (rand() - 0.5) * 0.05);
        const n = Math.hypot(...v);
        vecs.push(v.map((x) => x / n));
        cluster.push(c);
      }
    const picks = kCenterGreedy(vecs, 3);
    expect(new Set(picks.map((i) => cluster[i]))).toEqual(new Set([0, 1, 2]));
    // groups that do not follow the clusters: every group once before any twice
    const groups = vecs.map((_, i) => `g${i % 4}`);
    const byGroup = kCenterGreedy(vecs, 4, groups);
    expect(new Set(byGroup.map((i) => groups[i]))).toEqual(new Set(["g0", "g1", "g2", "g3"]));
  });

  it("the reservoir stays bounded and samples uniformly; the Bloom filter catches every repeat", () => {
    const r = new WeightedReservoir<number>(100, mulberry32(1));
    const hits = new Array<number>(10).fill(0);
    for (let round = 0; round < 200; round++) {
      const rr = new WeightedReservoir<number>(100, mulberry32(round));
      for (let i = 0; i < 1000; i++) rr.offer(i);
      for (const x of rr.items()) hits[Math.floor(x / 100)]!++;
    }
    for (let i = 0; i < 5000; i++) r.offer(i);
    expect(r.size).toBe(100);
    // each decile holds ~10% of the picks (2000 per decile expected; well inside ±15%)
    for (const h of hits) expect(Math.abs(h - 2000)).toBeLessThan(300);
    const bloom = new BloomFilter(1 << 16);
    for (let i = 0; i < 5000; i++) expect(bloom.addIfNew(`s${i}`)).toBe(true);
    for (let i = 0; i < 5000; i++) expect(bloom.addIfNew(`s${i}`)).toBe(false);
  });
});
