import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { pullModel } from "../../src/models/index.ts";
import { runGenerate } from "../../src/generate/run.ts";
import { NoUsableChainsError } from "../../src/errors.ts";
import { ChainRecordSchema } from "../../src/store/chain-record.ts";
import { config, readJsonlFile, SEEDS, tmpDir, writeSeeds } from "../generate/helpers.ts";

beforeAll(async () => {
  await pullModel(undefined, { onProgress: (m) => process.stderr.write(`[models] ${m}\n`) });
});

describe("generate with the embedded local model", () => {
  it("records CFG chains (guidance, prompt, top-K approximation) at $0 with tokens counted", async () => {
    const dir = tmpDir();
    const out = join(dir, "run");
    const s = await runGenerate(
      config({ input: writeSeeds(dir, SEEDS.slice(0, 2)), out, provider: "local", model: "smollm2-135m-instruct", steering: "cfg", guidance: 1.5, cfgTopK: 20, steps: 2, concurrency: 1, temperature: 0.7, seed: 3, maxOutputTokens: 48, gpu: "off" }),
    );
    expect(s.status).toBe("completed");
    const chains = readJsonlFile(join(out, "chains.jsonl")).map((c) => ChainRecordSchema.parse(c));
    expect(chains).toHaveLength(2);
    for (const c of chains) {
      expect(c.generator).toMatchObject({ provider: "local", model: "smollm2-135m-instruct", steering: "cfg", guidance: 1.5, cfg_top_k: 20, prompt: "cfg-rewrite", prompt_version: 3 });
      expect(c.usage.usd).toBe(0);
      expect(c.usage.output_tokens).toBeGreaterThan(0);
      expect(c.steps.length + (c.truncated ? 1 : 0)).toBeGreaterThanOrEqual(1);
    }
    expect(s.manifest.totals.usd).toBe(0);
    expect(s.manifest.fingerprint).toMatchObject({ steering: "cfg", guidance: 1.5, cfg_top_k: 20 });
  }, 300_000);

  it("stepwise steering also runs on the local model, so strategies compare on one model", async () => {
    const dir = tmpDir();
    const out = join(dir, "run");
    // the tiny model may leave this one chain empty: that run ends as no_usable_chains (exit 1), and
    // its record is still written
    await runGenerate(config({ input: writeSeeds(dir, SEEDS.slice(2, 3)), out, provider: "local", model: "smollm2-135m-instruct", steering: "stepwise", steps: 2, concurrency: 1, temperature: 0.7, seed: 3, maxOutputTokens: 48, gpu: "off" })).catch(
      (e: unknown) => {
        if (!(e instanceof NoUsableChainsError)) throw e;
      },
    );
    const [chain] = readJsonlFile(join(out, "chains.jsonl"));
    expect(chain.generator).toMatchObject({ provider: "local", steering: "stepwise", prompt: "stepwise" });
    expect(chain.generator.guidance).toBeUndefined();
  }, 300_000);
});
