import { readFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { ConfigError } from "../errors.ts";

/**
 * Seed input: a text file with one seed per line, or JSONL with a `text` field (by extension
 * .jsonl/.ndjson, or when the first non-blank line starts with "{"). Blank lines are skipped;
 * duplicates are reported and kept once; invalid UTF-8, over-long lines, bad JSON or a missing
 * `text` field are rejected with file:line (exit 2) before anything is spent.
 */
export interface Seed {
  /** Stable id derived from the text, so resume matches seeds across runs. */
  id: string;
  text: string;
  line: number;
}

export interface SeedFile {
  seeds: Seed[];
  duplicates: { line: number; firstLine: number }[];
  blankLines: number;
  /** sha-256 of the file bytes, recorded in run.json for safe resume. */
  sha256: string;
  format: "text" | "jsonl";
}

export const DEFAULT_MAX_SEED_CHARS = 2000;

export function seedId(text: string): string {
  return "c" + createHash("sha256").update(text).digest("hex").slice(0, 12);
}

export function readSeeds(path: string, opts: { maxChars?: number } = {}): SeedFile {
  const maxChars = opts.maxChars ?? DEFAULT_MAX_SEED_CHARS;
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw new ConfigError(`cannot read input: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { location: { file: path } });
  }
  const sha256 = createHash("sha256").update(bytes).digest("hex");
  const decoder = new TextDecoder("utf-8", { fatal: true });
  const rawLines: Buffer[] = [];
  let start = 0;
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i] === 0x0a) {
      rawLines.push(bytes.subarray(start, i));
      start = i + 1;
    }
  }
  if (start < bytes.length) rawLines.push(bytes.subarray(start));

  const lines: string[] = rawLines.map((buf, i) => {
    try {
      return decoder.decode(buf).replace(/\r$/, "").replace(/^\uFEFF/, "");
    } catch {
      throw new ConfigError("invalid UTF-8", { location: { file: path, line: i + 1 } });
    }
  });
  const firstContent = lines.find((l) => l.trim() !== "");
  const format: SeedFile["format"] = /\.(jsonl|ndjson)$/i.test(path) || firstContent?.trimStart().startsWith("{") ? "jsonl" : "text";

  const seeds: Seed[] = [];
  const duplicates: SeedFile["duplicates"] = [];
  const seen = new Map<string, number>();
  let blankLines = 0;
  lines.forEach((line, i) => {
    const lineNo = i + 1;
    if (line.trim() === "") {
      blankLines++;
      return;
    }
    let text: string;
    if (format === "jsonl") {
      let obj: unknown;
      try {
        obj = JSON.parse(line);
      } catch (e) {
        throw new ConfigError(`invalid JSON: ${(e as Error).message}`, { location: { file: path, line: lineNo } });
      }
      const t = (obj as { text?: unknown } | null)?.text;
      if (typeof t !== "string") {
        throw new ConfigError("expected a string", { location: { file: path, line: lineNo, field: "text" } });
      }
      text = t.trim();
      if (text === "") throw new ConfigError("empty text", { location: { file: path, line: lineNo, field: "text" } });
      if (/[\r\n]/.test(text)) throw new ConfigError("a seed must be one line", { location: { file: path, line: lineNo, field: "text" } });
    } else {
      text = line.trim();
    }
    if ([...text].length > maxChars) {
      throw new ConfigError(`seed is ${[...text].length} characters long; the limit is ${maxChars} (--max-seed-chars)`, {
        location: { file: path, line: lineNo, ...(format === "jsonl" ? { field: "text" } : {}) },
      });
    }
    const first = seen.get(text);
    if (first !== undefined) {
      duplicates.push({ line: lineNo, firstLine: first });
      return;
    }
    seen.set(text, lineNo);
    seeds.push({ id: seedId(text), text, line: lineNo });
  });
  if (seeds.length === 0) throw new ConfigError("no seeds: the file has no non-blank lines", { location: { file: path } });
  return { seeds, duplicates, blankLines, sha256, format };
}
