import { mkdtempSync, readFileSync, appendFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { BudgetLedger, readLedgerTotals } from "../../src/budget/ledger.ts";
import { BudgetExceededError } from "../../src/errors.ts";
import { costUsd, lookupPrice, resolvePrice, DEFAULT_PRICES } from "../../src/config/prices.ts";
import { ConfigError } from "../../src/errors.ts";

const tmp = () => mkdtempSync(join(tmpdir(), "rankchain-ledger-"));
/** $0.01 per input token: a reservation of `usd` dollars is 100 × usd input tokens. */
const CENT_PER_TOKEN = { input: 10_000, output: 0 };
const tok = (usd: number) => Math.round(usd * 100);
const res = (usd: number, extra: { chainId?: string; maxOutputTokens?: number } = {}) => ({
  stage: "generate",
  model: "m",
  inputTokens: tok(usd),
  maxOutputTokens: extra.maxOutputTokens ?? 1,
  price: CENT_PER_TOKEN,
  ...(extra.chainId !== undefined ? { chainId: extra.chainId } : {}),
});

describe("BudgetLedger", () => {
  it("reserves, charges the reported usage, releases, refuses a call that cannot fit, and stamps every entry with its stage", async () => {
    const path = join(tmp(), "ledger.jsonl");
    const ledger = await BudgetLedger.open(path, 1.0);
    const a = await ledger.reserve(res(0.6, { chainId: "c1" }));
    await expect(ledger.reserve({ ...res(0.5), wait: false })).rejects.toBeInstanceOf(BudgetExceededError);
    await ledger.charge(a, { inputTokens: 20, outputTokens: 3 });
    const b = await ledger.reserve(res(0.5, { chainId: "c1" }));
    await ledger.release(b, "HTTP 500");
    expect(ledger.totals()).toMatchObject({ reservedUsd: 0, calls: 1, released: 1, inputTokens: 20, outputTokens: 3 });
    expect(ledger.totals().spentUsd).toBeCloseTo(0.2, 12);
    expect(ledger.totals().byStage).toMatchObject({ generate: { inputTokens: 20, outputTokens: 3, calls: 1 } });
    expect(ledger.chainUsage("c1")).toMatchObject({ input: 20, output: 3 });
    await ledger.close();
    const lines = readFileSync(path, "utf8").trim().split("\n").map((l) => JSON.parse(l) as { type: string; stage: string });
    expect(lines.map((l) => l.type)).toEqual(["reserve", "charge", "reserve", "release"]);
    expect(lines.every((l) => l.stage === "generate")).toBe(true);
  });

  it("a reservation that does not fit waits for calls in flight and is granted when they settle below the cap", async () => {
    const ledger = BudgetLedger.inMemory(1.0);
    const a = await ledger.reserve(res(0.7));
    let granted = false;
    const waiting = ledger.reserve(res(0.5)).then((r) => {
      granted = true;
      return r;
    });
    await new Promise((r) => setTimeout(r, 5));
    expect(granted).toBe(false); // still waiting: 0.7 + 0.5 > 1
    await ledger.charge(a, { inputTokens: 30, outputTokens: 0 }); // billed less than reserved
    const b = await waiting;
    expect(b.usd).toBeCloseTo(0.5, 12);
    expect(ledger.totals().spentUsd + ledger.totals().reservedUsd).toBeCloseTo(0.8, 12);
    // nothing in flight but this one; a call that cannot fit even then is refused once b settles
    const refused = ledger.reserve(res(0.9));
    await ledger.charge(b, { inputTokens: 50, outputTokens: 0 });
    await expect(refused).rejects.toBeInstanceOf(BudgetExceededError);
  });

  it("under a cap, a model's first call goes out alone: nothing else for that model starts until an answer with usage is seen", async () => {
    const ledger = BudgetLedger.inMemory(100);
    const first = await ledger.reserve(res(0.1));
    let second = false;
    const pending = ledger.reserve(res(0.1)).then((r) => ((second = true), r));
    const other = await ledger.reserve({ ...res(0.1), model: "other" }); // another model is not held back
    await new Promise((r) => setTimeout(r, 5));
    expect(second).toBe(false);
    await ledger.charge(first, { inputTokens: 10, outputTokens: 0 });
    await ledger.charge(await pending, { inputTokens: 10, outputTokens: 0 });
    // once learned, calls to it run concurrently
    const a = await ledger.reserve(res(0.1));
    const b = await ledger.reserve(res(0.1));
    expect(ledger.inFlight()).toBe(3);
    for (const r of [a, b, other]) await ledger.release(r, "test");
    // without a cap nothing is held back
    const free = BudgetLedger.inMemory(undefined);
    await free.reserve(res(0.1));
    await free.reserve(res(0.1));
    expect(free.inFlight()).toBe(2);
  });

  it("on reopen, charges reservations left in flight by a killed process at their worst case", async () => {
    const path = join(tmp(), "ledger.jsonl");
    const l1 = await BudgetLedger.open(path, 10);
    const r1 = await l1.reserve(res(0.3, { chainId: "x" }));
    await l1.charge(r1, { inputTokens: 10, outputTokens: 2 });
    await l1.reserve(res(0.4, { chainId: "y" })); // never settled
    // simulate a torn final write
    appendFileSync(path, '{"type":"res');
    const l2 = await BudgetLedger.open(path, 10);
    expect(l2.totals().spentUsd).toBeCloseTo(0.5, 12);
    expect(l2.chainUsage("y").usd).toBeCloseTo(0.4, 12);
    const r3 = await l2.reserve(res(0.1));
    expect(r3.id).toBe("r3");
    await l2.close();
    // a reader counts the open r3 at its worst case too, as the next open would charge it
    expect(await readLedgerTotals(path)).toMatchObject({ calls: 3, byStage: { generate: { calls: 3 } } });
    expect((await readLedgerTotals(path))!.spentUsd).toBeCloseTo(0.6, 12);
  });

  it("learns what a model bills over the count: later reservations cover it, as a ratio and as a fixed excess", async () => {
    const price = { input: 1, output: 2 };
    const ledger = BudgetLedger.inMemory(100);
    const r = await ledger.reserve({ stage: "generate", model: "srv/m", inputTokens: 300, maxOutputTokens: 50, price });
    expect(r.inputTokens).toBe(300);
    await ledger.charge(r, { inputTokens: 2300, outputTokens: 20 }); // a hidden 2,000-token prompt
    expect(ledger.totals().overBilled.calls).toBe(1);
    expect(ledger.plan({ model: "srv/m", inputTokens: 100, maxOutputTokens: 50, price }).inputTokens).toBe(2100); // + excess
    expect(ledger.plan({ model: "srv/m", inputTokens: 600, maxOutputTokens: 50, price }).inputTokens).toBe(4600); // × ratio
    expect(ledger.plan({ model: "other/m", inputTokens: 600, maxOutputTokens: 50, price }).inputTokens).toBe(600);
    // estimates carry a margin; exact counts and bounds do not
    expect(ledger.plan({ model: "other/m", inputTokens: 1000, maxOutputTokens: 0, price, count: "estimate" }).inputTokens).toBe(1116);
    expect(ledger.plan({ model: "other/m", inputTokens: 1000, maxOutputTokens: 0, price, count: "exact" }).inputTokens).toBe(1000);
  });

  it("a stage cap (validate --max-usd) counts only that stage's spend", async () => {
    const path = join(tmp(), "ledger.jsonl");
    const gen = await BudgetLedger.open(path, undefined);
    await gen.charge(await gen.reserve(res(2)), { inputTokens: 200, outputTokens: 0 });
    await gen.close();
    const val = await BudgetLedger.open(path, 0.5, { capStage: "validate" });
    const v = await val.reserve({ ...res(0.4), stage: "validate" });
    await val.charge(v, { inputTokens: 40, outputTokens: 0 });
    await expect(val.reserve({ ...res(0.2), stage: "validate" })).rejects.toThrow(/validate stage/);
    await val.close();
    const t = (await readLedgerTotals(path))!;
    expect(t.byStage.generate!.usd).toBeCloseTo(2, 12);
    expect(t.byStage.validate!.usd).toBeCloseTo(0.4, 12);
  });

  it("property: concurrent reservations never let spend + reservations exceed the cap when charges stay within them", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.double({ min: 0.01, max: 5, noNaN: true }),
        fc.array(fc.record({ worst: fc.double({ min: 0, max: 1, noNaN: true }), frac: fc.double({ min: 0, max: 1, noNaN: true }), delay: fc.nat(3) }), { minLength: 1, maxLength: 60 }),
        async (cap, calls) => {
          const ledger = BudgetLedger.inMemory(cap);
          let maxSeen = 0;
          await Promise.all(
            calls.map(async (c) => {
              try {
                const r = await ledger.reserve(res(c.worst));
                const t = ledger.totals();
                maxSeen = Math.max(maxSeen, t.spentUsd + t.reservedUsd);
                await new Promise((res) => setTimeout(res, c.delay));
                await ledger.charge(r, { usd: c.worst * c.frac, inputTokens: 0, outputTokens: 0 });
              } catch (e) {
                if (!(e instanceof BudgetExceededError)) throw e;
              }
            }),
          );
          expect(maxSeen).toBeLessThanOrEqual(cap + 1e-9);
          expect(ledger.totals().spentUsd).toBeLessThanOrEqual(cap + 1e-9);
        },
      ),
      { numRuns: 60 },
    );
  });

  it("property: charges above their reservation overshoot the cap by at most the excess of calls reserved before the first over-billing settled", async () => {
    const price = { input: 1000, output: 0 }; // $0.001 per input token
    await fc.assert(
      fc.asyncProperty(
        fc.double({ min: 0.05, max: 3, noNaN: true }),
        fc.double({ min: 1, max: 3, noNaN: true }), // the server's tokenizer: k× our count
        fc.nat(400), // plus a hidden prompt
        fc.array(fc.record({ tokens: fc.integer({ min: 1, max: 200 }), delay: fc.nat(4) }), { minLength: 1, maxLength: 50 }),
        async (cap, k, hidden, calls) => {
          const ledger = BudgetLedger.inMemory(cap);
          let firstOverBilledSettled = false;
          let excessBeforeLearning = 0;
          let anyGrantAboveCap = false;
          await Promise.all(
            calls.map(async (c) => {
              let r;
              try {
                r = await ledger.reserve({ stage: "generate", model: "srv/m", inputTokens: c.tokens, maxOutputTokens: 0, price });
              } catch (e) {
                if (e instanceof BudgetExceededError) return;
                throw e;
              }
              const t = ledger.totals();
              if (t.spentUsd + t.reservedUsd > cap + 1e-9) anyGrantAboveCap = true;
              const reservedBeforeLearning = !firstOverBilledSettled;
              await new Promise((res) => setTimeout(res, c.delay));
              const billed = Math.ceil(c.tokens * k + hidden);
              const usd = (billed * price.input) / 1e6;
              if (reservedBeforeLearning) excessBeforeLearning += Math.max(0, usd - r.usd);
              else expect(usd).toBeLessThanOrEqual(r.usd + 1e-12); // learned: never over-billed again
              await ledger.charge(r, { inputTokens: billed, outputTokens: 0 });
              if (usd > r.usd + 1e-12) firstOverBilledSettled = true;
            }),
          );
          expect(anyGrantAboveCap).toBe(false);
          expect(ledger.totals().spentUsd).toBeLessThanOrEqual(cap + excessBeforeLearning + 1e-9);
        },
      ),
      { numRuns: 60 },
    );
  });
});

describe("prices", () => {
  it("finds dated snapshots by prefix and never prices an unknown model at $0", () => {
    expect(lookupPrice(DEFAULT_PRICES, "openai", "gpt-4o-mini-2024-07-18")).toEqual(DEFAULT_PRICES.models["openai/gpt-4o-mini"]);
    expect(lookupPrice(DEFAULT_PRICES, "openai", "no-such-model")).toBeUndefined();
    expect(() => resolvePrice({ table: DEFAULT_PRICES, provider: "openai-compatible", model: "llama", required: true })).toThrow(ConfigError);
    expect(() => resolvePrice({ table: DEFAULT_PRICES, provider: "openai-compatible", model: "llama", priceInput: 1, required: true })).toThrow(/both --price-input and --price-output/);
    expect(resolvePrice({ table: DEFAULT_PRICES, provider: "openai-compatible", model: "llama", priceInput: 1, priceOutput: 2, required: true })).toEqual({ input: 1, output: 2 });
  });

  it("computes cost with cached input tokens at the cached price", () => {
    expect(costUsd({ input: 2, output: 8, cached_input: 0.5 }, 1_000_000, 500_000, 400_000)).toBeCloseTo(1.2 + 0.2 + 4, 10);
  });
});
