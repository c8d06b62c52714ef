/**
 * The reranking evaluation of `eval --rerank FILE --rerankers …` (metrics and file format: src/eval/rerank.ts):
 * rerankers side by side, the LLM through the real `openai` SDK against the loopback server.
 */
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BudgetLedger } from "../../src/budget/ledger.ts";
import { costUsd } from "../../src/config/prices.ts";
import { createOpenAIModel } from "../../src/llm/openai/index.ts";
import { evaluateRerankers } from "../../src/eval/index.ts";
import { LlmListwiseReranker, orderByScores, zeroUsage, type Reranker } from "../../src/rerank/index.ts";
import { defaultModelDir } from "../embed/helpers.ts";
import { startOpenAIServer, type OpenAIServer } from "../servers/index.ts";
import { REPO_ROOT, tmpDir } from "../validate/helpers.ts";
import { rankingResponder, taggedRelevance, type BillingLog } from "./helpers.ts";

/** Scores passages by their "#N" tag, optionally inverted (a bad first stage). */
class TagReranker implements Reranker {
  readonly kind = "embedder" as const;
  constructor(
    readonly id: string,
    private readonly sign = 1,
  ) {}
  async rerank(_q: string, ps: readonly string[]) {
    const scores = ps.map((p) => this.sign * taggedRelevance("", p));
    return { order: orderByScores(scores), scores, usage: zeroUsage() };
  }
  async dispose() {}
}

describe("evaluateRerankers", () => {
  const KEY = "sk-test-reval-0123456789abcdefghijklmn";
  let srv: OpenAIServer;
  beforeAll(async () => {
    srv = await startOpenAIServer({ apiKey: KEY });
  });
  afterAll(async () => {
    await srv.close();
  });

  it("puts quality, USD and ms per query side by side; depth limits what a reranker can fix; cascade = CE then LLM", async () => {
    // 2 positives (#9, #8) and 8 negatives (#1..#7, #0) per query; the first stage ranks them upside down
    const queries = [0, 1, 2].map((q) => ({
      query: `query ${q}`,
      positive: [`pos a${q} #9`, `pos b${q} #8`],
      negative: Array.from({ length: 8 }, (_, k) => `neg ${q}-${k} #${k}`),
    }));
    const billing: BillingLog = { calls: [] };
    srv.setResponder(rankingResponder({ relevance: taggedRelevance, billing, usage: { inputTokens: 200, outputTokens: 30 } }));
    const price = { input: 0.15, output: 0.6 };
    const ledger = BudgetLedger.inMemory();
    const llm = new LlmListwiseReranker({ model: createOpenAIModel({ model: "gpt-4o-mini", apiKey: KEY, baseURL: srv.baseURL }), ledger, price, stage: "eval" });
    const e = await evaluateRerankers({
      file: "mem",
      queries,
      embedder: new TagReranker("embedder:inverted", -1),
      crossEncoder: new TagReranker("cross-encoder:tags"),
      llm,
      rerankers: ["embedder", "cross-encoder", "llm", "cascade"],
      depths: [2, 10],
    });
    const row = (r: string, d: number | null) => e.rows.find((x) => x.reranker === r && x.depth === d)!;
    expect(e.queries).toBe(3);
    expect(e.candidates_per_query).toEqual({ min: 10, mean: 10, max: 10 });
    expect(row("embedder", null)["ndcg@10"]).toBeLessThan(50);
    expect(row("embedder", null)["mrr@10"]).toBeCloseTo(100 / 9, 2);
    // depth 2 reorders only the two worst: nothing to fix; depth 10 covers all candidates
    expect(row("cross-encoder", 2)["ndcg@10"]).toBe(row("embedder", null)["ndcg@10"]);
    expect(row("cross-encoder", 10)).toMatchObject({ "ndcg@10": 100, map: 100, "mrr@10": 100, usd_per_query: 0 });
    expect(row("llm", 10)).toMatchObject({ "ndcg@10": 100, map: 100, "mrr@10": 100 });
    expect(row("cascade", 10)).toMatchObject({ "ndcg@10": 100, map: 100 });
    // the LLM rows cost what the server billed: llm at 2 depths + cascade at 2 depths, 1 window each, 3 queries
    const perCall = costUsd(price, 200, 30);
    expect(billing.calls).toHaveLength(12);
    expect(row("llm", 10).usd_per_query).toBeCloseTo(perCall, 9);
    expect(row("cascade", 2).usd_per_query).toBeCloseTo(perCall, 9);
    expect(ledger.totals().byStage.eval!.usd).toBeCloseTo(12 * perCall, 12);
    // tokens per row, for a price-table estimate of another model: 3 queries x 1 window at each depth
    expect(row("llm", 10)).toMatchObject({ input_tokens: 600, output_tokens: 90 });
    expect(row("cross-encoder", 10)).toMatchObject({ input_tokens: 0, output_tokens: 0 });
    for (const r of e.rows) expect(r.ms_per_query).toBeGreaterThanOrEqual(0);
  });

  it("an LLM reranker that reaches its cap stops; its row covers fewer queries and says so", async () => {
    const queries = [0, 1, 2, 3].map((q) => ({ query: `q${q}`, positive: ["p #9"], negative: ["n #1", "m #2"] }));
    srv.setResponder(rankingResponder({ relevance: taggedRelevance, usage: { inputTokens: 50, outputTokens: 10 } }));
    const price = { input: 0.15, output: 0.6 };
    const model = createOpenAIModel({ model: "gpt-4o-mini", apiKey: KEY, baseURL: srv.baseURL });
    const probe = new LlmListwiseReranker({ model, ledger: BudgetLedger.inMemory(), price });
    const worst = costUsd(price, (await model.countInputTokens(probe.windowMessages("q0", ["p #9", "n #1", "m #2"]))).tokens, probe.maxOutputTokens(3));
    const ledger = BudgetLedger.inMemory(costUsd(price, 50, 10) + worst * 1.01);
    const llm = new LlmListwiseReranker({ model, ledger, price });
    const e = await evaluateRerankers({ file: "mem", queries, embedder: new TagReranker("e", -1), llm, rerankers: ["llm"], depths: [3] });
    const row = e.rows.find((r) => r.reranker === "llm")!;
    expect(row.incomplete).toBe("budget");
    expect(row.queries).toBe(2);
    expect(ledger.totals().spentUsd).toBeLessThanOrEqual(ledger.capUsd!);
  });
});

const { dir: MINILM, missing } = defaultModelDir();
describe.skipIf(Boolean(missing))("rankchain eval --rerank --rerankers (CLI, real MiniLM)", () => {
  it("writes the rerank section into eval.json, merged with what is there", () => {
    const dir = tmpDir("eval-rerank-cli");
    const f = join(dir, "r.jsonl");
    writeFileSync(
      f,
      [
        { query: "A man is playing a guitar.", positive: ["A man plays the guitar on stage."], negative: ["The stock market fell today.", "A cat sleeps on the sofa."] },
        { query: "A woman is slicing onions.", positive: ["Someone cuts an onion in the kitchen."], negative: ["A plane takes off.", "Kids play football."] },
      ]
        .map((x) => JSON.stringify(x))
        .join("\n") + "\n",
    );
    writeFileSync(join(dir, "eval.json"), JSON.stringify({ primary_metric: "stsb_spearman", metrics: [{ name: "stsb_spearman", baseline: 80, model: 81 }] }));
    const out = execFileSync(process.execPath, [join(REPO_ROOT, "bin", "rankchain.js"), "eval", "--rerank", f, "--rerankers", "embedder", "--embedder", MINILM, "--out", join(dir, "eval.json")], {
      env: { ...process.env, HF_HUB_OFFLINE: "1", ONNXRUNTIME_NODE_INSTALL: "skip" },
    }).toString();
    expect(out).toMatch(/nDCG@10 x100/);
    const doc = JSON.parse(readFileSync(join(dir, "eval.json"), "utf8"));
    expect(doc.primary_metric).toBe("stsb_spearman");
    expect(doc.metrics).toHaveLength(1);
    expect(doc.rerank.rows[0]).toMatchObject({ reranker: "embedder", queries: 2, "mrr@10": 100 });
  }, 120_000);

  it("bad usage exits 2 naming the flag", () => {
    let status = 0;
    let stderr = "";
    try {
      execFileSync(process.execPath, [join(REPO_ROOT, "bin", "rankchain.js"), "eval", "--rerank", "x.jsonl", "--rerankers", "embedder,judge"], { stdio: "pipe" });
    } catch (e) {
      status = (e as { status: number }).status;
      stderr = String((e as { stderr: Buffer }).stderr);
    }
    expect(status).toBe(2);
    expect(stderr).toMatch(/--rerank|--rerankers/);
  }, 60_000);
});
