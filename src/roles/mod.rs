//! The three role loops, and what they share.
//!
//! * [`producer`]: sends `KafkaMessage`s at a rate, counts every delivery report, flushes on
//!   the way out.
//! * [`single`]: one message at a time; stores its offset only after processing.
//! * [`batch`]: buffers, processes a batch, commits last+1 per partition synchronously.
//!
//! Each role is an `async fn` taking its settings, a [`Shutdown`] and its metrics, and returns a
//! report or a [`RoleError`]. The consumer loops run on a dedicated blocking thread (see
//! [`consumer`] for why); the producer runs on the async runtime.

pub mod batch;
pub(crate) mod consumer;
pub mod producer;
pub mod single;

use std::sync::Arc;
use std::time::Duration;

use rdkafka::error::KafkaError;
use serde::Serialize;

use crate::config::{Role, Settings};
use crate::shutdown::Shutdown;
use crate::sink::{self, SinkError};
use crate::telemetry::health::Health;
use crate::telemetry::metrics::{ConsumerMetrics, ProducerMetrics};

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
    #[error("fatal consumer error: {0}")]
    FatalConsumer(String),
    #[error("cannot connect to the brokers, and retrying will not help: {0}")]
    Connection(String),
    #[error(
        "not authorized to use {resource}: {reason}; the principal needs an ACL that allows it"
    )]
    NotAuthorized { resource: String, reason: String },
    #[error("the role's thread failed: {0}")]
    Thread(String),
}

/// What a producer did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ProducerReport {
    pub producer_id: String,
    /// Messages librdkafka accepted: ids `1..=accepted`.
    pub accepted: u64,
    pub delivered: u64,
    pub failed: u64,
    /// Ids whose delivery failed (so `1..=accepted` minus these were delivered).
    pub failed_ids: Vec<i64>,
}

impl ProducerReport {
    /// The ids the broker acknowledged.
    pub fn delivered_ids(&self) -> impl Iterator<Item = i64> + '_ {
        (1..=self.accepted as i64).filter(|id| !self.failed_ids.contains(id))
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
    fn from_metrics(metrics: &ConsumerMetrics) -> Self {
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

/// The metrics (and health) of whichever role runs.
#[derive(Debug, Clone)]
pub enum RoleMetrics {
    Producer(ProducerMetrics),
    Consumer(ConsumerMetrics),
}

impl RoleMetrics {
    pub fn for_role(role: Role) -> Self {
        match role {
            Role::Producer => RoleMetrics::Producer(ProducerMetrics::default()),
            Role::Single | Role::Batch => RoleMetrics::Consumer(ConsumerMetrics::default()),
        }
    }

    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        match self {
            RoleMetrics::Producer(m) => m.register(registry),
            RoleMetrics::Consumer(m) => m.register(registry),
        }
    }

    pub fn health(&self) -> Arc<Health> {
        match self {
            RoleMetrics::Producer(m) => Arc::clone(&m.health),
            RoleMetrics::Consumer(m) => Arc::clone(&m.health),
        }
    }
}

/// Runs the role `settings` names until it finishes (producer with a `count`) or `shutdown`
/// fires; consumers process through the sink `[sink]` describes.
pub async fn run(
    settings: Arc<Settings>,
    metrics: RoleMetrics,
    shutdown: Shutdown,
) -> Result<RoleReport, RoleError> {
    let role = settings.role.unwrap_or(Role::Producer);
    match metrics {
        RoleMetrics::Producer(metrics) => producer::run(settings, metrics, shutdown)
            .await
            .map(RoleReport::Producer),
        RoleMetrics::Consumer(metrics) => {
            let sink = sink::from_settings(&settings.sink, role)?;
            let report = match role {
                Role::Batch => batch::run(settings, sink, metrics, shutdown).await?,
                _ => single::run(settings, sink, metrics, shutdown).await?,
            };
            Ok(RoleReport::Consumer(report))
        }
    }
}

/// How often blocking loops wake up to look at the shutdown signal.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(100);
