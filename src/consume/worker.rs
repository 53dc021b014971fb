//! The workers: the only threads that call the sink (and the dead-letter producer).
//!
//! The polling thread hands each worker a [`Job`] and goes on polling; the worker runs it
//! and hands it back with its [`Outcome`] (see `job`).
//!
//! A worker blocks as long as its sink does; that is what workers are for. A sink that hangs
//! holds its worker and the job's lanes, never the poll loop: the consumer stays in its group,
//! and `/healthz` reports the stall (see `engine`).

use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::Duration;

use super::chunk::Chunk;
use super::job::{Completion, Job, Outcome, Report};
use super::tally::Tally;
use super::thread::{self, Thread};
use crate::dlq::{self, DeadLetters, NotDecoded};
use crate::payload::{Decoder, Payload};
use crate::shutdown::Shutdown;
use crate::sink::Sink;
use crate::telemetry::metrics::ConsumerMetrics;

/// What every worker of a consumer shares.
pub(crate) struct WorkerShared {
    pub dead_letters: Arc<DeadLetters>,
    pub metrics: ConsumerMetrics,
    pub shutdown: Shutdown,
    pub max_record_bytes: usize,
    /// Decodes values of the consumer's `format`.
    pub decoder: Decoder,
}

impl WorkerShared {
    /// Record `entry` of `chunk` decoded, or why not: a bad record, or a schema registry
    /// that could not be asked (not the record's fault: the caller fails the call as a sink
    /// outage would, and the record is tried again later).
    #[inline]
    pub(super) fn decode<'c>(
        &self,
        chunk: &'c Chunk,
        entry: usize,
    ) -> Result<Payload<'c>, NotDecoded> {
        dlq::inspect_with(&self.decoder, chunk.value(entry), self.max_record_bytes)
    }
}

/// The workers of one consumer and the way to them. Dropping it closes the inboxes: each
/// worker ends after the job it runs, if any (one inside a hung sink call is left behind).
pub(crate) struct Workers {
    inboxes: Vec<Option<Sender<Job>>>,
    idle: Vec<usize>,
    reports: Receiver<Report>,
}

impl Workers {
    /// One thread per sink; their handles go to the caller, who waits for them once the
    /// workers are dropped (the last of them to end lets go of the dead-letter producer).
    pub fn start(
        sinks: Vec<Box<dyn Sink>>,
        shared: Arc<WorkerShared>,
    ) -> std::io::Result<(Self, Vec<Thread>)> {
        let (done, reports) = mpsc::channel();
        let mut workers = Workers {
            inboxes: Vec::new(),
            idle: Vec::new(),
            reports,
        };
        let mut threads = Vec::new();
        for (index, sink) in sinks.into_iter().enumerate() {
            let (inbox, jobs) = mpsc::channel();
            let (shared, done) = (Arc::clone(&shared), done.clone());
            let span = tracing::Span::current();
            threads.push(thread::spawn(format!("kafkad-sink-{index}"), move || {
                span.in_scope(|| work(index, sink, &jobs, &done, &shared))
            })?);
            workers.inboxes.push(Some(inbox));
        }
        workers.idle = (0..workers.inboxes.len()).rev().collect();
        Ok((workers, threads))
    }

    pub fn any_idle(&self) -> bool {
        !self.idle.is_empty()
    }

    /// Hands `job` to an idle worker, whose number it returns; gives the job back when none
    /// is idle.
    pub fn send(&mut self, job: Job) -> Result<usize, Box<Job>> {
        let Some(worker) = self.idle.pop() else {
            return Err(Box::new(job));
        };
        let Some(inbox) = &self.inboxes[worker] else {
            return Err(Box::new(job));
        };
        match inbox.send(job) {
            Ok(()) => Ok(worker),
            // The worker's thread is gone (it ends only when its inbox closes, so this cannot
            // happen while the engine runs): keep the job, forget the worker.
            Err(mpsc::SendError(job)) => {
                self.inboxes[worker] = None;
                Err(Box::new(job))
            }
        }
    }

    /// The next report from a worker, if any; waits up to `wait` for one.
    pub fn report(&mut self, wait: Duration) -> Option<Report> {
        let report = if wait.is_zero() {
            self.reports.try_recv().ok()
        } else {
            self.reports.recv_timeout(wait).ok()
        };
        if let Some(Report::Back(completion)) = &report {
            self.idle.push(completion.worker);
        }
        report
    }
}

/// A worker's life: run jobs until the inbox closes.
fn work(
    worker: usize,
    mut sink: Box<dyn Sink>,
    jobs: &Receiver<Job>,
    done: &Sender<Report>,
    shared: &WorkerShared,
) {
    let mut tally = Tally::new(shared.metrics.clone());
    while let Ok(mut job) = jobs.recv() {
        let ran = std::panic::catch_unwind(AssertUnwindSafe(|| {
            super::execute::run(&mut *sink, &mut job, shared, &mut tally, done)
        }));
        tally.publish();
        let outcome = ran.unwrap_or_else(|panic| {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".to_owned());
            Outcome::Panicked(message)
        });
        if done
            .send(Report::Back(Box::new(Completion {
                worker,
                job,
                outcome,
            })))
            .is_err()
        {
            return;
        }
    }
}
