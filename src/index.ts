// The library entry (docs/contracts.md §7): what `import … from 'tiny-dancer'` gives.
//
//   new Router({ modelPath?, confidenceThreshold?, maxUncertainty?, … })   synchronous, in-process
//   router.route(request) -> RoutingResponse
//   await RouterPool.create({ modelPath?, workers?, … })                   worker threads
//   await pool.route(request) -> RoutingResponse
//   await pool.reload(modelPath | { bytes }); await pool.close({ timeout })
//
// Only the engine is exported here: importing the library loads no Kafka, Postgres or gRPC code.

export { Router, type RouterOptions } from './engine/router.js';
export { RouterPool, type RouterPoolOptions, type PoolStats, type ContentType } from './engine/pool/pool.js';
export { validateRequest, EMPTY_METADATA, type ValidatedRequest } from './engine/validate.js';
export { parseModel, loadModelFile, type LoadedModel } from './engine/model.js';
export { FEATURE_NAMES, DEFAULT_FEATURE_CONFIG, type FeatureConfig } from './engine/features.js';
export {
  LIMITS,
  type Candidate,
  type DecisionReason,
  type Embedding,
  type Outcome,
  type PackedRoutingRequest,
  type RoutingDecision,
  type RoutingRequest,
  type RoutingResponse,
} from './wire/types.js';
// A request's ranked answer as the responses topic and `triage` write it (docs/contracts.md §12),
// for pipelines that build or read it themselves.
export { TOP_K_KEY, answerOf, encodeResponse, requestTopK } from './wire/response.js';
export { decodeResponse } from './wire/client.js';
export { TinyDancerError, InvalidInputError, UsageError, ModelError, ConfigError } from './errors.js';
export { WorkerCrashedError, PoolSaturatedError, PoolClosedError } from './engine/pool/errors.js';
export { VERSION } from './version.js';
