import type { Command } from "commander";
import { formatEvalTable, runEval, type EvalOptions } from "../eval/index.ts";
import { ConfigError } from "../errors.ts";
import { action, numberOption } from "./run-command.ts";

interface EvalFlags extends EvalOptions {
  verbose?: boolean;
  json?: boolean;
  rerankers?: string;
  depth: string;
  embedder?: string;
  crossEncoder?: string;
  llmProvider: string;
  llmModel?: string;
  llmBaseUrl?: string;
  llmMaxUsd?: number;
  prices?: string;
}

export function registerEval(program: Command): void {
  program
    .command("eval")
    .description(
      "before/after evaluation of an embedding model: STS Spearman x100, chain-order Kendall x100 on held-out chains, and MAP/MRR@10/nDCG@10 x100 on a reranking file; " +
        "writes eval.json (and copies it into --data RUN_DIR for the report)",
    )
    .option("--model <dir>", "the model to evaluate (e.g. OUT/model from posttrain); required with --sts")
    .option("--sts <file>", "STS TSV with header sentence1<TAB>sentence2<TAB>score (e.g. STS-B dev)")
    .option("--baseline <dir>", "model to compare against (e.g. the base model)")
    .option("--chains <file>", "held-out chains (JSONL of chain records, or a run dir) for chain_kendall")
    .option("--rerank <file>", "reranking file (JSONL: query, positive[], negative[], optional positive_relevance[]; e.g. from export --format mteb-rerank): MAP, MRR@10, nDCG@10")
    .option("--data <run-dir>", "the training data's run directory: its cost (run.json) goes into usd, eval.json is copied there")
    .option("--usd <x>", "what the training data cost (overrides run.json)", numberOption("--usd", { min: 0 }))
    .option("--out <file>", "where to write eval.json (default RUN_DIR/eval.json with --data, else ./eval.json)")
    .option("--device <device>", "torch device for encoding (default cpu)")
    .option("--max-seq-length <n>", "truncate inputs to this many tokens", numberOption("--max-seq-length", { int: true, min: 1 }))
    .option("--rerankers <list>", "with --rerank: comma list of embedder, cross-encoder, llm, cascade, pointwise — nDCG@10, MAP, MRR@10, USD and ms per query side by side (eval.json: rerank)")
    .option("--depth <list>", "candidates each reranker reorders from the embedder's top (comma list)", "20,50,100")
    .option("--embedder <spec>", "first stage for --rerankers (default: --model's exported ONNX dir, else all-MiniLM-L6-v2)")
    .option("--cross-encoder <spec>", "cross-encoder directory (onnx/model.onnx) or hub id")
    .option("--llm-provider <p>", "LLM reranker provider: openai | anthropic | openai-compatible | local", "local")
    .option("--llm-model <m>", "LLM reranker model (local: registry name or GGUF path; default the registry default)")
    .option("--llm-base-url <url>", "LLM reranker base URL (openai-compatible)")
    .option("--llm-max-usd <x>", "hard cap of the LLM reranker's spend (stage \"eval\"; with --data in the run's ledger.jsonl)", numberOption("--llm-max-usd", { min: 0 }))
    .option("--prices <file>", "JSON price table for the LLM reranker")
    .option("--verbose", "show the Python side's stderr")
    .option("--json", "print eval.json on stdout")
    .action(
      action(async (opts: EvalFlags) => {
        const { verbose, json, rerankers, depth, embedder, crossEncoder, llmProvider, llmModel, llmBaseUrl, llmMaxUsd, prices, ...options } = opts;
        const rerank = options.rerank;
        if (rerankers !== undefined && !rerank) throw new ConfigError("--rerankers needs --rerank FILE");
        if (!options.sts && !rerankers) throw new ConfigError("give --sts FILE (with --model) or --rerank FILE --rerankers LIST");
        if (options.sts && !options.model) throw new ConfigError("--sts needs --model DIR");
        // Loaded on demand, not at start-up: the ONNX runtime and tokenizers take seconds to import.
        const runRerankers = async (list: string, out: string) => {
          const { runRerankEval } = await import("../eval/rerankers-run.ts");
          const { join } = await import("node:path");
          return runRerankEval({
            rerank: rerank!,
            rerankers: list,
            depth,
            embedder: embedder ?? options.model,
            crossEncoder,
            llmProvider,
            llmModel,
            llmBaseUrl,
            llmMaxUsd,
            prices,
            ledgerPath: options.data ? join(options.data, "ledger.jsonl") : undefined,
            out,
          });
        };
        if (!options.sts) {
          const { defaultEvalOut } = await import("../eval/rerankers-run.ts");
          const { formatRerankTable } = await import("../eval/rerankers.ts");
          const r = await runRerankers(rerankers!, defaultEvalOut(options.data, options.out));
          if (json) process.stdout.write(JSON.stringify(r.evaluation, null, 2) + "\n");
          else process.stdout.write(formatRerankTable(r.evaluation) + "\n");
          process.stderr.write(`eval.json: ${r.outPath}\n`);
          return 0;
        }
        const result = await runEval(options as EvalOptions & { model: string; sts: string }, {
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
        if (rerankers !== undefined) {
          const { formatRerankTable } = await import("../eval/rerankers.ts");
          const r = await runRerankers(rerankers, result.outPath);
          if (!json) process.stdout.write(formatRerankTable(r.evaluation) + "\n");
          if (result.copiedTo) {
            const { copyFileSync } = await import("node:fs");
            copyFileSync(result.outPath, result.copiedTo);
          }
        }
        return 0;
      }),
    );
}
