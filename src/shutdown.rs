//! The shutdown signal every task holds.
//!
//! One [`ShutdownTrigger`] fires once (first SIGINT/SIGTERM, or the demo deciding it is done);
//! every [`Shutdown`] handle sees it, from async tasks (`wait().await`) and from the blocking
//! threads that drive consumers (`is_triggered()`, checked between polls). Roles finish the
//! message or batch in hand, commit and close; [`listen_for_signals`] makes a second signal
//! exit at once, for an operator who does not want to wait. A part of a whole that must be
//! stoppable alone (each consumer of the demo) takes a [`Shutdown::child`].
//!
//! The stop has one deadline: `shutdown_timeout` after the trigger fired
//! ([`Shutdown::deadline`]). Each step of a role's stop (draining, the final commit, the
//! dead-letter flush, leaving the group) takes its time from what is left of it, and the
//! process's backstop gives up only a little after it, so the steps add up to one budget.

use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// What a trigger and its handles share.
#[derive(Debug, Default)]
struct State {
    /// When the trigger fired; set once. Reading it is one atomic load: a consumer loop asks
    /// once per poll.
    fired: OnceLock<Instant>,
    /// Wakes the async waiters.
    notify: Notify,
    /// Wakes the blocking sleepers (the guarded value is unused: the fact is `fired`).
    sleepers: (Mutex<()>, Condvar),
    /// Shutdowns that fire with this one ([`Shutdown::child`]).
    children: Mutex<Vec<Weak<State>>>,
}

impl State {
    fn fire(&self) {
        if self.fired.set(Instant::now()).is_err() {
            return;
        }
        self.notify.notify_waiters();
        let (lock, condvar) = &self.sleepers;
        // Taken so that a sleeper between its check and its wait does not miss the wake-up.
        drop(lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
        condvar.notify_all();
        let children = std::mem::take(
            &mut *self
                .children
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        for child in children.iter().filter_map(Weak::upgrade) {
            child.fire();
        }
    }
}

/// Fires the shutdown. Dropping it without firing does not shut anything down.
#[derive(Debug, Clone)]
pub struct ShutdownTrigger {
    state: Arc<State>,
}

/// A handle on the shutdown, cheap to clone, one per task.
#[derive(Debug, Clone)]
pub struct Shutdown {
    state: Arc<State>,
}

/// A new trigger and the handle it controls.
pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let state = Arc::new(State::default());
    (
        ShutdownTrigger {
            state: Arc::clone(&state),
        },
        Shutdown { state },
    )
}

impl ShutdownTrigger {
    /// Asks every holder of a [`Shutdown`] to stop, and every child shutdown. Idempotent.
    pub fn fire(&self) {
        self.state.fire();
    }

    /// Another handle on this trigger's shutdown.
    pub fn subscribe(&self) -> Shutdown {
        Shutdown {
            state: Arc::clone(&self.state),
        }
    }
}

impl Shutdown {
    /// A handle that never fires, for code paths that run to completion.
    pub fn never() -> Self {
        channel().1
    }

    /// A shutdown of its own that also fires when this one does: one part of a larger whole
    /// (a consumer of the demo) can be stopped alone, and everything stops together.
    pub fn child(&self) -> (ShutdownTrigger, Shutdown) {
        let (trigger, shutdown) = channel();
        self.state
            .children
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(Arc::downgrade(&trigger.state));
        // Fired before the child was registered: the child starts fired.
        if self.is_triggered() {
            trigger.fire();
        }
        (trigger, shutdown)
    }

    /// Whether shutdown was asked for. Cheap: a blocking consumer loop calls it per poll.
    pub fn is_triggered(&self) -> bool {
        self.state.fired.get().is_some()
    }

    /// When a stop that may take `grace` must be over: `grace` after shutdown was asked for;
    /// `None` while it was not.
    pub fn deadline(&self, grace: Duration) -> Option<Instant> {
        self.state.fired.get().map(|fired| *fired + grace)
    }

    /// Completes once shutdown is asked for (at once if it already was).
    pub async fn wait(&mut self) {
        loop {
            // Registered before the check, so a fire between the two is not missed.
            let notified = self.state.notify.notified();
            if self.is_triggered() {
                return;
            }
            notified.await;
        }
    }

    /// Sleeps for `duration` unless shutdown comes first; returns whether it did. For the
    /// retry backoffs of blocking threads.
    pub fn sleep_blocking(&self, duration: Duration) -> bool {
        let (lock, condvar) = &self.state.sleepers;
        let guard = lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let _guard = condvar
            .wait_timeout_while(guard, duration, |_| !self.is_triggered())
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.is_triggered()
    }
}

/// Fires `trigger` on the first SIGINT or SIGTERM; exits the process at once on the second
/// (code 130, as a shell reports an interrupted command).
pub fn listen_for_signals(trigger: ShutdownTrigger) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        };
        tracing::info!(
            signal = name,
            "shutting down gracefully; send the signal again to exit at once"
        );
        trigger.fire();
        let name = tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        };
        tracing::warn!(
            signal = name,
            "second signal: exiting now without finishing"
        );
        // Without the exit handlers: Kafka clients are still running (see
        // `client::all_closed_within`).
        // SAFETY: ends the process at once; nothing runs after it.
        unsafe { libc::_exit(130) }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_handle_sees_the_trigger() {
        let (trigger, mut first) = channel();
        let second = trigger.subscribe();
        assert!(!first.is_triggered());
        let waiter = tokio::spawn(async move {
            first.wait().await;
            first.is_triggered()
        });
        trigger.fire();
        assert!(waiter.await.expect("task"));
        assert!(second.is_triggered());
        assert!(
            second.sleep_blocking(Duration::from_secs(60)),
            "returns at once when fired"
        );
    }

    #[test]
    fn sleep_blocking_runs_out_when_not_fired() {
        let shutdown = Shutdown::never();
        assert!(!shutdown.sleep_blocking(Duration::from_millis(10)));
    }

    #[test]
    fn a_blocking_sleep_ends_when_the_trigger_fires() {
        let (trigger, shutdown) = channel();
        let sleeper = std::thread::spawn(move || shutdown.sleep_blocking(Duration::from_secs(60)));
        trigger.fire();
        assert!(sleeper.join().expect("sleeper"), "woken by the trigger");
    }

    #[tokio::test]
    async fn a_child_fires_with_its_parent_and_alone() {
        let (parent, shutdown) = channel();
        let (alone, mut first) = shutdown.child();
        let (_, second) = shutdown.child();
        alone.fire();
        first.wait().await;
        assert!(!second.is_triggered() && !shutdown.is_triggered());
        parent.fire();
        assert!(second.is_triggered());
        let (_, late) = shutdown.child();
        assert!(
            late.is_triggered(),
            "a child of a fired shutdown starts fired"
        );
    }
}
