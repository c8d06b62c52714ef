import { existsSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import type { Embedder } from "../embed/types.ts";
import { loadCorpus, loadMineChains } from "./chains.ts";
import { groupsToJsonl, mineHardNegatives, writeFileAtomic, type MineOptions, type MineSummary } from "./miner.ts";

export * from "./chains.ts";
export * from "./fusion.ts";
export * from "./miner.ts";

export const MINE_FILE = "mine.json";
export const GROUPS_FILE = "groups.jsonl";

export interface MineRunOptions extends Omit<MineOptions, "chains" | "corpus" | "embedders"> {
  /** A run directory (validated.jsonl) or a chain JSONL file. */
  data: string;
  embedders: Embedder[];
  /** groups.jsonl to write (default <run dir>/groups.jsonl). */
  out?: string;
  corpus?: string;
  allowUnvalidated?: boolean;
}

export interface MineRunSummary extends MineSummary {
  created_at: string;
  data: string;
  chains_file: string;
  chains: number;
  chains_skipped: { rejected: number; unvalidated: number; no_steps: number };
  corpus_file: string | null;
  groups_file: string;
  mine_file: string;
}

/**
 * `rankchain mine`: reads the chains, mines a group per chain, writes groups.jsonl and mine.json
 * (into the run directory, where the report reads it; beside groups.jsonl when mining a file).
 */
export async function mineRun(options: MineRunOptions): Promise<MineRunSummary> {
  const data = resolve(options.data);
  const isDir = existsSync(data) && statSync(data).isDirectory();
  const loaded = await loadMineChains(data, options.allowUnvalidated ?? false);
  const corpus = options.corpus ? loadCorpus(resolve(options.corpus)) : undefined;
  const groupsFile = resolve(options.out ?? (isDir ? join(data, GROUPS_FILE) : GROUPS_FILE));
  const mineFile = join(isDir ? data : dirname(groupsFile), MINE_FILE);
  const { embedders, out: _out, corpus: _corpus, data: _data, allowUnvalidated: _a, ...rest } = options;
  const { groups, summary } = await mineHardNegatives({ ...rest, chains: loaded.chains, ...(corpus ? { corpus } : {}), embedders });
  writeFileAtomic(groupsFile, groupsToJsonl(groups));
  const full: MineRunSummary = {
    created_at: new Date().toISOString(),
    data,
    chains_file: loaded.file,
    chains: loaded.chains.length,
    chains_skipped: loaded.skipped,
    corpus_file: options.corpus ? resolve(options.corpus) : null,
    groups_file: groupsFile,
    mine_file: mineFile,
    ...summary,
  };
  writeFileAtomic(mineFile, JSON.stringify(full, null, 2) + "\n");
  return full;
}
