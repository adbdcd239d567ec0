// What the decision log reports, in the service's log: pressure and relief, failed writes (the
// first and every tenth retry of a batch, so an outage is not a line per attempt), rows Postgres
// refused, and the breaker's state.
import type { DecisionLog } from '../store/decision-log.js';
import type { Logger } from './logger.js';

/** `onRetry` counts every failed write (GetStats' failedBatches). */
export function logDecisionLogEvents(decisionLog: DecisionLog, log: Logger, onRetry: () => void): void {
  decisionLog.on('pressure', (b) => log.warn('decision log under pressure', { backlog: b.backlog, maxBuffered: b.maxBuffered }));
  decisionLog.on('relief', (b) => log.info('decision log pressure relieved', { backlog: b.backlog }));
  decisionLog.on('retry', (r) => {
    onRetry();
    if (r.attempt === 1 || r.attempt % 10 === 0) {
      log.warn('decision log write failed; retrying', { err: r.error, code: r.code, kind: r.kind, attempt: r.attempt, rows: r.rows });
    }
  });
  decisionLog.on('rejected', (r) => log.error('decision row refused by Postgres (bad data); set aside', { err: r.error, code: r.code, request_id: r.row.request_id, candidate_id: r.row.candidate_id }));
  decisionLog.on('breaker', (s) => log.info(`decision log breaker ${s}`));
}
