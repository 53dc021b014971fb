//! The settings of each section a role reads: `[topic]`, `[producer]`, `[consumer]`,
//! `[batch]`, `[schema_registry]`, `[retry]`, `[http]`, `[log]`. Each section's defaults
//! are its `Default`, beside its fields; they make the lowest configuration layer (see
//! `defaults`).

use super::*;

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

/// The seed's topic: `andrew-topic`, 3 partitions, 2 replicas.
impl Default for TopicSettings {
    fn default() -> Self {
        TopicSettings {
            selection: TopicSelection::One("andrew-topic".to_owned()),
            name: String::new(),
            partitions: 3,
            replication_factor: 2,
            config: BTreeMap::new(),
        }
    }
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

/// The seed's producer: its messages, made up, as fast as librdkafka takes them, until
/// stopped.
impl Default for ProducerSettings {
    fn default() -> Self {
        ProducerSettings {
            source: InputSource::Generate,
            format: Format::KafkaMessage,
            key: None,
            headers: BTreeMap::new(),
            count: 0,
            rate: 0.0,
            producer_id: None,
            content: "Message {id} from {producer_id}".to_owned(),
            payload_bytes: 0,
        }
    }
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

pub(super) fn host_name() -> String {
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

/// The seed's consumers: its messages, one sink call at a time, in partition order.
impl Default for ConsumerSettings {
    fn default() -> Self {
        ConsumerSettings {
            format: Format::KafkaMessage,
            concurrency: NonZeroUsize::MIN,
            ordering: ProcessingOrder::Partition,
            drain_timeout: Duration::from_secs(5),
        }
    }
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

/// The seed's batch consumer: 10 to 500 records, or what came within 5 s.
impl Default for BatchSettings {
    fn default() -> Self {
        BatchSettings {
            min_size: NonZeroUsize::new(10).expect("not zero"),
            max_size: NonZeroUsize::new(500).expect("not zero"),
            max_wait: Duration::from_secs(5),
        }
    }
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

pub(super) fn default_registry_timeout() -> Duration {
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

/// Five attempts, 1 s apart doubling to at most a minute, ±20 %; an outage waited out for a
/// day; then a dead-letter copy.
impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings {
            max_attempts: NonZeroU32::new(5).expect("not zero"),
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            multiplier: 2.0,
            jitter: 0.2,
            max_elapsed: Duration::from_secs(24 * 60 * 60),
            on_exhausted: OnExhausted::DeadLetter,
        }
    }
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

/// Every interface, port 9464 (the OpenTelemetry Prometheus exporter's).
impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            listen: Some(SocketAddr::from(([0, 0, 0, 0], 9464))),
        }
    }
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

/// Human-readable lines at `info`.
impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            format: LogFormat::Text,
            level: "info".to_owned(),
        }
    }
}
