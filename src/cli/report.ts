import type { Command } from "commander";
import { existsSync, statSync } from "node:fs";
import { resolve } from "node:path";
import { ConfigError } from "../errors.ts";
import { writeReport } from "../report/index.ts";
import { action } from "./run-command.ts";

export function registerReport(program: Command): void {
  program
    .command("report")
    .description("write report.html for a run: similarity decay, Spearman histogram, acceptance funnel, cost per kept chain, examples, eval before/after")
    .argument("<run-dir>", "run directory (holds chains.jsonl, and validated.jsonl after validate)")
    .option("--out <file>", "where to write the report (default RUN_DIR/report.html)")
    .action(
      action(async (runDir: string, opts: { out?: string }) => {
        const dir = resolve(runDir);
        if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new ConfigError("run directory not found", { location: { file: runDir } });
        if (!existsSync(resolve(dir, "chains.jsonl")) && !existsSync(resolve(dir, "validated.jsonl"))) {
          throw new ConfigError("no chains.jsonl or validated.jsonl in the run directory", { location: { file: runDir } });
        }
        const { path, data } = await writeReport(dir, opts.out ? resolve(opts.out) : undefined);
        process.stdout.write(`report: ${path} (${data.counts.chains} chains${data.validated ? "" : ", not validated yet"})\n`);
      }),
    );
}
