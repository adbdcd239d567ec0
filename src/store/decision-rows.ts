// Row encoding for routing_decisions (docs/contracts.md §6): a batch of DecisionRows becomes
// the bind parameters of ONE insert statement. Pure: no connection, no state.
import { RowEncodingError } from './errors.js';
import { quoteSchema } from './pg.js';

/**
 * One row of the log. A RoutingDecision (src/wire/types.ts) is a DecisionRow as it is; the
 * optional fields add what the stream knows about where and when it was decided.
 */
export interface DecisionRow {
  request_id: string;
  candidate_id: string;
  rank: number;
  confidence: number;
  uncertainty: number;
  use_lightweight: boolean;
  reason: string;
  model_version: string;
  inference_time_us: number;
  /** When the decision was made: a Date or Unix milliseconds. Default: the time of append(). */
  decided_at?: Date | number;
  /** The engine's input vector for this candidate, kept for retraining. */
  features?: ArrayLike<number> | null;
  /** Candidate metadata; stored as jsonb when non-empty. */
  metadata?: Record<string, string> | null;
  /** The Kafka record the request came from. */
  source_topic?: string | null;
  source_partition?: number | null;
  source_offset?: string | number | bigint | null;
  /** The policy that decided it ('global', 'tenant:<name>'); NULL when not given. */
  policy?: string | undefined;
  /** The request's W3C trace id (32 hex digits), when it came with a trace context. */
  trace_id?: string | null | undefined;
}

const COLUMNS = [
  'request_id',
  'candidate_id',
  'rank',
  'confidence',
  'uncertainty',
  'use_lightweight',
  'reason',
  'model_version',
  'inference_time_us',
  'decided_at',
  'features',
  'metadata',
  'source_topic',
  'source_partition',
  'source_offset',
  'policy',
  'trace_id',
] as const;

export function insertSql(schema: string): string {
  const t = `${quoteSchema(schema)}.routing_decisions`;
  // decided_at travels as Unix ms (float8). Features travel as ONE flat real[] of every row's
  // vector plus a per-row offset and length: unnest would flatten a real[][] anyway, and one
  // numeric array literal parses several times faster than a text[] of per-row literals. The
  // flat array is a bound constant, so each row's slice is cheap.
  return `INSERT INTO ${t} (${COLUMNS.join(', ')})
SELECT request_id, candidate_id, rank, confidence, uncertainty, use_lightweight, reason, model_version,
       inference_time_us, to_timestamp(decided_ms / 1000.0::float8),
       CASE WHEN f_len IS NULL THEN NULL ELSE ($11::real[])[f_off + 1 : f_off + f_len] END,
       metadata, source_topic, source_partition, source_offset, policy, trace_id
FROM unnest($1::text[], $2::text[], $3::int4[], $4::float4[], $5::float4[], $6::bool[], $7::text[], $8::text[],
            $9::float8[], $10::float8[], $12::jsonb[], $13::text[], $14::int4[], $15::int8[], $16::int4[], $17::int4[], $18::text[],
            $19::text[])
  AS u(request_id, candidate_id, rank, confidence, uncertainty, use_lightweight, reason, model_version,
       inference_time_us, decided_ms, metadata, source_topic, source_partition, source_offset, f_off, f_len, policy, trace_id)
ON CONFLICT (request_id, candidate_id) DO NOTHING`;
}

/** A float as Postgres reads it, including the non-finite values real accepts. */
function floatText(x: number): string {
  if (Number.isNaN(x)) return 'NaN';
  if (x === Infinity) return 'Infinity';
  if (x === -Infinity) return '-Infinity';
  return String(x);
}

/**
 * A value for a real (float4) column: 9 significant digits carry every float32 exactly, and
 * toPrecision(9) is cheaper than String() for them (which writes a float32 widened to a double
 * with up to 17 digits); the float texts are a visible share of the consuming thread.
 */
function float4Text(x: number): string {
  return Number.isFinite(x) ? x.toPrecision(9) : floatText(x);
}

function float4(v: unknown): string {
  return typeof v === 'number' ? float4Text(v) : 'NULL';
}

function metadataJson(m: Record<string, string> | null | undefined): string | null {
  if (m == null) return null;
  if (typeof m !== 'object') throw new RowEncodingError('metadata is not an object');
  for (const _ in m) {
    try {
      return JSON.stringify(m);
    } catch (err) {
      throw new RowEncodingError(`metadata cannot be encoded as JSON: ${(err as Error).message}`);
    }
  }
  return null; // empty: not worth a jsonb
}

function decidedMs(v: Date | number | undefined, fallback: number): number {
  if (v === undefined || v === null) return fallback;
  return v instanceof Date ? v.getTime() : Number(v);
}

function offsetText(v: string | number | bigint | null | undefined): string | null {
  if (v === undefined || v === null) return null;
  return String(v);
}

/**
 * An element of a Postgres array literal for a text-like value: always double-quoted (so
 * "NULL", empty strings, commas, braces and spaces need nothing more), with the two characters
 * that are special inside quotes, `"` and `\`, backslash-escaped.
 */
function quoted(s: string): string {
  return NEEDS_ESCAPE.test(s) ? `"${s.replace(ESCAPED, '\\$&')}"` : `"${s}"`;
}
const NEEDS_ESCAPE = /["\\]/;
const ESCAPED = /["\\]/g;

/**
 * The 19 bind parameters of a batch ($1..$19 of the insert), each an array literal in Postgres's
 * text form. Throws RowEncodingError for a row JavaScript cannot encode (the batch is then split
 * to find it, like a row Postgres refuses).
 *
 * The literals are built here, one string per column, instead of handing pg JavaScript arrays:
 * pg's generic conversion (prepareValue → arrayString → escapeElement per element) costs far
 * more per element on the service's main thread. A value of the wrong type becomes NULL, so
 * Postgres refuses the row (NOT NULL), not the whole batch.
 */
export function encodeBatch(rows: readonly DecisionRow[], times: readonly number[]): string[] {
  const n = rows.length;
  const cols = new Array<string>(19).fill('');
  // $11: every row's features, flattened into one numeric literal ($16/$17: offset and length).
  let flat = '';
  let flatLen = 0;
  for (let i = 0; i < n; i++) {
    const r = rows[i]!;
    const sep = i === 0 ? '' : ',';
    cols[0] += sep + text(r.request_id);
    cols[1] += sep + text(r.candidate_id);
    cols[2] += sep + int(r.rank);
    cols[3] += sep + float4(r.confidence);
    cols[4] += sep + float4(r.uncertainty);
    cols[5] += sep + (typeof r.use_lightweight === 'boolean' ? (r.use_lightweight ? 't' : 'f') : 'NULL');
    cols[6] += sep + text(r.reason);
    cols[7] += sep + text(r.model_version);
    cols[8] += sep + float(r.inference_time_us);
    cols[9] += sep + float(decidedMs(r.decided_at, times[i] ?? Date.now()));
    const meta = metadataJson(r.metadata);
    cols[11] += sep + (meta === null ? 'NULL' : quoted(meta));
    cols[12] += sep + (r.source_topic == null ? 'NULL' : text(r.source_topic));
    cols[13] += sep + (r.source_partition == null ? 'NULL' : int(r.source_partition));
    const off = offsetText(r.source_offset);
    cols[14] += sep + (off === null ? 'NULL' : quoted(off));
    cols[17] += sep + (r.policy == null ? 'NULL' : text(r.policy));
    cols[18] += sep + (r.trace_id == null ? 'NULL' : text(r.trace_id));
    const f = r.features;
    if (f == null) {
      cols[15] += `${sep}NULL`;
      cols[16] += `${sep}NULL`;
    } else {
      const len = f.length;
      if (typeof len !== 'number' || !Number.isInteger(len) || len < 0) throw new RowEncodingError('features is not an array of numbers');
      cols[15] += sep + String(flatLen);
      cols[16] += sep + String(len);
      for (let j = 0; j < len; j++) {
        if (flatLen > 0) flat += ',';
        flat += float4Text(Number(f[j]));
        flatLen++;
      }
    }
  }
  for (let c = 0; c < 19; c++) cols[c] = `{${c === 10 ? flat : cols[c]}}`;
  return cols;
}

function text(v: unknown): string {
  return typeof v === 'string' ? quoted(v) : 'NULL';
}

function int(v: unknown): string {
  return typeof v === 'number' && Number.isFinite(v) ? String(v) : 'NULL';
}

function float(v: unknown): string {
  return typeof v === 'number' ? floatText(v) : 'NULL';
}
