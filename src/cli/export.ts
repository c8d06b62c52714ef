import { Option, type Command } from "commander";
import { EXPORT_FORMATS, exportDataset, type ExportFormat } from "../export/index.ts";
import { action, numberOption } from "./run-command.ts";

interface ExportFlags {
  format: ExportFormat;
  out: string;
  testFraction: number;
  license: string;
  allowUnvalidated?: boolean;
  steps?: number;
  triplets: "first-last" | "adjacent" | "all";
  scorePairs: "anchor" | "all";
  positives?: number;
  negatives?: number;
  overwrite?: boolean;
}

export function registerExport(program: Command): void {
  program
    .command("export")
    .description("write a run's kept chains as a dataset: hf (datasets.load_dataset(DIR)), st-triplets, st-scores, mteb-rerank; with a dataset card")
    .argument("<run-dir>", "run directory holding validated.jsonl")
    .addOption(new Option("--format <format>", "dataset format").choices([...EXPORT_FORMATS]).makeOptionMandatory())
    .requiredOption("--out <dir>", "output folder (README.md card + <config>/train.jsonl, test.jsonl)")
    .option("--test-fraction <x>", "share of chains (by id hash) in the test split; mteb-rerank uses only these", numberOption("--test-fraction", { min: 0, max: 1 }), 0.1)
    .option("--license <id>", "licence field of the dataset card (e.g. cc-by-4.0); check your generator's terms", "other")
    .option("--steps <n>", "hf: steps per row (default: the number that keeps the most sentences)", numberOption("--steps", { int: true, min: 1 }))
    .addOption(new Option("--triplets <mode>", "st-triplets: positive/negative positions").choices(["first-last", "adjacent", "all"]).default("first-last"))
    .addOption(new Option("--score-pairs <mode>", "st-scores: anchor-step pairs, or every pair in a chain").choices(["anchor", "all"]).default("anchor"))
    .option("--positives <n>", "mteb-rerank: first steps used as positives (default a third)", numberOption("--positives", { int: true, min: 1 }))
    .option("--negatives <n>", "mteb-rerank: last steps used as negatives (default a third)", numberOption("--negatives", { int: true, min: 1 }))
    .option("--allow-unvalidated", "export chains.jsonl when the run was not validated")
    .option("--overwrite", "replace an existing output folder")
    .action(
      action(async (runDir: string, opts: ExportFlags) => {
        const summary = await exportDataset({
          runDir,
          format: opts.format,
          out: opts.out,
          testFraction: opts.testFraction,
          license: opts.license,
          allowUnvalidated: opts.allowUnvalidated ?? false,
          triplets: opts.triplets,
          scorePairs: opts.scorePairs,
          overwrite: opts.overwrite ?? false,
          ...(opts.steps !== undefined ? { steps: opts.steps } : {}),
          ...(opts.positives !== undefined ? { positives: opts.positives } : {}),
          ...(opts.negatives !== undefined ? { negatives: opts.negatives } : {}),
        });
        process.stdout.write(JSON.stringify(summary) + "\n");
      }),
    );
}
