import type { Command } from "commander";
import { mergeRuns } from "../store/merge.ts";
import { action } from "./run-command.ts";

export function registerMerge(program: Command): void {
  program
    .command("merge")
    .description("combine runs (e.g. the shards of one --shard i/n run) into one run directory")
    .argument("<out>", "new run directory to write (must not exist or be empty)")
    .argument("<runs...>", "run directories to combine; their fingerprints must match except for the shard")
    .addHelpText(
      "after",
      `
Chains are deduplicated by id, every ledger entry of every run is kept (so the totals are the sum),
unsettled reservations of a killed part are charged at their worst case, and one run.json is written
(merged_from lists the parts). generate --resume on OUT, with the same settings and no --shard,
generates whatever seeds the parts did not cover. Exit 2 when the runs' settings differ.`,
    )
    .action(
      action(async (out: string, runs: string[]) => {
        const s = await mergeRuns(out, runs);
        process.stdout.write(
          JSON.stringify({ status: s.manifest.status, out: s.out, runs: s.runs, chains: s.chains, duplicate_chains: s.duplicateChains, usd: s.usd, ledger_entries: s.ledgerEntries }) + "\n",
        );
      }),
    );
}
