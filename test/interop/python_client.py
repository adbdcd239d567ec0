#!/usr/bin/python3
"""A control-plane client from ANOTHER toolchain: Python grpcio with stubs that protoc (C++)
and grpc_python_plugin generated from our .proto files. It checks the "done when" of the
control-plane issue against a running server and prints one JSON object with what it saw.

usage: python_client.py --stubs DIR --addr HOST:PORT --token TOKEN --model PATH --corrupt PATH
  --stubs    directory holding the generated tiny_dancer/v1/*_pb2*.py and health/v1/*_pb2*.py
  --model    a valid model file (sent by path: the server reads it)
  --corrupt  a corrupt model file (sent as bytes)
Exit status 0 when every check passed, 1 otherwise (the failed check is in the JSON and on stderr).
"""
import argparse
import json
import sys

parser = argparse.ArgumentParser()
parser.add_argument("--stubs", required=True)
parser.add_argument("--addr", required=True)
parser.add_argument("--token", required=True)
parser.add_argument("--model", required=True)
parser.add_argument("--corrupt", required=True)
args = parser.parse_args()
sys.path.insert(0, args.stubs)

import grpc  # noqa: E402
from health.v1 import health_pb2, health_pb2_grpc  # noqa: E402
from tiny_dancer.v1 import control_pb2, control_pb2_grpc, fleet_pb2, routing_pb2  # noqa: E402

seen = {"grpcio": grpc.__version__}
failures = []


def check(name, ok, detail=""):
    seen[name] = {"ok": bool(ok), "detail": detail}
    if not ok:
        failures.append(f"{name}: {detail}")


def code_of(call):
    try:
        call()
    except grpc.RpcError as err:
        return err.code().name, err.details()
    return "OK", ""


channel = grpc.insecure_channel(args.addr)
grpc.channel_ready_future(channel).result(timeout=10)
health = health_pb2_grpc.HealthStub(channel)
control = control_pb2_grpc.ControlPlaneStub(channel)
auth = [("authorization", f"Bearer {args.token}")]
wrong = [("authorization", "Bearer wrong-" + args.token)]

# 1. Health SERVING, overall and for the service.
status = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status
check("health_serving", status == health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.ServingStatus.Name(status))
status = health.Check(health_pb2.HealthCheckRequest(service="tiny_dancer.v1.ControlPlane"), timeout=5).status
check("health_service_serving", status == health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.ServingStatus.Name(status))

# 2. Stats without a token.
stats = control.GetStats(control_pb2.GetStatsRequest(), timeout=5)
before = stats.model.version
check("stats_without_token", before != "" and stats.HasField("breaker"), f"model {before}, mode {stats.mode}")

# 3. Reload refused without, then with a wrong token.
name, details = code_of(lambda: control.ReloadModel(control_pb2.ReloadModelRequest(path=args.model), timeout=10))
check("reload_without_token", name == "UNAUTHENTICATED", f"{name}: {details}")
name, details = code_of(lambda: control.ReloadModel(control_pb2.ReloadModelRequest(path=args.model), metadata=wrong, timeout=10))
check("reload_wrong_token", name == "UNAUTHENTICATED", f"{name}: {details}")
unchanged = control.GetStats(control_pb2.GetStatsRequest(), timeout=5).model.version
check("refusals_changed_nothing", unchanged == before, f"{before} -> {unchanged}")

# 4. Reload with the token.
reply = control.ReloadModel(control_pb2.ReloadModelRequest(path=args.model), metadata=auth, timeout=30)
after = reply.model.version
check("reload_with_token", reply.previous_version == before and after != before, f"{before} -> {after}, calibrated {reply.calibrated}, notes {list(reply.notes)}")

# 5. A corrupt model (as bytes) refused, the service stays up with the model it had.
with open(args.corrupt, "rb") as f:
    corrupt = f.read()
name, details = code_of(lambda: control.ReloadModel(control_pb2.ReloadModelRequest(model=corrupt), metadata=auth, timeout=10))
check("corrupt_refused", name == "INVALID_ARGUMENT", f"{name}: {details}")
status = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status
check("still_serving", status == health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.ServingStatus.Name(status))
current = control.GetStats(control_pb2.GetStatsRequest(), timeout=5).model.version
check("old_model_stays", current == after, f"serving {current}")

# 6. Route still answers, on the reloaded model.
req = routing_pb2.RoutingRequest(
    request_id="py-1",
    query_embedding=[1.0, 0.0, 0.0, 0.5],
    candidates=[
        routing_pb2.Candidate(id="a", embedding=[1.0, 0.0, 0.0, 0.5], success_rate=0.9, access_count=10, metadata={"m": "small"}),
        routing_pb2.Candidate(id="b", embedding=[0.0, 1.0, 0.0, 0.0]),
    ],
)
res = control.Route(req, timeout=10)
check(
    "route_after_refusal",
    res.candidates_processed == 2 and all(d.model_version == after for d in res.decisions) and res.decisions[0].rank == 0,
    f"{[(d.candidate_id, round(d.confidence, 4), d.reason, d.model_version) for d in res.decisions]}",
)

# 7. Every decision names the policy that decided it (no tenant: the global one), and a
# route-only deployment has no fleet view to answer GetFleet with.
check("route_policy", res.policy == "global" and all(d.policy == "global" for d in res.decisions), f"{res.policy}")
code, detail = code_of(lambda: control.GetFleet(fleet_pb2.GetFleetRequest(), timeout=5))
check("fleet_control_only", code == "FAILED_PRECONDITION", f"{code}: {detail}")

seen["failures"] = failures
print(json.dumps(seen))
channel.close()
if failures:
    sys.stderr.write("python interop client: " + "; ".join(failures) + "\n")
    sys.exit(1)
