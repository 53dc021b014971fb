#!/usr/bin/env python3
"""The seed's system, as its README describes it, measured like kafkad's roles.

The seed is a Python application on confluent-kafka: a producer that wraps each message in a
`KafkaMessage` class and sends its JSON, a consumer that polls and handles one message at a
time with auto commit, and a batch consumer that buffers at least 10 messages, handles them,
then calls `consumer.commit()`. This file rebuilds those three loops with the settings the
seed's README lists, so `kafkad-bench --seed-python` can run them beside kafkad's roles on the
same brokers, in the same invocation, and report kafkad's ratio to them.

    seed_bench.py produce   --bootstrap B --topic T --messages N
    seed_bench.py single    --bootstrap B --topic T --group G --messages N
    seed_bench.py batch     --bootstrap B --topic T --group G --messages N
    seed_bench.py roundtrip --bootstrap B --topic T --group G --messages N --rate R

What differs from the seed, and why:
  * Handling a message means decoding it into a `KafkaMessage` and counting it; the seed also
    prints it. kafkad's side is measured with a sink that only counts, so neither prints.
  * Records are keyed with the message id in decimal, as kafkad's producer keys them, so both
    spread over the partitions alike; the producer id and content have kafkad-bench's shape
    (about the same value size).
  * `auto.offset.reset = earliest`: every run reads a topic filled before it, under a fresh
    group. A batch run ends once N messages were handled, also if the last batch is short.

The measured window is kafkad-bench's: producer from the first acknowledgement to the last;
consumers from the first message handed to processing to the N-th handled; roundtrip from the
moment the consumer holds its partitions. CPU is `resource.getrusage(RUSAGE_SELF)` over the
window (every thread: librdkafka's included); peak RSS is `ru_maxrss`. The last line of stdout
is one JSON object with the fields of kafkad-bench's own run results.
"""

import argparse
import json
import resource
import sys
import threading
import time
from datetime import datetime

from confluent_kafka import Consumer, KafkaError, Producer

PRODUCER_ID = "kafkad-bench"
MIN_BATCH_SIZE = 10


class KafkaMessage:
    """The seed's message: five fields, JSON on the wire."""

    def __init__(self, message_id, content, producer_id, timestamp=None, metadata=None):
        self.message_id = message_id
        self.content = content
        self.producer_id = producer_id
        self.timestamp = timestamp or datetime.now().isoformat()
        self.metadata = metadata if metadata is not None else {}

    def to_dict(self):
        return {
            "message_id": self.message_id,
            "content": self.content,
            "producer_id": self.producer_id,
            "timestamp": self.timestamp,
            "metadata": self.metadata,
        }

    def serialize(self):
        return json.dumps(self.to_dict())

    @classmethod
    def deserialize(cls, text):
        data = json.loads(text)
        return cls(
            message_id=data["message_id"],
            content=data["content"],
            producer_id=data["producer_id"],
            timestamp=data["timestamp"],
            metadata=data.get("metadata", {}),
        )


# The seed's client settings (its README), plus the bench's broker list and group.
def producer_config(bootstrap):
    return {
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "retries": 10,
        "enable.idempotence": True,
        "delivery.timeout.ms": 120000,
        "max.in.flight.requests.per.connection": 1,
        "compression.type": "lz4",
        "linger.ms": 5,
    }


def consumer_config(bootstrap, group, seed):
    """A consumer's `seed` settings, with the bench's brokers and group; every run reads a topic
    filled before it under a fresh group, so from the earliest offset."""
    return {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        **seed,
        "auto.offset.reset": "earliest",
    }


def single_config(bootstrap, group):
    return consumer_config(
        bootstrap,
        group,
        {"enable.auto.commit": True, "fetch.min.bytes": 1, "fetch.wait.max.ms": 500},
    )


def batch_config(bootstrap, group):
    return consumer_config(
        bootstrap,
        group,
        {"enable.auto.commit": False, "fetch.min.bytes": 1024, "fetch.wait.max.ms": 5000},
    )


class Mark:
    """A moment: monotonic time, wall time in microseconds, CPU so far."""

    def __init__(self):
        self.at = time.monotonic()
        self.unix_us = time.time_ns() // 1000
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self.user = usage.ru_utime
        self.sys = usage.ru_stime


def result(created, start, end, messages, latencies=None):
    out = {
        "messages": messages,
        "seconds": end.at - start.at,
        "cpu_user_s": end.user - start.user,
        "cpu_sys_s": end.sys - start.sys,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "startup_s": start.at - created,
    }
    if latencies:
        out["latencies_us"] = latencies
    return out


class Deliveries:
    """Counts delivery reports (served by poll/flush on the sending thread)."""

    def __init__(self, target):
        self.target = target
        self.delivered = 0
        self.failed = 0
        self.first = None
        self.first_count = 0
        self.last = None

    def __call__(self, error, _message):
        if error is not None:
            self.failed += 1
            return
        self.delivered += 1
        if self.first is None:
            self.first = Mark()
            self.first_count = self.delivered
        if self.delivered == self.target:
            self.last = Mark()


def send(producer, topic, messages, rate, deliveries):
    """The seed's send loop: build, serialize, produce with a delivery callback, poll."""
    started = time.monotonic()
    for message_id in range(1, messages + 1):
        if rate:
            due = started + (message_id - 1) / rate
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        message = KafkaMessage(
            message_id,
            f"Message {message_id} from {PRODUCER_ID}",
            PRODUCER_ID,
            metadata={"source": "python"},
        )
        while True:
            try:
                producer.produce(
                    topic,
                    key=str(message_id),
                    value=message.serialize(),
                    callback=deliveries,
                )
                break
            except BufferError:
                # librdkafka's queue is full: serve deliveries to make room.
                producer.poll(0.1)
        producer.poll(0)
    remaining = producer.flush(120)
    if remaining or deliveries.delivered != messages:
        fail(f"{deliveries.delivered} of {messages} delivered ({deliveries.failed} failed)")


def produce(args):
    created = time.monotonic()
    producer = Producer(producer_config(args.bootstrap))
    deliveries = Deliveries(args.messages)
    send(producer, args.topic, args.messages, None, deliveries)
    counted = args.messages - deliveries.first_count
    return result(created, deliveries.first, deliveries.last, counted)


def deadline_for(messages):
    return time.monotonic() + 60 + messages / 1000


def consume(args, name, config, handle):
    """The seed's consumer loop, workload `name`: poll, decode each message and give it to
    `handle(consumer, message, seen)`, which returns how many messages are handled now,
    until all of them are."""
    created = time.monotonic()
    consumer = Consumer(config)
    consumer.subscribe([args.topic])
    deadline = deadline_for(args.messages)
    first = None
    seen = 0
    while seen < args.messages:
        if time.monotonic() > deadline:
            fail(f"{name}: {seen} of {args.messages} messages in time")
        record = consumer.poll(1.0)
        if record is None:
            continue
        if record.error():
            if record.error().code() != KafkaError._PARTITION_EOF:
                print(f"consumer error: {record.error()}", file=sys.stderr)
            continue
        if first is None:
            first = Mark()
        seen = handle(consumer, KafkaMessage.deserialize(record.value()), seen)
    end = Mark()
    consumer.close()
    return result(created, first, end, args.messages)


def single(args):
    """One message at a time; auto commit."""
    return consume(
        args,
        "single",
        single_config(args.bootstrap, args.group),
        lambda _consumer, _message, seen: seen + 1,
    )


def batch(args):
    """At least MIN_BATCH_SIZE messages buffered (fewer for the last), handled, then a
    synchronous commit."""
    buffer = []

    def handle(consumer, message, seen):
        buffer.append(message)
        if len(buffer) >= MIN_BATCH_SIZE or seen + len(buffer) >= args.messages:
            seen += len(buffer)
            buffer.clear()
            consumer.commit(asynchronous=False)
        return seen

    return consume(args, "batch", batch_config(args.bootstrap, args.group), handle)


def roundtrip(args):
    created = time.monotonic()
    assigned = threading.Event()
    consumer = Consumer(single_config(args.bootstrap, args.group))
    consumer.subscribe([args.topic], on_assign=lambda _c, parts: parts and assigned.set())
    samples = []
    errors = []

    def read():
        deadline = deadline_for(args.messages)
        while len(samples) < args.messages:
            if time.monotonic() > deadline:
                errors.append(f"roundtrip: {len(samples)} of {args.messages} messages in time")
                return
            record = consumer.poll(0.1)
            if record is None or record.error():
                continue
            message = KafkaMessage.deserialize(record.value())
            now = datetime.now()
            sent = datetime.fromisoformat(message.timestamp)
            sent_us = int(sent.timestamp() * 1_000_000)
            samples.append((sent_us, max(0, int((now - sent).total_seconds() * 1_000_000))))

    reader = threading.Thread(target=read)
    reader.start()
    if not assigned.wait(60):
        errors.append("roundtrip: the consumer was not assigned its partitions within 60 s")
    if errors:
        reader.join()
        fail(errors[0])
    start = Mark()
    producer = Producer(producer_config(args.bootstrap))
    deliveries = Deliveries(args.messages)
    send(producer, args.topic, args.messages, args.rate, deliveries)
    reader.join()
    end = Mark()
    consumer.close()
    if errors:
        fail(errors[0])
    # As kafkad-bench: messages sent before the producer's first acknowledgement waited for
    # its start-up (connections, producer id), not for the path under measurement.
    warm = deliveries.first.unix_us if deliveries.first else 0
    kept = [latency for sent, latency in samples if sent >= warm]
    return result(created, start, end, args.messages, kept or [l for _, l in samples])


def fail(message):
    print(f"seed_bench: {message}", file=sys.stderr)
    sys.exit(1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workload", choices=["produce", "single", "batch", "roundtrip"])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", default="seed-bench")
    parser.add_argument("--messages", type=int, required=True)
    parser.add_argument("--rate", type=float, default=1000.0)
    args = parser.parse_args()
    run = {"produce": produce, "single": single, "batch": batch, "roundtrip": roundtrip}
    print(json.dumps(run[args.workload](args)))


if __name__ == "__main__":
    main()
