import { existsSync } from "node:fs";
import { config as dotenvConfig } from "dotenv";
import { ConfigError } from "../errors.ts";

/** Loads ./.env (if present) without overriding variables already set; prints nothing. */
export function loadDotEnv(path = ".env"): void {
  if (existsSync(path)) dotenvConfig({ path, override: false, quiet: true });
}

/**
 * Reads an API key at request time: the explicit option first, then the environment variable.
 * When both are missing the error names both, and exits 2. The key is never printed.
 */
export function loadApiKey(opts: { apiKey?: string | undefined; envVar: string; option?: string | undefined; provider: string }): string {
  if (opts.apiKey !== undefined && opts.apiKey !== "") return opts.apiKey;
  const v = process.env[opts.envVar];
  if (v !== undefined && v !== "") return v;
  throw new ConfigError(
    `${opts.provider} needs an API key: set the environment variable ${opts.envVar} (or put it in .env)` +
      (opts.option ? `, or pass ${opts.option}` : ""),
  );
}

/** Query parameters whose values are credentials (`?key=`, `?api_key=`, `?access_token=`, `?sig=`, …). */
const SECRET_QUERY = /([?&](?:[\w.-]*?(?:key|token|secret|password|passwd|pwd|auth|sig|signature|credential)[\w.-]*)=)[^&#\s"'<>]*/gi;
/** `scheme://user:password@` or `scheme://token@` in a URL. */
const URL_USERINFO = /\b([a-z][a-z0-9+.-]*:\/\/)[^\s/?#@"'<>]+@/gi;

/**
 * A URL safe to store and print: user-info (`https://user:token@host`) and credential-like query
 * values (`?key=…`, `?api_key=…`, `?token=…`, `?sig=…`) are replaced by "[redacted]"; the rest
 * (host, path, harmless parameters such as `api-version`) is kept.
 */
export function redactUrl(url: string): string {
  return url.replace(URL_USERINFO, "$1[redacted]@").replace(SECRET_QUERY, "$1[redacted]");
}

/** Replaces anything that looks like a secret in a string meant for logs. */
export function redactSecrets(text: string, secrets: Array<string | undefined> = []): string {
  let out = text;
  for (const s of secrets) if (s && s.length >= 6) out = out.split(s).join("[redacted]");
  return redactUrl(out)
    .replace(/(authorization|x-api-key)(["']?\s*[:=]\s*["']?)(Bearer\s+)?[^\s"',}]+/gi, "$1$2[redacted]")
    .replace(/sk-(ant-)?[A-Za-z0-9_-]{16,}/g, "sk-[redacted]");
}
