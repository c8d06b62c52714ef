/**
 * Typed errors. Every error rankchain raises on purpose derives from RankchainError; the CLI maps
 * classes to exit codes in one place (src/cli/exit-codes.ts).
 */
export class RankchainError extends Error {
  override readonly name: string = "RankchainError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** Where in an input file something is wrong. */
export interface InputLocation {
  file: string;
  line?: number;
  field?: string;
}

/** Bad usage, configuration or input: exit code 2. The message says what and where. */
export class ConfigError extends RankchainError {
  override readonly name: string = "ConfigError";
  readonly location: InputLocation | undefined;
  constructor(message: string, options?: { cause?: unknown; location?: InputLocation }) {
    const where = options?.location ? formatLocation(options.location) + ": " : "";
    super(where + message, options);
    this.location = options?.location;
  }
}

export function formatLocation(loc: InputLocation): string {
  let s = loc.file;
  if (loc.line !== undefined) s += `:${loc.line}`;
  if (loc.field !== undefined) s += ` (field "${loc.field}")`;
  return s;
}

/** The hard cap would be crossed by the next paid call: exit code 3. Everything paid for is saved. */
export class BudgetExceededError extends RankchainError {
  override readonly name: string = "BudgetExceededError";
  constructor(
    message: string,
    readonly capUsd: number,
    readonly spentUsd: number,
    readonly requestedUsd: number,
  ) {
    super(message);
  }
}

/** One failed call to a provider. Adapters throw it; the orchestrator decides whether to retry. */
export class ProviderCallError extends RankchainError {
  override readonly name: string = "ProviderCallError";
  readonly url: string | undefined;
  readonly status: number | undefined;
  readonly requestId: string | undefined;
  readonly bodyExcerpt: string | undefined;
  readonly isRetryable: boolean;
  /** Server hints, already parsed: x-should-retry, retry-after-ms / retry-after in milliseconds. */
  readonly shouldRetryHeader: boolean | undefined;
  readonly retryAfterMs: number | undefined;
  constructor(
    message: string,
    fields: {
      url?: string | undefined;
      status?: number | undefined;
      requestId?: string | undefined;
      bodyExcerpt?: string | undefined;
      isRetryable: boolean;
      shouldRetryHeader?: boolean | undefined;
      retryAfterMs?: number | undefined;
      cause?: unknown;
    },
  ) {
    super(message, { cause: fields.cause });
    this.url = fields.url;
    this.status = fields.status;
    this.requestId = fields.requestId;
    this.bodyExcerpt = fields.bodyExcerpt;
    this.isRetryable = fields.isRetryable;
    this.shouldRetryHeader = fields.shouldRetryHeader;
    this.retryAfterMs = fields.retryAfterMs;
  }
}

/**
 * A connection failure of one server of a `--base-url` farm while other servers are still in
 * rotation. Retried (the farm routes the retry elsewhere) and billed exactly like the failure it
 * wraps (its cause), but it says nothing about whether the provider can be reached, so the circuit
 * breaker does not count it: one crashed server must not stop a run the others are serving.
 */
export class FarmMemberDownError extends ProviderCallError {
  override readonly name: string = "FarmMemberDownError";
  constructor(
    readonly server: string,
    readonly serversUp: number,
    failure: ProviderCallError,
  ) {
    super(`${failure.message} (server ${server} taken out of rotation; ${serversUp} other server${serversUp === 1 ? "" : "s"} still up)`, {
      url: failure.url,
      status: failure.status,
      requestId: failure.requestId,
      bodyExcerpt: failure.bodyExcerpt,
      isRetryable: failure.isRetryable,
      shouldRetryHeader: failure.shouldRetryHeader,
      retryAfterMs: failure.retryAfterMs,
      cause: failure,
    });
  }
}

export type RetryErrorReason = "maxRetriesExceeded" | "errorNotRetryable" | "abort";

/** Retries ran out (or the error was not retryable). Holds every attempt's error. */
export class RetryError extends RankchainError {
  override readonly name: string = "RetryError";
  constructor(
    message: string,
    readonly reason: RetryErrorReason,
    readonly errors: unknown[],
  ) {
    super(message, { cause: errors[errors.length - 1] });
  }
  get lastError(): unknown {
    return this.errors[this.errors.length - 1];
  }
}

/** The run was interrupted by SIGINT/SIGTERM; ledger and chains are consistent. */
export class InterruptedError extends RankchainError {
  override readonly name: string = "InterruptedError";
}

/**
 * A call left waiting on work submitted to the provider (a batch) when the process was aborted:
 * its reservation stays open and --resume collects the result instead of paying for it again.
 */
export class PendingAtProviderError extends InterruptedError {
  override readonly name: string = "PendingAtProviderError";
}

/**
 * The provider could not be reached for N consecutive attempts (connection refused or reset,
 * timeouts): the run stopped making calls, saved everything paid for, and exits with code 4;
 * `--resume` continues once the server is back.
 */
export class ProviderUnreachableError extends RankchainError {
  override readonly name: string = "ProviderUnreachableError";
  constructor(
    message: string,
    readonly consecutiveFailures: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** The run finished but produced no usable chain (every chain empty or shorter than --min-steps): exit 1. */
export class NoUsableChainsError extends RankchainError {
  override readonly name: string = "NoUsableChainsError";
}

/**
 * DESIGN.md exit codes: 0 done; 2 bad usage, config or input; 3 budget reached; 4 provider
 * unreachable (N consecutive connection failures; everything paid for is saved; --resume
 * continues); 130 interrupted; 1 anything else.
 */
export const EXIT = { ok: 0, failure: 1, usage: 2, budget: 3, unreachable: 4, interrupted: 130 } as const;

/** The exit code the CLI uses for an error (the library's callers map errors the same way). */
export function exitCodeFor(error: unknown): number {
  if (error instanceof ConfigError) return EXIT.usage;
  if (error instanceof BudgetExceededError) return EXIT.budget;
  if (error instanceof InterruptedError) return EXIT.interrupted;
  if (error instanceof ProviderUnreachableError) return EXIT.unreachable;
  if (error instanceof RetryError && error.lastError instanceof BudgetExceededError) return EXIT.budget;
  return EXIT.failure;
}
