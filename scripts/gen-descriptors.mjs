// Regenerates proto/descriptors.binpb: the FileDescriptorSet protoc compiles from proto/ (our
// control.proto and routing.proto, plus the health.proto grpc-health-check ships), which server
// reflection serves as is. Run it after any .proto change: `npm run proto:descriptors`.
// A unit test fails while the checked-in set differs from a fresh compile.
//
//   node scripts/gen-descriptors.mjs [OUT]      needs protoc on PATH
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
// .../grpc-health-check/proto, under which the file is "health/v1/health.proto" (the name the
// server's own schema loader gives it).
const HEALTH_ROOT = resolve(dirname(require('grpc-health-check').protoPath), '..', '..');

/** The protoc command line, shared with the test that compares outputs. */
export function protocArgs(out) {
  return [
    `--proto_path=${join(ROOT, 'proto')}`,
    `--proto_path=${HEALTH_ROOT}`,
    '--include_imports',
    `--descriptor_set_out=${out}`,
    'tiny_dancer/v1/control.proto',
    'tiny_dancer/v1/routing.proto',
    'health/v1/health.proto',
  ];
}

export const DESCRIPTORS_FILE = join(ROOT, 'proto', 'descriptors.binpb');

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const out = resolve(process.argv[2] ?? DESCRIPTORS_FILE);
  try {
    execFileSync('protoc', protocArgs(out), { stdio: ['ignore', 'inherit', 'inherit'] });
  } catch (err) {
    console.error(`protoc failed: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  }
  console.log(`wrote ${out}`);
}
