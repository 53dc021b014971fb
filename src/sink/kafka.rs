//! The `kafka` sink (consume-transform-produce): each processed message is produced to an
//! output topic, with the record's key, its headers, and `kafkad.source.topic`,
//! `kafkad.source.partition` and `kafkad.source.offset` saying where it came from.
//!
//! # Exactly-once (`delivery = "exactly_once"`, the default)
//!
//! Each worker has a transactional producer (`transactional.id` = the prefix, the consumer's
//! `client.id` and the worker's number). One sink call is one transaction: the messages, then
//! the consumer's next offset of each partition the call covers, sent to the group's
//! coordinator inside the transaction with the group membership the call was made under
//! (`send_offsets_to_transaction`), then the commit. The output messages and the input
//! offsets become visible together or not at all: a reader with `isolation.level =
//! read_committed` sees each message once; an aborted transaction's copies stay in the log,
//! marked aborted, and only `read_uncommitted` readers see them.
//!
//! The positions live in Kafka itself, so the [`PositionStore`] claims nothing at the
//! destination: it notes each partition's assignment, and a call of an earlier assignment of
//! this member is refused before it produces anything. Another member's zombie is fenced by
//! the broker: its membership is out of date, and the coordinator refuses its offsets
//! (`ILLEGAL_GENERATION`, `UNKNOWN_MEMBER_ID`, `FENCED_INSTANCE_ID`), which aborts its
//! transaction ([`SinkError::Fenced`]). A member starting on a partition reads its committed
//! offset with librdkafka's `read_committed` default, which waits for a transaction still
//! open on it to end.
//!
//! The single role calls the sink once per record, so it commits one transaction per record:
//! correct, and slow; transactions over several records need the batch role.
//!
//! # At-least-once
//!
//! An idempotent producer; a call returns once every message was acknowledged, and the
//! consumer commits after, as with every other sink.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::claims::{Claim, Claims};
use super::test_pause::{self, Stage};
use super::{PositionStore, Positions, Record, Sink, SinkError, Span, WritesUnits};
use crate::config::{Delivery, KafkaProperties, KafkaSinkSettings, Scope};

/// What the workers' sinks of one consumer share.
struct Shared {
    output: String,
    properties: KafkaProperties,
    exactly_once: bool,
    /// `<prefix>-<client.id>`; each worker adds its number.
    transactional_id: String,
    timeout: Duration,
    claims: Claims,
    workers: AtomicUsize,
}

/// Delivery results of one producer: the first failure since the last call.
#[derive(Default)]
struct Deliveries(Mutex<Option<KafkaError>>);

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((error, _)) = result {
            let mut first = self.0.lock().unwrap_or_else(|p| p.into_inner());
            first.get_or_insert_with(|| error.clone());
        }
    }
}

type OutputProducer = ThreadedProducer<Deliveries>;

/// The kafka sink of one worker.
pub struct KafkaSink {
    shared: Arc<Shared>,
    worker: usize,
    producer: Option<OutputProducer>,
}

impl KafkaSink {
    /// The first worker's sink, its producer made (and its transactions initialised) now, so
    /// an output cluster that cannot be used shows at start.
    pub fn new(
        settings: &KafkaSinkSettings,
        properties: &KafkaProperties,
    ) -> Result<Self, SinkError> {
        let mut properties = properties.clone();
        let exactly_once = settings.delivery == Delivery::ExactlyOnce;
        properties.set("enable.idempotence", "true");
        properties.set("acks", "all");
        if exactly_once && properties.get("transaction.timeout.ms").is_none() {
            // How long a crashed member's open transaction holds back read_committed readers
            // of the output and the next owner of its partitions (librdkafka: 60 s).
            properties.set("transaction.timeout.ms", "10000");
        }
        let client_id = properties.get("client.id").unwrap_or("kafkad").to_owned();
        let prefix = settings.transactional_id.as_deref().unwrap_or("kafkad");
        let shared = Arc::new(Shared {
            output: settings.topic.clone(),
            properties,
            exactly_once,
            transactional_id: format!("{prefix}-{client_id}"),
            timeout: settings.timeout,
            claims: Claims::default(),
            workers: AtomicUsize::new(1),
        });
        let mut sink = KafkaSink {
            shared,
            worker: 0,
            producer: None,
        };
        sink.producer()?;
        Ok(sink)
    }

    /// The producer, made (again) if there is none.
    fn producer(&mut self) -> Result<&OutputProducer, SinkError> {
        if self.producer.is_none() {
            let shared = &self.shared;
            let mut config = shared.properties.client_config(Scope::Producer);
            if shared.exactly_once {
                config.set(
                    "transactional.id",
                    format!("{}-{}", shared.transactional_id, self.worker),
                );
            }
            let producer: OutputProducer = config
                .create_with_context(Deliveries::default())
                .map_err(|e| failed("creating the producer", &e, false))?;
            if shared.exactly_once {
                producer
                    .init_transactions(shared.timeout)
                    .map_err(|e| failed("initialising transactions", &e, true))?;
            }
            self.producer = Some(producer);
        }
        Ok(self.producer.as_ref().expect("made above"))
    }

    /// Queues every record of `batch` for the output topic.
    fn send(&mut self, batch: &[Record<'_>]) -> Result<(), SinkError> {
        let output = self.shared.output.clone();
        let producer = self.producer()?;
        for record in batch {
            let value = record.expect_message("kafka")?.encode();
            let headers = source_headers(record.headers, record);
            let mut out = BaseRecord::<[u8], [u8]>::to(&output)
                .payload(&value)
                .headers(headers);
            if let Some(key) = record.key {
                out = out.key(key);
            }
            loop {
                match producer.send(out) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        out = back;
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err((error, _)) => return Err(failed("queueing a message", &error, true)),
                }
            }
        }
        Ok(())
    }

    /// At-least-once: send and wait for every acknowledgement.
    fn produce(&mut self, batch: &[Record<'_>]) -> Result<(), SinkError> {
        self.send(batch)?;
        let timeout = self.shared.timeout;
        let producer = self.producer()?;
        producer
            .flush(timeout)
            .map_err(|e| failed("waiting for acknowledgements", &e, true))?;
        let failure = producer
            .context()
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        match failure {
            Some(error) => Err(failed(
                "a message",
                &error,
                !crate::dlq::is_permanent(&error),
            )),
            None => Ok(()),
        }
    }

    /// Exactly-once: the batch and the positions in one transaction.
    fn transaction(&mut self, batch: &[Record<'_>], at: &Positions<'_>) -> Result<(), SinkError> {
        let claims: Vec<Claim> = at
            .spans
            .iter()
            .map(|span| self.shared.claims.of(at.topic, span))
            .collect::<Result<_, _>>()?;
        drop(claims);
        let Some(group) = at.group else {
            return Err(SinkError::Fenced(
                "no group membership yet to commit the offsets with".to_owned(),
            ));
        };
        let timeout = self.shared.timeout;
        self.producer()?
            .begin_transaction()
            .map_err(|e| failed("beginning a transaction", &e, true))?;
        let outcome = self
            .send(batch)
            .and_then(|()| self.commit(at, group, timeout));
        if let Err(error) = outcome {
            if let Some(producer) = &self.producer {
                if let Err(abort) = producer.abort_transaction(timeout) {
                    tracing::warn!(%abort, "cannot abort the transaction; the producer is made anew");
                    self.producer = None;
                }
            }
            return Err(error);
        }
        test_pause::at(Stage::AfterCommit, &covers(at.topic, at.spans));
        Ok(())
    }

    /// The offsets into the transaction, then its commit.
    fn commit(
        &mut self,
        at: &Positions<'_>,
        group: &ConsumerGroupMetadata,
        timeout: Duration,
    ) -> Result<(), SinkError> {
        let mut offsets = TopicPartitionList::with_capacity(at.spans.len());
        for span in at.spans {
            offsets
                .add_partition_offset(at.topic, span.partition, Offset::Offset(span.next))
                .map_err(|e| failed("listing the offsets", &e, false))?;
        }
        let producer = self.producer()?;
        if test_pause::armed(Stage::BeforeCommit) {
            producer
                .flush(timeout)
                .map_err(|e| failed("waiting for acknowledgements", &e, true))?;
            test_pause::at(Stage::BeforeCommit, &covers(at.topic, at.spans));
        }
        producer
            .send_offsets_to_transaction(&offsets, group, timeout)
            .map_err(|e| transaction_error("sending the offsets", &e))?;
        producer
            .commit_transaction(timeout)
            .map_err(|e| transaction_error("committing the transaction", &e))
    }
}

/// The record's own headers, then where it came from.
fn source_headers(own: Option<&OwnedHeaders>, record: &Record<'_>) -> OwnedHeaders {
    use rdkafka::message::Headers;
    let mut headers = OwnedHeaders::new_with_capacity(own.map_or(0, |h| h.count()) + 3);
    if let Some(own) = own {
        headers = own.iter().fold(headers, OwnedHeaders::insert);
    }
    let (partition, offset) = (record.partition.to_string(), record.offset.to_string());
    for (key, value) in [
        ("kafkad.source.topic", record.topic),
        ("kafkad.source.partition", partition.as_str()),
        ("kafkad.source.offset", offset.as_str()),
    ] {
        headers = headers.insert(Header {
            key,
            value: Some(value.as_bytes()),
        });
    }
    headers
}

/// `partition@next` of each span, for log lines.
fn covers(topic: &str, spans: &[Span]) -> String {
    let pairs: Vec<String> = spans
        .iter()
        .map(|s| format!("{}@{}", s.partition, s.next))
        .collect();
    format!("{topic}: {}", pairs.join(" "))
}

fn failed(what: &str, error: &KafkaError, retryable: bool) -> SinkError {
    SinkError::Produce {
        what: what.to_owned(),
        reason: error.to_string(),
        retryable,
    }
}

/// A transaction's failure: fenced when the group moved on without this member (or another
/// producer took its transactional id), else worth another try after the abort.
fn transaction_error(what: &str, error: &KafkaError) -> SinkError {
    let code = error.rdkafka_error_code();
    let fenced = matches!(
        code,
        Some(
            RDKafkaErrorCode::IllegalGeneration
                | RDKafkaErrorCode::UnknownMemberId
                | RDKafkaErrorCode::FencedInstanceId
                | RDKafkaErrorCode::ProducerFenced
                | RDKafkaErrorCode::InvalidProducerEpoch
        )
    );
    match fenced {
        true => SinkError::Fenced(format!("{what}: {error}")),
        false => failed(what, error, true),
    }
}

/// Each unit is one transaction with the consumer's offsets inside it (exactly-once), or
/// produced as it comes (at-least-once).
impl WritesUnits for KafkaSink {
    fn write(
        &mut self,
        records: &[Record<'_>],
        at: Option<&Positions<'_>>,
    ) -> Result<(), SinkError> {
        match (self.shared.exactly_once, at) {
            (true, Some(at)) => self.transaction(records, at),
            _ => self.produce(records),
        }
    }

    fn positions(&self) -> Option<Box<dyn PositionStore>> {
        self.shared
            .exactly_once
            .then(|| Box::new(Assignments(self.shared.claims.clone())) as Box<dyn PositionStore>)
    }

    fn another(&self) -> Option<Box<dyn Sink>> {
        Some(Box::new(KafkaSink {
            shared: Arc::clone(&self.shared),
            worker: self.shared.workers.fetch_add(1, Ordering::SeqCst),
            producer: None,
        }))
    }
}

/// The kafka sink's position store: the assignment of each partition, for the local fence;
/// the positions themselves are Kafka's committed offsets.
struct Assignments(Claims);

impl PositionStore for Assignments {
    fn claim(&mut self, _: &str, partitions: &[(i32, u64)]) -> Result<Vec<(i32, i64)>, SinkError> {
        for &(partition, assignment) in partitions {
            self.0.set(
                partition,
                Claim {
                    assignment,
                    token: 0,
                    written: None,
                },
            );
        }
        Ok(Vec::new())
    }
}
