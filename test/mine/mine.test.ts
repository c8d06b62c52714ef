import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createEmbedder, type Embedder } from "../../src/embed/index.ts";
import { modelsDir } from "../../src/config/paths.ts";
import { mineHardNegatives, mineRun, type GroupRecord, type MineRunSummary } from "../../src/mine/index.ts";
import { runPosttrain } from "../../src/posttrain/index.ts";
import { pythonMissing } from "../embed/helpers.ts";

process.env.HF_HUB_OFFLINE = "1";

// Hand-written chains (anchor, then rewrites drifting away), as in posttrain/tests/conftest.py.
const CHAINS = [
  ["A man is playing a guitar on stage.", "A man plays a guitar in front of an audience.", "A musician performs a song for a crowd.", "People gather at a concert in the park.", "The city park hosts many events each summer."],
  ["The cat is sleeping on the sofa.", "A cat naps on the couch.", "A pet rests in the living room.", "The living room has new furniture.", "The family bought a house last year."],
  ["A woman is slicing tomatoes in the kitchen.", "A woman cuts tomatoes for a salad.", "Someone is preparing a meal at home.", "Dinner is served to the guests.", "The restaurant opened a new branch."],
  ["Two children are building a sandcastle.", "Kids make a castle out of sand on the beach.", "A family spends the day at the seaside.", "The beach is crowded in August.", "Tourism grows along the coast."],
  ["The train arrived at the station late.", "The train was delayed before reaching the platform.", "Commuters waited for their ride home.", "Public transport is busy in the evening.", "The city plans a new subway line."],
  ["A dog is chasing a ball in the yard.", "A puppy runs after a ball outside.", "Pets need exercise every day.", "Veterinarians recommend a healthy diet.", "Animal clinics open on weekends."],
];
// The planted false negative: a paraphrase of chain 0's positive ("A man plays a guitar in front of an audience.").
const PLANTED = "A man is playing the guitar in front of an audience.";
const CORPUS = [PLANTED, "Stock prices fell sharply on Monday.", "The committee approved the new budget.", "Rain is expected over the weekend.", "A violinist tunes her instrument backstage."];

function writeRun(dir: string): void {
  const lines = CHAINS.map((s, i) =>
    JSON.stringify({
      id: `c${i}`,
      anchor: s[0],
      steps: s.slice(1),
      generator: { provider: "local", model: "test", steering: "cfg", prompt: "cfg-rewrite", prompt_version: 1 },
      usage: { input_tokens: 0, output_tokens: 0, usd: 0 },
      validation: { embedder: "onnx:all-MiniLM-L6-v2", sims_to_anchor: [], spearman: 1, inversions: 0, status: "accepted", reasons: [] },
    }),
  );
  // a rejected chain is never mined
  lines.push(JSON.stringify({ id: "rej", anchor: "x", steps: ["y"], validation: { status: "rejected" } }));
  writeFileSync(join(dir, "validated.jsonl"), lines.join("\n") + "\n");
  writeFileSync(join(dir, "corpus.txt"), CORPUS.join("\n") + "\n");
}

const missing = ["all-MiniLM-L6-v2", "all-mpnet-base-v2"].filter((n) => !existsSync(join(modelsDir(), n, "onnx", "model.onnx")));
const skipReason = missing.length ? `${missing.join(", ")} not exported under ${modelsDir()} (run scripts/setup-embedder.sh)` : undefined;
if (skipReason) console.warn(`skipping mine tests with real embedders: ${skipReason}`);

describe.skipIf(skipReason !== undefined)("rankchain mine with the two carried embedders", () => {
  let dir: string;
  let embedders: Embedder[];
  let summary: MineRunSummary;
  let groups: GroupRecord[];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "rankchain-mine-"));
    writeRun(dir);
    embedders = [await createEmbedder("all-MiniLM-L6-v2"), await createEmbedder("all-mpnet-base-v2")];
    summary = await mineRun({ data: dir, embedders, corpus: join(dir, "corpus.txt"), topK: 20, groupSize: 4 });
    groups = readFileSync(join(dir, "groups.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as GroupRecord);
  }, 120_000);
  afterAll(async () => {
    for (const e of embedders ?? []) await e.dispose();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("the guard drops the planted paraphrase of the positive, and mine.json says so", () => {
    const onDisk = JSON.parse(readFileSync(join(dir, "mine.json"), "utf8")) as MineRunSummary;
    expect(onDisk.dropped.guard.count).toBeGreaterThanOrEqual(1);
    const s = onDisk.dropped.guard.samples.find((x) => x.candidate === PLANTED);
    expect(s, JSON.stringify(onDisk.dropped.guard.samples)).toBeDefined();
    expect(s!.chain_id).toBe("c0");
    expect(s!.positive).toBe(CHAINS[0]![1]);
    expect(s!.score!).toBeGreaterThan(s!.threshold!);
    expect(s!.threshold!).toBeCloseTo(0.95 * s!.positive_score!, 5);
    const g0 = groups.find((g) => g.chain_id === "c0")!;
    expect(g0.negatives.map((n) => n.text)).not.toContain(PLANTED);
  });

  it("writes one group per kept chain: query, positive, G-1 negatives with each embedder's scores and ranks", () => {
    expect(summary.chains).toBe(6);
    expect(summary.chains_skipped.rejected).toBe(1);
    expect(groups).toHaveLength(6);
    const ids = embedders.map((e) => e.info.id);
    expect(ids).toEqual(["onnx:all-MiniLM-L6-v2", "onnx:all-mpnet-base-v2"]);
    for (const g of groups) {
      const chain = CHAINS[Number(g.chain_id.slice(1))]!;
      expect(g.query).toBe(chain[0]);
      expect(g.positive).toBe(chain[1]);
      expect(g.negatives).toHaveLength(3);
      const texts = g.negatives.map((n) => n.text);
      // never the query, the positive or a near step of the same chain
      for (const near of chain.slice(0, 3)) expect(texts).not.toContain(near);
      for (const n of g.negatives) {
        expect(Object.keys(n.scores)).toEqual(ids);
        expect(Object.keys(n.ranks)).toEqual(ids);
        if (n.source.kind === "same_chain") expect(n.source.position).toBeGreaterThanOrEqual(3);
      }
      // rrf order: fused scores descend
      for (let j = 1; j < g.negatives.length; j++) expect(g.negatives[j]!.fused).toBeLessThanOrEqual(g.negatives[j - 1]!.fused);
    }
    expect(summary.index).toEqual({ "onnx:all-MiniLM-L6-v2": "exact", "onnx:all-mpnet-base-v2": "exact" });
    expect(summary.pool).toMatchObject({ texts: 35, chain_sentences: 30, corpus_lines: 5 });
  });

  it("without the guard the planted paraphrase becomes a negative of its chain (so the guard is what removed it)", async () => {
    const chains = CHAINS.map((s, i) => ({ id: `c${i}`, sentences: s }));
    const corpus = CORPUS.map((text, i) => ({ text, line: i + 1 }));
    const r = await mineHardNegatives({ chains, corpus, embedders, topK: 20, groupSize: 4, guard: null });
    expect(r.groups.find((g) => g.chain_id === "c0")!.negatives.map((n) => n.text)).toContain(PLANTED);
    expect(r.summary.dropped.guard.count).toBe(0);
  }, 120_000);

  it("groups.jsonl round-trips into training: chain_listmle:1,lce:0.5 on the run directory", async () => {
    const py = pythonMissing();
    if (py) {
      console.warn(`skipping the training round trip: ${py}`);
      return;
    }
    const out = join(dir, "post");
    const r = await runPosttrain({
      data: dir,
      baseModel: join(modelsDir(), "all-MiniLM-L6-v2"),
      out,
      loss: "chain_listmle:1,lce:0.5",
      device: "cpu",
      maxSteps: 1,
      batchChains: 3,
      batchGroups: 3,
      maxSeqLength: 32,
      noExport: true,
    });
    expect(r.exitCode, r.stderrTail.join("\n")).toBe(0);
    const rec = JSON.parse(readFileSync(join(out, "training.json"), "utf8")) as {
      final_loss_parts: Record<string, number>;
      groups: { file: string; groups: number; group_size: number };
    };
    expect(Object.keys(rec.final_loss_parts).sort()).toEqual(["chain_listmle", "lce"]);
    expect(rec.final_loss_parts.lce).toBeGreaterThan(0);
    expect(rec.groups).toMatchObject({ file: join(dir, "groups.jsonl"), groups: 6, group_size: 4 });
  }, 300_000);

  it("the HNSW path (pool above --exact-max) gives the same groups on a small pool", async () => {
    const chains = CHAINS.map((s, i) => ({ id: `c${i}`, sentences: s }));
    const corpus = CORPUS.map((text, i) => ({ text, line: i + 1 }));
    const exact = await mineHardNegatives({ chains, corpus, embedders, topK: 20, groupSize: 4 });
    const ann = await mineHardNegatives({ chains, corpus, embedders, topK: 20, groupSize: 4, exactMax: 10 });
    expect(ann.summary.index["onnx:all-MiniLM-L6-v2"]).toBe("hnsw");
    expect(ann.groups.map((g) => g.negatives.map((n) => n.text))).toEqual(exact.groups.map((g) => g.negatives.map((n) => n.text)));
    // mean fusion is also available and orders by the mean cosine
    const mean = await mineHardNegatives({ chains, corpus, embedders, topK: 20, groupSize: 4, fusion: "mean" });
    for (const g of mean.groups) {
      for (const n of g.negatives) {
        const vals = Object.values(n.scores);
        expect(n.fused).toBeCloseTo(vals.reduce((a, b) => a + b, 0) / vals.length, 5);
      }
    }
  }, 120_000);
});

describe("rankchain mine CLI: bad input exits 2 before any model loads", () => {
  const bin = resolve("bin/rankchain.js");
  const run = (args: string[]) => spawnSync(process.execPath, [bin, "mine", ...args], { encoding: "utf8", env: { ...process.env, HF_HUB_OFFLINE: "1" } });

  it("names the flag or the file", () => {
    const dir = mkdtempSync(join(tmpdir(), "rankchain-mine-cli-"));
    try {
      let r = run([dir, "--fusion", "max"]);
      expect(r.status).toBe(2);
      expect(r.stderr).toMatch(/--fusion expects one of rrf, mean/);
      r = run([dir, "--guard", "-1"]);
      expect(r.status).toBe(2);
      expect(r.stderr).toMatch(/--guard/);
      r = run([dir, "--embedders", "all-MiniLM-L6-v2,,x"]);
      expect(r.status).toBe(2);
      r = run([dir]);
      expect(r.status).toBe(2);
      expect(r.stderr).toMatch(/neither validated.jsonl nor chains.jsonl/);
      writeFileSync(join(dir, "validated.jsonl"), "{not json\n");
      r = run([dir, "--embedders", "no-such-embedder-name"]);
      expect(r.status).toBe(2);
      expect(r.stderr).toMatch(/no-such-embedder-name/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 180_000);
});
