import type { z } from "zod";
import { ConfigError } from "../errors.ts";

/** camelCase config key → the CLI flag that sets it, for error messages. */
export function flagName(key: string): string {
  return "--" + key.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase());
}

/** Validates parsed flags with a zod schema; the first problem becomes a ConfigError naming the flag. */
export function parseWithSchema<S extends z.ZodType>(schema: S, raw: unknown): z.infer<S> {
  const r = schema.safeParse(raw);
  if (r.success) return r.data;
  const issue = r.error.issues[0]!;
  const key = issue.path.map(String).join(".");
  throw new ConfigError(`${key ? flagName(key) + ": " : ""}${issue.message}`);
}
