import { InvalidArgumentError } from "commander";
import { describeError, exitCodeFor } from "./exit-codes.ts";

/**
 * Wraps a command's action: errors become one clear message on stderr and the documented exit
 * code. Set RANKCHAIN_DEBUG=1 for stack traces.
 */
export function action<A extends unknown[]>(fn: (...args: A) => Promise<number | void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      const code = await fn(...args);
      process.exitCode = code ?? 0;
    } catch (error) {
      process.stderr.write(`rankchain: ${describeError(error)}\n`);
      if (process.env.RANKCHAIN_DEBUG && error instanceof Error && error.stack) process.stderr.write(error.stack + "\n");
      process.exitCode = exitCodeFor(error);
    }
  };
}

/** Parses a number option and names the flag when it is not one. */
export function numberOption(flag: string, opts: { int?: boolean; min?: number; max?: number } = {}) {
  return (value: string): number => {
    const n = Number(value);
    const bad =
      value.trim() === "" ||
      !Number.isFinite(n) ||
      (opts.int && !Number.isInteger(n)) ||
      (opts.min !== undefined && n < opts.min) ||
      (opts.max !== undefined && n > opts.max);
    if (bad) {
      const range = [opts.min !== undefined ? `>= ${opts.min}` : "", opts.max !== undefined ? `<= ${opts.max}` : ""]
        .filter(Boolean)
        .join(" and ");
      throw new UsageError(`${flag} expects ${opts.int ? "an integer" : "a number"}${range ? " " + range : ""}, got "${value}"`);
    }
    return n;
  };
}

export class UsageError extends InvalidArgumentError {}
