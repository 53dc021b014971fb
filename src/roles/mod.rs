//! The three roles, and what they share.
//!
//! * [`producer`]: sends `KafkaMessage`s at a rate, or the lines of its input, counts every
//!   delivery report, flushes on the way out.
//! * the single consumer: each record through the sink in a call of its own (a run of
//!   records for a sink that writes runs); its offsets stored as records finish, committed
//!   automatically.
//! * the batch consumer: buffers, processes a batch, stores the first unfinished offset per
//!   partition and asks the commit thread for a commit.
//!
//! Both consumers run on the one consumer engine (`crate::consume`), which differs between
//! them only in how it forms jobs (its `Strategy`); its module docs state their guarantees.
//!
//! [`run`] runs the role of a [`RolePlan`] (its typed configuration, taken out of the
//! settings once, with its metrics); [`producer::run`] and [`run_consumer`] run one role, each
//! taking its configuration, a [`Shutdown`] and its metrics, and return a report or a
//! [`RoleError`]. The consumer engine runs on a dedicated blocking thread; the producer
//! runs on the async runtime.

pub mod input;
pub mod producer;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::error::KafkaError;
use serde::Serialize;

use crate::config::Settings;
pub use crate::consume::ConsumerConfig;
use crate::shutdown::Shutdown;
use crate::sink::{Sink, SinkConfig, SinkError};
use crate::telemetry::http::MetricLabels;
use crate::telemetry::metrics::{ConsumerMetrics, ProducerMetrics, RoleMetrics};
use crate::telemetry::summary;
pub use producer::ProducerConfig;
use tracing::Instrument;

/// A role stopped with a failure. Every variant is exit code 1.
#[derive(Debug, thiserror::Error)]
pub enum RoleError {
    #[error("cannot create the Kafka {client}: {source}")]
    Client {
        client: &'static str,
        source: KafkaError,
    },
    #[error("cannot subscribe to topic {topic}: {source}")]
    Subscribe { topic: String, source: KafkaError },
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("processing {what} failed after {attempts} attempt(s): {source}; on_exhausted = \"stop\", so the consumer stops with it uncommitted")]
    ProcessingFailed {
        /// The record (`topic/partition@offset`) or batch.
        what: String,
        attempts: u32,
        source: SinkError,
    },
    #[error("fatal producer error: {0}")]
    FatalProducer(String),
    #[error("cannot enqueue message {message_id}: {source}")]
    Enqueue { message_id: i64, source: KafkaError },
    #[error("{undelivered} of {accepted} accepted messages were not delivered ({failed} failed, the rest still queued at exit)")]
    Undelivered {
        accepted: u64,
        failed: u64,
        undelivered: u64,
    },
    #[error(transparent)]
    Input(#[from] input::InputError),
    /// The input stopped being readable; what was accepted before was flushed.
    #[error("reading {source_name} failed after line {after_line}: {error}; {accounting}")]
    InputFailed {
        source_name: String,
        after_line: u64,
        error: std::io::Error,
        accounting: String,
    },
    /// Every record sent was delivered, but some lines could not be records.
    #[error("{accounting}")]
    LinesNotSent { accounting: String },
    #[error("fatal consumer error: {0}")]
    FatalConsumer(String),
    #[error("cannot connect to the brokers, and retrying will not help: {0}")]
    Connection(String),
    #[error(transparent)]
    DeadLetter(crate::dlq::DeadLetterError),
    #[error(
        "not authorized to use {resource}: {reason}; the principal needs an ACL that allows it"
    )]
    NotAuthorized { resource: String, reason: String },
    #[error("the role's thread failed: {0}")]
    Thread(String),
    #[error("[consumer] concurrency = {concurrency} needs a sink that can serve several workers, and this one cannot; set concurrency = 1")]
    SinkNotShareable { concurrency: usize },
}

/// What a producer did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ProducerReport {
    pub producer_id: String,
    /// Messages librdkafka accepted: ids `1..=accepted`.
    pub accepted: u64,
    pub delivered: u64,
    pub failed: u64,
    /// Ids whose delivery failed (for lines of input, their line numbers), the first
    /// [`FAILED_IDS_KEPT`] of them (`failed` counts them all): a producer failing for hours
    /// keeps a bounded sample, not every id.
    pub failed_ids: Vec<i64>,
    /// Lines of input read (0 when generating): each one accepted, or not sent.
    pub lines: u64,
    /// Lines not sent because they cannot be a record, by kind: `too_large` (above
    /// `message.max.bytes`), `missing_key`, or the format's own (`not_json`, `not_utf8`, ...).
    pub rejected: BTreeMap<&'static str, u64>,
    /// The numbers of the first lines not sent.
    pub rejected_lines: Vec<u64>,
}

/// How many failed message ids a producer keeps for its report.
pub const FAILED_IDS_KEPT: usize = 10_000;

impl ProducerReport {
    /// The ids the broker acknowledged: `1..=accepted` minus the failed ones. Exact while no
    /// more than [`FAILED_IDS_KEPT`] failed (see [`Self::failed_ids_complete`]).
    pub fn delivered_ids(&self) -> impl Iterator<Item = i64> + '_ {
        (1..=self.accepted as i64).filter(|id| !self.failed_ids.contains(id))
    }

    /// Whether `failed_ids` holds every failed id.
    pub fn failed_ids_complete(&self) -> bool {
        self.failed_ids.len() as u64 == self.failed
    }

    /// Lines read but not sent.
    pub fn not_sent(&self) -> u64 {
        self.rejected.values().sum()
    }

    /// What became of every line or message, in one sentence.
    pub fn accounting(&self) -> String {
        let undelivered = self.accepted.saturating_sub(self.delivered + self.failed);
        let mut text = format!(
            "{} lines read: {} accepted ({} delivered, {} failed, {} unacknowledged), {} not sent",
            self.lines,
            self.accepted,
            self.delivered,
            self.failed,
            undelivered,
            self.not_sent()
        );
        if !self.rejected.is_empty() {
            let kinds: Vec<String> = self
                .rejected
                .iter()
                .map(|(kind, n)| format!("{kind}: {n}"))
                .collect();
            let shown: Vec<String> = self
                .rejected_lines
                .iter()
                .take(10)
                .map(u64::to_string)
                .collect();
            let _ = std::fmt::Write::write_fmt(
                &mut text,
                format_args!(" ({}; lines {})", kinds.join(", "), shown.join(", ")),
            );
        }
        text
    }
}

/// What a consumer did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ConsumerReport {
    pub consumed: u64,
    pub processed: u64,
    pub dead_lettered: u64,
    pub commits: u64,
    pub commit_failures: u64,
}

impl ConsumerReport {
    pub(crate) fn from_metrics(metrics: &ConsumerMetrics) -> Self {
        ConsumerReport {
            consumed: metrics.consumed.get(),
            processed: metrics.processed.get(),
            dead_lettered: metrics.dead_lettered.get(),
            commits: metrics.commits.get(),
            commit_failures: metrics.commit_failures.get(),
        }
    }
}

/// What any role did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum RoleReport {
    Producer(ProducerReport),
    Consumer(ConsumerReport),
}

pub use crate::config::ConsumerRole;

/// The times every role keeps.
#[derive(Debug, Clone, Copy)]
pub struct RoleTiming {
    /// How long the whole stop may take, from the signal.
    pub shutdown_timeout: Duration,
    /// How long the role may go without progress before `/healthz` fails.
    pub stall_timeout: Duration,
    /// How often the role logs its one-line summary.
    pub summary_interval: Duration,
}

impl RoleTiming {
    pub fn of(settings: &Settings) -> Self {
        RoleTiming {
            shutdown_timeout: settings.shutdown_timeout,
            stall_timeout: settings.stall_timeout,
            summary_interval: settings.summary_interval,
        }
    }
}

/// The role a process runs, with its configuration and its metrics: taken out of
/// [`Settings`] once, each part holding only the typed piece it reads, and paired with the
/// metrics it reports to so that the two cannot disagree.
pub enum RolePlan {
    Producer(ProducerConfig, ProducerMetrics),
    /// Boxed: a consumer's configuration is several times a producer's.
    Consumer(Box<ConsumerConfig>, SinkConfig, ConsumerMetrics),
}

impl RolePlan {
    /// The plan of `settings`' role; `None` when they name no role.
    pub fn new(settings: &Settings) -> Option<Self> {
        let role = settings.role?;
        Some(match role.consumer() {
            None => RolePlan::Producer(ProducerConfig::new(settings), ProducerMetrics::default()),
            Some(consumer) => RolePlan::Consumer(
                Box::new(ConsumerConfig::new(settings, consumer)),
                SinkConfig::new(settings, role),
                ConsumerMetrics::default(),
            ),
        })
    }

    /// The metrics the role reports to, for the HTTP endpoint.
    pub fn metrics(&self) -> RoleMetrics {
        match self {
            RolePlan::Producer(_, metrics) => RoleMetrics::Producer(metrics.clone()),
            RolePlan::Consumer(config, _, metrics) => {
                RoleMetrics::Consumer(config.role(), metrics.clone())
            }
        }
    }

    /// The labels of the role's metrics: its topic (or topics) and, for a consumer, its group.
    pub fn labels(&self) -> MetricLabels {
        match self {
            RolePlan::Producer(config, _) => MetricLabels {
                topic: config.topic().to_owned(),
                group: None,
            },
            RolePlan::Consumer(config, _, _) => MetricLabels {
                topic: config.topics().to_string(),
                group: Some(config.group().to_owned()),
            },
        }
    }
}

/// Runs the role of `plan` until it finishes (producer with a `count`) or `shutdown` fires;
/// consumers process through the sink `[sink]` describes.
pub async fn run(plan: RolePlan, shutdown: Shutdown) -> Result<RoleReport, RoleError> {
    match plan {
        RolePlan::Producer(config, metrics) => producer::run(config, metrics, shutdown)
            .await
            .map(RoleReport::Producer),
        RolePlan::Consumer(config, sink, metrics) => {
            // Off the async workers: a sink may connect, synchronously, as it is opened
            // (the postgres sink's client runs a runtime of its own, which cannot start on
            // an async worker).
            let sink = tokio::task::spawn_blocking(move || sink.open())
                .await
                .map_err(|e| RoleError::Thread(e.to_string()))??;
            run_consumer(*config, sink, metrics, shutdown)
                .await
                .map(RoleReport::Consumer)
        }
    }
}

/// Runs a consumer role until `shutdown` fires (or a fatal error, or a record the sink failed
/// on with `on_exhausted = "stop"`), processing through `sink`: the one way every caller
/// (daemon, demo, benchmark, tests) starts a consumer.
///
/// The role's loop runs on a dedicated blocking thread inside the role's span, with its
/// periodic summary alongside and its health kept up to date.
pub async fn run_consumer(
    config: ConsumerConfig,
    sink: Box<dyn Sink>,
    metrics: ConsumerMetrics,
    shutdown: Shutdown,
) -> Result<ConsumerReport, RoleError> {
    let span = tracing::info_span!(
        "role",
        role = config.role().role().as_str(),
        topic = %config.topics(),
        group = config.group(),
    );
    let summary = tokio::spawn(
        summary::consumer(config.timing.summary_interval, metrics.clone()).instrument(span.clone()),
    );
    let health = Arc::clone(&metrics.health);
    health.set_stall_timeout(config.timing.stall_timeout);
    health.set_running(true);
    let outcome = tokio::task::spawn_blocking(move || {
        span.in_scope(|| crate::consume::consume(&config, sink, &metrics, &shutdown))
    })
    .await
    .map_err(|e| RoleError::Thread(e.to_string()));
    health.set_running(false);
    summary.abort();
    outcome?
}
