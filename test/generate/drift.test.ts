import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { driftFailure, lengthBand, subsample } from "../../src/generate/drift.ts";
import { runGenerate } from "../../src/generate/run.ts";
import { ChainRecordSchema } from "../../src/store/chain-record.ts";
import { isAppend } from "../../src/util/text.ts";
import { startOpenAIServer, type OpenAIServer } from "../servers/index.ts";
import { config, readJsonlFile, tmpDir, writeSeeds } from "./helpers.ts";

const KEY = "sk-test-openai-drift-0123456789abcdefghij";
let server: OpenAIServer;
beforeAll(async () => {
  process.env.OPENAI_API_KEY = KEY;
  server = await startOpenAIServer({ apiKey: KEY });
});
afterAll(async () => {
  await server.close();
});

const ANCHOR = "A man is riding a bicycle down a quiet street.";

describe("drift rules", () => {
  it("length band, append and return", () => {
    expect(lengthBand(ANCHOR)).toEqual({ min: 5, max: 19 });
    expect(driftFailure("A man is cycling along a quiet road.", ANCHOR, [], { checkReturn: true })).toBeUndefined();
    expect(driftFailure("Man cycles.", ANCHOR, [], { checkReturn: true })).toBe("length-band");
    expect(driftFailure("A man is cycling along a quiet road, then he stops for coffee at a small cafe on the corner of the old town square.", ANCHOR, [], { checkReturn: false })).toBe(
      "length-band",
    );
    const s1 = "A man is cycling along a busy road.";
    expect(driftFailure("A man is cycling along a busy road while it rains.", ANCHOR, [s1], { checkReturn: false })).toBe("append");
    expect(isAppend("The cat is napping on the sofa.", "The cat is playing with a ball of yarn on the sofa.")).toBe(false);
    // step 2 walks back to the anchor's words: a return under prompt steering, not under CFG
    const s2 = "A man is riding a bicycle down a quiet street today.";
    expect(driftFailure(s2, ANCHOR, [s1, "A woman is walking along a busy road."], { checkReturn: true })).toBe("return");
    expect(driftFailure(s2, ANCHOR, [s1, "A woman is walking along a busy road."], { checkReturn: false })).toBeUndefined();
  });

  it("subsample keeps every k-th step", () => {
    expect(subsample(["a", "b", "c", "d", "e"], 2)).toEqual({ steps: ["b", "d"], indexes: [2, 4] });
    expect(subsample(["a", "b"], 1)).toEqual({ steps: ["a", "b"], indexes: [1, 2] });
    expect(() => subsample(["a"], 0)).toThrow(RangeError);
  });
});

describe("a copying model never ends a chain silently", () => {
  it("retries a copied step with changed settings, records each change, and records the truncation", async () => {
    // the server copies the last sentence of the prompt: every attempt is a duplicate
    server.setResponder((req) => {
      const text = String(req.body.messages.at(-1).content);
      const m = [...text.matchAll(/<sentence>([\s\S]*?)<\/sentence>/g)].at(-1);
      return { type: "text", text: m ? m[1]! : ANCHOR };
    });
    const dir = tmpDir();
    const out = join(dir, "run");
    // every chain is empty, so the run ends with NoUsableChainsError, after writing the record
    await expect(
      runGenerate(config({ input: writeSeeds(dir, [ANCHOR]), out, provider: "openai", model: "gpt-4o-mini", baseUrl: server.baseURL, steps: 3, concurrency: 1, seed: 5 })),
    ).rejects.toThrow(/no usable chains/);
    const [chain] = readJsonlFile(join(out, "chains.jsonl")).map((c) => ChainRecordSchema.parse(c));
    expect(chain!.steps).toEqual([]);
    expect(chain!.truncated).toEqual({ at_step: 1, reason: "duplicate" });
    const retries = (chain as unknown as { retries: { step: number; reason: string; changed: Record<string, unknown> }[] }).retries;
    expect(retries).toHaveLength(2);
    expect(retries.map((r) => r.step)).toEqual([1, 1]);
    expect(retries.every((r) => r.reason === "duplicate")).toBe(true);
    expect(retries[0]!.changed).toMatchObject({ temperature: 0.7 });
    expect(retries[1]!.changed).toMatchObject({ temperature: 1 });
    expect(retries[0]!.changed.seed).not.toBe(retries[1]!.changed.seed);
    // the server saw the changed settings
    const sent = server.requests.filter((r) => r.path.endsWith("/chat/completions")).slice(-3);
    expect(sent.map((r) => r.body.temperature ?? 0)).toEqual([0, 0.7, 1]);
  }, 180_000);

  it("--oversample 2 generates a long chain and keeps every second step, recording both", async () => {
    server.setResponder(undefined);
    const dir = tmpDir();
    const out = join(dir, "run");
    await runGenerate(config({ input: writeSeeds(dir, [ANCHOR]), out, provider: "openai", model: "gpt-4o-mini", baseUrl: server.baseURL, steps: 2, oversample: 2, concurrency: 1 }));
    const [raw] = readJsonlFile(join(out, "chains.jsonl"));
    const chain = ChainRecordSchema.parse(raw);
    const long = (raw as { long_chain: { steps: string[]; kept: number[] } }).long_chain;
    expect(long.steps).toHaveLength(4);
    expect(long.kept).toEqual([2, 4]);
    expect(chain.steps).toEqual([long.steps[1], long.steps[3]]);
    expect(chain.generator).toMatchObject({ oversample: 2 });
  }, 180_000);
});
