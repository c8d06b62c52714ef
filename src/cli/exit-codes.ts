import { BudgetExceededError, ConfigError, InterruptedError, ProviderUnreachableError, RankchainError, RetryError } from "../errors.ts";

/**
 * DESIGN.md exit codes: 0 done; 2 bad usage, config or input; 3 budget reached; 4 provider
 * unreachable (N consecutive connection failures; everything paid for is saved; --resume
 * continues); 130 interrupted; 1 anything else.
 */
export const EXIT = { ok: 0, failure: 1, usage: 2, budget: 3, unreachable: 4, interrupted: 130 } as const;

export function exitCodeFor(error: unknown): number {
  if (error instanceof ConfigError) return EXIT.usage;
  if (error instanceof BudgetExceededError) return EXIT.budget;
  if (error instanceof InterruptedError) return EXIT.interrupted;
  if (error instanceof ProviderUnreachableError) return EXIT.unreachable;
  if (error instanceof RetryError && error.lastError instanceof BudgetExceededError) return EXIT.budget;
  return EXIT.failure;
}

/** One line for the terminal; never includes request headers (keys live only there). */
export function describeError(error: unknown): string {
  if (error instanceof RankchainError) return `${error.name}: ${error.message}`;
  if (error instanceof Error) return `${error.name}: ${error.message}`;
  return String(error);
}
