//! The producer: `KafkaMessage`s at a configured rate, or the lines of real input (standard
//! input or a file, see [`super::input`]), every delivery report counted.
//!
//! # Guarantee
//!
//! With the seed's settings (`acks=all`, `enable.idempotence=true`,
//! `max.in.flight.requests.per.connection=1`, `delivery.timeout.ms=120000`, and no retry count,
//! so librdkafka retries until `delivery.timeout.ms`) a
//! message librdkafka accepted is either acknowledged by every in-sync replica, exactly once
//! and in order per partition, or reported failed after `delivery.timeout.ms`. kafkad counts
//! both outcomes from librdkafka's delivery reports, logs each failure with its error, and
//! exits 1 if any accepted message was not delivered by the time it stops. A fatal
//! idempotent-producer error (after which librdkafka refuses every later message) stops the
//! role at once, after flushing what can still be delivered.
//!
//! On shutdown the producer stops generating, then flushes for at most `shutdown_timeout`;
//! dropping a producer with messages still queued would purge them, so it never does that
//! silently: whatever is left is reported as undelivered.
//!
//! Reading input, the end of the input ends the run after the flush. A line that cannot be a
//! record (too large, no key, not of its format) is not sent, and is counted and reported by
//! its kind; the run then exits 1, as the input was not all delivered. Input that fails while
//! it is read (a file that stops being readable) ends the run the same way: what was accepted
//! is flushed, and one line names the failure and the line it came after, with the accounting.

mod lines;
mod messages;
mod stop;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::Message;
use tracing::Instrument;

use super::input;
use super::{ProducerReport, RoleError, RoleTiming};
use crate::client::ClientLog;
use crate::config::kafka::Redactor;
use crate::config::{InputSource, ProducerSettings, Scope, Settings};
use crate::shutdown::Shutdown;
use crate::telemetry::metrics::ProducerMetrics;
use crate::telemetry::summary;
use lines::{send_lines, LineTally};
pub use messages::MessageFactory;
use stop::{drain, release};

/// The role's client. Its delivery reports are served by the send loop itself (see
/// [`serve`]), not by a polling thread of their own: a thread blocked in `poll` is woken
/// for every report librdkafka queues, and those wake-ups cost the unpaced producer a fifth
/// of its throughput on a CPU-bound client (the codec-inclusive reference, polled from a
/// thread that way, lost as much).
type RoleProducer = BaseProducer<DeliveryCounter>;

/// Delivery reports, counted. Runs in the send loop's [`serve`] and in `flush`.
pub struct DeliveryCounter {
    log: ClientLog,
    metrics: ProducerMetrics,
    failed_ids: Mutex<Vec<i64>>,
    fatal: AtomicBool,
}

crate::delegate_client_context!(DeliveryCounter, log);

impl ProducerContext for DeliveryCounter {
    /// The message id, or the input line number, of each record.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, number: usize) {
        match result {
            Ok(_) => {
                self.metrics.delivered.inc();
                // A broker acknowledged: certainly connected (statistics say so too, later).
                self.metrics.health.set_ready(true);
            }
            Err((error, message)) => {
                self.metrics.failed.inc();
                let id = number as i64;
                if let Ok(mut failed) = self.failed_ids.lock() {
                    if failed.len() < super::FAILED_IDS_KEPT {
                        failed.push(id);
                    }
                }
                if error.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal) {
                    self.fatal.store(true, Ordering::SeqCst);
                }
                tracing::error!(
                    message_id = id,
                    partition = message.partition(),
                    %error,
                    "delivery failed"
                );
            }
        }
    }
}

/// How often the unpaced send loop yields to the runtime (signals, other tasks).
const YIELD_EVERY: u64 = 512;
/// How often the unpaced send loop serves delivery reports (a report covers a whole
/// produce request, so one in this many messages keeps up).
const SERVE_EVERY: u64 = 16;
/// Delivery-report events served per [`serve`] call at most (each takes one poll).
const SERVE_EVENTS: usize = 64;
/// A paced producer waits for its next message in steps this long at most, serving
/// delivery reports in between, so counts and failures never lag by more.
const SERVE_INTERVAL: Duration = Duration::from_millis(100);

/// Serves the delivery reports librdkafka has queued, up to [`SERVE_EVENTS`] of them, until
/// a poll finds none; never blocks.
fn serve(producer: &RoleProducer) {
    let reported = || {
        let metrics = &producer.context().metrics;
        metrics.delivered.get() + metrics.failed.get()
    };
    for _ in 0..SERVE_EVENTS {
        let before = reported();
        producer.poll(Duration::ZERO);
        if reported() == before {
            return;
        }
    }
}

/// What the producer reads of the configuration, taken out of [`Settings`] once.
#[derive(Clone)]
pub struct ProducerConfig {
    /// `[kafka]`'s producer properties.
    client: rdkafka::ClientConfig,
    /// Masks `[kafka]`'s secrets in librdkafka's log lines.
    redactor: Redactor,
    /// The topic every message goes to.
    topic: String,
    /// `[producer]`: what to send, how fast, from where.
    producer: ProducerSettings,
    /// librdkafka's limit on a message (`message.max.bytes`, 1000000 unless `[kafka]` sets
    /// it): a longer line could not be sent, so it is not even held in memory.
    message_max_bytes: usize,
    timing: RoleTiming,
}

impl ProducerConfig {
    pub fn new(settings: &Settings) -> Self {
        let kafka = &settings.resolved_kafka;
        ProducerConfig {
            client: kafka.client_config(Scope::Producer),
            redactor: kafka.redactor(),
            topic: settings.topic.name.clone(),
            producer: settings.producer.clone(),
            message_max_bytes: kafka
                .get("message.max.bytes")
                .and_then(|value| value.trim().parse().ok())
                .unwrap_or(1_000_000),
            timing: RoleTiming::of(settings),
        }
    }

    /// The topic every message goes to.
    pub fn topic(&self) -> &str {
        &self.topic
    }
}

/// Runs the producer until `count` messages were sent (then flushes and returns), or until
/// `shutdown` fires.
pub async fn run(
    config: ProducerConfig,
    metrics: ProducerMetrics,
    shutdown: Shutdown,
) -> Result<ProducerReport, RoleError> {
    let producer_id = config.producer.producer_id();
    let span = tracing::info_span!("role", role = "producer", topic = %config.topic, producer_id = %producer_id);
    let summary = tokio::spawn(
        summary::producer(config.timing.summary_interval, metrics.clone()).instrument(span.clone()),
    );
    metrics
        .health
        .set_stall_timeout(config.timing.stall_timeout);
    metrics.health.set_running(true);
    let outcome = produce(&config, producer_id, metrics.clone(), shutdown)
        .instrument(span)
        .await;
    metrics.health.set_running(false);
    summary.abort();
    outcome
}

async fn produce(
    role: &ProducerConfig,
    producer_id: String,
    metrics: ProducerMetrics,
    mut shutdown: Shutdown,
) -> Result<ProducerReport, RoleError> {
    let config = &role.producer;
    // The input opens before anything connects: a file that cannot be read fails at once.
    let input = input::start(&config.source, role.message_max_bytes)?;
    let producer = create(role, &producer_id, &metrics)?;
    let mut tally = LineTally::default();
    let sent = match input {
        None => {
            tracing::info!(count = config.count, rate = config.rate, "producer started");
            let factory = MessageFactory::new(config, producer_id.clone());
            send_all(
                &producer,
                &role.topic,
                factory,
                config.count,
                config.rate,
                &metrics,
                &mut shutdown,
            )
            .await
            .map(|()| None)
        }
        Some(lines) => {
            tracing::info!(source = %describe(&config.source), format = %config.format, rate = config.rate, "producer started, reading lines");
            send_lines(&producer, role, lines, &metrics, &mut shutdown, &mut tally).await
        }
    };

    if shutdown.is_triggered() {
        metrics.health.begin_shutdown();
    }
    drain(&producer, &shutdown, role.timing.shutdown_timeout).await;
    let report = ProducerReport {
        producer_id,
        accepted: metrics.accepted.get(),
        delivered: metrics.delivered.get(),
        failed: metrics.failed.get(),
        failed_ids: producer
            .context()
            .failed_ids
            .lock()
            .map(|ids| ids.clone())
            .unwrap_or_default(),
        lines: tally.read,
        rejected: tally.rejected,
        rejected_lines: tally.first_rejected,
    };
    let undelivered = report
        .accepted
        .saturating_sub(report.delivered + report.failed);
    tracing::info!(
        accepted = report.accepted,
        delivered = report.delivered,
        failed = report.failed,
        undelivered,
        lines = report.lines,
        not_sent = report.not_sent(),
        "producer stopped"
    );
    let outcome = match sent {
        Ok(Some(failure)) => Err(RoleError::InputFailed {
            source_name: describe(&config.source),
            after_line: failure.after_line,
            error: failure.error,
            accounting: report.accounting(),
        }),
        Ok(None) => delivered(&producer, report),
        Err(error) => Err(error),
    };
    release(producer, &shutdown, role.timing.shutdown_timeout).await;
    outcome
}

/// The input, as a log line and an error name it.
fn describe(source: &InputSource) -> String {
    match source {
        InputSource::Generate => "generated messages".to_owned(),
        InputSource::Stdin => "standard input".to_owned(),
        InputSource::File(path) => path.display().to_string(),
    }
}

/// The producer with its delivery counter.
fn create(
    config: &ProducerConfig,
    producer_id: &str,
    metrics: &ProducerMetrics,
) -> Result<Arc<RoleProducer>, RoleError> {
    let counter = DeliveryCounter {
        log: ClientLog::new(format!("producer {producer_id}"), config.redactor.clone())
            .with_stats(metrics.client.clone()),
        metrics: metrics.clone(),
        failed_ids: Mutex::default(),
        fatal: AtomicBool::new(false),
    };
    let producer = config
        .client
        .create_with_context(counter)
        .map_err(|source| RoleError::Client {
            client: "producer",
            source,
        })?;
    Ok(Arc::new(producer))
}

/// Sends messages `1..=count` (or on and on with `count = 0`), paced at `rate`, until done
/// or shutdown; an error when a failure stops the producer first.
async fn send_all(
    producer: &RoleProducer,
    topic: &str,
    mut factory: MessageFactory,
    count: u64,
    rate: f64,
    metrics: &ProducerMetrics,
    shutdown: &mut Shutdown,
) -> Result<(), RoleError> {
    let started = Instant::now();
    let mut sent: u64 = 0;
    while (count == 0 || sent < count) && !shutdown.is_triggered() {
        stopped_by_failure(producer)?;
        if !pace(producer, rate, started, sent, shutdown, metrics).await {
            continue; // shutdown came while waiting: the loop condition sees it
        }
        // Fatal errors do not always reach the error callback: ask librdkafka.
        if sent % YIELD_EVERY == 0 && producer.client().fatal_error().is_some() {
            return Err(fatal_error(producer));
        }
        let id = sent as i64 + 1;
        factory.build(id);
        let record = BaseRecord::with_opaque_to(topic, id as usize)
            .key(factory.key().as_bytes())
            .payload(factory.value());
        match send(producer, record, shutdown).await? {
            Handed::Taken => {}
            // Shutdown while librdkafka's queue was full: this message was not taken.
            Handed::Shutdown => break,
            Handed::TooLarge(source) => {
                return Err(RoleError::Enqueue {
                    message_id: id,
                    source,
                })
            }
        }
        metrics.accepted.inc();
        sent += 1;
        if rate > 0.0 || sent % SERVE_EVERY == 0 {
            serve(producer);
            // Not per message when sending flat out: a clock read is a noticeable part of
            // a message's cost, and a stall is counted in seconds.
            metrics.health.progress();
        }
    }
    Ok(())
}

/// A failure reported since the last message: a fatal producer error, or a TLS or login
/// failure.
fn stopped_by_failure(producer: &RoleProducer) -> Result<(), RoleError> {
    if producer.context().fatal.load(Ordering::SeqCst) {
        return Err(fatal_error(producer));
    }
    match producer.context().log.failure() {
        Some(failure) => Err(RoleError::Connection(failure)),
        None => Ok(()),
    }
}

/// Waits until message number `sent` is due at `rate` (0: no pacing, but a yield to the
/// runtime now and then), serving delivery reports meanwhile. Returns false when shutdown
/// came first. Waiting for the next message at a low rate is progress too: it is marked
/// each time the wait wakes to serve reports.
async fn pace(
    producer: &RoleProducer,
    rate: f64,
    started: Instant,
    sent: u64,
    shutdown: &mut Shutdown,
    metrics: &ProducerMetrics,
) -> bool {
    if rate > 0.0 {
        let due = started + Duration::from_secs_f64(sent as f64 / rate);
        loop {
            let now = Instant::now();
            if due <= now {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(due.min(now + SERVE_INTERVAL).into()) => {
                    metrics.health.progress();
                }
                _ = shutdown.wait() => return false,
            }
            serve(producer);
        }
    } else if sent % YIELD_EVERY == 0 {
        tokio::task::yield_now().await;
    }
    true
}

/// What became of a record handed to librdkafka.
enum Handed {
    Taken,
    /// Shutdown came while librdkafka's queue was full: the record was not taken.
    Shutdown,
    /// Larger than librdkafka's `message.max.bytes`.
    TooLarge(KafkaError),
}

/// Hands `record` to librdkafka, waiting while its queue is full.
async fn send(
    producer: &RoleProducer,
    mut record: BaseRecord<'_, [u8], [u8], usize>,
    shutdown: &mut Shutdown,
) -> Result<Handed, RoleError> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(Handed::Taken),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                // librdkafka's queue is full: serve the deliveries that make room, and wait
                // for more, or for the brokers, which may never come back: shutdown must not
                // wait for them.
                serve(producer);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(1)) => {}
                    _ = shutdown.wait() => return Ok(Handed::Shutdown),
                }
                serve(producer);
            }
            Err((error, _)) if error.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal) => {
                return Err(fatal_error(producer));
            }
            Err((
                error @ KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge),
                _,
            )) => {
                return Ok(Handed::TooLarge(error));
            }
            Err((error, back)) => {
                return Err(RoleError::Enqueue {
                    message_id: back.delivery_opaque as i64,
                    source: error,
                });
            }
        }
    }
}

/// The report, once every accepted message was delivered; otherwise the reason why not.
fn delivered(producer: &RoleProducer, report: ProducerReport) -> Result<ProducerReport, RoleError> {
    // A TLS or login failure explains any undelivered messages better than their count.
    if let Some(failure) = producer.context().log.failure() {
        return Err(RoleError::Connection(failure));
    }
    if producer.context().fatal.load(Ordering::SeqCst) {
        return Err(fatal_error(producer));
    }
    if report.delivered < report.accepted {
        return Err(RoleError::Undelivered {
            accepted: report.accepted,
            failed: report.failed,
            undelivered: report.accepted - report.delivered,
        });
    }
    if report.not_sent() > 0 {
        return Err(RoleError::LinesNotSent {
            accounting: report.accounting(),
        });
    }
    Ok(report)
}

fn fatal_error(producer: &RoleProducer) -> RoleError {
    let detail = producer
        .client()
        .fatal_error()
        .map(|(code, reason)| format!("{code}: {reason}"))
        .unwrap_or_else(|| "librdkafka reported a fatal error".to_owned());
    tracing::error!(%detail, "fatal producer error: no further message can be sent");
    RoleError::FatalProducer(detail)
}
