//! Where processed messages go: the "processing" step of both consumer roles.
//!
//! A [`Sink`] is synchronous on purpose: it runs on a worker thread of its consumer, never on
//! the thread that polls Kafka nor on the async runtime, so a slow or hung sink slows that
//! consumer's processing only; the consumer keeps polling, serving rebalances and heartbeats.
//! With `concurrency = N` a consumer runs N workers, each with its own sink from
//! [`Sink::another`].
//! When `process` or `process_batch` returns `Ok`, the output must be durable enough that the
//! offset can be committed: the consumer stores or commits right after. An `Err` says whether
//! trying again may help ([`SinkError::is_retryable`]); the consumer retries or dead-letters
//! per `[retry]`, and commits past a record only once it was processed or its dead-letter copy
//! acknowledged.
//!
//! # Sinks that keep the consumer's positions (exactly-once)
//!
//! A destination that can write the consumer's next offsets in the same transaction as the
//! records makes processing exactly-once: a crash between its commit and Kafka's loses
//! nothing and repeats nothing, because the next owner starts where the destination says.
//! Such a sink returns a [`PositionStore`] from [`Sink::positions`]; the consumer then
//! * asks it, on every assignment, to claim the new partitions and say where each starts
//!   (the consumer starts fetching there, not at Kafka's committed offset);
//! * calls [`Sink::process_at`] / [`Sink::process_batch_at`] with the [`Positions`] each call
//!   covers: per partition, the assignment it belongs to and the offset to write as next;
//!   the sink writes those with the records, in one transaction, only if its claim on the
//!   partition for that assignment still holds, and otherwise fails with
//!   [`SinkError::Fenced`] (another member, or a later assignment of this one, has it now).
//!
//! Sinks, one file each: [`LogSink`], [`JsonlSink`], [`http::HttpSink`],
//! [`command::CommandSink`], and [`MemorySink`] for the demo and tests.

mod claims;
pub mod command;
mod error;
pub mod http;
mod jsonl;
pub mod kafka;
mod log;
mod memory;
pub mod postgres;
pub mod test_pause;

pub use error::{HttpAnswer, SinkError, COMMAND_REJECTS};
pub use jsonl::{JsonlSink, ProcessedLine};
pub use log::LogSink;
pub use memory::MemorySink;

use std::path::PathBuf;
use std::time::Duration;

use crate::config::{
    KafkaProperties, KafkaSinkSettings, PostgresSettings, ResolvedSecret, Role, Settings,
    SinkSettings,
};
use crate::message::KafkaMessage;
use crate::payload::line::Origin;
use crate::payload::Payload;

/// One decoded record with where it came from.
#[derive(Debug, Clone)]
pub struct Record<'a> {
    /// The topic it was read from (a consumer may read several).
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    /// The value, decoded by the consumer's `format`.
    pub payload: Payload<'a>,
    /// The record's key as it was in Kafka, if it had one (a sink producing to Kafka keeps it).
    pub key: Option<&'a [u8]>,
    /// Its headers as they were in Kafka, if it had any.
    pub headers: Option<&'a rdkafka::message::OwnedHeaders>,
}

#[cfg(test)]
impl Record<'static> {
    /// For tests: the seed's message `id` from producer `producer_id`, read from partition
    /// `partition` of topic `t` at `offset`, without key or headers.
    pub(crate) fn test_message(
        id: i64,
        producer_id: &'static str,
        partition: i32,
        offset: i64,
    ) -> Self {
        Record {
            topic: "t",
            partition,
            offset,
            payload: Payload::Message(KafkaMessage::new(id, "c", producer_id)),
            key: None,
            headers: None,
        }
    }
}

impl<'a> Record<'a> {
    /// The seed's message, where the consumer's format is `kafka_message`.
    pub fn message(&self) -> Option<&KafkaMessage<'a>> {
        match &self.payload {
            Payload::Message(message) => Some(message),
            _ => None,
        }
    }

    /// Where the record came from and what it carries besides its value, for
    /// [`payload::line`](crate::payload::line).
    pub fn origin(&self) -> Origin<'_> {
        Origin {
            topic: self.topic,
            partition: self.partition,
            offset: self.offset,
            key: self.key,
            headers: self.headers,
        }
    }

    /// The seed's message, or [`SinkError::Rejected`] for a sink that takes only that format
    /// (configuration refuses it any other, so this is a guard, not a path).
    pub fn expect_message(&self, sink: &str) -> Result<&KafkaMessage<'a>, SinkError> {
        self.message().ok_or_else(|| {
            SinkError::Rejected(format!(
                "the {sink} sink takes kafka_message records only, and {}/{}@{} is another format",
                self.topic, self.partition, self.offset
            ))
        })
    }
}

/// Where one partition's records in a sink call end, for a sink keeping positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub partition: i32,
    /// The assignment of the partition the records were received in: what the sink's claim
    /// for it ([`PositionStore::claim`]) was made for.
    pub assignment: u64,
    /// The offset to write as the partition's next one: after the last record the call
    /// covers, dead-lettered records included.
    pub next: i64,
}

/// What a sink call covers, for a sink keeping positions: a consumer with such a sink reads one
/// topic (configuration refuses it a list or a pattern), whose name is `topic`.
#[derive(Clone, Copy)]
pub struct Positions<'a> {
    pub topic: &'a str,
    pub spans: &'a [Span],
    /// The consumer's group membership when the call was made, for a Kafka transaction to
    /// commit the offsets with (the broker refuses a member that has left its group since).
    pub group: Option<&'a rdkafka::consumer::ConsumerGroupMetadata>,
}

/// The positions a sink keeps for the consumer, asked on the consumer's polling thread.
pub trait PositionStore: Send {
    /// Partitions of `topic` were assigned, each with its assignment number: claim them, so
    /// that a member that held them before can no longer write for them, and say where each
    /// starts. A partition the destination has no position for is left out: it starts where
    /// the group's committed offset (or `auto.offset.reset`) says.
    fn claim(
        &mut self,
        topic: &str,
        partitions: &[(i32, u64)],
    ) -> Result<Vec<(i32, i64)>, SinkError>;
}

/// The processing step.
pub trait Sink: Send {
    /// Processes one message (single consumer).
    fn process(&mut self, record: &Record<'_>) -> Result<(), SinkError>;

    /// Processes a batch (batch consumer). By default one message after another, then done.
    fn process_batch(&mut self, batch: &[Record<'_>]) -> Result<(), SinkError> {
        batch.iter().try_for_each(|record| self.process(record))
    }

    /// Processes one message covering `at` (a sink keeping positions). By default
    /// [`process`](Self::process).
    fn process_at(&mut self, record: &Record<'_>, at: &Positions<'_>) -> Result<(), SinkError> {
        let _ = at;
        self.process(record)
    }

    /// Processes a batch covering `at` (a sink keeping positions): `batch` may be empty when
    /// every record of the call was dead-lettered, and the positions must still be written.
    /// By default [`process_batch`](Self::process_batch), and nothing for an empty batch.
    fn process_batch_at(
        &mut self,
        batch: &[Record<'_>],
        at: &Positions<'_>,
    ) -> Result<(), SinkError> {
        let _ = at;
        match batch.is_empty() {
            true => Ok(()),
            false => self.process_batch(batch),
        }
    }

    /// The positions this sink keeps for the consumer, if it keeps them (see the module doc).
    fn positions(&self) -> Option<Box<dyn PositionStore>> {
        None
    }

    /// Whether [`process_run`](Self::process_run) hands a run of records to the destination
    /// at once (one write for a file), so that the single role sends runs rather than one
    /// call per record. `false` by default.
    fn writes_runs(&self) -> bool {
        false
    }

    /// Processes `records`, one message each as [`process`](Self::process) would (not a
    /// batch: the destination sees single messages), in one go: `Ok` means every one of them
    /// is processed, `Err` that none counts as processed (they are tried again, so the
    /// destination may see some twice, unless it keeps positions). `at` is where the run
    /// ends: the records are one lane's, consecutive but for dead-lettered ones, and with a
    /// sink keeping positions (which needs `ordering = "partition"`) one partition's. Used
    /// only where [`writes_runs`](Self::writes_runs) says so. By default one `process` call
    /// each, positions ignored: a sink that keeps positions and writes runs overrides it.
    fn process_run(&mut self, records: &[Record<'_>], at: &Positions<'_>) -> Result<(), SinkError> {
        let _ = at;
        records.iter().try_for_each(|record| self.process(record))
    }

    /// A sink for one more worker of the same consumer (`concurrency > 1`): the same
    /// destination through a handle of its own (a connection pool, a program, a file handle),
    /// callable from another thread at the same time as this one. `None` (the default) means
    /// this sink can only serve one worker, and a consumer with `concurrency > 1` refuses it
    /// at start.
    fn another(&self) -> Option<Box<dyn Sink>> {
        None
    }
}

/// A sink whose every call writes its records as one unit (a transaction), with the
/// consumer's positions inside it when it keeps them: the postgres and kafka sinks. All their
/// [`Sink`] calls come down to [`write`](Self::write): one record is a unit of one, a batch
/// one unit, and the single role hands them a lane's records in hand at once (a run), rather
/// than a transaction per record.
pub trait WritesUnits: Send {
    /// Writes `records` as one unit; `at`, where the consumer's positions end (the engine
    /// always says; other callers, such as a replay, do not).
    fn write(
        &mut self,
        records: &[Record<'_>],
        at: Option<&Positions<'_>>,
    ) -> Result<(), SinkError>;

    /// As [`Sink::positions`].
    fn positions(&self) -> Option<Box<dyn PositionStore>>;

    /// As [`Sink::another`].
    fn another(&self) -> Option<Box<dyn Sink>>;
}

impl<T: WritesUnits> Sink for T {
    fn process(&mut self, record: &Record<'_>) -> Result<(), SinkError> {
        self.write(std::slice::from_ref(record), None)
    }

    fn process_batch(&mut self, batch: &[Record<'_>]) -> Result<(), SinkError> {
        self.write(batch, None)
    }

    fn process_at(&mut self, record: &Record<'_>, at: &Positions<'_>) -> Result<(), SinkError> {
        self.write(std::slice::from_ref(record), Some(at))
    }

    fn process_batch_at(
        &mut self,
        batch: &[Record<'_>],
        at: &Positions<'_>,
    ) -> Result<(), SinkError> {
        self.write(batch, Some(at))
    }

    fn writes_runs(&self) -> bool {
        true
    }

    fn process_run(&mut self, records: &[Record<'_>], at: &Positions<'_>) -> Result<(), SinkError> {
        self.write(records, Some(at))
    }

    fn positions(&self) -> Option<Box<dyn PositionStore>> {
        WritesUnits::positions(self)
    }

    fn another(&self) -> Option<Box<dyn Sink>> {
        WritesUnits::another(self)
    }
}

/// The sink a consumer role writes to, with what it needs to open: `[sink]` with its secrets
/// resolved and, for the exactly-once sinks, the names their positions are kept under.
/// Taken out of [`Settings`] once.
#[derive(Clone)]
pub enum SinkConfig {
    Log {
        role: Role,
    },
    Jsonl {
        path: PathBuf,
    },
    Http {
        url: String,
        timeout: Duration,
        /// The request headers, secret references resolved.
        headers: Vec<(String, String)>,
    },
    Command {
        command: Vec<String>,
        timeout: Duration,
    },
    Postgres {
        settings: PostgresSettings,
        password: ResolvedSecret,
        /// The source topic and the consumer group: the offsets table's key.
        topic: String,
        group: String,
        /// `[kafka] client.id`, recorded with each claim of a partition.
        member: String,
    },
    Kafka {
        settings: KafkaSinkSettings,
        /// `[sink.kafka]`, secret references resolved.
        properties: KafkaProperties,
    },
}

impl SinkConfig {
    /// The sink `[sink]` asks for, for a consumer of `role`.
    pub fn new(settings: &Settings, role: Role) -> Self {
        match &settings.sink {
            SinkSettings::Log {} => SinkConfig::Log { role },
            SinkSettings::Jsonl { path } => SinkConfig::Jsonl { path: path.clone() },
            SinkSettings::Http { url, timeout, .. } => SinkConfig::Http {
                url: url.clone(),
                timeout: *timeout,
                headers: settings.resolved_sink_headers.0.clone(),
            },
            SinkSettings::Command { command, timeout } => SinkConfig::Command {
                command: command.clone(),
                timeout: *timeout,
            },
            SinkSettings::Postgres(postgres) => SinkConfig::Postgres {
                settings: postgres.clone(),
                password: settings.resolved_sink_password.clone(),
                topic: settings.topic.name.clone(),
                group: settings.group_id().unwrap_or_default().to_owned(),
                member: (settings.resolved_kafka.get("client.id"))
                    .unwrap_or_default()
                    .to_owned(),
            },
            SinkSettings::Kafka(kafka) => SinkConfig::Kafka {
                settings: kafka.clone(),
                properties: settings.resolved_sink_kafka.clone(),
            },
        }
    }

    /// Opens the sink: creates its file, connects to its database, starts its producer.
    pub fn open(&self) -> Result<Box<dyn Sink>, SinkError> {
        match self {
            SinkConfig::Log { role } => Ok(Box::new(LogSink::new(*role))),
            SinkConfig::Jsonl { path } => Ok(Box::new(JsonlSink::create(path)?)),
            SinkConfig::Http {
                url,
                timeout,
                headers,
            } => Ok(Box::new(http::HttpSink::new(
                url,
                *timeout,
                headers.clone(),
            ))),
            SinkConfig::Command { command, timeout } => {
                if std::process::id() == 1 {
                    tracing::warn!(
                        "kafkad runs as PID 1: processes started by the command sink's program and \
                         orphaned when a run is killed are never reaped (zombies pile up); run \
                         kafkad under an init, such as the container image's tini"
                    );
                }
                Ok(Box::new(command::CommandSink::new(command, *timeout)))
            }
            SinkConfig::Postgres {
                settings,
                password,
                topic,
                group,
                member,
            } => Ok(Box::new(postgres::PostgresSink::connect(
                settings, password, topic, group, member,
            )?)),
            SinkConfig::Kafka {
                settings,
                properties,
            } => Ok(Box::new(kafka::KafkaSink::new(settings, properties)?)),
        }
    }
}
