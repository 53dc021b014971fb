//! Liveness and readiness, as `/healthz` and `/readyz` report them.
//!
//! * alive: the role's loop is running, not shutting down, and making progress. For the
//!   producer, progress is a message handed to librdkafka or a flush step. For a consumer it
//!   is finished work, not a poll returning: while work is out with its workers (a sink call,
//!   a dead-letter copy), one of them must finish within `stall_timeout`; the poll loop must
//!   turn within it; and a partition it should be reading, with records behind it, must
//!   deliver within it. A sink that hangs, a dead-letter copy the broker keeps refusing, a
//!   commit that never returns, or a partition librdkafka left paused all stop progress, and
//!   the process reports itself dead so that the orchestrator restarts it instead of trusting
//!   it. A consumer with nothing to do, or one whose records wait for a retry (a downstream
//!   outage, which a restart cannot fix), is alive;
//! * ready: alive, and able to do its work: the producer reached a broker, the consumer
//!   joined its group. A member that holds no partition (a fourth member of a
//!   three-partition group) is ready: it takes over as soon as another member leaves.
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
    /// Whether work is out that must finish (a consumer's workers are busy): only then does
    /// time without progress count. Always true for the producer.
    busy: AtomicBool,
    /// Nanoseconds from `epoch` to the consumer loop's last turn; `u64::MAX`: not tracked.
    last_turn: AtomicU64,
    /// Nanoseconds a partition that should deliver has gone without (consumer).
    fetch_wait: AtomicU64,
    /// Nanoseconds from `epoch` to when the commit on its way left; `u64::MAX`: none is.
    commit_sent: AtomicU64,
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
            busy: AtomicBool::new(true),
            last_turn: AtomicU64::new(u64::MAX),
            fetch_wait: AtomicU64::default(),
            commit_sent: AtomicU64::new(u64::MAX),
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

    /// The role made progress: work finished (a consumer's record, batch or dead-letter
    /// copy), a message was handed to the producer. Cheap: one relaxed store.
    pub fn progress(&self) {
        self.progress_at(Tick::now());
    }

    /// [`progress`](Self::progress) at `now`, a clock reading the loop took anyway: a loop
    /// turn per message cannot afford a second one.
    pub fn progress_at(&self, now: Tick) {
        self.last_progress
            .store(now.nanos_since(self.epoch), Ordering::Relaxed);
    }

    /// Whether work is out that must finish (see `busy`); a consumer's engine says.
    pub fn set_busy(&self, busy: bool) {
        self.busy.store(busy, Ordering::Relaxed);
    }

    /// The consumer loop turned at `now`.
    pub fn turn_at(&self, now: Tick) {
        self.last_turn
            .store(now.nanos_since(self.epoch), Ordering::Relaxed);
    }

    /// The longest a partition that should deliver records has gone without (zero when each
    /// delivers, or has nothing to deliver).
    pub fn set_fetch_wait(&self, wait: Duration) {
        let nanos = u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX);
        self.fetch_wait.store(nanos, Ordering::Relaxed);
    }

    /// A consumer's commit left at `now` (`Some`), or returned (`None`): one that does not
    /// return counts as no progress, whichever thread waits for it.
    pub fn commit_out(&self, now: Option<Tick>) {
        let at = now.map_or(u64::MAX, |now| now.nanos_since(self.epoch));
        self.commit_sent.store(at, Ordering::Relaxed);
    }

    /// How long the role has gone without the progress it owes: the longest of time since
    /// work last finished (while work is out), since the loop last turned, since a commit on
    /// its way left, and a partition's wait for records. What `/healthz` and
    /// `kafkad_seconds_since_progress` report.
    pub fn since_progress(&self) -> Duration {
        let now = Tick::now().nanos_since(self.epoch);
        let since = |at: u64| now.saturating_sub(at);
        let work = match self.busy.load(Ordering::Relaxed) {
            true => since(self.last_progress.load(Ordering::Relaxed)),
            false => 0,
        };
        let turn = match self.last_turn.load(Ordering::Relaxed) {
            u64::MAX => 0,
            last => since(last),
        };
        let commit = match self.commit_sent.load(Ordering::Relaxed) {
            u64::MAX => 0,
            sent => since(sent),
        };
        let fetch = self.fetch_wait.load(Ordering::Relaxed);
        Duration::from_nanos(work.max(turn).max(commit).max(fetch))
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

    /// Whether the role became able to do its work (see [`set_ready`](Self::set_ready)),
    /// alive or not.
    pub fn became_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
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
    fn a_consumer_is_stalled_only_while_work_is_out() {
        let health = Health::default();
        health.set_stall_timeout(Duration::from_millis(50));
        health.set_running(true);
        health.set_busy(false);
        health.turn_at(Tick::now());
        std::thread::sleep(Duration::from_millis(80));
        health.turn_at(Tick::now());
        assert!(health.is_alive(), "nothing to do is not a stall");
        health.set_busy(true);
        assert!(!health.is_alive(), "work out, none finished");
        health.progress();
        assert!(health.is_alive());
        health.set_fetch_wait(Duration::from_millis(60));
        assert!(!health.is_alive(), "a partition not delivering");
        health.set_fetch_wait(Duration::ZERO);
        std::thread::sleep(Duration::from_millis(80));
        health.progress();
        assert!(!health.is_alive(), "the loop stopped turning");
    }

    #[test]
    fn a_commit_that_does_not_return_is_a_stall_while_the_loop_turns() {
        let health = Health::default();
        health.set_stall_timeout(Duration::from_millis(50));
        health.set_running(true);
        health.set_busy(false);
        health.commit_out(Some(Tick::now()));
        std::thread::sleep(Duration::from_millis(80));
        health.turn_at(Tick::now());
        assert!(
            !health.is_alive(),
            "the commit is out for longer than stall_timeout"
        );
        health.commit_out(None);
        assert!(health.is_alive(), "it returned");
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
