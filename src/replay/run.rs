//! The replay loop: each copy read is passed over or replayed as the record it stands for,
//! through the sink with `[retry]`'s attempts, and its partition's position committed after
//! it. Apart from the consumer's bookkeeping because this is where the sink is called and a
//! failing copy stops the run.

use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::Message;

use super::position::{Progress, Replay};
use super::select::{decide, source_of, Decision};
use super::{CopyAt, ReplayError, ReplayOptions, ReplayReport, Target};
use crate::config::{RetrySettings, Role, Settings};
use crate::dlq;
use crate::payload::Payload;
use crate::shutdown::Shutdown;
use crate::sink::{Record, Sink, SinkError};

/// What the copies of a run go to, and what decides which do.
struct Replaying<'r> {
    sink: &'r mut dyn Sink,
    settings: &'r Settings,
    options: &'r ReplayOptions,
    shutdown: &'r Shutdown,
}

impl Replay<'_> {
    /// Reads every partition up to its end, dealing with each copy in turn; stops at a signal,
    /// a client that cannot connect, a stalled read, or a copy that fails.
    pub(super) fn run(
        &mut self,
        sink: &mut dyn Sink,
        settings: &Settings,
        options: &ReplayOptions,
        shutdown: &Shutdown,
    ) -> Result<ReplayReport, ReplayError> {
        let mut replaying = Replaying {
            sink,
            settings,
            options,
            shutdown,
        };
        let mut last_progress = Instant::now();
        while self.progress.open_partitions() > 0 {
            self.check_going(settings, shutdown, last_progress)?;
            let copy = match self.consumer.poll(Duration::from_millis(200)) {
                None => continue,
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    // Nothing more now: copies counted into the end a moment ago were
                    // removed (retention) or never became readable.
                    self.progress.end_where_read(partition);
                    last_progress = Instant::now();
                    continue;
                }
                Some(Err(error)) => {
                    let dlq_topic = self.topic();
                    tracing::warn!(%dlq_topic, %error, "reading the dead-letter topic");
                    continue;
                }
                Some(Ok(copy)) => copy,
            };
            last_progress = Instant::now();
            let replayed = deal_with(&copy, self.target, &mut self.progress, &mut replaying)?;
            if let Some(partition) = replayed {
                self.commit(partition)?;
                // A slow sink (its timeout, retries) is not a stalled read.
                last_progress = Instant::now();
            }
        }
        Ok(self.progress.report.clone())
    }

    /// Whether to read on: not after a signal, a client failure that retrying will not help, or
    /// `stall_timeout` without progress.
    fn check_going(
        &self,
        settings: &Settings,
        shutdown: &Shutdown,
        last_progress: Instant,
    ) -> Result<(), ReplayError> {
        if shutdown.is_triggered() {
            return Err(ReplayError::Interrupted {
                replayed: self.progress.report.replayed,
            });
        }
        if let Some(reason) = self.consumer.context().log.failure() {
            return Err(ReplayError::Connection(reason));
        }
        if last_progress.elapsed() > settings.stall_timeout {
            return Err(ReplayError::Stalled {
                topic: self.topic().to_owned(),
                waited: last_progress.elapsed(),
            });
        }
        Ok(())
    }
}

/// Deals with one copy read: leaves it alone when it is outside this run's span, passes it
/// over (counted) when it is not one to replay, or replays it as the record it stands for.
/// `Some(partition)` when it was replayed: the partition's position is to be committed.
fn deal_with<M: Message>(
    copy: &M,
    target: &Target,
    progress: &mut Progress,
    replaying: &mut Replaying<'_>,
) -> Result<Option<i32>, ReplayError> {
    let (partition, offset) = (copy.partition(), copy.offset());
    let Some(span) = progress.spans.get(&partition).copied() else {
        return Ok(None);
    };
    if offset < span.next || offset >= span.end {
        return Ok(None);
    }
    let at = || {
        Box::new(CopyAt {
            dlq_topic: target.dlq_topic.clone(),
            partition,
            offset,
            source: source_of(copy),
        })
    };
    let decision = decide(copy, &target.group, replaying.options)
        .map_err(|header| ReplayError::NotACopy { at: at(), header })?;
    let (source_partition, source_offset) = match decision {
        Decision::OtherGroup => {
            progress.pass_over(partition, offset, |r| &mut r.other_groups);
            return Ok(None);
        }
        Decision::OtherKind => {
            progress.pass_over(partition, offset, |r| &mut r.other_kinds);
            return Ok(None);
        }
        Decision::BeforeSince => {
            progress.pass_over(partition, offset, |r| &mut r.before_since);
            return Ok(None);
        }
        Decision::Replay { partition, offset } => (partition, offset),
    };
    let settings = replaying.settings;
    let message =
        dlq::inspect(copy.payload(), settings.max_record_bytes.get()).map_err(|rejection| {
            ReplayError::Undecodable {
                at: at(),
                rejection,
            }
        })?;
    let record = Record {
        topic: &settings.topic.name,
        partition: source_partition,
        offset: source_offset,
        payload: Payload::Message(message),
        key: copy.key(),
        headers: None,
    };
    deliver(
        &mut *replaying.sink,
        target.role,
        &record,
        &settings.retry,
        replaying.shutdown,
    )
    .map_err(|failure| match failure {
        Undelivered::Failed { attempts, error } => ReplayError::SinkFailed {
            at: at(),
            attempts,
            source: error,
        },
        Undelivered::Interrupted => ReplayError::Interrupted {
            replayed: progress.report.replayed,
        },
    })?;
    tracing::debug!(copy = %at(), "replayed");
    progress.advance(partition, offset);
    progress.report.replayed += 1;
    Ok(Some(partition))
}

/// Why a record did not reach the sink.
enum Undelivered {
    Failed { attempts: u32, error: SinkError },
    Interrupted,
}

/// Hands `record` to the sink as `role` would, retrying a retryable failure after `[retry]`'s
/// delays (without jitter: there is no fleet of replays to spread out), at most
/// `max_attempts` times in all.
fn deliver(
    sink: &mut dyn Sink,
    role: Role,
    record: &Record<'_>,
    retry: &RetrySettings,
    shutdown: &Shutdown,
) -> Result<(), Undelivered> {
    let backoff = retry.backoff().steady();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let result = match role {
            Role::Batch => sink.process_batch(std::slice::from_ref(record)),
            Role::Single | Role::Producer => sink.process(record),
        };
        let error = match result {
            Ok(()) => return Ok(()),
            Err(error) if !error.is_retryable() || attempts >= retry.max_attempts.get() => {
                return Err(Undelivered::Failed { attempts, error })
            }
            Err(error) => error,
        };
        let delay = backoff.delay(attempts, 0.0);
        tracing::warn!(
            partition = record.partition, offset = record.offset, attempts, %error,
            retry_in = ?delay, "the sink failed on a replayed record"
        );
        if shutdown.sleep_blocking(delay) {
            return Err(Undelivered::Interrupted);
        }
    }
}
