import { spawn, spawnSync } from "node:child_process";
import { createInterface } from "node:readline";
import { ConfigError, RankchainError } from "../errors.ts";
import { pythonExecutable } from "../config/paths.ts";

/** What a user runs to install the Python side (scripts/setup-python.sh, from the project root). */
export const PYTHON_INSTALL_HINT =
  "install it with `bash scripts/setup-python.sh` (from the rankchain directory; creates .venv with torch, " +
  "sentence-transformers and rankchain-posttrain; on GPU machines set RANKCHAIN_TORCH_INDEX to a CUDA wheel index), " +
  "or point RANKCHAIN_PYTHON at an interpreter that has `pip install -e posttrain` installed";

/** One machine-readable progress line from the Python side (rankchain_posttrain/progress.py). */
export interface PythonEvent {
  event: string;
  [key: string]: unknown;
}

export interface PythonCheck {
  python: string;
  versions: Record<string, string>;
}

/**
 * Checks that `python` runs and imports rankchain_posttrain (and torch). Throws ConfigError (exit 2)
 * that says exactly how to install the Python side when it does not.
 */
export function checkPythonSide(python: string = pythonExecutable(), env: NodeJS.ProcessEnv = process.env): PythonCheck {
  const probe =
    "import json, sys, torch, sentence_transformers, rankchain_posttrain; " +
    "print(json.dumps({'python': sys.version.split()[0], 'torch': torch.__version__, " +
    "'sentence_transformers': sentence_transformers.__version__, 'rankchain_posttrain': rankchain_posttrain.__version__, " +
    "'cuda': str(torch.cuda.is_available())}))";
  const r = spawnSync(python, ["-c", probe], { encoding: "utf8", env, timeout: 120_000 });
  if (r.error) {
    const code = (r.error as NodeJS.ErrnoException).code;
    const why = code === "ENOENT" ? `Python interpreter not found: ${python}` : `could not run ${python}: ${r.error.message}`;
    throw new ConfigError(`${why}; the post-training side needs Python 3.10+ — ${PYTHON_INSTALL_HINT}`);
  }
  if (r.status !== 0) {
    const missing = /No module named '([^']+)'/.exec(r.stderr ?? "")?.[1];
    const why = missing
      ? `Python package "${missing}" is not installed for ${python}`
      : `${python} cannot import the post-training package: ${(r.stderr ?? "").trim().split("\n").slice(-1)[0] ?? ""}`;
    throw new ConfigError(`${why}; ${PYTHON_INSTALL_HINT}`);
  }
  const line = (r.stdout ?? "").trim().split("\n").slice(-1)[0] ?? "{}";
  return { python, versions: JSON.parse(line) as Record<string, string> };
}

export interface RunPythonOptions {
  python?: string;
  module: string;
  args: string[];
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Every JSON line the module prints on stdout. */
  onEvent?: (event: PythonEvent) => void;
  /** Every stderr line (human messages, warnings, library noise). */
  onStderr?: (line: string) => void;
  signal?: AbortSignal;
}

export interface RunPythonResult {
  exitCode: number;
  events: PythonEvent[];
  /** The module's own `error` event, when it reported one. */
  error: PythonEvent | undefined;
  /** The last stderr lines, for error messages. */
  stderrTail: string[];
}

/**
 * Runs `python -m module args...`, streaming its JSON progress lines. Resolves with the exit code
 * (never throws for a non-zero exit: the caller forwards it); SIGINT/SIGTERM of this process reach
 * the child through the shared process group, and `signal` kills it explicitly.
 */
export function runPythonModule(opts: RunPythonOptions): Promise<RunPythonResult> {
  const python = opts.python ?? pythonExecutable();
  const env = { PYTHONUNBUFFERED: "1", TOKENIZERS_PARALLELISM: "false", ...(opts.env ?? process.env) };
  return new Promise((resolvePromise, reject) => {
    const child = spawn(python, ["-m", opts.module, ...opts.args], {
      // the caller's directory: arguments are absolute anyway, and anything the module writes
      // relative to its working directory lands where the user is, not in the install directory
      cwd: opts.cwd ?? process.cwd(),
      env,
      stdio: ["ignore", "pipe", "pipe"],
      signal: opts.signal,
    });
    // Ctrl-C reaches the child through the terminal's process group; stay alive until it has saved
    // its checkpoint and exited, then forward its exit code (130).
    // A SIGTERM sent to this process alone is passed on to the child.
    const ignoreSignal = (): void => {};
    const forwardTerm = (): void => {
      child.kill("SIGTERM");
    };
    process.on("SIGINT", ignoreSignal);
    process.on("SIGTERM", forwardTerm);
    const release = (): void => {
      process.off("SIGINT", ignoreSignal);
      process.off("SIGTERM", forwardTerm);
    };
    const events: PythonEvent[] = [];
    const stderrTail: string[] = [];
    let error: PythonEvent | undefined;
    createInterface({ input: child.stdout }).on("line", (line) => {
      const text = line.trim();
      if (!text.startsWith("{")) {
        if (text) opts.onStderr?.(text);
        return;
      }
      let ev: PythonEvent;
      try {
        ev = JSON.parse(text) as PythonEvent;
      } catch {
        opts.onStderr?.(text);
        return;
      }
      if (typeof ev.event !== "string") return;
      events.push(ev);
      if (ev.event === "error") error = ev;
      opts.onEvent?.(ev);
    });
    createInterface({ input: child.stderr }).on("line", (line) => {
      stderrTail.push(line);
      if (stderrTail.length > 40) stderrTail.shift();
      opts.onStderr?.(line);
    });
    child.on("error", (e) => {
      release();
      if ((e as NodeJS.ErrnoException).code === "ENOENT") {
        reject(new ConfigError(`Python interpreter not found: ${python}; ${PYTHON_INSTALL_HINT}`));
      } else if (e.name === "AbortError") {
        resolvePromise({ exitCode: 130, events, error, stderrTail });
      } else {
        reject(new RankchainError(`could not run ${python} -m ${opts.module}: ${e.message}`, { cause: e }));
      }
    });
    child.on("close", (code, signal) => {
      release();
      const exitCode = code ?? (signal === "SIGINT" || signal === "SIGTERM" ? 130 : 1);
      resolvePromise({ exitCode, events, error, stderrTail });
    });
  });
}
