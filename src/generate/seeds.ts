import { readFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { ConfigError } from "../errors.ts";

/**
 * Seed input: a text file with one seed per line, or JSONL with a `text` field (by extension
 * .jsonl/.ndjson, or when the first non-blank line starts with "{"). Blank lines are skipped;
 * duplicates are reported and kept once; a byte order mark at the start of the file and CRLF line
 * ends are accepted. Invalid UTF-8, control characters (NUL, a lone CR, DEL, C1 controls, U+2028/9,
 * a BOM inside the file), lone surrogates (from JSON escapes), over-long lines, bad JSON or a
 * missing `text` field are rejected with file:line (exit 2) before anything is spent.
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

/**
 * Characters a seed may not hold: C0 controls except TAB, DEL, C1 controls, the Unicode line and
 * paragraph separators, a BOM (anywhere but the start of the file), and the noncharacters
 * U+FFFE/U+FFFF. They either break the one-seed-per-line format or are invisible bytes that go to
 * the model (and into training data) without anyone having meant them.
 */
const FORBIDDEN = /[\u0000-\u0008\u000A-\u001F\u007F-\u009F\u2028\u2029\uFEFF\uFFFE\uFFFF]/u;

/** Why `text` is not acceptable seed text, or undefined when it is. */
export function seedTextProblem(text: string): string | undefined {
  const lone = loneSurrogate(text);
  if (lone) return `lone surrogate U+${lone.unit.toString(16).toUpperCase()} at column ${lone.column} (not valid Unicode text)`;
  const m = FORBIDDEN.exec(text);
  if (m) {
    const col = [...text.slice(0, m.index)].length + 1;
    const cp = m[0].codePointAt(0)!;
    const name =
      cp === 0 ? "NUL byte" : cp === 0x0d ? "carriage return without a line feed" : cp === 0xfeff ? "byte order mark (U+FEFF) inside the file" : "control character";
    return `${name} U+${cp.toString(16).toUpperCase().padStart(4, "0")} at column ${col}; seeds must be plain one-line text`;
  }
  return undefined;
}

/** The first UTF-16 surrogate without its pair (JSON "\\ud800" escapes make them), with its column. */
function loneSurrogate(text: string): { unit: number; column: number } | undefined {
  let column = 0;
  for (let i = 0; i < text.length; i++) {
    column++;
    const u = text.charCodeAt(i);
    if (u >= 0xd800 && u <= 0xdbff) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        i++;
        continue;
      }
      return { unit: u, column };
    }
    if (u >= 0xdc00 && u <= 0xdfff) return { unit: u, column };
  }
  return undefined;
}

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
  // ignoreBOM keeps a BOM in the text (the decoder would drop one at the start of every line)
  const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
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
      const text = decoder.decode(buf).replace(/\r$/, "");
      // a byte order mark is fine at the start of the file (editors write one), nowhere else
      return i === 0 ? text.replace(/^\uFEFF/, "") : text;
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
    // checked before trimming: trim() would silently eat a BOM or a U+2028
    if (format === "text") {
      const problem = seedTextProblem(line);
      if (problem) throw new ConfigError(problem, { location: { file: path, line: lineNo } });
    }
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
      const problem = seedTextProblem(text);
      if (problem) throw new ConfigError(problem, { location: { file: path, line: lineNo, field: "text" } });
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
