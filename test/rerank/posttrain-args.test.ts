import { describe, expect, it } from "vitest";
import { posttrainArgs } from "../../src/posttrain/index.ts";

describe("posttrain flags of issue 11", () => {
  it("--cross-encoder and --cross-encoder-teacher reach the Python trainer", () => {
    expect(posttrainArgs({ data: "run", baseModel: "m", out: "o", crossEncoder: true })).toEqual(["--data", "run", "--base-model", "m", "--out", "o", "--cross-encoder"]);
    expect(posttrainArgs({ data: "run", baseModel: "m", out: "o", loss: "chain_listmle:1,distill:0.5", crossEncoderTeacher: "ce/model" })).toEqual([
      "--data", "run", "--base-model", "m", "--out", "o", "--loss", "chain_listmle:1,distill:0.5", "--cross-encoder-teacher", "ce/model",
    ]);
    expect(posttrainArgs({ data: "run", baseModel: "m", out: "o", crossEncoder: true, ceLoss: "bce+ranknet", ceHeadLr: 0.001 })).toEqual([
      "--data", "run", "--base-model", "m", "--out", "o", "--ce-loss", "bce+ranknet", "--ce-head-lr", "0.001", "--cross-encoder",
    ]);
  });
});
