import { cpSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { env as hfEnv } from "@huggingface/transformers";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError } from "../../src/errors.ts";
import { cosine, createEmbedder, norm, OnnxEmbedder, type Embedder } from "../../src/embed/index.ts";
import { defaultModelDir, pythonMissing, runPythonJson, sentenceTransformersEmbed } from "./helpers.ts";

// Nothing from the hub in tests.
hfEnv.allowRemoteModels = false;
process.env.HF_HUB_OFFLINE = "1";

const SENTENCES = [
  "A man is playing a guitar.",
  "Hi",
  "A man plays the guitar on a small stage in front of a quiet audience.",
  "Ein Satz auf Deutsch mit Umlauten: äöü ß.",
  "Numbers 12,345 and symbols #@! mixed in.",
  "",
  "The quick brown fox jumps over the lazy dog. ".repeat(40), // longer than max_seq_length (256 tokens)
  "Two dogs run across a snowy field.",
  "emoji 🙂 and accents café naïve",
  "The stock market fell sharply today after the announcement.",
];

const model = defaultModelDir();
const py = model.missing ? undefined : pythonMissing();
const skipReason = model.missing ?? py;
if (skipReason) console.warn(`skipping ONNX embedder parity tests: ${skipReason}`);

describe.skipIf(skipReason !== undefined)("ONNX embedder (all-MiniLM-L6-v2 exported by scripts/setup-embedder.sh)", () => {
  let reference: number[][];
  let embedder: Embedder;

  beforeAll(async () => {
    reference = sentenceTransformersEmbed(model.dir, SENTENCES);
    // small batches and window: exercises length sorting and putting vectors back in order
    embedder = await createEmbedder("all-MiniLM-L6-v2", { batchSize: 3, sortWindow: 5 });
  });
  afterAll(async () => {
    await embedder?.dispose();
  });

  it("matches sentence-transformers (cosine ≥ 0.999 per sentence) and records what it is", async () => {
    const vectors = await embedder.embed(SENTENCES);
    expect(vectors).toHaveLength(SENTENCES.length);
    vectors.forEach((v, i) => {
      expect(v.length).toBe(384);
      expect(cosine(v, reference[i]!), `sentence ${i}`).toBeGreaterThanOrEqual(0.999);
      expect(norm(v)).toBeCloseTo(1, 4);
    });
    expect(embedder.info).toMatchObject({
      id: "onnx:all-MiniLM-L6-v2",
      backend: "onnx",
      dtype: "fp32",
      pooling: "mean",
      normalize: true,
      dimensions: 384,
      maxLength: 256,
    });
  });

  it("gives the same vector for a text whatever batch it is in", async () => {
    const alone = await embedder.embed([SENTENCES[2]!]);
    const mixed = await embedder.embed([SENTENCES[6]!, SENTENCES[1]!, SENTENCES[2]!]);
    expect(cosine(alone[0]!, mixed[2]!)).toBeGreaterThan(0.99999);
    expect(await embedder.embed([])).toEqual([]);
  });

  it("runs the same model through transformers.js' AutoModel with the same vectors", async () => {
    const viaHf = await createEmbedder(model.dir, { runtime: "transformers.js", batchSize: 4 });
    try {
      const vs = await viaHf.embed(SENTENCES);
      vs.forEach((v, i) => expect(cosine(v, reference[i]!), `sentence ${i}`).toBeGreaterThanOrEqual(0.999));
      expect(viaHf.info.runtime).toContain("transformers.js");
    } finally {
      await viaHf.dispose();
    }
  });

  describe("a directory whose graph has only last_hidden_state (pooling from the sentence-transformers files)", () => {
    let dir: string;
    beforeAll(() => {
      dir = join(mkdtempSync(join(tmpdir(), "rc-embed-")), "hidden-only");
      mkdirSync(join(dir, "onnx"), { recursive: true });
      for (const f of ["config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "modules.json", "sentence_bert_config.json"]) {
        cpSync(join(model.dir, f), join(dir, f));
      }
      cpSync(join(model.dir, "1_Pooling"), join(dir, "1_Pooling"), { recursive: true });
      symlinkSync(join(model.dir, "model.safetensors"), join(dir, "model.safetensors")); // for the Python reference
      // no rankchain_embedder.json: pooling (mean) and Normalize come from modules.json + 1_Pooling
      runPythonJson(
        [
          "import json, sys, onnx",
          "m = onnx.load(sys.argv[1])",
          "keep = [o for o in m.graph.output if o.name == 'last_hidden_state']",
          "del m.graph.output[:]",
          "m.graph.output.extend(keep)",
          "onnx.save(m, sys.argv[2])",
          "print(json.dumps(len(keep)))",
        ].join("\n"),
        null,
        [join(model.dir, "onnx", "model.onnx"), join(dir, "onnx", "model.onnx")],
      );
    });
    afterAll(() => rmSync(join(dir, ".."), { recursive: true, force: true }));

    it("pools and normalises in Node with the model's own configuration", async () => {
      const e = await OnnxEmbedder.fromDirectory(dir, { batchSize: 4 });
      try {
        expect(e.info.runtime).toBe("onnxruntime");
        expect(e.info.pooling).toBe("mean");
        expect(e.info.normalize).toBe(true);
        const vs = await e.embed(SENTENCES);
        vs.forEach((v, i) => expect(cosine(v, reference[i]!), `sentence ${i}`).toBeGreaterThanOrEqual(0.999));
      } finally {
        await e.dispose();
      }
    });

    it("honours CLS pooling and no normalisation when the pooling config says so", async () => {
      writeFileSync(join(dir, "1_Pooling", "config.json"), JSON.stringify({ word_embedding_dimension: 384, pooling_mode_cls_token: true }));
      writeFileSync(join(dir, "modules.json"), JSON.stringify([{ idx: 0, name: "0", path: "", type: "sentence_transformers.models.Transformer" }, { idx: 1, name: "1", path: "1_Pooling", type: "sentence_transformers.models.Pooling" }]));
      const ref = sentenceTransformersEmbed(dir, SENTENCES.slice(0, 4));
      const e = await OnnxEmbedder.fromDirectory(dir, { batchSize: 2 });
      try {
        expect(e.info).toMatchObject({ pooling: "cls", normalize: false });
        const vs = await e.embed(SENTENCES.slice(0, 4));
        vs.forEach((v, i) => {
          expect(cosine(v, ref[i]!)).toBeGreaterThanOrEqual(0.999);
          expect(norm(v)).toBeCloseTo(norm(ref[i]!), 2);
        });
        expect(Math.abs(norm(vs[0]!) - 1)).toBeGreaterThan(0.05);
      } finally {
        await e.dispose();
      }
    });
  });

  it("refuses to embed after dispose()", async () => {
    const e = await createEmbedder(model.dir);
    await e.dispose();
    await e.dispose(); // idempotent
    await expect(e.embed(["x"])).rejects.toThrow(/disposed/);
  });
});

describe("offline errors name the setting and the path", () => {
  it("registry name with an empty cache", async () => {
    const cache = mkdtempSync(join(tmpdir(), "rc-cache-"));
    try {
      const err = await createEmbedder("all-MiniLM-L6-v2", { env: { RANKCHAIN_CACHE: cache } }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConfigError);
      const msg = (err as Error).message;
      expect(msg).toContain(join(cache, "models", "all-MiniLM-L6-v2"));
      expect(msg).toContain("RANKCHAIN_CACHE");
      expect(msg).toContain("scripts/setup-embedder.sh");
    } finally {
      rmSync(cache, { recursive: true, force: true });
    }
  });

  it("a directory without onnx/model.onnx", async () => {
    const dir = mkdtempSync(join(tmpdir(), "rc-noonnx-"));
    try {
      writeFileSync(join(dir, "tokenizer.json"), "{}");
      const err = await createEmbedder(dir).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as Error).message).toBe(
        `embedder directory ${dir} (from --embedder) has no onnx/model.onnx; run scripts/setup-embedder.sh or pass --embedder`,
      );
      const q8 = await createEmbedder(dir, { dtype: "q8" }).catch((e: unknown) => e);
      expect((q8 as Error).message).toContain("onnx/model_quantized.onnx");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a hub id that is not cached while offline", async () => {
    const cache = mkdtempSync(join(tmpdir(), "rc-hub-"));
    try {
      const err = await createEmbedder("someone/not-cached-model", { env: { RANKCHAIN_CACHE: cache, HF_HUB_OFFLINE: "1" } }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as Error).message).toContain("someone/not-cached-model");
    } finally {
      rmSync(cache, { recursive: true, force: true });
    }
  });
});
