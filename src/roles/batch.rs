//! The batch consumer: buffer, process the batch, then commit.
//!
//! # When a batch is processed
//!
//! Records are buffered until one of these holds, then the whole batch goes to the sink:
//! * `max_size` records are buffered;
//! * at least `min_size` are buffered and no more are waiting in librdkafka's queue;
//! * the oldest buffered record has waited `max_wait` (so a tail shorter than `min_size` is
//!   not held forever, unlike the seed);
//! * shutdown was asked for (the batch in hand is finished, not dropped).
//!
//! # Guarantee: at-least-once, never at-most-once
//!
//! The seed called this "exactly-once"; it is at-least-once, and here is precisely how:
//!
//! * After the sink returns `Ok` for a batch, kafkad stores the next offset (last + 1) of every
//!   partition in the batch (`enable.auto.offset.store = false`: librdkafka stores nothing by
//!   itself), then commits the stored offsets synchronously. Records that were dead-lettered
//!   count as processed once their copy was acknowledged. Nothing is ever stored, and so
//!   nothing committed, that was not processed, so a crash at any point loses nothing.
//! * A crash after processing and before the commit redelivers the whole batch: duplicates.
//!   Make the processing idempotent (e.g. keyed by `(producer_id, message_id)`) to get
//!   effectively-once results.
//! * A failed commit leaves the offsets stored, so the next commit (the next batch's, the one
//!   in the revoke callback, or the one on the way out) carries them; if none succeeds, the
//!   batch is redelivered.
//! * On partition revocation (rebalance), inside the revoke callback and so before the
//!   partitions move: the stored offsets, those of the revoked partitions included, are
//!   committed, and buffered unprocessed records of those partitions are dropped. Their next
//!   owner receives them from the committed offset. Partitions that stay keep their buffer.
//!
//! # When the sink fails
//!
//! A batch the sink fails on is retried whole after the backoff delay (`[retry]`, see
//! `retry`). Meanwhile every assigned partition is paused and the loop keeps polling: the
//! consumer stays in its group, and records already fetched are dropped and read again after
//! the pause (the loop seeks back), since this consumer holds one batch at a time and new
//! records would only pile up behind it. Once the attempts are used up, or at once for a
//! permanent failure, the batch is taken apart: its records go to the sink one at a time,
//! and those that fail are dead-lettered (`processing_failed`); then the batch is committed
//! like any other. With `on_exhausted = "stop"` the role stops instead, the batch
//! uncommitted. A batch waiting for a retry at shutdown is left uncommitted and redelivered.
//! A rebalance during the wait drops the records of revoked partitions as above; the rest
//! are retried.

use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::message::{Headers, OwnedHeaders, OwnedMessage};
use rdkafka::Message;
use serde_json::value::RawValue;

use super::consumer::{self as shared, Inspected, KafkadConsumer};
use super::retry::{self, Next, RetryPolicy};
use super::{ConsumerReport, RoleError, POLL_INTERVAL};
use crate::config::{BatchSettings, Settings};
use crate::dlq::{DeadLetterError, DeadLetters, Rejection};
use crate::message::{KafkaMessage, Timestamp};
use crate::shutdown::Shutdown;
use crate::sink::{Record, Sink};
use crate::telemetry::clock::Tick;
use crate::telemetry::metrics::ConsumerMetrics;

/// A record of the batch, owned: its decoded text and its original key and value live in the
/// batch's two buffers, which are kept from one batch to the next. A buffered librdkafka record
/// would keep the whole fetch buffer it came in alive for as long as the batch waits (a retry
/// can take minutes); an owned message plus a detached record cost six allocations and frees
/// per record, more than the loop's other work on it.
struct Entry {
    partition: i32,
    offset: i64,
    decoded: Decoded,
    original: Original,
}

/// What a dead-letter copy repeats of a record as received, besides its position (its
/// timestamp is the copy's own).
struct Original {
    /// In the batch's `bytes`.
    key: Option<Range<usize>>,
    /// In the batch's `bytes`.
    value: Option<Range<usize>>,
    /// Looked up for every record, though few have any: the one field of librdkafka's
    /// record the loop would not otherwise touch, and a measurable part of its cost.
    headers: Option<OwnedHeaders>,
}

/// A decoded message, its text in the batch's `text`.
struct Decoded {
    message_id: i64,
    timestamp: Timestamp,
    content: Range<usize>,
    producer_id: Range<usize>,
    metadata: Box<RawValue>,
}

/// The next offset to store per partition. Records come in runs from one partition (a fetch's
/// worth at a time), so the partition touched last is looked at first: no hashing per record,
/// and a short scan when the run changes.
#[derive(Debug, Default, Clone, PartialEq)]
struct Positions {
    next: Vec<(i32, i64)>,
    last: usize,
}

impl Positions {
    fn set(&mut self, partition: i32, next: i64) {
        if let Some(slot) = self.next.get_mut(self.last) {
            if slot.0 == partition {
                slot.1 = next;
                return;
            }
        }
        match self.next.iter().position(|&(p, _)| p == partition) {
            Some(index) => {
                self.next[index].1 = next;
                self.last = index;
            }
            None => {
                self.last = self.next.len();
                self.next.push((partition, next));
            }
        }
    }

    fn get(&self, partition: i32) -> Option<i64> {
        self.next
            .iter()
            .find(|&&(p, _)| p == partition)
            .map(|&(_, next)| next)
    }

    fn remove(&mut self, partition: i32) {
        self.next.retain(|&(p, _)| p != partition);
        self.last = 0;
    }

    fn partitions(&self) -> impl Iterator<Item = i32> + '_ {
        self.next.iter().map(|&(p, _)| p)
    }

    fn is_empty(&self) -> bool {
        self.next.is_empty()
    }

    fn clear(&mut self) {
        self.next.clear();
        self.last = 0;
    }
}

/// The records in hand.
struct Batch {
    /// The topic every record comes from.
    topic: String,
    /// The records for the sink.
    entries: Vec<Entry>,
    /// The content and producer id of every record, one after the other.
    text: String,
    /// The original key and value of every record, one after the other.
    bytes: Vec<u8>,
    /// The partition of each dead-lettered record in the batch (their copies are
    /// acknowledged; they count as processed).
    dead_lettered: Vec<i32>,
    /// Next offset to store per partition once the batch is processed, over every record in
    /// the batch, dead-lettered ones included.
    positions: Positions,
    /// When the oldest record arrived.
    started: Option<Tick>,
}

impl Batch {
    fn new(topic: &str) -> Self {
        Batch {
            topic: topic.to_owned(),
            entries: Vec::new(),
            text: String::new(),
            bytes: Vec::new(),
            dead_lettered: Vec::new(),
            positions: Positions::default(),
            started: None,
        }
    }

    /// Records in the batch, dead-lettered ones included: what the size limits count.
    fn len(&self) -> usize {
        self.entries.len() + self.dead_lettered.len()
    }

    /// Adds `record`, decoded as `message`.
    fn push<M: Message>(&mut self, record: &M, message: &KafkaMessage<'_>) {
        let original = Original {
            key: record.key().map(|key| keep(&mut self.bytes, key)),
            value: record.payload().map(|value| keep(&mut self.bytes, value)),
            headers: record.headers().map(|headers| {
                let copy = OwnedHeaders::new_with_capacity(headers.count());
                headers.iter().fold(copy, OwnedHeaders::insert)
            }),
        };
        let decoded = Decoded {
            message_id: message.message_id,
            timestamp: message.timestamp,
            content: keep_text(&mut self.text, &message.content),
            producer_id: keep_text(&mut self.text, &message.producer_id),
            metadata: message.metadata.as_ref().to_owned(),
        };
        let (partition, offset) = (record.partition(), record.offset());
        self.advance(partition, offset);
        self.entries.push(Entry {
            partition,
            offset,
            decoded,
            original,
        });
    }

    /// Adds a record that was dead-lettered: it counts as processed.
    fn push_dead_lettered(&mut self, partition: i32, offset: i64) {
        self.advance(partition, offset);
        self.dead_lettered.push(partition);
    }

    fn advance(&mut self, partition: i32, offset: i64) {
        self.positions.set(partition, offset + 1);
        self.started.get_or_insert_with(Tick::now);
    }

    /// The records as the sink takes them, borrowing from the batch.
    fn records(&self) -> Vec<Record<'_>> {
        self.entries
            .iter()
            .map(
                |Entry {
                     partition,
                     offset,
                     decoded,
                     ..
                 }| Record {
                    partition: *partition,
                    offset: *offset,
                    message: KafkaMessage {
                        message_id: decoded.message_id,
                        content: Cow::Borrowed(&self.text[decoded.content.clone()]),
                        producer_id: Cow::Borrowed(&self.text[decoded.producer_id.clone()]),
                        timestamp: decoded.timestamp,
                        metadata: Cow::Borrowed(&decoded.metadata),
                    },
                },
            )
            .collect()
    }

    /// `entry` as it was received, for its dead-letter copy.
    fn original(&self, entry: &Entry) -> OwnedMessage {
        let bytes = |range: &Option<Range<usize>>| range.clone().map(|r| self.bytes[r].to_vec());
        OwnedMessage::new(
            bytes(&entry.original.value),
            bytes(&entry.original.key),
            self.topic.clone(),
            rdkafka::Timestamp::NotAvailable,
            entry.partition,
            entry.offset,
            entry.original.headers.clone(),
        )
    }

    /// Forgets the records of revoked partitions; returns how many were dropped.
    fn drop_partitions(&mut self, revoked: &[i32]) -> usize {
        let before = self.len();
        self.entries.retain(|e| !revoked.contains(&e.partition));
        self.dead_lettered.retain(|p| !revoked.contains(p));
        for &partition in revoked {
            self.positions.remove(partition);
        }
        let dropped = before - self.len();
        if self.positions.is_empty() {
            self.clear();
        }
        dropped
    }

    /// Empties the batch for the next one, keeping its allocations: growing fresh buffers to
    /// `max_size` records for every batch cost a reallocation and copy per doubling.
    fn clear(&mut self) {
        self.entries.clear();
        self.text.clear();
        self.bytes.clear();
        self.dead_lettered.clear();
        self.positions.clear();
        self.started = None;
    }

    /// Whether the oldest record has waited `max_wait` at `now`.
    fn waited(&self, max_wait: Duration, now: Tick) -> bool {
        self.started
            .is_some_and(|started| now.passed(started, max_wait))
    }

    /// How long a poll at `now` may block before the batch is due.
    fn poll_timeout(&self, limits: &BatchSettings, now: Tick) -> Duration {
        if self.len() >= limits.min_size.get() {
            return Duration::ZERO;
        }
        match self.started {
            None => POLL_INTERVAL,
            Some(started) => limits
                .max_wait
                .saturating_sub(now.duration_since(started))
                .min(POLL_INTERVAL),
        }
    }
}

/// Appends `data` to `buffer`; returns where it is.
fn keep(buffer: &mut Vec<u8>, data: &[u8]) -> Range<usize> {
    let start = buffer.len();
    buffer.extend_from_slice(data);
    start..buffer.len()
}

/// Appends `text` to `buffer`; returns where it is.
fn keep_text(buffer: &mut String, text: &str) -> Range<usize> {
    let start = buffer.len();
    buffer.push_str(text);
    start..buffer.len()
}

/// A batch the sink failed on, waiting for its next attempt with the assignment paused.
struct Backoff {
    /// Failed attempts so far.
    attempts: u32,
    due: Tick,
    paused: Vec<i32>,
    paused_at: Instant,
    /// Per partition, the first offset dropped while paused: where to read again.
    dropped: HashMap<i32, i64>,
}

impl Backoff {
    /// Where each partition reads on after the pause: after the last record taken from it,
    /// or, for a partition nothing was taken from yet, at the first record dropped.
    /// The wait is over: resumes the paused partitions where each reads on.
    fn end(
        self,
        consumer: &KafkadConsumer,
        topic: &str,
        next_offset: &Positions,
        metrics: &ConsumerMetrics,
    ) {
        let read_on = self.read_on(next_offset);
        retry::resume(
            consumer,
            topic,
            &self.paused,
            &read_on,
            self.paused_at,
            metrics,
        );
    }

    fn read_on(&self, next_offset: &Positions) -> HashMap<i32, i64> {
        self.paused
            .iter()
            .chain(self.dropped.keys())
            .filter_map(|&p| {
                next_offset
                    .get(p)
                    .or_else(|| self.dropped.get(&p).copied())
                    .map(|offset| (p, offset))
            })
            .collect()
    }
}

/// What a batch attempt came to.
enum Step {
    /// Processed (records that failed alone dead-lettered), stored, committed; batch emptied.
    Done,
    /// Failed; try again after the delay.
    RetryIn(Duration),
    /// Shutdown while a dead-letter copy was not yet acknowledged: nothing stored.
    Interrupted,
}

/// What one consumer's batches go through.
struct Processor<'a> {
    consumer: &'a KafkadConsumer,
    sink: Box<dyn Sink>,
    metrics: &'a ConsumerMetrics,
    dead_letters: &'a DeadLetters,
    shutdown: &'a Shutdown,
    policy: RetryPolicy,
}

/// The loop, on the consumer's own thread (see [`super::run_consumer`]).
pub(super) fn consume(
    settings: &Settings,
    sink: Box<dyn Sink>,
    metrics: &ConsumerMetrics,
    shutdown: &Shutdown,
) -> Result<ConsumerReport, RoleError> {
    let parts = shared::create(settings, metrics)?;
    let consumer = &parts.consumer;
    let topic = settings.topic.name.as_str();
    let limits = &settings.batch;
    tracing::info!(group = %parts.group, min_size = limits.min_size, max_size = limits.max_size, max_wait = ?limits.max_wait, "batch consumer started");
    let mut processor = Processor {
        consumer,
        sink,
        metrics,
        dead_letters: &parts.dead_letters,
        shutdown,
        policy: RetryPolicy::new(&settings.retry),
    };
    let mut batch = Batch::new(topic);
    let mut backoff: Option<Backoff> = None;
    // Per partition, the offset after the last record taken from librdkafka: where a paused
    // partition must read on from, whatever librdkafka fetched and discarded meanwhile.
    let mut next_offset = Positions::default();
    let outcome = loop {
        if let Some(failure) = shared::connection_failure(consumer) {
            break Err(failure);
        }
        // The previous turn finished (a poll returned, a batch was done): progress. This
        // turn's one clock reading (it may be older than a poll that returns a record, by
        // at most that poll's timeout, which ends no later than the batch is due).
        let now = Tick::now();
        metrics.health.progress_at(now);
        if shared::stopping(shutdown, metrics) {
            break Ok(true);
        }
        if let Some(waiting) = backoff.take_if(|b| b.due <= now) {
            metrics.retries.inc();
            let step = processor.attempt(&mut batch, waiting.attempts);
            match step {
                Ok(Step::RetryIn(delay)) => {
                    backoff = Some(Backoff {
                        attempts: waiting.attempts + 1,
                        due: Tick::now().after(delay),
                        ..waiting
                    });
                    continue;
                }
                Ok(Step::Done) => {
                    waiting.end(consumer, topic, &next_offset, metrics);
                    continue;
                }
                Ok(Step::Interrupted) => break Ok(false),
                Err(error) => break Err(error),
            }
        }
        let timeout = match &backoff {
            Some(waiting) => waiting.due.duration_since(now).min(POLL_INTERVAL),
            None => batch.poll_timeout(limits, now),
        };
        let polled = consumer.poll(timeout);
        // Rebalance callbacks ran inside that poll, before any record it returns: drop what
        // was revoked now, so a record from a re-assigned partition is never dropped with it.
        let revoked = consumer.context().take_revoked();
        if !revoked.is_empty() {
            let dropped = batch.drop_partitions(&revoked);
            if dropped > 0 {
                tracing::info!(?revoked, dropped, "dropped unprocessed records of revoked partitions; their next owner receives them");
            }
            for &partition in &revoked {
                next_offset.remove(partition);
            }
            if let Some(waiting) = &mut backoff {
                for partition in &revoked {
                    waiting.dropped.remove(partition);
                }
                if batch.len() == 0 {
                    tracing::info!("every partition of the batch waiting for a retry was revoked; their next owners receive its records");
                    if let Some(waiting) = backoff.take() {
                        waiting.end(consumer, topic, &next_offset, metrics);
                    }
                }
            }
        }
        match polled {
            None => {}
            Some(Err(error)) => {
                if let Err(fatal) = shared::poll_error(consumer, error) {
                    break Err(fatal);
                }
            }
            Some(Ok(record)) => {
                if let Some(waiting) = &mut backoff {
                    // Fetched before the pause (or from a partition assigned since): read it
                    // again once the batch in hand is done.
                    waiting
                        .dropped
                        .entry(record.partition())
                        .and_modify(|first| *first = (*first).min(record.offset()))
                        .or_insert(record.offset());
                    continue;
                }
                metrics.consumed.inc();
                next_offset.set(record.partition(), record.offset() + 1);
                match shared::inspect(&record, settings, &parts.dead_letters, shutdown) {
                    Ok(Inspected::Message(message)) => batch.push(&record, &message),
                    Ok(Inspected::DeadLettered) => {
                        batch.push_dead_lettered(record.partition(), record.offset())
                    }
                    // The record's copy was not acknowledged: its position stays out of the
                    // batch, so the commit stops below it. Finish the rest and leave.
                    Err(DeadLetterError::Interrupted) => break Ok(true),
                    // The copy can never be made: finish the batch in hand (its records are
                    // all before this one), then stop with this record uncommitted.
                    Err(permanent) => break Err(RoleError::DeadLetter(permanent)),
                }
                if batch.len() < limits.max_size.get() && !batch.waited(limits.max_wait, now) {
                    // Take whatever else is already waiting before deciding (see poll_timeout).
                    continue;
                }
            }
        }
        if backoff.is_some() {
            continue;
        }
        let due =
            batch.len() >= limits.min_size.get() || batch.waited(limits.max_wait, Tick::now());
        if due {
            match processor.attempt(&mut batch, 0) {
                Ok(Step::Done) => {}
                Ok(Step::RetryIn(delay)) => {
                    let paused: Vec<i32> = match consumer.assignment() {
                        Ok(list) => list
                            .elements_for_topic(topic)
                            .iter()
                            .map(|e| e.partition())
                            .collect(),
                        Err(_) => batch.positions.partitions().collect(),
                    };
                    let paused_at = retry::pause(consumer, topic, &paused);
                    backoff = Some(Backoff {
                        attempts: 1,
                        due: Tick::now().after(delay),
                        paused,
                        paused_at,
                        dropped: HashMap::new(),
                    });
                }
                Ok(Step::Interrupted) => break Ok(false),
                Err(error) => break Err(error),
            }
        }
    };

    // Graceful stop: the batch in hand is processed and committed, once. A batch waiting for
    // a retry, or one that fails now, stays uncommitted and is redelivered.
    let finish = |processor: &mut Processor<'_>, batch: &mut Batch| match processor.last(batch) {
        Ok(Step::Done | Step::Interrupted) => Ok(()),
        Ok(Step::RetryIn(_)) => {
            tracing::info!(
                records = batch.len(),
                "stopping with the batch unprocessed; it stays uncommitted and is redelivered"
            );
            Ok(())
        }
        Err(error) => Err(error),
    };
    let outcome = match outcome {
        Ok(true) if backoff.is_some() => {
            tracing::info!(
                records = batch.len(),
                "stopping while the batch waits for a retry; it stays uncommitted and is redelivered"
            );
            Ok(())
        }
        Ok(true) if batch.len() > 0 => finish(&mut processor, &mut batch),
        Ok(_) => Ok(()),
        // Every record in hand comes before the one that cannot be dead-lettered: finish
        // them, so only that record (and what follows it) is redelivered.
        Err(error @ RoleError::DeadLetter(_)) if batch.len() > 0 && backoff.is_none() => {
            finish(&mut processor, &mut batch).and(Err(error))
        }
        Err(error) => Err(error),
    };
    drop(processor);
    parts.dead_letters.flush(settings.shutdown_timeout);
    shared::close(parts.consumer, settings.shutdown_timeout);
    outcome.map(|()| ConsumerReport::from_metrics(metrics))
}

impl Processor<'_> {
    /// One attempt at the batch, `failed` attempts having failed before: processed, stored
    /// and committed; or taken apart once the attempts are used up; or a delay to wait.
    fn attempt(&mut self, batch: &mut Batch, failed: u32) -> Result<Step, RoleError> {
        let outcome = {
            let records = batch.records();
            let started = Tick::now();
            let outcome = match records.is_empty() {
                true => Ok(()),
                false => self.sink.process_batch(&records),
            };
            if outcome.is_ok() {
                self.processed(&records, started);
            }
            outcome
        };
        let error = match outcome {
            Ok(()) => {
                self.commit(batch);
                return Ok(Step::Done);
            }
            Err(error) => error,
        };
        let attempt = failed + 1;
        let next = self.policy.next(&error, attempt);
        let (partition, offset) = batch
            .entries
            .first()
            .map_or((-1, -1), |e| (e.partition, e.offset));
        let what = format!("a batch of {} records", batch.entries.len());
        retry::report_failure(
            self.metrics,
            &what,
            &batch.topic,
            partition,
            offset,
            attempt,
            &error,
            next,
        );
        match next {
            Next::RetryIn(delay) => Ok(Step::RetryIn(delay)),
            Next::Stop => Err(RoleError::ProcessingFailed {
                what: format!("{what} (first at partition {partition}, offset {offset})"),
                attempts: attempt,
                source: error,
            }),
            Next::DeadLetter => self.isolate(batch, attempt),
        }
    }

    /// Counts `records`, processed together since `started`: one processing time, and one
    /// clock read and one histogram lock for all their latencies (they were all processed at
    /// this one moment), observed before the count so that whoever sees `processed` reach N
    /// also finds N latencies.
    fn processed(&self, records: &[Record<'_>], started: Tick) {
        self.metrics
            .processing_time
            .observe(Tick::now().seconds_since(started));
        let now = shared::unix_micros_now();
        self.metrics.end_to_end_latency.observe_all(
            records
                .iter()
                .filter_map(|record| shared::latency(&record.message, now)),
        );
        self.metrics.processed.inc_by(records.len() as u64);
    }

    /// Once at shutdown: the batch in hand gets one attempt, and no wait.
    fn last(&mut self, batch: &mut Batch) -> Result<Step, RoleError> {
        self.attempt(batch, 0)
    }

    /// The batch's records one at a time: the ones that fail are dead-lettered, the rest
    /// processed; then the batch is committed. `attempts` is what the batch already had.
    fn isolate(&mut self, batch: &mut Batch, attempts: u32) -> Result<Step, RoleError> {
        let records = batch.records();
        tracing::info!(
            records = records.len(),
            "processing the failed batch one record at a time to find the failing ones"
        );
        let mut failed = 0;
        for (record, entry) in records.iter().zip(&batch.entries) {
            self.metrics.health.progress();
            let started = Tick::now();
            let error = match self.sink.process(record) {
                Ok(()) => {
                    self.processed(std::slice::from_ref(record), started);
                    continue;
                }
                Err(error) => error,
            };
            failed += 1;
            retry::report_failure(
                self.metrics,
                "a record alone",
                &batch.topic,
                entry.partition,
                entry.offset,
                attempts + 1,
                &error,
                Next::DeadLetter,
            );
            let rejection = Rejection::ProcessingFailed {
                error: error.to_string(),
                attempts: attempts + 1,
            };
            match self
                .dead_letters
                .send(&batch.original(entry), &rejection, self.shutdown)
            {
                Ok(()) => {}
                // Nothing of the batch is stored: it is redelivered whole.
                Err(DeadLetterError::Interrupted) => return Ok(Step::Interrupted),
                Err(permanent) => return Err(RoleError::DeadLetter(permanent)),
            }
        }
        tracing::info!(
            records = records.len(),
            failed,
            "batch taken apart: the failing records dead-lettered, the rest processed"
        );
        drop(records);
        self.commit(batch);
        Ok(Step::Done)
    }

    /// Counts the batch, stores its positions and commits them; empties it.
    fn commit(&self, batch: &mut Batch) {
        self.metrics.batches.inc();
        self.metrics.batch_size.observe(batch.len() as f64);
        let hooks = self.consumer.context();
        hooks.store(self.consumer, batch.positions.next.iter().copied());
        hooks.commit_stored(self.consumer, "batch");
        batch.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroUsize;

    use rdkafka::message::Header;

    use super::*;

    /// A record of partition `partition` at `offset`, as received, and its decoded message.
    fn record(partition: i32, offset: i64, content: &str) -> (OwnedMessage, KafkaMessage<'static>) {
        let message = KafkaMessage::new(offset, content, "p").into_owned();
        let headers = OwnedHeaders::new().insert(Header {
            key: "trace",
            value: Some(format!("t-{offset}").as_str()),
        });
        let raw = OwnedMessage::new(
            Some(message.encode()),
            Some(format!("key-{offset}").into_bytes()),
            "t".to_owned(),
            rdkafka::Timestamp::CreateTime(1_700_000_000_000 + offset),
            partition,
            offset,
            Some(headers),
        );
        (raw, message)
    }

    fn push(batch: &mut Batch, partition: i32, offset: i64, content: &str) {
        let (raw, message) = record(partition, offset, content);
        batch.push(&raw, &message);
    }

    fn limits() -> BatchSettings {
        BatchSettings {
            min_size: NonZeroUsize::new(3).expect("not 0"),
            max_size: NonZeroUsize::new(5).expect("not 0"),
            max_wait: Duration::from_secs(60),
        }
    }

    #[test]
    fn records_come_back_as_they_were_pushed_with_their_originals() {
        let mut batch = Batch::new("t");
        let pushed: Vec<_> = ["a \"quoted\" text", "", "Сообщение", "last"]
            .iter()
            .enumerate()
            .map(|(offset, content)| record(offset as i32 % 2, offset as i64, content))
            .collect();
        for (raw, message) in &pushed {
            batch.push(raw, message);
        }
        batch.drop_partitions(&[1]);
        let records = batch.records();
        let kept: Vec<_> = records.iter().map(|r| &r.message).collect();
        assert_eq!(kept, [&pushed[0].1, &pushed[2].1]);
        assert_eq!((records[1].partition, records[1].offset), (0, 2));
        let expected = &pushed[2].0;

        let original = batch.original(&batch.entries[1]);
        assert_eq!(original.payload(), expected.payload());
        assert_eq!(original.key(), expected.key());
        assert_eq!(original.topic(), "t");
        assert_eq!((original.partition(), original.offset()), (0, 2));
        let header = original.headers().map(|h| h.get(0));
        assert_eq!(
            header.map(|h| (h.key, h.value)),
            Some(("trace", Some(&b"t-2"[..])))
        );
    }

    #[test]
    fn positions_cover_dead_lettered_records() {
        let mut batch = Batch::new("t");
        push(&mut batch, 0, 10, "a");
        batch.push_dead_lettered(0, 11);
        push(&mut batch, 1, 4, "b");
        assert_eq!(batch.len(), 3);
        assert_eq!(batch.entries.len(), 2);
        assert_eq!(batch.positions.next, [(0, 12), (1, 5)]);
    }

    #[test]
    fn positions_follow_runs_and_interleaving() {
        let mut positions = Positions::default();
        for (partition, next) in [(2, 1), (2, 2), (0, 7), (2, 3), (1, 5), (0, 8), (0, 9)] {
            positions.set(partition, next);
        }
        assert_eq!(positions.next, [(2, 3), (0, 9), (1, 5)]);
        assert_eq!(positions.get(0), Some(9));
        positions.remove(0);
        assert_eq!(positions.get(0), None);
        positions.set(1, 6);
        assert_eq!(positions.next, [(2, 3), (1, 6)]);
    }

    #[test]
    fn revoked_partitions_leave_the_batch_entirely() {
        let mut batch = Batch::new("t");
        push(&mut batch, 0, 10, "a");
        push(&mut batch, 1, 4, "b");
        push(&mut batch, 1, 5, "c");
        assert_eq!(batch.drop_partitions(&[1]), 2);
        assert_eq!(batch.len(), 1);
        assert_eq!(batch.positions.next, [(0, 11)]);
        assert_eq!(batch.drop_partitions(&[0]), 1);
        assert!(
            batch.started.is_none(),
            "an emptied batch starts its wait afresh"
        );
        assert!(batch.text.is_empty() && batch.bytes.is_empty());
    }

    #[test]
    fn poll_timeout_follows_the_limits() {
        let mut batch = Batch::new("t");
        assert_eq!(batch.poll_timeout(&limits(), Tick::now()), POLL_INTERVAL);
        batch.push_dead_lettered(0, 1);
        assert!(batch.poll_timeout(&limits(), Tick::now()) <= POLL_INTERVAL);
        batch.push_dead_lettered(0, 2);
        batch.push_dead_lettered(0, 3);
        assert_eq!(
            batch.poll_timeout(&limits(), Tick::now()),
            Duration::ZERO,
            "min_size reached: only take what is waiting"
        );
    }
}
