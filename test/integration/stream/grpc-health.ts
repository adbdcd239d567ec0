// The gRPC health status of a service as a client not written here sees it: Python grpcio,
// calling grpc.health.v1.Health/Check with the message bytes written by hand (an empty request
// asks for the server as a whole; the answer is field 1, the status enum), so no stubs are needed.
import { execFile, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

const PYTHON = '/usr/bin/python3';

const SCRIPT = `
import sys, grpc
channel = grpc.insecure_channel(sys.argv[1])
check = channel.unary_unary('/grpc.health.v1.Health/Check', request_serializer=lambda m: m, response_deserializer=lambda m: m)
try:
    answer = check(b'', timeout=5)
except grpc.RpcError as e:
    print('RPC_' + e.code().name)
    sys.exit(0)
names = {0: 'UNKNOWN', 1: 'SERVING', 2: 'NOT_SERVING', 3: 'SERVICE_UNKNOWN'}
print(names.get(answer[1], 'UNKNOWN') if len(answer) >= 2 and answer[0] == 0x08 else 'UNKNOWN')
`;

/** Why the check cannot run here, or undefined when it can. */
export function grpcioMissing(): string | undefined {
  if (!existsSync(PYTHON)) return `${PYTHON} is not installed`;
  if (spawnSync(PYTHON, ['-c', 'import grpc'], { stdio: 'ignore' }).status !== 0) return 'Python grpcio is not installed (apt-get install python3-grpcio)';
  return undefined;
}

/** SERVING, NOT_SERVING, ... or RPC_<code> when the call itself failed. */
export function grpcHealth(address: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(PYTHON, ['-c', SCRIPT, address], { timeout: 20_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`python health check failed: ${err.message} ${stderr}`));
      else resolve(stdout.trim());
    });
  });
}
