import { existsSync, readFileSync, statSync } from "node:fs";
import { extname, join } from "node:path";
import { z } from "zod";
import { ConfigError } from "../errors.ts";
import { readJsonl } from "../store/jsonl.ts";

/** A chain as mining needs it: sentences[0] is the anchor, then the kept rewrites in order. */
export interface MineChain {
  id: string;
  sentences: string[];
}

const MineRecordSchema = z
  .object({
    id: z.union([z.string().min(1), z.number()]),
    anchor: z.string().min(1),
    steps: z.array(z.string()),
    validation: z
      .object({
        status: z.enum(["accepted", "repaired", "rejected"]),
        steps_kept: z.number().int().nonnegative().optional(),
      })
      .passthrough()
      .optional(),
  })
  .passthrough();

export interface LoadedChains {
  file: string;
  chains: MineChain[];
  skipped: { rejected: number; unvalidated: number; no_steps: number };
}

/**
 * Reads the chains of a run directory (validated.jsonl: accepted and repaired chains, cut to
 * `validation.steps_kept`; chains.jsonl only with allowUnvalidated) or of a chain JSONL file.
 */
export async function loadMineChains(path: string, allowUnvalidated = false): Promise<LoadedChains> {
  if (!existsSync(path)) throw new ConfigError("no such run directory or chain file", { location: { file: path } });
  let file = path;
  if (statSync(path).isDirectory()) {
    const validated = join(path, "validated.jsonl");
    const chains = join(path, "chains.jsonl");
    if (existsSync(validated)) file = validated;
    else if (allowUnvalidated && existsSync(chains)) file = chains;
    else {
      throw new ConfigError(
        existsSync(chains)
          ? "no validated.jsonl in the run directory: run `rankchain validate` first, or pass --allow-unvalidated to mine chains.jsonl"
          : "the run directory holds neither validated.jsonl nor chains.jsonl",
        { location: { file: path } },
      );
    }
  }
  const out: LoadedChains = { file, chains: [], skipped: { rejected: 0, unvalidated: 0, no_steps: 0 } };
  const seen = new Set<string>();
  for await (const { line, value } of readJsonl(file, MineRecordSchema)) {
    const id = String(value.id);
    if (seen.has(id)) throw new ConfigError(`duplicate chain id "${id}"`, { location: { file, line, field: "id" } });
    seen.add(id);
    let steps = value.steps;
    if (value.validation === undefined) {
      if (!allowUnvalidated) {
        out.skipped.unvalidated++;
        continue;
      }
    } else {
      if (value.validation.status === "rejected") {
        out.skipped.rejected++;
        continue;
      }
      const kept = value.validation.steps_kept;
      if (kept !== undefined) {
        if (kept > steps.length) {
          throw new ConfigError(`steps_kept ${kept} exceeds the ${steps.length} steps`, { location: { file, line, field: "validation.steps_kept" } });
        }
        steps = steps.slice(0, kept);
      }
    }
    steps = steps.filter((s) => s.trim() !== "");
    if (steps.length === 0) {
      out.skipped.no_steps++;
      continue;
    }
    out.chains.push({ id, sentences: [value.anchor, ...steps] });
  }
  return out;
}

/** One extra candidate from --corpus: its text and where it came from. */
export interface CorpusLine {
  text: string;
  line: number;
}

/** --corpus FILE: plain text (one candidate per line) or JSONL with a `text` field. Blank lines are skipped. */
export function loadCorpus(path: string): CorpusLine[] {
  if (!existsSync(path) || !statSync(path).isFile()) throw new ConfigError("corpus file not found (--corpus)", { location: { file: path } });
  const raw = readFileSync(path);
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(raw);
  } catch {
    throw new ConfigError("is not valid UTF-8 (--corpus)", { location: { file: path } });
  }
  const jsonl = extname(path).toLowerCase() === ".jsonl";
  const out: CorpusLine[] = [];
  const lines = text.replace(/^\uFEFF/, "").split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i]!;
    if (l.trim() === "") continue;
    if (!jsonl) {
      out.push({ text: l.trim(), line: i + 1 });
      continue;
    }
    let v: unknown;
    try {
      v = JSON.parse(l);
    } catch (e) {
      throw new ConfigError(`invalid JSON: ${(e as Error).message}`, { location: { file: path, line: i + 1 } });
    }
    const t = v && typeof v === "object" ? (v as Record<string, unknown>).text : undefined;
    if (typeof t !== "string" || t.trim() === "") {
      throw new ConfigError("expected a non-empty string", { location: { file: path, line: i + 1, field: "text" } });
    }
    out.push({ text: t.trim(), line: i + 1 });
  }
  return out;
}
