//! The built-in defaults, as TOML: the lowest configuration layer, the seed's settings for
//! each role.

use super::*;

/// Settings every role shares, as defaults. Kafka properties here apply to every client.
pub(super) const COMMON_DEFAULTS: &str = r#"
shutdown_timeout = "30s"
summary_interval = "10s"
stall_timeout = "2m"
max_record_bytes = 1048576

[http]
listen = "0.0.0.0:9464"

[log]
format = "text"
level = "info"

[topic]
name = "andrew-topic"
partitions = 3
replication_factor = 2

[kafka]
"bootstrap.servers" = "localhost:9092"
# Feeds consumer lag and broker connection state into /metrics (and producer readiness).
"statistics.interval.ms" = "5000"

[producer]
source = "generate"
format = "kafka_message"
count = 0
rate = 0.0
content = "Message {id} from {producer_id}"
payload_bytes = 0

[consumer]
format = "kafka_message"
concurrency = 1
ordering = "partition"
drain_timeout = "5s"

[batch]
min_size = 10
max_size = 500
max_wait = "5s"

[sink]
kind = "log"

[retry]
max_attempts = 5
initial = "1s"
max = "1m"
multiplier = 2.0
jitter = 0.2
max_elapsed = "24h"
on_exhausted = "dead_letter"
"#;

/// The seed's producer: acks from all in-sync replicas, idempotence, ordered retries, lz4.
pub(super) const PRODUCER_DEFAULTS: &str = r#"
[kafka]
"acks" = "all"
"enable.idempotence" = "true"
"delivery.timeout.ms" = "120000"
"max.in.flight.requests.per.connection" = "1"
"compression.type" = "lz4"
"linger.ms" = "5"
"#;

/// What both consumer roles share, below their own defaults.
pub(super) const CONSUMER_DEFAULTS: &str = r#"
[kafka]
# Memory and backlog throughput (see BENCHMARKS.md): prefetch at most 20000 messages per
# partition (librdkafka's 100000 takes a consumer reading a backlog past 64 MB of RSS), and
# refill the prefetch queue 10 ms after it drained (librdkafka waits 1 s, which capped a
# backlog at ~140k msgs/s on the bench).
"queued.min.messages" = "20000"
"fetch.queue.backoff.ms" = "10"
# One fetch brings at most 256 KiB per partition (librdkafka: 1 MiB). The limit counts
# compressed bytes: an lz4 megabyte of the seed's messages is ~18000 records, which one fetch
# added on top of the 20000 already queued, and took a consumer reading a backlog from Apache
# Kafka to 65-70 MiB of RSS; 256 KiB keeps it near 40 MiB at the same throughput.
"max.partition.fetch.bytes" = "262144"
"#;

/// The seed's one-at-a-time consumer (its commit properties are the role's own: see
/// [`super::OWNED_PROPERTIES`]).
pub(super) const SINGLE_DEFAULTS: &str = r#"
[kafka]
"group.id" = "single-message-group"
"fetch.min.bytes" = "1"
"fetch.wait.max.ms" = "500"
"auto.offset.reset" = "earliest"
"#;

/// The seed's batch consumer: commits after each processed batch.
pub(super) const BATCH_DEFAULTS: &str = r#"
[kafka]
"group.id" = "batch-message-group"
"fetch.min.bytes" = "1024"
"fetch.wait.max.ms" = "5000"
"auto.offset.reset" = "earliest"
"#;

/// The default layers of a role, lowest first (after [`COMMON_DEFAULTS`]).
pub(super) fn role_defaults(role: Role) -> &'static [&'static str] {
    match role {
        Role::Producer => &[PRODUCER_DEFAULTS],
        Role::Single => &[CONSUMER_DEFAULTS, SINGLE_DEFAULTS],
        Role::Batch => &[CONSUMER_DEFAULTS, BATCH_DEFAULTS],
    }
}
