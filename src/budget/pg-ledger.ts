/**
 * The shared ledger: reservations and charges in PostgreSQL (`--ledger postgres://…`), so one cap
 * holds across every process and machine that names the same budget id (`--budget-id`).
 *
 * - Reserving is one conditional statement: an UPDATE of the budget row that adds the worst case
 *   only `WHERE spent + reserved + worst <= cap`, and in the same statement (a data-modifying CTE)
 *   the INSERT of the reservation row. PostgreSQL locks the budget row for the UPDATE and re-checks
 *   the condition on the latest row version, so concurrent reservers from any number of processes
 *   are serialised and can never together cross the cap.
 * - Charging and releasing delete the reservation row and move its amount in one statement; a
 *   reservation already settled by someone else (see leases) changes nothing, so nothing is
 *   counted twice.
 * - Leases: each process renews the lease of its open reservations (every lease/3). A process
 *   killed with reservations open stops renewing; once a lease has expired, the next process that
 *   opens the budget (or `rankchain budget settle`) charges those reservations at their worst case.
 *   The ledger never under-counts.
 * - Every entry is also appended to the table rankchain_ledger_entries (the shared history), and
 *   the run keeps its own ledger.jsonl as before (through a file ledger without a cap): run.json
 *   totals, chain usage, merge and reports read the run's part from it.
 *
 * Billing-ratio learning and the per-stage caps of the file ledger are per process here (the
 * fleet-wide cap is what the database enforces).
 */
import { randomUUID } from "node:crypto";
import pg from "pg";
import { BudgetExceededError, ConfigError } from "../errors.ts";
import { costUsd, type ModelPrice } from "../config/prices.ts";
import { BudgetLedger, chargeEntryOf, reservationOf, waitForSettleOf } from "./ledger.ts";
import type { ChargeInput, Ledger, LedgerTotals, Reservation, ReserveRequest } from "./types.ts";

const SCHEMA = `
CREATE TABLE IF NOT EXISTS rankchain_budgets (
  budget_id text PRIMARY KEY,
  cap_usd double precision,
  spent_usd double precision NOT NULL DEFAULT 0,
  reserved_usd double precision NOT NULL DEFAULT 0,
  input_tokens bigint NOT NULL DEFAULT 0,
  output_tokens bigint NOT NULL DEFAULT 0,
  calls bigint NOT NULL DEFAULT 0,
  released bigint NOT NULL DEFAULT 0,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS rankchain_reservations (
  budget_id text NOT NULL REFERENCES rankchain_budgets(budget_id),
  id text NOT NULL,
  owner text NOT NULL,
  usd double precision NOT NULL,
  stage text NOT NULL,
  model text NOT NULL,
  chain_id text,
  input_tokens integer NOT NULL,
  max_output_tokens integer NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  lease_until timestamptz NOT NULL,
  PRIMARY KEY (budget_id, id)
);
ALTER TABLE rankchain_reservations ADD COLUMN IF NOT EXISTS call_key text;
CREATE INDEX IF NOT EXISTS rankchain_reservations_lease ON rankchain_reservations (budget_id, lease_until);
CREATE TABLE IF NOT EXISTS rankchain_ledger_entries (
  seq bigserial PRIMARY KEY,
  budget_id text NOT NULL,
  ts timestamptz NOT NULL DEFAULT now(),
  entry jsonb NOT NULL
);`;

interface BudgetRow {
  cap_usd: number | null;
  spent_usd: number;
  reserved_usd: number;
  input_tokens: string;
  output_tokens: string;
  calls: string;
  released: string;
}

export interface PgLedgerOptions {
  /** postgres://user@host:port/db */
  url: string;
  budgetId: string;
  /** The cap to set on the budget (the latest process to open it sets it); undefined keeps the stored one. */
  capUsd: number | undefined;
  /** Lease of an open reservation; renewed every leaseMs/3 while this process lives. Default 60 s. */
  leaseMs?: number;
  /** The run's ledger.jsonl, to keep this process's part of the history beside its chains. */
  mirrorPath?: string | undefined;
  /** Connections in this process's pool. Default 4. */
  poolSize?: number;
  /** false: the budget must already exist (budget show/settle never create one). Default true. */
  create?: boolean;
  /**
   * Open reservations whose call key this returns true for are still pending at the provider (a
   * submitted batch): this process takes them over (owner, lease) for `adopt(key)` instead of
   * reserving again. Batch mode also gives its reservations a lease as long as the batch window,
   * so a killed batch process's reservations wait for its --resume.
   */
  keepOpen?: (key: string) => boolean;
}

export interface BudgetSummary {
  budgetId: string;
  capUsd: number | undefined;
  spentUsd: number;
  reservedUsd: number;
  inputTokens: number;
  outputTokens: number;
  calls: number;
  released: number;
  open: number;
  expired: number;
}

export function isPostgresUrl(v: string | undefined): boolean {
  return v !== undefined && /^postgres(ql)?:\/\//.test(v);
}

export class PgLedger implements Ledger {
  readonly capStage = undefined;
  private readonly owner = randomUUID();
  private seq = 0;
  private readonly open = new Map<string, Reservation>();
  /** PG reservation id → the same reservation in the run's own ledger (local). */
  private readonly localOf = new Map<string, Reservation>();
  private snapshot: BudgetRow | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private settleWaiters: Array<() => void> = [];
  private readonly leaseMs: number;
  /** Reservations with expired leases this process settled when it opened the budget. */
  settledOnOpen = { settled: 0, usd: 0 };

  private constructor(
    private readonly pool: pg.Pool,
    readonly budgetId: string,
    public capUsd: number | undefined,
    /** The run's own ledger (ledger.jsonl, or in memory): per-run totals, per-chain usage, learned ratios. */
    private readonly local: BudgetLedger,
    leaseMs: number,
  ) {
    this.leaseMs = leaseMs;
  }

  /**
   * Connects, creates the tables when missing, sets the cap, and settles reservations whose lease
   * expired (processes killed earlier) at their worst case.
   */
  static async open(o: PgLedgerOptions): Promise<PgLedger> {
    if (!/^[A-Za-z0-9_.:-]{1,128}$/.test(o.budgetId)) throw new ConfigError(`--budget-id must be 1-128 characters of [A-Za-z0-9_.:-], got "${o.budgetId}"`);
    const pool = new pg.Pool({ connectionString: o.url, max: o.poolSize ?? 4 });
    pool.on("error", () => undefined); // idle-client errors surface on the next query
    try {
      const c = await pool.connect();
      try {
        await c.query("SELECT pg_advisory_lock(727271)");
        await c.query(SCHEMA);
        await c.query("SELECT pg_advisory_unlock(727271)");
      } finally {
        c.release();
      }
      if (o.create === false) {
        const found = await pool.query("SELECT 1 FROM rankchain_budgets WHERE budget_id = $1", [o.budgetId]);
        if (found.rowCount === 0) throw new ConfigError(`--budget-id: no shared budget named "${o.budgetId}" in ${redactUrl(o.url)}`);
      } else {
        await pool.query(
          `INSERT INTO rankchain_budgets (budget_id, cap_usd) VALUES ($1, $2)
           ON CONFLICT (budget_id) DO UPDATE SET cap_usd = COALESCE($2, rankchain_budgets.cap_usd), updated_at = now()`,
          [o.budgetId, o.capUsd ?? null],
        );
      }
    } catch (e) {
      if (e instanceof ConfigError) {
        await pool.end().catch(() => undefined);
        throw e;
      }
      await pool.end().catch(() => undefined);
      throw new ConfigError(`cannot open the PostgreSQL ledger (${redactUrl(o.url)}): ${(e as Error).message}`, { cause: e });
    }
    const local = o.mirrorPath ? await BudgetLedger.open(o.mirrorPath, undefined, { ...(o.keepOpen ? { keepOpen: o.keepOpen } : {}) }) : BudgetLedger.inMemory();
    const ledger = new PgLedger(pool, o.budgetId, o.capUsd, local, o.leaseMs ?? 60_000);
    if (o.keepOpen) await ledger.takeOver(o.keepOpen);
    ledger.settledOnOpen = await ledger.settleExpired(false);
    await ledger.refresh();
    ledger.capUsd = ledger.snapshot?.cap_usd ?? undefined;
    ledger.heartbeat = setInterval(() => void ledger.renew().catch(() => undefined), Math.max(50, ledger.leaseMs / 3));
    ledger.heartbeat.unref();
    return ledger;
  }

  private readonly adoptable = new Map<string, Reservation>();

  /** Takes over open reservations of calls still pending at the provider (see keepOpen). */
  private async takeOver(keepOpen: (key: string) => boolean): Promise<void> {
    const r = await this.pool.query<{ id: string; call_key: string; usd: number; stage: string; model: string; chain_id: string | null; input_tokens: number; max_output_tokens: number }>(
      `SELECT id, call_key, usd, stage, model, chain_id, input_tokens, max_output_tokens FROM rankchain_reservations WHERE budget_id = $1 AND call_key IS NOT NULL`,
      [this.budgetId],
    );
    for (const row of r.rows) {
      if (!keepOpen(row.call_key)) continue;
      const taken = await this.pool.query(
        `UPDATE rankchain_reservations SET owner = $3, lease_until = now() + make_interval(secs => $4) WHERE budget_id = $1 AND id = $2`,
        [this.budgetId, row.id, this.owner, this.leaseMs / 1000],
      );
      if (taken.rowCount !== 1) continue;
      const reservation: Reservation = {
        id: row.id,
        usd: row.usd,
        stage: row.stage,
        model: row.model,
        chainId: row.chain_id ?? undefined,
        countedInputTokens: row.input_tokens,
        inputTokens: row.input_tokens,
        maxOutputTokens: row.max_output_tokens,
        price: undefined,
      };
      this.open.set(row.id, reservation);
      this.adoptable.set(row.call_key, reservation);
    }
  }

  adopt(key: string, price: ModelPrice | undefined): Reservation | undefined {
    const kept = this.adoptable.get(key);
    if (!kept) return undefined;
    this.adoptable.delete(key);
    const reservation: Reservation = { ...kept, price };
    this.open.set(kept.id, reservation);
    const local = this.local.adopt(key, price);
    if (local) this.localOf.set(kept.id, local);
    return reservation;
  }

  private async refresh(): Promise<void> {
    const r = await this.pool.query<BudgetRow>("SELECT * FROM rankchain_budgets WHERE budget_id = $1", [this.budgetId]);
    this.snapshot = r.rows[0];
  }

  private async renew(): Promise<void> {
    if (this.open.size === 0) return;
    await this.pool.query(
      `UPDATE rankchain_reservations SET lease_until = now() + make_interval(secs => $3) WHERE budget_id = $1 AND owner = $2`,
      [this.budgetId, this.owner, this.leaseMs / 1000],
    );
  }

  /**
   * Charges open reservations at their worst case: those whose lease expired, or (force) every
   * open one — for `budget settle --force` when no process of the fleet is running.
   */
  async settleExpired(force: boolean): Promise<{ settled: number; usd: number }> {
    const r = await this.pool.query<{ id: string; usd: number; input_tokens: number; max_output_tokens: number; stage: string; model: string; chain_id: string | null }>(
      `SELECT id, usd, input_tokens, max_output_tokens, stage, model, chain_id FROM rankchain_reservations
       WHERE budget_id = $1 AND ($2 OR lease_until < now())`,
      [this.budgetId, force],
    );
    let settled = 0;
    let usd = 0;
    for (const row of r.rows) {
      const entry = {
        type: "charge",
        id: row.id,
        ts: new Date().toISOString(),
        usd: row.usd,
        stage: row.stage,
        model: row.model,
        ...(row.chain_id !== null ? { chain_id: row.chain_id } : {}),
        input_tokens: row.input_tokens,
        output_tokens: row.max_output_tokens,
        estimated: true,
        note: force ? "settled by `rankchain budget settle --force`; charged at its reserved worst case" : "lease expired (its process stopped); charged at its reserved worst case",
      };
      if (await this.settleRow(row.id, row.usd, row.input_tokens, row.max_output_tokens, "charge", entry)) {
        settled++;
        usd += row.usd;
      }
    }
    return { settled, usd };
  }

  /** Deletes the reservation and moves its amount, in one statement; false when already settled. */
  private async settleRow(id: string, usd: number, input: number, output: number, kind: "charge" | "release", entry: Record<string, unknown>): Promise<boolean> {
    const r = await this.pool.query<BudgetRow>(
      `WITH r AS (DELETE FROM rankchain_reservations WHERE budget_id = $1 AND id = $2 RETURNING usd),
            e AS (INSERT INTO rankchain_ledger_entries (budget_id, entry) SELECT $1, $7::jsonb FROM r)
       UPDATE rankchain_budgets b SET
         reserved_usd = GREATEST(0, b.reserved_usd - r.usd),
         spent_usd = b.spent_usd + $3,
         input_tokens = b.input_tokens + $4,
         output_tokens = b.output_tokens + $5,
         calls = b.calls + CASE WHEN $6 THEN 1 ELSE 0 END,
         released = b.released + CASE WHEN $6 THEN 0 ELSE 1 END,
         updated_at = now()
       FROM r WHERE b.budget_id = $1
       RETURNING b.*`,
      [this.budgetId, id, kind === "charge" ? usd : 0, kind === "charge" ? input : 0, kind === "charge" ? output : 0, kind === "charge", JSON.stringify(entry)],
    );
    if (r.rows[0]) this.snapshot = r.rows[0];
    return r.rowCount === 1;
  }

  /** This run's totals (its ledger.jsonl); the fleet's are in `summary()`. */
  totals(): LedgerTotals {
    return this.local.totals();
  }

  chainUsage(chainId: string): { usd: number; input: number; output: number } {
    return this.local.chainUsage(chainId);
  }

  async reserve(request: ReserveRequest): Promise<Reservation> {
    const plan = this.local.plan(request);
    for (;;) {
      if (request.signal?.aborted) throw request.signal.reason ?? new Error("aborted");
      const id = `${this.owner.slice(0, 8)}-r${++this.seq}`;
      const r = await this.pool.query<BudgetRow>(
        `WITH b AS (
           UPDATE rankchain_budgets SET reserved_usd = reserved_usd + $3, updated_at = now()
           WHERE budget_id = $1 AND (cap_usd IS NULL OR spent_usd + reserved_usd + $3 <= cap_usd + 1e-12)
           RETURNING *),
         i AS (
           INSERT INTO rankchain_reservations (budget_id, id, owner, usd, stage, model, chain_id, input_tokens, max_output_tokens, lease_until, call_key)
           SELECT $1, $2, $4, $3, $5, $6, $7, $8, $9, now() + make_interval(secs => $10), $11 FROM b)
         SELECT * FROM b`,
        [this.budgetId, id, plan.usd, this.owner, request.stage, request.model, request.chainId ?? null, plan.inputTokens, plan.maxOutputTokens, this.leaseMs / 1000, request.key ?? null],
      );
      if (r.rows[0]) {
        this.snapshot = r.rows[0];
        const reservation = reservationOf(id, request, plan);
        this.open.set(id, reservation);
        this.localOf.set(
          id,
          await this.local.reserve({ ...request, wait: false, signal: undefined }),
        );
        return reservation;
      }
      await this.refresh();
      const s = this.snapshot!;
      // Calls in flight anywhere in the fleet may settle below their worst case: wait for ours, or
      // poll while others hold reservations (expired leases are settled meanwhile).
      if (request.wait !== false && this.open.size > 0) {
        await this.waitForSettle(request.signal);
        continue;
      }
      if (request.wait !== false && s.reserved_usd > 1e-12) {
        await new Promise((res) => setTimeout(res, 100));
        await this.settleExpired(false);
        continue;
      }
      throw new BudgetExceededError(
        `shared budget "${this.budgetId}" cap $${s.cap_usd?.toFixed(6)} reached: spent $${s.spent_usd.toFixed(6)}, reserved $${s.reserved_usd.toFixed(6)}, next call needs up to $${plan.usd.toFixed(6)}`,
        s.cap_usd ?? Infinity,
        s.spent_usd,
        plan.usd,
      );
    }
  }

  async charge(reservation: Reservation, c: ChargeInput): Promise<void> {
    if (!this.open.delete(reservation.id)) throw new Error(`reservation ${reservation.id} is already settled`);
    const usd = c.usd ?? (reservation.price ? costUsd(reservation.price, c.inputTokens, c.outputTokens, c.cachedInputTokens ?? 0) : 0);
    const entry = chargeEntryOf(reservation, usd, c, new Date().toISOString());
    await this.settleRow(reservation.id, usd, c.inputTokens, c.outputTokens, "charge", entry);
    const local = this.localOf.get(reservation.id);
    this.localOf.delete(reservation.id);
    if (local) await this.local.charge(local, { ...c, usd });
    this.wake();
  }

  chargeWorstCase(reservation: Reservation, note: string): Promise<void> {
    return this.charge(reservation, { usd: reservation.usd, inputTokens: reservation.inputTokens, outputTokens: reservation.maxOutputTokens, estimated: true, note });
  }

  async release(reservation: Reservation, reason: string): Promise<void> {
    if (!this.open.delete(reservation.id)) throw new Error(`reservation ${reservation.id} is already settled`);
    const entry = { type: "release", id: reservation.id, ts: new Date().toISOString(), usd: 0, stage: reservation.stage, model: reservation.model, reason };
    await this.settleRow(reservation.id, 0, 0, 0, "release", entry);
    const local = this.localOf.get(reservation.id);
    this.localOf.delete(reservation.id);
    if (local) await this.local.release(local, reason);
    this.wake();
  }

  waitForSettle(signal?: AbortSignal): Promise<void> {
    return waitForSettleOf(this.open.size, this.settleWaiters, signal);
  }

  private wake(): void {
    const w = this.settleWaiters;
    this.settleWaiters = [];
    for (const f of w) f();
  }

  async summary(): Promise<BudgetSummary> {
    await this.refresh();
    const s = this.snapshot!;
    const r = await this.pool.query<{ open: string; expired: string }>(
      `SELECT count(*) AS open, count(*) FILTER (WHERE lease_until < now()) AS expired FROM rankchain_reservations WHERE budget_id = $1`,
      [this.budgetId],
    );
    return {
      budgetId: this.budgetId,
      capUsd: s.cap_usd ?? undefined,
      spentUsd: s.spent_usd,
      reservedUsd: s.reserved_usd,
      inputTokens: Number(s.input_tokens),
      outputTokens: Number(s.output_tokens),
      calls: Number(s.calls),
      released: Number(s.released),
      open: Number(r.rows[0]!.open),
      expired: Number(r.rows[0]!.expired),
    };
  }

  async close(): Promise<void> {
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.wake();
    await this.local.close();
    await this.pool.end();
  }
}

/** The URL without its password, for messages. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    return u.toString();
  } catch {
    return "postgres://…";
  }
}

export type { ModelPrice };
