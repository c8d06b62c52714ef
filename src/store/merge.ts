import { existsSync, mkdirSync, readdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { ConfigError } from "../errors.ts";
import { ChainRecordSchema, type ChainRecord } from "./chain-record.ts";
import { JsonlAppender, readJsonl } from "./jsonl.ts";
import { CachedResponseSchema, hashJson, readManifest, RUN_FILES, stableStringify, writeManifest, type RunManifest, type RunStatus } from "./run-dir.ts";
import { z } from "zod";

/** Fingerprint fields that may differ between runs that are parts of one corpus. */
const PER_PART_FIELDS = new Set(["shard"]);

export interface MergeSummary {
  out: string;
  runs: number;
  chains: number;
  duplicateChains: number;
  ledgerEntries: number;
  usd: number;
  manifest: RunManifest;
}

const LooseLedgerEntry = z.object({ type: z.string(), id: z.string(), usd: z.number() }).passthrough();

/**
 * `rankchain merge OUT RUN…`: combines runs (typically the shards of one run) into one run
 * directory: chains deduplicated by id (first seen wins), responses deduplicated by key, every
 * ledger entry of every run kept (ids prefixed by the run's position, so they stay unique and the
 * totals are the sum), one manifest. Refuses runs whose fingerprints differ in anything but the
 * shard, and an OUT that already holds a run. The merged run has no shard: `generate --resume`
 * on it (same settings, no --shard) generates whatever seeds the parts did not cover.
 */
export async function mergeRuns(out: string, runs: readonly string[]): Promise<MergeSummary> {
  if (runs.length === 0) throw new ConfigError("merge needs at least one RUN directory");
  const manifests: { dir: string; m: RunManifest }[] = [];
  for (const dir of runs) {
    const m = existsSync(dir) ? readManifest(dir) : undefined;
    if (!m) throw new ConfigError(`${dir} is not a run directory (no ${RUN_FILES.run})`);
    manifests.push({ dir, m });
  }
  const seen = new Set<string>();
  for (const { dir } of manifests) {
    const abs = resolve(dir);
    if (seen.has(abs)) throw new ConfigError(`${dir} is named twice`);
    seen.add(abs);
    if (abs === resolve(out)) throw new ConfigError(`OUT (${out}) must not be one of the runs`);
  }
  const base = manifests[0]!;
  const comparable = (fp: Record<string, unknown>) => Object.fromEntries(Object.entries(fp).filter(([k]) => !PER_PART_FIELDS.has(k)));
  for (const { dir, m } of manifests.slice(1)) {
    const a = comparable(base.m.fingerprint);
    const b = comparable(m.fingerprint);
    const diffs = Object.keys({ ...a, ...b }).filter((k) => stableStringify(a[k]) !== stableStringify(b[k]));
    if (diffs.length > 0) {
      const detail = diffs.map((k) => `${k}: ${stableStringify(a[k])} in ${base.dir}, ${stableStringify(b[k])} in ${dir}`).join("; ");
      throw new ConfigError(`merge refused: the runs were made with different settings (${detail})`);
    }
  }
  if (existsSync(out) && readdirSync(out).length > 0) throw new ConfigError(`${out} is not empty; merge writes a new run directory`);
  mkdirSync(out, { recursive: true });

  const chainsOut = await JsonlAppender.open(join(out, RUN_FILES.chains));
  const responsesOut = await JsonlAppender.open(join(out, RUN_FILES.responses));
  const ledgerOut = await JsonlAppender.open(join(out, RUN_FILES.ledger));
  const chainIds = new Set<string>();
  const responseKeys = new Set<string>();
  let duplicateChains = 0;
  let ledgerEntries = 0;
  let truncated = 0;
  let steps = 0;
  let spent = 0;
  let input = 0;
  let output = 0;
  let calls = 0;
  const tolerateTorn = (file: string) => (issue: { torn: boolean; message: string; line: number }) => {
    if (!issue.torn) throw new ConfigError(issue.message, { location: { file, line: issue.line } });
  };
  try {
    for (const [k, { dir }] of manifests.entries()) {
      const chainsPath = join(dir, RUN_FILES.chains);
      if (existsSync(chainsPath)) {
        for await (const { value } of readJsonl(chainsPath, ChainRecordSchema, { onIssue: tolerateTorn(chainsPath) })) {
          if (chainIds.has(value.id)) {
            duplicateChains++;
            continue;
          }
          chainIds.add(value.id);
          if ((value as ChainRecord).truncated) truncated++;
          steps += value.steps.length;
          await chainsOut.append(value);
        }
      }
      const respPath = join(dir, RUN_FILES.responses);
      if (existsSync(respPath)) {
        for await (const { value } of readJsonl(respPath, CachedResponseSchema, { onIssue: () => undefined })) {
          if (responseKeys.has(value.key)) continue;
          responseKeys.add(value.key);
          await responsesOut.append(value);
        }
      }
      const ledgerPath = join(dir, RUN_FILES.ledger);
      if (existsSync(ledgerPath)) {
        const open = new Map<string, Record<string, unknown>>();
        for await (const { value } of readJsonl(ledgerPath, LooseLedgerEntry, { onIssue: () => undefined })) {
          await ledgerOut.append({ ...value, id: `m${k + 1}.${value.id}` });
          ledgerEntries++;
          if (value.type === "reserve") open.set(value.id, value);
          else {
            open.delete(value.id);
            if (value.type === "charge") {
              spent += value.usd;
              input += Number(value["input_tokens"] ?? 0);
              output += Number(value["output_tokens"] ?? 0);
              calls++;
            }
          }
        }
        // Reservations a killed part never settled: charged at their worst case, as resume would.
        for (const r of open.values()) {
          const usd = Number(r["usd"]);
          await ledgerOut.append({
            type: "charge",
            id: `m${k + 1}.${String(r["id"])}`,
            ts: new Date().toISOString(),
            usd,
            ...(r["chain_id"] !== undefined ? { chain_id: r["chain_id"] } : {}),
            input_tokens: Number(r["input_tokens"] ?? 0),
            output_tokens: Number(r["max_output_tokens"] ?? 0),
            estimated: true,
            note: `unsettled in ${dir} when merged; charged at its reserved worst case`,
          });
          ledgerEntries++;
          spent += usd;
          input += Number(r["input_tokens"] ?? 0);
          output += Number(r["max_output_tokens"] ?? 0);
          calls++;
        }
      }
    }
  } finally {
    await chainsOut.close();
    await responsesOut.close();
    await ledgerOut.close();
  }

  const fingerprint = { ...base.m.fingerprint, shard: null };
  const statuses = manifests.map((x) => x.m.status);
  const status: RunStatus = statuses.every((s) => s === "completed") ? "completed" : "incomplete";
  const shardSeeds = new Map<string, number>();
  for (const { dir, m } of manifests) shardSeeds.set(String(m.fingerprint["shard"] ?? dir), m.totals.seeds);
  const now = new Date().toISOString();
  const manifest: RunManifest = {
    ...base.m,
    created_at: manifests.map((x) => x.m.created_at).sort()[0]!,
    updated_at: now,
    status,
    fingerprint,
    fingerprint_hash: hashJson(fingerprint).slice(0, 16),
    config: { ...base.m.config, shard: undefined, out },
    totals: {
      seeds: [...shardSeeds.values()].reduce((a, b) => a + b, 0),
      chains_done: chainIds.size,
      chains_truncated: truncated,
      steps,
      usd: Math.round(spent * 1e9) / 1e9,
      reserved_usd: 0,
      input_tokens: input,
      output_tokens: output,
      calls,
      cached_responses_reused: manifests.reduce((s, x) => s + x.m.totals.cached_responses_reused, 0),
      elapsed_s: Math.max(...manifests.map((x) => x.m.totals.elapsed_s)),
    },
    warnings: dedupe(manifests.flatMap((x) => x.m.warnings)),
    merged_from: manifests.map(({ dir, m }) => ({
      dir,
      shard: m.fingerprint["shard"] ?? null,
      status: m.status,
      chains: m.totals.chains_done,
      usd: m.totals.usd,
    })),
  };
  delete (manifest as Record<string, unknown>)["message"];
  delete (manifest as Record<string, unknown>)["failed_chains"];
  writeManifest(out, manifest);
  return { out, runs: runs.length, chains: chainIds.size, duplicateChains, ledgerEntries, usd: manifest.totals.usd, manifest };
}

function dedupe(values: unknown[]): unknown[] {
  const seen = new Set<string>();
  return values.filter((v) => {
    const k = stableStringify(v);
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}
