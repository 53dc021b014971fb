//! Dead-letter routing: what happens to a record that is not a valid `KafkaMessage`, or that
//! the sink failed to process for good (see `consume::retry`).
//!
//! A bad record must neither crash a consumer nor block its partition. It is copied, with its
//! original key, value and headers, to the dead-letter topic (default `<topic>.dlq`), with
//! headers saying why and where from; counted; logged once; and then committed past like any
//! processed record.
//!
//! The order matters: the source offset may only move past the record once the copy is
//! acknowledged (`acks=all`). So [`DeadLetters::send`] blocks the worker that holds the
//! record (never the thread that polls) until the broker confirmed, and the record's lane
//! waits. What happens when it does not depends on the error:
//!
//! * **Transient** (brokers unreachable, not enough in-sync replicas, a leader moving, a
//!   timeout): retried with backoff, the record left uncommitted. While it retries the work
//!   makes no progress, so after `stall_timeout` `/healthz` answers 503 and the orchestrator
//!   restarts the process; nothing is skipped.
//! * **Permanent** (the copy is too large for the dead-letter topic, the principal may not
//!   write it, the topic does not exist, the broker calls the record invalid): retrying cannot
//!   help, so the role stops at once with exit 1 and one line naming the source topic,
//!   partition and offset, the dead-letter topic and the cause. The record stays uncommitted:
//!   after a restart the same record stops it again, which keeps the failure in front of an
//!   operator (crash-looping, alerting) until the dead-letter topic is fixed, rather than
//!   skipping data or freezing its partition behind green probes.
//!
//! Shutdown ends the wait for a copy still in flight (a delivery can take up to 30 s to
//! fail), so a stuck dead-letter topic never holds a consumer past `shutdown_timeout`; the
//! abandoned copy is dropped, and made again when the record is redelivered.
//!
//! The copy is compressed like the producer role's messages (`compression.type`, lz4 unless
//! configured), so a record that reached the source topic only because its batch was
//! compressed also fits in the dead-letter topic (`kafkad topic ensure` gives that topic a
//! `max.message.bytes` no smaller than the source's).
//!
//! Headers added to the copy:
//!
//! | header                     | value                                           |
//! |----------------------------|-------------------------------------------------|
//! | `kafkad.error`             | the error, e.g. ``field `content` is missing``   |
//! | `kafkad.error.kind`        | `not_utf8`, `not_json`, `unknown_schema`, ...    |
//! | `kafkad.source.topic`      | the topic it was read from                       |
//! | `kafkad.source.partition`  | its partition (decimal)                          |
//! | `kafkad.source.offset`     | its offset (decimal)                             |
//! | `kafkad.consumer.group`    | the consumer group that rejected it              |
//! | `kafkad.attempts`          | processing failures only: how often it was tried |
//!
//! A record the sink failed to process carries `kafkad.error.kind = processing_failed` and
//! the sink's last error in `kafkad.error`.

mod rejection;

use std::time::Duration;

use futures::future::{self, Either};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer, PurgeConfig};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Message};

use crate::backoff::Backoff;
use crate::client::ClientLog;
use crate::config::kafka::Redactor;
use crate::config::{Scope, Settings, TopicSelection};
use crate::shutdown::Shutdown;
use crate::telemetry::metrics::{ConsumerMetrics, ReasonLabel};

pub use rejection::{inspect, inspect_with, kinds, NotDecoded, Rejection};

/// The headers kafkad adds to a dead-letter copy, after the record's own.
pub mod header {
    pub const ERROR: &str = "kafkad.error";
    pub const ERROR_KIND: &str = "kafkad.error.kind";
    pub const SOURCE_TOPIC: &str = "kafkad.source.topic";
    pub const SOURCE_PARTITION: &str = "kafkad.source.partition";
    pub const SOURCE_OFFSET: &str = "kafkad.source.offset";
    pub const CONSUMER_GROUP: &str = "kafkad.consumer.group";
    pub const ATTEMPTS: &str = "kafkad.attempts";
}

/// Why a dead-letter copy was not made; either way the record stays uncommitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeadLetterError {
    /// Shutdown came before the copy was acknowledged.
    #[error("shutdown while the dead-letter copy was not yet acknowledged")]
    Interrupted,
    /// The broker refused the copy for good (see [`is_permanent`]).
    #[error("cannot dead-letter the record at {topic}/{partition}@{offset} to {dlq_topic}: {cause}; retrying cannot help, so the consumer stops with the record uncommitted (fix the dead-letter topic or its permissions, then restart)")]
    Permanent {
        topic: String,
        partition: i32,
        offset: i64,
        dlq_topic: String,
        cause: String,
    },
}

/// Whether a failed delivery will fail the same way however often it is retried: the record
/// does not fit, the principal may not write the topic, the topic does not exist, the broker
/// calls the record or request invalid, or the producer itself hit a fatal error (e.g. it was
/// refused an idempotent producer id: every later send fails until a new producer is made,
/// which a restart does). Everything else (transport, leadership, in-sync replicas,
/// timeouts) can clear by itself.
pub fn is_permanent(error: &KafkaError) -> bool {
    use RDKafkaErrorCode::*;
    matches!(
        error.rdkafka_error_code(),
        Some(
            MessageSizeTooLarge
                | MessageBatchTooLarge
                | TopicAuthorizationFailed
                | ClusterAuthorizationFailed
                | UnknownTopicOrPartition
                | UnknownTopic
                | InvalidTopic
                | InvalidRecord
                | InvalidMessage
                | PolicyViolation
                | InvalidRequiredAcks
                | UnsupportedForMessageFormat
                | InvalidMessageSize
                | Fatal
        )
    )
}

/// How long one dead-letter delivery may take before it counts as failed and is retried.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);
/// Waits between failed attempts.
const BACKOFF: Backoff = Backoff::doubling(Duration::from_millis(100), Duration::from_secs(10));

/// What a consumer's dead-letter routing reads of the configuration, taken out of
/// [`Settings`] once: where copies go and the producer that sends them.
#[derive(Clone)]
pub struct DeadLetterConfig {
    /// The copies' producer, with the settings a copy needs to survive like its original;
    /// `None` with `dlq_topic = ""`.
    producer: Option<ClientConfig>,
    /// Masks `[kafka]`'s secrets in the producer's log lines.
    redactor: Redactor,
    route: Route,
}

/// Where a consumer's copies go, and what they name.
#[derive(Clone)]
struct Route {
    /// `dlq_topic` where set: every copy goes there; unset, each goes to its own record's
    /// `<topic>.dlq`.
    fixed: Option<String>,
    /// The topics the consumer reads: a copy is never written where it would be read again.
    selection: TopicSelection,
    /// The consumer group, named in every copy's headers.
    group: String,
}

impl DeadLetterConfig {
    pub fn new(settings: &Settings) -> Self {
        let kafka = &settings.resolved_kafka;
        let fixed = settings.dlq_topic.clone();
        let producer = (fixed.as_deref() != Some("")).then(|| {
            let mut config = kafka.client_config(Scope::Producer);
            // The copy must survive like the original: every in-sync replica, no duplicates
            // from retries. It is sent alone and awaited, so lingering buys nothing.
            // One attempt may take DELIVERY_TIMEOUT, unless the operator set how long a
            // message may wait (`message.timeout.ms` or its alias `delivery.timeout.ms` in
            // `[kafka]`, which for a consumer only the dead-letter producer uses).
            if kafka.get("message.timeout.ms").is_none()
                && kafka.get("delivery.timeout.ms").is_none()
            {
                config.set(
                    "message.timeout.ms",
                    DELIVERY_TIMEOUT.as_millis().to_string(),
                );
            }
            config
                .set("acks", "all")
                .set("enable.idempotence", "true")
                .set("linger.ms", "0")
                // Compressed like the producer role's messages: what reached the source
                // topic only in a compressed batch must fit in the dead-letter topic too.
                .set(
                    "compression.type",
                    kafka.get("compression.type").unwrap_or("lz4"),
                )
                // A rejected record can be as large as anything the source topic held.
                .set("message.max.bytes", "1000000000");
            config
        });
        DeadLetterConfig {
            producer,
            redactor: kafka.redactor(),
            route: Route {
                fixed,
                selection: settings.topic.selection.clone(),
                group: settings.group_id().unwrap_or_default().to_owned(),
            },
        }
    }
}

/// Routes rejected records of one consumer.
pub struct DeadLetters {
    /// The producer of the copies; `None` with `dlq_topic = ""`.
    producer: Option<FutureProducer<ClientLog>>,
    route: Route,
    metrics: ConsumerMetrics,
}

impl DeadLetters {
    /// A router as `config` says; with `dlq_topic = ""` it only logs and counts.
    pub fn new(
        config: &DeadLetterConfig,
        metrics: ConsumerMetrics,
    ) -> rdkafka::error::KafkaResult<Self> {
        let DeadLetterConfig {
            producer,
            redactor,
            route,
        } = config;
        let Route {
            fixed, selection, ..
        } = route;
        let producer = match producer {
            None => {
                tracing::warn!(
                    topic = %selection,
                    "dead-letter topic disabled (dlq_topic = \"\"): undecodable records will be logged, counted and skipped"
                );
                None
            }
            Some(producer) => {
                let producer = producer.create_with_context(ClientLog::new(
                    "dead-letter producer",
                    redactor.clone(),
                ))?;
                match (fixed, selection.single()) {
                    (Some(dlq), _) => tracing::info!(dlq_topic = %dlq, "dead-lettering undecodable records"),
                    (None, Some(topic)) => tracing::info!(dlq_topic = %format_args!("{topic}.dlq"), "dead-lettering undecodable records"),
                    (None, None) => tracing::info!(dlq_topic = "<topic>.dlq", "dead-lettering undecodable records, each to its own topic's dead-letter topic"),
                }
                Some(producer)
            }
        };
        Ok(DeadLetters {
            producer,
            route: route.clone(),
            metrics,
        })
    }

    /// The dead-letter topic of a record of `topic`.
    pub fn topic_of(&self, topic: &str) -> String {
        match &self.route.fixed {
            Some(fixed) => fixed.clone(),
            None => format!("{topic}.dlq"),
        }
    }

    /// Copies `record` to the dead-letter topic and waits for the acknowledgement, retrying
    /// transient failures with backoff until it succeeds, fails permanently, or shutdown is
    /// asked for.
    pub fn send<M: Message>(
        &self,
        record: &M,
        rejection: &Rejection,
        shutdown: &Shutdown,
    ) -> Result<(), DeadLetterError> {
        if !matches!(rejection, Rejection::ProcessingFailed { .. }) {
            self.metrics
                .decode_errors
                .get_or_create(&ReasonLabel {
                    reason: rejection.kind(),
                })
                .inc();
        }
        let Some(producer) = &self.producer else {
            tracing::warn!(
                topic = record.topic(), partition = record.partition(), offset = record.offset(),
                kind = rejection.kind(), error = %rejection,
                "skipping {} (no dead-letter topic)", what(rejection)
            );
            self.count_dead_lettered(rejection);
            return Ok(());
        };
        let topic = &self.topic_of(record.topic());
        let refused = |cause: String| {
            self.metrics.dead_letter_failures.inc();
            DeadLetterError::Permanent {
                topic: record.topic().to_owned(),
                partition: record.partition(),
                offset: record.offset(),
                dlq_topic: topic.clone(),
                cause,
            }
        };
        if self.route.selection.selects(topic) {
            // Only a pattern can get here (configuration refuses a name or a list that holds
            // its own dead-letter topic): the copy would be read again as a bad record, and
            // its copy after it, forever.
            return Err(refused(format!(
                "the topic pattern `{}` matches the dead-letter topic, so the copy would be read again as a bad record; anchor the pattern (end it with $) or set dlq_topic to a topic it does not match",
                self.route.selection
            )));
        }
        let headers = self.headers(record, rejection);
        let mut failed = 0;
        loop {
            let error = match copy_once(producer, topic, record, &headers, shutdown) {
                Copy::Acknowledged => {
                    self.count_dead_lettered(rejection);
                    tracing::warn!(
                        topic = record.topic(), partition = record.partition(), offset = record.offset(),
                        kind = rejection.kind(), error = %rejection, dlq_topic = %topic,
                        "dead-lettered {}", what(rejection)
                    );
                    return Ok(());
                }
                Copy::Interrupted => return Err(DeadLetterError::Interrupted),
                Copy::Failed(Some(error)) if is_permanent(&error) => {
                    return Err(refused(error.to_string()))
                }
                Copy::Failed(error) => error.map_or_else(
                    || "the producer dropped the delivery".to_owned(),
                    |e| e.to_string(),
                ),
            };
            self.metrics.dead_letter_failures.inc();
            failed += 1;
            let backoff = BACKOFF.delay(failed, 0.0);
            tracing::error!(
                topic = record.topic(), partition = record.partition(), offset = record.offset(),
                dlq_topic = %topic, %error, retry_in = ?backoff,
                "dead-letter copy failed; the record stays uncommitted until it succeeds"
            );
            if shutdown.sleep_blocking(backoff) {
                return Err(DeadLetterError::Interrupted);
            }
        }
    }

    /// One more record copied (or, with no dead-letter topic, skipped).
    fn count_dead_lettered(&self, rejection: &Rejection) {
        self.metrics.dead_lettered.inc();
        self.metrics
            .dead_lettered_by_reason
            .get_or_create(&ReasonLabel {
                reason: rejection.kind(),
            })
            .inc();
    }

    fn headers<M: Message>(&self, record: &M, rejection: &Rejection) -> OwnedHeaders {
        let original = record.headers();
        let mut headers = OwnedHeaders::new_with_capacity(original.map_or(0, |h| h.count()) + 7);
        if let Some(original) = original {
            for header in original.iter() {
                headers = headers.insert(header);
            }
        }
        let partition = record.partition().to_string();
        let offset = record.offset().to_string();
        let error = rejection.to_string();
        for (key, value) in [
            (header::ERROR, error.as_str()),
            (header::ERROR_KIND, rejection.kind()),
            (header::SOURCE_TOPIC, record.topic()),
            (header::SOURCE_PARTITION, partition.as_str()),
            (header::SOURCE_OFFSET, offset.as_str()),
            (header::CONSUMER_GROUP, self.route.group.as_str()),
        ] {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
        if let Rejection::ProcessingFailed { attempts, .. } = rejection {
            headers = headers.insert(Header {
                key: header::ATTEMPTS,
                value: Some(attempts.to_string().as_str()),
            });
        }
        headers
    }

    /// Settles the dead-letter producer before the consumer closes. `send` awaits every copy,
    /// so one is still in flight only if shutdown interrupted it; its record was left
    /// uncommitted and will be copied again when redelivered. Such a copy is dropped rather
    /// than waited for: its delivery may take up to 30 s to fail, which would hold the
    /// shutdown past `shutdown_timeout`.
    pub fn flush(&self, timeout: Duration) {
        if let Some(producer) = &self.producer {
            let in_flight = producer.in_flight_count();
            if in_flight > 0 {
                tracing::info!(
                    in_flight,
                    "dropping dead-letter copies abandoned at shutdown; their records stay uncommitted"
                );
                producer.purge(PurgeConfig::default().queue().inflight());
            }
            // Serves the delivery reports (the purged copies' included).
            if let Err(error) = producer.flush(timeout) {
                tracing::warn!(%error, "dead-letter producer did not flush");
            }
        }
    }
}

/// What `rejection` is, for a log line.
fn what(rejection: &Rejection) -> &'static str {
    match rejection {
        Rejection::ProcessingFailed { .. } => "a record the sink could not process",
        _ => "undecodable record",
    }
}

/// How one attempt at a copy ended.
enum Copy {
    Acknowledged,
    /// Refused, or (`None`) its delivery report dropped.
    Failed(Option<KafkaError>),
    /// Shutdown came first; the copy stays in flight until the flush drops it.
    Interrupted,
}

/// Sends one copy of `record` to `topic` and waits for its acknowledgement, unless shutdown
/// comes first.
fn copy_once<M: Message>(
    producer: &FutureProducer<ClientLog>,
    topic: &str,
    record: &M,
    headers: &OwnedHeaders,
    shutdown: &Shutdown,
) -> Copy {
    let mut copy = FutureRecord::to(topic).headers(headers.clone());
    if let Some(key) = record.key() {
        copy = copy.key(key);
    }
    if let Some(value) = record.payload() {
        copy = copy.payload(value);
    }
    let delivery = match producer.send_result(copy) {
        Ok(delivery) => delivery,
        Err((error, _)) => return Copy::Failed(Some(error)),
    };
    // Waiting blindly here once held shutdown up to DELIVERY_TIMEOUT (30 s) while librdkafka
    // retried a copy the broker kept refusing, past shutdown_timeout.
    match wait_unless_shutdown(delivery, shutdown) {
        None => {
            tracing::warn!(
                topic = record.topic(), partition = record.partition(), offset = record.offset(),
                dlq_topic = %topic,
                "shutdown while the dead-letter copy was in flight; the record stays uncommitted for redelivery"
            );
            Copy::Interrupted
        }
        Some(Ok(Ok(_))) => Copy::Acknowledged,
        Some(Ok(Err((error, _)))) => Copy::Failed(Some(error)),
        Some(Err(_)) => Copy::Failed(None),
    }
}

/// Blocks until `delivery` resolves, or returns `None` as soon as shutdown is asked for.
fn wait_unless_shutdown<F: std::future::Future + Unpin>(
    delivery: F,
    shutdown: &Shutdown,
) -> Option<F::Output> {
    let mut shutdown = shutdown.clone();
    let stop = std::pin::pin!(shutdown.wait());
    match futures::executor::block_on(future::select(delivery, stop)) {
        Either::Left((output, _)) => Some(output),
        Either::Right(_) => None,
    }
}
