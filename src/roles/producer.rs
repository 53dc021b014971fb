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

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::Message;
use serde_json::value::RawValue;
use tracing::Instrument;

use super::input::{self, Batch, InputLine, LineFormat, LineRejection};
use super::{ProducerReport, RoleError};
use crate::client::ClientLog;
use crate::config::{InputSource, ProducerSettings, Scope, Settings};
use crate::message::{KafkaMessage, Timestamp};
use crate::shutdown::Shutdown;
use crate::telemetry::metrics::ProducerMetrics;
use crate::telemetry::summary;

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

/// Builds each message's key and value into reused buffers: no allocation per message on the
/// hot path. The one place the producer's message shape is made: content template, padding,
/// `{"source":"kafkad"}` metadata, a UTC timestamp of the moment it is built.
pub struct MessageFactory {
    producer_id: String,
    template: Vec<Piece>,
    padding: String,
    metadata: Box<RawValue>,
    content: String,
    key: String,
    value: Vec<u8>,
}

/// A part of the `content` template.
enum Piece {
    Text(String),
    Id,
    ProducerId,
}

impl MessageFactory {
    pub fn new(settings: &ProducerSettings, producer_id: String) -> Self {
        let mut template = Vec::new();
        let mut rest = settings.content.as_str();
        while let Some(start) = rest.find('{') {
            let (before, tail) = rest.split_at(start);
            let (piece, len) = if tail.starts_with("{id}") {
                (Piece::Id, 4)
            } else if tail.starts_with("{producer_id}") {
                (Piece::ProducerId, 13)
            } else {
                (Piece::Text("{".to_owned()), 1)
            };
            if !before.is_empty() {
                template.push(Piece::Text(before.to_owned()));
            }
            template.push(piece);
            rest = &tail[len..];
        }
        if !rest.is_empty() {
            template.push(Piece::Text(rest.to_owned()));
        }
        MessageFactory {
            metadata: RawValue::from_string(r#"{"source":"kafkad"}"#.to_owned())
                .expect("valid JSON"),
            producer_id,
            template,
            padding: "x".repeat(settings.payload_bytes),
            content: String::new(),
            key: String::new(),
            value: Vec::with_capacity(256 + settings.payload_bytes),
        }
    }

    /// Builds message `id`: its [`key`](Self::key) and [`value`](Self::value).
    pub fn build(&mut self, id: i64) {
        self.content.clear();
        for piece in &self.template {
            match piece {
                Piece::Text(text) => self.content.push_str(text),
                Piece::Id => {
                    let _ = write!(self.content, "{id}");
                }
                Piece::ProducerId => self.content.push_str(&self.producer_id),
            }
        }
        self.content.push_str(&self.padding);
        self.key.clear();
        let _ = write!(self.key, "{id}");
        let message = KafkaMessage {
            message_id: id,
            content: self.content.as_str().into(),
            producer_id: self.producer_id.as_str().into(),
            timestamp: Timestamp::now(),
            metadata: std::borrow::Cow::Borrowed(&self.metadata),
        };
        self.value.clear();
        message.encode_into(&mut self.value);
    }

    /// The record key of the last message built: its id in decimal.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The record value of the last message built: the encoded `KafkaMessage`.
    pub fn value(&self) -> &[u8] {
        &self.value
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

/// Runs the producer until `count` messages were sent (then flushes and returns), or until
/// `shutdown` fires.
pub async fn run(
    settings: Arc<Settings>,
    metrics: ProducerMetrics,
    shutdown: Shutdown,
) -> Result<ProducerReport, RoleError> {
    let producer_id = settings.producer.producer_id();
    let span = tracing::info_span!("role", role = "producer", topic = %settings.topic.name, producer_id = %producer_id);
    let summary = tokio::spawn(
        summary::producer(settings.summary_interval, metrics.clone()).instrument(span.clone()),
    );
    metrics.health.set_stall_timeout(settings.stall_timeout);
    metrics.health.set_running(true);
    let outcome = produce(settings, producer_id, metrics.clone(), shutdown)
        .instrument(span)
        .await;
    metrics.health.set_running(false);
    summary.abort();
    outcome
}

async fn produce(
    settings: Arc<Settings>,
    producer_id: String,
    metrics: ProducerMetrics,
    mut shutdown: Shutdown,
) -> Result<ProducerReport, RoleError> {
    let config = &settings.producer;
    // The input opens before anything connects: a file that cannot be read fails at once.
    let input = input::start(&config.source, message_max_bytes(&settings))?;
    let producer = create(&settings, &producer_id, &metrics)?;
    let mut tally = LineTally::default();
    let sent = match input {
        None => {
            tracing::info!(count = config.count, rate = config.rate, "producer started");
            let factory = MessageFactory::new(config, producer_id.clone());
            send_all(&producer, &settings, factory, &metrics, &mut shutdown)
                .await
                .map(|()| None)
        }
        Some(lines) => {
            tracing::info!(source = %describe(&config.source), format = %config.format, rate = config.rate, "producer started, reading lines");
            send_lines(
                &producer,
                &settings,
                lines,
                &metrics,
                &mut shutdown,
                &mut tally,
            )
            .await
        }
    };

    if shutdown.is_triggered() {
        metrics.health.begin_shutdown();
    }
    drain(&producer, &mut shutdown, settings.shutdown_timeout).await;
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
    release(producer, &shutdown, settings.shutdown_timeout).await;
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

/// librdkafka's limit on a message (`message.max.bytes`, 1000000 unless `[kafka]` sets it):
/// a longer line could not be sent, so it is not even held in memory.
fn message_max_bytes(settings: &Settings) -> usize {
    settings
        .resolved_kafka
        .get("message.max.bytes")
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(1_000_000)
}

/// What became of the lines read.
#[derive(Default)]
struct LineTally {
    read: u64,
    rejected: BTreeMap<&'static str, u64>,
    first_rejected: Vec<u64>,
}

/// Rejected lines logged one by one; after these, only counted (and summed up at the end).
const REJECTED_LOGGED: usize = 100;

impl LineTally {
    fn reject(&mut self, number: u64, rejection: &LineRejection) {
        *self.rejected.entry(rejection.kind()).or_default() += 1;
        if self.first_rejected.len() < REJECTED_LOGGED {
            self.first_rejected.push(number);
            tracing::warn!(line = number, kind = rejection.kind(), error = %rejection, "line not sent");
            if self.first_rejected.len() == REJECTED_LOGGED {
                tracing::warn!("{REJECTED_LOGGED} lines not sent; the rest are only counted");
            }
        }
    }
}

/// The input stopped being readable after `after_line` lines.
struct InputFailure {
    after_line: u64,
    error: std::io::Error,
}

/// Sends a record per line of `lines` until the input ends, fails (`Ok(Some)`), `count`
/// lines were read, or shutdown; an error when a failure stops the producer first.
async fn send_lines(
    producer: &RoleProducer,
    settings: &Settings,
    mut lines: tokio::sync::mpsc::Receiver<Batch>,
    metrics: &ProducerMetrics,
    shutdown: &mut Shutdown,
    tally: &mut LineTally,
) -> Result<Option<InputFailure>, RoleError> {
    let config = &settings.producer;
    let topic = settings.topic.name.as_str();
    let format = LineFormat::new(config.format, config.key.clone());
    let headers = (!config.headers.is_empty()).then(|| {
        config
            .headers
            .iter()
            .fold(OwnedHeaders::new(), |headers, (name, value)| {
                headers.insert(Header {
                    key: name,
                    value: Some(value),
                })
            })
    });
    let started = Instant::now();
    let mut sent: u64 = 0;
    loop {
        let batch = tokio::select! {
            batch = lines.recv() => batch,
            _ = shutdown.wait() => None,
        };
        let lines = match batch {
            None => return Ok(None),
            Some(Batch::Failed { after_line, error }) => {
                return Ok(Some(InputFailure { after_line, error }))
            }
            Some(Batch::Lines(lines)) => lines,
        };
        for line in lines.iter() {
            if shutdown.is_triggered() || (config.count > 0 && tally.read >= config.count) {
                return Ok(None);
            }
            stopped_by_failure(producer)?;
            if !pace(producer, config.rate, started, sent, shutdown, metrics).await {
                return Ok(None);
            }
            tally.read += 1;
            let (number, bytes) = match line {
                InputLine::TooLong { number, len } => {
                    let limit = message_max_bytes(settings);
                    tally.reject(number, &LineRejection::TooLarge { len, limit });
                    continue;
                }
                InputLine::Line { number, bytes } => (number, bytes),
            };
            let record = match format.record(bytes) {
                Ok(record) => record,
                Err(rejection) => {
                    tally.reject(number, &rejection);
                    continue;
                }
            };
            let mut out = BaseRecord::with_opaque_to(topic, number as usize).payload(record.value);
            out.key = record.key.as_deref();
            out.headers = headers.clone();
            match send(producer, out, shutdown).await? {
                Handed::Taken => {}
                Handed::Shutdown => return Ok(None),
                Handed::TooLarge(_) => {
                    let len = bytes.len() as u64;
                    let limit = message_max_bytes(settings);
                    tally.reject(number, &LineRejection::TooLarge { len, limit });
                    continue;
                }
            }
            metrics.accepted.inc();
            sent += 1;
            if config.rate > 0.0 || sent % SERVE_EVERY == 0 {
                serve(producer);
                metrics.health.progress();
            }
        }
        if producer.client().fatal_error().is_some() {
            return Err(fatal_error(producer));
        }
    }
}

/// Of `shutdown_timeout`, what closing the producer gets after the final flush (at most
/// [`CLOSE_TIME`]): closing purges what is still queued and joins librdkafka's threads.
const CLOSE_SHARE: f64 = 0.25;
const CLOSE_TIME: Duration = Duration::from_secs(1);

/// Drops the producer off the async workers: librdkafka's destroy joins its threads and
/// purges what is still queued, which blocks. Bounded by what is left of the stop's deadline
/// (or by [`CLOSE_TIME`] when the producer ended without a shutdown): the process is about
/// to exit anyway.
async fn release(producer: Arc<RoleProducer>, shutdown: &Shutdown, shutdown_timeout: Duration) {
    let within = shutdown
        .deadline(shutdown_timeout)
        .map_or(CLOSE_TIME, |deadline| {
            deadline.saturating_duration_since(Instant::now())
        });
    let dropped = tokio::task::spawn_blocking(move || drop(producer));
    if tokio::time::timeout(within, dropped).await.is_err() {
        tracing::warn!("the producer did not close in time; exiting without waiting for it");
    }
}

/// The producer with its delivery counter.
fn create(
    settings: &Settings,
    producer_id: &str,
    metrics: &ProducerMetrics,
) -> Result<Arc<RoleProducer>, RoleError> {
    let kafka = &settings.resolved_kafka;
    let counter = DeliveryCounter {
        log: ClientLog::new(format!("producer {producer_id}"), kafka.redactor())
            .with_stats(metrics.client.clone()),
        metrics: metrics.clone(),
        failed_ids: Mutex::default(),
        fatal: AtomicBool::new(false),
    };
    let producer = kafka
        .client_config(Scope::Producer)
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
    settings: &Settings,
    mut factory: MessageFactory,
    metrics: &ProducerMetrics,
    shutdown: &mut Shutdown,
) -> Result<(), RoleError> {
    let config = &settings.producer;
    let topic = settings.topic.name.as_str();
    let started = Instant::now();
    let mut sent: u64 = 0;
    while (config.count == 0 || sent < config.count) && !shutdown.is_triggered() {
        stopped_by_failure(producer)?;
        if !pace(producer, config.rate, started, sent, shutdown, metrics).await {
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
        if config.rate > 0.0 || sent % SERVE_EVERY == 0 {
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

/// Waits until every accepted message has a delivery report. Without shutdown this waits as
/// long as librdkafka needs (`delivery.timeout.ms` bounds it); once shutdown is asked for,
/// until the stop's deadline less what closing gets ([`CLOSE_SHARE`]). Flushing blocks, so it
/// runs off the async workers.
async fn drain(producer: &Arc<RoleProducer>, shutdown: &mut Shutdown, shutdown_timeout: Duration) {
    let flush = |timeout: Duration| {
        let producer = Arc::clone(producer);
        tokio::task::spawn_blocking(move || producer.flush(timeout))
    };
    // Accepted messages without a delivery report yet. Not `in_flight_count`: librdkafka's
    // out-queue length also counts statistics and error events waiting to be served, which
    // keep arriving while nothing is being sent.
    let unreported = || {
        let metrics = &producer.context().metrics;
        metrics
            .accepted
            .get()
            .saturating_sub(metrics.delivered.get() + metrics.failed.get())
    };
    let mut deadline: Option<Instant> = None;
    while unreported() > 0 {
        if producer.context().log.failure().is_some() {
            // Nothing queued can be delivered with a failing TLS or login; do not wait for
            // delivery.timeout.ms. The queued messages are reported undelivered.
            return;
        }
        if shutdown.is_triggered() {
            let deadline = *deadline.get_or_insert_with(|| {
                let close = shutdown_timeout.mul_f64(CLOSE_SHARE).min(CLOSE_TIME);
                let end = shutdown
                    .deadline(shutdown_timeout)
                    .map_or_else(Instant::now, |deadline| {
                        deadline.checked_sub(close).unwrap_or(deadline)
                    });
                let timeout = end.saturating_duration_since(Instant::now());
                tracing::info!(unreported = unreported(), ?timeout, "flushing before exit");
                end
            });
            if Instant::now() >= deadline {
                tracing::error!(unreported = unreported(), "flush did not complete");
                return;
            }
        }
        let _ = flush(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(content: &str, payload_bytes: usize) -> ProducerSettings {
        ProducerSettings {
            source: crate::config::InputSource::Generate,
            format: crate::payload::Format::KafkaMessage,
            key: None,
            headers: Default::default(),
            count: 0,
            rate: 0.0,
            producer_id: None,
            content: content.to_owned(),
            payload_bytes,
        }
    }

    #[test]
    fn factory_fills_the_template_and_key() {
        let mut factory = MessageFactory::new(
            &settings("Message {id} from {producer_id} {x}", 3),
            "p-1".into(),
        );
        factory.build(42);
        assert_eq!(factory.key, "42");
        let message = KafkaMessage::decode(&factory.value).expect("valid message");
        assert_eq!(message.message_id, 42);
        assert_eq!(message.producer_id, "p-1");
        assert_eq!(message.content, "Message 42 from p-1 {x}xxx");
        assert_eq!(message.metadata_map()["source"], "kafkad");
        factory.build(43);
        assert_eq!(
            KafkaMessage::decode(&factory.value).expect("valid").content,
            "Message 43 from p-1 {x}xxx"
        );
    }
}
