import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { runGenerate } from "../../src/generate/run.ts";
import { pullModel } from "../../src/models/index.ts";
import { ChainRecordSchema } from "../../src/store/chain-record.ts";
import { config, readJsonlFile, tmpDir, writeSeeds } from "../generate/helpers.ts";

/**
 * SmolLM2-135M copies most inputs at greedy decoding, and at step 1 of CFG both prompts hold the
 * anchor, so guidance cancels: before issue 14 such chains ended at step 1 as `duplicate`. Now a
 * copied step is retried with changed settings (sampling, and CFG away from a "repeat the
 * sentence" prompt), each change recorded in the chain.
 */
beforeAll(async () => {
  await pullModel();
}, 300_000);

describe("drift with the real SmolLM2 at greedy CFG", () => {
  it("a copied first step is retried with recorded changes, and chains get past step 1", async () => {
    const dir = tmpDir();
    const out = join(dir, "run");
    const seeds = ["A man is riding a bicycle down a quiet street.", "Two children are playing soccer in the park."];
    await runGenerate(
      config({ input: writeSeeds(dir, seeds), out, provider: "local", model: "smollm2-135m-instruct", steering: "cfg", guidance: 1.5, cfgTopK: 20, steps: 2, concurrency: 1, temperature: 0, maxOutputTokens: 40, gpu: "off" }),
    );
    const raw = readJsonlFile(join(out, "chains.jsonl"));
    expect(raw).toHaveLength(2);
    let past1 = 0;
    for (const r of raw) {
      const c = ChainRecordSchema.parse(r);
      const retries = (r.retries ?? []) as { step: number; reason: string; changed: Record<string, unknown> }[];
      if (c.steps.length >= 1) past1++;
      if (c.truncated?.at_step === 1) {
        // never silent: the step was retried, with what changed
        expect(retries.filter((x) => x.step === 1).length).toBeGreaterThanOrEqual(2);
      }
      for (const x of retries) {
        expect(Object.keys(x.changed).length).toBeGreaterThan(0);
        if (x.reason === "duplicate") expect(x.changed.negative_prompt).toBe("repeat-the-sentence");
      }
    }
    expect(past1).toBeGreaterThanOrEqual(1);
  }, 300_000);
});
