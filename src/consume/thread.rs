//! Threads the consumer starts and, when it stops, waits for within its shutdown budget.
//!
//! A thread may hold a Kafka client (a worker holds the dead-letter producer; the closing
//! thread, the consumer). The role must not return while one of those is being destroyed
//! elsewhere: the process exits right after, and exiting runs OpenSSL's clean-up while
//! librdkafka's threads may still be inside a TLS handshake, which corrupts the heap. So
//! each of these threads can be waited for; the wait is bounded, because a thread inside a
//! hung sink call, or a close stuck on unreachable brokers, may never end.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

/// A running thread whose end can be waited for with a bound.
pub(crate) struct Thread {
    handle: JoinHandle<()>,
    /// Disconnects once the body and everything it owned are gone.
    ended: Receiver<()>,
}

/// Starts `body` on a thread named `name`.
pub(crate) fn spawn(name: String, body: impl FnOnce() + Send + 'static) -> std::io::Result<Thread> {
    let (alive, ended) = mpsc::channel::<()>();
    let handle = std::thread::Builder::new().name(name).spawn(move || {
        // The body is consumed (its captures dropped, a Kafka client among them) before
        // `alive` goes, also when it panics.
        body();
        drop(alive);
    })?;
    Ok(Thread { handle, ended })
}

impl Thread {
    /// Waits up to `timeout` for the thread to end; whether it did. A thread that did not is
    /// left running on its own.
    pub fn join_within(self, timeout: Duration) -> bool {
        match self.ended.recv_timeout(timeout) {
            Err(RecvTimeoutError::Disconnected) => {
                if self.handle.join().is_err() {
                    tracing::error!("a consumer thread panicked");
                }
                true
            }
            Ok(()) | Err(RecvTimeoutError::Timeout) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_that_ends_is_joined_and_one_that_hangs_is_left_after_the_timeout() {
        let quick = spawn("quick".to_owned(), || {}).expect("thread");
        assert!(quick.join_within(Duration::from_secs(10)));

        let (release, hold) = mpsc::channel::<()>();
        let hung = spawn("hung".to_owned(), move || {
            let _ = hold.recv();
        })
        .expect("thread");
        assert!(!hung.join_within(Duration::from_millis(20)));
        drop(release);
    }

    #[test]
    fn what_the_body_owned_is_gone_when_the_wait_returns() {
        let owned = std::sync::Arc::new(());
        let held = std::sync::Arc::clone(&owned);
        let thread = spawn("owner".to_owned(), move || {
            let _held = held;
        })
        .expect("thread");
        assert!(thread.join_within(Duration::from_secs(10)));
        assert_eq!(std::sync::Arc::strong_count(&owned), 1);
    }
}
