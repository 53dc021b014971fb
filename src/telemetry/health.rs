//! Liveness and readiness, as `/healthz` and `/readyz` report them.
//!
//! * alive: the role's loop is running, not shutting down, and making progress: it finished
//!   a poll, a message, a batch or a send within the last `stall_timeout`. A loop stuck on
//!   anything (a sink that hangs, a dead-letter copy the broker keeps refusing, a commit that
//!   never returns) stops making progress, and the process reports itself dead so that the
//!   orchestrator restarts it instead of trusting it;
//! * ready: alive, and able to do its work: the producer reached a broker, the consumer holds
//!   at least one partition.
//!
//! Both turn false the moment shutdown begins, so a load balancer or Kubernetes stops routing
//! to (and stops counting on) a process that is draining.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;

use super::clock::Tick;

#[derive(Debug)]
pub struct Health {
    running: AtomicBool,
    ready: AtomicBool,
    stopping: AtomicBool,
    /// What `last_progress` counts from.
    epoch: Tick,
    /// Nanoseconds from `epoch` to the loop's last progress.
    last_progress: AtomicU64,
    /// No progress for longer than this (milliseconds) means not alive; 0: never set.
    stall_timeout: AtomicU64,
    /// `kafkad_seconds_since_progress`, brought up to date whenever it is read.
    since_progress: Gauge<f64, AtomicU64>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            running: AtomicBool::default(),
            ready: AtomicBool::default(),
            stopping: AtomicBool::default(),
            epoch: Tick::now(),
            last_progress: AtomicU64::default(),
            stall_timeout: AtomicU64::default(),
            since_progress: Gauge::default(),
        }
    }
}

impl Health {
    /// The role loop started (`true`, with its `stall_timeout`) or ended (`false`).
    pub fn set_running(&self, running: bool) {
        self.progress();
        self.running.store(running, Ordering::SeqCst);
    }

    /// How long the loop may go without progress before it counts as stalled.
    pub fn set_stall_timeout(&self, stall_timeout: Duration) {
        let millis = u64::try_from(stall_timeout.as_millis()).unwrap_or(u64::MAX);
        self.stall_timeout.store(millis, Ordering::SeqCst);
    }

    /// The loop made progress: a poll returned, a message or batch was finished, a message
    /// was handed to the producer. Cheap: one relaxed store.
    pub fn progress(&self) {
        self.progress_at(Tick::now());
    }

    /// [`progress`](Self::progress) at `now`, a clock reading the loop took anyway: a loop
    /// turn per message cannot afford a second one.
    pub fn progress_at(&self, now: Tick) {
        self.last_progress
            .store(now.nanos_since(self.epoch), Ordering::Relaxed);
    }

    /// Time since the loop last made progress.
    pub fn since_progress(&self) -> Duration {
        let last = self.last_progress.load(Ordering::Relaxed);
        let now = Tick::now().nanos_since(self.epoch);
        Duration::from_nanos(now.saturating_sub(last))
    }

    /// The gauge of seconds since the last progress, for the role's registry.
    pub fn since_progress_gauge(&self) -> Gauge<f64, AtomicU64> {
        self.since_progress.clone()
    }

    /// Brings the gauge up to date (before the metrics are read).
    pub fn refresh(&self) {
        self.since_progress.set(self.since_progress().as_secs_f64());
    }

    /// Whether the loop has gone without progress for longer than its `stall_timeout`.
    pub fn is_stalled(&self) -> bool {
        let limit = self.stall_timeout.load(Ordering::SeqCst);
        limit > 0 && self.since_progress() > Duration::from_millis(limit)
    }

    /// The role can do its work (broker reached / partitions assigned), or no longer can.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// Shutdown began: from now on neither alive nor ready.
    pub fn begin_shutdown(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    pub fn is_alive(&self) -> bool {
        self.running.load(Ordering::SeqCst)
            && !self.stopping.load(Ordering::SeqCst)
            && !self.is_stalled()
    }

    pub fn is_ready(&self) -> bool {
        self.is_alive() && self.ready.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shutdown_ends_both() {
        let health = Health::default();
        assert!(!health.is_alive() && !health.is_ready());
        health.set_running(true);
        assert!(health.is_alive() && !health.is_ready());
        health.set_ready(true);
        assert!(health.is_ready());
        health.begin_shutdown();
        assert!(!health.is_alive() && !health.is_ready());
    }

    #[test]
    fn a_loop_without_progress_for_its_stall_timeout_is_not_alive() {
        let health = Health::default();
        health.set_stall_timeout(Duration::from_millis(50));
        health.set_running(true);
        health.set_ready(true);
        assert!(health.is_alive() && health.is_ready());
        std::thread::sleep(Duration::from_millis(80));
        assert!(health.is_stalled());
        assert!(!health.is_alive() && !health.is_ready());
        health.refresh();
        assert!(health.since_progress_gauge().get() >= 0.08);
        health.progress();
        assert!(health.is_alive() && health.is_ready());
    }
}
