import type { Command } from "commander";
import { runPosttrain, TrainingProgressRenderer, type PosttrainOptions } from "../posttrain/index.ts";
import { action, numberOption, UsageError } from "./run-command.ts";

function choice<T extends string>(flag: string, values: readonly T[]) {
  return (value: string): T => {
    if (!(values as readonly string[]).includes(value)) throw new UsageError(`${flag} expects one of ${values.join(", ")}, got "${value}"`);
    return value as T;
  };
}

/** A finite number > 0 (learning rates and temperatures). */
function positive(flag: string) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === "" || !Number.isFinite(n) || n <= 0) throw new UsageError(`${flag} expects a number > 0, got "${value}"`);
    return n;
  };
}

interface PosttrainFlags extends Omit<PosttrainOptions, "noExport"> {
  export: boolean;
  verbose?: boolean;
  json?: boolean;
}

export function registerPosttrain(program: Command): void {
  program
    .command("posttrain")
    .description(
      "post-train a sentence-embedding model on validated chains with listwise ranking losses (runs the Python side: " +
        "python -m rankchain_posttrain.train); writes OUT/model (sentence-transformers + onnx/model.onnx) and OUT/training.json",
    )
    .requiredOption("--data <run-dir>", "run directory with validated.jsonl (accepted and repaired chains; and groups.jsonl for --loss lce), or a groups file from rankchain mine")
    .requiredOption("--base-model <dir>", "student: sentence-transformers or Hugging Face encoder directory (or hub id)")
    .requiredOption("--out <dir>", "output directory")
    .option("--loss <spec>", 'losses and weights, e.g. "chain_listmle" or "chain_listmle:1,lce:0.5" (chain_listmle, listnet, chain_order, infonce; lce over mined groups; distill from --cross-encoder-teacher)')
    .option("--teacher <dir>", "teacher model (its own tokenizer is fine); default: a frozen copy of the base model")
    .option("--device <device>", "auto | cuda | cpu", choice("--device", ["auto", "cuda", "cpu"] as const))
    .option("--precision <p>", "auto | fp32 | fp16 | bf16 (auto: bf16/fp16 autocast on CUDA, fp32 on CPU)", choice("--precision", ["auto", "fp32", "fp16", "bf16"] as const))
    .option("--epochs <n>", "epochs (default 1)", numberOption("--epochs", { int: true, min: 1 }))
    .option("--max-steps <n>", "stop after this many optimizer steps", numberOption("--max-steps", { int: true, min: 1 }))
    .option("--lr <x>", "learning rate (default 3e-6)", positive("--lr"))
    .option("--batch-chains <n>", "chains per batch and process (default 16)", numberOption("--batch-chains", { int: true, min: 1 }))
    .option("--tau <x>", "student temperature (default 0.05)", positive("--tau"))
    .option("--tau2 <x>", "teacher temperature (default 0.05)", positive("--tau2"))
    .option("--omega <x>", "chain-order correction strength (default 0.5)", numberOption("--omega", { min: 0 }))
    .option("--pooling <mode>", "student pooling: auto | cls | mean (auto = as saved with the model)", choice("--pooling", ["auto", "cls", "mean"] as const))
    .option("--max-seq-length <n>", "truncate inputs to this many tokens", numberOption("--max-seq-length", { int: true, min: 1 }))
    .option("--encode-chunk <n>", "encode each batch in length-sorted chunks of N sentences (default 0 = one padded batch; single process)", numberOption("--encode-chunk", { int: true, min: 0 }))
    .option("--teacher-cache-mb <n>", "cache the frozen teacher's embeddings across epochs when they fit in N MB (default 4096; 0 = off)", numberOption("--teacher-cache-mb", { int: true, min: 0 }))
    .option("--eval-sts <file>", "STS TSV (sentence1, sentence2, score) evaluated during training; monitored only, unless --select sts")
    .option("--select <what>", "checkpoint chosen on: auto (held-out chains when held out, else last), heldout-chains, sts (only if that set is never reported), last", choice("--select", ["auto", "heldout-chains", "sts", "last"] as const))
    .option("--control <kind>", "none | shuffled (train on the same chains with rewrites shuffled: the order control)", choice("--control", ["none", "shuffled"] as const))
    .option("--eval-every <n>", "evaluate every N steps (default: each epoch)", numberOption("--eval-every", { int: true, min: 0 }))
    .option("--checkpoint-every <n>", "resumable checkpoint every N steps (default 200)", numberOption("--checkpoint-every", { int: true, min: 1 }))
    .option("--holdout-fraction <x>", "keep this fraction of chains out (OUT/heldout.jsonl; selection and eval --chains); default 0.1 with >= 20 chains, else 0", numberOption("--holdout-fraction", { min: 0, max: 0.99 }))
    .option("--seed <n>", "random seed (default 42)", numberOption("--seed", { int: true, min: 0 }))
    .option("--resume", "continue from OUT/checkpoints/last (refused if the settings differ)")
    .option("--gradient-checkpointing", "trade compute for memory")
    .option("--allow-unvalidated", "train on chains.jsonl records without a validation field")
    .option("--groups <file>", "groups.jsonl from rankchain mine (default: RUN_DIR/groups.jsonl, or --data when it is a groups file)")
    .option("--batch-groups <n>", "mined groups per batch and process (default 8)", numberOption("--batch-groups", { int: true, min: 1 }))
    .option("--negatives <mode>", "mined (groups.jsonl as written, default) | cache (re-pick from a cached pool each step)", choice("--negatives", ["mined", "cache"] as const))
    .option("--corrector", "correct the stale candidate cache with a small residual MLP (implies --negatives cache)")
    .option("--refresh-every <n>", "re-encode the whole candidate pool every N steps (0 = never; implies --negatives cache)", numberOption("--refresh-every", { int: true, min: 0 }))
    .option("--corrector-sample <n>", "pool sentences re-encoded to train the corrector (default 64)", numberOption("--corrector-sample", { int: true, min: 0 }))
    .option("--corrector-every <n>", "re-encode that sample every N steps (default 1)", numberOption("--corrector-every", { int: true, min: 1 }))
    .option("--cache-guard <x>", "cache mode: skip candidates scored above x times the positive (default 0.95)", positive("--cache-guard"))
    .option("--no-export", "skip the ONNX export")
    .option("--cross-encoder", "train a cross-encoder instead: a one-label head on --base-model, fitted to graded targets from chain distance; exports onnx/model.onnx (for validate --judge and eval --rerankers)")
    .option("--ce-loss <loss>", "--cross-encoder loss: ranknet (pairwise within a query; default) | bce (graded targets) | bce+ranknet", choice("--ce-loss", ["bce", "ranknet", "bce+ranknet"] as const))
    .option("--ce-head-lr <x>", "--cross-encoder: learning rate of the fresh classification head (default: --lr)", positive("--ce-head-lr"))
    .option("--ce-pairs <mode>", "--cross-encoder pairs: all (every i < j of a chain) | anchor (anchor -> step only)", choice("--ce-pairs", ["all", "anchor"] as const))
    .option("--ce-probe-steps <n>", "--cross-encoder: fit the fresh head alone on frozen features for n full-batch steps before fine-tuning (default 300; 0 = off)", numberOption("--ce-probe-steps", { int: true, min: 0 }))
    .option("--cross-encoder-teacher <dir>", "cross-encoder directory that --loss distill learns from (e.g. OUT/model of posttrain --cross-encoder)")
    .option("--verbose", "show the Python side's stderr (library warnings)")
    .option("--json", "print the trainer's JSON progress lines on stdout instead of a bar")
    .action(
      action(async (opts: PosttrainFlags) => {
        const { export: doExport, verbose, json, ...rest } = opts;
        const options: PosttrainOptions = { ...rest, ...(doExport === false ? { noExport: true } : {}) };
        const renderer = json ? undefined : new TrainingProgressRenderer(process.stderr);
        const result = await runPosttrain(options, {
          onEvent: (ev) => {
            if (json) process.stdout.write(JSON.stringify(ev) + "\n");
            else renderer!.handle(ev);
          },
          onStderr: (line) => {
            if (verbose) process.stderr.write(line + "\n");
          },
        });
        renderer?.stop();
        if (result.exitCode !== 0) {
          const message = result.error ? String(result.error.message) : result.stderrTail.slice(-15).join("\n");
          process.stderr.write(`rankchain posttrain: training failed (exit ${result.exitCode}): ${message}\n`);
          return result.exitCode;
        }
        if (!json && result.done) {
          const best = result.done.best as { step: number; metric: string; value: number } | null;
          process.stderr.write(
            `done: model in ${String(result.done.model)}` +
              (result.done.onnx ? ` (ONNX: ${String(result.done.onnx)})` : "") +
              (best ? `; kept step ${best.step}, best ${best.metric} ${best.value.toFixed(2)}` : "") +
              (options.crossEncoder
                ? `\nnext: rankchain validate ${options.data} --judge cascade --cross-encoder ${String(result.done.model)}\n`
                : `\nnext: rankchain eval --model ${String(result.done.model)} --baseline ${options.baseModel} --sts <sts.tsv> --data ${options.data}\n`),
          );
        }
        return 0;
      }),
    );
}
