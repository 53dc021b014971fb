//! Rebalances: partitions assigned start afresh (claimed by a sink keeping positions),
//! partitions revoked are drained, and forgotten once their commit is made.

use std::sync::atomic::Ordering as AtomicOrdering;
use std::time::Instant;

use super::{Engine, Waiting};
use crate::consume::tp::Tp;
use crate::roles::RoleError;
use crate::telemetry::clock::Tick;

impl Engine {
    /// Newly assigned `partitions` start from a fresh state. Where a sink keeps positions,
    /// it claims them and says where each starts (`None`: the claim failed, and the consumer
    /// stops; they are left to start where Kafka says, but nothing of them is processed).
    pub fn assign(&mut self, partitions: &[Tp]) -> Vec<(Tp, i64)> {
        let assigned = self.partitions.assign(partitions, Tick::now());
        let Some(store) = &mut self.positions else {
            return Vec::new();
        };
        // A sink keeping positions claims per topic.
        let mut topics: Vec<u32> = assigned.iter().map(|(tp, _)| tp.topic).collect();
        topics.sort_unstable();
        topics.dedup();
        let claimed: Result<Vec<(Tp, i64)>, _> =
            topics
                .into_iter()
                .try_fold(Vec::new(), |mut starts, topic| {
                    let name = self.partitions.topic_name(Tp {
                        topic,
                        partition: 0,
                    });
                    let of_topic: Vec<(i32, u64)> = assigned
                        .iter()
                        .filter(|(tp, _)| tp.topic == topic)
                        .map(|&(tp, epoch)| (tp.partition, epoch))
                        .collect();
                    let claimed = store.claim(name, &of_topic)?;
                    starts.extend(
                        claimed
                            .into_iter()
                            .map(|(partition, next)| (Tp { topic, partition }, next)),
                    );
                    Ok(starts)
                });
        match claimed {
            Ok(starts) => {
                tracing::info!(
                    ?starts,
                    "partitions claimed; starting where the sink's positions say"
                );
                starts
            }
            Err(error) => {
                tracing::error!(%error, ?partitions, "cannot claim the assigned partitions at the sink");
                self.fail(RoleError::Sink(error));
                Vec::new()
            }
        }
    }

    /// `partitions` are being revoked: drop what of them is not with a worker, wait up to
    /// `drain_timeout` for what is, and return. The caller then stores and commits their
    /// commit points and forgets them ([`forget`](Self::forget)).
    pub fn revoke(&mut self, partitions: &[Tp]) {
        self.partitions.begin_revoke(partitions);
        for waiting in std::mem::take(&mut self.waiting) {
            for part in &waiting.job.parts {
                self.partitions.set_waiting(part.lane, false);
            }
            let Waiting { due, since, job } = waiting;
            if let Some(job) = self.current(job) {
                for part in &job.parts {
                    self.partitions.set_waiting(part.lane, true);
                }
                self.waiting.push(Waiting { due, since, job });
            }
        }
        for job in std::mem::take(&mut self.ready) {
            self.go_on(job);
        }
        // Work in flight on them stops after the record in hand (a batch is one call, and
        // finishes): what is done by then is committed below, the rest is the next owner's.
        for (held, cancel) in self.out.values() {
            if held.iter().any(|p| partitions.contains(p)) {
                cancel.store(true, AtomicOrdering::Relaxed);
            }
        }
        let deadline = Instant::now() + self.drain_timeout;
        while self.holds_any(partitions) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                tracing::warn!(
                    ?partitions,
                    drain_timeout = ?self.drain_timeout,
                    "work on revoked partitions still running after drain_timeout; their next owner processes it again"
                );
                break;
            }
            if let Some(report) = self.workers.report(left) {
                self.take_report(report);
            }
        }
        self.metrics.health.set_busy(!self.out.is_empty());
    }

    /// Whether a worker holds records of any of `partitions`.
    fn holds_any(&self, partitions: &[Tp]) -> bool {
        self.out
            .values()
            .any(|(held, _)| held.iter().any(|p| partitions.contains(p)))
    }

    /// Forgets revoked `partitions`.
    pub fn forget(&mut self, partitions: &[Tp]) {
        self.partitions.remove(partitions);
    }
}
