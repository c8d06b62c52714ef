import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { withRetries, DEFAULT_RETRY_POLICY, retryDelayMs } from "../../src/generate/retry.ts";
import { BudgetExceededError, ProviderCallError, RetryError } from "../../src/errors.ts";

const policy = { ...DEFAULT_RETRY_POLICY, maxRetries: 3, initialDelayMs: 1000, jitter: 0 };
const err = (status: number | undefined, extra: Partial<ConstructorParameters<typeof ProviderCallError>[1]> = {}) =>
  new ProviderCallError(`status ${status}`, { status, isRetryable: status === undefined || status === 429 || status >= 500, ...extra });

describe("withRetries", () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it("retries 429/5xx with exponential backoff, then succeeds", async () => {
    const fn = vi.fn().mockRejectedValueOnce(err(429)).mockRejectedValueOnce(err(503)).mockResolvedValue("ok");
    const p = withRetries(fn, policy);
    await vi.advanceTimersByTimeAsync(999);
    expect(fn).toHaveBeenCalledTimes(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(fn).toHaveBeenCalledTimes(2);
    await vi.advanceTimersByTimeAsync(2000);
    await expect(p).resolves.toBe("ok");
    expect(fn).toHaveBeenCalledTimes(3);
  });

  it("honours retry-after from the server", async () => {
    const fn = vi.fn().mockRejectedValueOnce(err(429, { retryAfterMs: 5000 })).mockResolvedValue("ok");
    const p = withRetries(fn, policy);
    await vi.advanceTimersByTimeAsync(4999);
    expect(fn).toHaveBeenCalledTimes(1);
    await vi.advanceTimersByTimeAsync(1);
    await expect(p).resolves.toBe("ok");
  });

  it("does not honour retry-after above the limit", async () => {
    const fn = vi.fn().mockRejectedValue(err(429, { retryAfterMs: 120_000 }));
    await expect(withRetries(fn, policy)).rejects.toSatisfy((e: unknown) => e instanceof RetryError && e.reason === "errorNotRetryable");
    expect(fn).toHaveBeenCalledTimes(1);
  });

  it("x-should-retry overrides the status classification", async () => {
    const no = vi.fn().mockRejectedValue(err(503, { shouldRetryHeader: false }));
    await expect(withRetries(no, policy)).rejects.toBeInstanceOf(ProviderCallError);
    expect(no).toHaveBeenCalledTimes(1);
    const yes = vi.fn().mockRejectedValueOnce(err(400, { shouldRetryHeader: true })).mockResolvedValue(1);
    const p = withRetries(yes, policy);
    await vi.advanceTimersByTimeAsync(1000);
    await expect(p).resolves.toBe(1);
  });

  it("never retries other 4xx, budget stops or bugs", async () => {
    for (const e of [err(400), err(401), new BudgetExceededError("cap", 1, 1, 1), new TypeError("bug")]) {
      const fn = vi.fn().mockRejectedValue(e);
      await expect(withRetries(fn, policy)).rejects.toBe(e);
      expect(fn).toHaveBeenCalledTimes(1);
    }
  });

  it("gives up with a RetryError holding every attempt's error", async () => {
    const fn = vi.fn().mockRejectedValue(err(500));
    const p = withRetries(fn, policy);
    const assertion = expect(p).rejects.toSatisfy((e: unknown) => e instanceof RetryError && e.reason === "maxRetriesExceeded" && e.errors.length === 4);
    await vi.advanceTimersByTimeAsync(60_000);
    await assertion;
  });

  it("jitter keeps delays within [1 - jitter, 1] of the backoff", () => {
    const p = { ...policy, jitter: 0.25 };
    expect(retryDelayMs(err(500), 2, p, () => 0)).toBe(4000);
    expect(retryDelayMs(err(500), 2, p, () => 1)).toBe(3000);
    expect(retryDelayMs(err(500), 10, p, () => 0)).toBe(p.maxDelayMs);
  });
});
