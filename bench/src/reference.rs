//! The reference side: rdkafka called directly with the role's client configuration; no sink,
//! no metrics, no statistics parsing.
//!
//! It comes in two kinds. The *raw* reference sends pre-serialized payloads and never looks at
//! what it consumes: the physical limit of the client. The *codec* reference does the same
//! loops, and also encodes every message it sends as kafkad's `KafkaMessage` with serde_json
//! into a reused buffer (stamped with the current time, like the role), and decodes every
//! record it consumes. raw → codec is what the codec costs; codec → kafkad is what kafkad's own
//! loop costs (metrics, the sink call, owned copies, its checks).

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafkad::config::{ProducerSettings, Role, Scope, Settings};
use kafkad::message::{KafkaMessage, Timestamp};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::message::{BorrowedMessage, DeliveryResult};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use serde_json::value::RawValue;

use crate::measure::{
    after_warmup, run_deadline, unix_micros, window, DeliveryMarks, DeliveryWatch, Mark,
    PhaseResult,
};
use crate::settings::{message_factory, PRODUCER_ID};
use crate::BenchError;

/// Which reference: the raw client, or the raw client plus kafkad's codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Pre-serialized payloads out, payloads never read in.
    Raw,
    /// Every message encoded on the way out and decoded on the way in.
    Codec,
}

/// The reference's client context: counts deliveries, and skips statistics parsing (kafkad
/// parses them for its metrics; the reference has none).
#[derive(Default, Clone)]
pub struct Reference {
    delivered: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
}

impl ClientContext for Reference {
    fn stats_raw(&self, _statistics: &[u8]) {}
}

impl ProducerContext for Reference {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.delivered.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

impl ConsumerContext for Reference {}

/// Pre-serialized record values: 1024 payloads from the producer role's message factory, ids
/// spread over `1..=messages` so sizes (and lz4's view of them) match what the role sends.
pub fn payload_ring(settings: &ProducerSettings, messages: u64) -> Vec<Vec<u8>> {
    let ring = 1024u64.min(messages.max(1));
    let mut factory = message_factory(settings);
    (0..ring)
        .map(|k| {
            let id = 1 + (k * messages.max(1)) / ring;
            factory.build(id as i64);
            factory.value().to_vec()
        })
        .collect()
}

/// The codec reference's encoder: the producer role's message, built into reused buffers.
struct Encoder {
    content: String,
    padding: String,
    metadata: Box<RawValue>,
    value: Vec<u8>,
}

impl Encoder {
    fn new(settings: &ProducerSettings) -> Self {
        Encoder {
            content: String::with_capacity(64 + settings.payload_bytes),
            padding: "x".repeat(settings.payload_bytes),
            metadata: RawValue::from_string(r#"{"source":"kafkad"}"#.to_owned())
                .expect("valid JSON"),
            value: Vec::with_capacity(256 + settings.payload_bytes),
        }
    }

    /// Encodes message `id` as the role would send it; the value stays in `self.value`.
    fn encode(&mut self, id: u64) {
        self.content.clear();
        let _ = write!(self.content, "Message {id} from {PRODUCER_ID}");
        self.content.push_str(&self.padding);
        let message = KafkaMessage {
            message_id: id as i64,
            content: self.content.as_str().into(),
            producer_id: PRODUCER_ID.into(),
            timestamp: Timestamp::now(),
            metadata: std::borrow::Cow::Borrowed(&self.metadata),
        };
        self.value.clear();
        message.encode_into(&mut self.value);
    }
}

/// Decodes a consumed value as the codec reference does, keeping the result observable so the
/// work is not optimized away.
fn decode(kind: Kind, payload: Option<&[u8]>) {
    if kind == Kind::Codec {
        let decoded = payload.map(KafkaMessage::decode);
        std::hint::black_box(&decoded);
    }
}

/// Delivery-report events served per [`serve`] call at most, as the role serves them.
const SERVE_EVENTS: usize = 64;

/// Serves the delivery reports librdkafka has queued, up to [`SERVE_EVENTS`] events, until a
/// poll finds none; never blocks (`BaseProducer::poll` with no time left takes one event, a
/// request's worth of reports).
fn serve(producer: &BaseProducer<Reference>) {
    let context = producer.context();
    let reported =
        || context.delivered.load(Ordering::Relaxed) + context.failed.load(Ordering::Relaxed);
    for _ in 0..SERVE_EVENTS {
        let before = reported();
        producer.poll(Duration::ZERO);
        if reported() == before {
            return;
        }
    }
}

/// Sends `messages` records with the producer role's client configuration. With `rate`, paces
/// them like the role and keys each with its send time (8 bytes, big-endian microseconds) for
/// the latency measurement; otherwise keys them with the decimal id, as the role does.
pub fn reference_send(
    kind: Kind,
    settings: &Settings,
    messages: u64,
    rate: Option<f64>,
    context: Reference,
) -> Result<BaseProducer<Reference>, BenchError> {
    let producer: BaseProducer<Reference> = settings
        .resolved_kafka
        .client_config(Scope::Producer)
        .create_with_context(context)
        .map_err(|e| BenchError::Reference(format!("reference producer: {e}")))?;
    let ring = match kind {
        Kind::Raw => payload_ring(&settings.producer, messages),
        Kind::Codec => Vec::new(),
    };
    let mut encoder = Encoder::new(&settings.producer);
    let topic = settings.topic.name.as_str();
    let mut key = String::with_capacity(20);
    let started = Instant::now();
    for n in 0..messages {
        if let Some(rate) = rate {
            let due = started + Duration::from_secs_f64(n as f64 / rate);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        let payload: &[u8] = match kind {
            Kind::Raw => &ring[(n % ring.len() as u64) as usize],
            Kind::Codec => {
                encoder.encode(n + 1);
                &encoder.value
            }
        };
        let time_key;
        let record_key: &[u8] = if rate.is_some() {
            time_key = unix_micros().to_be_bytes();
            &time_key
        } else {
            key.clear();
            let _ = write!(key, "{}", n + 1);
            key.as_bytes()
        };
        loop {
            match producer.send(
                BaseRecord::<[u8], [u8]>::to(topic)
                    .key(record_key)
                    .payload(payload),
            ) {
                Ok(()) => break,
                Err((
                    rdkafka::error::KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull),
                    _,
                )) => {
                    // Serve delivery reports to make room, wait 1 ms and serve again, as the
                    // role does. Not `poll(1 ms)`: rdkafka polls until its timeout ends and
                    // hands librdkafka the time left in whole milliseconds, so every poll of
                    // that millisecond has a timeout of 0, a busy wait that took a core from
                    // the brokers.
                    serve(&producer);
                    std::thread::sleep(Duration::from_millis(1));
                    serve(&producer);
                }
                Err((error, _)) => {
                    return Err(BenchError::Reference(format!("reference send: {error}")))
                }
            }
        }
        // Serve delivery reports now and then (what ThreadedProducer's thread does).
        if n % 256 == 0 || rate.is_some() {
            producer.poll(Duration::ZERO);
        }
    }
    producer
        .flush(Duration::from_secs(120))
        .map_err(|e| BenchError::Reference(format!("reference flush: {e}")))?;
    let context = producer.context();
    let delivered = context.delivered.load(Ordering::Relaxed);
    if delivered != messages {
        return Err(BenchError::Reference(format!(
            "reference producer: {delivered} of {messages} delivered ({} failed)",
            context.failed.load(Ordering::Relaxed)
        )));
    }
    Ok(producer)
}

/// [`reference_send`], its deliveries watched from another thread: the producer (still to be
/// dropped) and when the first and the last deliveries were seen.
fn watched_send(
    kind: Kind,
    settings: &Settings,
    messages: u64,
    rate: Option<f64>,
) -> (Result<BaseProducer<Reference>, BenchError>, DeliveryMarks) {
    let context = Reference::default();
    let delivered = Arc::clone(&context.delivered);
    let watch = DeliveryWatch::start(move || delivered.load(Ordering::Relaxed), messages);
    let producer = reference_send(kind, settings, messages, rate, context);
    (producer, watch.finish())
}

pub fn reference_produce(
    kind: Kind,
    settings: &Settings,
    messages: u64,
) -> Result<PhaseResult, BenchError> {
    let created = Instant::now();
    let (producer, marks) = watched_send(kind, settings, messages, None);
    drop(producer?);
    marks.window(created, messages, "produce-reference")
}

pub fn reference_consumer(settings: &Settings) -> Result<BaseConsumer<Reference>, BenchError> {
    let role = settings
        .role
        .and_then(Role::consumer)
        .ok_or_else(|| BenchError::Reference("reference consumer: not a consumer role".into()))?;
    let consumer: BaseConsumer<Reference> = settings
        .consumer_client_config(role)
        .create_with_context(Reference::default())
        .map_err(|e| BenchError::Reference(format!("reference consumer: {e}")))?;
    consumer
        .subscribe(&[&settings.topic.name])
        .map_err(|e| BenchError::Reference(format!("reference subscribe: {e}")))?;
    Ok(consumer)
}

/// A consume phase under way: its reference consumer, the phase's deadline, and what its
/// window needs.
struct Consuming {
    consumer: BaseConsumer<Reference>,
    /// The phase, as its errors name it (`single-reference`, ...).
    phase: &'static str,
    messages: u64,
    created: Instant,
    deadline: Instant,
    /// When the first record arrived.
    first: Cell<Option<Mark>>,
}

impl Consuming {
    /// Creates the reference consumer of `phase`, which must consume `messages` before
    /// [`run_deadline`] says.
    fn start(phase: &'static str, settings: &Settings, messages: u64) -> Result<Self, BenchError> {
        let created = Instant::now();
        Ok(Consuming {
            consumer: reference_consumer(settings)?,
            phase,
            messages,
            created,
            deadline: created + run_deadline(messages),
            first: Cell::new(None),
        })
    }

    /// Fails the phase once past its deadline, `seen` of its messages consumed.
    fn in_time(&self, seen: u64) -> Result<(), BenchError> {
        if Instant::now() > self.deadline {
            return Err(BenchError::Reference(format!(
                "{}: {seen} of {} messages in time",
                self.phase, self.messages
            )));
        }
        Ok(())
    }

    /// A record, if one comes within `timeout`; the first one marks the window's start.
    fn poll(&self, timeout: Duration) -> Option<BorrowedMessage<'_>> {
        let record = self.consumer.poll(timeout).and_then(Result::ok)?;
        if self.first.get().is_none() {
            self.first.set(Some(Mark::now()));
        }
        Some(record)
    }

    /// The phase's window, from the first record to `end`, once the consumer is closed.
    fn window(self, end: Mark) -> PhaseResult {
        let (created, first, messages) = (self.created, self.first.get(), self.messages);
        drop(self.consumer);
        window(created, first.unwrap_or(end), end, messages)
    }
}

/// The single reference: poll, (decode,) store the offset (as the role's guarantee needs),
/// repeat.
pub fn reference_single(
    kind: Kind,
    settings: &Settings,
    messages: u64,
) -> Result<PhaseResult, BenchError> {
    let consuming = Consuming::start("single-reference", settings, messages)?;
    let mut seen = 0;
    while seen < messages {
        consuming.in_time(seen)?;
        if let Some(record) = consuming.poll(Duration::from_millis(100)) {
            seen += 1;
            decode(kind, record.payload());
            let _ = consuming.consumer.store_offset_from_message(&record);
        }
    }
    let end = Mark::now();
    let _ = consuming.consumer.commit_consumer_state(CommitMode::Sync);
    Ok(consuming.window(end))
}

/// The batch reference: the role's batching rule (up to `max_size`; at least `min_size` and
/// nothing more waiting; or `max_wait`), then last+1 per partition stored and the stored
/// offsets committed synchronously, as the role does. The codec kind decodes each record as it
/// arrives.
pub fn reference_batch(
    kind: Kind,
    settings: &Settings,
    messages: u64,
) -> Result<PhaseResult, BenchError> {
    let consuming = Consuming::start("batch-reference", settings, messages)?;
    let consumer = &consuming.consumer;
    let limits = &settings.batch;
    let mut seen = 0;
    let mut in_batch = 0usize;
    let mut batch_started: Option<Instant> = None;
    let mut positions: HashMap<i32, i64> = HashMap::new();
    let mut end = None;
    while end.is_none() {
        consuming.in_time(seen)?;
        let timeout = if in_batch >= limits.min_size.get() {
            Duration::ZERO
        } else {
            Duration::from_millis(100)
        };
        if let Some(record) = consuming.poll(timeout) {
            decode(kind, record.payload());
            positions.insert(record.partition(), record.offset() + 1);
            in_batch += 1;
            batch_started.get_or_insert_with(Instant::now);
            let waited = batch_started.is_some_and(|s| s.elapsed() >= limits.max_wait);
            if in_batch < limits.max_size.get() && !waited {
                continue;
            }
        }
        let waited = batch_started.is_some_and(|s| s.elapsed() >= limits.max_wait);
        if in_batch > 0 && (in_batch >= limits.min_size.get() || waited) {
            seen += in_batch as u64;
            if seen >= messages {
                end = Some(Mark::now());
            }
            let mut list = TopicPartitionList::with_capacity(positions.len());
            for (&partition, &next) in &positions {
                let _ = list.add_partition_offset(
                    &settings.topic.name,
                    partition,
                    Offset::Offset(next),
                );
            }
            let _ = consumer.store_offsets(&list);
            let _ = consumer.commit_consumer_state(CommitMode::Sync);
            positions.clear();
            in_batch = 0;
            batch_started = None;
        }
    }
    let end = end.expect("loop ends with an end mark");
    Ok(consuming.window(end))
}

/// The roundtrip reference: a consumer thread (joined before anything is sent) and a paced
/// producer keying each record with its send time.
pub fn reference_roundtrip(
    consumer_settings: &Settings,
    producer_settings: &Settings,
    messages: u64,
    rate: f64,
) -> Result<PhaseResult, BenchError> {
    let consuming = Consuming::start("roundtrip-reference", consumer_settings, messages)?;
    let created = consuming.created;
    let ready = Arc::new(AtomicBool::new(false));
    let reader = {
        let ready = Arc::clone(&ready);
        std::thread::spawn(move || -> Result<Vec<(u64, u64)>, BenchError> {
            let consumer = &consuming.consumer;
            let mut latencies = Vec::with_capacity(messages as usize);
            while (latencies.len() as u64) < messages {
                consuming.in_time(latencies.len() as u64)?;
                let polled = consuming.poll(Duration::from_millis(100));
                if !ready.load(Ordering::Relaxed)
                    && consumer.assignment().is_ok_and(|a| a.count() > 0)
                {
                    ready.store(true, Ordering::Relaxed);
                }
                if let Some(record) = polled {
                    let now = unix_micros();
                    let sent = record
                        .key()
                        .and_then(|k| <[u8; 8]>::try_from(k).ok())
                        .map(u64::from_be_bytes)
                        .unwrap_or(now);
                    latencies.push((sent, now.saturating_sub(sent)));
                    let _ = consumer.store_offset_from_message(&record);
                }
            }
            let _ = consumer.commit_consumer_state(CommitMode::Sync);
            Ok(latencies)
        })
    };
    while !ready.load(Ordering::Relaxed) {
        if Instant::now() > created + Duration::from_secs(60) || reader.is_finished() {
            return Err(BenchError::Reference(
                "roundtrip-reference: the consumer was not assigned its partitions within 60 s"
                    .to_owned(),
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let start = Mark::now();
    let (producer, marks) = watched_send(Kind::Raw, producer_settings, messages, Some(rate));
    let warm = marks.first.map(|(mark, _)| mark.unix_us);
    let producer = producer?;
    let latencies = reader
        .join()
        .map_err(|_| BenchError::Reference("roundtrip-reference: reader panicked".to_owned()))??;
    let end = Mark::now();
    drop(producer);
    let mut result = window(created, start, end, messages);
    result.latencies_us = after_warmup(latencies, warm);
    Ok(result)
}
