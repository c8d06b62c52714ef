import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import { runGenerate } from "../../src/generate/run.ts";
import { inShard, parseShard, shardOf } from "../../src/generate/shard.ts";
import { mergeRuns } from "../../src/store/merge.ts";
import { readManifest } from "../../src/store/run-dir.ts";
import { ConfigError } from "../../src/errors.ts";
import { startOpenAIServer, type OpenAIServer } from "../servers/index.ts";
import { config, readJsonlFile, SEEDS, tmpDir, writeSeeds } from "./helpers.ts";

const KEY = "sk-test-shard-0123456789abcdefghijklmnop";
let openai: OpenAIServer;
beforeAll(async () => {
  process.env.OPENAI_API_KEY = KEY;
  openai = await startOpenAIServer({ apiKey: KEY });
});
afterAll(async () => openai.close());

const MORE = [...SEEDS, ...SEEDS.map((s) => s.replace(/\.$/, " again."))];

describe("--shard i/n", { timeout: 180_000 }, () => {
  it("puts every text in exactly one shard, whatever n", () => {
    fc.assert(
      fc.property(fc.string(), fc.integer({ min: 1, max: 64 }), (text, n) => {
        const hits = Array.from({ length: n }, (_, i) => inShard(text, { index: i, count: n }));
        expect(hits.filter(Boolean)).toHaveLength(1);
        expect(hits[shardOf(text, n)]).toBe(true);
      }),
    );
  });

  it("rejects malformed and out-of-range shards naming the flag", () => {
    for (const bad of ["3", "4/4", "-1/2", "a/b", "1/0"]) expect(() => parseShard(bad)).toThrow(/--shard expects i\/n/);
    expect(parseShard(" 2/5 ")).toEqual({ index: 2, count: 5 });
  });

  it("the union of n shards equals the unsharded run; merge sums the ledgers and refuses mismatched settings", async () => {
    const dir = tmpDir();
    const input = writeSeeds(dir, MORE);
    const base = { input, provider: "openai" as const, model: "gpt-4o-mini", baseUrl: openai.baseURL, steps: 2 };
    const whole = join(dir, "whole");
    await runGenerate(config({ ...base, out: whole }));
    const n = 3;
    const parts: string[] = [];
    for (let i = 0; i < n; i++) {
      const out = join(dir, `part${i}`);
      await runGenerate(config({ ...base, out, shard: `${i}/${n}` }));
      parts.push(out);
    }
    const partChains = parts.map((p) => readJsonlFile(join(p, "chains.jsonl")));
    const ids = partChains.flat().map((c) => c.id);
    expect(new Set(ids).size).toBe(ids.length); // disjoint
    expect(partChains.every((c) => c.length > 0 && c.length < MORE.length)).toBe(true);
    const wholeChains = readJsonlFile(join(whole, "chains.jsonl"));
    const key = (c: any) => JSON.stringify([c.id, c.anchor, c.steps]);
    expect(partChains.flat().map(key).sort()).toEqual(wholeChains.map(key).sort());

    const merged = join(dir, "merged");
    const s = await mergeRuns(merged, parts);
    expect(s.chains).toBe(MORE.length);
    const m = readManifest(merged)!;
    const partUsd = parts.map((p) => readManifest(p)!.totals.usd).reduce((a, b) => a + b, 0);
    expect(m.totals.usd).toBeCloseTo(partUsd, 9);
    expect(m.totals.chains_done).toBe(MORE.length);
    expect(m.totals.seeds).toBe(MORE.length);
    expect(m.fingerprint["shard"]).toBeNull();
    const ledger = readJsonlFile(join(merged, "ledger.jsonl"));
    expect(new Set(ledger.map((e) => e.id)).size).toBe(ledger.filter((e) => e.type === "reserve").length);
    // resuming the merged run unsharded finds nothing left to pay for
    openai.clearRequests();
    const again = await runGenerate(config({ ...base, out: merged, resume: true }));
    expect(again.chainsWrittenNow).toBe(0);
    expect(openai.requestsTo("/v1/chat/completions")).toHaveLength(0);

    const other = join(dir, "other");
    await runGenerate(config({ ...base, out: other, steps: 3, shard: `0/${n}` }));
    await expect(mergeRuns(join(dir, "bad"), [parts[1]!, other])).rejects.toThrow(/different settings \(steps: 2 in .*, 3 in/);
    await expect(mergeRuns(join(dir, "bad2"), [parts[1]!, parts[1]!])).rejects.toBeInstanceOf(ConfigError);
  });

  it("merge dedups overlapping runs by chain id and settles a killed part's open reservation at worst case", async () => {
    const dir = tmpDir();
    const input = writeSeeds(dir, SEEDS.slice(0, 4));
    const base = { input, provider: "openai" as const, model: "gpt-4o-mini", baseUrl: openai.baseURL, steps: 2, maxUsd: 1 };
    const a = join(dir, "a");
    const b = join(dir, "b");
    await runGenerate(config({ ...base, out: a }));
    await runGenerate(config({ ...base, out: b }));
    // a reservation left open by a kill in b
    const { appendFileSync } = await import("node:fs");
    appendFileSync(join(b, "ledger.jsonl"), JSON.stringify({ type: "reserve", id: "r999", ts: new Date().toISOString(), usd: 0.25, input_tokens: 10, max_output_tokens: 100, model: "openai/gpt-4o-mini" }) + "\n");
    const s = await mergeRuns(join(dir, "m"), [a, b]);
    expect(s.chains).toBe(4);
    expect(s.duplicateChains).toBe(4);
    const ua = readManifest(a)!.totals.usd;
    const ub = readManifest(b)!.totals.usd;
    expect(s.usd).toBeCloseTo(ua + ub + 0.25, 9);
    const settled = readJsonlFile(join(dir, "m", "ledger.jsonl")).filter((e) => e.id === "m2.r999");
    expect(settled.map((e) => e.type)).toEqual(["reserve", "charge"]);
  });
});
