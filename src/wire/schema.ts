// routing.proto, loaded once (the only I/O of wire/) and checked against the field numbers the
// hand-written request reader (./protobuf-reader.ts) relies on, so the schema file stays the
// single source of truth.
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';

const PROTO_PATH = fileURLToPath(new URL('../../proto/tiny_dancer/v1/routing.proto', import.meta.url));

/** The field numbers the request reader relies on, checked against the .proto at load. */
const REQUEST_FIELDS = {
  'tiny_dancer.v1.RoutingRequest': { request_id: [1, 'string'], query_embedding: [2, 'float'], candidates: [3, 'tiny_dancer.v1.Candidate'], metadata: [4, 'string'] },
  'tiny_dancer.v1.Candidate': {
    id: [1, 'string'],
    embedding: [2, 'float'],
    metadata: [3, 'string'],
    created_at: [4, 'int64'],
    access_count: [5, 'uint64'],
    success_rate: [6, 'float'],
  },
} as const;

export interface Schema {
  root: protobuf.Root;
  RoutingRequest: protobuf.Type;
  RoutingDecision: protobuf.Type;
  RoutingResponse: protobuf.Type;
}

let cachedSchema: Schema | undefined;

/** Loads routing.proto once and checks the field layout. */
export function loadSchema(protoPath: string = PROTO_PATH): Schema {
  if (cachedSchema && protoPath === PROTO_PATH) return cachedSchema;
  // keepCase: the JSON and protobuf field names are the same snake_case names.
  const root = new protobuf.Root().loadSync(protoPath, { keepCase: true });
  root.resolveAll();
  for (const [typeName, fields] of Object.entries(REQUEST_FIELDS)) {
    const type = root.lookupType(typeName);
    for (const [name, [id, fieldType]] of Object.entries(fields)) {
      const f = type.fields[name];
      const actual = f?.resolvedType ? f.resolvedType.fullName.replace(/^\./, '') : f?.type;
      if (!f || f.id !== id || actual !== fieldType) {
        throw new Error(`${protoPath}: ${typeName}.${name} must be field ${id} of type ${fieldType}; the codec's wire reader depends on it`);
      }
    }
  }
  const schema: Schema = {
    root,
    RoutingRequest: root.lookupType('tiny_dancer.v1.RoutingRequest'),
    RoutingDecision: root.lookupType('tiny_dancer.v1.RoutingDecision'),
    RoutingResponse: root.lookupType('tiny_dancer.v1.RoutingResponse'),
  };
  if (protoPath === PROTO_PATH) cachedSchema = schema;
  return schema;
}
