// Readiness of `serve` (docs/contracts.md §2): in the consumer group with partitions, engine
// loaded, decision log accepting writes, not draining, and nothing start-up is still waiting for.
import type { ReadinessReport } from './http.js';

export interface ReadinessParts {
  /** The stream processor, once created. */
  processor: { status(): { joined: boolean } } | undefined;
  engineLoaded: boolean;
  /** The decision log, once started, and whether it refuses more work. */
  log: { backlog(): number; readonly maxBuffered: number; underPressure: boolean } | undefined;
  draining: boolean;
  /** What start-up is still waiting for (StartupPatience.checks). */
  startup: Record<string, string> | undefined;
}

export function serviceReadiness(p: ReadinessParts): ReadinessReport {
  const checks: Record<string, true | string> = {};
  const st = p.processor?.status();
  checks.consumer = st?.joined ? true : p.processor ? 'not (yet) a member of the consumer group' : 'not started';
  checks.engine = p.engineLoaded ? true : 'model not loaded';
  if (!p.log) checks.decisionLog = 'not started';
  else checks.decisionLog = p.log.underPressure ? `full: backlog ${p.log.backlog()} of at most ${p.log.maxBuffered} rows` : true;
  if (p.draining) checks.draining = 'draining';
  Object.assign(checks, p.startup);
  return { ready: Object.values(checks).every((v) => v === true), checks };
}
