import { describe, expect, it } from "vitest";
import { billingOfFailure, neverSentCode } from "../../src/budget/billing.ts";
import { ProviderCallError, RetryError } from "../../src/errors.ts";

/** An SDK-style connection error: the socket error sits two causes deep, as undici reports it. */
function connectionError(code: string, message = `connect ${code}`): ProviderCallError {
  const sys = Object.assign(new Error(message), { code });
  const fetchFailed = new TypeError("fetch failed", { cause: sys });
  return new ProviderCallError(`connection error: ${message}`, { url: "http://x/v1/chat/completions", isRetryable: true, cause: fetchFailed });
}

describe("the billing rule for failed attempts", () => {
  it.each(["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH", "CERT_HAS_EXPIRED", "DEPTH_ZERO_SELF_SIGNED_CERT", "ERR_SSL_WRONG_VERSION_NUMBER", "UND_ERR_CONNECT_TIMEOUT"])(
    "%s never reached the provider: released",
    (code) => {
      expect(billingOfFailure(connectionError(code))).toEqual({ action: "release", reason: `never reached the provider (${code})` });
    },
  );

  it("finds the code inside an AggregateError (both address families refused)", () => {
    const agg = new AggregateError([Object.assign(new Error("connect ECONNREFUSED ::1:1"), { code: "ECONNREFUSED" })], "");
    expect(neverSentCode(new ProviderCallError("x", { isRetryable: true, cause: new TypeError("fetch failed", { cause: agg }) }))).toBe("ECONNREFUSED");
  });

  it.each(["ECONNRESET", "EPIPE", "UND_ERR_SOCKET"])("%s may come after the request was sent: charged at worst case", (code) => {
    expect(billingOfFailure(connectionError(code)).action).toBe("charge-worst-case");
  });

  it("a timeout or an abort is charged; an HTTP error answer is released; any 2xx is charged", () => {
    expect(billingOfFailure(new ProviderCallError("timed out", { isRetryable: true })).action).toBe("charge-worst-case");
    expect(billingOfFailure(new ProviderCallError("HTTP 500", { status: 500, isRetryable: true }))).toEqual({ action: "release", reason: "HTTP 500" });
    expect(billingOfFailure(new ProviderCallError("HTTP 429", { status: 429, isRetryable: true })).action).toBe("release");
    expect(billingOfFailure(new ProviderCallError("malformed body", { status: 200, isRetryable: false })).action).toBe("charge-worst-case");
    expect(billingOfFailure(new ProviderCallError("malformed body", { status: 201, isRetryable: false })).action).toBe("charge-worst-case");
    // a RetryError is judged by its last attempt
    expect(billingOfFailure(new RetryError("x", "maxRetriesExceeded", [connectionError("ECONNRESET"), connectionError("ECONNREFUSED")])).action).toBe("release");
  });
});
