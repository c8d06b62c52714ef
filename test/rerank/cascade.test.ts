/**
 * The judge cascade of `validate --judge cascade`: the cross-encoder judges every kept chain, only
 * chains where it disagrees with the embedder or sits near the threshold go to the LLM, and the
 * LLM never spends past its own cap. The LLM is the real `openai` SDK client against the loopback
 * server, which logs what it billed.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BudgetLedger } from "../../src/budget/ledger.ts";
import { costUsd } from "../../src/config/prices.ts";
import { createOpenAIModel } from "../../src/llm/openai/index.ts";
import { LlmListwiseReranker } from "../../src/rerank/index.ts";
import { chainOrderKendall, judgeRun, orderKendall, validateRun, type PairScorer } from "../../src/validate/index.ts";
import { startOpenAIServer, type OpenAIServer } from "../servers/index.ts";
import { record, TableEmbedder, tmpDir, vec } from "../validate/helpers.ts";
import { rankingResponder, taggedRelevance, windowPassages, type BillingLog } from "./helpers.ts";

const KEY = "sk-test-cascade-0123456789abcdefghijklmn";
const PRICE = { input: 0.15, output: 0.6 };
const USAGE = { inputTokens: 100, outputTokens: 20 };
let srv: OpenAIServer;
beforeAll(async () => {
  srv = await startOpenAIServer({ apiKey: KEY });
});
afterAll(async () => {
  await srv.close();
});

/** A cross-encoder stand-in with scores fixed per (anchor, step) — the cascade logic is what is tested here. */
class TableScorer implements PairScorer {
  readonly id = "cross-encoder:test-table";
  readonly calls: number[] = [];
  constructor(private readonly table: Map<string, number>) {}
  async scorePairs(pairs: ReadonlyArray<readonly [string, string]>): Promise<number[]> {
    this.calls.push(pairs.length);
    return pairs.map(([, p]) => this.table.get(p)!);
  }
}

const words = ["quiet", "busy", "old", "small"];
function chain(id: string, azimuth: number, ce: number[], llmTags: number[], table: Map<string, Float32Array>, ceTable: Map<string, number>) {
  const anchor = `Anchor ${id}: the quiet harbour sees boats at dawn.`;
  const steps = words.map((w, k) => `The ${w} harbour ${id} number ${k} sees boats at dawn #${llmTags[k]}.`);
  table.set(anchor, vec(0, azimuth));
  // the embedder sees every chain in perfect order
  steps.forEach((s, k) => {
    table.set(s, vec((k + 1) * 0.25, azimuth));
    ceTable.set(s, ce[k]!);
  });
  return record(id, anchor, steps, 0.01);
}

describe("judge cascade", () => {
  it("kendall helpers: scores and orders against chain order", () => {
    expect(chainOrderKendall([4, 3, 2, 1])).toBe(1);
    expect(chainOrderKendall([1, 2, 3, 4])).toBe(-1);
    expect(chainOrderKendall([4, 3, 1, 2])).toBeCloseTo(2 / 3, 12);
    expect(orderKendall([0, 1, 2, 3])).toBe(1);
    expect(orderKendall([3, 2, 1, 0])).toBe(-1);
  });

  it("sends only ambiguous chains to the LLM, stops at its cap, records verdicts and the agreement matrix", async () => {
    const dir = tmpDir("cascade");
    const table = new Map<string, Float32Array>();
    const ceTable = new Map<string, number>();
    const records = [
      chain("agree", 0, [4, 3, 2, 1], [4, 3, 2, 1], table, ceTable), // CE agrees, far from threshold: no LLM
      chain("disagree", 1.2, [1, 2, 3, 4], [4, 3, 2, 1], table, ceTable), // CE says reversed → LLM says in order
      chain("margin", 2.4, [4, 3, 1, 2], [1, 2, 3, 4], table, ceTable), // CE tau 0.67 near 0.5 → LLM says reversed
      chain("late", 3.6, [1, 2, 3, 4], [4, 3, 2, 1], table, ceTable), // disagrees, but the cap is spent
    ];
    writeFileSync(join(dir, "chains.jsonl"), records.map((r) => JSON.stringify(r)).join("\n") + "\n");
    await validateRun({ runDir: dir, embedder: new TableEmbedder(table), policy: "repair", minSteps: 3, thresholds: { chainDupThreshold: 0.999 } });

    const billing: BillingLog = { calls: [] };
    srv.setResponder(rankingResponder({ relevance: taggedRelevance, billing, usage: USAGE }));
    const model = createOpenAIModel({ model: "gpt-4o-mini", apiKey: KEY, baseURL: srv.baseURL });
    // cap: one actual call + one worst case + half a call → the second LLM call fits, the third does not
    const probe = new LlmListwiseReranker({ model, ledger: BudgetLedger.inMemory(), price: PRICE });
    const worst = Math.max(
      ...(await Promise.all(
        records.map(async (r) => costUsd(PRICE, (await model.countInputTokens(probe.windowMessages(r.anchor, r.steps))).tokens, probe.maxOutputTokens(4))),
      )),
    );
    const actual = costUsd(PRICE, USAGE.inputTokens, USAGE.outputTokens);
    const cap = actual + worst + actual / 2;
    // the run's ledger already holds generation spend: the judge's cap applies to its own stage
    writeFileSync(join(dir, "ledger.jsonl"), JSON.stringify({ type: "reserve", id: "r1", ts: "2026-12-01T00:00:00.000Z", usd: 5, stage: "generate", input_tokens: 1, max_output_tokens: 1, model: "openai/gpt-4o-mini" }) + "\n" + JSON.stringify({ type: "charge", id: "r1", ts: "2026-12-01T00:00:01.000Z", usd: 5, stage: "generate", input_tokens: 1, output_tokens: 1 }) + "\n");
    const ledger = await BudgetLedger.open(join(dir, "ledger.jsonl"), cap, { capStage: "judge" });
    const llm = new LlmListwiseReranker({ model, ledger, price: PRICE });
    const ce = new TableScorer(ceTable);

    const summary = await judgeRun({ runDir: dir, mode: "cascade", crossEncoder: ce, llm, llmLedger: ledger });
    await ledger.close();

    // only the escalated chains reached the server, and only while the cap allowed
    const sent = srv.requestsTo("/v1/chat/completions").map((q) => windowPassages(q).query);
    expect(sent).toEqual(["Anchor disagree: the quiet harbour sees boats at dawn.", "Anchor margin: the quiet harbour sees boats at dawn."]);
    expect(summary.counts).toEqual({ judged: 4, escalated: 3, llm_judged: 2, llm_skipped_budget: 1, rejected_by_judge: 2 });
    // never past the cap; the ledger charged exactly what the server billed, also on disk
    const billed = billing.calls.reduce((s, c) => s + costUsd(PRICE, c.inputTokens, c.outputTokens), 0);
    expect(ledger.totals().byStage.judge!.usd).toBeLessThanOrEqual(cap);
    expect(ledger.totals().byStage.judge!.usd).toBeCloseTo(billed, 12);
    expect(summary.llm_usd).toBeCloseTo(billed, 9);
    const reopened = await BudgetLedger.open(join(dir, "ledger.jsonl"), cap, { capStage: "judge" });
    expect(reopened.totals().byStage.judge!.usd).toBeCloseTo(billed, 12);
    expect(reopened.totals().spentUsd).toBeCloseTo(5 + billed, 12);
    await reopened.close();
    // the cross-encoder scored every kept chain in one batch
    expect(ce.calls).toEqual([16]);

    const validated = readFileSync(join(dir, "validated.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    const by = Object.fromEntries(validated.map((r) => [r.id, r.validation]));
    expect(by.agree.judges.verdicts.llm).toBeUndefined();
    expect(by.agree.judges.final).toEqual({ judge: "cross-encoder", in_order: true });
    expect(by.agree.status).toBe("accepted");
    expect(by.disagree.judges.escalated).toBe("disagree");
    expect(by.disagree.judges.verdicts["cross-encoder"].kendall).toBe(-1);
    expect(by.disagree.judges.verdicts.llm).toMatchObject({ kendall: 1, in_order: true, order: [1, 2, 3, 4] });
    expect(by.disagree.status).toBe("accepted");
    expect(by.margin.judges.escalated).toBe("small-margin");
    expect(by.margin.judges.final).toEqual({ judge: "llm", in_order: false });
    expect(by.margin.status).toBe("rejected");
    expect(by.margin.reasons).toContain("judge-out-of-order~llm");
    expect(by.late.judges.llm_skipped).toBe("budget");
    expect(by.late.judges.final).toEqual({ judge: "cross-encoder", in_order: false });
    expect(by.late.status).toBe("rejected");
    const accepted = readFileSync(join(dir, "accepted.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l).id);
    expect(accepted).toEqual(["agree", "disagree"]);

    const doc = JSON.parse(readFileSync(join(dir, "validation.json"), "utf8"));
    expect(doc.counts).toMatchObject({ chains: 4, accepted: 2, rejected: 2 });
    expect(doc.reasons["judge-out-of-order"]).toEqual({ chains: 2, occurrences: 2 });
    const a = doc.judges.agreement;
    expect(a.judges).toEqual(["embedder", "cross-encoder", "llm"]);
    // embedder: all in order; CE: agree, margin in order (0.67 ≥ 0.5), disagree/late not → 2/4
    expect(a.matrix[0][1]).toBe(0.5);
    expect(a.n[0][1]).toBe(4);
    // LLM judged 2: disagree (in order), margin (not); vs embedder 1/2, vs CE 0/2
    expect(a.n[0][2]).toBe(2);
    expect(a.matrix[0][2]).toBe(0.5);
    expect(a.matrix[1][2]).toBe(0);
    expect(a.matrix[1][1]).toBe(1);
    expect(doc.judges.per_judge.llm).toMatchObject({ chains: 2, in_order_rate: 0.5 });
    expect(doc.judges.llm_cap_usd).toBeCloseTo(cap, 15);
  });

  it("--judge llm asks the LLM about every kept chain; lenient only flags", async () => {
    const dir = tmpDir("judge-llm");
    const table = new Map<string, Float32Array>();
    const ceTable = new Map<string, number>();
    const records = [chain("x", 0, [4, 3, 2, 1], [1, 2, 3, 4], table, ceTable), chain("y", 2, [4, 3, 2, 1], [4, 3, 2, 1], table, ceTable)];
    writeFileSync(join(dir, "chains.jsonl"), records.map((r) => JSON.stringify(r)).join("\n") + "\n");
    await validateRun({ runDir: dir, embedder: new TableEmbedder(table), policy: "lenient", minSteps: 3 });
    srv.clearRequests();
    srv.setResponder(rankingResponder({ relevance: taggedRelevance, usage: USAGE }));
    const ledger = BudgetLedger.inMemory();
    const llm = new LlmListwiseReranker({ model: createOpenAIModel({ model: "gpt-4o-mini", apiKey: KEY, baseURL: srv.baseURL }), ledger, price: PRICE });
    const summary = await judgeRun({ runDir: dir, mode: "llm", llm, llmLedger: ledger });
    expect(srv.requestsTo("/v1/chat/completions")).toHaveLength(2);
    expect(summary.counts).toMatchObject({ judged: 2, llm_judged: 2, rejected_by_judge: 0 });
    const validated = readFileSync(join(dir, "validated.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    expect(validated[0].validation.status).toBe("accepted");
    expect(validated[0].validation.reasons).toContain("judge-out-of-order~llm");
    expect(validated[1].validation.judges.final).toEqual({ judge: "llm", in_order: true });
  });
});
