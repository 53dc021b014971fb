//! The producer's stop: the final flush, then closing the client, both inside the shutdown's
//! deadline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::producer::Producer;

use super::RoleProducer;
use crate::shutdown::Shutdown;

/// Of `shutdown_timeout`, what closing the producer gets after the final flush (at most
/// [`CLOSE_TIME`]): closing purges what is still queued and joins librdkafka's threads.
const CLOSE_SHARE: f64 = 0.25;
const CLOSE_TIME: Duration = Duration::from_secs(1);

/// Drops the producer off the async workers: librdkafka's destroy joins its threads and
/// purges what is still queued, which blocks. Bounded by what is left of the stop's deadline
/// (or by [`CLOSE_TIME`] when the producer ended without a shutdown): the process is about
/// to exit anyway.
pub(super) async fn release(
    producer: Arc<RoleProducer>,
    shutdown: &Shutdown,
    shutdown_timeout: Duration,
) {
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

/// Waits until every accepted message has a delivery report. Without shutdown this waits as
/// long as librdkafka needs (`delivery.timeout.ms` bounds it); once shutdown is asked for,
/// until the stop's deadline less what closing gets ([`CLOSE_SHARE`]). Flushing blocks, so it
/// runs off the async workers.
pub(super) async fn drain(
    producer: &Arc<RoleProducer>,
    shutdown: &Shutdown,
    shutdown_timeout: Duration,
) {
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
