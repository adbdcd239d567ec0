#!/usr/bin/python3
"""A read_committed consumer from ANOTHER client library (librdkafka, through confluent_kafka):
the judge of exactly-once. It reads the given topics from the beginning, skipping records of
aborted transactions as librdkafka does, until it has seen --expect records and then --settle-ms
more without a new one (so a duplicate has time to show), or until --timeout-ms.

usage: read_committed.py --brokers HOST:PORT --topics T1,T2 --expect N [--settle-ms MS] [--timeout-ms MS]
Prints one JSON object: {"records": [{"topic", "partition", "offset", "key", "value" (hex),
"content_type"}...], "timed_out": bool}.
"""
import argparse
import json
import time
import uuid

from confluent_kafka import Consumer, KafkaError

parser = argparse.ArgumentParser()
parser.add_argument("--brokers", required=True)
parser.add_argument("--topics", required=True)
parser.add_argument("--expect", type=int, required=True)
parser.add_argument("--settle-ms", type=int, default=3000)
parser.add_argument("--timeout-ms", type=int, default=60000)
args = parser.parse_args()

consumer = Consumer({
    "bootstrap.servers": args.brokers,
    "group.id": "td-judge-" + uuid.uuid4().hex,
    "isolation.level": "read_committed",
    "auto.offset.reset": "earliest",
    "enable.auto.commit": False,
})
consumer.subscribe(args.topics.split(","))
records = []
deadline = time.monotonic() + args.timeout_ms / 1000
last_new = time.monotonic()
timed_out = False
while True:
    now = time.monotonic()
    if len(records) >= args.expect and now - last_new >= args.settle_ms / 1000:
        break
    if now > deadline:
        timed_out = True
        break
    msg = consumer.poll(0.2)
    if msg is None:
        continue
    if msg.error():
        if msg.error().code() == KafkaError._PARTITION_EOF:
            continue
        raise SystemExit("consumer error: %s" % msg.error())
    ct = None
    for k, v in msg.headers() or []:
        if k == "content-type" and v is not None:
            ct = v.decode()
    records.append({
        "topic": msg.topic(),
        "partition": msg.partition(),
        "offset": msg.offset(),
        "key": msg.key().decode() if msg.key() is not None else None,
        "value": msg.value().hex() if msg.value() is not None else None,
        "content_type": ct,
    })
    last_new = time.monotonic()
consumer.close()
print(json.dumps({"records": records, "timed_out": timed_out}))
