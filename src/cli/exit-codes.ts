import { RankchainError } from "../errors.ts";

// The map lives beside the error classes (the library exports it too); re-exported for the CLI.
export { EXIT, exitCodeFor } from "../errors.ts";

/** One line for the terminal; never includes request headers (keys live only there). */
export function describeError(error: unknown): string {
  if (error instanceof RankchainError) return `${error.name}: ${error.message}`;
  if (error instanceof Error) return `${error.name}: ${error.message}`;
  return String(error);
}
