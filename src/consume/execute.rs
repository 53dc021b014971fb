//! How a worker runs a job: record by record (the single role, and a batch taken apart), in
//! runs (the single role with a sink that writes several records at once), or as one batch;
//! undecodable records dead-lettered in their place, and what finished reported as it goes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::time::Duration;

use super::chunk::Chunk;
use super::job::{Finished, Job, Outcome, Part, Progress, Report, Shape};
use super::tally::Tally;
use super::worker::WorkerShared;
use crate::dlq::{DeadLetterError, NotDecoded, Rejection};
use crate::payload::Payload;
use crate::sink::{Positions, Record, Sink, SinkError, Span};
use crate::telemetry::clock::Tick;
use crate::telemetry::metrics::ConsumerMetrics;

/// How often a running job reports what it finished.
const REPORT_EVERY: Duration = Duration::from_millis(100);

/// A schema registry that could not be asked, as the sink failure it is treated like.
fn registry_down(error: &crate::payload::RegistryError) -> SinkError {
    SinkError::SchemaRegistry(error.to_string())
}

/// Runs what is pending in `job`.
pub(super) fn run(
    sink: &mut dyn Sink,
    job: &mut Job,
    shared: &WorkerShared,
    tally: &mut Tally,
    done: &Sender<Report>,
) -> Outcome {
    match job.shape {
        Shape::Each if sink.writes_runs() => run_in_runs(sink, job, shared, tally, done),
        Shape::Each | Shape::Isolate => run_each(sink, job, shared, tally, done),
        Shape::Batch => run_batch(sink, job, shared),
    }
}

/// Tells the engine what finished since the last report, and marks it acknowledged.
fn report_finished(parts: &[Part], progress: &mut [Progress], done: &Sender<Report>) {
    let mut finished = Vec::new();
    let mut index = 0;
    for part in parts {
        for entry in 0..part.chunk.len() {
            if progress[index] == Progress::Finished {
                let e = &part.chunk.entries()[entry];
                finished.push(Finished {
                    partition: part.lane.tp,
                    epoch: part.epoch,
                    offset: e.offset,
                    size: part.chunk.size(entry),
                });
                progress[index] = Progress::Acknowledged;
            }
            index += 1;
        }
    }
    if !finished.is_empty() {
        let _ = done.send(Report::Finished(finished));
    }
}

/// Record after record, stopping at the first the sink fails on.
fn run_each(
    sink: &mut dyn Sink,
    job: &mut Job,
    shared: &WorkerShared,
    tally: &mut Tally,
    done: &Sender<Report>,
) -> Outcome {
    let one_record_batches = job.shape == Shape::Isolate;
    let Job {
        parts,
        progress,
        dead_letter_first,
        failures,
        accepted,
        group,
        cancel,
        ..
    } = job;
    let mut reported = Tick::now();
    // One clock reading ends a record and starts the next: a reading costs as much as a tenth
    // of the rest of a record's turn.
    let mut now = reported;
    let mut index = 0;
    for part in parts.iter() {
        for entry in 0..part.chunk.len() {
            let this = index;
            index += 1;
            match turn(progress, this, cancel) {
                Turn::Run => {}
                Turn::Skip => continue,
                Turn::Stop => return Outcome::Cancelled,
            }
            let chunk = &part.chunk;
            let decoded = decode_unless_decided(dead_letter_first, shared, chunk, entry);
            match decoded {
                Err(NotDecoded::RegistryUnavailable(error)) => {
                    return Outcome::Failed(registry_down(&error));
                }
                Ok(payload) => {
                    let record = part.record(entry, payload);
                    let group = group.as_ref().map(|m| &*m.0);
                    match process_one(sink, part, &record, group, one_record_batches) {
                        Ok(()) => *accepted += 1,
                        Err(error) => return Outcome::Failed(error),
                    }
                    let started = now;
                    now = Tick::now();
                    tally.processed(&record.payload, started, now);
                }
                Err(NotDecoded::Rejected(rejection)) => {
                    // The copy may take long (the topic refusing writes for a while): what
                    // finished before it is committed meanwhile.
                    report_finished(parts, progress, done);
                    if let Err(outcome) = dead_letter(part, entry, &rejection, shared) {
                        return outcome;
                    }
                    now = Tick::now();
                    reported = now;
                }
            }
            progress[this] = Progress::Finished;
            *failures = None;
            if now.passed(reported, REPORT_EVERY) {
                report_finished(parts, progress, done);
                reported = now;
            }
        }
    }
    Outcome::Done
}

/// What a record-by-record runner does with the job's entry `this`.
enum Turn {
    Run,
    /// Finished already (the job came back after a failure, and goes on where it stopped).
    Skip,
    /// The engine cancelled the job (its partition was revoked): nothing more of it runs.
    Stop,
}

fn turn(progress: &[Progress], this: usize, cancel: &AtomicBool) -> Turn {
    if progress[this] != Progress::Pending {
        Turn::Skip
    } else if cancel.load(Ordering::Relaxed) {
        Turn::Stop
    } else {
        Turn::Run
    }
}

/// Record `entry` of `chunk` decoded, unless the engine already decided (a batch taken apart
/// after its copy was asked for) that it goes to the dead-letter topic.
fn decode_unless_decided<'c>(
    decided: &mut Option<Rejection>,
    shared: &WorkerShared,
    chunk: &'c Chunk,
    entry: usize,
) -> Result<Payload<'c>, NotDecoded> {
    match decided.take() {
        Some(rejection) => Err(NotDecoded::Rejected(rejection)),
        None => shared.decode(chunk, entry),
    }
}

/// One record to the sink, alone (or as a batch of one while a batch is taken apart), with
/// the position it ends.
fn process_one(
    sink: &mut dyn Sink,
    part: &Part,
    record: &Record<'_>,
    group: Option<&rdkafka::consumer::ConsumerGroupMetadata>,
    as_batch: bool,
) -> Result<(), SinkError> {
    let span = [Span {
        partition: record.partition,
        assignment: part.epoch,
        next: record.offset + 1,
    }];
    let at = Positions {
        topic: &part.topic,
        spans: &span,
        group,
    };
    match as_batch {
        true => sink.process_batch_at(std::slice::from_ref(record), &at),
        false => sink.process_at(record, &at),
    }
}

/// The single role with a sink that writes runs (see `Sink::writes_runs`): the records up to
/// the next undecodable one go in one `process_run` call, which finishes all of them or none;
/// an undecodable record is dead-lettered on its own, after the run before it.
fn run_in_runs(
    sink: &mut dyn Sink,
    job: &mut Job,
    shared: &WorkerShared,
    tally: &mut Tally,
    done: &Sender<Report>,
) -> Outcome {
    let Job {
        parts,
        progress,
        dead_letter_first,
        failures,
        accepted,
        group,
        cancel,
        ..
    } = job;
    let group = group.as_ref().map(|m| &*m.0);
    let mut index = 0;
    for part in parts.iter() {
        let chunk = &part.chunk;
        let write_run = |sink: &mut dyn Sink, run: &[Record<'_>], tally: &mut Tally| {
            write_run(sink, run, part, group, tally)
        };
        let mut run = Vec::new();
        let mut members = Vec::new();
        for entry in 0..chunk.len() {
            let this = index;
            index += 1;
            match turn(progress, this, cancel) {
                Turn::Run => {}
                Turn::Skip => continue,
                Turn::Stop => return Outcome::Cancelled,
            }
            let decoded = decode_unless_decided(dead_letter_first, shared, chunk, entry);
            match decoded {
                Ok(payload) => {
                    run.push(part.record(entry, payload));
                    members.push(this);
                }
                Err(NotDecoded::RegistryUnavailable(error)) => {
                    // What came before goes to the sink; this record is tried again later.
                    if let Err(error) = write_run(sink, &run, tally) {
                        return Outcome::Failed(error);
                    }
                    finish(progress, &mut members, failures, accepted, !run.is_empty());
                    return Outcome::Failed(registry_down(&error));
                }
                Err(NotDecoded::Rejected(rejection)) => {
                    let ran = write_run(sink, &run, tally);
                    if let Err(error) = ran {
                        return Outcome::Failed(error);
                    }
                    finish(progress, &mut members, failures, accepted, !run.is_empty());
                    run.clear();
                    report_finished(parts, progress, done);
                    if let Err(outcome) = dead_letter(part, entry, &rejection, shared) {
                        return outcome;
                    }
                    progress[this] = Progress::Finished;
                    *failures = None;
                }
            }
        }
        if let Err(error) = write_run(sink, &run, tally) {
            return Outcome::Failed(error);
        }
        finish(progress, &mut members, failures, accepted, !run.is_empty());
    }
    Outcome::Done
}

/// One `process_run` call for `run` (records of `part`), if it holds anything, with where it
/// ends and its figures.
fn write_run(
    sink: &mut dyn Sink,
    run: &[Record<'_>],
    part: &Part,
    group: Option<&rdkafka::consumer::ConsumerGroupMetadata>,
    tally: &mut Tally,
) -> Result<(), SinkError> {
    let Some(last) = run.last() else {
        return Ok(());
    };
    let span = [Span {
        partition: last.partition,
        assignment: part.epoch,
        next: last.offset + 1,
    }];
    let at = Positions {
        topic: &part.topic,
        spans: &span,
        group,
    };
    let started = Tick::now();
    sink.process_run(run, &at)?;
    tally.processed_together(run.iter().map(|r| &r.payload), started, Tick::now());
    Ok(())
}

/// Marks the records of a run the sink took as finished.
fn finish(
    progress: &mut [Progress],
    members: &mut Vec<usize>,
    failures: &mut Option<super::retry::Failures>,
    accepted: &mut u64,
    ran: bool,
) {
    for member in members.drain(..) {
        progress[member] = Progress::Finished;
    }
    if ran {
        *failures = None;
        *accepted += 1;
    }
}

/// The pending records in one sink call, undecodable ones dead-lettered first. A copy that
/// cannot be made (shutdown, or refused for good) ends the run; the records before it go to
/// the sink first, so the batch in hand is finished as far as it can be.
fn run_batch(sink: &mut dyn Sink, job: &mut Job, shared: &WorkerShared) -> Outcome {
    let Job {
        parts,
        progress,
        accepted,
        group,
        ..
    } = job;
    let mut records = Vec::with_capacity(progress.len());
    let mut sent = Vec::with_capacity(progress.len());
    let mut spans: Vec<Span> = Vec::new();
    let mut stopped = None;
    let mut index = 0;
    'records: for part in parts.iter() {
        for entry in 0..part.chunk.len() {
            let this = index;
            index += 1;
            if progress[this] != Progress::Pending {
                continue;
            }
            let chunk = &part.chunk;
            let e = &chunk.entries()[entry];
            match shared.decode(chunk, entry) {
                Ok(payload) => {
                    records.push(part.record(entry, payload));
                    sent.push(this);
                }
                Err(NotDecoded::RegistryUnavailable(error)) => {
                    // The records before it go to the sink; it and those after it are tried
                    // again, as after a sink outage.
                    stopped = Some(Outcome::Failed(registry_down(&error)));
                    break 'records;
                }
                Err(NotDecoded::Rejected(rejection)) => {
                    match dead_letter(part, entry, &rejection, shared) {
                        Ok(()) => progress[this] = Progress::Finished,
                        Err(outcome) => {
                            stopped = Some(outcome);
                            break 'records;
                        }
                    }
                }
            }
            cover(&mut spans, e.partition, part.epoch, e.offset);
        }
    }
    if !spans.is_empty() {
        // A sink keeping positions has a consumer of one topic (configuration sees to it):
        // the spans are that topic's.
        let topic = parts.first().map_or("", |part| &*part.topic);
        let at = Positions {
            topic,
            spans: &spans,
            group: group.as_ref().map(|m| &*m.0),
        };
        let started = Tick::now();
        match sink.process_batch_at(&records, &at) {
            Ok(()) if records.is_empty() => {}
            Ok(()) => {
                *accepted += 1;
                observe_batch(&shared.metrics, &records, started);
                for this in sent {
                    progress[this] = Progress::Finished;
                }
            }
            Err(error) => return stopped.unwrap_or(Outcome::Failed(error)),
        }
    }
    stopped.unwrap_or(Outcome::Done)
}

/// Extends the spans of a sink call over the record at `offset` of `partition`.
fn cover(spans: &mut Vec<Span>, partition: i32, assignment: u64, offset: i64) {
    match spans.iter_mut().find(|s| s.partition == partition) {
        Some(span) => span.next = span.next.max(offset + 1),
        None => spans.push(Span {
            partition,
            assignment,
            next: offset + 1,
        }),
    }
}

/// Counts `records`, processed together since `started`: one processing time, and one clock
/// read and one histogram lock for all their latencies, observed before the count so that
/// whoever sees `processed` reach N also finds N latencies.
fn observe_batch(metrics: &ConsumerMetrics, records: &[Record<'_>], started: Tick) {
    metrics
        .processing_time
        .observe(Tick::now().seconds_since(started));
    let now = super::tally::unix_micros_now();
    metrics.end_to_end_latency.observe_all(
        records
            .iter()
            .filter_map(|record| super::tally::latency(&record.payload, now)),
    );
    metrics.processed.inc_by(records.len() as u64);
}

/// Copies record `entry` of `part` to the dead-letter topic, waiting for the acknowledgement.
fn dead_letter(
    part: &Part,
    entry: usize,
    rejection: &Rejection,
    shared: &WorkerShared,
) -> Result<(), Outcome> {
    let original = part.chunk.original(&part.topic, entry);
    match shared
        .dead_letters
        .send(&original, rejection, &shared.shutdown)
    {
        Ok(()) => Ok(()),
        Err(DeadLetterError::Interrupted) => Err(Outcome::Interrupted),
        Err(refused) => Err(Outcome::Refused(refused)),
    }
}
