import { existsSync } from "node:fs";
import { BudgetExceededError } from "../errors.ts";
import { JsonlAppender, readJsonl } from "../store/jsonl.ts";
import { z } from "zod";

/**
 * The spend ledger (DESIGN.md "Budget"). Before each paid call a reservation of the call's worst
 * case is made — synchronously against the in-memory totals, so any number of concurrent callers
 * can never together cross the cap — and appended to ledger.jsonl before the call goes out. After
 * the call the reservation is replaced by a charge of the provider-reported usage (or released if
 * nothing was billed). On resume, reservations that never settled (in flight at a kill) are
 * charged at their reserved worst case: the ledger never under-counts.
 */

export const LedgerEntrySchema = z.discriminatedUnion("type", [
  z.object({
    type: z.literal("reserve"),
    id: z.string(),
    ts: z.string(),
    usd: z.number(),
    chain_id: z.string().optional(),
    input_tokens: z.number(),
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
    reason: z.string(),
  }),
]);
export type LedgerEntry = z.infer<typeof LedgerEntrySchema>;

export interface Reservation {
  readonly id: string;
  readonly usd: number;
  readonly chainId: string | undefined;
}

export interface ChargeInput {
  usd: number;
  inputTokens: number;
  outputTokens: number;
  cachedInputTokens?: number | undefined;
  requestId?: string | undefined;
  estimated?: boolean;
  note?: string;
}

export interface LedgerTotals {
  spentUsd: number;
  reservedUsd: number;
  inputTokens: number;
  outputTokens: number;
  calls: number;
}

export class BudgetLedger {
  private spent = 0;
  private reserved = 0;
  private inputTokens = 0;
  private outputTokens = 0;
  private calls = 0;
  private seq = 0;
  private readonly open = new Map<string, Reservation>();
  /** Reservations of calls still pending at the provider (batch mode), re-opened on resume. */
  private readonly adoptable = new Map<string, Reservation>();
  private readonly perChain = new Map<string, { usd: number; input: number; output: number }>();

  private constructor(
    readonly capUsd: number | undefined,
    private readonly sink: JsonlAppender | undefined,
    private readonly now: () => Date,
  ) {}

  /** A ledger with no file (estimates, tests). */
  static inMemory(capUsd?: number, now: () => Date = () => new Date()): BudgetLedger {
    return new BudgetLedger(capUsd, undefined, now);
  }

  /**
   * Opens (or resumes) ledger.jsonl. Unsettled reservations from an earlier process are charged at
   * their worst case, and that settlement is appended, so the history stays append-only.
   */
  static async open(
    path: string,
    capUsd: number | undefined,
    now: () => Date = () => new Date(),
    options: {
      /**
       * Unsettled reservations whose call key this returns true for are still pending at the
       * provider (a submitted batch): they stay open, counted against the cap, for `adopt(key)`,
       * instead of being charged at their worst case.
       */
      keepOpen?: (key: string) => boolean;
    } = {},
  ): Promise<BudgetLedger> {
    const pending = new Map<string, LedgerEntry & { type: "reserve" }>();
    const entries: LedgerEntry[] = [];
    if (existsSync(path)) {
      for await (const { value } of readJsonl(path, LedgerEntrySchema, { onIssue: () => undefined })) {
        entries.push(value);
      }
    }
    const sink = await JsonlAppender.open(path);
    const ledger = new BudgetLedger(capUsd, sink, now);
    let maxSeq = 0;
    for (const e of entries) {
      const m = /^r(\d+)$/.exec(e.id);
      if (m) maxSeq = Math.max(maxSeq, Number(m[1]));
      if (e.type === "reserve") pending.set(e.id, e);
      else {
        pending.delete(e.id);
        if (e.type === "charge") ledger.applyCharge(e.chain_id, e.usd, e.input_tokens, e.output_tokens);
      }
    }
    ledger.seq = maxSeq;
    for (const r of pending.values()) {
      if (r.key !== undefined && options.keepOpen?.(r.key)) {
        const reservation: Reservation = { id: r.id, usd: r.usd, chainId: r.chain_id };
        ledger.open.set(r.id, reservation);
        ledger.adoptable.set(r.key, reservation);
        ledger.reserved += r.usd;
        continue;
      }
      const charge: LedgerEntry = {
        type: "charge",
        id: r.id,
        ts: now().toISOString(),
        usd: r.usd,
        ...(r.chain_id !== undefined ? { chain_id: r.chain_id } : {}),
        input_tokens: r.input_tokens,
        output_tokens: r.max_output_tokens,
        estimated: true,
        note: "in flight when the previous process stopped; charged at its reserved worst case",
      };
      await sink.append(charge);
      ledger.applyCharge(r.chain_id, r.usd, r.input_tokens, r.max_output_tokens);
    }
    return ledger;
  }

  private applyCharge(chainId: string | undefined, usd: number, input: number, output: number): void {
    this.spent += usd;
    this.inputTokens += input;
    this.outputTokens += output;
    this.calls += 1;
    if (chainId !== undefined) {
      const c = this.perChain.get(chainId) ?? { usd: 0, input: 0, output: 0 };
      c.usd += usd;
      c.input += input;
      c.output += output;
      this.perChain.set(chainId, c);
    }
  }

  totals(): LedgerTotals {
    return {
      spentUsd: this.spent,
      reservedUsd: this.reserved,
      inputTokens: this.inputTokens,
      outputTokens: this.outputTokens,
      calls: this.calls,
    };
  }

  /** Spend so far for one chain (all its calls, retries and rejected outputs included). */
  chainUsage(chainId: string): { usd: number; input: number; output: number } {
    return this.perChain.get(chainId) ?? { usd: 0, input: 0, output: 0 };
  }

  /** Would a call of this worst case fit under the cap right now? */
  fits(usd: number): boolean {
    return this.capUsd === undefined || this.spent + this.reserved + usd <= this.capUsd + 1e-12;
  }

  /**
   * Reserves a call's worst case. The check and the increment happen synchronously, before the
   * first await, so concurrent reservations are serialised by the event loop. Throws
   * BudgetExceededError (and writes nothing) when the call would cross the cap.
   */
  async reserve(input: {
    usd: number;
    chainId?: string | undefined;
    inputTokens: number;
    maxOutputTokens: number;
    model: string;
    key?: string | undefined;
  }): Promise<Reservation> {
    if (!Number.isFinite(input.usd) || input.usd < 0) throw new Error(`invalid reservation amount ${input.usd}`);
    if (!this.fits(input.usd)) {
      throw new BudgetExceededError(
        `budget cap $${this.capUsd?.toFixed(6)} reached: spent $${this.spent.toFixed(6)}, reserved $${this.reserved.toFixed(6)}, next call needs up to $${input.usd.toFixed(6)}`,
        this.capUsd ?? Infinity,
        this.spent,
        input.usd,
      );
    }
    this.reserved += input.usd;
    const id = `r${++this.seq}`;
    const reservation: Reservation = { id, usd: input.usd, chainId: input.chainId };
    this.open.set(id, reservation);
    await this.sink?.append({
      type: "reserve",
      id,
      ts: this.now().toISOString(),
      usd: input.usd,
      ...(input.chainId !== undefined ? { chain_id: input.chainId } : {}),
      input_tokens: input.inputTokens,
      max_output_tokens: input.maxOutputTokens,
      model: input.model,
      ...(input.key !== undefined ? { key: input.key } : {}),
    } satisfies LedgerEntry);
    return reservation;
  }

  /** Takes over a reservation kept open for a call still pending at the provider (see open). */
  adopt(key: string): Reservation | undefined {
    const r = this.adoptable.get(key);
    if (r) this.adoptable.delete(key);
    return r;
  }

  /** Replaces a reservation by what the provider reported. */
  async charge(reservation: Reservation, c: ChargeInput): Promise<void> {
    this.settle(reservation);
    this.applyCharge(reservation.chainId, c.usd, c.inputTokens, c.outputTokens);
    await this.sink?.append({
      type: "charge",
      id: reservation.id,
      ts: this.now().toISOString(),
      usd: c.usd,
      ...(reservation.chainId !== undefined ? { chain_id: reservation.chainId } : {}),
      input_tokens: c.inputTokens,
      output_tokens: c.outputTokens,
      ...(c.cachedInputTokens !== undefined ? { cached_input_tokens: c.cachedInputTokens } : {}),
      ...(c.requestId !== undefined ? { request_id: c.requestId } : {}),
      ...(c.estimated ? { estimated: true } : {}),
      ...(c.note !== undefined ? { note: c.note } : {}),
    } satisfies LedgerEntry);
  }

  /** Nothing was billed (the request never reached the provider, or it answered with an error). */
  async release(reservation: Reservation, reason: string): Promise<void> {
    this.settle(reservation);
    await this.sink?.append({
      type: "release",
      id: reservation.id,
      ts: this.now().toISOString(),
      usd: 0,
      reason,
    } satisfies LedgerEntry);
  }

  private settle(reservation: Reservation): void {
    if (!this.open.delete(reservation.id)) throw new Error(`reservation ${reservation.id} is already settled`);
    this.reserved -= reservation.usd;
    if (this.reserved < 1e-12) this.reserved = Math.max(0, this.reserved);
  }

  async close(): Promise<void> {
    await this.sink?.close();
  }
}
