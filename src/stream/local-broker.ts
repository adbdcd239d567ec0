// The local development broker (docs/contracts.md §8), for `serve` without KAFKA_BROKERS.
import { errorMessage } from '../errors.js';
import { ControlError } from '../control/target.js';

/** Starts (or finds) the local development broker: `up()` of scripts/kafka.mjs. */
export async function startLocalBroker(): Promise<{ brokers: string; started: boolean }> {
  const url = new URL('../../scripts/kafka.mjs', import.meta.url);
  let mod: { up: () => Promise<{ brokers: string; started: boolean }> };
  try {
    mod = (await import(url.href)) as typeof mod;
  } catch (err) {
    throw new ControlError(
      'failed_precondition',
      `KAFKA_BROKERS is not set and the local broker script (${url.pathname}) cannot be loaded: ${errorMessage(err)}; set KAFKA_BROKERS`,
    );
  }
  return mod.up();
}
