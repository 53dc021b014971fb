//! `--role`: which loop this process runs.

use super::defaults::built_in;
use super::*;

/// Which loop this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Sends `KafkaMessage`s with counted delivery reports.
    Producer,
    /// Consumes one message at a time; offsets stored after processing, auto-committed.
    Single,
    /// Consumes in batches; commits last+1 per partition after each batch.
    Batch,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Producer => "producer",
            Role::Single => "single",
            Role::Batch => "batch",
        }
    }

    /// The consumer loop this role runs; `None` for the producer.
    pub fn consumer(self) -> Option<ConsumerRole> {
        match self {
            Role::Producer => None,
            Role::Single => Some(ConsumerRole::Single),
            Role::Batch => Some(ConsumerRole::Batch),
        }
    }

    /// The role's own librdkafka properties, as layers lowest first: the seed's settings for
    /// it.
    pub(super) fn kafka_defaults(self) -> Vec<toml::Table> {
        if self.consumer().is_none() {
            return vec![built_in(PRODUCER_DEFAULTS)];
        }
        let Some(toml::Value::Table(own)) = built_in(CONSUMER_ROLE_DEFAULTS).remove(self.as_str())
        else {
            unreachable!("the consumer roles' defaults have a table for each consumer role");
        };
        vec![built_in(CONSUMER_DEFAULTS), own]
    }

    pub(super) fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "producer" => Some(Role::Producer),
            "single" => Some(Role::Single),
            "batch" => Some(Role::Batch),
            _ => None,
        }
    }
}

/// The seed's producer: acks from all in-sync replicas, idempotence, ordered retries, lz4.
const PRODUCER_DEFAULTS: &str = r#"
[kafka]
"acks" = "all"
"enable.idempotence" = "true"
"delivery.timeout.ms" = "120000"
"max.in.flight.requests.per.connection" = "1"
"compression.type" = "lz4"
"linger.ms" = "5"
"#;

/// What both consumer roles share, below their own defaults.
const CONSUMER_DEFAULTS: &str = r#"
[kafka]
# A new group reads what the topic already holds, as the seed's consumers do.
"auto.offset.reset" = "earliest"
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

/// Each consumer role's own, side by side: its group, and what a fetch waits for. The
/// one-at-a-time consumer has a fetch answered as soon as a byte is there; the batch consumer's
/// waits for a kilobyte or 5 s, to fill its batches. (Their commit properties are the roles'
/// own: see [`super::OWNED_PROPERTIES`].)
const CONSUMER_ROLE_DEFAULTS: &str = r#"
[single.kafka]
"group.id" = "single-message-group"
"fetch.min.bytes" = "1"
"fetch.wait.max.ms" = "500"

[batch.kafka]
"group.id" = "batch-message-group"
"fetch.min.bytes" = "1024"
"fetch.wait.max.ms" = "5000"
"#;

/// The two consumer loops: a [`Role`] that consumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerRole {
    Single,
    Batch,
}

/// The librdkafka properties each consumer loop's guarantee rests on. kafkad sets them on the
/// consumer itself ([`ConsumerRole::owned_properties`]) and refuses them in `[kafka]`: an
/// offset is stored only once its record is finished, and what is stored is committed by
/// auto commit (single) or after each batch (batch).
pub const OWNED_PROPERTIES: [&str; 2] = ["enable.auto.commit", "enable.auto.offset.store"];

impl ConsumerRole {
    /// [`OWNED_PROPERTIES`] with this loop's values.
    pub fn owned_properties(self) -> [(&'static str, &'static str); 2] {
        let auto_commit = match self {
            ConsumerRole::Single => "true",
            ConsumerRole::Batch => "false",
        };
        [
            (OWNED_PROPERTIES[0], auto_commit),
            (OWNED_PROPERTIES[1], "false"),
        ]
    }

    pub fn role(self) -> Role {
        match self {
            ConsumerRole::Single => Role::Single,
            ConsumerRole::Batch => Role::Batch,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
