import { existsSync } from "node:fs";
import { BudgetExceededError } from "../errors.ts";
import { costUsd, type ModelPrice } from "../config/prices.ts";
import { JsonlAppender, readJsonl } from "../store/jsonl.ts";
import { z } from "zod";
import type { ChargeInput, CountQuality, Ledger, LedgerStage, LedgerTotals, Reservation, ReserveRequest, StageTotals } from "./types.ts";

export type { ChargeInput, CountQuality, Ledger, LedgerStage, LedgerTotals, Reservation, ReserveRequest, StageTotals } from "./types.ts";

/**
 * The file ledger (DESIGN.md "Budget"; the contract is `Ledger` in types.ts). Reservations are
 * checked and booked synchronously against the in-memory totals, before the first await, so any
 * number of concurrent callers in this process can never together cross the cap; every
 * reservation, charge and release is appended to ledger.jsonl (before the call goes out, and after
 * it), so a killed process loses nothing: on reopen, reservations that never settled are charged
 * at their reserved worst case.
 */

/** Estimated counts (see CountQuality) are reserved at count × 1.1 + 16 tokens. */
export const ESTIMATE_MARGIN = 1.1;
export const ESTIMATE_MARGIN_TOKENS = 16;
/** Entries written before stages existed belong to generation. */
export const DEFAULT_STAGE = "generate";

export const LedgerEntrySchema = z.discriminatedUnion("type", [
  z.object({
    type: z.literal("reserve"),
    id: z.string(),
    ts: z.string(),
    usd: z.number(),
    stage: z.string().optional(),
    chain_id: z.string().optional(),
    /** Tokens reserved (count + margin + learned excess). */
    input_tokens: z.number(),
    /** Tokens as counted before the call. */
    counted_input_tokens: z.number().optional(),
    count: z.enum(["exact", "bound", "estimate"]).optional(),
    max_output_tokens: z.number(),
    model: z.string(),
    /** The call's cache key (responses.jsonl); batch mode re-adopts a reservation by it on resume. */
    key: z.string().optional(),
  }),
  z.object({
    type: z.literal("charge"),
    id: z.string(),
    ts: z.string(),
    usd: z.number(),
    stage: z.string().optional(),
    model: z.string().optional(),
    chain_id: z.string().optional(),
    input_tokens: z.number(),
    output_tokens: z.number(),
    cached_input_tokens: z.number().optional(),
    request_id: z.string().optional(),
    /** true when the charge is the reserved worst case because the real usage is unknown. */
    estimated: z.boolean().optional(),
    note: z.string().optional(),
  }),
  z.object({
    type: z.literal("release"),
    id: z.string(),
    ts: z.string(),
    usd: z.literal(0),
    stage: z.string().optional(),
    model: z.string().optional(),
    reason: z.string(),
  }),
]);
export type LedgerEntry = z.infer<typeof LedgerEntrySchema>;
type ReserveEntry = LedgerEntry & { type: "reserve" };

/** What one model was seen to bill beyond our counts. */
interface Learned {
  inRatio: number;
  inExcess: number;
  outRatio: number;
}

const emptyStage = (): StageTotals => ({ usd: 0, inputTokens: 0, outputTokens: 0, calls: 0 });

/** Totals and learned ratios rebuilt from ledger entries (shared by the ledger and by readers). */
class Books {
  spent = 0;
  reserved = 0;
  inputTokens = 0;
  outputTokens = 0;
  calls = 0;
  released = 0;
  overBilled = { calls: 0, usd: 0 };
  readonly byStage = new Map<string, StageTotals>();
  readonly reservedByStage = new Map<string, number>();
  readonly perChain = new Map<string, { usd: number; input: number; output: number }>();
  readonly learned = new Map<string, Learned>();

  book(stage: string, usd: number): void {
    this.reserved += usd;
    this.reservedByStage.set(stage, (this.reservedByStage.get(stage) ?? 0) + usd);
  }

  unbook(stage: string, usd: number): void {
    this.reserved = clamp0(this.reserved - usd);
    this.reservedByStage.set(stage, clamp0((this.reservedByStage.get(stage) ?? 0) - usd));
  }

  applyCharge(stage: string, chainId: string | undefined, usd: number, input: number, output: number, reservedUsd: number | undefined): void {
    this.spent += usd;
    this.inputTokens += input;
    this.outputTokens += output;
    this.calls += 1;
    const s = this.byStage.get(stage) ?? emptyStage();
    s.usd += usd;
    s.inputTokens += input;
    s.outputTokens += output;
    s.calls += 1;
    this.byStage.set(stage, s);
    if (reservedUsd !== undefined && usd > reservedUsd + 1e-12) {
      this.overBilled.calls += 1;
      this.overBilled.usd += usd - reservedUsd;
    }
    if (chainId !== undefined) {
      const c = this.perChain.get(chainId) ?? { usd: 0, input: 0, output: 0 };
      c.usd += usd;
      c.input += input;
      c.output += output;
      this.perChain.set(chainId, c);
    }
  }

  /** A charge with reported usage teaches the model's billing ratio. */
  learn(model: string, counted: number, maxOutput: number, billedInput: number, billedOutput: number): void {
    const l = this.learned.get(model) ?? { inRatio: 1, inExcess: 0, outRatio: 1 };
    if (counted > 0 && billedInput > counted) {
      l.inRatio = Math.max(l.inRatio, billedInput / counted);
      l.inExcess = Math.max(l.inExcess, billedInput - counted);
    }
    if (maxOutput > 0 && billedOutput > maxOutput) l.outRatio = Math.max(l.outRatio, billedOutput / maxOutput);
    this.learned.set(model, l);
  }

  stageUsed(stage: string): number {
    return (this.byStage.get(stage)?.usd ?? 0) + (this.reservedByStage.get(stage) ?? 0);
  }

  totals(): LedgerTotals {
    return {
      spentUsd: this.spent,
      reservedUsd: this.reserved,
      inputTokens: this.inputTokens,
      outputTokens: this.outputTokens,
      calls: this.calls,
      released: this.released,
      overBilled: { ...this.overBilled },
      byStage: Object.fromEntries([...this.byStage].map(([k, v]) => [k, { ...v }])),
    };
  }

  /**
   * Replays entries; returns the reservations left open (a killed process), which the caller
   * charges at their worst case.
   */
  replay(entries: Iterable<LedgerEntry>): Map<string, ReserveEntry> {
    const reserves = new Map<string, ReserveEntry>();
    const open = new Map<string, ReserveEntry>();
    for (const e of entries) {
      if (e.type === "reserve") {
        reserves.set(e.id, e);
        open.set(e.id, e);
        continue;
      }
      const r = reserves.get(e.id);
      open.delete(e.id);
      if (e.type === "release") {
        this.released += 1;
        continue;
      }
      const stage = e.stage ?? r?.stage ?? DEFAULT_STAGE;
      this.applyCharge(stage, e.chain_id, e.usd, e.input_tokens, e.output_tokens, r?.usd);
      if (r && !e.estimated) this.learn(r.model, r.counted_input_tokens ?? r.input_tokens, r.max_output_tokens, e.input_tokens, e.output_tokens);
    }
    return open;
  }
}

/** The reservation a granted request becomes (shared by every Ledger implementation). */
export function reservationOf(id: string, request: ReserveRequest, plan: { inputTokens: number; maxOutputTokens: number; usd: number }): Reservation {
  return {
    id,
    usd: plan.usd,
    stage: request.stage,
    model: request.model,
    chainId: request.chainId,
    countedInputTokens: request.inputTokens,
    inputTokens: plan.inputTokens,
    maxOutputTokens: plan.maxOutputTokens,
    price: request.price,
  };
}

/** The `charge` ledger line for a settled reservation (shared by every Ledger implementation). */
export function chargeEntryOf(reservation: Reservation, usd: number, c: ChargeInput, ts: string): LedgerEntry {
  return {
    type: "charge",
    id: reservation.id,
    ts,
    usd,
    stage: reservation.stage,
    model: reservation.model,
    ...(reservation.chainId !== undefined ? { chain_id: reservation.chainId } : {}),
    input_tokens: c.inputTokens,
    output_tokens: c.outputTokens,
    ...(c.cachedInputTokens !== undefined ? { cached_input_tokens: c.cachedInputTokens } : {}),
    ...(c.requestId !== undefined ? { request_id: c.requestId } : {}),
    ...(c.estimated ? { estimated: true } : {}),
    ...(c.note !== undefined ? { note: c.note } : {}),
  };
}

/**
 * Resolves when a reservation settles (the ledger calls every waiter it holds then) or `signal`
 * aborts; at once when `openCount` is 0. Shared by every Ledger implementation.
 */
export function waitForSettleOf(openCount: number, waiters: Array<() => void>, signal?: AbortSignal): Promise<void> {
  if (openCount === 0) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      signal?.removeEventListener("abort", done);
      resolve();
    };
    waiters.push(done);
    signal?.addEventListener("abort", done, { once: true });
  });
}

function clamp0(x: number): number {
  return x < 1e-12 ? 0 : x;
}

async function readEntries(path: string): Promise<LedgerEntry[]> {
  const entries: LedgerEntry[] = [];
  if (!existsSync(path)) return entries;
  for await (const { value } of readJsonl(path, LedgerEntrySchema, { onIssue: () => undefined })) entries.push(value);
  return entries;
}

/**
 * Totals of a ledger file without opening it for writing (reports, validate's cost): reservations
 * left open count at their worst case, as the ledger itself charges them on reopen.
 */
export async function readLedgerTotals(path: string): Promise<LedgerTotals | undefined> {
  if (!existsSync(path)) return undefined;
  const books = new Books();
  const open = books.replay(await readEntries(path));
  for (const r of open.values()) books.applyCharge(r.stage ?? DEFAULT_STAGE, r.chain_id, r.usd, r.input_tokens, r.max_output_tokens, r.usd);
  return books.totals();
}

export interface LedgerOptions {
  /** The cap applies to this stage's spend only (validate --max-usd caps validate's own spend). */
  capStage?: string | undefined;
  now?: () => Date;
  /**
   * Unsettled reservations whose call key this returns true for are still pending at the provider
   * (a submitted batch): on open they stay booked against the cap, for `adopt(key)`, instead of
   * being charged at their worst case.
   */
  keepOpen?: (key: string) => boolean;
  /**
   * Default true: under a cap, the first call to a model goes out alone (see reserve). Batch mode
   * turns it off: there the first call alone would cost a whole batch turnaround (up to 24 h), and
   * the batch providers' usage is what our counts predict.
   */
  firstCallAlone?: boolean;
}

export class BudgetLedger implements Ledger {
  private seq = 0;
  private readonly books = new Books();
  private readonly open = new Map<string, Reservation>();
  /** Reservations of calls still pending at the provider (batch mode), kept open on resume. */
  private readonly adoptable = new Map<string, Reservation>();
  private settleWaiters: Array<() => void> = [];
  private readonly now: () => Date;
  readonly capStage: string | undefined;
  private readonly firstCallAlone: boolean;

  private constructor(
    readonly capUsd: number | undefined,
    private readonly sink: JsonlAppender | undefined,
    options: LedgerOptions,
  ) {
    this.now = options.now ?? (() => new Date());
    this.capStage = options.capStage;
    this.firstCallAlone = options.firstCallAlone ?? true;
  }

  /** A ledger with no file (estimates, tests). */
  static inMemory(capUsd?: number, options: LedgerOptions = {}): BudgetLedger {
    return new BudgetLedger(capUsd, undefined, options);
  }

  /**
   * Opens (or resumes) ledger.jsonl. Unsettled reservations from an earlier process are charged at
   * their worst case, and that settlement is appended, so the history stays append-only. Billing
   * ratios learned by earlier processes apply again.
   */
  static async open(path: string, capUsd: number | undefined, options: LedgerOptions = {}): Promise<BudgetLedger> {
    const entries = await readEntries(path);
    const sink = await JsonlAppender.open(path);
    const ledger = new BudgetLedger(capUsd, sink, options);
    let maxSeq = 0;
    for (const e of entries) {
      const m = /^r(\d+)$/.exec(e.id);
      if (m) maxSeq = Math.max(maxSeq, Number(m[1]));
    }
    ledger.seq = maxSeq;
    const pending = ledger.books.replay(entries);
    for (const r of pending.values()) {
      const stage = r.stage ?? DEFAULT_STAGE;
      if (r.key !== undefined && options.keepOpen?.(r.key)) {
        const kept: Reservation = {
          id: r.id,
          usd: r.usd,
          stage,
          model: r.model,
          chainId: r.chain_id,
          countedInputTokens: r.counted_input_tokens ?? r.input_tokens,
          inputTokens: r.input_tokens,
          maxOutputTokens: r.max_output_tokens,
          price: undefined,
        };
        ledger.books.book(stage, r.usd);
        ledger.open.set(r.id, kept);
        ledger.adoptable.set(r.key, kept);
        continue;
      }
      await sink.append({
        type: "charge",
        id: r.id,
        ts: ledger.now().toISOString(),
        usd: r.usd,
        stage,
        model: r.model,
        ...(r.chain_id !== undefined ? { chain_id: r.chain_id } : {}),
        input_tokens: r.input_tokens,
        output_tokens: r.max_output_tokens,
        estimated: true,
        note: "in flight when the previous process stopped; charged at its reserved worst case",
      } satisfies LedgerEntry);
      ledger.books.applyCharge(stage, r.chain_id, r.usd, r.input_tokens, r.max_output_tokens, r.usd);
    }
    return ledger;
  }

  totals(): LedgerTotals {
    return this.books.totals();
  }

  chainUsage(chainId: string): { usd: number; input: number; output: number } {
    return { ...(this.books.perChain.get(chainId) ?? { usd: 0, input: 0, output: 0 }) };
  }

  /** Open reservations (calls in flight). */
  inFlight(): number {
    return this.open.size;
  }

  private openFor(model: string): number {
    let n = 0;
    for (const r of this.open.values()) if (r.model === model) n++;
    return n;
  }

  /**
   * The worst case the ledger would reserve for a call: the count (+ margin for estimates), raised
   * to what this model was seen to bill over our counts (both as a ratio and as a fixed excess,
   * whichever is larger), and max output tokens × any observed output overrun.
   */
  plan(request: Pick<ReserveRequest, "model" | "inputTokens" | "maxOutputTokens" | "count" | "price">): { inputTokens: number; maxOutputTokens: number; usd: number } {
    const c = request.inputTokens;
    const l = this.books.learned.get(request.model);
    let input = (request.count ?? "bound") === "estimate" ? Math.ceil(c * ESTIMATE_MARGIN) + ESTIMATE_MARGIN_TOKENS : c;
    if (l && (l.inRatio > 1 || l.inExcess > 0)) input = Math.max(input, Math.ceil(c * l.inRatio), c + l.inExcess);
    const out = l && l.outRatio > 1 ? Math.ceil(request.maxOutputTokens * l.outRatio) : request.maxOutputTokens;
    return { inputTokens: input, maxOutputTokens: out, usd: request.price ? costUsd(request.price, input, out) : 0 };
  }

  /** Would a call of this worst case fit under the cap right now? */
  fits(usd: number, stage: string = DEFAULT_STAGE): boolean {
    if (this.capUsd === undefined) return true;
    if (this.capStage !== undefined) return stage !== this.capStage || this.books.stageUsed(stage) + usd <= this.capUsd + 1e-12;
    return this.books.spent + this.books.reserved + usd <= this.capUsd + 1e-12;
  }

  /**
   * Reserves a call's worst case. The check and the booking happen synchronously, before the first
   * await, so concurrent reservations are serialised by the event loop. When the call does not fit,
   * waits for calls in flight to settle and tries again; throws BudgetExceededError (and writes
   * nothing) only when nothing is in flight and the call still does not fit.
   */
  async reserve(request: ReserveRequest): Promise<Reservation> {
    if (!Number.isFinite(request.inputTokens) || request.inputTokens < 0) throw new Error(`invalid reservation input tokens ${request.inputTokens}`);
    if (!Number.isFinite(request.maxOutputTokens) || request.maxOutputTokens < 0) throw new Error(`invalid reservation output tokens ${request.maxOutputTokens}`);
    for (;;) {
      if (request.signal?.aborted) throw request.signal.reason ?? new Error("aborted");
      // Under a cap, the first call to a model goes out alone: until one answer with reported usage
      // has been seen, nothing is known about what the model bills beyond our count, so at most one
      // call can be over-billed before the ledger learns the ratio.
      if (this.firstCallAlone && this.capUsd !== undefined && request.wait !== false && !this.books.learned.has(request.model) && this.openFor(request.model) > 0) {
        await this.waitForSettle(request.signal);
        continue;
      }
      const plan = this.plan(request);
      if (this.fits(plan.usd, request.stage)) return this.book(request, plan);
      if (request.wait === false || this.open.size === 0) {
        const t = this.books;
        const scope = this.capStage !== undefined ? ` (${this.capStage} stage)` : "";
        const spent = this.capStage !== undefined ? (t.byStage.get(this.capStage)?.usd ?? 0) : t.spent;
        throw new BudgetExceededError(
          `budget cap $${this.capUsd?.toFixed(6)}${scope} reached: spent $${spent.toFixed(6)}, reserved $${t.reserved.toFixed(6)}, next call needs up to $${plan.usd.toFixed(6)}`,
          this.capUsd ?? Infinity,
          spent,
          plan.usd,
        );
      }
      await this.waitForSettle(request.signal);
    }
  }

  private async book(request: ReserveRequest, plan: { inputTokens: number; maxOutputTokens: number; usd: number }): Promise<Reservation> {
    this.books.book(request.stage, plan.usd);
    const id = `r${++this.seq}`;
    const reservation = reservationOf(id, request, plan);
    this.open.set(id, reservation);
    await this.sink?.append({
      type: "reserve",
      id,
      ts: this.now().toISOString(),
      usd: plan.usd,
      stage: request.stage,
      ...(request.chainId !== undefined ? { chain_id: request.chainId } : {}),
      input_tokens: plan.inputTokens,
      counted_input_tokens: request.inputTokens,
      count: request.count ?? "bound",
      max_output_tokens: plan.maxOutputTokens,
      model: request.model,
      ...(request.key !== undefined ? { key: request.key } : {}),
    } satisfies LedgerEntry);
    return reservation;
  }

  adopt(key: string, price: ModelPrice | undefined): Reservation | undefined {
    const kept = this.adoptable.get(key);
    if (!kept) return undefined;
    this.adoptable.delete(key);
    const reservation: Reservation = { ...kept, price };
    this.open.set(kept.id, reservation);
    return reservation;
  }

  waitForSettle(signal?: AbortSignal): Promise<void> {
    return waitForSettleOf(this.open.size, this.settleWaiters, signal);
  }

  async charge(reservation: Reservation, c: ChargeInput): Promise<void> {
    this.settle(reservation);
    const usd = c.usd ?? (reservation.price ? costUsd(reservation.price, c.inputTokens, c.outputTokens, c.cachedInputTokens ?? 0) : 0);
    this.books.applyCharge(reservation.stage, reservation.chainId, usd, c.inputTokens, c.outputTokens, reservation.usd);
    if (!c.estimated) this.books.learn(reservation.model, reservation.countedInputTokens, reservation.maxOutputTokens, c.inputTokens, c.outputTokens);
    this.wake();
    await this.sink?.append(chargeEntryOf(reservation, usd, c, this.now().toISOString()));
  }

  chargeWorstCase(reservation: Reservation, note: string): Promise<void> {
    return this.charge(reservation, {
      usd: reservation.usd,
      inputTokens: reservation.inputTokens,
      outputTokens: reservation.maxOutputTokens,
      estimated: true,
      note,
    });
  }

  async release(reservation: Reservation, reason: string): Promise<void> {
    this.settle(reservation);
    this.books.released += 1;
    this.wake();
    await this.sink?.append({
      type: "release",
      id: reservation.id,
      ts: this.now().toISOString(),
      usd: 0,
      stage: reservation.stage,
      model: reservation.model,
      reason,
    } satisfies LedgerEntry);
  }

  private settle(reservation: Reservation): void {
    if (!this.open.delete(reservation.id)) throw new Error(`reservation ${reservation.id} is already settled`);
    this.books.unbook(reservation.stage, reservation.usd);
  }

  private wake(): void {
    const waiters = this.settleWaiters;
    this.settleWaiters = [];
    for (const w of waiters) w();
  }

  async close(): Promise<void> {
    this.wake();
    await this.sink?.close();
  }
}
