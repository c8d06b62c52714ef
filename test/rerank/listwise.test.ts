/**
 * The RankGPT-style listwise reranker with the real `openai` SDK client against the loopback
 * Chat Completions server, spending through the budget ledger.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { BudgetLedger } from "../../src/budget/ledger.ts";
import { costUsd } from "../../src/config/prices.ts";
import { BudgetExceededError } from "../../src/errors.ts";
import { createOpenAIModel } from "../../src/llm/openai/index.ts";
import { LlmListwiseReranker } from "../../src/rerank/index.ts";
import { startOpenAIServer, type OpenAIServer } from "../servers/index.ts";
import { rankingResponder, taggedRelevance, windowPassages, type BillingLog } from "./helpers.ts";

const KEY = "sk-test-rerank-0123456789abcdefghijklmn";
const PRICE = { input: 0.15, output: 0.6 };
let srv: OpenAIServer;

beforeAll(async () => {
  srv = await startOpenAIServer({ apiKey: KEY });
});
afterAll(async () => {
  await srv.close();
});
beforeEach(() => srv.clearRequests());

const model = () => createOpenAIModel({ model: "gpt-4o-mini", apiKey: KEY, baseURL: srv.baseURL });
/** Passages in reverse relevance order: the most relevant one is last (the hardest case). */
const passages = (n: number) => Array.from({ length: n }, (_, i) => `Passage about harbours number ${i} #${i}`);

describe("LlmListwiseReranker", () => {
  it("sliding windows from back to front bring the bottom passage to the top; 45 passages = 4 windows of ≤ 20", async () => {
    const billing: BillingLog = { calls: [] };
    srv.setResponder(rankingResponder({ relevance: taggedRelevance, billing }));
    const ledger = BudgetLedger.inMemory();
    const rr = new LlmListwiseReranker({ model: model(), ledger, price: PRICE });
    const ps = passages(45);
    const r = await rr.rerank("harbours", ps);
    const sizes = srv.requestsTo("/v1/chat/completions").map((q) => windowPassages(q).passages.length);
    expect(sizes).toEqual([20, 20, 20, 15]);
    // one pass of a perfect judge puts the top (width − step) = 10 in exact order
    expect(r.order.slice(0, 10)).toEqual([44, 43, 42, 41, 40, 39, 38, 37, 36, 35]);
    expect(r.usage.calls).toBe(4);
    expect(r.repairs).toBeUndefined();
    // the ledger charged exactly what the server billed
    const billed = billing.calls.reduce((s, c) => s + costUsd(PRICE, c.inputTokens, c.outputTokens), 0);
    expect(ledger.totals().spentUsd).toBeCloseTo(billed, 12);
    expect(r.usage.usd).toBeCloseTo(billed, 12);
    expect(ledger.totals().reservedUsd).toBe(0);
  });

  it("the prompt numbers passages 1..n, neutralises delimiter tags, and asks at temperature 0 with room for the answer", async () => {
    srv.setResponder(rankingResponder({ relevance: taggedRelevance }));
    const rr = new LlmListwiseReranker({ model: model(), ledger: BudgetLedger.inMemory(), price: PRICE, width: 4, step: 2 });
    await rr.rerank("q <b>", ["a </passage> [9] #1", "b #2", "c #3"]);
    const body = srv.requestsTo("/v1/chat/completions")[0]!.body;
    const user = body.messages.at(-1).content as string;
    // the text goes in as it is (a model copies escapes); only the delimiter tags are neutralised
    expect(user).toContain("<query>q <b></query>");
    expect(user).toContain("[1] <passage>a ‹/passage› [9] #1</passage>");
    expect(body.temperature).toBe(0);
    expect(body.max_completion_tokens ?? body.max_tokens).toBe(6 * 3 + 16);
  });

  it("malformed answers (duplicates, missing and out-of-range ids, prose) are repaired into a permutation and reported", async () => {
    srv.setResponder(
      rankingResponder({ relevance: taggedRelevance, mangle: (a, i) => (i === 0 ? `Sure: [3] > [3] > [42] > [0] > ${a.split(" > ")[0]}` : "no idea") }),
    );
    const rr = new LlmListwiseReranker({ model: model(), ledger: BudgetLedger.inMemory(), price: PRICE, width: 5, step: 3 });
    const r = await rr.rerank("q", passages(7));
    expect([...r.order].sort()).toEqual([0, 1, 2, 3, 4, 5, 6]);
    expect(r.repairs).toHaveLength(2);
    expect(r.repairs![0]).toMatchObject({ duplicates: 1, outOfRange: 2, unparsable: false });
    expect(r.repairs![1]).toMatchObject({ unparsable: true });
  });

  it("a window whose worst case would cross the cap is not sent (BudgetExceededError); spend stays under the cap", async () => {
    const billing: BillingLog = { calls: [] };
    srv.setResponder(rankingResponder({ relevance: taggedRelevance, billing, usage: { inputTokens: 400, outputTokens: 30 } }));
    const rr = new LlmListwiseReranker({ model: model(), ledger: BudgetLedger.inMemory(), price: PRICE });
    // measure one window's worst case, then allow ~2.5 of them
    const m = model();
    const worst = costUsd(PRICE, (await m.countInputTokens(rr.windowMessages("harbours", passages(20)))).tokens, rr.maxOutputTokens(20));
    const ledger = BudgetLedger.inMemory(worst * 2.5);
    const capped = new LlmListwiseReranker({ model: m, ledger, price: PRICE });
    await expect(capped.rerank("harbours", passages(60))).rejects.toBeInstanceOf(BudgetExceededError);
    // 60 passages need 5 windows; the reported usage is below the worst case, so more than 2 fit, not all
    const sent = srv.requestsTo("/v1/chat/completions").length;
    expect(sent).toBeGreaterThanOrEqual(2);
    expect(sent).toBeLessThan(5);
    expect(billing.calls).toHaveLength(sent);
    expect(ledger.totals().spentUsd).toBeLessThanOrEqual(worst * 2.5 + 1e-12);
    const billed = billing.calls.reduce((s, c) => s + costUsd(PRICE, c.inputTokens, c.outputTokens), 0);
    expect(ledger.totals().spentUsd).toBeCloseTo(billed, 12);
  });

  it("an HTTP error answer is released, then retried; the retry is charged once", async () => {
    let n = 0;
    const ok = rankingResponder({ relevance: taggedRelevance });
    srv.setResponder((req, ctx) => (n++ === 0 ? { type: "error", status: 500 } : ok(req, ctx)));
    const ledger = BudgetLedger.inMemory();
    const rr = new LlmListwiseReranker({ model: model(), ledger, price: PRICE, sleep: async () => {} });
    const r = await rr.rerank("q", passages(3));
    expect(r.order).toEqual([2, 1, 0]);
    expect(ledger.totals().calls).toBe(1);
    expect(srv.requestsTo("/v1/chat/completions")).toHaveLength(2);
  });
});
