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

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::message::OwnedMessage;
use rdkafka::Message;

use super::consumer::{self as shared, Inspected, KafkadConsumer};
use super::retry::{self, Next, RetryPolicy};
use super::{ConsumerReport, RoleError, POLL_INTERVAL};
use crate::config::{BatchSettings, Settings};
use crate::dlq::{DeadLetterError, DeadLetters, Rejection};
use crate::message::KafkaMessage;
use crate::shutdown::Shutdown;
use crate::sink::{Record, Sink};
use crate::telemetry::metrics::ConsumerMetrics;

/// The records in hand.
#[derive(Default)]
struct Batch {
    /// Decoded records for the sink, owned: a borrowed librdkafka message would pin its
    /// whole fetch buffer for as long as the batch waits.
    records: Vec<Record<'static>>,
    /// Each of `records` as received (same index): the dead-letter copy of a record the sink
    /// fails on carries the original key, value and headers.
    raw: Vec<OwnedMessage>,
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

    fn push(
        &mut self,
        partition: i32,
        offset: i64,
        message: Option<(KafkaMessage<'static>, OwnedMessage)>,
    ) {
        match message {
            Some((message, raw)) => {
                self.records.push(Record {
                    partition,
                    offset,
                    message,
                });
                self.raw.push(raw);
            }
            None => self.dead_lettered.push(partition),
        }
        self.positions.insert(partition, offset + 1);
        self.started.get_or_insert_with(Instant::now);
    }

    /// Forgets the records of revoked partitions; returns how many were dropped.
    fn drop_partitions(&mut self, revoked: &[i32]) -> usize {
        let before = self.len();
        let keep: Vec<bool> = self
            .records
            .iter()
            .map(|r| !revoked.contains(&r.partition))
            .collect();
        let mut kept = keep.iter();
        self.raw.retain(|_| kept.next().copied().unwrap_or(true));
        self.records.retain(|r| !revoked.contains(&r.partition));
        self.dead_lettered.retain(|p| !revoked.contains(p));
        for partition in revoked {
            self.positions.remove(partition);
        }
        let dropped = before - self.len();
        if self.positions.is_empty() {
            *self = Batch::default();
        }
        dropped
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

/// A batch the sink failed on, waiting for its next attempt with the assignment paused.
struct Backoff {
    /// Failed attempts so far.
    attempts: u32,
    due: Instant,
    paused: Vec<i32>,
    paused_at: Instant,
    /// Per partition, the first offset dropped while paused: where to read again.
    dropped: HashMap<i32, i64>,
}

impl Backoff {
    /// Where each partition reads on after the pause: after the last record taken from it,
    /// or, for a partition nothing was taken from yet, at the first record dropped.
    fn read_on(&self, next_offset: &HashMap<i32, i64>) -> HashMap<i32, i64> {
        self.paused
            .iter()
            .chain(self.dropped.keys())
            .filter_map(|p| {
                next_offset
                    .get(p)
                    .or_else(|| self.dropped.get(p))
                    .map(|&offset| (*p, offset))
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
    let mut batch = Batch::default();
    let mut backoff: Option<Backoff> = None;
    // Per partition, the offset after the last record taken from librdkafka: where a paused
    // partition must read on from, whatever librdkafka fetched and discarded meanwhile.
    let mut next_offset: HashMap<i32, i64> = HashMap::new();
    let outcome = loop {
        if let Some(failure) = shared::connection_failure(consumer) {
            break Err(failure);
        }
        // The previous turn finished (a poll returned, a batch was done): progress.
        metrics.health.progress();
        if shared::stopping(shutdown, metrics) {
            break Ok(true);
        }
        if let Some(waiting) = backoff.take_if(|b| b.due <= Instant::now()) {
            metrics.retries.inc();
            let step = processor.attempt(&mut batch, waiting.attempts);
            match step {
                Ok(Step::RetryIn(delay)) => {
                    backoff = Some(Backoff {
                        attempts: waiting.attempts + 1,
                        due: Instant::now() + delay,
                        ..waiting
                    });
                    continue;
                }
                Ok(Step::Done) => {
                    retry::resume(
                        consumer,
                        topic,
                        &waiting.paused,
                        &waiting.read_on(&next_offset),
                        waiting.paused_at,
                        metrics,
                    );
                    continue;
                }
                Ok(Step::Interrupted) => break Ok(false),
                Err(error) => break Err(error),
            }
        }
        let timeout = match &backoff {
            Some(waiting) => waiting
                .due
                .saturating_duration_since(Instant::now())
                .min(POLL_INTERVAL),
            None => batch.poll_timeout(limits),
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
            for partition in &revoked {
                next_offset.remove(partition);
            }
            if let Some(waiting) = &mut backoff {
                for partition in &revoked {
                    waiting.dropped.remove(partition);
                }
                if batch.len() == 0 {
                    tracing::info!("every partition of the batch waiting for a retry was revoked; their next owners receive its records");
                    if let Some(waiting) = backoff.take() {
                        retry::resume(
                            consumer,
                            topic,
                            &waiting.paused,
                            &waiting.read_on(&next_offset),
                            waiting.paused_at,
                            metrics,
                        );
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
                next_offset.insert(record.partition(), record.offset() + 1);
                match shared::inspect(&record, settings, &parts.dead_letters, shutdown) {
                    Ok(Inspected::Message(message)) => batch.push(
                        record.partition(),
                        record.offset(),
                        Some((message.into_owned(), record.detach())),
                    ),
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
        if backoff.is_some() {
            continue;
        }
        let due = batch.len() >= limits.min_size.get() || batch.waited(limits.max_wait);
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
                        Err(_) => batch.positions.keys().copied().collect(),
                    };
                    let paused_at = retry::pause(consumer, topic, &paused);
                    backoff = Some(Backoff {
                        attempts: 1,
                        due: paused_at + delay,
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
        let started = Instant::now();
        let outcome = match batch.records.is_empty() {
            true => Ok(()),
            false => self.sink.process_batch(&batch.records),
        };
        let error = match outcome {
            Ok(()) => {
                self.metrics
                    .processing_time
                    .observe(started.elapsed().as_secs_f64());
                self.metrics.processed.inc_by(batch.records.len() as u64);
                for record in &batch.records {
                    shared::observe_latency(self.metrics, &record.message);
                }
                self.commit(batch);
                return Ok(Step::Done);
            }
            Err(error) => error,
        };
        let attempt = failed + 1;
        let next = self.policy.next(&error, attempt);
        let (partition, offset) = batch
            .records
            .first()
            .map_or((-1, -1), |r| (r.partition, r.offset));
        let what = format!("a batch of {} records", batch.records.len());
        retry::report_failure(
            self.metrics,
            &what,
            batch.raw.first().map_or("", |r| r.topic()),
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

    /// Once at shutdown: the batch in hand gets one attempt, and no wait.
    fn last(&mut self, batch: &mut Batch) -> Result<Step, RoleError> {
        self.attempt(batch, 0)
    }

    /// The batch's records one at a time: the ones that fail are dead-lettered, the rest
    /// processed; then the batch is committed. `attempts` is what the batch already had.
    fn isolate(&mut self, batch: &mut Batch, attempts: u32) -> Result<Step, RoleError> {
        tracing::info!(
            records = batch.records.len(),
            "processing the failed batch one record at a time to find the failing ones"
        );
        let mut failed = 0;
        for (record, raw) in batch.records.iter().zip(&batch.raw) {
            self.metrics.health.progress();
            let started = Instant::now();
            match self.sink.process(record) {
                Ok(()) => {
                    self.metrics
                        .processing_time
                        .observe(started.elapsed().as_secs_f64());
                    shared::observe_latency(self.metrics, &record.message);
                    self.metrics.processed.inc();
                }
                Err(error) => {
                    failed += 1;
                    retry::report_failure(
                        self.metrics,
                        "a record alone",
                        raw.topic(),
                        raw.partition(),
                        raw.offset(),
                        attempts + 1,
                        &error,
                        Next::DeadLetter,
                    );
                    let rejection = Rejection::ProcessingFailed {
                        error: error.to_string(),
                        attempts: attempts + 1,
                    };
                    match self.dead_letters.send(raw, &rejection, self.shutdown) {
                        Ok(()) => {}
                        // Nothing of the batch is stored: it is redelivered whole.
                        Err(DeadLetterError::Interrupted) => return Ok(Step::Interrupted),
                        Err(permanent) => return Err(RoleError::DeadLetter(permanent)),
                    }
                }
            }
        }
        tracing::info!(
            records = batch.records.len(),
            failed,
            "batch taken apart: the failing records dead-lettered, the rest processed"
        );
        self.commit(batch);
        Ok(Step::Done)
    }

    /// Counts the batch, stores its positions and commits them; empties it.
    fn commit(&self, batch: &mut Batch) {
        self.metrics.batches.inc();
        self.metrics.batch_size.observe(batch.len() as f64);
        let hooks = self.consumer.context();
        hooks.store(self.consumer, &batch.positions);
        hooks.commit_stored(self.consumer, "batch");
        *batch = Batch::default();
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroUsize;

    use super::*;

    fn message(id: i64, content: &str) -> Option<(KafkaMessage<'static>, OwnedMessage)> {
        let message = KafkaMessage::new(id, content, "p").into_owned();
        let raw = OwnedMessage::new(
            Some(message.encode()),
            None,
            "t".to_owned(),
            rdkafka::Timestamp::NotAvailable,
            0,
            id,
            None,
        );
        Some((message, raw))
    }

    fn limits() -> BatchSettings {
        BatchSettings {
            min_size: NonZeroUsize::new(3).expect("not 0"),
            max_size: NonZeroUsize::new(5).expect("not 0"),
            max_wait: Duration::from_secs(60),
        }
    }

    #[test]
    fn positions_cover_dead_lettered_records() {
        let mut batch = Batch::default();
        batch.push(0, 10, message(1, "a"));
        batch.push(0, 11, None);
        batch.push(1, 4, message(2, "b"));
        assert_eq!(batch.len(), 3);
        assert_eq!(batch.records.len(), 2);
        assert_eq!(batch.positions, HashMap::from([(0, 12), (1, 5)]));
    }

    #[test]
    fn revoked_partitions_leave_the_batch_entirely() {
        let mut batch = Batch::default();
        batch.push(0, 10, message(1, "a"));
        batch.push(1, 4, message(2, "b"));
        batch.push(1, 5, message(3, "c"));
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
