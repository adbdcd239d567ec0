// `tiny-dancer triage` end to end on files, through the real worker pool and the default model.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { main } from '../../../src/cli/index.js';
import { Router } from '../../../src/engine/router.js';
import type { RoutingRequest } from '../../../src/engine/types.js';

const dir = mkdtempSync(join(tmpdir(), 'td-triage-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function rng(seed: number) {
  let s = seed >>> 0;
  return () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32);
}

function makeRequest(i: number, n: number, dim: number, rand: () => number): RoutingRequest {
  const now = Math.floor(Date.now() / 1000);
  return {
    request_id: `req-${i}`,
    query_embedding: Array.from({ length: dim }, () => rand() - 0.5),
    metadata: { topic: i % 2 ? 'a' : 'b' },
    candidates: Array.from({ length: n }, (_, j) => ({
      id: `c${j}`,
      embedding: Array.from({ length: dim }, () => rand() - 0.5),
      created_at: now - Math.floor(rand() * 86400 * 30),
      access_count: Math.floor(rand() * 100),
      success_rate: rand(),
      metadata: { topic: j % 2 ? 'a' : 'b' },
    })),
  };
}

describe('tiny-dancer triage', () => {
  it('routes every good line in order, top-k, and sends bad lines to the rejects file', async () => {
    const rand = rng(7);
    const requests = Array.from({ length: 40 }, (_, i) => makeRequest(i, 12, 16, rand));
    const lines = requests.map((r) => JSON.stringify(r));
    lines[3] = '{"request_id": "broken", "query_embedding": [1, 2], "candidates": []}'; // no candidates
    lines[20] = 'not json at all';
    const input = join(dir, 'in.jsonl');
    const output = join(dir, 'out.jsonl');
    writeFileSync(input, `${lines.join('\n')}\n`);
    vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    const code = await main(['triage', '--in', input, '--out', output, '--top-k', '5', '--workers', '2', '--quiet']);
    vi.restoreAllMocks();
    expect(code).toBe(2); // rejects happened

    const out = readFileSync(output, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const good = requests.filter((_, i) => i !== 3 && i !== 20);
    expect(out.map((o) => o.request_id)).toEqual(good.map((r) => r.request_id));
    const router = new Router({ now: () => Date.now() / 1000 });
    for (let k = 0; k < good.length; k++) {
      const expected = router.route(good[k]!).decisions.slice(0, 5);
      expect(out[k].decisions).toHaveLength(5);
      expect(out[k].decisions.map((d: { candidate_id: string }) => d.candidate_id)).toEqual(expected.map((d) => d.candidate_id));
      out[k].decisions.forEach((d: { confidence: number }, j: number) => expect(d.confidence).toBeCloseTo(expected[j]!.confidence, 5));
    }
    const rejects = readFileSync(`${output}.rejects.jsonl`, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(rejects.map((r) => r.line)).toEqual([4, 21]);
    expect(rejects[0].reason).toMatch(/candidates/);
  });

  it('exits 2 with one line for a missing input file', async () => {
    const err: string[] = [];
    vi.spyOn(process.stderr, 'write').mockImplementation((c) => (err.push(String(c)), true));
    const code = await main(['triage', '--in', join(dir, 'nope.jsonl'), '--out', join(dir, 'x.jsonl')]);
    vi.restoreAllMocks();
    expect(code).toBe(2);
    expect(err.join('')).toMatch(/no such file/);
  });
});
