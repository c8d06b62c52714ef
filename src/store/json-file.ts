import { existsSync, readFileSync } from "node:fs";

/**
 * Reads a JSON object from a file written by another stage (run.json, validation.json, eval.json)
 * for display: a missing file, invalid JSON or a non-object all give null, never an exception.
 * Stages that must fail loudly on a bad file parse it with their zod schema instead.
 */
export function readJsonObjectIfPresent(path: string): Record<string, unknown> | null {
  if (!existsSync(path)) return null;
  try {
    const doc: unknown = JSON.parse(readFileSync(path, "utf8"));
    return doc && typeof doc === "object" && !Array.isArray(doc) ? (doc as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}
