//! Liveness and readiness, as `/healthz` and `/readyz` report them.
//!
//! * alive: the role's loop is running and not shutting down;
//! * ready: alive, and able to do its work: the producer reached a broker, the consumer holds
//!   at least one partition.
//!
//! Both turn false the moment shutdown begins, so a load balancer or Kubernetes stops routing
//! to (and stops counting on) a process that is draining.

use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug, Default)]
pub struct Health {
    running: AtomicBool,
    ready: AtomicBool,
    stopping: AtomicBool,
}

impl Health {
    /// The role loop started (`true`) or ended (`false`).
    pub fn set_running(&self, running: bool) {
        self.running.store(running, Ordering::SeqCst);
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
        self.running.load(Ordering::SeqCst) && !self.stopping.load(Ordering::SeqCst)
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
}
