//! The engine: what the poll loop does between polls, for both consumer roles.
//!
//! It takes records in hand (`partitions`), forms jobs by the role's [`Strategy`] (a lane's
//! records one by one, or a batch over several lanes), hands them to idle workers, and settles
//! what comes back: records finished move their partition's commit point (`offsets`), a
//! failure is retried later, taken apart, dead-lettered or stops the consumer (`retry`).
//! Rebalances go through [`Engine::assign`] and [`Engine::revoke`], called by the consumer's
//! rebalance callback on the polling thread.
//!
//! Nothing here waits on a sink. The only waits are bounded ones the poll loop chooses: at a
//! revocation up to `drain_timeout` for work in flight on the partitions that go, and their
//! synchronous commit, so that what finishes is committed before they move. The batch
//! role's commit after each batch goes out on a thread of its own (`commits`).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::Arc;
use std::time::Duration;

use super::job::{Completion, Finished, Job, Membership, Outcome, Part, Progress, Report, Shape};
use super::partitions::Partitions;
use super::retry::RetryPolicy;
use super::tp::Tp;
use super::worker::{WorkerShared, Workers};
use crate::config::{BatchSettings, ConsumerRole};
use crate::dlq::DeadLetters;
use crate::roles::RoleError;
use crate::sink::PositionStore;
use crate::telemetry::clock::Tick;
use crate::telemetry::metrics::ConsumerMetrics;

/// How jobs are formed.
#[derive(Debug, Clone)]
pub(crate) enum Strategy {
    /// One record per sink call.
    Single,
    /// Batches of `min_size`..`max_size` records, or fewer after `max_wait`.
    Batch(BatchSettings),
}

impl Strategy {
    /// The consumer role this strategy serves.
    pub fn role(&self) -> ConsumerRole {
        match self {
            Strategy::Single => ConsumerRole::Single,
            Strategy::Batch(_) => ConsumerRole::Batch,
        }
    }
}

mod failures;
mod rebalance;

/// A job waiting for its next attempt.
struct Waiting {
    due: Tick,
    since: Tick,
    job: Job,
}

/// The engine of one consumer.
pub(crate) struct Engine {
    strategy: Strategy,
    pub(super) partitions: Partitions,
    workers: Workers,
    /// For each busy worker, the partitions its job holds and the job's cancel flag.
    out: HashMap<usize, (Vec<Tp>, Arc<AtomicBool>)>,
    waiting: Vec<Waiting>,
    /// Jobs to send on as soon as a worker is idle (after a decision about a failure).
    ready: VecDeque<Job>,
    policy: RetryPolicy,
    metrics: ConsumerMetrics,
    /// Sink calls that succeeded: whether the downstream is up (see `retry`).
    accepted: u64,
    /// Why the consumer must stop, once something made it.
    failure: Option<RoleError>,
    drain_timeout: Duration,
    stopping: bool,
    shared: Arc<WorkerShared>,
    /// The positions the sink keeps, if it keeps them (exactly-once sinks).
    positions: Option<Box<dyn PositionStore>>,
    /// The group membership as of the last rebalance, handed to a sink keeping positions.
    group: Option<Membership>,
}

impl Engine {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        strategy: Strategy,
        partitions: Partitions,
        workers: Workers,
        policy: RetryPolicy,
        metrics: ConsumerMetrics,
        drain_timeout: Duration,
        shared: Arc<WorkerShared>,
        positions: Option<Box<dyn PositionStore>>,
    ) -> Self {
        Engine {
            strategy,
            partitions,
            workers,
            out: HashMap::new(),
            waiting: Vec::new(),
            ready: VecDeque::new(),
            policy,
            metrics,
            accepted: 0,
            failure: None,
            drain_timeout,
            stopping: false,
            shared,
            positions,
            group: None,
        }
    }

    /// Whether the sink keeps the consumer's positions (see `sink`).
    pub fn keeps_positions(&self) -> bool {
        self.positions.is_some()
    }

    /// The group membership to hand to a sink keeping positions, after a rebalance.
    pub fn set_group(&mut self, group: Option<rdkafka::consumer::ConsumerGroupMetadata>) {
        self.group = group.map(|g| Membership(Arc::new(g)));
    }

    /// The dead-letter router the workers share.
    pub fn dead_letters(&self) -> Arc<DeadLetters> {
        Arc::clone(&self.shared.dead_letters)
    }

    /// Jobs out with a worker.
    pub fn in_flight(&self) -> usize {
        self.out.len()
    }

    pub fn all_workers_busy(&self) -> bool {
        !self.workers.any_idle()
    }

    /// When the next retry is due, if any waits.
    pub fn next_due(&self) -> Option<Tick> {
        self.waiting.iter().map(|w| w.due).min()
    }

    /// When a batch that is not full would be due by its age.
    pub fn batch_due_at(&self) -> Option<Tick> {
        match &self.strategy {
            Strategy::Batch(limits) => self
                .partitions
                .oldest_ready()
                .map(|oldest| oldest.after(limits.max_wait)),
            Strategy::Single => None,
        }
    }

    /// Records and jobs still to be processed, and where they are.
    pub fn describe_unfinished(&self) -> (usize, usize) {
        (self.waiting.len(), self.partitions.ready_records())
    }

    /// The consumer must stop with `failure` (the first one counts).
    pub fn fail(&mut self, failure: RoleError) {
        self.failure.get_or_insert(failure);
    }

    pub fn has_failed(&self) -> bool {
        self.failure.is_some()
    }

    pub fn take_failure(&mut self) -> Option<RoleError> {
        self.failure.take()
    }

    /// Stop taking work: retries no longer fall due, every partition is paused, and what is
    /// out with a worker finishes. Nothing new goes out, but for the batch role the batch in
    /// hand, however small: it is finished and committed rather than left to the next owner.
    pub fn stop(&mut self) {
        self.stopping = true;
        self.partitions.stop();
        for (_, cancel) in self.out.values() {
            cancel.store(true, AtomicOrdering::Relaxed);
        }
    }

    /// Sends what can go to idle workers: decided jobs first, then new ones.
    /// `queue_drained`: librdkafka had nothing more at the last poll.
    pub fn dispatch(&mut self, now: Tick, queue_drained: bool) {
        while self.workers.any_idle() {
            // While stopping, work waiting to go on (after a failure) stays where it is: only
            // what is in flight is finished.
            let carry_on = (!self.stopping).then(|| self.ready.pop_front()).flatten();
            let job = match carry_on {
                Some(job) => job,
                None if self.failure.is_some() => break,
                None => match self.next_job(now, queue_drained) {
                    Some(mut job) => {
                        job.group = self.group.clone();
                        job
                    }
                    None => break,
                },
            };
            let held = (job.partitions(), Arc::clone(&job.cancel));
            match self.workers.send(job) {
                Ok(worker) => {
                    if self.out.is_empty() {
                        // Work is out again: a stall is counted from now, not from when the
                        // consumer last had something to do.
                        self.metrics.health.progress_at(now);
                    }
                    self.out.insert(worker, held);
                }
                Err(job) => {
                    self.ready.push_front(*job);
                    break;
                }
            }
        }
        self.metrics.health.set_busy(!self.out.is_empty());
    }

    /// The next job of the role's strategy, if one is due.
    fn next_job(&mut self, now: Tick, queue_drained: bool) -> Option<Job> {
        let part =
            |partitions: &Partitions, (lane, epoch, chunk): (super::job::Lane, u64, _)| Part {
                topic: Arc::clone(partitions.topic_name(lane.tp)),
                lane,
                epoch,
                chunk,
            };
        match &self.strategy {
            Strategy::Single if self.stopping => None,
            Strategy::Single => {
                // Everything the lane holds: handing over costs the same for one record or a
                // window's worth, and a long job reports what it finished as it goes.
                let taken = self.partitions.take(usize::MAX)?;
                Some(Job::new(Shape::Each, vec![part(&self.partitions, taken)]))
            }
            Strategy::Batch(limits) => {
                let (min, max) = (limits.min_size.get(), limits.max_size.get());
                let ready = self.partitions.ready_records();
                let old = self
                    .partitions
                    .oldest_ready()
                    .is_some_and(|oldest| now.passed(oldest, limits.max_wait));
                let last = self.stopping && ready > 0;
                if !(ready >= max || (ready >= min && queue_drained) || (ready > 0 && old) || last)
                {
                    return None;
                }
                let mut parts = Vec::new();
                let mut taken = 0;
                while taken < max {
                    let Some(next) = self.partitions.take(max - taken) else {
                        break;
                    };
                    taken += next.2.len();
                    parts.push(part(&self.partitions, next));
                }
                (!parts.is_empty()).then(|| Job::new(Shape::Batch, parts))
            }
        }
    }

    /// Settles everything the workers reported, waiting up to `wait` for the first report.
    pub fn settle(&mut self, wait: Duration) {
        let mut wait = wait;
        while let Some(report) = self.workers.report(wait) {
            wait = Duration::ZERO;
            self.take_report(report);
        }
        self.metrics.health.set_busy(!self.out.is_empty());
    }

    fn take_report(&mut self, report: Report) {
        match report {
            Report::Finished(finished) => {
                self.metrics.health.progress();
                for Finished {
                    partition,
                    epoch,
                    offset,
                    size,
                } in finished
                {
                    self.partitions.finish(partition, epoch, [(offset, size)]);
                }
            }
            Report::Back(completion) => self.handle(*completion),
        }
    }

    fn handle(&mut self, completion: Completion) {
        let Completion {
            worker,
            mut job,
            outcome,
        } = completion;
        self.out.remove(&worker);
        let now = Tick::now();
        self.metrics.health.progress_at(now);
        let accepted = std::mem::take(&mut job.accepted);
        self.accepted += accepted;
        job.pass_accepted += accepted;
        self.acknowledge(&mut job);
        match outcome {
            Outcome::Done => {
                if job.shape == Shape::Batch {
                    self.metrics.batches.inc();
                    self.metrics.batch_size.observe(job.len() as f64);
                }
                self.release(job);
            }
            Outcome::Failed(error) => self.failed(job, error, now),
            Outcome::Interrupted | Outcome::Cancelled => self.release(job),
            Outcome::Refused(refused) => {
                self.fail(RoleError::DeadLetter(refused));
                self.release(job);
            }
            Outcome::Panicked(panic) => {
                self.fail(RoleError::Thread(format!("the sink panicked: {panic}")));
                self.release(job);
            }
        }
    }

    /// Moves the commit points over what the job finished.
    fn acknowledge(&mut self, job: &mut Job) {
        let mut index = 0;
        for part in &job.parts {
            let records = index..index + part.chunk.len();
            index = records.end;
            let progress = &mut job.progress[records];
            let finished = part
                .chunk
                .entries()
                .iter()
                .enumerate()
                .filter_map(|(entry, e)| {
                    let state = &mut progress[entry];
                    (*state == Progress::Finished).then(|| {
                        *state = Progress::Acknowledged;
                        (e.offset, part.chunk.size(entry))
                    })
                });
            self.partitions.finish(part.lane.tp, part.epoch, finished);
        }
    }

    /// The job's lanes are free again.
    fn release(&mut self, job: Job) {
        for part in job.parts {
            self.partitions.free(part.lane);
            self.partitions.recycle(part.chunk);
        }
    }

    /// Queues `job` to carry on, without the records of partitions no longer ours.
    fn go_on(&mut self, job: Job) {
        if let Some(job) = self.current(job) {
            self.ready.push_back(job);
        }
    }

    /// `job` without the parts of revoked partitions (their lanes freed); `None` if nothing
    /// is left.
    fn current(&mut self, mut job: Job) -> Option<Job> {
        let partitions = &self.partitions;
        let dropped = job.retain_parts(|part| partitions.is_current(part.lane.tp, part.epoch));
        for lane in dropped {
            self.partitions.free(lane);
        }
        (!job.parts.is_empty()).then_some(job)
    }
}
