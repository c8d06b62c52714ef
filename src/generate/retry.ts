import { BudgetExceededError, ProviderCallError, RetryError } from "../errors.ts";

/**
 * The one retry helper; the policy is passed in. Retries only what is classified retryable:
 * a ProviderCallError whose server said `x-should-retry: true`, or (absent that header) whose
 * status/kind is retryable (408, 409, 429, 5xx, connection errors, timeouts). Never retries
 * aborts, other 4xx, budget stops, or unknown errors (bugs). The delay follows `retry-after-ms`
 * or `retry-after` up to maxRetryAfterMs, otherwise exponential backoff with jitter.
 */
export interface RetryPolicy {
  maxRetries: number;
  initialDelayMs: number;
  maxDelayMs: number;
  backoffFactor: number;
  /** 0 = no jitter; 0.25 = delays drawn from [75%, 100%] of the backoff. */
  jitter: number;
  /** Server-requested delays above this are not honoured; the attempt counts as failed-no-retry. */
  maxRetryAfterMs: number;
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = {
  maxRetries: 4,
  initialDelayMs: 500,
  maxDelayMs: 8_000,
  backoffFactor: 2,
  jitter: 0.25,
  maxRetryAfterMs: 60_000,
};

export interface RetryHooks {
  signal?: AbortSignal | undefined;
  random?: () => number;
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  onRetry?: (info: { attempt: number; delayMs: number; error: unknown }) => void;
}

export function isRetryable(error: unknown): boolean {
  if (error instanceof BudgetExceededError) return false;
  if (!(error instanceof ProviderCallError)) return false;
  if (error.shouldRetryHeader !== undefined) return error.shouldRetryHeader;
  return error.isRetryable;
}

export function retryDelayMs(error: unknown, attempt: number, policy: RetryPolicy, random: () => number): number | undefined {
  if (error instanceof ProviderCallError && error.retryAfterMs !== undefined && error.retryAfterMs >= 0) {
    if (error.retryAfterMs > policy.maxRetryAfterMs) return undefined;
    return error.retryAfterMs;
  }
  const base = Math.min(policy.maxDelayMs, policy.initialDelayMs * policy.backoffFactor ** attempt);
  return Math.round(base * (1 - policy.jitter * random()));
}

export function abortableSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const t = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal?.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

export async function withRetries<T>(fn: (attempt: number) => Promise<T>, policy: RetryPolicy, hooks: RetryHooks = {}): Promise<T> {
  const random = hooks.random ?? Math.random;
  const sleep = hooks.sleep ?? abortableSleep;
  const errors: unknown[] = [];
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (error) {
      if (hooks.signal?.aborted) throw error;
      errors.push(error);
      if (!isRetryable(error)) {
        // Budget stops, aborts and bugs surface as themselves; only provider failures are wrapped.
        if (errors.length === 1 || !(error instanceof ProviderCallError)) throw error;
        throw new RetryError(`failed after ${errors.length} attempts; the last error is not retryable: ${messageOf(error)}`, "errorNotRetryable", errors);
      }
      if (attempt >= policy.maxRetries) {
        throw new RetryError(`failed after ${errors.length} attempts: ${messageOf(error)}`, "maxRetriesExceeded", errors);
      }
      const delay = retryDelayMs(error, attempt, policy, random);
      if (delay === undefined) {
        throw new RetryError(`server asked to retry after more than ${policy.maxRetryAfterMs} ms: ${messageOf(error)}`, "errorNotRetryable", errors);
      }
      hooks.onRetry?.({ attempt: attempt + 1, delayMs: delay, error });
      await sleep(delay, hooks.signal);
    }
  }
}

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
