// What the processor counts of the requests it handles: lifetime counters (plain numbers, cheap
// to read for GetStats) and the Prometheus metrics, both fed by the chunk stage's observer.
import type { Logger } from '../observe/logger.js';
import type { Metrics } from '../observe/metrics.js';
import type { ChunkObserver } from './chunk.js';

/** Lifetime counters (plain numbers, cheap to read for stats). */
export interface StreamCounters {
  consumed: number;
  decided: number;
  rejected: number;
  decisions: number;
  lightweight: number;
  reasons: Record<string, number>;
  /** Decision, DLQ and response records acknowledged by Kafka. */
  produced: number;
  dlq: number;
  /** Requests answered by the breaker fallback. */
  fallbacks: number;
  committedBatches: number;
}

export function newStreamCounters(): StreamCounters {
  return {
    consumed: 0,
    decided: 0,
    rejected: 0,
    decisions: 0,
    lightweight: 0,
    reasons: { model: 0, breaker_open: 0, uncertain: 0, below_threshold: 0 },
    produced: 0,
    dlq: 0,
    fallbacks: 0,
    committedBatches: 0,
  };
}

/** The chunk stage's observer: counts each outcome in `k` and in the metrics. */
export function countingObserver(k: StreamCounters, m: Metrics, logger: Logger, onEngineLatency?: (us: number) => void): ChunkObserver {
  return {
    rejected: (kind, encoding, err, msg) => {
      if (kind === 'internal') logger.error('decoder failed unexpectedly; record sent to the DLQ', { err, offset: msg.offset });
      m.dlq.inc({ reason: kind });
      m.requests.inc({ encoding, outcome: 'rejected' });
      k.rejected++;
    },
    decided: (encoding, scored) => {
      if (!scored.fallback) {
        m.engine.observe(scored.engineSeconds);
        onEngineLatency?.(scored.response.inference_time_us);
      } else k.fallbacks++;
      k.decided++;
      m.requests.inc({ encoding, outcome: 'decided' });
    },
    decision: (d) => {
      m.decisions.inc({ route: d.use_lightweight ? 'lightweight' : 'heavyweight', reason: d.reason });
      k.decisions++;
      if (d.use_lightweight) k.lightweight++;
      k.reasons[d.reason] = (k.reasons[d.reason] ?? 0) + 1;
    },
  };
}
