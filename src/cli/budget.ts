import { Command } from "commander";
import { ConfigError } from "../errors.ts";
import { PgLedger } from "../budget/pg-ledger.ts";
import { action } from "./run-command.ts";

function ledgerUrl(opts: { ledger?: string }): string {
  const url = opts.ledger ?? (process.env.RANKCHAIN_LEDGER || undefined);
  if (!url || !/^postgres(ql)?:\/\//.test(url)) throw new ConfigError("--ledger: expects the shared ledger's postgres:// URL (or set RANKCHAIN_LEDGER)");
  return url;
}

export function registerBudget(program: Command): void {
  const budget = program.command("budget").description("inspect and repair a shared budget (--ledger postgres://…)");
  const common = (c: Command) =>
    c
      .option("--ledger <url>", "the shared ledger: postgres://user@host:port/db (env RANKCHAIN_LEDGER)")
      .option("--budget-id <id>", "the shared budget's name", "default");
  common(budget.command("show").description("print the budget: cap, spent, reserved, open and expired reservations (JSON)")).action(
    action(async (opts: { ledger?: string; budgetId: string }) => {
      const l = await PgLedger.open({ url: ledgerUrl(opts), budgetId: opts.budgetId, capUsd: undefined, create: false });
      try {
        process.stdout.write(JSON.stringify(await l.summary()) + "\n");
      } finally {
        await l.close();
      }
    }),
  );
  common(
    budget
      .command("settle")
      .description("charge reservations left open by stopped processes at their worst case (expired leases; --force: all open ones)")
      .option("--force", "settle every open reservation, leased or not: only when no process of the fleet is running", false),
  ).action(
    action(async (opts: { ledger?: string; budgetId: string; force: boolean }) => {
      // opening already settles expired leases; --force settles the rest
      const l = await PgLedger.open({ url: ledgerUrl(opts), budgetId: opts.budgetId, capUsd: undefined, create: false });
      try {
        const forced = opts.force ? await l.settleExpired(true) : { settled: 0, usd: 0 };
        const settled = { settled: l.settledOnOpen.settled + forced.settled, usd: l.settledOnOpen.usd + forced.usd };
        process.stdout.write(JSON.stringify({ settled_now: settled, budget: await l.summary() }) + "\n");
      } finally {
        await l.close();
      }
    }),
  );
}
