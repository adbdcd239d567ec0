// The control topic's records (proto/tiny_dancer/v1/fleet.proto): keys, encoding, and the
// validation every replica runs before it applies one. Pure apart from loading the schema once:
// a record from any writer — this service, an operator's kcat, a buggy script — goes through
// decodeControlRecord, and only a record that passes becomes a ControlChange.
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import { errorMessage, oneLine } from '../errors.js';
import { prepareModel, type PreparedModel } from './reload.js';
import { ControlError } from './target.js';

/** A model larger than this is refused (the record carries it inline). */
export const MAX_CONTROL_MODEL_BYTES = 4 * 1024 * 1024;

export const MODEL_KEY = 'model';
export const THRESHOLDS_KEY = 'thresholds';
export const POLICY_KEY_PREFIX = 'policy/';

export interface TenantThresholds {
  confidence: number;
  maxUncertainty: number;
}

export interface RecordMeta {
  writtenBy: string;
  writtenAt: number;
}

/** A validated record, ready to apply. */
export type ControlChange =
  | { kind: 'model'; prepared: PreparedModel; sha256: string; meta: RecordMeta }
  | { kind: 'thresholds'; thresholds: TenantThresholds; meta: RecordMeta }
  | { kind: 'policy'; tenant: string; policy: TenantThresholds; meta: RecordMeta }
  | { kind: 'policy-delete'; tenant: string };

/** Why a record was refused; `message` is one line fit for logs and the fleet view. */
export class ControlRecordError extends Error {}

interface WireRecord {
  change?: 'model' | 'thresholds' | 'policy';
  model?: { version: string; sha256: string; safetensors: Uint8Array; source: string };
  thresholds?: { confidence: number; max_uncertainty: number };
  policy?: { tenant: string; confidence: number; max_uncertainty: number };
  written_by: string;
  written_at_unix_ms: number;
}

let recordType: protobuf.Type | undefined;

function controlRecordType(): protobuf.Type {
  if (!recordType) {
    const file = fileURLToPath(new URL('../../proto/tiny_dancer/v1/fleet.proto', import.meta.url));
    // keepCase: the field names of the .proto, as everywhere else in the service.
    recordType = new protobuf.Root().loadSync(file, { keepCase: true }).lookupType('tiny_dancer.v1.ControlRecord');
  }
  return recordType;
}

export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

export function policyKey(tenant: string): string {
  return `${POLICY_KEY_PREFIX}${tenant}`;
}

/** Tenant names: what a metadata value can carry, printable, bounded. */
export function checkTenant(tenant: string): void {
  if (tenant.length === 0 || tenant.length > 256 || !/^[\x21-\x7e]+$/.test(tenant)) {
    throw new ControlError('invalid_argument', `tenant must be 1 to 256 printable ASCII characters without spaces, got '${oneLine(tenant, 80)}'`);
  }
}

function checkUnit(name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > 1) throw new ControlRecordError(`${name} must be in [0, 1], got ${String(v)}`);
  return v;
}

// ---- writing -----------------------------------------------------------------------------------

export function encodeModelRecord(prepared: PreparedModel, meta: RecordMeta): Buffer {
  if (prepared.bytes.byteLength > MAX_CONTROL_MODEL_BYTES) {
    throw new ControlError(
      'invalid_argument',
      `model ${prepared.model.version} is ${prepared.bytes.byteLength} bytes; the fleet's control topic carries models of at most ${MAX_CONTROL_MODEL_BYTES} bytes (4 MiB)`,
    );
  }
  return encode({
    model: { version: prepared.model.version, sha256: sha256Hex(prepared.bytes), safetensors: prepared.bytes, source: prepared.source },
    written_by: meta.writtenBy,
    written_at_unix_ms: meta.writtenAt,
  });
}

export function encodeThresholdsRecord(t: TenantThresholds, meta: RecordMeta): Buffer {
  return encode({ thresholds: { confidence: t.confidence, max_uncertainty: t.maxUncertainty }, written_by: meta.writtenBy, written_at_unix_ms: meta.writtenAt });
}

export function encodePolicyRecord(tenant: string, p: TenantThresholds, meta: RecordMeta): Buffer {
  return encode({ policy: { tenant, confidence: p.confidence, max_uncertainty: p.maxUncertainty }, written_by: meta.writtenBy, written_at_unix_ms: meta.writtenAt });
}

function encode(fields: Partial<WireRecord>): Buffer {
  const t = controlRecordType();
  return Buffer.from(t.encode(t.fromObject(fields)).finish());
}

// ---- reading -----------------------------------------------------------------------------------

/**
 * Decodes and validates one record of the control topic. Throws ControlRecordError (one line)
 * for anything a replica must not apply: an unknown key, a payload that does not match its key,
 * a hash that does not match the bytes, a model that does not parse or does not fit this
 * router's features, a value out of range.
 */
export async function decodeControlRecord(key: string, value: Uint8Array | null): Promise<ControlChange> {
  if (key.startsWith(POLICY_KEY_PREFIX) && value === null) {
    return { kind: 'policy-delete', tenant: key.slice(POLICY_KEY_PREFIX.length) };
  }
  if (value === null) throw new ControlRecordError(`a tombstone for '${oneLine(key, 80)}' cannot be applied (only tenant policies can be deleted)`);
  let rec: WireRecord;
  try {
    const t = controlRecordType();
    rec = t.toObject(t.decode(value), { longs: Number, defaults: true, oneofs: true, bytes: Buffer }) as WireRecord;
  } catch (err) {
    throw new ControlRecordError(`'${oneLine(key, 80)}': not a tiny_dancer.v1.ControlRecord: ${oneLine(errorMessage(err), 200)}`);
  }
  const meta: RecordMeta = { writtenBy: rec.written_by, writtenAt: rec.written_at_unix_ms };
  if (key === MODEL_KEY) {
    const m = rec.model;
    if (rec.change !== 'model' || !m) throw new ControlRecordError(`'model' record without a model`);
    if (m.safetensors.byteLength > MAX_CONTROL_MODEL_BYTES) throw new ControlRecordError(`model ${m.version}: ${m.safetensors.byteLength} bytes, over the ${MAX_CONTROL_MODEL_BYTES}-byte limit`);
    const actual = sha256Hex(m.safetensors);
    if (actual !== m.sha256.toLowerCase()) throw new ControlRecordError(`model ${m.version}: SHA-256 of the bytes is ${actual}, the record says '${oneLine(m.sha256, 80)}'`);
    let prepared: PreparedModel;
    try {
      prepared = await prepareModel({ bytes: new Uint8Array(m.safetensors) });
    } catch (err) {
      throw new ControlRecordError(`model ${m.version}: ${oneLine(errorMessage(err), 300)}`);
    }
    if (prepared.model.version !== m.version) throw new ControlRecordError(`the record says model '${m.version}', its bytes are model '${prepared.model.version}'`);
    return { kind: 'model', prepared: { ...prepared, source: m.source || 'control-topic' }, sha256: actual, meta };
  }
  if (key === THRESHOLDS_KEY) {
    const t = rec.thresholds;
    if (rec.change !== 'thresholds' || !t) throw new ControlRecordError(`'thresholds' record without thresholds`);
    return { kind: 'thresholds', thresholds: { confidence: checkUnit('confidence', t.confidence), maxUncertainty: checkUnit('max_uncertainty', t.max_uncertainty) }, meta };
  }
  if (key.startsWith(POLICY_KEY_PREFIX)) {
    const p = rec.policy;
    const tenant = key.slice(POLICY_KEY_PREFIX.length);
    if (rec.change !== 'policy' || !p) throw new ControlRecordError(`'${oneLine(key, 80)}' record without a policy`);
    if (p.tenant !== tenant) throw new ControlRecordError(`'${oneLine(key, 80)}' carries the policy of tenant '${oneLine(p.tenant, 80)}'`);
    try {
      checkTenant(tenant);
    } catch (err) {
      throw new ControlRecordError(errorMessage(err));
    }
    return { kind: 'policy', tenant, policy: { confidence: checkUnit('confidence', p.confidence), maxUncertainty: checkUnit('max_uncertainty', p.max_uncertainty) }, meta };
  }
  throw new ControlRecordError(`unknown control key '${oneLine(key, 80)}'`);
}
