import type { Command } from "commander";
import { formatEvalTable, runEval, type EvalOptions } from "../eval/index.ts";
import { action, numberOption } from "./run-command.ts";

interface EvalFlags extends EvalOptions {
  verbose?: boolean;
  json?: boolean;
}

export function registerEval(program: Command): void {
  program
    .command("eval")
    .description(
      "before/after evaluation of an embedding model: STS Spearman x100, chain-order Kendall x100 on held-out chains, and MAP/MRR@10/nDCG@10 x100 on a reranking file; " +
        "writes eval.json (and copies it into --data RUN_DIR for the report)",
    )
    .requiredOption("--model <dir>", "the model to evaluate (e.g. OUT/model from posttrain)")
    .requiredOption("--sts <file>", "STS TSV with header sentence1<TAB>sentence2<TAB>score (e.g. STS-B dev)")
    .option("--baseline <dir>", "model to compare against (e.g. the base model)")
    .option("--chains <file>", "held-out chains (JSONL of chain records, or a run dir) for chain_kendall")
    .option("--rerank <file>", "reranking file (JSONL: query, positive[], negative[], optional positive_relevance[]; e.g. from export --format mteb-rerank): MAP, MRR@10, nDCG@10")
    .option("--data <run-dir>", "the training data's run directory: its cost (run.json) goes into usd, eval.json is copied there")
    .option("--usd <x>", "what the training data cost (overrides run.json)", numberOption("--usd", { min: 0 }))
    .option("--out <file>", "where to write eval.json (default RUN_DIR/eval.json with --data, else ./eval.json)")
    .option("--device <device>", "torch device for encoding (default cpu)")
    .option("--max-seq-length <n>", "truncate inputs to this many tokens", numberOption("--max-seq-length", { int: true, min: 1 }))
    .option("--verbose", "show the Python side's stderr")
    .option("--json", "print eval.json on stdout")
    .action(
      action(async (opts: EvalFlags) => {
        const { verbose, json, ...options } = opts;
        const result = await runEval(options, {
          onStderr: (line) => {
            if (verbose) process.stderr.write(line + "\n");
          },
        });
        if (result.exitCode !== 0 || !result.document) {
          const message = result.error ? String(result.error.message) : result.stderrTail.slice(-15).join("\n");
          process.stderr.write(`rankchain eval: evaluation failed (exit ${result.exitCode}): ${message}\n`);
          return result.exitCode || 1;
        }
        if (json) process.stdout.write(JSON.stringify(result.document, null, 2) + "\n");
        else process.stdout.write(formatEvalTable(result.document) + "\n");
        process.stderr.write(`eval.json: ${result.outPath}${result.copiedTo ? ` (copied to ${result.copiedTo})` : ""}\n`);
        return 0;
      }),
    );
}
