/**
 * bench/ledger: reservations per second, the file ledger (ledger.jsonl, one process) vs the
 * PostgreSQL ledger (one budget row, one connection per reserver), at 1, 8 and 64 concurrent
 * reservers. One "reservation" is a full cycle: reserve the worst case (durably recorded) and
 * charge the reported usage. Rounds are interleaved (file, pg, file, pg, …) so contention on a
 * shared machine falls on both alike; the ratio pg/file is printed per concurrency.
 * PostgreSQL comes from scripts/setup-postgres.sh (or RANKCHAIN_TEST_PG_URL).
 * Run: npx tsx bench/ledger/run.ts [--seconds 2] [--rounds 2]
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { BudgetLedger } from "../../src/budget/ledger.ts";
import { PgLedger } from "../../src/budget/pg-ledger.ts";
import type { Ledger } from "../../src/budget/types.ts";

const { values } = parseArgs({ options: { seconds: { type: "string", default: "2" }, rounds: { type: "string", default: "2" } } });
const SECONDS = Number(values.seconds);
const ROUNDS = Number(values.rounds);
const url = process.env.RANKCHAIN_TEST_PG_URL ?? execFileSync("bash", ["scripts/setup-postgres.sh"], { encoding: "utf8" }).trim().split("\n").pop()!;
const dir = mkdtempSync(join(tmpdir(), "rankchain-bench-ledger-"));
const price = { input: 0.15, output: 0.6 };

async function measure(ledger: Ledger, concurrency: number): Promise<number> {
  const until = Date.now() + SECONDS * 1000;
  let n = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (Date.now() < until) {
        const r = await ledger.reserve({ stage: "generate", model: "openai/gpt-4o-mini", inputTokens: 500, maxOutputTokens: 100, price });
        await ledger.charge(r, { inputTokens: 480, outputTokens: 60 });
        n++;
      }
    }),
  );
  return n / SECONDS;
}

const results: Record<string, { file: number[]; pg: number[] }> = {};
let k = 0;
for (let round = 0; round < ROUNDS; round++) {
  for (const c of [1, 8, 64]) {
    const key = String(c);
    results[key] ??= { file: [], pg: [] };
    const file = await BudgetLedger.open(join(dir, `ledger-${k++}.jsonl`), 1e9);
    results[key].file.push(await measure(file, c));
    await file.close();
    const pgl = await PgLedger.open({ url, budgetId: `bench-${process.pid}-${k++}`, capUsd: 1e9, poolSize: c });
    results[key].pg.push(await measure(pgl, c));
    await pgl.close();
  }
}
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
console.log(`reservations/s (reserve + charge), ${SECONDS} s per measurement, ${ROUNDS} interleaved rounds; machine shared with other jobs`);
console.log("concurrent  file/s   postgres/s  pg/file");
for (const [c, r] of Object.entries(results)) {
  const f = mean(r.file);
  const p = mean(r.pg);
  console.log(`${c.padStart(10)}  ${f.toFixed(0).padStart(6)}  ${p.toFixed(0).padStart(10)}  ${(p / f).toFixed(2)}×`);
}
