// Dead-letter records (docs/contracts.md §2): the original key and value, byte for byte, plus headers saying
// why and where from. The original headers are kept too (content-type above all), so a fixed
// record can be re-published as is.
import { oneLine } from '../errors.js';
import type { Headers } from '../wire/headers.js';
import type { RecordHeaders } from './records.js';

export interface SourceRecord {
  topic: string;
  partition: number;
  offset: string;
  key: Buffer | null;
  value: Buffer | null;
  headers?: Headers;
}

export const DLQ_HEADERS = Object.freeze({
  error: 'td-error',
  topic: 'td-source-topic',
  partition: 'td-source-partition',
  offset: 'td-source-offset',
});

/** A dead-letter record (a kafkajs Message with its fields narrowed). */
export interface DlqRecord {
  key: Buffer | null;
  value: Buffer | null;
  headers: RecordHeaders;
}

export function dlqMessage(src: SourceRecord, reason: string): DlqRecord {
  const headers: RecordHeaders = {};
  if (src.headers) {
    for (const [k, v] of Object.entries(src.headers)) {
      // A stale td-* header from an earlier dead-lettering must not contradict the new one.
      if (v !== undefined && !(Object.values(DLQ_HEADERS) as string[]).includes(k)) headers[k] = v;
    }
  }
  headers[DLQ_HEADERS.error] = oneLine(reason, 1000);
  headers[DLQ_HEADERS.topic] = src.topic;
  headers[DLQ_HEADERS.partition] = String(src.partition);
  headers[DLQ_HEADERS.offset] = src.offset;
  return { key: src.key, value: src.value, headers };
}
