import { createReadStream, type ReadStream } from "node:fs";
import { readdir, stat } from "node:fs/promises";
import { createInterface } from "node:readline";
import { extname, join } from "node:path";
import { parse as parseCsv } from "csv-parse";
import { Parser as HtmlParser } from "htmlparser2";
import { ConfigError } from "../errors.ts";
import { ParagraphBuilder, stripInlineMarkdown, type Paragraph } from "./text.ts";

/**
 * Document sources for seed extraction: files and folders of .txt, .md, .html, .jsonl and .csv,
 * each streamed into paragraphs of running text (markup stripped, code blocks and tables left out)
 * that remember the source line of every character. Memory per file is one paragraph.
 */
export type SourceKind = "text" | "markdown" | "html" | "jsonl" | "csv";

const KIND_BY_EXT: Record<string, SourceKind> = {
  ".txt": "text",
  ".text": "text",
  ".md": "markdown",
  ".markdown": "markdown",
  ".mdx": "markdown",
  ".html": "html",
  ".htm": "html",
  ".xhtml": "html",
  ".jsonl": "jsonl",
  ".ndjson": "jsonl",
  ".csv": "csv",
  ".tsv": "csv",
};

export function sourceKind(path: string): SourceKind | undefined {
  return KIND_BY_EXT[extname(path).toLowerCase()];
}

export interface SourceFile {
  path: string;
  kind: SourceKind;
  bytes: number;
}

/**
 * Lists the files to read, in a stable (sorted) order. A folder is walked recursively, skipping
 * hidden entries and node_modules and files of other types (counted in `skipped`); a file named
 * directly must have a known extension.
 */
export async function listSources(paths: readonly string[]): Promise<{ files: SourceFile[]; skipped: number }> {
  const files: SourceFile[] = [];
  let skipped = 0;
  const walk = async (dir: string): Promise<void> => {
    const entries = (await readdir(dir, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      if (e.name.startsWith(".") || e.name === "node_modules") continue;
      const p = join(dir, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile()) {
        const kind = sourceKind(p);
        if (!kind) {
          skipped++;
          continue;
        }
        files.push({ path: p, kind, bytes: (await stat(p)).size });
      }
    }
  };
  for (const p of paths) {
    let st;
    try {
      st = await stat(p);
    } catch (e) {
      throw new ConfigError(`cannot read --from: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { location: { file: p } });
    }
    if (st.isDirectory()) await walk(p);
    else {
      const kind = sourceKind(p);
      if (!kind) throw new ConfigError(`unknown document type "${extname(p) || "(none)"}"; expected .txt, .md, .html, .jsonl or .csv/.tsv`, { location: { file: p } });
      files.push({ path: p, kind, bytes: st.size });
    }
  }
  return { files, skipped };
}

export interface ReadOptions {
  /** JSONL: the string field holding the text (dots reach into objects). */
  field: string;
  /** CSV/TSV: the column holding the text (by header name). */
  column: string;
}

/** Lines of markup that were dropped before sentence splitting. */
export interface BlockStats {
  code_lines: number;
  table_lines: number;
}

/** Streams one file's paragraphs. `stream` is exposed so the caller can read bytesRead for progress. */
export function openSource(file: SourceFile, opts: ReadOptions, stats: BlockStats): { stream: ReadStream; paragraphs: AsyncGenerator<Paragraph> } {
  const stream = createReadStream(file.path);
  const paragraphs =
    file.kind === "html"
      ? htmlParagraphs(stream, stats)
      : file.kind === "jsonl"
        ? jsonlParagraphs(stream, file.path, opts.field)
        : file.kind === "csv"
          ? csvParagraphs(stream, file.path, opts.column, extname(file.path).toLowerCase() === ".tsv" ? "\t" : ",")
          : lineParagraphs(stream, file.kind === "markdown", stats);
  return { stream, paragraphs };
}

const TERMINAL = /[.!?…:;"”’)\]]$/;

/**
 * Plain text and Markdown, line by line. Paragraphs end at blank lines, and at a short line without
 * closing punctuation followed by a capitalised line (a title). Markdown: front matter, fenced and
 * indented code, tables, rules and HTML comments are dropped; headings and list items are their own
 * paragraphs; inline markup is stripped.
 */
async function* lineParagraphs(stream: ReadStream, markdown: boolean, stats: BlockStats): AsyncGenerator<Paragraph> {
  const rl = createInterface({ input: stream.setEncoding("utf8"), crlfDelay: Infinity });
  const b = new ParagraphBuilder();
  let lineNo = 0;
  let fence: string | null = null;
  let frontMatter = false;
  let prevBlank = true;
  let prevLine = "";
  for await (const raw of rl) {
    lineNo++;
    const line = lineNo === 1 ? raw.replace(/^\uFEFF/, "") : raw;
    if (markdown) {
      if (lineNo === 1 && line.trim() === "---") {
        frontMatter = true;
        continue;
      }
      if (frontMatter) {
        if (line.trim() === "---" || line.trim() === "...") frontMatter = false;
        continue;
      }
      const f = /^\s{0,3}(`{3,}|~{3,})/.exec(line);
      if (fence !== null) {
        stats.code_lines++;
        if (f && f[1]![0] === fence[0] && f[1]!.length >= fence.length) fence = null;
        continue;
      }
      if (f) {
        const p = b.take();
        if (p) yield p;
        fence = f[1]!;
        stats.code_lines++;
        continue;
      }
    }
    if (line.trim() === "") {
      const p = b.take();
      if (p) yield p;
      prevBlank = true;
      continue;
    }
    if (markdown) {
      if (/^( {4}|\t)/.test(line) && prevBlank && b.empty) {
        stats.code_lines++;
        continue; // indented code block (its following lines stay "after blank" via b.empty)
      }
      if (/^\s*\|.*\|\s*$/.test(line) || /^\s*\|?\s*:?-{3,}:?\s*\|/.test(line)) {
        const p = b.take();
        if (p) yield p;
        stats.table_lines++;
        prevBlank = false;
        continue;
      }
      if (/^\s{0,3}([-*_])(\s*\1){2,}\s*$/.test(line) || /^\s{0,3}=+\s*$/.test(line)) {
        const p = b.take();
        if (p) yield p;
        prevBlank = true;
        continue;
      }
      const heading = /^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
      const item = /^\s*(?:[-*+]|\d+[.)])\s+(.*)$/.exec(line);
      if (heading || item) {
        const p = b.take();
        if (p) yield p;
        b.add(stripInlineMarkdown((heading ?? item)![1]!), lineNo);
        if (heading) {
          const h = b.take();
          if (h) yield h;
        }
        prevBlank = false;
        prevLine = line;
        continue;
      }
      const text = stripInlineMarkdown(line.replace(/^\s{0,3}(>\s?)+/, ""));
      if (text === "") continue;
      if (!b.empty && isTitleBreak(prevLine, text)) {
        const p = b.take();
        if (p) yield p;
      }
      b.add(text, lineNo);
    } else {
      const text = line.trim();
      if (!b.empty && isTitleBreak(prevLine, text)) {
        const p = b.take();
        if (p) yield p;
      }
      b.add(text, lineNo);
    }
    prevBlank = false;
    prevLine = line.trim();
  }
  const p = b.take();
  if (p) yield p;
}

function isTitleBreak(prev: string, next: string): boolean {
  return prev.length < 50 && !TERMINAL.test(prev) && /^\p{Lu}/u.test(next);
}

const SKIP_TAGS = new Set(["script", "style", "pre", "code", "table", "nav", "header", "footer", "aside", "noscript", "template", "svg", "head", "form", "button", "select", "iframe", "math"]);
const BLOCK_TAGS = new Set([
  "p", "div", "br", "li", "ul", "ol", "dl", "dt", "dd", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article", "main",
  "blockquote", "figure", "figcaption", "hr", "tr", "td", "th", "body", "html", "title", "details", "summary", "caption",
]);

/** Byte-stream offsets → line numbers, for a parser whose positions only move forward. */
class LineCounter {
  private chunks: { start: number; text: string }[] = [];
  private offset = 0;
  private countedTo = 0;
  private line = 1;

  feed(text: string): void {
    this.chunks.push({ start: this.offset, text });
    this.offset += text.length;
  }

  lineAt(index: number): number {
    while (this.chunks.length > 0 && this.countedTo < index) {
      const c = this.chunks[0]!;
      const end = Math.min(index, c.start + c.text.length);
      for (let i = this.countedTo - c.start; i < end - c.start; i++) if (c.text.charCodeAt(i) === 10) this.line++;
      this.countedTo = end;
      if (end === c.start + c.text.length) this.chunks.shift();
      else break;
    }
    return this.line;
  }
}

/**
 * HTML through htmlparser2's streaming parser: text outside script/style/pre/code/table/nav/header/
 * footer/aside/form…, block elements end paragraphs, entities are decoded.
 */
async function* htmlParagraphs(stream: ReadStream, stats: BlockStats): AsyncGenerator<Paragraph> {
  const out: Paragraph[] = [];
  const b = new ParagraphBuilder();
  const lines = new LineCounter();
  let skipDepth = 0;
  const flush = () => {
    const p = b.take();
    if (p) out.push(p);
  };
  const parser: HtmlParser = new HtmlParser(
    {
      onopentag(name) {
        if (SKIP_TAGS.has(name)) {
          if (skipDepth === 0) flush();
          skipDepth++;
        } else if (BLOCK_TAGS.has(name)) flush();
      },
      onclosetag(name) {
        if (SKIP_TAGS.has(name)) skipDepth = Math.max(0, skipDepth - 1);
        else if (BLOCK_TAGS.has(name)) flush();
      },
      ontext(text) {
        const start = parser.startIndex;
        if (skipDepth > 0) {
          const n = text.split("\n").filter((l) => l.trim() !== "").length;
          stats.code_lines += n;
          return;
        }
        // keep line numbers per source line of the text node
        let line = lines.lineAt(start);
        for (const part of text.split("\n")) {
          if (part.trim() !== "") b.add(part.replace(/\s+/g, " "), line);
          line++;
        }
      },
    },
    { decodeEntities: true, lowerCaseTags: true },
  );
  for await (const chunk of stream.setEncoding("utf8")) {
    lines.feed(chunk as string);
    parser.write(chunk as string);
    while (out.length > 0) yield out.shift()!;
  }
  parser.end();
  flush();
  while (out.length > 0) yield out.shift()!;
}

function getField(obj: unknown, path: string): unknown {
  let v: unknown = obj;
  for (const k of path.split(".")) {
    if (v === null || typeof v !== "object") return undefined;
    v = (v as Record<string, unknown>)[k];
  }
  return v;
}

/** Splits a multi-line text value (one JSONL record or CSV cell) into paragraphs, all at one line. */
function* valueParagraphs(value: string, line: number): Generator<Paragraph> {
  for (const block of value.split(/\n\s*\n/)) {
    const b = new ParagraphBuilder();
    for (const l of block.split("\n")) b.add(stripInlineMarkdown(l), line);
    const p = b.take();
    if (p) yield p;
  }
}

async function* jsonlParagraphs(stream: ReadStream, path: string, field: string): AsyncGenerator<Paragraph> {
  const rl = createInterface({ input: stream.setEncoding("utf8"), crlfDelay: Infinity });
  let lineNo = 0;
  for await (const line of rl) {
    lineNo++;
    if (line.trim() === "") continue;
    let obj: unknown;
    try {
      obj = JSON.parse(line);
    } catch (e) {
      throw new ConfigError(`invalid JSON: ${(e as Error).message}`, { location: { file: path, line: lineNo } });
    }
    const v = getField(obj, field);
    if (v === undefined || v === null) continue; // records without the field hold no text for us
    if (typeof v !== "string") throw new ConfigError(`expected a string (--field ${field})`, { location: { file: path, line: lineNo, field } });
    yield* valueParagraphs(v, lineNo);
  }
}

async function* csvParagraphs(stream: ReadStream, path: string, column: string, delimiter: string): AsyncGenerator<Paragraph> {
  const parser = stream.pipe(
    parseCsv({ columns: true, bom: true, delimiter, info: true, relax_column_count: true, skip_empty_lines: true, relax_quotes: true }),
  );
  let checked = false;
  try {
    for await (const row of parser as AsyncIterable<{ record: Record<string, string>; info: { lines: number } }>) {
      if (!checked) {
        if (!(column in row.record)) {
          throw new ConfigError(`no column "${column}" (--column); the header has: ${Object.keys(row.record).join(", ")}`, { location: { file: path, line: 1 } });
        }
        checked = true;
      }
      const v = row.record[column];
      if (typeof v === "string" && v.trim() !== "") yield* valueParagraphs(v, row.info.lines);
    }
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    const line = (e as { lines?: number }).lines;
    throw new ConfigError(`invalid CSV: ${(e as Error).message}`, { location: { file: path, ...(line ? { line } : {}) }, cause: e });
  }
}
