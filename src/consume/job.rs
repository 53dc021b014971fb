//! What travels between the engine and its workers: a [`Job`] (records of one lane, or a
//! batch over several), and what comes back ([`Report`]).
//!
//! A job travels whole: what was finished is marked in it, so after a failure the engine
//! decides (retry later, dead-letter the record, take the batch apart) and sends the same job
//! out again to carry on where it stopped. Nothing is ever run twice by one consumer.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use rdkafka::consumer::ConsumerGroupMetadata;

use super::chunk::Chunk;
use super::retry::Failures;
use super::tp::Tp;
use crate::dlq::{DeadLetterError, Rejection};
use crate::payload::Payload;
use crate::sink::{Record, SinkError};

/// Records that must reach the sink in order: one partition, or one key of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Lane {
    pub tp: Tp,
    /// A hash of the record key with `ordering = "key"`; 0 otherwise.
    pub key: u64,
}

/// How a job's records reach the sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// One `process` call per record (single role).
    Each,
    /// One `process_batch` call for the job (batch role).
    Batch,
    /// A batch taken apart: one `process_batch` call per record, each a batch of one, so the
    /// sink sees the shape it always sees.
    Isolate,
}

/// One lane's records in a job, from the assignment `epoch` they were received in.
#[derive(Debug)]
pub(crate) struct Part {
    pub lane: Lane,
    /// The name of the lane's topic.
    pub topic: Arc<str>,
    pub epoch: u64,
    pub chunk: Chunk,
}

impl Part {
    /// The chunk's record at `entry`, its value decoded into `payload`, as a sink receives it.
    pub fn record<'a>(&'a self, entry: usize, payload: Payload<'a>) -> Record<'a> {
        let e = &self.chunk.entries()[entry];
        Record {
            topic: &self.topic,
            partition: e.partition,
            offset: e.offset,
            payload,
            key: self.chunk.key(entry),
            headers: self.chunk.headers(entry),
        }
    }
}

/// Where each record of a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Progress {
    Pending,
    /// Processed, or its dead-letter copy acknowledged; the engine has not counted it yet.
    Finished,
    /// Finished and counted by the engine's offset tracker.
    Acknowledged,
}

/// Work for one worker, and what became of it so far.
#[derive(Debug)]
pub(crate) struct Job {
    pub shape: Shape,
    pub parts: Vec<Part>,
    /// Per record, over the parts in order.
    pub progress: Vec<Progress>,
    /// The engine's decision about the first pending record: dead-letter it, then go on.
    pub dead_letter_first: Option<Rejection>,
    /// The failures of what is being tried: the first pending record, or the batch.
    pub failures: Option<Failures>,
    /// Sink calls that succeeded in the last run: evidence that the downstream is up.
    pub accepted: u64,
    /// Attempts each record had before it was tried alone (a batch taken apart).
    pub base_attempts: u32,
    /// Sink calls that succeeded since the batch was taken apart.
    pub pass_accepted: u64,
    /// The group membership when the job was sent, for a sink keeping positions.
    pub group: Option<Membership>,
    /// Set by the engine when the job's records are no longer wanted (shutdown, or their
    /// partition revoked): the worker stops before the next record, the one in hand
    /// finished.
    pub cancel: Arc<AtomicBool>,
}

/// A consumer's group membership (generation and member id), as librdkafka hands it over.
#[derive(Clone)]
pub(crate) struct Membership(pub Arc<ConsumerGroupMetadata>);

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Membership")
    }
}

impl Job {
    pub fn new(shape: Shape, parts: Vec<Part>) -> Self {
        let records = parts.iter().map(|p| p.chunk.len()).sum();
        Job {
            shape,
            parts,
            progress: vec![Progress::Pending; records],
            dead_letter_first: None,
            failures: None,
            accepted: 0,
            base_attempts: 0,
            pass_accepted: 0,
            group: None,
            cancel: Arc::default(),
        }
    }

    /// A failed batch taken apart: one job per lane, each trying its records one at a time,
    /// so a lane whose record keeps failing holds back no other lane. Each record has had
    /// the batch's attempts.
    pub fn take_apart(self, attempts: u32) -> Vec<Job> {
        let mut at = 0;
        let mut jobs = Vec::with_capacity(self.parts.len());
        for part in self.parts {
            let records = at..at + part.chunk.len();
            at = records.end;
            let mut job = Job::new(Shape::Isolate, vec![part]);
            job.progress.copy_from_slice(&self.progress[records]);
            job.base_attempts = attempts;
            job.group = self.group.clone();
            jobs.push(job);
        }
        jobs
    }

    /// Every record as (index, part, index in its chunk), in order.
    pub fn records(&self) -> impl Iterator<Item = (usize, &Part, usize)> + '_ {
        self.parts
            .iter()
            .flat_map(|part| (0..part.chunk.len()).map(move |entry| (part, entry)))
            .enumerate()
            .map(|(index, (part, entry))| (index, part, entry))
    }

    /// The first record not yet finished, if any.
    pub fn first_pending(&self) -> Option<(usize, &Part, usize)> {
        self.records()
            .find(|&(index, _, _)| self.progress[index] == Progress::Pending)
    }

    pub fn len(&self) -> usize {
        self.progress.len()
    }

    /// The partitions the job holds records of.
    pub fn partitions(&self) -> Vec<Tp> {
        let mut partitions: Vec<Tp> = self.parts.iter().map(|p| p.lane.tp).collect();
        partitions.sort_unstable();
        partitions.dedup();
        partitions
    }

    /// Keeps only the parts `keep` says to (and their progress); the dropped parts' lanes.
    pub fn retain_parts(&mut self, keep: impl Fn(&Part) -> bool) -> Vec<Lane> {
        let mut dropped = Vec::new();
        let mut progress = Vec::with_capacity(self.progress.len());
        let mut at = 0;
        let mut parts = Vec::with_capacity(self.parts.len());
        for part in self.parts.drain(..) {
            let records = at..at + part.chunk.len();
            at = records.end;
            if keep(&part) {
                progress.extend_from_slice(&self.progress[records]);
                parts.push(part);
            } else {
                dropped.push(part.lane);
            }
        }
        self.parts = parts;
        self.progress = progress;
        dropped
    }
}

/// How a job run ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Every record finished.
    Done,
    /// The sink failed on the first pending record (or on the batch).
    Failed(SinkError),
    /// Shutdown came while a dead-letter copy was not yet acknowledged.
    Interrupted,
    /// A dead-letter copy can never be made.
    Refused(DeadLetterError),
    /// The sink panicked: a bug in it; the consumer stops.
    Panicked(String),
    /// The engine cancelled the job; what it finished is marked.
    Cancelled,
}

/// A job back from its worker.
#[derive(Debug)]
pub(crate) struct Completion {
    pub worker: usize,
    pub job: Job,
    pub outcome: Outcome,
}

/// A record finished while its job goes on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Finished {
    pub partition: Tp,
    pub epoch: u64,
    pub offset: i64,
    /// Key and value bytes it held.
    pub size: usize,
}

/// What a worker tells the engine.
#[derive(Debug)]
pub(crate) enum Report {
    /// Records finished in a job that is still running: sent before the worker may block
    /// for long (a dead-letter copy) and every 100 ms of a long job, so that a job
    /// stuck on one record never holds back the commit of those before it.
    Finished(Vec<Finished>),
    /// The job is back.
    Back(Box<Completion>),
}
