// The exactly-once judge: a read_committed consumer from another client library (librdkafka via
// python3-confluent-kafka, test/interop/read_committed.py). kafkajs's own read_committed
// consumer is not used for this: it lets records of some aborted transactions through.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { RoutingDecision } from '../../../src/engine/types.js';
import { decodeDecision } from '../../../src/wire/client.js';
import { encodingOf } from '../../../src/wire/headers.js';

const PYTHON = '/usr/bin/python3';
const SCRIPT = fileURLToPath(new URL('../../interop/read_committed.py', import.meta.url));

export interface Committed {
  topic: string;
  partition: number;
  offset: number;
  key: string | null;
  value: Buffer | null;
  contentType: string | undefined;
}

/**
 * Reads `topics` from the beginning, read_committed, until `expect` records and then `settleMs`
 * without a new one; rejects if that takes longer than `timeoutMs`.
 */
export function readCommitted(brokers: string[], topics: string[], expect: number, opts: { settleMs?: number; timeoutMs?: number } = {}): Promise<Committed[]> {
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const argv = [SCRIPT, '--brokers', brokers.join(','), '--topics', topics.join(','), '--expect', String(expect), '--settle-ms', String(opts.settleMs ?? 3000), '--timeout-ms', String(timeoutMs)];
  return new Promise((resolve, reject) => {
    execFile(PYTHON, argv, { maxBuffer: 1 << 30, timeout: timeoutMs + 30_000 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`read_committed.py failed: ${err.message}\n${stderr}`));
      const out = JSON.parse(stdout) as { records: { topic: string; partition: number; offset: number; key: string | null; value: string | null; content_type: string | null }[]; timed_out: boolean };
      const records = out.records.map((r) => ({
        topic: r.topic,
        partition: r.partition,
        offset: r.offset,
        key: r.key,
        value: r.value === null ? null : Buffer.from(r.value, 'hex'),
        contentType: r.content_type ?? undefined,
      }));
      if (out.timed_out) return reject(new Error(`read_committed.py saw ${records.length} of ${expect} records within ${timeoutMs} ms`));
      resolve(records);
    });
  });
}

export function committedDecision(r: Committed): RoutingDecision {
  return decodeDecision(r.value!, encodingOf(r.contentType));
}

/** "request_id/candidate_id" of each decision record, and how many of them occur more than once. */
export function duplicates(records: Committed[]): { keys: string[]; duplicated: number } {
  const keys = records.map((r) => {
    const d = committedDecision(r);
    return `${d.request_id}/${d.candidate_id}`;
  });
  return { keys, duplicated: keys.length - new Set(keys).size };
}
