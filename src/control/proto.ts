// Loads the control plane's schema once, for the server and the admin client alike: our
// control.proto (which imports routing.proto) plus the standard health.proto, so server
// reflection describes every service the port serves.
import { createRequire } from 'node:module';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadSync, type Options, type PackageDefinition } from '@grpc/proto-loader';
import { loadPackageDefinition, type ServiceClientConstructor } from '@grpc/grpc-js';

/** proto/ at the package root — the same from src/control and from dist/control. */
export const PROTO_ROOT = fileURLToPath(new URL('../../proto/', import.meta.url));
export const CONTROL_PROTO = 'tiny_dancer/v1/control.proto';
export const CONTROL_SERVICE = 'tiny_dancer.v1.ControlPlane';
export const HEALTH_SERVICE = 'grpc.health.v1.Health';

// grpc-health-check ships its health.proto; we load the same file so reflection and the
// implementation agree. (CommonJS package: resolve its path through require.)
const require = createRequire(import.meta.url);
const HEALTH_PROTO_PATH = (require('grpc-health-check') as { protoPath: string }).protoPath;
/** .../proto, the include root under which health.proto is "health/v1/health.proto". */
const HEALTH_PROTO_ROOT = resolve(dirname(HEALTH_PROTO_PATH), '..', '..');

export const LOADER_OPTIONS: Readonly<Options> = Object.freeze({
  // snake_case field names, as in the .proto and in docs/contracts.md §1 payloads.
  keepCase: true,
  // Counters and Unix-ms times stay far below 2^53.
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO_ROOT, HEALTH_PROTO_ROOT],
});

let cached: PackageDefinition | undefined;

/** control.proto (+ routing.proto) and health.proto in one package definition. */
export function controlPackageDefinition(): PackageDefinition {
  cached ??= loadSync([CONTROL_PROTO, 'health/v1/health.proto'], LOADER_OPTIONS as Options);
  return cached;
}

/** The generated client constructor of tiny_dancer.v1.ControlPlane. */
export function controlClientConstructor(): ServiceClientConstructor {
  const pkg = loadPackageDefinition(controlPackageDefinition()) as unknown as {
    tiny_dancer: { v1: { ControlPlane: ServiceClientConstructor } };
  };
  return pkg.tiny_dancer.v1.ControlPlane;
}

/** The generated client constructor of grpc.health.v1.Health (same schema the server uses). */
export function healthClientConstructor(): ServiceClientConstructor {
  const pkg = loadPackageDefinition(controlPackageDefinition()) as unknown as {
    grpc: { health: { v1: { Health: ServiceClientConstructor } } };
  };
  return pkg.grpc.health.v1.Health;
}
