import { createReadStream, existsSync } from "node:fs";
import { createInterface } from "node:readline";
import { ConfigError } from "../errors.ts";
import type { Embedder } from "../embed/types.ts";
import { CosineLshIndex, type CosineLshOptions } from "./lsh.ts";

/**
 * Holdout sentences (an evaluation set that training data must not contain), streamed from a file:
 * - `.tsv` / `.csv` with a header: the columns named sentence1, sentence2, sentence, text, anchor
 *   or query; without such columns, every non-numeric field;
 * - `.jsonl`: the string fields text, sentence, sentence1, sentence2, anchor, query, positive and
 *   the strings of a `steps` array;
 * - anything else: one sentence per line.
 * Blank entries are skipped. Each sentence is yielded with its 1-based line number.
 */
export async function* readHoldoutSentences(path: string): AsyncGenerator<{ line: number; text: string }> {
  if (!existsSync(path)) throw new ConfigError(`holdout file not found`, { location: { file: path } });
  const lower = path.toLowerCase();
  const kind = lower.endsWith(".tsv") ? "tsv" : lower.endsWith(".csv") ? "csv" : lower.endsWith(".jsonl") ? "jsonl" : "text";
  const rl = createInterface({ input: createReadStream(path, { encoding: "utf8" }), crlfDelay: Infinity });
  let lineNo = 0;
  let columns: number[] | null = null;
  const named = new Set(["sentence1", "sentence2", "sentence", "text", "anchor", "query"]);
  for await (const raw of rl) {
    lineNo++;
    if (raw.trim() === "") continue;
    if (kind === "text") {
      yield { line: lineNo, text: raw.trim() };
    } else if (kind === "jsonl") {
      let obj: unknown;
      try {
        obj = JSON.parse(raw);
      } catch (e) {
        throw new ConfigError(`invalid JSON: ${(e as Error).message}`, { location: { file: path, line: lineNo } });
      }
      if (typeof obj === "string") {
        yield { line: lineNo, text: obj };
        continue;
      }
      if (!obj || typeof obj !== "object") continue;
      const o = obj as Record<string, unknown>;
      for (const k of ["text", "sentence", "sentence1", "sentence2", "anchor", "query", "positive"]) {
        const v = o[k];
        if (typeof v === "string" && v.trim() !== "") yield { line: lineNo, text: v.trim() };
      }
      if (Array.isArray(o.steps)) for (const s of o.steps) if (typeof s === "string" && s.trim() !== "") yield { line: lineNo, text: s.trim() };
    } else {
      const fields = kind === "tsv" ? raw.split("\t") : splitCsv(raw);
      if (columns === null) {
        const picked = fields.map((f, i) => [f.trim().toLowerCase(), i] as const).filter(([f]) => named.has(f)).map(([, i]) => i);
        columns = picked;
        if (picked.length > 0) continue; // a header row
        columns = []; // no header: take every non-numeric field of every row (this one included)
      }
      const use = columns.length > 0 ? columns.map((i) => fields[i] ?? "") : fields.filter((f) => !/^\s*-?\d+(?:\.\d+)?\s*$/.test(f));
      for (const f of use) if (f.trim() !== "") yield { line: lineNo, text: f.trim() };
    }
  }
}

function splitCsv(line: string): string[] {
  const out: string[] = [];
  let cur = "";
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (quoted) {
      if (c === '"' && line[i + 1] === '"') {
        cur += '"';
        i++;
      } else if (c === '"') quoted = false;
      else cur += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") {
      out.push(cur);
      cur = "";
    } else cur += c;
  }
  out.push(cur);
  return out;
}

/** Embeds the holdout in batches into an LSH index keyed by line number. */
export async function buildHoldoutIndex(
  path: string,
  embedder: Embedder,
  options: { batchSize: number; lsh?: Omit<CosineLshOptions, "dimensions"> },
): Promise<{ index: CosineLshIndex<number> | undefined; sentences: number }> {
  let index: CosineLshIndex<number> | undefined;
  let batch: { line: number; text: string }[] = [];
  let sentences = 0;
  const flush = async () => {
    if (batch.length === 0) return;
    const vectors = await embedder.embed(batch.map((b) => b.text));
    for (let i = 0; i < batch.length; i++) {
      const v = vectors[i]!;
      index ??= new CosineLshIndex<number>({ dimensions: v.length, ...options.lsh });
      index.add(batch[i]!.line, v);
    }
    sentences += batch.length;
    batch = [];
  };
  for await (const s of readHoldoutSentences(path)) {
    batch.push(s);
    if (batch.length >= options.batchSize) await flush();
  }
  await flush();
  return { index, sentences };
}
