// `tiny-dancer triage` end to end on files, through the real worker pool and the default model.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { main } from '../../../src/cli/index.js';
import { Router } from '../../../src/engine/router.js';
import protobuf from 'protobufjs';
import type { RoutingRequest, RoutingResponse } from '../../../src/wire/types.js';
import { loadSchema } from '../../../src/wire/schema.js';
import { encodeRequest } from '../../../src/wire/index.js';
import { encodeDelimited } from '../../../src/triage/delimited.js';
import { ROOT } from '../engine/cli-run.js';

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

  it('reads length-delimited protobuf requests (--format protobuf) with the same results as JSON', async () => {
    const rand = rng(11);
    const requests = Array.from({ length: 15 }, (_, i) => makeRequest(i, 8, 16, rand));
    const input = join(dir, 'in.pb');
    const output = join(dir, 'out-pb.jsonl');
    const jsonOut = join(dir, 'out-json.jsonl');
    writeFileSync(input, Buffer.concat(requests.map((r) => encodeDelimited(encodeRequest(r, 'protobuf')))));
    writeFileSync(join(dir, 'in2.jsonl'), `${requests.map((r) => JSON.stringify(r)).join('\n')}\n`);
    vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    expect(await main(['triage', '--in', input, '--out', output, '--format', 'protobuf', '--quiet'])).toBe(0);
    expect(await main(['triage', '--in', join(dir, 'in2.jsonl'), '--out', jsonOut, '--quiet'])).toBe(0);
    vi.restoreAllMocks();
    // Protobuf in, protobuf out: length-delimited RoutingResponse messages, as the responses topic carries them.
    const { RoutingResponse } = loadSchema();
    const reader = protobuf.Reader.create(readFileSync(output));
    const pb: RoutingResponse[] = [];
    while (reader.pos < reader.len) pb.push(RoutingResponse.toObject(RoutingResponse.decodeDelimited(reader), { longs: Number, defaults: true }) as RoutingResponse);
    const js = readFileSync(jsonOut, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as RoutingResponse);
    expect(pb.map((o) => o.request_id)).toEqual(requests.map((r) => r.request_id));
    expect(js.map((o) => o.request_id)).toEqual(requests.map((r) => r.request_id));
    for (const o of [...pb, ...js]) {
      expect(o.model_version).toMatch(/^fastgrnn-/);
      expect(o.candidates_processed).toBe(8);
      expect(o.decisions.every((d) => d.candidate_count === 8)).toBe(true);
    }
    for (let k = 0; k < pb.length; k++) {
      expect(pb[k]!.decisions.map((d: { candidate_id: string }) => d.candidate_id)).toEqual(
        js[k]!.decisions.map((d: { candidate_id: string }) => d.candidate_id),
      );
    }
  });

  it('Ctrl-C stops cleanly: exit 130, output whole up to its last line', async () => {
    const rand = rng(3);
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', '-e', "import('./src/cli/index.ts').then((m) => m.main(process.argv.slice(1))).then((c) => { process.exitCode = c; })",
        'triage', '--in', '-', '--out', '-', '--quiet'],
      { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.stdin.on('error', () => undefined); // the child stops reading once interrupted
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    // Keep stdin open (an endless producer) and interrupt once some output has arrived.
    let i = 0;
    const feed = setInterval(() => child.stdin.writable && child.stdin.write(`${JSON.stringify(makeRequest(i++, 5, 8, rand))}\n`), 5);
    const deadline = Date.now() + 30_000;
    while (!stdout.includes('\n') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    child.kill('SIGINT');
    const status = await exited;
    clearInterval(feed);
    child.stdin.destroy();
    expect(status).toBe(130);
    expect(stderr).toMatch(/interrupted/);
    expect(stdout.endsWith('\n')).toBe(true);
    const lines = stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.length).toBeGreaterThan(0);
    lines.forEach((l, k) => expect(l.request_id).toBe(`req-${k}`));
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
