import { existsSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { modelsDir } from "../../src/config/paths.ts";
import { cosine, createEmbedder, readModelDir, registryEntry, resolveEmbedderSpec, type Embedder } from "../../src/embed/index.ts";
import { pythonMissing, sentenceTransformersEmbed } from "./helpers.ts";

process.env.HF_HUB_OFFLINE = "1";

const SENTENCES = ["A man is playing a guitar.", "Someone is making music.", "The stock market fell sharply today.", "Ein Satz auf Deutsch.", ""];
const dir = join(modelsDir(), "all-mpnet-base-v2");
const missing = existsSync(join(dir, "onnx", "model.onnx")) ? undefined : `${dir} has no onnx/model.onnx (run scripts/setup-embedder.sh)`;
const skipReason = missing ?? pythonMissing();
if (skipReason) console.warn(`skipping all-mpnet-base-v2 tests: ${skipReason}`);

describe("registry: all-mpnet-base-v2, the second carried embedder", () => {
  it("is a frozen registry entry resolved to <cache>/models/all-mpnet-base-v2", () => {
    const e = registryEntry("all-mpnet-base-v2")!;
    expect(e).toMatchObject({ backend: "onnx", model: "sentence-transformers/all-mpnet-base-v2", dtype: "fp32", pooling: "mean", normalize: true, dimensions: 768 });
    expect(Object.isFrozen(e)).toBe(true);
    expect(resolveEmbedderSpec("all-mpnet-base-v2")).toEqual({ kind: "registry", name: "all-mpnet-base-v2", dir });
  });
});

describe.skipIf(skipReason !== undefined)("all-mpnet-base-v2 exported by scripts/setup-embedder.sh", () => {
  let embedder: Embedder;
  beforeAll(async () => {
    embedder = await createEmbedder("all-mpnet-base-v2", { batchSize: 2 });
  }, 120_000);
  afterAll(async () => {
    await embedder?.dispose();
  });

  it("reads pooling, normalisation and size from the model's own config, matching the registry", () => {
    const cfg = readModelDir(dir);
    const e = registryEntry("all-mpnet-base-v2")!;
    expect({ pooling: cfg.pooling, normalize: cfg.normalize, dimensions: cfg.dimensions, dtype: cfg.dtype }).toEqual({
      pooling: e.pooling,
      normalize: e.normalize,
      dimensions: e.dimensions,
      dtype: e.dtype,
    });
    expect(cfg.maxLength).toBe(384);
    expect(embedder.info).toMatchObject({ id: "onnx:all-mpnet-base-v2", pooling: "mean", normalize: true, dimensions: 768 });
  });

  it("matches sentence-transformers on the same weights (cosine ≥ 0.999) and differs from MiniLM", async () => {
    const reference = sentenceTransformersEmbed(dir, SENTENCES);
    const vectors = await embedder.embed(SENTENCES);
    vectors.forEach((v, i) => {
      expect(v.length).toBe(768);
      expect(cosine(v, reference[i]!), `sentence ${i}`).toBeGreaterThanOrEqual(0.999);
    });
    expect(cosine(vectors[0]!, vectors[1]!)).toBeGreaterThan(cosine(vectors[0]!, vectors[2]!));
  }, 120_000);
});
