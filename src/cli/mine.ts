import type { Command } from "commander";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { BudgetLedger } from "../budget/ledger.ts";
import type { Embedder } from "../embed/types.ts";
import { ConfigError } from "../errors.ts";
import { action, numberOption, UsageError } from "./run-command.ts";

interface MineFlags {
  embedders: string;
  out?: string;
  corpus?: string;
  topK: number;
  groupSize: number;
  fusion: string;
  rrfK: number;
  guard: number | null;
  positive: string;
  farFrom: number;
  exactMax: number;
  hnswConnectivity?: number;
  hnswEf?: number;
  batchSize: number;
  maxUsd?: number;
  allowUnvalidated?: boolean;
  report: boolean;
  json?: boolean;
  quiet?: boolean;
}

function oneOf(flag: string, values: readonly string[]) {
  return (v: string): string => {
    if (!values.includes(v)) throw new UsageError(`${flag} expects one of ${values.join(", ")}, got "${v}"`);
    return v;
  };
}

function guardOption(v: string): number | null {
  if (/^(off|none)$/i.test(v.trim())) return null;
  const n = Number(v);
  if (v.trim() === "" || !Number.isFinite(n) || n <= 0) throw new UsageError(`--guard expects a number > 0 or "off", got "${v}"`);
  return n;
}

function embeddersOption(v: string): string {
  const list = v.split(",").map((s) => s.trim());
  if (list.some((s) => s === "")) throw new UsageError(`--embedders expects a comma list of embedders (e.g. all-MiniLM-L6-v2,all-mpnet-base-v2), got "${v}"`);
  if (new Set(list).size !== list.length) throw new UsageError(`--embedders lists an embedder twice: "${v}"`);
  return list.join(",");
}

export function registerMine(program: Command): void {
  program
    .command("mine")
    .description("mine hard negatives for each chain with an ensemble of embedders (fused, with a positive-aware false-negative guard); writes groups.jsonl and mine.json")
    .argument("<run-dir>", "run directory (reads validated.jsonl) or a chain JSONL file")
    .option("--embedders <list>", "comma list of embedders: registry names, model directories, hub ids or openai:<model>", embeddersOption, "all-MiniLM-L6-v2,all-mpnet-base-v2")
    .option("--out <file>", "groups file to write (default RUN_DIR/groups.jsonl)")
    .option("--corpus <file>", "extra candidates: text (one per line) or JSONL with a text field")
    .option("--top-k <k>", "candidates each embedder retrieves per query", numberOption("--top-k", { int: true, min: 1 }), 50)
    .option("--group-size <g>", "1 positive + g-1 negatives per group", numberOption("--group-size", { int: true, min: 2 }), 8)
    .option("--fusion <f>", "rrf | mean", oneOf("--fusion", ["rrf", "mean"]), "rrf")
    .option("--rrf-k <k>", "RRF constant: sum of 1/(k + rank)", numberOption("--rrf-k", { min: 0 }), 60)
    .option("--guard <x>", 'drop a candidate any embedder scores above x times the positive\'s score ("off" to disable)', guardOption, 0.95)
    .option("--positive <p>", "first-step (query = anchor, positive = step 1) | anchor (query = step 1, positive = anchor)", oneOf("--positive", ["first-step", "anchor"]), "first-step")
    .option("--far-from <n>", "steps of the query's own chain at this position or later are candidates", numberOption("--far-from", { int: true, min: 1 }), 3)
    .option("--exact-max <n>", "pools up to n texts are searched exactly, larger ones through an HNSW index", numberOption("--exact-max", { int: true, min: 0 }), 20000)
    .option("--hnsw-connectivity <m>", "HNSW graph degree (default 16)", numberOption("--hnsw-connectivity", { int: true, min: 2 }))
    .option("--hnsw-ef <n>", "HNSW candidate list for adding and searching (default 128)", numberOption("--hnsw-ef", { int: true, min: 1 }))
    .option("--batch-size <n>", "texts per embedding call", numberOption("--batch-size", { int: true, min: 1 }), 64)
    .option("--max-usd <x>", "hard cap on mine's own spend for paid embedders (openai:…); recorded in the run's ledger.jsonl as stage \"mine\"", numberOption("--max-usd", { min: 0 }))
    .option("--allow-unvalidated", "mine chains.jsonl when the run has no validated.jsonl")
    .option("--no-report", "do not (re)write report.html")
    .option("--json", "print mine.json instead of a summary")
    .option("--quiet", "no progress messages")
    .action(
      action(async (runDir: string, opts: MineFlags) => {
        const { createEmbedder, resolveEmbedderSpec } = await import("../embed/index.ts");
        const { mineRun } = await import("../mine/index.ts");
        const data = resolve(runDir);
        if (!existsSync(data)) throw new ConfigError("no such run directory or chain file", { location: { file: runDir } });
        if (opts.corpus && !existsSync(opts.corpus)) throw new ConfigError("corpus file not found (--corpus)", { location: { file: opts.corpus } });
        const specs = opts.embedders.split(",");
        for (const s of specs) resolveEmbedderSpec(s); // bad names fail before any model loads
        const paid = specs.some((s) => resolveEmbedderSpec(s).kind === "openai");
        const ledgerDir = existsSync(join(data, "chains.jsonl")) || existsSync(join(data, "validated.jsonl")) ? data : undefined;
        if (paid && !ledgerDir) throw new ConfigError("a paid embedder needs a run directory (its spend goes into ledger.jsonl)", { location: { file: runDir } });
        const ledger = paid && ledgerDir ? await BudgetLedger.open(join(ledgerDir, "ledger.jsonl"), opts.maxUsd, { capStage: "mine" }) : undefined;
        const embedders: Embedder[] = [];
        const say = (m: string) => {
          if (!opts.quiet) process.stderr.write(`rankchain mine: ${m}\n`);
        };
        try {
          for (const s of specs) {
            embedders.push(await createEmbedder(s, { batchSize: opts.batchSize, ...(ledger ? { ledger, stage: "mine" } : {}) }));
          }
          const hnsw = {
            ...(opts.hnswConnectivity !== undefined ? { connectivity: opts.hnswConnectivity } : {}),
            ...(opts.hnswEf !== undefined ? { expansionAdd: Math.max(opts.hnswEf, 16), expansionSearch: opts.hnswEf } : {}),
          };
          const summary = await mineRun({
            data,
            embedders,
            ...(opts.out ? { out: opts.out } : {}),
            ...(opts.corpus ? { corpus: opts.corpus } : {}),
            allowUnvalidated: opts.allowUnvalidated ?? false,
            topK: opts.topK,
            groupSize: opts.groupSize,
            fusion: opts.fusion as "rrf" | "mean",
            rrfK: opts.rrfK,
            guard: opts.guard,
            positive: opts.positive as "first-step" | "anchor",
            farFrom: opts.farFrom,
            exactMax: opts.exactMax,
            hnsw,
            onPhase: say,
          });
          let reportPath: string | undefined;
          if (opts.report && summary.mine_file === join(data, "mine.json")) {
            const { writeReport } = await import("../report/index.ts");
            reportPath = (await writeReport(data)).path;
          }
          if (opts.json) {
            process.stdout.write(JSON.stringify(summary, null, 2) + "\n");
            return;
          }
          const g = summary.dropped.guard;
          const lines = [
            `mined ${summary.groups} groups of ${summary.settings.group_size} from ${summary.queries} queries over ${summary.pool.texts} candidate texts with ${summary.embedders.map((e) => e.id).join(" + ")} (${summary.settings.fusion}; ${Object.values(summary.index).join("/")} search)`,
            `dropped: guard ${g.count} (${Object.entries(g.by_embedder).map(([k, v]) => `${k} ${v}`).join(", ")}), self or same chain ${summary.dropped.self_or_same_chain.count}; skipped queries with too few negatives: ${summary.skipped.too_few_negatives}`,
            `wrote ${summary.groups_file} and ${summary.mine_file}`,
          ];
          if (reportPath) lines.push(`report: ${reportPath}`);
          process.stdout.write(lines.join("\n") + "\n");
        } finally {
          for (const e of embedders) await e.dispose();
        }
      }),
    );
}
