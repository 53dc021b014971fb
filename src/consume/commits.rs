//! The batch role's commits, on a thread of their own.
//!
//! After each batch the polling thread stores the offsets below which everything is finished
//! and asks for a commit. The commit itself is synchronous (librdkafka does not hand the
//! answer to an asynchronous manual commit back through rdkafka's event API, so without
//! waiting there is no knowing when one is through) and runs here: neither the poll loop nor
//! the next batches wait for its round trip.
//!
//! * **At most one commit is in flight.** Requests made while it is out fold into the next
//!   one, which carries every offset stored meanwhile: at full speed one commit covers the
//!   several batches that finished during the previous round trip, instead of each batch
//!   waiting for a commit of its own.
//! * **A failed commit is carried by the next**: its offsets stay stored in librdkafka, and
//!   every commit sends all that is stored.
//! * **Nothing overtakes**: revocation and shutdown commit on the polling thread, after the
//!   commit in flight returned and with any pending request dropped (their commit carries the
//!   same offsets and newer), so commits leave in the order their offsets were stored.
//!
//! Only offsets of finished records are ever stored (see `offsets`), so a commit never covers
//! a record not processed, however late it leaves.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use rdkafka::consumer::Consumer;

use super::client::KafkadConsumer;

/// What the polling thread asks of the commit thread; shared by both.
#[derive(Default)]
pub(crate) struct CommitRequests {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// A commit was asked for since the last one left.
    wanted: bool,
    /// A commit is on its way (the thread is inside librdkafka's commit).
    in_flight: bool,
    stopped: bool,
}

impl CommitRequests {
    fn state(&self) -> MutexGuard<'_, State> {
        // The lock guards three flags, each set whole: a panic elsewhere leaves them valid.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks for a commit of everything stored so far, without waiting for it.
    pub fn request(&self) {
        self.state().wanted = true;
        self.changed.notify_all();
    }

    /// Drops a pending request and waits until no commit is in flight: the caller commits
    /// next, on its own thread, and its commit carries what the dropped one would have.
    pub fn quiesce(&self) {
        let mut state = self.state();
        state.wanted = false;
        while state.in_flight {
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Waits for a request and marks its commit in flight; `false` once stopped.
    fn next(&self) -> bool {
        let mut state = self.state();
        while !state.wanted && !state.stopped {
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        if state.stopped {
            return false;
        }
        state.wanted = false;
        state.in_flight = true;
        true
    }

    /// The commit in flight returned.
    fn done(&self) {
        self.state().in_flight = false;
        self.changed.notify_all();
    }

    fn stop(&self) {
        self.state().stopped = true;
        self.changed.notify_all();
    }
}

/// The thread that sends the requested commits.
pub(crate) struct Committer {
    requests: Arc<CommitRequests>,
    thread: Option<JoinHandle<()>>,
}

impl Committer {
    /// Starts the thread for `consumer`'s requests (its context's [`CommitRequests`]).
    pub fn start(consumer: Arc<KafkadConsumer>) -> std::io::Result<Self> {
        let requests = Arc::clone(&consumer.context().commits);
        let thread = {
            let requests = Arc::clone(&requests);
            std::thread::Builder::new()
                .name("kafkad-commit".to_owned())
                .spawn(move || {
                    while requests.next() {
                        consumer.context().commit_stored(&consumer, "batch");
                        requests.done();
                    }
                })?
        };
        Ok(Committer {
            requests,
            thread: Some(thread),
        })
    }

    /// Waits for the commit in flight, if any, and ends the thread (and its handle on the
    /// consumer, so that closing the consumer is not held up). A request still pending is
    /// dropped: the final commit on the polling thread carries it.
    pub fn stop(mut self) {
        self.requests.stop();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the commit thread panicked");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn requests_made_while_a_commit_is_out_fold_into_one() {
        let requests = CommitRequests::default();
        requests.request();
        assert!(requests.next(), "the first request starts a commit");
        requests.request();
        requests.request();
        requests.done();
        assert!(requests.next(), "the two made meanwhile start one more");
        requests.done();
        requests.stop();
        assert!(!requests.next(), "nothing else was asked for");
    }

    #[test]
    fn quiesce_waits_for_the_commit_in_flight_and_drops_the_pending_request() {
        let requests = Arc::new(CommitRequests::default());
        requests.request();
        assert!(requests.next());
        requests.request();
        let waiter = {
            let requests = Arc::clone(&requests);
            std::thread::spawn(move || requests.quiesce())
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiter.is_finished(), "a commit is still in flight");
        requests.done();
        waiter.join().expect("quiesce returns");
        requests.stop();
        assert!(!requests.next(), "the pending request was dropped");
    }
}
