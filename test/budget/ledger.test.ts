import { mkdtempSync, readFileSync, appendFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { BudgetLedger } from "../../src/budget/ledger.ts";
import { BudgetExceededError } from "../../src/errors.ts";
import { costUsd, lookupPrice, resolvePrice, DEFAULT_PRICES } from "../../src/config/prices.ts";
import { ConfigError } from "../../src/errors.ts";

const tmp = () => mkdtempSync(join(tmpdir(), "rankchain-ledger-"));

describe("BudgetLedger", () => {
  it("reserves, charges the reported usage, releases, and refuses a call that would cross the cap", async () => {
    const path = join(tmp(), "ledger.jsonl");
    const ledger = await BudgetLedger.open(path, 1.0);
    const a = await ledger.reserve({ usd: 0.6, inputTokens: 10, maxOutputTokens: 10, model: "m", chainId: "c1" });
    await expect(ledger.reserve({ usd: 0.5, inputTokens: 1, maxOutputTokens: 1, model: "m" })).rejects.toBeInstanceOf(BudgetExceededError);
    await ledger.charge(a, { usd: 0.2, inputTokens: 10, outputTokens: 3 });
    const b = await ledger.reserve({ usd: 0.5, inputTokens: 1, maxOutputTokens: 1, model: "m", chainId: "c1" });
    await ledger.release(b, "HTTP 500");
    expect(ledger.totals()).toMatchObject({ spentUsd: 0.2, reservedUsd: 0, calls: 1, inputTokens: 10, outputTokens: 3 });
    expect(ledger.chainUsage("c1")).toEqual({ usd: 0.2, input: 10, output: 3 });
    await ledger.close();
    const lines = readFileSync(path, "utf8").trim().split("\n").map((l) => JSON.parse(l) as { type: string });
    expect(lines.map((l) => l.type)).toEqual(["reserve", "charge", "reserve", "release"]);
  });

  it("on reopen, charges reservations left in flight by a killed process at their worst case", async () => {
    const path = join(tmp(), "ledger.jsonl");
    const l1 = await BudgetLedger.open(path, 10);
    const r1 = await l1.reserve({ usd: 0.3, inputTokens: 5, maxOutputTokens: 7, model: "m", chainId: "x" });
    await l1.charge(r1, { usd: 0.1, inputTokens: 5, outputTokens: 2 });
    await l1.reserve({ usd: 0.4, inputTokens: 5, maxOutputTokens: 7, model: "m", chainId: "y" }); // never settled
    // simulate a torn final write
    appendFileSync(path, '{"type":"res');
    const l2 = await BudgetLedger.open(path, 10);
    expect(l2.totals().spentUsd).toBeCloseTo(0.5, 12);
    expect(l2.chainUsage("y").usd).toBeCloseTo(0.4, 12);
    const r3 = await l2.reserve({ usd: 0.1, inputTokens: 1, maxOutputTokens: 1, model: "m" });
    expect(r3.id).toBe("r3");
    await l2.close();
  });

  it("property: concurrent reservations never let spend + reservations exceed the cap", async () => {
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
                const r = await ledger.reserve({ usd: c.worst, inputTokens: 1, maxOutputTokens: 1, model: "m" });
                const t = ledger.totals();
                maxSeen = Math.max(maxSeen, t.spentUsd + t.reservedUsd);
                await new Promise((res) => setTimeout(res, c.delay));
                await ledger.charge(r, { usd: c.worst * c.frac, inputTokens: 1, outputTokens: 1 });
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
