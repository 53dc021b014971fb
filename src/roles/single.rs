//! The single consumer: one message at a time, at-least-once.
//!
//! # Guarantee
//!
//! Auto commit stays on (as in the seed), but `enable.auto.offset.store = false`: librdkafka
//! commits only offsets kafkad stored, and kafkad stores a message's offset only after the
//! sink processed it (or its dead-letter copy was acknowledged). Messages of one partition
//! are processed in order, so a stored offset N means every offset below N is done. A crash
//! therefore never skips a message; it may redeliver those processed since the last auto
//! commit (`auto.commit.interval.ms`, 5 s by default). On shutdown the message in hand is
//! finished, its offset stored, the stored offsets committed synchronously, and the group
//! left.
//!
//! # When the sink fails
//!
//! A retryable failure pauses the message's partition and keeps the message aside; the loop
//! goes on polling and processing the other partitions, and tries the message again after the
//! backoff delay (`[retry]`, see `retry`). Once it is processed, or dead-lettered after its
//! last attempt (at once for a permanent failure), its offset is stored and the partition
//! resumes from the next offset. With `on_exhausted = "stop"` the role stops instead, the
//! message unstored. A message waiting for a retry at shutdown stays unstored and is
//! redelivered.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::message::OwnedMessage;
use rdkafka::Message;

use super::consumer::{self as shared, Inspected, KafkadConsumer};
use super::retry::{self, Next, RetryPolicy};
use super::{ConsumerReport, RoleError, POLL_INTERVAL};
use crate::config::Settings;
use crate::dlq::{DeadLetterError, DeadLetters, Rejection};
use crate::shutdown::Shutdown;
use crate::sink::{Record, Sink, SinkError};
use crate::telemetry::clock::Tick;
use crate::telemetry::metrics::ConsumerMetrics;

/// A message waiting for its next attempt, its partition paused.
struct Pending {
    /// The record as received, for its dead-letter copy.
    raw: OwnedMessage,
    record: Record<'static>,
    /// Failed attempts so far.
    attempts: u32,
    due: Tick,
    paused_at: Instant,
}

/// What became of a message the sink failed on.
enum Settled {
    /// Processed or dead-lettered: store its offset.
    Done,
    /// Try again after the delay.
    RetryIn(Duration),
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
    let topic = settings.topic.name.as_str();
    let mut policy = RetryPolicy::new(&settings.retry);
    let mut pending: HashMap<i32, Pending> = HashMap::new();
    tracing::info!(group = %parts.group, "single consumer started");
    let mut tally = shared::Tally::new(metrics);
    // When the previous turn processed a message: the clock reading that ended it, which
    // serves as this turn's (a clock reading costs as much as a tenth of the rest of a
    // message's turn). Every other turn reads the clock afresh.
    let mut ended: Option<Tick> = None;
    let outcome = loop {
        if let Some(failure) = shared::connection_failure(consumer) {
            break Err(failure);
        }
        // The previous turn finished (a poll returned, a message was done): progress.
        let now = ended.take().unwrap_or_else(Tick::now);
        metrics.health.progress_at(now);
        if shared::stopping(shutdown, metrics) {
            break Ok(());
        }
        if let Some(partition) = pending
            .iter()
            .find(|(_, p)| p.due <= now)
            .map(|(&partition, _)| partition)
        {
            let Some(mut waiting) = pending.remove(&partition) else {
                continue;
            };
            metrics.retries.inc();
            let attempt = waiting.attempts + 1;
            let settled = match sink.process(&waiting.record) {
                Ok(()) => {
                    tally.processed(&waiting.record.message, now, Tick::now());
                    Ok(Settled::Done)
                }
                Err(error) => give_up_or_wait(
                    &mut policy,
                    metrics,
                    &parts.dead_letters,
                    shutdown,
                    &waiting.raw,
                    attempt,
                    error,
                ),
            };
            match settled {
                Ok(Settled::Done) => {
                    let next = waiting.record.offset + 1;
                    consumer.context().store(consumer, [(partition, next)]);
                    retry::resume(
                        consumer,
                        topic,
                        &[partition],
                        &HashMap::from([(partition, next)]),
                        waiting.paused_at,
                        metrics,
                    );
                }
                Ok(Settled::RetryIn(delay)) => {
                    waiting.attempts = attempt;
                    waiting.due = Tick::now().after(delay);
                    pending.insert(partition, waiting);
                }
                Err(Stopped::Interrupted) => break Ok(()),
                Err(Stopped::Failed(error)) => break Err(error),
            }
            continue;
        }
        let wait = pending
            .values()
            .map(|p| p.due.duration_since(now))
            .min()
            .map_or(POLL_INTERVAL, |due| due.min(POLL_INTERVAL));
        let polled = consumer.poll(wait);
        for partition in consumer.context().take_revoked() {
            if let Some(dropped) = pending.remove(&partition) {
                metrics
                    .paused_seconds
                    .inc_by(dropped.paused_at.elapsed().as_secs_f64());
                tracing::info!(
                    partition,
                    offset = dropped.record.offset,
                    "partition revoked while its message waited for a retry; its next owner receives it again"
                );
            }
        }
        let record = match polled {
            None => {
                tally.publish();
                continue;
            }
            Some(Err(error)) => match shared::poll_error(consumer, error) {
                Ok(()) => continue,
                Err(fatal) => break Err(fatal),
            },
            Some(Ok(record)) => record,
        };
        if pending.contains_key(&record.partition()) {
            // Fetched before its partition was paused: read again after the retry.
            continue;
        }
        metrics.consumed.inc();
        match shared::inspect(&record, settings, &parts.dead_letters, shutdown) {
            Ok(Inspected::Message(message)) => {
                let started = Tick::now();
                let processed_record = Record {
                    partition: record.partition(),
                    offset: record.offset(),
                    message,
                };
                match sink.process(&processed_record) {
                    Ok(()) => {
                        let now = Tick::now();
                        tally.processed(&processed_record.message, started, now);
                        ended = Some(now);
                    }
                    Err(error) => match give_up_or_wait(
                        &mut policy,
                        metrics,
                        &parts.dead_letters,
                        shutdown,
                        &record,
                        1,
                        error,
                    ) {
                        Ok(Settled::Done) => {}
                        Ok(Settled::RetryIn(delay)) => {
                            let partition = record.partition();
                            let paused_at = retry::pause(consumer, topic, &[partition]);
                            pending.insert(
                                partition,
                                Pending {
                                    raw: record.detach(),
                                    record: Record {
                                        message: processed_record.message.into_owned(),
                                        ..processed_record
                                    },
                                    attempts: 1,
                                    due: Tick::now().after(delay),
                                    paused_at,
                                },
                            );
                            // Not stored: it is in hand, waiting for its next attempt.
                            continue;
                        }
                        Err(Stopped::Interrupted) => break Ok(()),
                        Err(Stopped::Failed(error)) => break Err(error),
                    },
                }
            }
            Ok(Inspected::DeadLettered) => {}
            // Shutdown before the dead-letter copy was acknowledged: leave it unstored.
            Err(DeadLetterError::Interrupted) => break Ok(()),
            // The copy can never be made: stop with the record unstored (see `dlq`).
            Err(permanent) => break Err(RoleError::DeadLetter(permanent)),
        }
        store(consumer, &record);
    };
    tally.publish();

    if !pending.is_empty() {
        let waiting: Vec<(i32, i64)> = pending
            .values()
            .map(|p| (p.record.partition, p.record.offset))
            .collect();
        tracing::info!(
            ?waiting,
            "stopping with messages still waiting for a retry; they stay uncommitted and are redelivered"
        );
    }
    // Commit what was stored, explicitly and synchronously, rather than trusting close.
    consumer.context().commit_stored(consumer, "shutdown");
    parts.dead_letters.flush(settings.shutdown_timeout);
    shared::close(parts.consumer, settings.shutdown_timeout);
    outcome.map(|()| ConsumerReport::from_metrics(metrics))
}

/// Why the loop stops while settling a failed message.
enum Stopped {
    /// Shutdown came before the dead-letter copy was acknowledged.
    Interrupted,
    Failed(RoleError),
}

/// After the `attempt`-th attempt at `raw` failed with `error`: wait for another attempt,
/// dead-letter it (blocking until the copy is acknowledged), or stop, per `[retry]`.
fn give_up_or_wait<M: Message>(
    policy: &mut RetryPolicy,
    metrics: &ConsumerMetrics,
    dead_letters: &DeadLetters,
    shutdown: &Shutdown,
    raw: &M,
    attempt: u32,
    error: SinkError,
) -> Result<Settled, Stopped> {
    let next = policy.next(&error, attempt);
    retry::report_failure(
        metrics,
        "message",
        raw.topic(),
        raw.partition(),
        raw.offset(),
        attempt,
        &error,
        next,
    );
    match next {
        Next::RetryIn(delay) => Ok(Settled::RetryIn(delay)),
        Next::DeadLetter => {
            let rejection = Rejection::ProcessingFailed {
                error: error.to_string(),
                attempts: attempt,
            };
            match dead_letters.send(raw, &rejection, shutdown) {
                Ok(()) => Ok(Settled::Done),
                Err(DeadLetterError::Interrupted) => Err(Stopped::Interrupted),
                Err(permanent) => Err(Stopped::Failed(RoleError::DeadLetter(permanent))),
            }
        }
        Next::Stop => Err(Stopped::Failed(RoleError::ProcessingFailed {
            what: format!("{}/{}@{}", raw.topic(), raw.partition(), raw.offset()),
            attempts: attempt,
            source: error,
        })),
    }
}

fn store(consumer: &KafkadConsumer, record: &rdkafka::message::BorrowedMessage<'_>) {
    if let Err(error) = consumer.store_offset_from_message(record) {
        // The partition was revoked while we processed (librdkafka: "Erroneous state");
        // its new owner redelivers from the last commit. Expected during rebalances.
        tracing::debug!(partition = record.partition(), offset = record.offset(), %error, "offset not stored");
    }
}
