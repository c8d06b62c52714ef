import { mkdtempSync, readFileSync, existsSync, writeFileSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GenerateConfigSchema, type GenerateConfig } from "../../src/config/run-config.ts";

export function tmpDir(prefix = "rankchain-gen-"): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export function writeSeeds(dir: string, seeds: string[], name = "seeds.txt"): string {
  const p = join(dir, name);
  writeFileSync(p, seeds.join("\n") + "\n");
  return p;
}

export const SEEDS = [
  "The library opens at nine and closes at five on weekdays.",
  "A cyclist repaired a flat tire at the side of the mountain road.",
  "The committee postponed its vote on the new budget until next month.",
  "Fresh bread from the corner bakery sells out before noon.",
  "The river flooded the lower fields after three days of heavy rain.",
  "Our team shipped the database migration without any downtime.",
  "A small dog waited patiently outside the grocery store.",
  "The museum added a wing for modern sculpture last spring.",
];

export function config(overrides: Partial<GenerateConfig> & Pick<GenerateConfig, "input" | "out" | "provider" | "model">): GenerateConfig {
  return GenerateConfigSchema.parse({ quiet: true, steps: 3, concurrency: 2, maxRetries: 3, ...overrides });
}

export function readJsonlFile<T = any>(path: string): T[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, "utf8")
    .split("\n")
    .filter((l) => l.trim() !== "")
    .flatMap((l) => {
      try {
        return [JSON.parse(l) as T];
      } catch {
        return [];
      }
    });
}

/** Every byte of every file in a directory, for "the key is never written" checks. */
export function allFileText(dir: string): string {
  return readdirSync(dir, { withFileTypes: true })
    .filter((d) => d.isFile())
    .map((d) => readFileSync(join(dir, d.name), "utf8"))
    .join("\n");
}
