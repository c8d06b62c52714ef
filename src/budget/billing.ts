import { ProviderCallError, RetryError } from "../errors.ts";
import type { TokenCount } from "../llm/types.ts";
import type { CountQuality, Ledger, Reservation } from "./types.ts";

/**
 * What a failed paid call costs (README "Budget", the guarantee):
 * - an answer arrived (any 2xx) but its usage cannot be read (cut-off or unparseable body): the
 *   provider billed it — charge the reserved worst case;
 * - an HTTP error answer (3xx–5xx): not billed — release;
 * - the attempt provably never reached the provider (connection refused, DNS failure, TLS failure
 *   before the request was sent): release;
 * - anything else (timeout after the request was sent, connection reset, abort, unknown): the
 *   provider may have processed it — charge the worst case.
 */
export type FailureBilling = { action: "release"; reason: string } | { action: "charge-worst-case"; note: string };

/** Socket/DNS/TLS error codes raised before a single byte of the request reached the provider. */
const NEVER_SENT_CODES = new Set([
  "ECONNREFUSED",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EAI_NONAME",
  "EAI_FAIL",
  "ENETUNREACH",
  "EHOSTUNREACH",
  "EADDRNOTAVAIL",
  "UND_ERR_CONNECT_TIMEOUT",
  "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "ERR_TLS_CERT_ALTNAME_INVALID",
]);

/** The first error code in an error's cause chain (and AggregateError members) that proves the request was never sent. */
export function neverSentCode(error: unknown): string | undefined {
  const seen = new Set<unknown>();
  const stack: unknown[] = [error];
  while (stack.length > 0) {
    const e = stack.pop();
    if (e === null || typeof e !== "object" || seen.has(e)) continue;
    seen.add(e);
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && (NEVER_SENT_CODES.has(code) || code.startsWith("ERR_SSL_"))) return code;
    stack.push((e as { cause?: unknown }).cause);
    const members = (e as { errors?: unknown }).errors;
    if (Array.isArray(members)) stack.push(...members);
  }
  return undefined;
}

export function billingOfFailure(error: unknown): FailureBilling {
  const e = error instanceof RetryError ? error.lastError : error;
  if (e instanceof ProviderCallError && e.status !== undefined) {
    if (e.status >= 200 && e.status < 300) {
      return { action: "charge-worst-case", note: `HTTP ${e.status} answer whose usage could not be read; charged at worst case` };
    }
    return { action: "release", reason: `HTTP ${e.status}` };
  }
  const code = neverSentCode(e);
  if (code !== undefined) return { action: "release", reason: `never reached the provider (${code})` };
  const msg = e instanceof Error ? e.message.slice(0, 120) : "unknown";
  return { action: "charge-worst-case", note: `no usable answer (${msg}); charged at worst case` };
}

/** Settles a reservation after a failed call, by the rule above. */
export async function settleFailure(ledger: Ledger, reservation: Reservation, error: unknown): Promise<FailureBilling> {
  const b = billingOfFailure(error);
  if (b.action === "release") await ledger.release(reservation, b.reason);
  else await ledger.chargeWorstCase(reservation, b.note);
  return b;
}

/** How trustworthy a token count is, for the reservation margin. */
export function countQuality(count: TokenCount): CountQuality {
  if (count.quality) return count.quality;
  if (count.exact) return "exact";
  return count.method.startsWith("conservative bound") ? "bound" : "estimate";
}
