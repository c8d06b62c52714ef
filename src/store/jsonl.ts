import { createReadStream } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";
import { createInterface } from "node:readline";
import type { z } from "zod";
import { ConfigError } from "../errors.ts";

/**
 * Append-only JSONL writer. Each append is one write() of a whole line (then a group-committed
 * datasync when `durable`), so a kill -9 leaves at most one torn final line.
 */
export class JsonlAppender {
  private constructor(
    private readonly handle: FileHandle,
    readonly path: string,
    private readonly durable: boolean,
  ) {}

  static async open(path: string, options: { durable?: boolean } = {}): Promise<JsonlAppender> {
    const handle = await open(path, "a");
    const app = new JsonlAppender(handle, path, options.durable ?? true);
    await app.repairTornTail();
    return app;
  }

  /** If the file ends without a newline (torn write), terminate that line so the next append starts clean. */
  private async repairTornTail(): Promise<void> {
    const { size } = await this.handle.stat();
    if (size === 0) return;
    const rd = await open(this.path, "r");
    try {
      const buf = Buffer.alloc(1);
      await rd.read(buf, 0, 1, size - 1);
      if (buf[0] !== 0x0a) await this.handle.write("\n");
    } finally {
      await rd.close();
    }
  }

  private queue: Promise<unknown> = Promise.resolve();
  private syncing: Promise<void> | undefined;
  private pendingSync: Promise<void> | undefined;

  /**
   * Appends one record. Writes are serialised, so concurrent callers never interleave lines; the
   * returned promise settles once the line is on disk. Durability uses group commit: one datasync
   * covers every line written before it started, so many concurrent appends share a few syncs
   * instead of paying one each. (A kill -9 never loses a completed write(); the sync is for power loss.)
   */
  append(record: unknown): Promise<void> {
    const line = JSON.stringify(record) + "\n";
    const written = this.queue.then(() => this.handle.write(line));
    this.queue = written.catch(() => undefined);
    return this.durable ? written.then(() => this.sync()) : written.then(() => undefined);
  }

  private sync(): Promise<void> {
    // A sync that has not started yet will cover this write; join it.
    if (this.pendingSync) return this.pendingSync;
    const next = (async () => {
      await this.syncing?.catch(() => undefined);
      this.pendingSync = undefined;
      const run = this.handle.datasync();
      this.syncing = run;
      try {
        await run;
      } finally {
        if (this.syncing === run) this.syncing = undefined;
      }
    })();
    this.pendingSync = next;
    return next;
  }

  async close(): Promise<void> {
    await this.queue;
    await this.pendingSync?.catch(() => undefined);
    await this.syncing?.catch(() => undefined);
    await this.handle.close();
  }
}

export interface JsonlReadIssue {
  line: number;
  message: string;
  /** true for an unparsable final line without a newline: a torn write, tolerated on resume. */
  torn: boolean;
}

/**
 * Streams a JSONL file record by record (memory stays flat). Lines that fail to parse or to
 * validate are reported through `onIssue`; without it they raise ConfigError naming file:line.
 */
export async function* readJsonl<T>(
  path: string,
  schema: z.ZodType<T>,
  options: { onIssue?: (issue: JsonlReadIssue) => void } = {},
): AsyncGenerator<{ line: number; value: T }> {
  const rl = createInterface({ input: createReadStream(path, { encoding: "utf8" }), crlfDelay: Infinity });
  let lineNo = 0;
  let pending: { line: number; text: string } | undefined;
  const handle = (line: number, text: string, isLast: boolean): { line: number; value: T } | undefined => {
    if (text.trim() === "") return undefined;
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (e) {
      const issue = { line, message: `invalid JSON: ${(e as Error).message}`, torn: isLast };
      if (options.onIssue) {
        options.onIssue(issue);
        return undefined;
      }
      throw new ConfigError(issue.message, { location: { file: path, line } });
    }
    const result = schema.safeParse(parsed);
    if (!result.success) {
      const first = result.error.issues[0];
      const field = first?.path.join(".") || undefined;
      const message = first?.message ?? "does not match the schema";
      if (options.onIssue) {
        options.onIssue({ line, message: field ? `${field}: ${message}` : message, torn: false });
        return undefined;
      }
      throw new ConfigError(message, { location: { file: path, line, ...(field ? { field } : {}) } });
    }
    return { line, value: result.data };
  };
  for await (const text of rl) {
    lineNo++;
    if (pending) {
      const r = handle(pending.line, pending.text, false);
      if (r) yield r;
    }
    pending = { line: lineNo, text };
  }
  if (pending) {
    const r = handle(pending.line, pending.text, true);
    if (r) yield r;
  }
}
