// The control topic's records: what a replica applies and what it refuses, with the reason.
import { describe, expect, it } from 'vitest';
import {
  decodeControlRecord,
  encodeModelRecord,
  encodePolicyRecord,
  encodeThresholdsRecord,
  MAX_CONTROL_MODEL_BYTES,
  ControlRecordError,
} from '../../../src/control/control-records.js';
import { DesiredState } from '../../../src/control/desired-state.js';
import type { ControlHistoryEntry } from '../../../src/store/control-history.js';
import { prepareModel } from '../../../src/control/reload.js';
import { defaultModelPath } from '../../../src/engine/model.js';

const meta = { writtenBy: 'test', writtenAt: 1_700_000_000_000 };

describe('control records', () => {
  it('round-trips a model, thresholds and a tenant policy', async () => {
    const prepared = await prepareModel({ path: defaultModelPath() });
    const m = await decodeControlRecord('model', encodeModelRecord(prepared, meta));
    expect(m.kind === 'model' && m.prepared.model.version).toBe(prepared.model.version);
    expect(m.kind === 'model' && m.meta).toEqual(meta);
    const t = await decodeControlRecord('thresholds', encodeThresholdsRecord({ confidence: 0.7, maxUncertainty: 0.2 }, meta));
    expect(t).toMatchObject({ kind: 'thresholds', thresholds: { confidence: 0.7, maxUncertainty: 0.2 } });
    const p = await decodeControlRecord('policy/acme', encodePolicyRecord('acme', { confidence: 0.9, maxUncertainty: 0.1 }, meta));
    expect(p).toMatchObject({ kind: 'policy', tenant: 'acme', policy: { confidence: 0.9, maxUncertainty: 0.1 } });
    expect(await decodeControlRecord('policy/acme', null)).toEqual({ kind: 'policy-delete', tenant: 'acme' });
  });

  it('refuses a model whose bytes do not match their hash, a broken model, bad ranges and unknown keys', async () => {
    const prepared = await prepareModel({ path: defaultModelPath() });
    const good = encodeModelRecord(prepared, meta);
    // Flip one byte inside the safetensors payload: the SHA-256 no longer matches.
    const tampered = Buffer.from(good);
    const at = tampered.indexOf(Buffer.from(prepared.bytes)) + Math.floor(prepared.bytes.byteLength / 2);
    tampered[at] = tampered[at]! ^ 0xff;
    await expect(decodeControlRecord('model', tampered)).rejects.toThrow(/SHA-256 of the bytes is/);
    const garbage = encodeModelRecord({ ...prepared, bytes: new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9]) }, meta);
    await expect(decodeControlRecord('model', garbage)).rejects.toBeInstanceOf(ControlRecordError);
    await expect(decodeControlRecord('thresholds', encodeThresholdsRecord({ confidence: 1.5, maxUncertainty: 0.2 }, meta))).rejects.toThrow(/confidence must be in \[0, 1\]/);
    await expect(decodeControlRecord('policy/other', encodePolicyRecord('acme', { confidence: 0.9, maxUncertainty: 0.1 }, meta))).rejects.toThrow(/carries the policy of tenant 'acme'/);
    await expect(decodeControlRecord('thresholds', encodeModelRecord(prepared, meta))).rejects.toThrow(/without thresholds/);
    await expect(decodeControlRecord('surprise', good)).rejects.toThrow(/unknown control key/);
    await expect(decodeControlRecord('model', Buffer.from('not protobuf at all, really'))).rejects.toBeInstanceOf(ControlRecordError);
  });

  it('refuses to write a model over 4 MiB', async () => {
    const prepared = await prepareModel({ path: defaultModelPath() });
    expect(() => encodeModelRecord({ ...prepared, bytes: new Uint8Array(MAX_CONTROL_MODEL_BYTES + 1) }, meta)).toThrow(/at most 4194304 bytes/);
  });
});

describe('DesiredState', () => {
  it('keeps its state when a record is refused, reports it, and tells a writer waiting on that offset', async () => {
    const prepared = await prepareModel({ path: defaultModelPath() });
    const applied: string[] = [];
    const state = new DesiredState();
    state.attach({
      model: async (m) => void applied.push(`model ${m.prepared.model.version}`),
      thresholds: async (t) => void applied.push(`thresholds ${t.confidence}`),
    });
    const policies: number[] = [];
    state.onPoliciesChanged((p) => policies.push(p.size));
    await state.handle('thresholds', encodeThresholdsRecord({ confidence: 0.6, maxUncertainty: 0.3 }, meta), 0);
    const waiting = state.waitFor(1, 5000);
    await state.handle('model', Buffer.from('corrupt'), 1);
    await expect(waiting).rejects.toThrow(/refused it/);
    expect(state.lastApplyError).toMatchObject({ key: 'model', offset: 1 });
    expect(state.applyErrors).toBe(1);
    expect(state.model).toBeUndefined();
    await state.handle('model', encodeModelRecord(prepared, meta), 2);
    await state.handle('policy/a', encodePolicyRecord('a', { confidence: 0.5, maxUncertainty: 0.5 }, meta), 3);
    await state.handle('policy/a', null, 4);
    await expect(state.waitFor(4, 1000)).resolves.toBeUndefined();
    expect(applied).toEqual(['thresholds 0.6', `model ${prepared.model.version}`]);
    expect(state.thresholds).toEqual({ confidence: 0.6, maxUncertainty: 0.3 });
    expect(policies).toEqual([1, 0]);
    expect(state.revision).toBe(4);
  });

  it('tells the history every record in order, applied or refused, without model bytes', async () => {
    const prepared = await prepareModel({ path: defaultModelPath() });
    const state = new DesiredState();
    const seen: ControlHistoryEntry[] = [];
    state.onProcessed((e) => seen.push(e));
    await state.handle('model', encodeModelRecord(prepared, meta), 0);
    await state.handle('model', Buffer.from('corrupt'), 1);
    await state.handle('policy/a', encodePolicyRecord('a', { confidence: 0.5, maxUncertainty: 0.25 }, meta), 2);
    await state.handle('policy/a', null, 3);
    await state.handle('what', Buffer.from('x'), 4);
    expect(seen.map((e) => [e.offset, e.kind, e.outcome])).toEqual([
      [0, 'model', 'applied'],
      [1, 'model', 'refused'],
      [2, 'policy', 'applied'],
      [3, 'policy-delete', 'applied'],
      [4, 'unknown', 'refused'],
    ]);
    expect(seen[0]).toMatchObject({ writtenBy: 'test', writtenAt: meta.writtenAt, detail: { version: prepared.model.version, sha256: expect.stringMatching(/^[0-9a-f]{64}$/) } });
    expect(JSON.stringify(seen[0]!.detail).length).toBeLessThan(200);
    expect(seen[4]!.error).toBe(state.lastApplyError!.message);
    expect(seen[1]!.error).toMatch(/./);
    expect(seen[2]!.detail).toEqual({ tenant: 'a', confidence: 0.5, max_uncertainty: 0.25 });
  });
});
