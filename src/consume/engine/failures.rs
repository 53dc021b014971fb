//! What the engine does when the sink fails: `[retry]` decides (see `retry`), and the job
//! waits, goes on taken apart or with its record dead-lettered, or stops the consumer.

use super::{Engine, Waiting};
use crate::consume::job::{Job, Shape};
use crate::consume::retry::{self, Failures, Next, Place, Unit};
use crate::dlq::Rejection;
use crate::roles::RoleError;
use crate::sink::SinkError;
use crate::telemetry::clock::Tick;

impl Engine {
    /// After the sink failed on `job`: per `[retry]`, wait, take apart, dead-letter or stop.
    pub(super) fn failed(&mut self, mut job: Job, error: SinkError, now: Tick) {
        if let SinkError::Fenced(_) = error {
            return self.fenced(job, error);
        }
        let unit = match job.shape {
            Shape::Batch => Unit::Batch,
            Shape::Each | Shape::Isolate => Unit::Record,
        };
        // For a record of a batch taken apart, its neighbours that passed alone just before
        // count as accepted after it failed: evidence that the downstream is up.
        let accepted_before = match job.shape {
            Shape::Isolate => self.accepted - job.pass_accepted,
            Shape::Each | Shape::Batch => self.accepted,
        };
        let failures = job.failures.map_or_else(
            || Failures::first(now, job.base_attempts, accepted_before),
            Failures::again,
        );
        let next = self.policy.next(unit, &error, failures, self.accepted, now);
        let (topic, partition, offset) =
            job.first_pending()
                .map_or((String::new(), -1, -1), |(_, part, entry)| {
                    let e = &part.chunk.entries()[entry];
                    (part.topic.to_string(), e.partition, e.offset)
                });
        let what = match job.shape {
            Shape::Each => "a record".to_owned(),
            Shape::Batch => format!("a batch of {} records", job.len()),
            Shape::Isolate => "a record of a batch taken apart".to_owned(),
        };
        let place = Place {
            what: &what,
            topic: &topic,
            partition,
            offset,
        };
        retry::report_failure(&self.metrics, &place, failures.attempts, &error, next);
        match next {
            Next::RetryIn(delay) => {
                job.failures = Some(failures);
                for part in &job.parts {
                    self.partitions.set_waiting(part.lane, true);
                }
                let due = now.after(delay);
                self.waiting.push(Waiting {
                    due,
                    since: now,
                    job,
                });
            }
            Next::TakeApart => {
                for lane_job in job.take_apart(failures.attempts) {
                    self.go_on(lane_job);
                }
            }
            Next::DeadLetter => {
                job.dead_letter_first = Some(Rejection::ProcessingFailed {
                    error: error.to_string(),
                    attempts: failures.attempts,
                });
                job.failures = None;
                self.go_on(job);
            }
            Next::Stop => {
                self.fail(RoleError::ProcessingFailed {
                    what: format!("{what} ({topic}/{partition}@{offset})"),
                    attempts: failures.attempts,
                    source: error,
                });
                self.release(job);
            }
        }
    }

    /// A sink keeping positions refused to write: the claim on a partition of `job` is gone.
    /// For work of an assignment that ended that is expected (a revocation overtook it); the
    /// records belong to their next owner. For a partition still assigned, another member
    /// claimed it while this one holds it: the consumer stops rather than guess.
    fn fenced(&mut self, job: Job, error: SinkError) {
        let current = job
            .parts
            .iter()
            .any(|part| self.partitions.is_current(part.lane.tp, part.epoch));
        if current {
            self.fail(RoleError::Sink(error));
        } else {
            tracing::info!(%error, "work of a revoked assignment was refused by the sink; its next owner processes it");
        }
        self.release(job);
    }

    /// Retries that fell due at `now` queue up to go on.
    pub fn release_due(&mut self, now: Tick) {
        if self.stopping {
            return;
        }
        let mut index = 0;
        while index < self.waiting.len() {
            if self.waiting[index].due > now {
                index += 1;
                continue;
            }
            let Waiting { since, job, .. } = self.waiting.swap_remove(index);
            self.metrics.retries.inc();
            self.metrics.paused_seconds.inc_by(now.seconds_since(since));
            for part in &job.parts {
                self.partitions.set_waiting(part.lane, false);
            }
            self.go_on(job);
        }
    }
}
