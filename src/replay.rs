//! `kafkad dlq replay`: one consumer group's dead-lettered records, through that group's sink,
//! once.
//!
//! Every group dead-letters on its own (a copy's `kafkad.consumer.group` header names the group
//! that rejected the record), so the dead-letter topic holds one copy per group that rejected a
//! record. Producing the copies back to the source topic would hand every copy to every group.
//! The replay instead reads the dead-letter topic, keeps the copies of the configured group
//! (`[kafka] group.id`), decodes each from the copy's exact value bytes and hands it to the sink
//! that group uses (`[sink]`, the way the configured role calls it: one record per call, as a
//! batch of one for `batch`), with the source partition and offset of the original record: the
//! sink sees what it would have seen the first time.
//!
//! **Position.** The replay has a consumer group of its own, `<group.id>.replay`, and commits
//! its position after each record the sink accepted. Run again after a stop, it resumes after
//! the last record that reached the sink (a crash between the sink's answer and the commit sends
//! that one record again). Each run reads every partition from that position to the end the
//! partition had when the run started, so copies made meanwhile wait for the next run. Copies it
//! passes over (another group's, of a kind `--reason` does not ask for, dead-lettered before
//! `--since`) are behind its position afterwards: a later run does not offer them again. It
//! reads its partitions itself, without joining the group, so two replays of one group at once
//! would both send every record: run one at a time.
//!
//! `--reason` keeps the copies of the kinds it names (`kafkad.error.kind`); `--since` those
//! dead-lettered at or after a time, by the copy's own timestamp (set when it was written to
//! the dead-letter topic). A signal stops it between records, or in a retry's wait, with its
//! position committed up to the last record the sink accepted.
//!
//! **A copy that fails stops it, uncommitted.** A copy that still does not decode, that the sink
//! refuses for good, or that the sink fails on `[retry] max_attempts` times stops the replay
//! with exit 1 and one line naming the copy, the record it stands for and the error. Its
//! position is not committed past, so it is the first record of the next run; nothing is written
//! anywhere, and the copy stays in the dead-letter topic. To go past copies that cannot succeed
//! (a record that never was a `KafkaMessage` never will be), replay only the kinds that can:
//! `--reason processing_failed`.
//!
//! Here: what a replay is given and reports, and the run from start to commit. Which copies
//! are the group's to replay is in `select`; the replay consumer with its position (each
//! partition's span, the commits) in `position`; the loop over the copies, with the sink's
//! retries, in `run`.

mod position;
mod run;
mod select;

use std::time::Duration;

use rdkafka::error::KafkaError;

use crate::config::{Role, Settings};
use crate::dlq::Rejection;
use crate::shutdown::Shutdown;
use crate::sink::{self, SinkError};
use position::{create_consumer, Progress, Replay};
pub use select::{ErrorKind, ReplayOptions};

/// Whose dead letters, from where, and the position the replay keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The consumer role whose sink gets the records, and how.
    pub role: Role,
    /// The group whose copies are replayed.
    pub group: String,
    pub dlq_topic: String,
    /// The consumer group whose committed offsets are the replay's position.
    pub replay_group: String,
}

/// A configuration a replay cannot work with: the key to change and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unfit {
    pub key: &'static str,
    pub message: String,
}

impl Target {
    /// The replay `settings` describe: the group and sink of a consumer role, and its
    /// dead-letter topic.
    pub fn of(settings: &Settings) -> Result<Self, Unfit> {
        let role = match settings.role {
            Some(role @ (Role::Single | Role::Batch)) => role,
            _ => {
                return Err(Unfit {
                    key: "role",
                    message: "a replay sends a consumer group's dead letters through its sink: give the consumer's role, single or batch".to_owned(),
                })
            }
        };
        if settings.topic.selection.single().is_none() {
            return Err(Unfit {
                key: "topic.name",
                message: format!(
                    "is `{}`: a replay reads the dead letters of one topic; give that topic (topic = \"orders\")",
                    settings.topic.selection
                ),
            });
        }
        if settings.consumer.format != crate::payload::Format::KafkaMessage {
            return Err(Unfit {
                key: "consumer.format",
                message: format!(
                    "is {}: a replay sends the seed's messages (kafka_message) through the sink",
                    settings.consumer.format
                ),
            });
        }
        let Some(dlq_topic) = settings.dlq_topic() else {
            return Err(Unfit {
                key: "dlq_topic",
                message: "is \"\" (dead-lettering off): there is no dead-letter topic to replay"
                    .to_owned(),
            });
        };
        let group = settings
            .group_id()
            .ok_or(Unfit {
                key: "kafka.group.id",
                message: "a replay needs the group whose dead letters it sends".to_owned(),
            })?
            .to_owned();
        Ok(Target {
            role,
            replay_group: format!("{group}.replay"),
            group,
            dlq_topic,
        })
    }
}

/// What a replay did with the copies it read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Sent through the sink and committed past.
    pub replayed: u64,
    /// Passed over: copies another group made.
    pub other_groups: u64,
    /// Passed over: copies of a kind `--reason` did not ask for.
    pub other_kinds: u64,
    /// Passed over: copies dead-lettered before `--since`.
    pub before_since: u64,
}

/// A dead-letter copy's place, and the record it stands for, as errors name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyAt {
    pub dlq_topic: String,
    pub partition: i32,
    pub offset: i64,
    /// `topic/partition@offset` of the original record, from the copy's headers.
    pub source: String,
}

impl std::fmt::Display for CopyAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}@{} (the record {})",
            self.dlq_topic, self.partition, self.offset, self.source
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("cannot create the replay consumer: {0}")]
    Client(#[source] KafkaError),
    #[error("cannot {what} of the dead-letter topic {topic}: {source}")]
    Read {
        topic: String,
        what: &'static str,
        source: KafkaError,
    },
    #[error("the dead-letter topic {0} does not exist")]
    NoTopic(String),
    #[error("cannot connect to the Kafka brokers, and retrying will not help: {0}")]
    Connection(String),
    #[error("no record of {topic} arrived for {} (stall_timeout) with some still to read; are the brokers reachable?", humantime::format_duration(*waited))]
    Stalled { topic: String, waited: Duration },
    #[error("cannot start the sink: {0}")]
    Sink(#[source] SinkError),
    #[error("the dead-letter copy at {at} still does not decode: {rejection}; the replay stopped before it, uncommitted (replay only what can succeed now, e.g. --reason processing_failed)")]
    Undecodable {
        at: Box<CopyAt>,
        rejection: Rejection,
    },
    #[error("the sink failed on the dead-letter copy at {at} after {attempts} attempt(s): {source}; the replay stopped before it, uncommitted: run it again once the sink works")]
    SinkFailed {
        at: Box<CopyAt>,
        attempts: u32,
        source: SinkError,
    },
    #[error("the dead-letter copy at {at} has no valid {header} header; the replay stopped before it, uncommitted")]
    NotACopy {
        at: Box<CopyAt>,
        header: &'static str,
    },
    #[error("cannot commit the replay's position (group {group}): {source}")]
    Commit { group: String, source: KafkaError },
    #[error("stopped by a signal after replaying {replayed} record(s); the same command resumes where it stopped")]
    Interrupted { replayed: u64 },
}

/// Sends `target`'s dead-lettered records through its sink, from the replay group's position
/// to the end of the dead-letter topic; blocks (run it off the async workers).
pub fn replay(
    settings: &Settings,
    target: &Target,
    options: &ReplayOptions,
    shutdown: &Shutdown,
) -> Result<ReplayReport, ReplayError> {
    let consumer = create_consumer(settings, target)?;
    let mut sink = sink::SinkConfig::new(settings, target.role)
        .open()
        .map_err(ReplayError::Sink)?;
    let mut replay = Replay {
        progress: Progress::default(),
        consumer,
        target,
    };
    replay.start()?;
    let result = replay.run(&mut *sink, settings, options, shutdown);
    // After a copy stopped it (or a signal did), what was read before it is not read again:
    // every partition's position up to the first copy not dealt with. Not when the brokers
    // are unreachable: a commit would only wait for them too.
    let committed = match &result {
        Ok(_)
        | Err(
            ReplayError::Undecodable { .. }
            | ReplayError::SinkFailed { .. }
            | ReplayError::NotACopy { .. }
            | ReplayError::Interrupted { .. },
        ) => replay.commit_all(),
        Err(_) => Ok(()),
    };
    let report = result?;
    committed?;
    Ok(report)
}
