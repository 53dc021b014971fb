//! What both consumer loops do when the sink fails: `[retry]` applied.
//!
//! A failure the sink calls retryable is tried again after a backoff delay, up to
//! `max_attempts` attempts; a permanent one, or the last attempt's, goes to `on_exhausted`:
//! the record is dead-lettered (`processing_failed`) and committed past, or the consumer
//! stops with it uncommitted.
//!
//! While a record or batch waits for its next attempt, the loop does not sleep: it pauses the
//! partitions concerned (`pause`) and keeps polling, which keeps the consumer in its group
//! (heartbeats, `max.poll.interval.ms`) and serves rebalance callbacks, however long the
//! downstream is down. librdkafka may already have fetched records of a paused partition;
//! the loop drops any it is handed and, on resume, seeks each partition back to the first
//! offset it has not processed, so order within a partition holds and nothing is skipped.
//! A partition revoked meanwhile takes its pending retry with it: the next owner receives
//! the record again from the last commit.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};

use super::consumer::KafkadConsumer;
use crate::config::{OnExhausted, RetrySettings};
use crate::sink::SinkError;
use crate::telemetry::metrics::{ConsumerMetrics, KindLabel};

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Try again after this delay.
    RetryIn(Duration),
    /// Copy to the dead-letter topic and move on.
    DeadLetter,
    /// Stop the consumer, the record uncommitted.
    Stop,
}

/// `[retry]` with its source of jitter.
pub(crate) struct RetryPolicy {
    settings: RetrySettings,
    random: u64,
}

impl RetryPolicy {
    pub fn new(settings: &RetrySettings) -> Self {
        // A seed that differs per process, so consumers of one group do not retry in step.
        let seed = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        RetryPolicy {
            settings: settings.clone(),
            random: seed | 1,
        }
    }

    pub fn max_attempts(&self) -> u32 {
        self.settings.max_attempts.get()
    }

    /// After `attempts` failed attempts ending in `error`: retry, or give up per
    /// `on_exhausted`. A permanent failure gives up at once.
    pub fn next(&mut self, error: &SinkError, attempts: u32) -> Next {
        if error.is_retryable() && attempts < self.max_attempts() {
            return Next::RetryIn(self.delay(attempts));
        }
        match self.settings.on_exhausted {
            OnExhausted::DeadLetter => Next::DeadLetter,
            OnExhausted::Stop => Next::Stop,
        }
    }

    /// The wait after the `failed`-th failed attempt (1 for the first): `initial` times
    /// `multiplier` to the power `failed - 1`, varied by up to `jitter` either way, never
    /// above `max`.
    pub fn delay(&mut self, failed: u32) -> Duration {
        let random = self.uniform();
        let s = &self.settings;
        let exponent = i32::try_from(failed.saturating_sub(1)).unwrap_or(i32::MAX);
        let base = (s.initial.as_secs_f64() * s.multiplier.powi(exponent)).min(s.max.as_secs_f64());
        let spread = s.jitter * (2.0 * random - 1.0);
        Duration::from_secs_f64((base * (1.0 + spread)).clamp(0.0, s.max.as_secs_f64()))
    }

    /// A number in [0, 1) (xorshift; quality is of no concern for jitter).
    fn uniform(&mut self) -> f64 {
        let mut x = self.random;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.random = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One line per failed attempt, and the failure counted by kind.
#[allow(clippy::too_many_arguments)]
pub(crate) fn report_failure(
    metrics: &ConsumerMetrics,
    what: &str,
    topic: &str,
    partition: i32,
    offset: i64,
    attempt: u32,
    error: &SinkError,
    next: Next,
) {
    metrics
        .processing_failures
        .get_or_create(&KindLabel { kind: error.kind() })
        .inc();
    let retryable = error.is_retryable();
    match next {
        Next::RetryIn(delay) => tracing::warn!(
            topic, partition, offset, attempt, retryable, kind = error.kind(), %error,
            next_delay = %humantime::format_duration(round_millis(delay)),
            "processing {what} failed; retrying after the delay, its partitions paused"
        ),
        Next::DeadLetter => tracing::warn!(
            topic, partition, offset, attempt, retryable, kind = error.kind(), %error,
            "processing {what} failed; no more attempts, dead-lettering"
        ),
        Next::Stop => tracing::error!(
            topic, partition, offset, attempt, retryable, kind = error.kind(), %error,
            "processing {what} failed; no more attempts and on_exhausted = \"stop\""
        ),
    }
}

fn round_millis(delay: Duration) -> Duration {
    Duration::from_millis(delay.as_millis().try_into().unwrap_or(u64::MAX))
}

/// Pauses `partitions` of `topic`; returns when they were paused, for the paused-time metric.
pub(crate) fn pause(consumer: &KafkadConsumer, topic: &str, partitions: &[i32]) -> Instant {
    let list = list(topic, partitions);
    if let Err(error) = consumer.pause(&list) {
        // Not fatal: records of these partitions are dropped and re-read after the wait.
        tracing::warn!(?partitions, %error, "cannot pause partitions");
    }
    Instant::now()
}

/// Resumes `partitions`, then seeks each partition in `next` to the offset given, the first
/// one the loop has not processed. A partition revoked meanwhile is no longer ours: its
/// resume and seek fail harmlessly.
pub(crate) fn resume(
    consumer: &KafkadConsumer,
    topic: &str,
    partitions: &[i32],
    next: &HashMap<i32, i64>,
    paused_at: Instant,
    metrics: &ConsumerMetrics,
) {
    metrics
        .paused_seconds
        .inc_by(paused_at.elapsed().as_secs_f64());
    if let Err(error) = consumer.resume(&list(topic, partitions)) {
        tracing::debug!(?partitions, %error, "cannot resume partitions");
    }
    for (&partition, &offset) in next {
        if let Err(error) = consumer.seek(
            topic,
            partition,
            Offset::Offset(offset),
            Duration::from_secs(10),
        ) {
            tracing::debug!(partition, offset, %error, "cannot seek back after the pause");
        }
    }
}

fn list(topic: &str, partitions: &[i32]) -> TopicPartitionList {
    let mut list = TopicPartitionList::with_capacity(partitions.len());
    for &partition in partitions {
        list.add_partition(topic, partition);
    }
    list
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;

    fn settings(jitter: f64) -> RetrySettings {
        RetrySettings {
            max_attempts: NonZeroU32::new(4).expect("not 0"),
            initial: Duration::from_secs(1),
            max: Duration::from_secs(5),
            multiplier: 2.0,
            jitter,
            on_exhausted: OnExhausted::DeadLetter,
        }
    }

    fn timeout() -> SinkError {
        SinkError::HttpTransport {
            url: "http://x".into(),
            reason: "timed out".into(),
        }
    }

    #[test]
    fn delays_grow_by_the_multiplier_up_to_max() {
        let mut policy = RetryPolicy::new(&settings(0.0));
        let delays: Vec<u64> = (1..=5).map(|n| policy.delay(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 5, 5]);
    }

    #[test]
    fn jitter_stays_within_its_fraction_and_below_max() {
        let mut policy = RetryPolicy::new(&settings(0.2));
        for _ in 0..1000 {
            let first = policy.delay(1).as_secs_f64();
            assert!((0.8..=1.2).contains(&first), "{first}");
            assert!(policy.delay(10) <= Duration::from_secs(5));
        }
    }

    #[test]
    fn retryable_failures_retry_until_the_last_attempt() {
        let mut policy = RetryPolicy::new(&settings(0.0));
        assert!(matches!(policy.next(&timeout(), 1), Next::RetryIn(_)));
        assert!(matches!(policy.next(&timeout(), 3), Next::RetryIn(_)));
        assert_eq!(policy.next(&timeout(), 4), Next::DeadLetter);
        let rejected = SinkError::Rejected("bad".into());
        assert_eq!(policy.next(&rejected, 1), Next::DeadLetter, "permanent");
        let mut stop = RetryPolicy::new(&RetrySettings {
            on_exhausted: OnExhausted::Stop,
            ..settings(0.0)
        });
        assert_eq!(stop.next(&timeout(), 4), Next::Stop);
    }
}
