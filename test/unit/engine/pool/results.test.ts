// decodeResults on hand-built result arrays (the layout of messages.ts): decisions rebuilt with
// the ids and metadata kept on this thread, tenant policies, features, worker-decoded requests,
// error classes rebuilt, and a result for the wrong task never given to another.
import { describe, expect, it } from 'vitest';
import { InvalidInputError, ModelError, TinyDancerError } from '../../../../src/errors.js';
import { FEATURE_COUNT } from '../../../../src/engine/features.js';
import { decodeResults, rebuildError, type PendingTask } from '../../../../src/engine/pool/results.js';
import { EMPTY_METADATA } from '../../../../src/engine/validate.js';
import { DecodeError } from '../../../../src/wire/errors.js';
import { DECISION_STRIDE, RESULT_HEADER, TaskStatus, type RouteResults } from '../../../../src/engine/pool/messages.js';

/** [index, confidence, uncertainty, code, time] per decision. */
type Dec = [number, number, number, number, number];

function taskRows(id: number, status: number, decisions: Dec[], policy = -1, features?: number[]): number[] {
  const head = [id, status, decisions.length, 11, 7, decisions.length, policy];
  return [...head, ...decisions.flat(), ...(features ?? [])];
}

function results(values: number[], extra: Partial<RouteResults> = {}): RouteResults {
  const data = Float64Array.from(values);
  return {
    type: 'results', batchId: 1, modelVersion: 'v9', arena: data.buffer, resultsLength: data.length,
    data: null, errors: null, decoded: null, policies: null, ...extra,
  };
}

const task = (id: number, ids: string[], candidateMetadata: Record<string, string>[] | null = null): PendingTask => ({
  id, requestId: `req-${id}`, ids, candidateMetadata,
});

describe('decodeResults', () => {
  it('builds decisions in rank order with this thread\'s ids and metadata', () => {
    const meta = [{ tier: 'a' }, { tier: 'b' }];
    const msg = results(taskRows(5, TaskStatus.Ok, [[1, 0.9, 0.1, 1, 3], [0, 0.2, 0.4, 2 << 1, 4]]));
    const [o] = decodeResults(msg, [task(5, ['c0', 'c1'], meta)], false);
    expect(o!.ok).toBe(true);
    if (!o!.ok) return;
    expect(o!.response).toEqual({
      decisions: [
        { request_id: 'req-5', candidate_id: 'c1', confidence: 0.9, uncertainty: 0.1, use_lightweight: true, rank: 0, model_version: 'v9', reason: 'model', metadata: meta[1], inference_time_us: 3, candidate_count: 2, lightweight_count: 1, policy: 'global' },
        { request_id: 'req-5', candidate_id: 'c0', confidence: 0.2, uncertainty: 0.4, use_lightweight: false, rank: 1, model_version: 'v9', reason: 'uncertain', metadata: meta[0], inference_time_us: 4, candidate_count: 2, lightweight_count: 1, policy: 'global' },
      ],
      inference_time_us: 11,
      feature_time_us: 7,
      candidates_processed: 2,
      policy: 'global',
    });
    expect(o!.response.features).toBeUndefined();
  });

  it('shares EMPTY_METADATA when the task kept none, and labels tenant policies', () => {
    const msg = results(taskRows(1, TaskStatus.Ok, [[0, 0.5, 0, 3 << 1, 1]], 0), { policies: ['tenant:acme'] });
    const [o] = decodeResults(msg, [task(1, ['x'])], false);
    if (!o!.ok) throw new Error('expected ok');
    expect(o!.response.decisions[0]!.metadata).toBe(EMPTY_METADATA);
    expect(o!.response.decisions[0]!.reason).toBe('below_threshold');
    expect(o!.response.policy).toBe('tenant:acme');
  });

  it('walks several tasks, failed ones included, with feature vectors after the decisions', () => {
    const f = (k: number) => Array.from({ length: FEATURE_COUNT }, (_, j) => k + j / 10);
    const values = [
      ...taskRows(1, TaskStatus.Ok, [[0, 0.5, 0, 1, 1], [1, 0.4, 0, 0, 1]], -1, [...f(1), ...f(2)]),
      ...taskRows(2, TaskStatus.Failed, []),
      ...taskRows(3, TaskStatus.Ok, [[0, 0.7, 0, 1, 1]], -1, f(3)),
    ];
    const msg = results(values, { errors: [{ taskId: 2, name: 'ModelError', message: 'bad', retriable: false }] });
    const out = decodeResults(msg, [task(1, ['a', 'b']), task(2, []), task(3, ['c'])], true);
    expect(out.map((o) => o.ok)).toEqual([true, false, true]);
    if (!out[0]!.ok || out[1]!.ok || !out[2]!.ok) throw new Error('unexpected outcomes');
    expect(Array.from(out[0]!.response.features!)).toEqual(Array.from(Float32Array.from([...f(1), ...f(2)])));
    expect(out[1]!.error).toBeInstanceOf(ModelError);
    expect(out[2]!.response.decisions[0]!.candidate_id).toBe('c');
    expect(Array.from(out[2]!.response.features!)).toEqual(Array.from(Float32Array.from(f(3))));
  });

  it('takes ids and metadata from the worker for requests it decoded', () => {
    const msg = results(taskRows(4, TaskStatus.Ok, [[0, 0.5, 0, 1, 1]]), {
      decoded: [{ taskId: 4, request_id: 'wire-req', ids: ['w0'], candidateMetadata: [{ k: 'v' }], topK: 3 }],
    });
    const [o] = decodeResults(msg, [task(4, [])], false);
    if (!o!.ok) throw new Error('expected ok');
    expect(o!.response.decisions[0]).toMatchObject({ request_id: 'wire-req', candidate_id: 'w0', metadata: { k: 'v' } });
    expect(o!.response.top_k).toBe(3);
  });

  it('reads results from `data` when they did not fit in the arena', () => {
    const data = Float64Array.from(taskRows(8, TaskStatus.Ok, [[0, 0.5, 0, 1, 1]]));
    const msg = results([], { data, resultsLength: 0 });
    const [o] = decodeResults(msg, [task(8, ['z'])], false);
    expect(o!.ok).toBe(true);
  });

  it('never answers a task with another task\'s result', () => {
    const msg = results(taskRows(9, TaskStatus.Ok, [[0, 0.5, 0, 1, 1]]));
    const [o] = decodeResults(msg, [task(8, ['z'])], false);
    expect(o!.ok).toBe(false);
    if (o!.ok) return;
    expect(o!.error).toBeInstanceOf(TinyDancerError);
    expect(o!.error.message).toMatch(/protocol error: result for task 9 where 8 was expected/);
  });

  it('keeps the result layout stride in step with messages.ts', () => {
    expect(RESULT_HEADER).toBe(7);
    expect(DECISION_STRIDE).toBe(5);
  });
});

describe('rebuildError', () => {
  it('rebuilds the worker\'s error classes', () => {
    const d = rebuildError({ taskId: 1, name: 'DecodeError', kind: 'json', message: 'bad json', retriable: false });
    expect(d).toBeInstanceOf(DecodeError);
    expect((d as DecodeError).kind).toBe('json');
    expect(rebuildError({ taskId: 1, name: 'InvalidInputError', message: 'x', retriable: false })).toBeInstanceOf(InvalidInputError);
    expect(rebuildError({ taskId: 1, name: 'DecodeError', message: 'x', retriable: false })).toBeInstanceOf(InvalidInputError);
    expect(rebuildError({ taskId: 1, name: 'ModelError', message: 'x', retriable: false })).toBeInstanceOf(ModelError);
    const other = rebuildError({ taskId: 1, name: 'RangeError', message: 'boom', retriable: true });
    expect(other).toBeInstanceOf(TinyDancerError);
    expect((other as TinyDancerError).retriable).toBe(true);
    expect(rebuildError(undefined).message).toMatch(/without an error report/);
  });
});
