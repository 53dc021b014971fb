//! Layered configuration.
//!
//! Lowest first: built-in defaults (the seed's settings for the role) < TOML file (`--config`)
//! < environment (`KAFKAD_*`) < command-line flags. Layering and merging are the `config`
//! crate's; kafkad's sources ([`sources`]) tag every value with where it came from, so each
//! error names the key and its file or variable, and `config print` shows the source of each
//! value.
//!
//! Values are parsed into types, not checked as strings: an address is a `SocketAddr`, the
//! sink an enum whose variants carry their own keys, a size that cannot be zero a `NonZero`.
//! Validation is strict: every struct denies unknown keys (a typo must not silently fall back
//! to a default), serde's complaint is mapped back to the key and the layer it came from, and
//! the `[kafka]` table goes through librdkafka's own `rd_kafka_conf_set` before anything
//! connects.

pub mod input;
pub mod kafka;
mod librdkafka_properties;
mod render;
pub mod sinks;
pub mod sources;
pub mod topics;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::time::Duration;

use config::{Map, Value, ValueKind};
use serde::{Deserialize, Serialize};

use crate::payload::Format;

pub use input::{InputSource, LineKey};
pub use kafka::{KafkaProperties, KafkaValue, PropertyError, Scope};
pub use librdkafka_properties::LIBRDKAFKA_VERSION;
pub use sinks::{Delivery, KafkaSinkSettings, OnConflict, PostgresSettings, ResolvedSecret};
use sources::{EnvSource, FlagSource, Origin, TomlSource};
pub use topics::{TopicPattern, TopicSelection};

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

    fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "producer" => Some(Role::Producer),
            "single" => Some(Role::Single),
            "batch" => Some(Role::Batch),
            _ => None,
        }
    }
}

/// The two consumer loops: a [`Role`] that consumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerRole {
    Single,
    Batch,
}

impl ConsumerRole {
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

/// Settings every role shares, as defaults. Kafka properties here apply to every client.
const COMMON_DEFAULTS: &str = r#"
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

/// The seed's one-at-a-time consumer. Auto commit stays on as in the seed, but
/// `enable.auto.offset.store = false`: kafkad stores an offset only once the message was
/// processed, so auto commit never commits a message that was not.
const SINGLE_DEFAULTS: &str = r#"
[kafka]
"group.id" = "single-message-group"
"enable.auto.commit" = "true"
"enable.auto.offset.store" = "false"
"fetch.min.bytes" = "1"
"fetch.wait.max.ms" = "500"
"auto.offset.reset" = "earliest"
"#;

/// The seed's batch consumer: manual commits after each processed batch.
const BATCH_DEFAULTS: &str = r#"
[kafka]
"group.id" = "batch-message-group"
"enable.auto.commit" = "false"
"enable.auto.offset.store" = "false"
"fetch.min.bytes" = "1024"
"fetch.wait.max.ms" = "5000"
"auto.offset.reset" = "earliest"
"#;

/// The default layers of a role, lowest first (after [`COMMON_DEFAULTS`]).
fn role_defaults(role: Role) -> &'static [&'static str] {
    match role {
        Role::Producer => &[PRODUCER_DEFAULTS],
        Role::Single => &[CONSUMER_DEFAULTS, SINGLE_DEFAULTS],
        Role::Batch => &[CONSUMER_DEFAULTS, BATCH_DEFAULTS],
    }
}

/// The effective configuration of one process.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The role to run; `None` only for sub-commands that need no role (`topic ensure`).
    pub role: Option<Role>,
    /// The topic and, for `topic ensure`, its shape.
    pub topic: TopicSettings,
    /// How long a graceful shutdown may take before kafkad gives up and exits 1.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// Dead-letter topic for records that cannot be decoded. Unset: `<topic>.dlq`.
    /// `""`: no dead-letter topic (bad records are only logged and counted, then skipped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dlq_topic: Option<String>,
    /// Records with a larger value are dead-lettered without being parsed.
    pub max_record_bytes: NonZeroUsize,
    /// How often each role logs a one-line summary (rates, totals, lag).
    #[serde(with = "humantime_serde")]
    pub summary_interval: Duration,
    /// How long a role may go without progress before `/healthz` answers 503: the producer
    /// without handing a message over; a consumer with work out (a sink call, a dead-letter
    /// copy) and none of it finished, with its poll loop not turning, or with a partition that
    /// has records waiting and delivers none. The default, 2 minutes, is longer than any one
    /// step of healthy work (a commit or a dead-letter delivery is bounded by librdkafka's
    /// 60 s `socket.timeout.ms`).
    #[serde(with = "humantime_serde")]
    pub stall_timeout: Duration,
    /// librdkafka properties, verbatim.
    pub kafka: KafkaTable,
    pub producer: ProducerSettings,
    pub consumer: ConsumerSettings,
    pub batch: BatchSettings,
    pub sink: SinkSettings,
    pub retry: RetrySettings,
    pub http: HttpSettings,
    pub log: LogSettings,
    /// The schema registry of the `avro`, `protobuf` and `json_schema` formats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_registry: Option<SchemaRegistrySettings>,
    /// `[kafka]` with secret references resolved; filled in by [`load`].
    #[serde(skip)]
    pub resolved_kafka: KafkaProperties,
    /// The http sink's `headers` with secret references resolved; filled in by [`load`].
    #[serde(skip)]
    pub resolved_sink_headers: ResolvedHeaders,
    /// The postgres sink's `password` with a secret reference resolved; filled in by [`load`].
    #[serde(skip)]
    pub resolved_sink_password: ResolvedSecret,
    /// The kafka sink's `[sink.kafka]` with secret references resolved; filled in by [`load`].
    #[serde(skip)]
    pub resolved_sink_kafka: KafkaProperties,
}

/// Header names and values ready to send; `Debug` never shows the values.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ResolvedHeaders(pub Vec<(String, String)>);

impl std::fmt::Debug for ResolvedHeaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(name, _)| (name, kafka::REDACTED)))
            .finish()
    }
}

/// `{ name = value }` entries as `config print` shows them: secret text (`is_secret` decides)
/// redacted, `{ file = ... }` and `{ env = ... }` references as written.
fn serialize_values<'a, S: serde::Serializer>(
    entries: impl Iterator<Item = (&'a String, &'a KafkaValue)>,
    len: usize,
    is_secret: fn(&str) -> bool,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut out = serializer.serialize_map(Some(len))?;
    for (name, value) in entries {
        match value {
            KafkaValue::Text(_) if is_secret(name) => out.serialize_entry(name, kafka::REDACTED)?,
            KafkaValue::Text(text) => out.serialize_entry(name, text)?,
            KafkaValue::FromFile(path) => out.serialize_entry(
                name,
                &Map::from([("file".to_owned(), path.display().to_string())]),
            )?,
            KafkaValue::FromEnv(var) => {
                out.serialize_entry(name, &Map::from([("env".to_owned(), var.clone())]))?
            }
        }
    }
    out.end()
}

/// The `[kafka]` table as written. Neither `config print` (see `serialize_values`) nor
/// `Debug` shows a secret: logging the settings is safe.
#[derive(Clone, Default, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct KafkaTable(pub Map<String, KafkaValue>);

impl std::fmt::Debug for KafkaTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = |name: &str, value: &KafkaValue| match value {
            KafkaValue::Text(_) if kafka::is_secret(name) => kafka::REDACTED.to_owned(),
            KafkaValue::Text(text) => text.clone(),
            KafkaValue::FromFile(path) => format!("{{ file = {} }}", path.display()),
            KafkaValue::FromEnv(var) => format!("{{ env = {var} }}"),
        };
        f.debug_map()
            .entries(
                self.0
                    .iter()
                    .map(|(name, value)| (name, shown(name, value))),
            )
            .finish()
    }
}

impl Serialize for KafkaTable {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_values(self.0.iter(), self.0.len(), kafka::is_secret, serializer)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicSettings {
    /// The topics the roles use: one, a list, or a pattern (`[topic] name`, or `topic` at the
    /// top level as shorthand; see [`topics`]).
    #[serde(rename = "name")]
    pub selection: TopicSelection,
    /// The one topic of `selection`, for what reads or writes exactly one: the producer, a
    /// consumer with a sink keeping positions, a replay. Empty for a list or a pattern;
    /// filled in by [`load`].
    #[serde(skip)]
    pub name: String,
    /// Partitions `topic ensure` creates or expects.
    pub partitions: i32,
    /// Replication factor `topic ensure` creates or expects.
    pub replication_factor: i32,
    /// Topic configuration (`min.insync.replicas`, `retention.ms`, ...) `topic ensure` creates
    /// the topic with and expects of an existing one, passed to Kafka verbatim.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

impl TopicSettings {
    /// The `min.insync.replicas` a topic gets when `config` does not say: 2 where there are
    /// at least two replicas, so an `acks=all` write is on two brokers before it counts as
    /// written and one broker's loss cannot take it (with 2 replicas, writes then wait while
    /// either is down, which the producer retries until `delivery.timeout.ms`); 1 for a single
    /// replica, the only value it can meet.
    pub fn default_min_insync_replicas(&self) -> i32 {
        self.replication_factor.clamp(1, 2)
    }

    /// What `topic ensure` creates the topic with: `config`, plus the default
    /// `min.insync.replicas` unless `config` sets it.
    pub fn creation_config(&self) -> BTreeMap<String, String> {
        let mut config = self.config.clone();
        config
            .entry(MIN_INSYNC_REPLICAS.to_owned())
            .or_insert_with(|| self.default_min_insync_replicas().to_string());
        config
    }
}

/// The topic config that decides how many replicas hold an `acks=all` write.
pub const MIN_INSYNC_REPLICAS: &str = "min.insync.replicas";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProducerSettings {
    /// Where records come from: the seed's messages made up, or lines of real input.
    pub source: InputSource,
    /// What a line of input is, and so the records' values: `kafka_message` (each line one
    /// of the seed's messages, checked), `json`, `text` or `bytes`. `generate` makes
    /// `kafka_message`s.
    pub format: Format,
    /// Where a line's key comes from; unset, lines are sent without a key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<LineKey>,
    /// Headers every record carries, name = text.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Messages to send before flushing and exiting; 0 sends until stopped.
    pub count: u64,
    /// Messages per second; 0 sends as fast as librdkafka accepts them.
    pub rate: f64,
    /// Identifies this producer in every message. Unset: `<host name>-<pid>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub producer_id: Option<String>,
    /// Message text; `{id}` and `{producer_id}` are replaced.
    pub content: String,
    /// Pads `content` with this many extra bytes, for load tests.
    pub payload_bytes: usize,
}

impl ProducerSettings {
    /// The configured id, or `<host name>-<pid>`, unique per process on a host.
    pub fn producer_id(&self) -> String {
        self.producer_id
            .clone()
            .filter(|id| !id.is_empty())
            .unwrap_or_else(|| format!("{}-{}", host_name(), std::process::id()))
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "kafkad".to_owned())
}

/// How a consumer hands records to its sink: `[consumer]`.
///
/// The thread that polls Kafka never calls the sink: `concurrency` workers do, each with a
/// sink of its own, while the poll loop keeps serving rebalances and heartbeats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerSettings {
    /// What the records' values are (see [`crate::payload`]): the seed's `kafka_message`,
    /// `json`, `text`, `bytes`, or a schema registry's `avro`, `protobuf`, `json_schema`.
    pub format: Format,
    /// Sink calls in flight at once: a record (single) or a batch (batch) each. 1 (the
    /// default) processes one at a time, as the seed does; more pays off when the sink waits
    /// on a slow downstream.
    pub concurrency: NonZeroUsize,
    /// What keeps its order when several calls run at once: `partition` (the records of one
    /// partition reach the sink one after another) or `key` (the records of one key do; one
    /// partition's keys run side by side).
    pub ordering: ProcessingOrder,
    /// How long a rebalance waits for work in flight on the partitions it takes away, so that
    /// it can be committed before they move; what is still running then is processed again
    /// by the next owner.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
}

/// Which records the sink receives in the order they have in Kafka.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessingOrder {
    /// The records of one partition, one after another.
    Partition,
    /// The records of one key, one after another (records without a key count as one key
    /// per partition).
    Key,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchSettings {
    /// A batch is processed once it holds this many records and no more are waiting...
    pub min_size: NonZeroUsize,
    /// ...or as soon as it holds this many (at least `min_size`)...
    pub max_size: NonZeroUsize,
    /// ...or when its first record has waited this long, however few it holds.
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
}

/// Where processed messages go: `[sink]`, its `kind` choosing the variant, each variant with
/// its own keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum SinkSettings {
    /// Logs each message (single) or a summary per batch.
    Log {},
    /// Appends one JSON line per processed message to `path`.
    Jsonl {
        /// The file to append to; created if missing.
        path: PathBuf,
    },
    /// POSTs each message (single) or each batch as a JSON array (batch) to `url`; any 2xx
    /// answer means processed.
    Http {
        /// `http://` or `https://` address to POST to.
        url: String,
        /// How long one request may take, connecting included, before it counts as a
        /// (retryable) failure.
        #[serde(default = "default_sink_timeout", with = "humantime_serde")]
        timeout: Duration,
        /// Extra request headers. A value may be `{ file = "/path" }` or `{ env = "VAR" }` so
        /// a token stays out of the file; `config print` and logs never show the values of
        /// references, nor of headers whose names look secret (authorization, token, key...).
        #[serde(default)]
        headers: SinkHeaders,
    },
    /// Runs `command` (program and arguments) per message or batch, writing the messages to
    /// its standard input as JSON lines; exit status 0 means processed.
    Command {
        /// The program and its arguments, e.g. `["sh", "-c", "cat >> /data/out.jsonl"]`.
        command: Vec<String>,
        /// How long one run may take before it is killed (a retryable failure).
        #[serde(default = "default_sink_timeout", with = "humantime_serde")]
        timeout: Duration,
    },
    /// Inserts one row per message into a PostgreSQL table; with `delivery = "exactly_once"`
    /// (the default) the consumer's next offsets are written in the same transaction.
    Postgres(PostgresSettings),
    /// Produces each message to an output topic; with `delivery = "exactly_once"` (the
    /// default) inside a Kafka transaction that also commits the consumer's offsets.
    Kafka(KafkaSinkSettings),
}

impl SinkSettings {
    /// The delivery mode of a sink that can take part in a transaction, `None` for the others.
    pub fn delivery(&self) -> Option<Delivery> {
        match self {
            SinkSettings::Postgres(postgres) => Some(postgres.delivery),
            SinkSettings::Kafka(kafka) => Some(kafka.delivery),
            _ => None,
        }
    }
}

fn default_sink_timeout() -> Duration {
    Duration::from_secs(30)
}

/// Whether an http sink header carries a credential by its name.
fn is_secret_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "authorization",
        "cookie",
        "token",
        "secret",
        "key",
        "password",
    ]
    .iter()
    .any(|word| name.contains(word))
}

/// The http sink's extra headers as written. Serialized (`config print`) and debug-printed
/// without secrets: references show where the value comes from, plain values of secret-looking
/// names show as redacted, and `Debug` shows no value at all.
#[derive(Clone, Default, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct SinkHeaders(pub BTreeMap<String, KafkaValue>);

impl std::fmt::Debug for SinkHeaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.0.keys().map(|name| (name, kafka::REDACTED)))
            .finish()
    }
}

impl Serialize for SinkHeaders {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_headers(&self.0, serializer)
    }
}

fn serialize_headers<S: serde::Serializer>(
    headers: &BTreeMap<String, KafkaValue>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serialize_values(headers.iter(), headers.len(), is_secret_header, serializer)
}

/// The schema registry the schema'd formats take their schemas from: `[schema_registry]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaRegistrySettings {
    /// Its address, with the path of its Confluent-compatible API where it has one
    /// (Apicurio Registry: `http://host:8080/apis/ccompat/v7`).
    pub url: String,
    /// How long one request may take, connecting included.
    #[serde(default = "default_registry_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_registry_timeout() -> Duration {
    Duration::from_secs(10)
}

/// What a consumer does when the sink fails to process a record or batch: `[retry]`.
///
/// A retryable failure (timeout, connection refused, HTTP 408/429/5xx, a command killed by its
/// timeout) is tried again after `initial`, then after each delay times `multiplier`, never
/// more than `max` (a downstream's `Retry-After` is honoured as the least delay), each delay
/// varied by up to `jitter` (a fraction) either way so a fleet of consumers does not retry in
/// step. The record's partition waits meanwhile while the consumer keeps polling, so it stays
/// in its group however long the outage.
///
/// A permanent failure (an HTTP 4xx, a record the downstream rejects) goes to `on_exhausted`
/// at once. A retryable one does after `max_attempts` attempts; but before a dead-letter copy
/// is made, the sink must have accepted other records meanwhile (the downstream is up: this
/// record is the problem). While it accepts nothing (an outage), attempts go on every `max`
/// until `max_elapsed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySettings {
    /// Attempts per record (single) or batch (batch), the first included.
    pub max_attempts: NonZeroU32,
    /// The delay before the second attempt.
    #[serde(with = "humantime_serde")]
    pub initial: Duration,
    /// The longest delay between two attempts.
    #[serde(with = "humantime_serde")]
    pub max: Duration,
    /// Each delay is the previous one times this (at least 1).
    pub multiplier: f64,
    /// Each delay varies randomly by up to this fraction of itself (0 to 1).
    pub jitter: f64,
    /// How long a record (or batch) may keep failing with retryable errors while the sink
    /// accepts nothing else, before it is given up. A downstream outage is waited out, not
    /// dead-lettered, for this long: 24 hours by default, longer than any outage someone is
    /// alerted to and fixes, and well inside Kafka's default 7-day retention, so the records
    /// waited for are still there when it ends.
    #[serde(with = "humantime_serde")]
    pub max_elapsed: Duration,
    /// What happens to a record whose attempts are used up.
    pub on_exhausted: OnExhausted,
}

impl RetrySettings {
    /// The waits between attempts.
    pub fn backoff(&self) -> crate::backoff::Backoff {
        crate::backoff::Backoff {
            initial: self.initial,
            multiplier: self.multiplier,
            max: self.max,
            jitter: self.jitter,
        }
    }
}

/// What happens to a record the sink failed to process `max_attempts` times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnExhausted {
    /// Copy it to the dead-letter topic (`kafkad.error.kind = processing_failed`) and move on.
    DeadLetter,
    /// Stop the consumer with exit 1, the record uncommitted.
    Stop,
}

/// The HTTP endpoint: `/metrics`, `/healthz`, `/readyz`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// Address to listen on, e.g. `0.0.0.0:9464`; `""` (`None`) turns the endpoint off.
    #[serde(with = "listen_address")]
    pub listen: Option<SocketAddr>,
}

/// `[http] listen` as written: an address, or `""` for none.
mod listen_address {
    use std::net::SocketAddr;

    use serde::{de, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        listen: &Option<SocketAddr>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match listen {
            Some(addr) => serializer.collect_str(addr),
            None => serializer.serialize_str(""),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<SocketAddr>, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text.is_empty() {
            return Ok(None);
        }
        text.parse().map(Some).map_err(|_| {
            de::Error::custom(format_args!(
                "`{text}` is not an address like 0.0.0.0:9464 (\"\" turns the endpoint off)"
            ))
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, with the role's span fields.
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    /// A tracing filter (`info`, `kafkad=debug,librdkafka=info`); `RUST_LOG` overrides it.
    pub level: String,
}

impl Settings {
    /// librdkafka's `client.id` unless `[kafka]` sets one: `kafkad-<role>-<instance>`, the
    /// instance being the producer id for a producer and `<host name>-<pid>` otherwise (in a
    /// pod the host name is the pod's name). librdkafka's own default, `rdkafka`, is the same
    /// for every member, so the brokers' logs, request metrics and `kafka-consumer-groups
    /// --describe` could not tell the instances apart.
    pub fn default_client_id(&self) -> String {
        let instance = match self.role {
            Some(Role::Producer) => self.producer.producer_id(),
            _ => format!("{}-{}", host_name(), std::process::id()),
        };
        match self.role {
            Some(role) => format!("kafkad-{role}-{instance}"),
            None => format!("kafkad-{instance}"),
        }
    }

    /// The dead-letter topic of the one topic `topic.name`, or `None` where the operator
    /// disabled it with `dlq_topic = ""`.
    pub fn dlq_topic(&self) -> Option<String> {
        self.dead_letter_topic_of(&self.topic.name)
    }

    /// Where a bad record of `topic` goes: `dlq_topic`, else `<topic>.dlq`; `None` where
    /// dead-lettering is off (`dlq_topic = ""`).
    pub fn dead_letter_topic_of(&self, topic: &str) -> Option<String> {
        match &self.dlq_topic {
            None => Some(format!("{topic}.dlq")),
            Some(dlq) if dlq.is_empty() => None,
            Some(dlq) => Some(dlq.clone()),
        }
    }
}

/// A configuration problem, always one line naming the key and where its value came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}", path.display())]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {} is not valid TOML{}: {message}", path.display(), .at.map(|at| format!(" at {at}")).unwrap_or_default())]
    Syntax {
        path: PathBuf,
        at: Option<sources::Position>,
        message: String,
    },
    #[error("unknown key `{key}` ({origin}); {hint}")]
    UnknownKey {
        key: String,
        origin: String,
        hint: String,
    },
    #[error("`{key}` ({origin}): {message}")]
    Invalid {
        key: String,
        origin: String,
        message: String,
    },
    #[error("no role given: pass --role producer|single|batch, set `role` in the config file, or set KAFKAD_ROLE")]
    NoRole,
}

/// What the command line asks for; the environment is passed in so tests need not touch the
/// process environment.
#[derive(Debug, Clone, Default)]
pub struct LoadRequest {
    /// `--config`.
    pub file: Option<PathBuf>,
    /// `--role`.
    pub role: Option<Role>,
    /// `--topic`.
    pub topic: Option<String>,
    /// `--set KEY=VALUE`, in order.
    pub overrides: Vec<(String, String)>,
    /// The environment (normally `std::env::vars()`).
    pub env: Vec<(String, String)>,
    /// Whether the command needs a role (`run`) or works without one (`topic ensure`).
    pub role_required: bool,
}

impl LoadRequest {
    /// A request that reads the real process environment.
    pub fn with_process_env(mut self) -> Self {
        self.env = std::env::vars().collect();
        self
    }
}

/// Merged settings plus the merged value tree they came from (which keeps each value's origin).
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub settings: Settings,
    /// `KAFKAD_*` variables Kubernetes injected for a Service, set aside rather than read as
    /// configuration (see [`sources::is_service_link`]), by name.
    pub service_links: Vec<String>,
    tree: Map<String, Value>,
}

/// Loads, layers and validates the configuration.
pub fn load(request: &LoadRequest) -> Result<LoadedConfig, ConfigError> {
    let file = request.file.as_deref().map(TomlSource::file).transpose()?;
    let env = EnvSource::new(&request.env)?;
    let mut flags = FlagSource::default();
    if let Some(role) = request.role {
        flags.set("role", role.as_str(), "--role");
    }
    if let Some(topic) = &request.topic {
        flags.set("topic", topic, "--topic");
    }
    for (key, value) in &request.overrides {
        flags.set(key, value, &format!("--set {key}"));
    }

    // The role picks the defaults, so it is read from the upper layers first.
    let upper = build(None, file.as_ref(), &env, &flags)?;
    let role = match upper.get("role") {
        None => None,
        Some(value) => {
            let text = value.clone().into_string().unwrap_or_default();
            Some(Role::parse(&text).ok_or_else(|| ConfigError::Invalid {
                key: "role".to_owned(),
                origin: Origin::describe(value.origin()),
                message: format!("unknown role `{text}`; allowed: producer, single, batch"),
            })?)
        }
    };
    if role.is_none() && request.role_required {
        return Err(ConfigError::NoRole);
    }

    let tree = build(role, file.as_ref(), &env, &flags)?;
    let mut settings: Settings = Value::new(None, ValueKind::Table(tree.clone()))
        .try_deserialize()
        .map_err(|e| deserialize_error(e, &tree))?;
    settings.role = role;
    settings.topic.name = settings
        .topic
        .selection
        .single()
        .unwrap_or_default()
        .to_owned();
    settings.resolved_kafka = resolve_kafka(&settings.kafka.0, &request.env, &tree)?;
    if settings.resolved_kafka.get("client.id").is_none() {
        let client_id = settings.default_client_id();
        settings.resolved_kafka.set("client.id", client_id);
    }
    settings.resolved_sink_headers = resolve_sink_headers(&settings.sink, &request.env, &tree)?;
    match &settings.sink {
        SinkSettings::Postgres(postgres) => {
            if let Some(password) = &postgres.password.0 {
                let text = resolve_value(password, "sink.password", &request.env, &tree)?;
                settings.resolved_sink_password = ResolvedSecret(Some(text));
            }
        }
        SinkSettings::Kafka(kafka) => {
            settings.resolved_sink_kafka = sinks::output_properties(
                &settings.resolved_kafka,
                &kafka.kafka.0,
                |name, value| {
                    resolve_value(value, &format!("sink.kafka.{name}"), &request.env, &tree)
                },
            )?;
        }
        _ => {}
    }
    validate(&settings, &tree)?;
    Ok(LoadedConfig {
        settings,
        service_links: env.service_links,
        tree,
    })
}

fn build(
    role: Option<Role>,
    file: Option<&TomlSource>,
    env: &EnvSource,
    flags: &FlagSource,
) -> Result<Map<String, Value>, ConfigError> {
    let mut builder = config::Config::builder().add_source(TomlSource::defaults(COMMON_DEFAULTS));
    for layer in role.map(role_defaults).unwrap_or_default() {
        builder = builder.add_source(TomlSource::defaults(layer));
    }
    if let Some(file) = file {
        builder = builder.add_source(file.clone());
    }
    let merged = builder
        .add_source(env.clone())
        .add_source(flags.clone())
        .build()
        .and_then(|c| config::Source::collect(&c))
        .map_err(|e| ConfigError::Invalid {
            key: "(configuration)".to_owned(),
            origin: "merge".to_owned(),
            message: e.to_string(),
        })?;
    Ok(merged)
}

/// The origin of a value, or of the first leaf under a table.
fn first_origin(value: &Value) -> Option<&str> {
    match &value.kind {
        ValueKind::Table(table) => table.values().find_map(first_origin),
        _ => value.origin(),
    }
}

/// Looks a dotted key up in the merged tree (keeping `[kafka]` names whole).
fn lookup<'t>(tree: &'t Map<String, Value>, key: &str) -> Option<&'t Value> {
    let path = sources::split_key(key);
    let mut current = tree.get(&path[0])?;
    for segment in &path[1..] {
        let ValueKind::Table(table) = &current.kind else {
            return None;
        };
        current = table.get(segment)?;
    }
    Some(current)
}

fn origin_of(tree: &Map<String, Value>, key: &str) -> String {
    Origin::describe(lookup(tree, key).and_then(first_origin))
}

/// A serde error while reading the merged tree, as a [`ConfigError`] naming the key and the
/// layer its value came from. The `config` crate tells the table a failing value sits in;
/// serde's message tells the rest (an unknown or missing key, or the value's problem).
fn deserialize_error(error: config::ConfigError, tree: &Map<String, Value>) -> ConfigError {
    let (table, message) = match error {
        config::ConfigError::Type {
            key,
            unexpected,
            expected,
            ..
        } => (key, format!("expected {expected}, found {unexpected}")),
        config::ConfigError::At { error, key, .. } => (key, error.to_string()),
        // A key a struct or variant needs and nothing set.
        config::ConfigError::NotFound(key) => match key.rsplit_once('.') {
            Some((table, field)) => (Some(table.to_owned()), format!("missing field `{field}`")),
            None => (None, format!("missing field `{key}`")),
        },
        other => (None, other.to_string()),
    };
    let message = message
        .replace('\n', " ")
        .replace("a nonzero usize", "a whole number above 0")
        .replace("a nonzero u32", "a whole number above 0");
    let within = |field: &str| match &table {
        Some(table) => format!("{table}.{field}"),
        None => field.to_owned(),
    };
    // In a table whose `kind` chooses its variant (`[sink]`), that choice decides which
    // keys belong: it is named with the error.
    let kind_key = within("kind");
    let kind = lookup(tree, &kind_key)
        .filter(|_| table.is_some())
        .and_then(|value| value.clone().into_string().ok());
    // `unknown field `x`, expected one of `a`, `b`` (or `there are no fields`).
    if let Some((field, allowed)) = quoted_after(&message, "unknown field ") {
        let allowed = allowed.trim_start_matches([',', ' ']);
        let hint = match (&kind, allowed) {
            (Some(kind), "there are no fields") => {
                format!("`{kind_key} = \"{kind}\"` takes no other key")
            }
            (Some(kind), allowed) => format!(
                "with `{kind_key} = \"{kind}\"` allowed: {}",
                allowed.trim_start_matches("expected ")
            ),
            (None, allowed) => format!("allowed: {}", allowed.trim_start_matches("expected ")),
        };
        let key = within(field);
        return ConfigError::UnknownKey {
            origin: origin_of(tree, &key),
            hint,
            key,
        };
    }
    // A missing key: `[sink] kind = "jsonl"` without `path`, named with the `kind` (and its
    // layer) that asked for it.
    if let Some((field, _)) = quoted_after(&message, "missing field ") {
        let key = within(field);
        return match kind {
            Some(kind) => ConfigError::Invalid {
                origin: origin_of(tree, &kind_key),
                message: format!("missing; `{kind_key} = \"{kind}\"` needs it"),
                key,
            },
            None => ConfigError::Invalid {
                origin: origin_of(tree, &key),
                message: "missing".to_owned(),
                key,
            },
        };
    }
    // `unknown variant `x`, expected ...`: the table's `kind` chose no known variant.
    let key = match (&table, &kind) {
        (Some(_), Some(_)) if message.starts_with("unknown variant") => kind_key,
        _ => table.unwrap_or_else(|| "(configuration)".to_owned()),
    };
    ConfigError::Invalid {
        origin: origin_of(tree, &key),
        key,
        message,
    }
}

/// The first backquoted word after `prefix` at the start of `message`, and the rest.
fn quoted_after<'m>(message: &'m str, prefix: &str) -> Option<(&'m str, &'m str)> {
    let rest = message.strip_prefix(prefix)?.strip_prefix('`')?;
    rest.split_once('`')
}

fn resolve_kafka(
    kafka: &Map<String, KafkaValue>,
    env: &[(String, String)],
    tree: &Map<String, Value>,
) -> Result<KafkaProperties, ConfigError> {
    let mut resolved = std::collections::BTreeMap::new();
    for (name, value) in kafka {
        let text = resolve_value(value, &format!("kafka.{name}"), env, tree)?;
        resolved.insert(name.clone(), text);
    }
    Ok(KafkaProperties::new(resolved))
}

/// `value` (configured at `key`) as text: a `{ file }` or `{ env }` reference read.
fn resolve_value(
    value: &KafkaValue,
    key: &str,
    env: &[(String, String)],
    tree: &Map<String, Value>,
) -> Result<String, ConfigError> {
    match value {
        KafkaValue::Text(text) => Ok(text.clone()),
        KafkaValue::FromFile(path) => read_secret_file(path)
            .map_err(|e| invalid(tree, key, format!("cannot read {}: {e}", path.display()))),
        KafkaValue::FromEnv(var) => env
            .iter()
            .find(|(name, _)| name == var)
            .map(|(_, value)| value.clone())
            .ok_or_else(|| invalid(tree, key, format!("environment variable {var} is not set"))),
    }
}

/// The http sink's headers with `{ file }` and `{ env }` references read.
fn resolve_sink_headers(
    sink: &SinkSettings,
    env: &[(String, String)],
    tree: &Map<String, Value>,
) -> Result<ResolvedHeaders, ConfigError> {
    let SinkSettings::Http { headers, .. } = sink else {
        return Ok(ResolvedHeaders::default());
    };
    let mut resolved = Vec::with_capacity(headers.0.len());
    for (name, value) in &headers.0 {
        let key = format!("sink.headers.{name}");
        let text = resolve_value(value, &key, env, tree)?;
        if ureq::http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(invalid(tree, &key, "is not a valid HTTP header name"));
        }
        if ureq::http::HeaderValue::from_str(&text).is_err() {
            return Err(invalid(
                tree,
                &key,
                "the value is not a valid HTTP header value (control characters?)",
            ));
        }
        resolved.push((name.clone(), text));
    }
    Ok(ResolvedHeaders(resolved))
}

/// A secret file's content without the trailing newline editors and `echo` add.
fn read_secret_file(path: &Path) -> std::io::Result<String> {
    let text = std::fs::read_to_string(path)?;
    Ok(text.trim_end_matches(['\n', '\r']).to_owned())
}

/// A value that serde read but kafkad cannot accept, naming the key and its layer.
fn invalid(tree: &Map<String, Value>, key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        origin: origin_of(tree, key),
        message: message.into(),
    }
}

/// Checks what the types cannot: value ranges, librdkafka's view of `[kafka]`, and settings
/// that would break a role's guarantee.
fn validate(settings: &Settings, tree: &Map<String, Value>) -> Result<(), ConfigError> {
    check_ranges(settings, tree)?;
    let kafka = &settings.resolved_kafka;
    kafka.validate().map_err(|error| {
        let key = format!("kafka.{}", error.name);
        invalid(tree, &key, error.to_string())
    })?;
    check_guarantees(settings.role, kafka, tree)
}

/// Values in range: names not empty, counts and durations above 0, the batch limits in order,
/// a log filter that parses.
fn check_ranges(settings: &Settings, tree: &Map<String, Value>) -> Result<(), ConfigError> {
    let fail = |key: &str, message: &str| Err(invalid(tree, key, message));
    topics::check(settings, tree)?;
    check_formats(settings, tree)?;
    if settings.topic.partitions < 1 {
        return fail("topic.partitions", "must be at least 1");
    }
    if settings.topic.replication_factor < 1 {
        return fail("topic.replication_factor", "must be at least 1");
    }
    check_topic_config(&settings.topic, tree)?;
    for (key, duration, example) in [
        ("shutdown_timeout", settings.shutdown_timeout, "30s"),
        ("summary_interval", settings.summary_interval, "10s"),
        ("stall_timeout", settings.stall_timeout, "2m"),
        ("batch.max_wait", settings.batch.max_wait, "5s"),
    ] {
        if duration.is_zero() {
            return fail(key, &format!("must be above 0 (e.g. \"{example}\")"));
        }
    }
    if !(settings.producer.rate >= 0.0 && settings.producer.rate.is_finite()) {
        return fail(
            "producer.rate",
            "must be 0 (unlimited) or a positive number of messages per second",
        );
    }
    if settings.batch.max_size < settings.batch.min_size {
        return fail(
            "batch.max_size",
            &format!(
                "must be at least batch.min_size ({})",
                settings.batch.min_size
            ),
        );
    }
    if let Err(error) = tracing_subscriber::EnvFilter::try_new(&settings.log.level) {
        return fail("log.level", &format!("not a log filter: {error}"));
    }
    check_retry(&settings.retry, tree)?;
    check_sink(&settings.sink, tree)?;
    check_transactional_sink(settings, tree)
}

/// The formats each role can use, and what they need: a registry for the schema'd formats,
/// the producer's input for its format and key.
fn check_formats(settings: &Settings, tree: &Map<String, Value>) -> Result<(), ConfigError> {
    let fail = |key: &str, message: String| Err(invalid(tree, key, message));
    if let Some(registry) = &settings.schema_registry {
        if registry.timeout.is_zero() {
            return fail(
                "schema_registry.timeout",
                "must be above 0 (e.g. \"10s\")".to_owned(),
            );
        }
        match registry.url.parse::<ureq::http::Uri>() {
            Ok(uri)
                if matches!(uri.scheme_str(), Some("http" | "https"))
                    && uri.host().is_some_and(|h| !h.is_empty()) => {}
            _ => {
                return fail(
                    "schema_registry.url",
                    format!(
                        "`{}` is not an http:// or https:// address with a host",
                        registry.url
                    ),
                )
            }
        }
    }
    let consumer_format = settings.consumer.format;
    if matches!(settings.role, Some(Role::Single | Role::Batch))
        && consumer_format.schema_framing().is_some()
        && settings.schema_registry.is_none()
    {
        return fail(
            "schema_registry.url",
            format!("missing; `consumer.format = \"{consumer_format}\"` takes its schemas from a schema registry ([schema_registry] url = \"http://host:8081\")"),
        );
    }
    let message_sink = match &settings.sink {
        SinkSettings::Postgres(_) => Some("postgres"),
        SinkSettings::Kafka(_) => Some("kafka"),
        _ => None,
    };
    if let (Some(Role::Single | Role::Batch), Some(sink)) = (settings.role, message_sink) {
        if consumer_format != Format::KafkaMessage {
            return fail(
                "consumer.format",
                format!("the {sink} sink writes the seed's message (kafka_message), not {consumer_format}; records of other formats go to the jsonl, http, command or log sink"),
            );
        }
    }
    if settings.role != Some(Role::Producer) {
        return Ok(());
    }
    let producer = &settings.producer;
    if let InputSource::File(path) = &producer.source {
        let readable = std::fs::metadata(path).and_then(|meta| match meta.is_dir() {
            true => Err(std::io::Error::other("it is a directory")),
            false => std::fs::File::open(path).map(drop),
        });
        if let Err(error) = readable {
            return fail(
                "producer.source",
                format!("cannot read {}: {error}", path.display()),
            );
        }
    }
    match (&producer.source, producer.format) {
        (_, format) if format.schema_framing().is_some() => fail(
            "producer.format",
            format!("the producer sends kafka_message, json, text or bytes, not {format} (it registers no schemas)"),
        ),
        (InputSource::Generate, Format::KafkaMessage) => match producer.key {
            Some(_) => fail(
                "producer.key",
                "applies to lines of input (source = \"stdin\" or { file = ... }); generated messages are keyed by their id".to_owned(),
            ),
            None => Ok(()),
        },
        (InputSource::Generate, format) => fail(
            "producer.format",
            format!("source = \"generate\" makes the seed's messages (kafka_message), not {format}; send your own data with source = \"stdin\" or {{ file = \"/path\" }}"),
        ),
        (_, format) => match &producer.key {
            Some(LineKey::Field(_)) if format != Format::Json => fail(
                "producer.key",
                format!("a key field is read from a JSON object: it needs format = \"json\", not {format}"),
            ),
            Some(LineKey::Delimiter(delimiter)) if delimiter.is_empty() || delimiter.contains('\n') => fail(
                "producer.key",
                "a key delimiter is at least one character and no line end".to_owned(),
            ),
            Some(LineKey::Field(field)) if field.is_empty() => {
                fail("producer.key", "names a field: { field = \"user_id\" }".to_owned())
            }
            _ => Ok(()),
        },
    }
}

/// Topic config names as Kafka spells them (the broker judges the names and values when it
/// creates the topic), and a `min.insync.replicas` the replicas can meet.
fn check_topic_config(topic: &TopicSettings, tree: &Map<String, Value>) -> Result<(), ConfigError> {
    for (name, value) in &topic.config {
        let key = format!("topic.config.{name}");
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.')
        {
            return Err(invalid(
                tree,
                &key,
                "is not a topic config name: Kafka's are lowercase words joined by dots, e.g. retention.ms",
            ));
        }
        if name == MIN_INSYNC_REPLICAS {
            match value.trim().parse::<i32>() {
                Ok(n) if (1..=topic.replication_factor).contains(&n) => {}
                Ok(n) if n > topic.replication_factor => {
                    return Err(invalid(
                        tree,
                        &key,
                        format!(
                            "{n} is more than the {} replicas of topic.replication_factor: every acks=all write would be refused",
                            topic.replication_factor
                        ),
                    ))
                }
                _ => {
                    return Err(invalid(
                        tree,
                        &key,
                        format!(
                            "`{value}` is not a number of replicas from 1 to topic.replication_factor ({})",
                            topic.replication_factor
                        ),
                    ))
                }
            }
        }
    }
    Ok(())
}

/// The backoff in order: delays above 0, `max` not below `initial`, a growing multiplier, a
/// jitter fraction.
fn check_retry(retry: &RetrySettings, tree: &Map<String, Value>) -> Result<(), ConfigError> {
    let fail = |key: &str, message: String| Err(invalid(tree, key, message));
    if retry.initial.is_zero() {
        return fail("retry.initial", "must be above 0 (e.g. \"1s\")".to_owned());
    }
    if retry.max_elapsed.is_zero() {
        return fail(
            "retry.max_elapsed",
            "must be above 0 (e.g. \"24h\")".to_owned(),
        );
    }
    if retry.max < retry.initial {
        return fail(
            "retry.max",
            format!(
                "must be at least retry.initial ({})",
                humantime::format_duration(retry.initial)
            ),
        );
    }
    if !(retry.multiplier.is_finite() && retry.multiplier >= 1.0) {
        return fail(
            "retry.multiplier",
            "must be a number of at least 1 (1 keeps the delay constant)".to_owned(),
        );
    }
    if !(0.0..=1.0).contains(&retry.jitter) {
        return fail(
            "retry.jitter",
            "must be a fraction from 0 to 1 (0.2 varies each delay by up to 20%)".to_owned(),
        );
    }
    Ok(())
}

/// What can be known about a sink before it runs: the URL parses, the command exists.
fn check_sink(sink: &SinkSettings, tree: &Map<String, Value>) -> Result<(), ConfigError> {
    let fail = |key: &str, message: String| Err(invalid(tree, key, message));
    match sink {
        // The sinks taking part in a transaction: check_transactional_sink.
        SinkSettings::Log {}
        | SinkSettings::Jsonl { .. }
        | SinkSettings::Postgres(_)
        | SinkSettings::Kafka(_) => Ok(()),
        SinkSettings::Http { url, timeout, .. } => {
            if timeout.is_zero() {
                return fail("sink.timeout", "must be above 0 (e.g. \"30s\")".to_owned());
            }
            match url.parse::<ureq::http::Uri>() {
                Ok(uri)
                    if matches!(uri.scheme_str(), Some("http" | "https"))
                        && uri.host().is_some_and(|h| !h.is_empty()) =>
                {
                    Ok(())
                }
                Ok(_) => fail(
                    "sink.url",
                    format!("`{url}` is not an http:// or https:// address with a host"),
                ),
                Err(error) => fail("sink.url", format!("`{url}` is not a URL: {error}")),
            }
        }
        SinkSettings::Command { command, timeout } => {
            if timeout.is_zero() {
                return fail("sink.timeout", "must be above 0 (e.g. \"30s\")".to_owned());
            }
            let Some(program) = command.first().filter(|p| !p.is_empty()) else {
                return fail(
                    "sink.command",
                    "must name a program, e.g. [\"sh\", \"-c\", \"cat >> out.jsonl\"]".to_owned(),
                );
            };
            match find_program(program) {
                Some(_) => Ok(()),
                None => fail(
                    "sink.command",
                    format!("program `{program}` not found (not an executable file, nor on PATH)"),
                ),
            }
        }
    }
}

/// A sink taking part in a transaction: its keys agree with each other and with the consumer.
fn check_transactional_sink(
    settings: &Settings,
    tree: &Map<String, Value>,
) -> Result<(), ConfigError> {
    let fail = |key: &str, message: String| Err(invalid(tree, key, message));
    let timeout = match &settings.sink {
        SinkSettings::Postgres(postgres) => {
            if let Err(why) = postgres.url.check() {
                return fail("sink.url", why);
            }
            if postgres.on_conflict.is_some() && postgres.delivery == Delivery::ExactlyOnce {
                return fail(
                    "sink.on_conflict",
                    "applies to delivery = \"at_least_once\" only: exactly_once writes each record once already".to_owned(),
                );
            }
            let keyed = !postgres.conflict_key.is_empty();
            if postgres.on_conflict.is_some() != keyed {
                return fail(
                    "sink.conflict_key",
                    "on_conflict and conflict_key go together: on_conflict = \"ignore\" with the columns of a unique key, e.g. conflict_key = [\"producer_id\", \"message_id\"]".to_owned(),
                );
            }
            if let Some(bad) = postgres
                .conflict_key
                .iter()
                .find(|c| !crate::sink::postgres::COLUMNS.contains(&c.as_str()))
            {
                return fail(
                    "sink.conflict_key",
                    format!(
                        "`{bad}` is not a column the sink writes; they are {}",
                        crate::sink::postgres::COLUMNS.join(", ")
                    ),
                );
            }
            if postgres.table == postgres.offsets_table {
                return fail(
                    "sink.offsets_table",
                    "must differ from sink.table".to_owned(),
                );
            }
            postgres.timeout
        }
        SinkSettings::Kafka(kafka) => {
            if let Err(why) = kafka_topic_name(&kafka.topic) {
                return fail("sink.topic", why);
            }
            let same_cluster = !kafka.kafka.0.contains_key("bootstrap.servers");
            // Any topic the consumer reads, a list's or a pattern's too.
            if same_cluster && settings.topic.selection.selects(&kafka.topic) {
                return fail(
                    "sink.topic",
                    "must differ from topic.name (and be none of the topics it names): every output message would be read again as input, forever".to_owned(),
                );
            }
            settings.resolved_sink_kafka.validate().map_err(|error| {
                invalid(
                    tree,
                    &format!("sink.kafka.{}", error.name),
                    error.to_string(),
                )
            })?;
            kafka.timeout
        }
        _ => return Ok(()),
    };
    if timeout.is_zero() {
        return fail("sink.timeout", "must be above 0 (e.g. \"30s\")".to_owned());
    }
    if settings.sink.delivery() == Some(Delivery::ExactlyOnce)
        && settings.consumer.ordering != ProcessingOrder::Partition
    {
        return fail(
            "consumer.ordering",
            "must be \"partition\" with a sink's delivery = \"exactly_once\": each call writes its partitions' next offsets, and with key ordering two calls of one partition could write them out of order; set ordering = \"partition\" or delivery = \"at_least_once\"".to_owned(),
        );
    }
    Ok(())
}

/// Where `program` would be run from: itself when it holds a `/`, else the first executable
/// of that name on `PATH`.
fn find_program(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |path: &Path| {
        std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let path = PathBuf::from(program);
        return executable(&path).then_some(path);
    }
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join(program))
        .find(|candidate| executable(candidate))
}

/// A topic name Kafka accepts: 1 to 249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
fn kafka_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if name.len() > 249 {
        return Err(format!(
            "is {} characters long; Kafka accepts at most 249",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Err(format!("`{name}` is not a topic name Kafka accepts"));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "contains {bad:?}; Kafka topic names use only ASCII letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// Consumer settings that would silently turn at-least-once into at-most-once, or leave
/// processed offsets uncommitted.
fn check_guarantees(
    role: Option<Role>,
    kafka: &KafkaProperties,
    tree: &Map<String, Value>,
) -> Result<(), ConfigError> {
    let fail = |key: &str, message: &str| Err(invalid(tree, key, message));
    match role {
        Some(Role::Single | Role::Batch) if kafka.get("group.id").is_none_or(str::is_empty) => {
            fail("kafka.group.id", "consumers need a consumer group")
        }
        Some(Role::Single | Role::Batch)
            if kafka.flag("enable.auto.offset.store") != Some(false) =>
        {
            fail(
                "kafka.enable.auto.offset.store",
                "must be false: the consumers store each offset after processing, otherwise a commit could cover messages that were never processed",
            )
        }
        Some(Role::Batch) if kafka.flag("enable.auto.commit") != Some(false) => fail(
            "kafka.enable.auto.commit",
            "must be false: the batch consumer commits after each processed batch, auto commit would commit records still in the buffer",
        ),
        Some(Role::Single) if kafka.flag("enable.auto.commit") == Some(false) => fail(
            "kafka.enable.auto.commit",
            "must be true for the single consumer: it stores each offset after processing and auto commit is what commits the stored offsets (also on rebalance); with it off they would never be committed",
        ),
        _ => Ok(()),
    }
}

impl LoadedConfig {
    /// Where the value of `key` (`http.listen`, `kafka.acks`, ...) came from: `default`,
    /// `file <path>`, `env <VAR>` or `flag <flag>`.
    pub fn origin(&self, key: &str) -> String {
        origin_of(&self.tree, key)
    }

    /// `config print`: the effective configuration as TOML, each value followed by its source,
    /// secrets redacted.
    pub fn render(&self) -> String {
        render::render(&self.settings, &self.tree, &self.service_links)
    }
}

#[cfg(test)]
mod format_tests;
#[cfg(test)]
mod tests;
