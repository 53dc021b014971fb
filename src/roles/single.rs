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

use std::time::Instant;

use rdkafka::consumer::Consumer;
use rdkafka::Message;

use super::consumer::{self as shared, Inspected};
use super::{ConsumerReport, RoleError, POLL_INTERVAL};
use crate::config::Settings;
use crate::dlq::DeadLetterError;
use crate::shutdown::Shutdown;
use crate::sink::{Record, Sink};
use crate::telemetry::metrics::ConsumerMetrics;

/// The loop, on the consumer's own thread (see [`super::run_consumer`]).
pub(super) fn consume(
    settings: &Settings,
    mut sink: Box<dyn Sink>,
    metrics: &ConsumerMetrics,
    shutdown: &Shutdown,
) -> Result<ConsumerReport, RoleError> {
    let parts = shared::create(settings, metrics)?;
    let consumer = &parts.consumer;
    tracing::info!(group = %parts.group, "single consumer started");
    let mut tally = shared::Tally::new(metrics);
    let outcome = loop {
        if let Some(failure) = shared::connection_failure(consumer) {
            break Err(failure);
        }
        // The previous turn finished (a poll returned, a message was done): progress.
        metrics.health.progress();
        if shared::stopping(shutdown, metrics) {
            break Ok(());
        }
        let record = match consumer.poll(POLL_INTERVAL) {
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
        metrics.consumed.inc();
        match shared::inspect(&record, settings, &parts.dead_letters, shutdown) {
            Ok(Inspected::Message(message)) => {
                let started = Instant::now();
                let processed = Record {
                    partition: record.partition(),
                    offset: record.offset(),
                    message,
                };
                if let Err(error) = sink.process(&processed) {
                    // Not stored: this message and everything after it are redelivered.
                    break Err(error.into());
                }
                tally.processed(&processed.message, started, Instant::now());
            }
            Ok(Inspected::DeadLettered) => {}
            // Shutdown before the dead-letter copy was acknowledged: leave it unstored.
            Err(DeadLetterError::Interrupted) => break Ok(()),
            // The copy can never be made: stop with the record unstored (see `dlq`).
            Err(permanent) => break Err(RoleError::DeadLetter(permanent)),
        }
        if let Err(error) = consumer.store_offset_from_message(&record) {
            // The partition was revoked while we processed (librdkafka: "Erroneous state");
            // its new owner redelivers from the last commit. Expected during rebalances.
            tracing::debug!(partition = record.partition(), offset = record.offset(), %error, "offset not stored");
        }
    };

    tally.publish();
    // Commit what was stored, explicitly and synchronously, rather than trusting close.
    consumer.context().commit_stored(consumer, "shutdown");
    parts.dead_letters.flush(settings.shutdown_timeout);
    shared::close(parts.consumer, settings.shutdown_timeout);
    outcome.map(|()| ConsumerReport::from_metrics(metrics))
}
