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
//! * The sink failing stops the role without committing: the batch is redelivered.

use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::Message;

use super::consumer::{self as shared, Inspected, KafkadConsumer};
use super::{ConsumerReport, RoleError, POLL_INTERVAL};
use crate::config::{BatchSettings, Settings};
use crate::dlq::DeadLetterError;
use crate::message::{KafkaMessage, Timestamp};
use crate::shutdown::Shutdown;
use crate::sink::{Record, Sink};
use crate::telemetry::metrics::ConsumerMetrics;
use serde_json::value::RawValue;

/// A decoded record of the batch, owned; its text lives in the batch's `text`.
struct Owned {
    partition: i32,
    offset: i64,
    message_id: i64,
    timestamp: Timestamp,
    content: Range<usize>,
    producer_id: Range<usize>,
    metadata: Box<RawValue>,
}

/// The records in hand.
#[derive(Default)]
struct Batch {
    /// Decoded records for the sink, owned: a borrowed librdkafka message would pin its
    /// whole fetch buffer for as long as the batch waits.
    records: Vec<Owned>,
    /// The content and producer id of every record, one after the other: one buffer for the
    /// whole batch, kept for the next one, where owned strings cost two allocations (and
    /// frees) per record.
    text: String,
    /// The partition of each dead-lettered record in the batch (their copies are
    /// acknowledged; they count as processed).
    dead_lettered: Vec<i32>,
    /// Next offset to store per partition once the batch is processed, over every record in
    /// the batch, dead-lettered ones included.
    positions: HashMap<i32, i64>,
    /// When the oldest record arrived.
    started: Option<Instant>,
}

impl Batch {
    /// Records in the batch, dead-lettered ones included: what the size limits count.
    fn len(&self) -> usize {
        self.records.len() + self.dead_lettered.len()
    }

    fn push(&mut self, partition: i32, offset: i64, message: Option<&KafkaMessage<'_>>) {
        match message {
            Some(message) => {
                let content = self.keep(&message.content);
                let producer_id = self.keep(&message.producer_id);
                self.records.push(Owned {
                    partition,
                    offset,
                    message_id: message.message_id,
                    timestamp: message.timestamp,
                    content,
                    producer_id,
                    metadata: message.metadata.as_ref().to_owned(),
                });
            }
            None => self.dead_lettered.push(partition),
        }
        self.positions.insert(partition, offset + 1);
        self.started.get_or_insert_with(Instant::now);
    }

    /// Copies `text` into the batch's text; returns where it is.
    fn keep(&mut self, text: &str) -> Range<usize> {
        let start = self.text.len();
        self.text.push_str(text);
        start..self.text.len()
    }

    /// The records as the sink takes them, borrowing from the batch.
    fn records(&self) -> Vec<Record<'_>> {
        self.records
            .iter()
            .map(|owned| Record {
                partition: owned.partition,
                offset: owned.offset,
                message: KafkaMessage {
                    message_id: owned.message_id,
                    content: Cow::Borrowed(&self.text[owned.content.clone()]),
                    producer_id: Cow::Borrowed(&self.text[owned.producer_id.clone()]),
                    timestamp: owned.timestamp,
                    metadata: Cow::Borrowed(&owned.metadata),
                },
            })
            .collect()
    }

    /// Forgets the records of revoked partitions; returns how many were dropped.
    fn drop_partitions(&mut self, revoked: &[i32]) -> usize {
        let before = self.len();
        self.records.retain(|r| !revoked.contains(&r.partition));
        self.dead_lettered.retain(|p| !revoked.contains(p));
        for partition in revoked {
            self.positions.remove(partition);
        }
        let dropped = before - self.len();
        if self.positions.is_empty() {
            self.clear();
        }
        dropped
    }

    /// Empties the batch for the next one, keeping its allocations: growing a fresh `Vec`
    /// to `max_size` records for every batch cost a reallocation and copy per doubling.
    fn clear(&mut self) {
        self.records.clear();
        self.text.clear();
        self.dead_lettered.clear();
        self.positions.clear();
        self.started = None;
    }

    fn waited(&self, max_wait: Duration) -> bool {
        self.started
            .is_some_and(|started| started.elapsed() >= max_wait)
    }

    /// How long the next poll may block before the batch is due.
    fn poll_timeout(&self, limits: &BatchSettings) -> Duration {
        if self.len() >= limits.min_size.get() {
            return Duration::ZERO;
        }
        match self.started {
            None => POLL_INTERVAL,
            Some(started) => limits
                .max_wait
                .saturating_sub(started.elapsed())
                .min(POLL_INTERVAL),
        }
    }
}

/// The loop, on the consumer's own thread (see [`super::run_consumer`]).
pub(super) fn consume(
    settings: &Settings,
    mut sink: Box<dyn Sink>,
    metrics: &ConsumerMetrics,
    shutdown: &Shutdown,
) -> Result<ConsumerReport, RoleError> {
    let parts = shared::create(settings, metrics)?;
    let consumer = &parts.consumer;
    let limits = &settings.batch;
    tracing::info!(group = %parts.group, min_size = limits.min_size, max_size = limits.max_size, max_wait = ?limits.max_wait, "batch consumer started");
    let mut batch = Batch::default();
    let outcome = loop {
        if let Some(failure) = shared::connection_failure(consumer) {
            break Err(failure);
        }
        // The previous turn finished (a poll returned, a batch was done): progress.
        metrics.health.progress();
        if shared::stopping(shutdown, metrics) {
            break Ok(true);
        }
        let polled = consumer.poll(batch.poll_timeout(limits));
        // Rebalance callbacks ran inside that poll, before any record it returns: drop what
        // was revoked now, so a record from a re-assigned partition is never dropped with it.
        let revoked = consumer.context().take_revoked();
        if !revoked.is_empty() {
            let dropped = batch.drop_partitions(&revoked);
            if dropped > 0 {
                tracing::info!(?revoked, dropped, "dropped unprocessed records of revoked partitions; their next owner receives them");
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
                metrics.consumed.inc();
                match shared::inspect(&record, settings, &parts.dead_letters, shutdown) {
                    Ok(Inspected::Message(message)) => {
                        batch.push(record.partition(), record.offset(), Some(&message))
                    }
                    Ok(Inspected::DeadLettered) => {
                        batch.push(record.partition(), record.offset(), None)
                    }
                    // The record's copy was not acknowledged: its position stays out of the
                    // batch, so the commit stops below it. Finish the rest and leave.
                    Err(DeadLetterError::Interrupted) => break Ok(true),
                    // The copy can never be made: finish the batch in hand (its records are
                    // all before this one), then stop with this record uncommitted.
                    Err(permanent) => break Err(RoleError::DeadLetter(permanent)),
                }
                if batch.len() < limits.max_size.get() && !batch.waited(limits.max_wait) {
                    // Take whatever else is already waiting before deciding (see poll_timeout).
                    continue;
                }
            }
        }
        let due = batch.len() >= limits.min_size.get() || batch.waited(limits.max_wait);
        if due {
            if let Err(error) = process(consumer, &mut batch, sink.as_mut(), metrics) {
                break Err(error);
            }
        }
    };

    // Graceful stop: the batch in hand is processed and committed. A failed sink is not
    // retried here: its batch stays uncommitted and is redelivered.
    let outcome = match outcome {
        Ok(true) if batch.len() > 0 => process(consumer, &mut batch, sink.as_mut(), metrics),
        Ok(_) => Ok(()),
        // Every record in hand comes before the one that cannot be dead-lettered: finish
        // them, so only that record (and what follows it) is redelivered.
        Err(error @ RoleError::DeadLetter(_)) if batch.len() > 0 => {
            process(consumer, &mut batch, sink.as_mut(), metrics).and(Err(error))
        }
        Err(error) => Err(error),
    };
    parts.dead_letters.flush(settings.shutdown_timeout);
    shared::close(parts.consumer, settings.shutdown_timeout);
    outcome.map(|()| ConsumerReport::from_metrics(metrics))
}

/// Processes the batch, stores its positions and commits them; empties it.
fn process(
    consumer: &KafkadConsumer,
    batch: &mut Batch,
    sink: &mut dyn Sink,
    metrics: &ConsumerMetrics,
) -> Result<(), RoleError> {
    let started = Instant::now();
    let records = batch.records();
    if !records.is_empty() {
        sink.process_batch(&records)?;
    }
    metrics
        .processing_time
        .observe(started.elapsed().as_secs_f64());
    // The whole batch was processed at this one moment: one clock read and one histogram
    // lock for all its records, observed before the count so that whoever sees `processed`
    // reach N also finds N latencies.
    let now = shared::unix_micros_now();
    metrics.end_to_end_latency.observe_all(
        records
            .iter()
            .filter_map(|record| shared::latency(&record.message, now)),
    );
    metrics.batches.inc();
    metrics.batch_size.observe(batch.len() as f64);
    metrics.processed.inc_by(records.len() as u64);
    drop(records);
    let hooks = consumer.context();
    hooks.store(consumer, &batch.positions);
    hooks.commit_stored(consumer, "batch");
    batch.clear();
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroUsize;

    use super::*;

    fn limits() -> BatchSettings {
        BatchSettings {
            min_size: NonZeroUsize::new(3).expect("not 0"),
            max_size: NonZeroUsize::new(5).expect("not 0"),
            max_wait: Duration::from_secs(60),
        }
    }

    #[test]
    fn records_come_back_as_they_were_pushed() {
        let mut batch = Batch::default();
        let messages = [
            KafkaMessage::new(1, "a \"quoted\" text", "p-1"),
            KafkaMessage::new(2, "", "p-2"),
            KafkaMessage::new(3, "Сообщение", "p-1"),
        ];
        for (offset, message) in messages.iter().enumerate() {
            batch.push(offset as i32 % 2, offset as i64, Some(message));
        }
        batch.drop_partitions(&[1]);
        let records = batch.records();
        let kept: Vec<_> = records.iter().map(|r| &r.message).collect();
        assert_eq!(kept, [&messages[0], &messages[2]]);
        assert_eq!((records[1].partition, records[1].offset), (0, 2));
    }

    #[test]
    fn positions_cover_dead_lettered_records() {
        let mut batch = Batch::default();
        batch.push(0, 10, Some(&KafkaMessage::new(1, "a", "p")));
        batch.push(0, 11, None);
        batch.push(1, 4, Some(&KafkaMessage::new(2, "b", "p")));
        assert_eq!(batch.len(), 3);
        assert_eq!(batch.records.len(), 2);
        assert_eq!(batch.positions, HashMap::from([(0, 12), (1, 5)]));
    }

    #[test]
    fn revoked_partitions_leave_the_batch_entirely() {
        let mut batch = Batch::default();
        batch.push(0, 10, Some(&KafkaMessage::new(1, "a", "p")));
        batch.push(1, 4, Some(&KafkaMessage::new(2, "b", "p")));
        batch.push(1, 5, Some(&KafkaMessage::new(3, "c", "p")));
        assert_eq!(batch.drop_partitions(&[1]), 2);
        assert_eq!(batch.len(), 1);
        assert_eq!(batch.positions, HashMap::from([(0, 11)]));
        assert_eq!(batch.drop_partitions(&[0]), 1);
        assert!(
            batch.started.is_none(),
            "an emptied batch starts its wait afresh"
        );
    }

    #[test]
    fn poll_timeout_follows_the_limits() {
        let mut batch = Batch::default();
        assert_eq!(batch.poll_timeout(&limits()), POLL_INTERVAL);
        batch.push(0, 1, None);
        assert!(batch.poll_timeout(&limits()) <= POLL_INTERVAL);
        batch.push(0, 2, None);
        batch.push(0, 3, None);
        assert_eq!(
            batch.poll_timeout(&limits()),
            Duration::ZERO,
            "min_size reached: only take what is waiting"
        );
    }
}
