//! What happens after the sink fails: `[retry]` applied to a record or a batch.
//!
//! A permanent failure (the downstream refuses the record itself) is given up at once. A
//! retryable one is tried again after a backoff delay; what matters is whether the downstream
//! is down or this record is the problem:
//!
//! * the sink accepted other records since this one first failed (or, for a record of a
//!   batch taken apart, the records tried alone before it): the downstream is up, so after
//!   `max_attempts` attempts the record is given up (`on_exhausted`);
//! * it accepted nothing (an outage): attempts go on, every `max` at the most, until the
//!   record has been failing for `max_elapsed`. An outage is waited out, not turned into a
//!   dead-letter topic full of good records and a replay job.
//!
//! A batch that keeps failing is taken apart after `max_attempts` attempts whatever the
//! cause: its records, tried one at a time (each lane on its own), then follow the rule above
//! each, having had the batch's attempts already: one failing alone while its neighbours
//! pass is the problem, and is given up at once. That is how a batch finds out which of its
//! records is the problem, and in an outage the first record tried alone waits like any. Giving up means a dead-letter
//! copy (`on_exhausted = "dead_letter"`), or stopping the consumer with the record
//! uncommitted (`"stop"`); stopping comes after `max_attempts` attempts, outage or not: it
//! loses nothing, and whoever chose it wants to hear of the failure at once.
//!
//! The wait itself is the engine's: the work stays in hand, its lane waits, the consumer
//! keeps polling (see `engine`).

use std::time::Duration;

use crate::backoff::Jitter;
use crate::config::{OnExhausted, RetrySettings};
use crate::sink::SinkError;
use crate::telemetry::clock::Tick;
use crate::telemetry::metrics::{ConsumerMetrics, KindLabel};

/// A downstream's `Retry-After` is honoured as the least delay up to this long: a server
/// asking for a day must not silence a consumer for a day on its own say-so.
const RETRY_AFTER_LIMIT: Duration = Duration::from_secs(3600);

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Try again after this delay.
    RetryIn(Duration),
    /// A batch: try its records one at a time.
    TakeApart,
    /// Copy the record to the dead-letter topic and move on.
    DeadLetter,
    /// Stop the consumer, the record uncommitted.
    Stop,
}

/// What failed: the rules differ (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unit {
    Record,
    Batch,
}

/// The failed attempts of one record or batch so far.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Failures {
    pub attempts: u32,
    first_at: Tick,
    /// The consumer's count of sink successes when the first attempt failed.
    accepted_then: u64,
}

impl Failures {
    /// The first failure, at `now`, after `earlier` attempts elsewhere (a record of a batch
    /// that failed `earlier` times), with `accepted` sink successes counted before it.
    pub fn first(now: Tick, earlier: u32, accepted: u64) -> Self {
        Failures {
            attempts: earlier + 1,
            first_at: now,
            accepted_then: accepted,
        }
    }

    /// One more failed attempt.
    pub fn again(self) -> Self {
        Failures {
            attempts: self.attempts + 1,
            ..self
        }
    }
}

/// `[retry]` with its source of jitter.
pub(crate) struct RetryPolicy {
    settings: RetrySettings,
    jitter: Jitter,
}

impl RetryPolicy {
    pub fn new(settings: &RetrySettings) -> Self {
        RetryPolicy {
            settings: settings.clone(),
            jitter: Jitter::new(),
        }
    }

    /// After `failures` ending in `error`, with `accepted` sink successes so far, at `now`.
    pub fn next(
        &mut self,
        unit: Unit,
        error: &SinkError,
        failures: Failures,
        accepted: u64,
        now: Tick,
    ) -> Next {
        let give_up = match (unit, self.settings.on_exhausted) {
            (_, OnExhausted::Stop) => Next::Stop,
            (Unit::Batch, OnExhausted::DeadLetter) => Next::TakeApart,
            (Unit::Record, OnExhausted::DeadLetter) => Next::DeadLetter,
        };
        if !error.is_retryable() {
            return give_up;
        }
        let attempts_used = failures.attempts >= self.settings.max_attempts.get();
        // The schema registry is down or not: records whose schemas are cached decoding
        // meanwhile say nothing about it, so its failures always count as an outage.
        let outage =
            accepted == failures.accepted_then || matches!(error, SinkError::SchemaRegistry(_));
        let waited_enough = now.passed(failures.first_at, self.settings.max_elapsed);
        // Only a dead-letter copy waits for evidence: taking a batch apart loses nothing, and
        // an operator who chose to stop wants to hear of the failure, not of an outage a day on.
        let dead_letter = give_up == Next::DeadLetter;
        if attempts_used && (!dead_letter || !outage || waited_enough) {
            return give_up;
        }
        let backoff = self.delay(failures.attempts);
        let asked = error
            .retry_after()
            .unwrap_or_default()
            .min(RETRY_AFTER_LIMIT);
        Next::RetryIn(backoff.max(asked))
    }

    /// The wait after the `failed`-th failed attempt (1 for the first), as `[retry]` says.
    pub fn delay(&mut self, failed: u32) -> Duration {
        self.settings.backoff().delay(failed, self.jitter.uniform())
    }
}

/// Where a failure happened, for its log line.
pub(crate) struct Place<'a> {
    pub what: &'a str,
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
}

/// One line per failed attempt, and the failure counted by kind.
pub(crate) fn report_failure(
    metrics: &ConsumerMetrics,
    place: &Place<'_>,
    attempt: u32,
    error: &SinkError,
    next: Next,
) {
    metrics
        .processing_failures
        .get_or_create(&KindLabel { kind: error.kind() })
        .inc();
    let Place {
        what,
        topic,
        partition,
        offset,
    } = *place;
    let retryable = error.is_retryable();
    let kind = error.kind();
    match next {
        Next::RetryIn(delay) => tracing::warn!(
            topic, partition, offset, attempt, retryable, kind, %error,
            next_delay = %humantime::format_duration(round_millis(delay)),
            "processing {what} failed; retrying after the delay, its records waiting"
        ),
        Next::TakeApart => tracing::warn!(
            topic, partition, offset, attempt, retryable, kind, %error,
            "processing {what} failed; trying its records one at a time"
        ),
        Next::DeadLetter => tracing::warn!(
            topic, partition, offset, attempt, retryable, kind, %error,
            "processing {what} failed; no more attempts, dead-lettering"
        ),
        Next::Stop => tracing::error!(
            topic, partition, offset, attempt, retryable, kind, %error,
            "processing {what} failed; no more attempts and on_exhausted = \"stop\""
        ),
    }
}

fn round_millis(delay: Duration) -> Duration {
    Duration::from_millis(delay.as_millis().try_into().unwrap_or(u64::MAX))
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
            max_elapsed: Duration::from_secs(3600),
            on_exhausted: OnExhausted::DeadLetter,
        }
    }

    fn timeout() -> SinkError {
        SinkError::HttpTransport {
            url: "http://x".into(),
            reason: "timed out".into(),
        }
    }

    /// `attempts` failures, the first `ago` before now, with `accepted_since` sink successes
    /// since.
    fn after(
        policy: &mut RetryPolicy,
        unit: Unit,
        error: &SinkError,
        attempts: u32,
        accepted_since: u64,
    ) -> Next {
        let now = Tick::now();
        let mut failures = Failures::first(now, 0, 100);
        for _ in 1..attempts {
            failures = failures.again();
        }
        policy.next(unit, error, failures, 100 + accepted_since, now)
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
    fn a_record_failing_while_others_succeed_is_given_up_after_its_attempts() {
        let mut policy = RetryPolicy::new(&settings(0.0));
        let unit = Unit::Record;
        assert!(matches!(
            after(&mut policy, unit, &timeout(), 3, 5),
            Next::RetryIn(_)
        ));
        assert_eq!(after(&mut policy, unit, &timeout(), 4, 5), Next::DeadLetter);
        let rejected = SinkError::Rejected("bad".into());
        assert_eq!(after(&mut policy, unit, &rejected, 1, 0), Next::DeadLetter);
        let mut stop = RetryPolicy::new(&RetrySettings {
            on_exhausted: OnExhausted::Stop,
            ..settings(0.0)
        });
        assert_eq!(
            after(&mut stop, unit, &timeout(), 4, 0),
            Next::Stop,
            "outage or not"
        );
    }

    #[test]
    fn an_outage_is_waited_out_until_max_elapsed() {
        let mut policy = RetryPolicy::new(&settings(0.0));
        let next = after(&mut policy, Unit::Record, &timeout(), 40, 0);
        assert_eq!(next, Next::RetryIn(Duration::from_secs(5)), "capped at max");
        let started = Tick::now();
        let failures = Failures::first(started, 0, 7).again().again().again();
        let later = started.after(Duration::from_secs(3601));
        assert_eq!(
            policy.next(Unit::Record, &timeout(), failures, 7, later),
            Next::DeadLetter
        );
    }

    #[test]
    fn a_batch_is_taken_apart_after_its_attempts_even_in_an_outage() {
        let mut policy = RetryPolicy::new(&settings(0.0));
        let next = after(&mut policy, Unit::Batch, &timeout(), 3, 0);
        assert!(matches!(next, Next::RetryIn(_)));
        assert_eq!(
            after(&mut policy, Unit::Batch, &timeout(), 4, 0),
            Next::TakeApart
        );
        let rejected = SinkError::Rejected("bad".into());
        assert_eq!(
            after(&mut policy, Unit::Batch, &rejected, 1, 0),
            Next::TakeApart
        );
    }
}
