import { homedir } from "node:os";
import { join, resolve } from "node:path";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

/** The project root (where package.json lives), for scripts and the bundled prompts. */
export const PROJECT_ROOT = resolve(fileURLToPath(new URL("../..", import.meta.url)));

/** Cache root: $RANKCHAIN_CACHE, else ~/.cache/rankchain. Models live in <cache>/models. */
export function cacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.RANKCHAIN_CACHE && env.RANKCHAIN_CACHE !== "" ? resolve(env.RANKCHAIN_CACHE) : join(homedir(), ".cache", "rankchain");
}

export function modelsDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(cacheDir(env), "models");
}

/**
 * The Python interpreter for the posttrain side: $RANKCHAIN_PYTHON, else the project's .venv
 * (made by scripts/setup-python.sh), else python3 on PATH.
 */
export function pythonExecutable(env: NodeJS.ProcessEnv = process.env): string {
  if (env.RANKCHAIN_PYTHON) return env.RANKCHAIN_PYTHON;
  const venv = join(PROJECT_ROOT, ".venv", "bin", "python");
  return existsSync(venv) ? venv : "python3";
}
