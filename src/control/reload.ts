// Hot reload, the control plane's half: read the model (from a path on the server or from
// bytes), validate it fully, and tell a model that is broken (INVALID_ARGUMENT) from one that is
// fine but does not fit this router (FAILED_PRECONDITION) from a path that does not exist
// (NOT_FOUND) — before anything is swapped. The pool's reload then validates once more inside
// its workers and swaps atomically; by then only pool failures (closing, crashes) can occur.
//
// Shared by the route-only adapter (./standalone.ts) and the App of `serve`, so both answer a
// bad model with the same status and message.
import { readFile, stat } from 'node:fs/promises';
import { ModelError, errorMessage } from '../errors.js';
import { FEATURE_COUNT, FEATURE_NAMES } from '../engine/features.js';
import { MAX_MODEL_BYTES, defaultModelPath, parseModel, type LoadedModel } from '../engine/model.js';
import type { Logger } from '../observe/logger.js';
import type { DesiredModel } from './desired-state.js';
import { ControlError, type ModelSource, type ModelView } from './target.js';

export interface PreparedModel {
  /** Exactly the bytes that were validated: hand THESE to the pool (no second read of the path). */
  bytes: Uint8Array;
  model: LoadedModel;
  /** The path, or 'bytes'. */
  source: string;
}

async function readModelFile(path: string): Promise<Uint8Array> {
  let size: number;
  try {
    const st = await stat(path);
    if (!st.isFile()) throw new ControlError('invalid_argument', `${path}: not a regular file`);
    size = st.size;
  } catch (err) {
    if (err instanceof ControlError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      throw new ControlError('not_found', `model file ${path} does not exist on the server`, { cause: err });
    }
    if (code === 'EACCES' || code === 'EPERM') {
      throw new ControlError('failed_precondition', `model file ${path} is not readable by the server`, { cause: err });
    }
    throw new ControlError('invalid_argument', `cannot use model file ${path}: ${errorMessage(err)}`, { cause: err });
  }
  if (size > MAX_MODEL_BYTES) {
    throw new ControlError('invalid_argument', `model file ${path} is ${size} bytes, the limit is ${MAX_MODEL_BYTES}`);
  }
  try {
    return await readFile(path);
  } catch (err) {
    throw new ControlError('failed_precondition', `cannot read model file ${path}: ${errorMessage(err)}`, { cause: err });
  }
}

/** Reads and validates a model; throws ControlError with the precise kind. Nothing is swapped. */
export async function prepareModel(source: ModelSource): Promise<PreparedModel> {
  const label = 'path' in source ? source.path : 'bytes';
  const bytes = 'path' in source ? await readModelFile(source.path) : source.bytes;
  let model: LoadedModel;
  try {
    // Format, every tensor's dtype and shape, finite weights, calibration consistency and a
    // finite canary forward pass.
    model = parseModel(bytes, label === 'bytes' ? 'model bytes' : label);
  } catch (err) {
    if (err instanceof ModelError) throw new ControlError('invalid_argument', err.message, { cause: err });
    throw err;
  }
  // A valid model for ANOTHER feature set: the file is fine, this router cannot use it.
  const fits = model.inputDim === FEATURE_COUNT && model.features.length === FEATURE_COUNT && model.features.every((f, i) => f === FEATURE_NAMES[i]);
  if (!fits) {
    throw new ControlError(
      'failed_precondition',
      `model ${model.version} expects ${model.inputDim} inputs [${model.features.join(', ')}], this router extracts ${FEATURE_COUNT} [${FEATURE_NAMES.join(', ')}]`,
    );
  }
  return { bytes, model, source: label };
}

/** The ModelView of a parsed model. */
export function modelView(model: LoadedModel, loadedAt: number, source: string): ModelView {
  const view: ModelView = {
    version: model.version,
    loadedAt,
    source,
    inputDim: model.inputDim,
    hiddenDim: model.hiddenDim,
    features: [...model.features],
  };
  if (model.calibration) view.calibration = { alpha: model.calibration.alpha, qhat: model.calibration.qhat, n: model.calibration.n };
  return view;
}

/** Operator-facing remarks on a model about to serve. */
export function modelNotes(model: LoadedModel): string[] {
  const notes: string[] = [];
  if (!model.calibration) {
    notes.push('the model has no conformal calibration: uncertainty uses the uncalibrated heuristic; calibrate it with `tiny-dancer train` for conformal guarantees');
  } else {
    notes.push(`calibrated: alpha ${model.calibration.alpha}, qhat ${model.calibration.qhat.toFixed(4)} over ${model.calibration.n} examples`);
  }
  if (model.thresholds) {
    notes.push(`the model carries thresholds (confidence ${model.thresholds.confidence ?? '-'}, max uncertainty ${model.thresholds.maxUncertainty ?? '-'}); thresholds set by SetThresholds still win`);
  }
  return notes;
}

/**
 * The model `serve` starts with: the fleet's active model from the control topic — what the
 * last ReloadModel, `retrain --promote` or `admin rollback` made current through any replica,
 * already validated (hash, parse, features) when it was read; otherwise `modelPath`
 * (TD_MODEL_PATH), or models/default.safetensors. The Postgres registry is the audit history,
 * not consulted here.
 */
export async function startupModel(desired: DesiredModel | undefined, modelPath: string | undefined, log: Logger): Promise<PreparedModel> {
  if (desired) {
    if (modelPath !== undefined) {
      log.warn('TD_MODEL_PATH is set, but the fleet\'s control topic names the active model; serving the fleet\'s', { modelPath, version: desired.prepared.model.version });
    }
    log.info('serving the fleet\'s active model (control topic)', { version: desired.prepared.model.version, sha256: desired.sha256, by: desired.meta.writtenBy });
    return desired.prepared;
  }
  return prepareModel({ path: modelPath ?? defaultModelPath() });
}
