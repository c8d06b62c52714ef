import type { ModelPrice } from "../config/prices.ts";

/**
 * The ledger contract every implementation keeps (the JSONL file ledger in ledger.ts; a PostgreSQL
 * ledger shared by several processes can implement the same interface). DESIGN.md "Budget".
 *
 * Guarantee (README "Budget"):
 * - Before a paid call, `reserve` books the call's worst case: its counted input tokens (with a
 *   margin when the count is only an estimate, and scaled by what this model was seen to bill over
 *   our counts) × input price + max output tokens × output price. A reservation is granted only if
 *   spend + open reservations + it stays within the cap; otherwise `reserve` waits for calls in
 *   flight to settle and tries again, and throws BudgetExceededError only when nothing is in flight
 *   and the call still does not fit.
 * - Every reservation ends exactly once:
 *   `charge`   — an answer arrived (any 2xx): the reported usage, or `chargeWorstCase` when the
 *                usage cannot be read (cut-off or unparseable body) or when the request was sent and
 *                no answer came back (timeout, reset, abort);
 *   `release`  — nothing was billed: an HTTP error answer, or an attempt that provably never reached
 *                the provider (connection refused, DNS failure, TLS failure before sending).
 * - A charge may exceed its reservation (the provider billed more than we counted). The ledger then
 *   learns the model's ratio and uses it for later reservations; spend can cross the cap only by
 *   the excess of calls already in flight when the over-billing was first seen. Under a cap, the
 *   first call to a model goes out alone until an answer with reported usage has been seen, so an
 *   over-billing present from the start exposes one call.
 * - Reservations left open by a killed process are charged at their worst case when the ledger is
 *   reopened: the ledger never under-counts.
 *
 * Methods that touch storage are async so a shared (database) implementation fits; `totals()` is a
 * synchronous snapshot of what this process last saw, refreshed by every reserve/charge/release.
 */
export interface Ledger {
  /** The hard cap in USD (undefined: no cap, spend is only recorded). */
  readonly capUsd: number | undefined;
  /** When set, the cap applies to the spend of this stage only (e.g. `validate --max-usd`). */
  readonly capStage: string | undefined;
  reserve(request: ReserveRequest): Promise<Reservation>;
  /** Replaces a reservation by what the provider billed. */
  charge(reservation: Reservation, charge: ChargeInput): Promise<void>;
  /** Charges the reservation's worst case (usage unknown, but the provider may have billed). */
  chargeWorstCase(reservation: Reservation, note: string): Promise<void>;
  /** Nothing was billed. */
  release(reservation: Reservation, reason: string): Promise<void>;
  /**
   * Takes over a reservation an earlier process left open for a call still pending at the provider
   * (a submitted batch; see the file ledger's `keepOpen`), instead of reserving again.
   */
  adopt?(key: string, price: ModelPrice | undefined): Reservation | undefined;
  /** Resolves when at least one open reservation settles (at once when none is open). */
  waitForSettle(signal?: AbortSignal): Promise<void>;
  totals(): LedgerTotals;
  /** Spend so far for one chain (all its calls, retries and rejected outputs included). */
  chainUsage(chainId: string): { usd: number; input: number; output: number };
  close(): Promise<void>;
}

/** Which part of the pipeline spent the money. */
export type LedgerStage = "generate" | "validate" | "judge" | (string & {});

/**
 * How the input tokens were counted: `exact` (the model's tokenizer or the server's own tokenize
 * endpoint), `bound` (an upper bound, e.g. UTF-8 bytes for byte-level BPE), `estimate` (may be
 * below what is billed: Anthropic's count endpoint, tiktoken for an unknown model, cl100k for a
 * non-OpenAI embedding server). Estimates carry a margin.
 */
export type CountQuality = "exact" | "bound" | "estimate";

export interface ReserveRequest {
  stage: LedgerStage;
  /** "provider/model": what the ledger learns billing ratios for. */
  model: string;
  chainId?: string | undefined;
  inputTokens: number;
  maxOutputTokens: number;
  /** Default "bound". */
  count?: CountQuality | undefined;
  /** undefined: the price is unknown and no cap is set; the call is booked at $0 (tokens only). */
  price: ModelPrice | undefined;
  /**
   * Default true: wait for calls in flight to settle before declaring the cap reached (and, under
   * a cap, for a model's first call to settle). false: decide now; throw if it does not fit.
   */
  wait?: boolean | undefined;
  signal?: AbortSignal | undefined;
  /** The call's cache key (responses.jsonl): batch mode re-adopts the reservation by it on resume. */
  key?: string | undefined;
}

export interface Reservation {
  readonly id: string;
  readonly usd: number;
  readonly stage: LedgerStage;
  readonly model: string;
  readonly chainId: string | undefined;
  /** Tokens as counted before the call. */
  readonly countedInputTokens: number;
  /** Tokens reserved (count + margin + learned excess). */
  readonly inputTokens: number;
  readonly maxOutputTokens: number;
  readonly price: ModelPrice | undefined;
}

export interface ChargeInput {
  inputTokens: number;
  outputTokens: number;
  cachedInputTokens?: number | undefined;
  /** Default: computed from the reservation's price and the tokens. */
  usd?: number | undefined;
  requestId?: string | undefined;
  /** true when the charge is the worst case because the real usage is unknown. */
  estimated?: boolean | undefined;
  note?: string | undefined;
}

export interface StageTotals {
  usd: number;
  inputTokens: number;
  outputTokens: number;
  calls: number;
}

export interface LedgerTotals {
  spentUsd: number;
  reservedUsd: number;
  inputTokens: number;
  outputTokens: number;
  /** Charged calls (released attempts are not calls: nothing was billed). */
  calls: number;
  /** Attempts released without a charge. */
  released: number;
  /** Charges above their reservation: how many, and by how much in total. */
  overBilled: { calls: number; usd: number };
  byStage: Record<string, StageTotals>;
}
