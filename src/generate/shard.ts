import { createHash } from "node:crypto";
import { ConfigError } from "../errors.ts";

/**
 * `--shard i/n`: a deterministic split of the seeds by a hash of their text, so n processes or
 * machines (Slurm arrays, Kubernetes indexed Jobs, CI matrices) generate disjoint parts whose union
 * is the unsharded run. The index is 0-based (0 ≤ i < n), as SLURM_ARRAY_TASK_ID (--array=0-7) and
 * JOB_COMPLETION_INDEX are. The hash is of the seed text only, so a shard keeps its seeds whatever
 * order or file they come in.
 */
export interface Shard {
  index: number;
  count: number;
}

export function parseShard(value: string, flag = "--shard"): Shard {
  const m = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(value);
  if (!m) throw new ConfigError(`${flag} expects i/n with 0 ≤ i < n (e.g. 0/4), got "${value}"`);
  const index = Number(m[1]);
  const count = Number(m[2]);
  if (count < 1 || index >= count || count > 1_000_000) {
    throw new ConfigError(`${flag} expects i/n with 0 ≤ i < n and 1 ≤ n ≤ 1000000 (indices are 0-based), got "${value}"`);
  }
  return { index, count };
}

export function formatShard(s: Shard): string {
  return `${s.index}/${s.count}`;
}

/** Which shard (0..count-1) a seed text belongs to: the first 48 bits of its SHA-256, mod count. */
export function shardOf(text: string, count: number): number {
  const h = createHash("sha256").update(text, "utf8").digest();
  return h.readUIntBE(0, 6) % count;
}

export function inShard(text: string, shard: Shard | undefined): boolean {
  return shard === undefined || shard.count === 1 || shardOf(text, shard.count) === shard.index;
}
