// The processor's view of STORE's DecisionLog (src/store/decision-log.ts): `write(rows)` that
// resolves once the rows are durable, waiting for room instead of failing when the log's
// bounded buffer is full. Structural, so unit tests can drive it with a small fake.
import { DecisionLogFullError } from '../store/errors.js';
import type { DecisionLogPort, LoggedDecision } from './processor.js';

export interface DecisionLogLike {
  readonly maxBuffered: number;
  append(rows: readonly LoggedDecision[]): number;
  flushed(token: number): Promise<void>;
  hasCapacity(): boolean;
  waitForCapacity(signal?: AbortSignal): Promise<void>;
  backlog(): number;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Adapts a DecisionLog to the processor. Rows are appended in slices of at most half the
 * buffer (a chunk of big requests may hold more rows than the whole buffer); a full buffer is
 * waited out — on 'relief' when it is under pressure, else by polling, because "full for THIS
 * many rows" can hold while the log is below its high-water mark (no event will come).
 */
export function decisionLogPort(log: DecisionLogLike, isAccepting: () => boolean = () => true, pollMs = 20): DecisionLogPort {
  const slice = Math.max(1, Math.floor(log.maxBuffered / 2));
  // Writers waiting for room: pressure too, even below the high-water mark.
  let waiting = 0;
  return {
    async write(rows: LoggedDecision[]): Promise<void> {
      let last = -1;
      for (let i = 0; i < rows.length; i += slice) {
        const part = i === 0 && rows.length <= slice ? rows : rows.slice(i, i + slice);
        for (;;) {
          try {
            last = log.append(part);
            break;
          } catch (err) {
            if (!(err instanceof DecisionLogFullError)) throw err;
            waiting++;
            try {
              if (log.hasCapacity()) await sleep(pollMs);
              else await log.waitForCapacity();
            } finally {
              waiting--;
            }
          }
        }
      }
      if (last >= 0) await log.flushed(last);
    },
    backlog: () => log.backlog(),
    underPressure: () => waiting > 0 || !log.hasCapacity(),
    accepting: isAccepting,
  };
}
