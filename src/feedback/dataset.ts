// The retraining set: logged decisions that have outcomes, in a time window, each turned into
// (feature vector, label) by the one label definition of ./label.ts, split by recency into a
// training part and a held-out part made of the MOST RECENT outcomes (the traffic the next model
// will meet). Splitting is by request, so the candidates of one request never straddle the line.
import type pg from 'pg';
import { FEATURE_COUNT } from '../engine/features.js';
import { InvalidInputError } from '../errors.js';
import { quoteSchema } from '../store/pg.js';
import { DEFAULT_LABEL_OPTIONS, outcomeLabel, type LabelOptions } from './label.js';

export interface FeedbackExample {
  request_id: string;
  candidate_id: string;
  features: Float32Array;
  label: 0 | 1;
  /** The confidence logged with the decision, and the version that produced it. */
  confidence: number;
  model_version: string;
  received_at: Date;
}

export interface FeedbackSet {
  /** Examples, oldest outcome first. */
  examples: FeedbackExample[];
  /** Joined outcomes considered (before dropping unlabelled ones). */
  joined: number;
  /** Why joined outcomes gave no example. */
  skipped: { no_label: number; no_features: number; bad_features: number };
  from: Date;
  to: Date;
}

export interface LoadOptions {
  schema?: string;
  /** Outcomes received in [to − windowMs, to). */
  windowMs: number;
  to?: Date;
  label?: LabelOptions;
  /** Feature vector length the trained model will consume. */
  featureCount?: number;
  /** Bound on rows read (newest kept). Default 1 000 000. */
  maxRows?: number;
}

interface Row {
  request_id: string;
  candidate_id: string;
  ok: boolean;
  quality: number | null;
  served_by: 'lightweight' | 'heavyweight' | null;
  received_at: Date;
  features: number[] | null;
  confidence: number;
  use_lightweight: boolean;
  model_version: string;
}

export async function loadFeedbackSet(pool: Pick<pg.Pool, 'query'>, opts: LoadOptions): Promise<FeedbackSet> {
  const q = quoteSchema(opts.schema ?? 'public');
  const to = opts.to ?? new Date();
  const from = new Date(to.getTime() - opts.windowMs);
  const D = opts.featureCount ?? FEATURE_COUNT;
  const label = opts.label ?? DEFAULT_LABEL_OPTIONS;
  // Newest first with a LIMIT, so a huge window keeps the most recent rows; reversed below.
  const res = await pool.query<Row>(
    `SELECT o.request_id, o.candidate_id, o.ok, o.quality, o.served_by, o.received_at,
            d.features, d.confidence, d.use_lightweight, d.model_version
     FROM ${q}.routing_outcomes o
     JOIN ${q}.routing_decisions d USING (request_id, candidate_id)
     WHERE o.received_at >= $1 AND o.received_at < $2
     ORDER BY o.received_at DESC, o.request_id DESC, o.candidate_id DESC
     LIMIT $3`,
    [from, to, opts.maxRows ?? 1_000_000],
  );
  const skipped = { no_label: 0, no_features: 0, bad_features: 0 };
  const examples: FeedbackExample[] = [];
  for (let i = res.rows.length - 1; i >= 0; i--) {
    const r = res.rows[i]!;
    const lab = outcomeLabel({ ok: r.ok, quality: r.quality ?? undefined, served_by: r.served_by ?? undefined }, r.use_lightweight, label);
    if (!lab.usable) {
      skipped.no_label++;
      continue;
    }
    if (r.features === null) {
      skipped.no_features++;
      continue;
    }
    if (r.features.length !== D || !r.features.every((x) => Number.isFinite(x))) {
      skipped.bad_features++;
      continue;
    }
    examples.push({
      request_id: r.request_id,
      candidate_id: r.candidate_id,
      features: Float32Array.from(r.features),
      label: lab.label,
      confidence: Number(r.confidence),
      model_version: r.model_version,
      received_at: r.received_at,
    });
  }
  return { examples, joined: res.rows.length, skipped, from, to };
}

export interface RecencySplit {
  train: FeedbackExample[];
  holdout: FeedbackExample[];
}

/**
 * Splits by request: requests ordered by their latest outcome, the newest `holdout` share of
 * them (at least one) held out. Throws InvalidInputError when either side would be empty.
 */
export function splitByRecency(examples: readonly FeedbackExample[], holdout: number): RecencySplit {
  if (!(holdout > 0 && holdout < 1)) throw new InvalidInputError(`holdout must be in (0, 1), got ${holdout}`);
  const latest = new Map<string, number>();
  for (const e of examples) {
    const t = e.received_at.getTime();
    const prev = latest.get(e.request_id);
    if (prev === undefined || t > prev) latest.set(e.request_id, t);
  }
  const requests = [...latest.entries()].sort((a, b) => a[1] - b[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const nHold = Math.max(1, Math.round(requests.length * holdout));
  if (requests.length - nHold < 1) throw new InvalidInputError(`too few requests (${requests.length}) to hold out ${holdout} of them and still train`);
  const held = new Set(requests.slice(requests.length - nHold).map(([id]) => id));
  const train: FeedbackExample[] = [];
  const hold: FeedbackExample[] = [];
  for (const e of examples) (held.has(e.request_id) ? hold : train).push(e);
  return { train, holdout: hold };
}

/** Packs examples as n rows of D features (row-major) for the engine's scoreBatch. */
export function packFeatures(examples: readonly FeedbackExample[], D = FEATURE_COUNT): Float32Array {
  const out = new Float32Array(examples.length * D);
  examples.forEach((e, i) => out.set(e.features, i * D));
  return out;
}
