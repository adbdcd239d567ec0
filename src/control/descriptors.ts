// The descriptors server reflection serves: the FileDescriptorSet protoc compiled from proto/
// (scripts/gen-descriptors.mjs writes proto/descriptors.binpb; a unit test keeps it equal to a
// fresh compile). Generic clients (grpcurl, Postman, Python's descriptor_pool) build messages
// from these, so they must be what a protobuf compiler produces: the real file names and
// imports, and map entries named `<Field>Entry` with map_entry set, which a descriptor rebuilt
// from proto-loader's merged package does not give.
import { readFileSync } from 'node:fs';
import protobuf from 'protobufjs';
import type { PackageDefinition } from '@grpc/proto-loader';
import { PROTO_ROOT } from './proto.js';

export const DESCRIPTORS_PATH = `${PROTO_ROOT}descriptors.binpb`;

/** The serialized FileDescriptorProtos of a FileDescriptorSet (field 1, repeated), in order. */
export function splitDescriptorSet(set: Uint8Array): Uint8Array[] {
  const reader = protobuf.Reader.create(set);
  const files: Uint8Array[] = [];
  while (reader.pos < reader.len) {
    const tag = reader.uint32();
    if (tag >>> 3 === 1 && (tag & 7) === 2) files.push(reader.bytes());
    else reader.skipType(tag & 7);
  }
  return files;
}

/**
 * A package definition holding only the compiled descriptors, in the shape @grpc/reflection
 * reads (`fileDescriptorProtos` on its entries); it is not for building services.
 */
export function reflectionPackage(path: string = DESCRIPTORS_PATH): PackageDefinition {
  const files = splitDescriptorSet(readFileSync(path));
  return { descriptors: { format: 'compiled', fileDescriptorProtos: files } } as unknown as PackageDefinition;
}
