// Putting a registered model into service through the control plane — the same validated,
// atomic ReloadModel an operator's `admin reload` uses — and recording it in the registry.
// Used by `retrain --promote` and `admin rollback VERSION`.
//
// The model goes over the wire as BYTES, the very bytes whose SHA-256 the registry holds: the
// server validates exactly what was checked here, and no file can change between the check and
// the load. The registry row becomes active only after the server confirmed the swap, and only
// if the server now reports the expected version.
import { TinyDancerError } from '../errors.js';
import { ModelRegistry, type RegistryEntry } from './registry.js';

/** What promotion needs from src/control/client.ts's ControlClient. */
export interface ReloadClient {
  reloadModel(source: { path: string } | { bytes: Uint8Array }): Promise<{ model: { version: string } | null; previous_version: string }>;
}

export class PromotionError extends TinyDancerError {}

export interface ActivateResult {
  entry: RegistryEntry;
  previousVersion: string;
}

/**
 * Reloads `version` from its registered file (hash verified) and marks it active with
 * `promoted_by = by`. On any failure before the swap nothing changed; if the registry update
 * fails after the swap, the error says so (the service runs the new model; re-run to record).
 */
export async function activateVersion(
  client: ReloadClient,
  registry: ModelRegistry,
  version: string,
  by: string,
  extraMetrics: Record<string, unknown> = {},
): Promise<ActivateResult> {
  const { bytes } = await registry.readVerifiedFile(version);
  const res = await client.reloadModel({ bytes });
  const now = res.model?.version;
  if (now !== version) {
    throw new PromotionError(`the control plane reports model '${now ?? '?'}' after reloading '${version}'; the registry was not changed`);
  }
  try {
    const entry = await registry.markActive(version, by, extraMetrics);
    return { entry, previousVersion: res.previous_version };
  } catch (err) {
    throw new PromotionError(`'${version}' is serving (was '${res.previous_version}'), but recording it in the registry failed: ${(err as Error).message}`, { cause: err });
  }
}
