// Outcomes in Postgres (table routing_outcomes, created by STORE's migrations) and their join
// to the decision log (routing_decisions). Idempotent: an outcome is keyed by (request_id,
// candidate_id) and the FIRST one stored wins; a redelivered or repeated outcome inserts nothing
// and is reported as a duplicate, so the live monitor never counts it twice either.
import type pg from 'pg';
import type { DecisionReason, Outcome } from '../wire/types.js';
import { quoteSchema, type Queryable } from '../store/pg.js';

/** The decision fields the monitor and the training-set builder need. */
export interface JoinedDecision {
  model_version: string;
  confidence: number;
  use_lightweight: boolean;
  reason: DecisionReason;
}

export interface StoredOutcome extends Outcome {
  received_at: Date;
  /** The decision it reports on, when that decision is in the log. */
  decision: JoinedDecision | undefined;
}

export interface InsertResult {
  /** Outcomes that were new, each with its decision when the log already holds it. */
  inserted: StoredOutcome[];
  /** Outcomes whose key was already stored (or repeated within the batch). */
  duplicates: number;
}

interface Row {
  request_id: string;
  candidate_id: string;
  ok: boolean;
  quality: number | null;
  served_by: 'lightweight' | 'heavyweight' | null;
  received_at: Date;
  model_version: string | null;
  confidence: number | null;
  use_lightweight: boolean | null;
  reason: DecisionReason | null;
}

function toStored(r: Row): StoredOutcome {
  const o: StoredOutcome = {
    request_id: r.request_id,
    candidate_id: r.candidate_id,
    ok: r.ok,
    received_at: r.received_at,
    decision:
      r.model_version === null
        ? undefined
        : { model_version: r.model_version, confidence: Number(r.confidence), use_lightweight: Boolean(r.use_lightweight), reason: r.reason! },
  };
  if (r.quality !== null) o.quality = r.quality;
  if (r.served_by !== null) o.served_by = r.served_by;
  return o;
}

export class OutcomeStore {
  readonly #db: Queryable;
  readonly #outcomes: string;
  readonly #decisions: string;

  constructor(db: Queryable | pg.Pool, readonly schema = 'public') {
    this.#db = db;
    const q = quoteSchema(schema);
    this.#outcomes = `${q}.routing_outcomes`;
    this.#decisions = `${q}.routing_decisions`;
  }

  /**
   * Stores a batch of validated outcomes in ONE statement and returns the new ones joined to
   * their decisions. Throws the pg error on failure (nothing of the batch is stored then: one
   * statement is atomic), so the caller can retry the same batch safely.
   */
  async insert(outcomes: readonly Outcome[]): Promise<InsertResult> {
    if (outcomes.length === 0) return { inserted: [], duplicates: 0 };
    const n = outcomes.length;
    const rid = new Array<string>(n);
    const cid = new Array<string>(n);
    const ok = new Array<boolean>(n);
    const quality = new Array<number | null>(n);
    const servedBy = new Array<string | null>(n);
    for (let i = 0; i < n; i++) {
      const o = outcomes[i]!;
      rid[i] = o.request_id;
      cid[i] = o.candidate_id;
      ok[i] = o.ok;
      quality[i] = o.quality ?? null;
      servedBy[i] = o.served_by ?? null;
    }
    // WITH ORDINALITY + DISTINCT ON keeps the first of repeated keys within the batch (the
    // same rule as across batches: first stored wins), whatever order Postgres would pick.
    const res = await this.#db.query<Row>(
      `WITH input AS (
         SELECT DISTINCT ON (request_id, candidate_id) request_id, candidate_id, ok, quality, served_by
         FROM unnest($1::text[], $2::text[], $3::bool[], $4::real[], $5::text[]) WITH ORDINALITY
           AS u(request_id, candidate_id, ok, quality, served_by, ord)
         ORDER BY request_id, candidate_id, ord
       ), ins AS (
         INSERT INTO ${this.#outcomes} (request_id, candidate_id, ok, quality, served_by)
         SELECT request_id, candidate_id, ok, quality, served_by FROM input
         ON CONFLICT (request_id, candidate_id) DO NOTHING
         RETURNING request_id, candidate_id, ok, quality, served_by, received_at
       )
       SELECT ins.*, d.model_version, d.confidence, d.use_lightweight, d.reason
       FROM ins LEFT JOIN ${this.#decisions} d USING (request_id, candidate_id)`,
      [rid, cid, ok, quality, servedBy],
    );
    return { inserted: res.rows.map(toStored), duplicates: n - res.rows.length };
  }

  /** The decisions of the given keys that the log holds now (for outcomes that came early). */
  async decisionsFor(keys: readonly { request_id: string; candidate_id: string }[]): Promise<Map<string, JoinedDecision>> {
    const out = new Map<string, JoinedDecision>();
    if (keys.length === 0) return out;
    const res = await this.#db.query<{ request_id: string; candidate_id: string } & JoinedDecision>(
      `SELECT d.request_id, d.candidate_id, d.model_version, d.confidence, d.use_lightweight, d.reason
       FROM unnest($1::text[], $2::text[]) AS k(request_id, candidate_id)
       JOIN ${this.#decisions} d USING (request_id, candidate_id)`,
      [keys.map((k) => k.request_id), keys.map((k) => k.candidate_id)],
    );
    for (const r of res.rows) {
      out.set(joinKey(r.request_id, r.candidate_id), {
        model_version: r.model_version,
        confidence: Number(r.confidence),
        use_lightweight: r.use_lightweight,
        reason: r.reason,
      });
    }
    return out;
  }
}

/** A map key for (request_id, candidate_id); NUL cannot occur in either (validated). */
export function joinKey(requestId: string, candidateId: string): string {
  return `${requestId}\u0000${candidateId}`;
}
