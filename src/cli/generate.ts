import { Command, Option } from "commander";
import type { GenerateConfig } from "../config/run-config.ts";
import { generate, resolveGenerateConfig, type GenerateOptions } from "../api/generate.ts";
import { createChainProgress, type ChainProgress } from "./progress.ts";
import { action, numberOption } from "./run-command.ts";
import { printRunSummary } from "./summary.ts";

export function addGenerationOptions(cmd: Command): Command {
  return cmd
    .requiredOption("--input <file>", "seeds: one sentence per line, or JSONL with a \"text\" field")
    .addOption(new Option("--provider <name>", "LLM provider").choices(["openai", "anthropic", "openai-compatible", "local"]).default("local"))
    .option("--model <id>", "model id (hosted), or GGUF path / registry name / hf:<repo>/<file> (local)", "smollm2-135m-instruct")
    .option("--base-url <url>", "API base URL (required for openai-compatible; vLLM, llama.cpp server, Ollama); URL1,URL2,… for a farm of openai-compatible servers")
    .option("--steps <n>", "rewrites per chain", numberOption("--steps", { int: true, min: 1, max: 64 }), 8)
    .addOption(new Option("--steering <mode>", "direction control: stepwise | ladder (any model), cfg (local only)").choices(["stepwise", "ladder", "cfg"]).default("stepwise"))
    .option("--guidance <g>", "CFG guidance strength γ for --steering cfg (1 = plain decoding)", numberOption("--guidance", { min: 1, max: 20 }), 1.5)
    .option("--cfg-top-k <k>", "CFG approximation: score only the top-K tokens of the positive prompt (default: exact, full vocabulary)", numberOption("--cfg-top-k", { int: true, min: 1 }))
    .option("--max-output-tokens <n>", "max new tokens per call (a ladder call holds all steps)", numberOption("--max-output-tokens", { int: true, min: 1 }))
    .option("--temperature <t>", "sampling temperature (0 = greedy)", numberOption("--temperature", { min: 0, max: 2 }), 0)
    .option("--seed <n>", "sampling seed, where the provider supports one", numberOption("--seed", { int: true, min: 0, max: 2 ** 31 - 1 }))
    .option("--limit <k>", "use only the first K seeds", numberOption("--limit", { int: true, min: 1 }))
    .option("--price-input <usd>", "input price, USD per million tokens (overrides the table)", numberOption("--price-input", { min: 0 }))
    .option("--price-output <usd>", "output price, USD per million tokens (overrides the table)", numberOption("--price-output", { min: 0 }))
    .option("--prices <file>", "JSON price table overriding/adding models (see README)")
    .option("--prompt-version <n>", "prompt template version (default: latest)", numberOption("--prompt-version", { int: true, min: 1 }))
    .option("--oversample <k>", "generate steps×K rewrites and keep every K-th (long chains drift further per kept step)", numberOption("--oversample", { int: true, min: 1, max: 8 }), 1)
    .option("--step-retries <n>", "retries of a bad step (copy, refusal, drift rule), each with changed settings recorded in the chain", numberOption("--step-retries", { int: true, min: 0, max: 5 }), 2)
    .option("--no-drift-rules", "do not retry steps outside the length band, appending to the previous step, or (stepwise/ladder) returning toward the anchor")
    .option("--max-seed-chars <n>", "reject seeds longer than this", numberOption("--max-seed-chars", { int: true, min: 1 }), 2000)
    .addOption(new Option("--gpu <mode>", "local models: GPU backend").choices(["auto", "cuda", "metal", "off"]).default("auto"))
    .option("--deterministic", "local models: a chain's output does not depend on --concurrency or timing (CPU, one llama.cpp thread, flash attention; see docs/local-models.md)", false);
}

export function registerGenerate(program: Command): void {
  const cmd = program
    .command("generate")
    .description("generate ranking chains from seed sentences (writes chains.jsonl, ledger.jsonl, run.json)")
    .requiredOption("--out <dir>", "run directory");
  addGenerationOptions(cmd)
    .option("--concurrency <n>", "chains generated at once", numberOption("--concurrency", { int: true, min: 1, max: 256 }), 4)
    .option("--max-usd <usd>", "hard budget cap in USD: a call that could cross it is not made (exit 3)", numberOption("--max-usd", { min: 0 }))
    .option("--timeout <ms>", "per-request timeout in milliseconds", numberOption("--timeout", { int: true, min: 100 }), 60_000)
    .option("--max-retries <n>", "retries of a retryable provider error (429, 5xx, timeouts)", numberOption("--max-retries", { int: true, min: 0, max: 20 }), 4)
    .option("--ledger <url>", "shared ledger: postgres://user@host:port/db (default: the run's ledger.jsonl); env RANKCHAIN_LEDGER")
    .option("--budget-id <id>", "with --ledger: the shared budget's name; every process naming it shares one --max-usd cap", "default")
    .option("--shard <i/n>", "generate only shard i of n (0-based; seeds split by a hash of their text); combine with rankchain merge")
    .addOption(new Option("--mode <mode>", "online: one request per call; batch: the provider's batch API (about half price, asynchronous; openai/anthropic)").choices(["online", "batch"]).default("online"))
    .option("--poll-seconds <s>", "--mode batch: seconds between status polls", numberOption("--poll-seconds", { min: 0.01, max: 3600 }), 30)
    .option("--max-connection-failures <n>", "stop the run (exit 4) after N consecutive connection failures (refused, reset, timed out)", numberOption("--max-connection-failures", { int: true, min: 1, max: 1000 }), 5)
    .option("--min-steps <n>", "a chain with fewer steps is not usable; a run without a usable chain exits 1 (default: min(3, --steps))", numberOption("--min-steps", { int: true, min: 1, max: 64 }))
    .option("--resume", "continue the run in --out: nothing paid for is requested again", false)
    .option("--quiet", "no progress bar (CI); the summary still prints", false)
    .addHelpText(
      "after",
      `
Exit codes: 0 done; 2 bad usage, config or input; 3 budget cap reached (all paid work saved; --resume
with a larger --max-usd continues); 4 provider unreachable (N consecutive connection failures;
everything paid for is saved; --resume continues); 130 interrupted (SIGINT/SIGTERM: calls in flight
finish, a second signal aborts them); 1 anything else, including a run whose every chain is empty or
shorter than --min-steps. Keys: OPENAI_API_KEY, ANTHROPIC_API_KEY, OPENAI_BASE_URL (env or .env).`,
    )
    .action(
      action(async (opts: Record<string, unknown>) => {
        // validated here too (before any signal handler), as the library's generate() does
        const settings = {
          ...(opts as unknown as GenerateOptions),
          ledger: (opts.ledger as string | undefined) ?? (process.env.RANKCHAIN_LEDGER || undefined),
          timeoutMs: opts.timeout as number | undefined,
        };
        let config: GenerateConfig;
        try {
          config = resolveGenerateConfig(settings);
        } catch (error) {
          printRunSummary(String(opts.out ?? ""), { error, capUsd: typeof opts.maxUsd === "number" ? opts.maxUsd : undefined });
          throw error;
        }
        const drain = new AbortController();
        const abort = new AbortController();
        let signals = 0;
        const onSignal = (sig: NodeJS.Signals) => {
          signals++;
          if (signals === 1) {
            process.stderr.write(`\n${sig}: finishing calls in flight (another ${sig} aborts them)...\n`);
            drain.abort();
          } else abort.abort(new Error(`aborted by ${sig}`));
        };
        process.on("SIGINT", onSignal);
        process.on("SIGTERM", onSignal);
        let progress: ChainProgress | undefined;
        let lastBatchLine = "";
        try {
          const summary = await generate({
            ...settings,
            drainSignal: drain.signal,
            signal: abort.signal,
            onProgress: (e) => {
              if (e.phase === "start") {
                const dups = e.duplicateSeeds;
                if (dups.length > 0) {
                  const shown = dups.slice(0, 5).map((d) => `line ${d.line} = line ${d.firstLine}`).join(", ");
                  process.stderr.write(`note: ${dups.length} duplicate seed(s) skipped (${shown}${dups.length > 5 ? ", ..." : ""})\n`);
                }
                progress = createChainProgress({ total: e.total, initial: e.alreadyDone, capUsd: e.capUsd, quiet: config.quiet });
              } else if (e.phase === "chain") progress?.tick(e.done, e.spentUsd);
              else if (e.phase === "batch-submit") {
                if (!config.quiet) process.stderr.write(`\nbatch ${e.id}: submitted ${e.requests} request(s); polling every ${config.pollSeconds} s\n`);
              } else if (e.phase === "batch-progress") {
                const line = `batch ${e.id}: ${e.status.raw}, ${e.status.succeeded + e.status.failed}/${e.status.total} done (${e.status.failed} failed)`;
                if (!config.quiet && line !== lastBatchLine) process.stderr.write(line + "\n");
                lastBatchLine = line;
              }
            },
          });
          progress?.stop();
          const servers = (summary.manifest as { servers?: Array<{ url: string; requests: number; ok: number; failed: number; downs: number; healthy: boolean }> }).servers;
          for (const sv of servers ?? []) {
            process.stderr.write(`server ${sv.url}: ${sv.ok} ok, ${sv.failed} failed of ${sv.requests} routed, out of rotation ${sv.downs}×, ${sv.healthy ? "healthy" : "down"}\n`);
          }
          printRunSummary(summary.out, { capUsd: config.maxUsd });
        } catch (error) {
          // every exit prints the summary (status, counts, spend, reason); the exit code follows the error
          progress?.stop();
          printRunSummary(config.out, { error, capUsd: config.maxUsd });
          throw error;
        } finally {
          progress?.stop();
          process.off("SIGINT", onSignal);
          process.off("SIGTERM", onSignal);
        }
      }),
    );
}
