//! The shutdown signal every task holds.
//!
//! One [`ShutdownTrigger`] fires once (first SIGINT/SIGTERM, or the demo deciding it is done);
//! every [`Shutdown`] handle sees it, from async tasks (`wait().await`) and from the blocking
//! threads that drive consumers (`is_triggered()`, checked between polls). Roles finish the
//! message or batch in hand, commit and close; [`listen_for_signals`] makes a second signal
//! exit at once, for an operator who does not want to wait.
//!
//! The stop has one deadline: `shutdown_timeout` after the trigger fired
//! ([`Shutdown::deadline`]). Each step of a role's stop (draining, the final commit, the
//! dead-letter flush, leaving the group) takes its time from what is left of it, and the
//! process's backstop gives up only a little after it, so the steps add up to one budget.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// Fires the shutdown. Dropping it without firing does not shut anything down.
#[derive(Debug, Clone)]
pub struct ShutdownTrigger {
    sender: watch::Sender<bool>,
    fired: Arc<OnceLock<Instant>>,
}

/// A handle on the shutdown, cheap to clone, one per task.
#[derive(Debug, Clone)]
pub struct Shutdown {
    receiver: watch::Receiver<bool>,
    /// When the trigger fired: the same fact as the channel's value, for
    /// [`Shutdown::is_triggered`] (reading the channel takes a lock, and a consumer loop asks
    /// once per poll), and the start of the stop's one deadline.
    fired: Arc<OnceLock<Instant>>,
}

/// A new trigger and the handle it controls.
pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (sender, receiver) = watch::channel(false);
    let fired = Arc::new(OnceLock::new());
    let trigger = ShutdownTrigger {
        sender,
        fired: Arc::clone(&fired),
    };
    (trigger, Shutdown { receiver, fired })
}

impl ShutdownTrigger {
    /// Asks every holder of a [`Shutdown`] to stop. Idempotent.
    pub fn fire(&self) {
        self.fired.get_or_init(Instant::now);
        self.sender.send_replace(true);
    }

    /// Another handle on this trigger's shutdown.
    pub fn subscribe(&self) -> Shutdown {
        Shutdown {
            receiver: self.sender.subscribe(),
            fired: Arc::clone(&self.fired),
        }
    }
}

impl Shutdown {
    /// A handle that never fires, for code paths that run to completion.
    pub fn never() -> Self {
        let (trigger, shutdown) = channel();
        // Keep the sender alive for the life of the process: a dropped sender is not a signal.
        std::mem::forget(trigger);
        shutdown
    }

    /// Whether shutdown was asked for. Cheap: a blocking consumer loop calls it per poll.
    pub fn is_triggered(&self) -> bool {
        self.fired.get().is_some()
    }

    /// When a stop that may take `grace` must be over: `grace` after shutdown was asked for;
    /// `None` while it was not.
    pub fn deadline(&self, grace: Duration) -> Option<Instant> {
        self.fired.get().map(|fired| *fired + grace)
    }

    /// Completes once shutdown is asked for (at once if it already was).
    pub async fn wait(&mut self) {
        // An error means every trigger was dropped without firing: then it never fires.
        if self.receiver.wait_for(|fired| *fired).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Sleeps for `duration` unless shutdown comes first; returns whether it did. For the
    /// retry backoffs of blocking threads.
    pub fn sleep_blocking(&self, duration: Duration) -> bool {
        let deadline = std::time::Instant::now() + duration;
        loop {
            if self.is_triggered() {
                return true;
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return false;
            }
            std::thread::sleep((deadline - now).min(Duration::from_millis(50)));
        }
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
}
