/**
 * Rerankers on a real local model (SmolLM2-135M-Instruct GGUF): the pointwise yes/no scorer reads
 * log-probabilities, and the listwise reranker works through the same provider contract (free, but
 * booked in the ledger with its tokens).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BudgetLedger } from "../../src/budget/ledger.ts";
import { createLocalModel, type LocalLanguageModel } from "../../src/llm/local/index.ts";
import { pullModel } from "../../src/models/index.ts";
import { LlmListwiseReranker, logSumExp, PointwiseYesNoReranker } from "../../src/rerank/index.ts";

let model: LocalLanguageModel;
beforeAll(async () => {
  await pullModel(undefined, { onProgress: (m) => process.stderr.write(`[models] ${m}\n`) });
  model = await createLocalModel({ model: "default", gpu: "off" });
}, 300_000);
afterAll(async () => {
  await model?.dispose();
});

describe("local rerankers (SmolLM2)", () => {
  it("logSumExp is stable", () => {
    expect(logSumExp([1000, 1000])).toBeCloseTo(1000 + Math.log(2), 9);
    expect(logSumExp([-Infinity, -Infinity])).toBe(-Infinity);
  });

  it("pointwise: one score per passage = log p(yes) − log p(no), deterministic, from the model's distribution", async () => {
    const rr = new PointwiseYesNoReranker(model);
    const passages = ["A man plays the guitar on stage.", "The stock market fell sharply today."];
    const a = await rr.score("A man is playing a guitar.", passages);
    const b = await rr.score("A man is playing a guitar.", passages);
    expect(a).toHaveLength(2);
    for (const x of a) expect(Number.isFinite(x)).toBe(true);
    expect(b).toEqual(a);
    expect(a[0]).not.toBe(a[1]);
    const r = await rr.rerank("A man is playing a guitar.", passages);
    expect([...r.order].sort()).toEqual([0, 1]);
    expect(r.scores).toEqual(a);
  }, 240_000);

  it("listwise with a local model: a permutation, $0, tokens booked in the ledger", async () => {
    const ledger = BudgetLedger.inMemory(0);
    const rr = new LlmListwiseReranker({ model, ledger, price: undefined, width: 3, step: 2 });
    const passages = ["A cat sleeps on the sofa.", "A man plays the guitar.", "Rain falls on the city.", "A guitarist performs a song."];
    const r = await rr.rerank("A man is playing a guitar.", passages);
    expect([...r.order].sort()).toEqual([0, 1, 2, 3]);
    expect(r.usage.calls).toBe(2);
    expect(r.usage.usd).toBe(0);
    expect(ledger.totals().calls).toBe(2);
    expect(ledger.totals().inputTokens).toBeGreaterThan(50);
  }, 240_000);
});
