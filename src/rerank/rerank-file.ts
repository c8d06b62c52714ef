import { readFileSync } from "node:fs";
import { ConfigError } from "../errors.ts";

/**
 * A reranking file: JSONL, one query per line, as `export --format mteb-rerank` writes it and MTEB's
 * reranking tasks use: `{"query": str, "positive": [str, …], "negative": [str, …]}`. Graded labels
 * are optional: `"positive_grades": [number, …]` (same length as `positive`, each > 0; default 1).
 * Kept minimal so it can be swapped for src/eval's reader once that lands (issue 9).
 */
export interface RerankQuery {
  line: number;
  query: string;
  positive: string[];
  negative: string[];
  /** Grade per positive (default 1 each). */
  grades: number[];
}

export function readRerankFile(path: string): RerankQuery[] {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new ConfigError(`cannot read the rerank file: ${(e as Error).message}`, { location: { file: path } });
  }
  const out: RerankQuery[] = [];
  const lines = text.split("\n");
  lines.forEach((raw, i) => {
    const line = i + 1;
    if (raw.trim() === "") return;
    let v: unknown;
    try {
      v = JSON.parse(raw);
    } catch (e) {
      throw new ConfigError(`not valid JSON (${(e as Error).message})`, { location: { file: path, line } });
    }
    if (!v || typeof v !== "object" || Array.isArray(v)) throw new ConfigError("expected a JSON object", { location: { file: path, line } });
    const r = v as Record<string, unknown>;
    const str = (x: unknown, field: string): string => {
      if (typeof x !== "string" || x.trim() === "") throw new ConfigError("expected a non-empty string", { location: { file: path, line, field } });
      return x;
    };
    const list = (x: unknown, field: string): string[] => {
      if (!Array.isArray(x)) throw new ConfigError("expected a list of strings", { location: { file: path, line, field } });
      return x.map((s, k) => str(s, `${field}[${k}]`));
    };
    const query = str(r.query, "query");
    const positive = list(r.positive, "positive");
    const negative = list(r.negative ?? [], "negative");
    if (positive.length === 0) throw new ConfigError("needs at least one positive", { location: { file: path, line, field: "positive" } });
    let grades = positive.map(() => 1);
    if (r.positive_grades !== undefined) {
      const g = r.positive_grades;
      if (!Array.isArray(g) || g.length !== positive.length || g.some((x) => typeof x !== "number" || !Number.isFinite(x) || x <= 0)) {
        throw new ConfigError(`expected ${positive.length} numbers > 0 (one per positive)`, { location: { file: path, line, field: "positive_grades" } });
      }
      grades = g as number[];
    }
    out.push({ line, query, positive, negative, grades });
  });
  if (out.length === 0) throw new ConfigError("holds no queries", { location: { file: path } });
  return out;
}
