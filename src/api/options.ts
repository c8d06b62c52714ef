import type { z } from "zod";
import { ConfigError } from "../errors.ts";

/** camelCase option → the CLI flag that sets it ("maxUsd" → "--max-usd"). */
export function flagOf(key: string): string {
  return "--" + key.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase());
}

/**
 * Validates an options object with a zod schema; the first problem becomes a ConfigError (exit 2)
 * naming the CLI flag of the option (maxUsd → "--max-usd: …"), the same message the CLI prints.
 */
export function parseOptions<S extends z.ZodType>(schema: S, raw: unknown): z.infer<S> {
  const r = schema.safeParse(raw);
  if (r.success) return r.data;
  const issue = r.error.issues[0]!;
  const key = issue.path.map(String).join(".");
  throw new ConfigError(`${key ? `${flagOf(key)}: ` : ""}${issue.message}`);
}

/** Leaves out undefined values (exactOptionalPropertyTypes-friendly spreading). */
export function defined<T extends Record<string, unknown>>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
