import type { Command } from "commander";
import { SingleBar } from "cli-progress";
import { extractSeeds, type SeedsProgress } from "../seeds/index.ts";
import { action, numberOption } from "./run-command.ts";

interface SeedsFlags {
  from: string[];
  out: string;
  holdout: number;
  holdoutOut?: string;
  sample: number;
  pool?: number;
  bySource?: boolean;
  lang: string;
  field: string;
  column: string;
  minWords: number;
  maxWords: number;
  nearDup: number;
  embedder: string;
  batchSize: number;
  dedupMemoryMb: number;
  seed: number;
  quiet?: boolean;
}

export function registerSeeds(program: Command): void {
  program
    .command("seeds")
    .description("extract seed sentences from documents (.txt .md .html .jsonl .csv): strip markup, split sentences, filter, dedup, pick seeds that cover the corpus, hold out a split")
    .requiredOption("--from <paths...>", "files or folders of .txt, .md, .html, .jsonl (--field), .csv/.tsv (--column)")
    .requiredOption("--out <file>", "seeds.jsonl to write ({\"text\", \"source\": {\"file\", \"line\"}} per line)")
    .option("--sample <n>", "seeds to pick", numberOption("--sample", { int: true, min: 1 }), 100)
    .option("--holdout <fraction>", "share of distinct sentences held out (never seeds); 0 = none", numberOption("--holdout", { min: 0, max: 0.9 }), 0.1)
    .option("--holdout-out <file>", "where held-out sentences go, one per line (default: holdout.txt beside --out)")
    .option("--by-source", "balance seeds across source files (every file weighs the same)")
    .option("--lang <locale>", "BCP-47 locale for sentence splitting (Intl.Segmenter)", "en")
    .option("--field <name>", "JSONL: the string field with the text (dots reach into objects)", "text")
    .option("--column <name>", "CSV/TSV: the column with the text (header name)", "text")
    .option("--min-words <n>", "shortest sentence kept, in words", numberOption("--min-words", { int: true, min: 1 }), 5)
    .option("--max-words <n>", "longest sentence kept, in words", numberOption("--max-words", { int: true, min: 1 }), 60)
    .option("--pool <n>", "candidates kept for selection (default max(1000, 20 x --sample))", numberOption("--pool", { int: true, min: 1 }))
    .option("--near-dup <cos>", "embedding cosine at or above which two candidates are near duplicates", numberOption("--near-dup", { min: 0, max: 1 }), 0.95)
    .option("--embedder <spec>", "embedder for near duplicates and coverage (as in validate), or \"hashed\" (character trigrams, no model)", "all-MiniLM-L6-v2")
    .option("--batch-size <n>", "sentences per embedding call", numberOption("--batch-size", { int: true, min: 1 }), 64)
    .option("--dedup-memory-mb <mb>", "Bloom filter size for exact duplicates (fixed memory)", numberOption("--dedup-memory-mb", { min: 1, max: 4096 }), 32)
    .option("--seed <n>", "seed for sampling and the holdout split", numberOption("--seed", { int: true }), 0)
    .option("--quiet", "no progress bar")
    .addHelpText(
      "after",
      `
Memory stays flat in the corpus size: one streaming pass keeps a bounded candidate pool (--pool), a
fixed-size Bloom filter for exact duplicates and one paragraph. Prints a JSON summary (counts per
filter reason, duplicates, holdout, seeds). Exit codes: 0 done; 2 bad flag or input (file:line); 1 else.`,
    )
    .action(
      action(async (opts: SeedsFlags) => {
        let bar: SingleBar | undefined;
        const onProgress = (e: SeedsProgress) => {
          if (opts.quiet) return;
          if (e.phase === "list") {
            bar = new SingleBar({
              stream: process.stderr,
              format: "seeds [{bar}] {percentage}% | {mb}/{totalMb} MB | {sentences} sentences | ETA {eta_formatted}",
              hideCursor: true,
              clearOnComplete: false,
              etaBuffer: 50,
            });
            bar.start(Math.max(1, e.bytes), 0, { mb: "0.0", totalMb: (e.bytes / 1e6).toFixed(1), sentences: 0 });
          } else if (e.phase === "read") bar?.update(e.done, { mb: (e.done / 1e6).toFixed(1), sentences: e.sentences });
          else if (e.phase === "embed" && e.done === e.total) {
            bar?.stop();
            process.stderr.write(`embedded ${e.total} candidates\n`);
          }
        };
        try {
          const summary = await extractSeeds({
            from: opts.from,
            out: opts.out,
            holdout: opts.holdout,
            sample: opts.sample,
            bySource: opts.bySource ?? false,
            lang: opts.lang,
            field: opts.field,
            column: opts.column,
            minWords: opts.minWords,
            maxWords: opts.maxWords,
            nearDup: opts.nearDup,
            embedder: opts.embedder,
            batchSize: opts.batchSize,
            dedupMemoryMb: opts.dedupMemoryMb,
            seed: opts.seed,
            onProgress,
            ...(opts.holdoutOut ? { holdoutOut: opts.holdoutOut } : {}),
            ...(opts.pool ? { pool: opts.pool } : {}),
          });
          bar?.stop();
          process.stdout.write(JSON.stringify(summary) + "\n");
        } finally {
          bar?.stop();
        }
      }),
    );
}
