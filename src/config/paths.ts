import { homedir } from "node:os";
import { isAbsolute, join, resolve } from "node:path";
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
  // a path (./venv/bin/python) is the caller's; a bare name (python3) is looked up on PATH
  if (env.RANKCHAIN_PYTHON) return env.RANKCHAIN_PYTHON.includes("/") ? userPath(env.RANKCHAIN_PYTHON) : env.RANKCHAIN_PYTHON;
  const venv = join(PROJECT_ROOT, ".venv", "bin", "python");
  return existsSync(venv) ? venv : "python3";
}

/**
 * A path the user typed, made absolute against the directory they typed it in (the process's
 * working directory, which is never the install directory's business). `~/` is expanded.
 */
export function userPath(p: string, cwd: string = process.cwd()): string {
  if (p === "~") return homedir();
  if (p.startsWith("~/")) return join(homedir(), p.slice(2));
  return isAbsolute(p) ? p : resolve(cwd, p);
}

/**
 * A model reference that is either a local directory/file or a hub id ("org/name"): absolute when
 * it names something that exists (or is written as a path: ./x, ../x, /x, ~/x), else unchanged.
 */
export function userPathOrId(ref: string, cwd: string = process.cwd()): string {
  const pathLike = /^(\.{1,2}(\/|$)|\/|~(\/|$))/.test(ref);
  const abs = userPath(ref, cwd);
  return pathLike || existsSync(abs) ? abs : ref;
}
