import type { Command } from "commander";
import { SingleBar } from "cli-progress";
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { readLedgerTotals } from "../budget/ledger.ts";
import { ConfigError } from "../errors.ts";
import { writeReport } from "../report/index.ts";
import { DEFAULT_GATE_THRESHOLDS, DEFAULT_JUDGE_THRESHOLDS, HARD_KINDS, JUDGE_MODES, POLICIES, SOFT_KINDS, type GateThresholds, type JudgeMode, type Policy } from "../validate/index.ts";
import { action, numberOption, UsageError } from "./run-command.ts";
import { exitCodeFor } from "./exit-codes.ts";
import type { LedgerTotals } from "../budget/types.ts";
import { validate } from "../api/validate.ts";

interface ValidateFlags {
  embedder?: string;
  policy: string;
  holdout?: string;
  minSteps: number;
  batchSize: number;
  inversionTolerance?: number;
  dupThreshold?: number;
  chainDupThreshold?: number;
  leakThreshold?: number;
  cycleMargin?: number;
  lengthZ?: number;
  maxDrop?: number;
  maxUsd?: number;
  soft?: string[];
  judge: string;
  crossEncoder?: string;
  judgeProvider: string;
  judgeModel?: string;
  judgeBaseUrl?: string;
  judgeMaxUsd?: number;
  judgeMinKendall?: number;
  judgeMargin?: number;
  judgeWindow?: number;
  judgeStep?: number;
  prices?: string;
  hard?: string[];
  dupTextSimilarity?: number;
  unrelatedThreshold?: number;
  report: boolean;
  quiet?: boolean;
}

function policyOption(value: string): Policy {
  if (!(POLICIES as readonly string[]).includes(value)) throw new UsageError(`--policy expects one of ${POLICIES.join(", ")}, got "${value}"`);
  return value as Policy;
}

function softOption(value: string): string[] {
  const kinds = value.split(",").map((k) => k.trim()).filter(Boolean);
  for (const k of kinds) {
    if (!(HARD_KINDS as readonly string[]).includes(k)) throw new UsageError(`--soft expects a comma list of ${HARD_KINDS.join(", ")}; got "${k}"`);
  }
  return kinds;
}

function hardOption(value: string): string[] {
  const kinds = value.split(",").map((k) => k.trim()).filter(Boolean);
  for (const k of kinds) {
    if (!(SOFT_KINDS as readonly string[]).includes(k)) throw new UsageError(`--hard expects a comma list of ${SOFT_KINDS.join(", ")}; got "${k}"`);
  }
  return kinds;
}

const cos = (flag: string) => numberOption(flag, { min: -1, max: 1 });

function judgeOption(value: string): JudgeMode {
  if (!(JUDGE_MODES as readonly string[]).includes(value)) throw new UsageError(`--judge expects one of ${JUDGE_MODES.join(", ")}, got "${value}"`);
  return value as JudgeMode;
}

const PROVIDERS = ["openai", "anthropic", "openai-compatible", "local"] as const;
function providerOption(value: string): string {
  if (!(PROVIDERS as readonly string[]).includes(value)) throw new UsageError(`--judge-provider expects one of ${PROVIDERS.join(", ")}, got "${value}"`);
  return value;
}

export function registerValidate(program: Command): void {
  program
    .command("validate")
    .description("check chains with embeddings: drift order, inversions, duplicates, cycles, refusals, holdout leaks; writes validated.jsonl, accepted.jsonl, validation.json and report.html")
    .argument("<run-dir>", "run directory holding chains.jsonl")
    .option("--embedder <spec>", "registry name, model directory, hub id or openai:<model>", "all-MiniLM-L6-v2")
    .option("--policy <policy>", "strict | repair | lenient", policyOption, "repair")
    .option("--holdout <file>", "sentences training data must not contain (.txt lines, .tsv/.csv with sentence columns, .jsonl)")
    .option("--min-steps <n>", "fewest steps a kept chain may have", numberOption("--min-steps", { int: true, min: 1 }), 3)
    .option("--batch-size <n>", "sentences per embedding call", numberOption("--batch-size", { int: true, min: 1 }), 64)
    .option("--inversion-tolerance <x>", `rise in similarity tolerated between steps (default ${DEFAULT_GATE_THRESHOLDS.inversionTolerance})`, numberOption("--inversion-tolerance", { min: 0, max: 2 }))
    .option("--dup-threshold <cos>", `near-duplicate steps: at or above this cosine and --dup-text-similarity (default ${DEFAULT_GATE_THRESHOLDS.dupThreshold})`, cos("--dup-threshold"))
    .option("--dup-text-similarity <x>", `near-duplicate steps: character-level similarity at or above this (default ${DEFAULT_GATE_THRESHOLDS.dupTextSimilarity})`, numberOption("--dup-text-similarity", { min: 0, max: 1 }))
    .option("--unrelated-threshold <cos>", `a step below this cosine to the sentence it rewrites is unrelated (default ${DEFAULT_GATE_THRESHOLDS.unrelatedThreshold})`, cos("--unrelated-threshold"))
    .option("--chain-dup-threshold <cos>", `duplicate chains at or above this centroid cosine (default ${DEFAULT_GATE_THRESHOLDS.chainDupThreshold})`, cos("--chain-dup-threshold"))
    .option("--leak-threshold <cos>", `holdout leak at or above this cosine (default ${DEFAULT_GATE_THRESHOLDS.leakThreshold})`, cos("--leak-threshold"))
    .option("--cycle-margin <x>", `margin for cycles (default ${DEFAULT_GATE_THRESHOLDS.cycleMargin})`, numberOption("--cycle-margin", { min: 0, max: 2 }))
    .option("--length-z <z>", `robust z-score of a length outlier (default ${DEFAULT_GATE_THRESHOLDS.lengthZ})`, numberOption("--length-z", { min: 0 }))
    .option("--max-drop <x>", `similarity drop between steps flagged as a jump (default ${DEFAULT_GATE_THRESHOLDS.maxDrop})`, numberOption("--max-drop", { min: 0, max: 2 }))
    .option("--soft <kinds>", `comma list of hard reason kinds to only flag (${HARD_KINDS.join(", ")})`, softOption)
    .option("--hard <kinds>", `comma list of soft reason kinds to treat as hard (${SOFT_KINDS.join(", ")})`, hardOption)
    .option("--max-usd <x>", "hard cap on validate's own spend (paid embedder openai:…; generation spend does not count); recorded in the run's ledger.jsonl as stage \"validate\"", numberOption("--max-usd", { min: 0 }))
    .option("--judge <mode>", `judges after the gate: ${JUDGE_MODES.join(" | ")} (cascade: cross-encoder for all, LLM where it is unsure)`, judgeOption, "embedder")
    .option("--cross-encoder <spec>", "cross-encoder directory (onnx/model.onnx + tokenizer.json; see posttrain --cross-encoder) or hub id")
    .option("--judge-provider <p>", "LLM judge provider: openai | anthropic | openai-compatible | local", providerOption, "local")
    .option("--judge-model <m>", "LLM judge model (local: registry name or GGUF path)")
    .option("--judge-base-url <url>", "LLM judge base URL (openai-compatible)")
    .option("--judge-max-usd <x>", "hard cap of the LLM judge's own spend (stage \"judge\" of the run's ledger.jsonl); when reached the cheaper verdicts stand", numberOption("--judge-max-usd", { min: 0 }))
    .option("--judge-min-kendall <t>", `a judge calls a chain in order at Kendall tau >= t (default ${DEFAULT_JUDGE_THRESHOLDS.minKendall})`, numberOption("--judge-min-kendall", { min: -1, max: 1 }))
    .option("--judge-margin <m>", `cascade: escalate when the cross-encoder's Kendall is within m of the threshold (default ${DEFAULT_JUDGE_THRESHOLDS.margin})`, numberOption("--judge-margin", { min: 0, max: 2 }))
    .option("--judge-window <n>", "LLM listwise window (default 20)", numberOption("--judge-window", { int: true, min: 2 }))
    .option("--judge-step <n>", "LLM listwise step (default 10)", numberOption("--judge-step", { int: true, min: 1 }))
    .option("--prices <file>", "JSON price table for the LLM judge (see README)")
    .option("--no-report", "do not (re)write report.html")
    .option("--quiet", "no progress bar")
    .action(
      action(async (runDir: string, opts: ValidateFlags) => {
        const dir = resolve(runDir);
        const thresholds: Partial<GateThresholds> = {};
        if (opts.inversionTolerance !== undefined) thresholds.inversionTolerance = opts.inversionTolerance;
        if (opts.dupThreshold !== undefined) thresholds.dupThreshold = opts.dupThreshold;
        if (opts.dupTextSimilarity !== undefined) thresholds.dupTextSimilarity = opts.dupTextSimilarity;
        if (opts.unrelatedThreshold !== undefined) thresholds.unrelatedThreshold = opts.unrelatedThreshold;
        if (opts.chainDupThreshold !== undefined) thresholds.chainDupThreshold = opts.chainDupThreshold;
        if (opts.leakThreshold !== undefined) thresholds.leakThreshold = opts.leakThreshold;
        if (opts.cycleMargin !== undefined) thresholds.cycleMargin = opts.cycleMargin;
        if (opts.lengthZ !== undefined) thresholds.lengthZ = opts.lengthZ;
        if (opts.maxDrop !== undefined) thresholds.maxDrop = opts.maxDrop;

        const judge = opts.judge as JudgeMode;
        if ((judge === "cross-encoder" || judge === "cascade") && !opts.crossEncoder) throw new ConfigError(`--judge ${judge} needs --cross-encoder DIR`);
        if ((judge === "llm" || judge === "cascade") && opts.judgeProvider !== "local" && !opts.judgeModel) throw new ConfigError(`--judge ${judge} with --judge-provider ${opts.judgeProvider} needs --judge-model`);

        const bar = opts.quiet
          ? undefined
          : new SingleBar({
              stream: process.stderr,
              format: "validate [{bar}] {value}/{total} chains | accepted {accepted} repaired {repaired} rejected {rejected} | {eta_formatted}",
              hideCursor: true,
              clearOnComplete: false,
            });
        try {
          // the library's validate(): the same checks, embedder, paid-vector cache and stage cap
          // (--max-usd; a rerun after a kill pays nothing twice) as a program that calls it
          const summary = await validate({
            runDir,
            embedder: opts.embedder,
            policy: opts.policy as Policy,
            minSteps: opts.minSteps,
            batchSize: opts.batchSize,
            thresholds,
            holdout: opts.holdout,
            softKinds: opts.soft ?? [],
            hardKinds: opts.hard ?? [],
            maxUsd: opts.maxUsd,
            report: false,
            onProgress: (e) => {
              if (e.phase === "start") bar?.start(e.total, 0, { accepted: 0, repaired: 0, rejected: 0 });
              else if (e.phase === "chains") bar?.update(e.done, { accepted: e.accepted, repaired: e.repaired, rejected: e.rejected });
              else if (e.phase === "warning") process.stderr.write(`rankchain validate: warning: ${e.message}\n`);
              else if (!opts.quiet) process.stderr.write(`rankchain validate: ${e.message}\n`);
            },
          });
          bar?.stop();
          let judgeLine: string | undefined;
          if (judge !== "embedder") {
            const j = await runJudges(dir, judge, opts);
            const a = j.agreement;
            summary.counts = (JSON.parse(readFileSync(join(dir, "validation.json"), "utf8")) as typeof summary).counts;
            const agree = a.judges.flatMap((x, i) => a.judges.slice(i + 1).map((y, k) => `${x}~${y} ${a.matrix[i]![i + 1 + k] ?? "–"}`)).join(", ");
            judgeLine = `judges (${judge}): ${j.counts.judged} chains judged, ${j.counts.llm_judged} by the LLM ($${j.llm_usd.toFixed(6)}${j.counts.llm_skipped_budget ? `, ${j.counts.llm_skipped_budget} skipped at the cap` : ""}), ${j.counts.rejected_by_judge} rejected by a judge; agreement ${agree}`;
          }
          const c = summary.counts;
          const top = Object.entries(summary.reasons)
            .sort((a, b) => b[1].chains - a[1].chains)
            .slice(0, 6)
            .map(([k, v]) => `${k} ${v.chains}`)
            .join(", ");
          const lines = [
            `validated ${c.chains} chains with ${summary.embedder.id} (policy ${summary.policy}): accepted ${c.accepted}, repaired ${c.repaired}, rejected ${c.rejected}`,
            top ? `reasons (chains): ${top}` : "reasons: none",
            `Spearman (kept) median ${summary.spearman.kept.median ?? "–"}; cost per kept chain ${summary.cost.usd_per_kept_chain === null ? "–" : "$" + summary.cost.usd_per_kept_chain.toPrecision(3)} (${summary.cost.source})`,
            `wrote ${join(dir, "validated.jsonl")}, accepted.jsonl, validation.json`,
          ];
          if (judgeLine) lines.splice(1, 0, judgeLine);
          if (opts.report) {
            const { path } = await writeReport(dir);
            lines.push(`report: ${path}`);
          }
          process.stdout.write(lines.join("\n") + "\n");
          const spend = await readLedgerTotals(join(dir, "ledger.jsonl"));
          process.stdout.write(
            JSON.stringify({
              status: "completed",
              exit_code: 0,
              out: dir,
              chains: c.chains,
              accepted: c.accepted,
              repaired: c.repaired,
              rejected: c.rejected,
              usd: spend ? Math.round(spend.spentUsd * 1e9) / 1e9 : null,
              by_stage: spend?.byStage ?? null,
              cap_usd: opts.maxUsd ?? null,
              reason: null,
            }) + "\n",
          );
        } catch (error) {
          bar?.stop();
          // every exit prints the JSON summary (status, spend by stage, reason)
          process.stdout.write(JSON.stringify(validateExitSummary(dir, error, await readLedgerTotals(join(dir, "ledger.jsonl")).catch(() => undefined), opts.maxUsd)) + "\n");
          throw error;
        } finally {
          bar?.stop();
        }
      }),
    );
}

/** The judging pass after the gate (--judge cross-encoder | llm | cascade). */
async function runJudges(dir: string, mode: Exclude<JudgeMode, "embedder">, opts: ValidateFlags) {
  const { CrossEncoder, createLlmReranker } = await import("../rerank/index.ts");
  const { judgeRun } = await import("../validate/judges.ts");
  const ce = mode !== "llm" ? await CrossEncoder.load(opts.crossEncoder!) : undefined;
  const llm =
    mode !== "cross-encoder"
      ? await createLlmReranker({
          provider: opts.judgeProvider as "local",
          model: opts.judgeModel ?? (opts.judgeProvider === "local" ? "default" : ""),
          baseUrl: opts.judgeBaseUrl,
          maxUsd: opts.judgeMaxUsd,
          ledgerPath: join(dir, "ledger.jsonl"),
          prices: opts.prices,
          width: opts.judgeWindow,
          step: opts.judgeStep,
          gpu: "auto",
        })
      : undefined;
  try {
    return await judgeRun({
      runDir: dir,
      mode,
      crossEncoder: ce,
      llm: llm?.reranker,
      llmLedger: llm?.ledger,
      thresholds: {
        ...(opts.judgeMinKendall !== undefined ? { minKendall: opts.judgeMinKendall } : {}),
        ...(opts.judgeMargin !== undefined ? { margin: opts.judgeMargin } : {}),
      },
    });
  } finally {
    await ce?.dispose();
    await llm?.reranker.dispose();
    await llm?.ledger.close();
  }
}

function validateExitSummary(dir: string, error: unknown, totals: LedgerTotals | undefined, capUsd: number | undefined) {
  const code = exitCodeFor(error);
  return {
    status: code === 3 ? "budget_reached" : code === 2 ? "bad_input" : code === 130 ? "interrupted" : "failed",
    exit_code: code,
    out: dir,
    chains: null,
    usd: totals ? Math.round(totals.spentUsd * 1e9) / 1e9 : null,
    by_stage: totals?.byStage ?? null,
    cap_usd: capUsd ?? null,
    reason: error instanceof Error ? error.message : String(error),
  };
}
