/**
 * bench/rerank/split.ts: split a validated run by chain into a training part and a held-out part,
 * with `rankchain export`'s own rule (hash of the chain id below --test-fraction = held out), so the
 * cross-encoder trained on OUT/train never sees a held-out chain, and write the held-out part as
 * rerank files.
 *
 *   npx tsx bench/rerank/split.ts RUN_DIR --out DIR [--test-fraction 0.25]
 *
 * Writes
 * - DIR/train/validated.jsonl (+ run.json): every record of the training part, any status (the
 *   trainer keeps the accepted and repaired ones, cut at steps_kept) — `posttrain --cross-encoder --data DIR/train`;
 * - DIR/heldout/validated.jsonl (+ run.json): the held-out records;
 * - DIR/heldout.rerank.jsonl: the held-out kept chains as `export --format mteb-rerank` writes them
 *   (query = anchor, positives = first third of the kept steps graded closest-highest, negatives = last third);
 * - DIR/heldout-raw/chains.jsonl and DIR/heldout-raw.rerank.jsonl: the same held-out chains in the
 *   generator's order before the embedding gate (every chain with >= 2 steps). The kept chains passed
 *   a gate that requires all-MiniLM-L6-v2's similarities to fall along the chain, so on them the
 *   MiniLM embedder is right by construction; the raw file has no such selection.
 * - DIR/train-raw/chains.jsonl: the training part in the generator's order, for training on unfiltered
 *   chains (`--allow-unvalidated`).
 * - DIR/split.json: counts and settings.
 */
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { exportDataset, keptSentences } from "../../src/export/index.ts";
import { testSplit } from "../../src/export/export.ts";
import { ChainRecordSchema, type ChainRecord } from "../../src/store/chain-record.ts";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { out: { type: "string" }, "test-fraction": { type: "string", default: "0.25" } },
});
const runDir = positionals[0];
if (!runDir || !values.out) {
  console.error("usage: npx tsx bench/rerank/split.ts RUN_DIR --out DIR [--test-fraction 0.25]");
  process.exit(2);
}
const fraction = Number(values["test-fraction"]);
if (!(fraction > 0 && fraction < 1)) {
  console.error(`--test-fraction must be in (0, 1), got ${values["test-fraction"]}`);
  process.exit(2);
}
const out = resolve(values.out);
const file = join(runDir, "validated.jsonl");
const records: ChainRecord[] = [];
for (const [i, line] of readFileSync(file, "utf8").split("\n").entries()) {
  if (!line.trim()) continue;
  const parsed = ChainRecordSchema.safeParse(JSON.parse(line));
  if (!parsed.success) {
    console.error(`${file}:${i + 1}: not a chain record: ${parsed.error.issues[0]?.message}`);
    process.exit(2);
  }
  records.push(parsed.data);
}
const train = records.filter((r) => !testSplit(r.id, fraction));
const held = records.filter((r) => testSplit(r.id, fraction));
const kept = (rs: ChainRecord[]) => rs.filter((r) => Array.isArray(keptSentences(r, false))).length;

const writeRun = (dir: string, name: string, rs: unknown[]) => {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  copyFileSync(join(runDir, "run.json"), join(dir, "run.json"));
  writeFileSync(join(dir, name), rs.map((r) => JSON.stringify(r)).join("\n") + "\n");
};
writeRun(join(out, "train"), "validated.jsonl", train);
writeRun(join(out, "heldout"), "validated.jsonl", held);
writeRun(join(out, "heldout-raw"), "chains.jsonl", held.map(({ validation: _v, ...r }) => r));
writeRun(join(out, "train-raw"), "chains.jsonl", train.map(({ validation: _v, ...r }) => r));

const rerankFile = async (src: string, name: string, allowUnvalidated: boolean) => {
  const tmp = join(out, `.export-${name}`);
  const s = await exportDataset({ runDir: src, format: "mteb-rerank", out: tmp, testFraction: 1, allowUnvalidated, overwrite: true });
  copyFileSync(join(tmp, "rerank", "test.jsonl"), join(out, `${name}.rerank.jsonl`));
  rmSync(tmp, { recursive: true, force: true });
  return s.rows.rerank!.test;
};
const queries = await rerankFile(join(out, "heldout"), "heldout", false);
const rawQueries = await rerankFile(join(out, "heldout-raw"), "heldout-raw", true);
const summary = {
  source: resolve(runDir),
  test_fraction: fraction,
  rule: "export's test split: hash32('split:' + id) < fraction * 2^32",
  records: { train: train.length, heldout: held.length },
  kept_chains: { train: kept(train), heldout: kept(held) },
  rerank_queries: { heldout: queries, "heldout-raw": rawQueries },
};
writeFileSync(join(out, "split.json"), JSON.stringify(summary, null, 2) + "\n");
console.log(JSON.stringify(summary));
