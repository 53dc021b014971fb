//! The periodic one-line summary per role (`summary_interval`): totals since start, rates over
//! the last interval, and lag for consumers. What an operator reads in `docker compose logs`.

use std::time::{Duration, Instant};

use super::metrics::{ConsumerMetrics, ProducerMetrics};

fn per_second(delta: u64, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if seconds > 0.0 {
        delta as f64 / seconds
    } else {
        0.0
    }
}

/// Logs a producer summary every `interval`, forever (abort the task to stop it).
pub async fn producer(interval: Duration, metrics: ProducerMetrics) {
    let started = Instant::now();
    let mut last = (Instant::now(), 0);
    loop {
        tokio::time::sleep(interval).await;
        let delivered = metrics.delivered.get();
        let rate = per_second(delivered - last.1, last.0.elapsed());
        last = (Instant::now(), delivered);
        tracing::info!(
            accepted = metrics.accepted.get(),
            delivered,
            failed = metrics.failed.get(),
            rate = format!("{rate:.0}/s"),
            uptime = ?Duration::from_secs(started.elapsed().as_secs()),
            "summary"
        );
    }
}

/// Logs a consumer summary every `interval`, forever (abort the task to stop it).
pub async fn consumer(interval: Duration, metrics: ConsumerMetrics) {
    let started = Instant::now();
    let mut last = (Instant::now(), 0);
    loop {
        tokio::time::sleep(interval).await;
        let processed = metrics.processed.get();
        let rate = per_second(processed - last.1, last.0.elapsed());
        last = (Instant::now(), processed);
        let uptime = Duration::from_secs(started.elapsed().as_secs());
        // Statistics older than this no longer describe the consumer: its loop stopped
        // polling, and the lag it last saw would pass for a current one.
        let fresh = interval.max(Duration::from_secs(30));
        match metrics.client.total_lag(fresh) {
            Some(lag) => tracing::info!(
                consumed = metrics.consumed.get(),
                processed,
                dead_lettered = metrics.dead_lettered.get(),
                commits = metrics.commits.get(),
                lag,
                rate = format!("{rate:.0}/s"),
                ?uptime,
                "summary"
            ),
            None => tracing::info!(
                consumed = metrics.consumed.get(),
                processed,
                dead_lettered = metrics.dead_lettered.get(),
                commits = metrics.commits.get(),
                lag = "unknown",
                rate = format!("{rate:.0}/s"),
                ?uptime,
                "summary"
            ),
        }
    }
}
