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

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Headers;
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::client::ClientLog;
use crate::config::{RetrySettings, Role, Scope, Settings};
use crate::dlq::{self, header, Rejection};
use crate::payload::Payload;
use crate::shutdown::Shutdown;
use crate::sink::{self, Record, Sink, SinkError};

/// How long one metadata, watermark, committed-offset or timestamp lookup may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One value of the `kafkad.error.kind` header, as `--reason` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorKind(&'static str);

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        self.0
    }
}

impl std::str::FromStr for ErrorKind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        dlq::kinds()
            .iter()
            .copied()
            .find(|kind| *kind == text)
            .map(ErrorKind)
            .ok_or_else(|| {
                format!(
                    "`{text}` is not a dead-letter kind; one of: {}",
                    dlq::kinds().join(", ")
                )
            })
    }
}

/// Which copies to replay, beyond the group's.
#[derive(Debug, Clone, Default)]
pub struct ReplayOptions {
    /// Only copies whose `kafkad.error.kind` is one of these; empty: every kind.
    pub reasons: Vec<ErrorKind>,
    /// Only copies dead-lettered at or after this time (the copy's own timestamp, set when it
    /// was written to the dead-letter topic).
    pub since: Option<DateTime<Utc>>,
}

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
            .resolved_kafka
            .get("group.id")
            .filter(|group| !group.is_empty())
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

/// The replay consumer's context: librdkafka's log lines and errors go where every other
/// client's go.
struct ReplayContext {
    log: ClientLog,
}

crate::delegate_client_context!(ReplayContext, log);

impl ConsumerContext for ReplayContext {}

type ReplayConsumer = BaseConsumer<ReplayContext>;

/// What to do with one copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    OtherGroup,
    OtherKind,
    BeforeSince,
    /// Replay it as the record at this source partition and offset.
    Replay {
        partition: i32,
        offset: i64,
    },
}

/// The last value of header `key`: kafkad's headers follow the record's own, so a record that
/// carried a `kafkad.*` header of its own is not mistaken for kafkad's.
fn last_header<'m, M: Message>(copy: &'m M, key: &str) -> Option<&'m [u8]> {
    let headers = copy.headers()?;
    headers
        .iter()
        .filter(|h| h.key == key)
        .last()
        .and_then(|h| h.value)
}

fn header_number<M: Message, N: std::str::FromStr>(copy: &M, key: &str) -> Option<N> {
    std::str::from_utf8(last_header(copy, key)?)
        .ok()?
        .parse()
        .ok()
}

/// The original record's `topic/partition@offset`, as far as the copy's headers say.
fn source_of<M: Message>(copy: &M) -> String {
    let text = |key| {
        last_header(copy, key).map_or_else(
            || "?".to_owned(),
            |v| String::from_utf8_lossy(v).into_owned(),
        )
    };
    format!(
        "{}/{}@{}",
        text(header::SOURCE_TOPIC),
        text(header::SOURCE_PARTITION),
        text(header::SOURCE_OFFSET)
    )
}

/// Whether `copy` is one of `group`'s to replay under `options`, and as which record; the
/// name of a header that is missing or unreadable on a copy that should be replayed.
fn decide<M: Message>(
    copy: &M,
    group: &str,
    options: &ReplayOptions,
) -> Result<Decision, &'static str> {
    if last_header(copy, header::CONSUMER_GROUP) != Some(group.as_bytes()) {
        return Ok(Decision::OtherGroup);
    }
    let kind = last_header(copy, header::ERROR_KIND);
    if !options.reasons.is_empty()
        && !options
            .reasons
            .iter()
            .any(|reason| kind == Some(reason.as_str().as_bytes()))
    {
        return Ok(Decision::OtherKind);
    }
    // A copy without a timestamp cannot be dated: it is replayed rather than passed over.
    let dead_lettered = copy.timestamp().to_millis();
    if let (Some(since), Some(at)) = (options.since, dead_lettered) {
        if at < since.timestamp_millis() {
            return Ok(Decision::BeforeSince);
        }
    }
    let partition =
        header_number(copy, header::SOURCE_PARTITION).ok_or(header::SOURCE_PARTITION)?;
    let offset = header_number(copy, header::SOURCE_OFFSET).ok_or(header::SOURCE_OFFSET)?;
    Ok(Decision::Replay { partition, offset })
}

/// A partition of the dead-letter topic: the next offset to read, and where this run stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    next: i64,
    end: i64,
}

/// One replay run.
struct Replay<'a> {
    consumer: ReplayConsumer,
    target: &'a Target,
    progress: Progress,
}

/// How far a run got: per partition, and in counts.
#[derive(Debug, Default)]
struct Progress {
    spans: BTreeMap<i32, Span>,
    report: ReplayReport,
}

impl Progress {
    fn open_partitions(&self) -> usize {
        self.spans.values().filter(|s| s.next < s.end).count()
    }

    /// The copy at `offset` was dealt with: the partition goes on after it.
    fn advance(&mut self, partition: i32, offset: i64) {
        if let Some(span) = self.spans.get_mut(&partition) {
            span.next = offset + 1;
        }
    }

    /// A copy this replay leaves alone: counted, and behind the position from now on.
    fn pass_over(&mut self, partition: i32, offset: i64, count: fn(&mut ReplayReport) -> &mut u64) {
        *count(&mut self.report) += 1;
        self.advance(partition, offset);
    }
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
    let mut sink = sink::from_settings(settings, target.role).map_err(ReplayError::Sink)?;
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

fn create_consumer(settings: &Settings, target: &Target) -> Result<ReplayConsumer, ReplayError> {
    let kafka = &settings.resolved_kafka;
    let mut config = kafka.client_config(Scope::Consumer);
    let client_id = kafka.get("client.id").unwrap_or("kafkad");
    config
        .set("group.id", &target.replay_group)
        .set("client.id", format!("{client_id}-replay"))
        // The replay assigns its partitions and commits its position itself, after the sink.
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        // Group membership settings of the role's consumer do not apply to a consumer that
        // never joins its group.
        .set("group.protocol", "classic")
        .remove("group.instance.id")
        .remove("group.remote.assignor");
    config
        .create_with_context(ReplayContext {
            log: ClientLog::new("replay consumer", kafka.redactor()),
        })
        .map_err(ReplayError::Client)
}

impl Replay<'_> {
    fn topic(&self) -> &str {
        &self.target.dlq_topic
    }

    /// A failed request as an error: the client's own unrecoverable failure (an untrusted
    /// certificate, a refused login) where there was one, since the request itself then only
    /// says that it timed out.
    fn read_error(&self, what: &'static str) -> impl FnOnce(KafkaError) -> ReplayError + '_ {
        move |source| match self.consumer.context().log.failure() {
            Some(reason) => ReplayError::Connection(reason),
            None => ReplayError::Read {
                topic: self.topic().to_owned(),
                what,
                source,
            },
        }
    }

    /// Each partition's span, from the replay group's committed position (the partition's
    /// first offset where none is committed, or retention removed it) to the partition's end
    /// now; then assigns them.
    fn start(&mut self) -> Result<(), ReplayError> {
        let topic = self.topic().to_owned();
        let metadata = self
            .consumer
            .fetch_metadata(Some(&topic), REQUEST_TIMEOUT)
            .map_err(self.read_error("read the metadata"))?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if partitions.is_empty() {
            return Err(ReplayError::NoTopic(topic));
        }
        let mut list = TopicPartitionList::new();
        for partition in &partitions {
            list.add_partition(&topic, *partition);
        }
        let committed = self
            .consumer
            .committed_offsets(list, REQUEST_TIMEOUT)
            .map_err(self.read_error("read the replay's committed position"))?;
        let mut assignment = TopicPartitionList::new();
        for partition in partitions {
            let (low, high) = self
                .consumer
                .fetch_watermarks(&topic, partition, REQUEST_TIMEOUT)
                .map_err(self.read_error("read the offsets"))?;
            let next = match committed
                .find_partition(&topic, partition)
                .map(|element| element.offset())
            {
                Some(Offset::Offset(n)) => n.max(low),
                _ => low,
            };
            self.progress
                .spans
                .insert(partition, Span { next, end: high });
            if next < high {
                assignment
                    .add_partition_offset(&topic, partition, Offset::Offset(next))
                    .map_err(self.read_error("assign the partitions"))?;
            }
        }
        tracing::info!(
            dlq_topic = %topic, group = %self.target.group, replay_group = %self.target.replay_group,
            spans = ?self.progress.spans, "replaying"
        );
        self.consumer
            .assign(&assignment)
            .map_err(self.read_error("assign the partitions"))
    }

    fn run(
        &mut self,
        sink: &mut dyn Sink,
        settings: &Settings,
        options: &ReplayOptions,
        shutdown: &Shutdown,
    ) -> Result<ReplayReport, ReplayError> {
        let dlq_topic = self.target.dlq_topic.clone();
        let mut last_progress = Instant::now();
        while self.progress.open_partitions() > 0 {
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
                    topic: dlq_topic,
                    waited: last_progress.elapsed(),
                });
            }
            let copy = match self.consumer.poll(Duration::from_millis(200)) {
                None => continue,
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    // Nothing more now: copies counted into the end a moment ago were
                    // removed (retention) or never became readable.
                    if let Some(span) = self.progress.spans.get_mut(&partition) {
                        span.end = span.end.min(span.next);
                    }
                    last_progress = Instant::now();
                    continue;
                }
                Some(Err(error)) => {
                    tracing::warn!(%dlq_topic, %error, "reading the dead-letter topic");
                    continue;
                }
                Some(Ok(copy)) => copy,
            };
            last_progress = Instant::now();
            let (partition, offset) = (copy.partition(), copy.offset());
            let Some(span) = self.progress.spans.get(&partition).copied() else {
                continue;
            };
            if offset < span.next || offset >= span.end {
                continue;
            }
            let at = || {
                Box::new(CopyAt {
                    dlq_topic: dlq_topic.clone(),
                    partition,
                    offset,
                    source: source_of(&copy),
                })
            };
            let decision = decide(&copy, &self.target.group, options)
                .map_err(|header| ReplayError::NotACopy { at: at(), header })?;
            let progress = &mut self.progress;
            let (source_partition, source_offset) = match decision {
                Decision::OtherGroup => {
                    progress.pass_over(partition, offset, |r| &mut r.other_groups);
                    continue;
                }
                Decision::OtherKind => {
                    progress.pass_over(partition, offset, |r| &mut r.other_kinds);
                    continue;
                }
                Decision::BeforeSince => {
                    progress.pass_over(partition, offset, |r| &mut r.before_since);
                    continue;
                }
                Decision::Replay { partition, offset } => (partition, offset),
            };
            let message = dlq::inspect(copy.payload(), settings.max_record_bytes.get()).map_err(
                |rejection| ReplayError::Undecodable {
                    at: at(),
                    rejection,
                },
            )?;
            let record = Record {
                topic: &settings.topic.name,
                partition: source_partition,
                offset: source_offset,
                payload: Payload::Message(message),
                key: copy.key(),
                headers: None,
            };
            deliver(sink, self.target.role, &record, &settings.retry, shutdown).map_err(
                |failure| match failure {
                    Undelivered::Failed { attempts, error } => ReplayError::SinkFailed {
                        at: at(),
                        attempts,
                        source: error,
                    },
                    Undelivered::Interrupted => ReplayError::Interrupted {
                        replayed: progress.report.replayed,
                    },
                },
            )?;
            tracing::debug!(copy = %at(), "replayed");
            progress.advance(partition, offset);
            progress.report.replayed += 1;
            self.commit(partition)?;
            // A slow sink (its timeout, retries) is not a stalled read.
            last_progress = Instant::now();
        }
        Ok(self.progress.report.clone())
    }

    /// Commits `partition`'s next offset: everything before it was replayed or passed over.
    fn commit(&self, partition: i32) -> Result<(), ReplayError> {
        self.commit_spans(self.progress.spans.range(partition..=partition))
    }

    fn commit_all(&self) -> Result<(), ReplayError> {
        self.commit_spans(self.progress.spans.iter())
    }

    fn commit_spans<'s>(
        &self,
        spans: impl Iterator<Item = (&'s i32, &'s Span)>,
    ) -> Result<(), ReplayError> {
        let commit_error = |source| ReplayError::Commit {
            group: self.target.replay_group.clone(),
            source,
        };
        let mut list = TopicPartitionList::new();
        for (partition, span) in spans {
            // Offsets in a commit are the next to read, as given.
            list.add_partition_offset(self.topic(), *partition, Offset::Offset(span.next))
                .map_err(commit_error)?;
        }
        if list.count() == 0 {
            return Ok(());
        }
        self.consumer
            .commit(&list, CommitMode::Sync)
            .map_err(commit_error)
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::{Header, OwnedHeaders, OwnedMessage, Timestamp};

    fn copy(headers: &[(&str, &str)], dead_lettered_ms: i64) -> OwnedMessage {
        let mut owned = OwnedHeaders::new();
        for (key, value) in headers {
            owned = owned.insert(Header {
                key,
                value: Some(*value),
            });
        }
        OwnedMessage::new(
            Some(b"{}".to_vec()),
            None,
            "t.dlq".to_owned(),
            Timestamp::CreateTime(dead_lettered_ms),
            0,
            7,
            Some(owned),
        )
    }

    fn kafkad_copy(group: &str, kind: &str, dead_lettered_ms: i64) -> OwnedMessage {
        copy(
            &[
                ("trace", "abc"),
                (header::ERROR_KIND, kind),
                (header::SOURCE_TOPIC, "t"),
                (header::SOURCE_PARTITION, "2"),
                (header::SOURCE_OFFSET, "41"),
                (header::CONSUMER_GROUP, group),
            ],
            dead_lettered_ms,
        )
    }

    fn options(reasons: &[&str], since_ms: Option<i64>) -> ReplayOptions {
        ReplayOptions {
            reasons: reasons.iter().map(|r| r.parse().expect("a kind")).collect(),
            since: since_ms.and_then(DateTime::from_timestamp_millis),
        }
    }

    #[test]
    fn only_the_groups_own_copies_are_replayed_as_their_source_record() {
        let replay = Decision::Replay {
            partition: 2,
            offset: 41,
        };
        let mine = kafkad_copy("g", "processing_failed", 1000);
        assert_eq!(decide(&mine, "g", &options(&[], None)), Ok(replay));
        assert_eq!(
            decide(&mine, "other", &options(&[], None)),
            Ok(Decision::OtherGroup)
        );
        let unmarked = copy(&[("trace", "abc")], 1000);
        assert_eq!(
            decide(&unmarked, "g", &options(&[], None)),
            Ok(Decision::OtherGroup)
        );
    }

    #[test]
    fn kafkads_own_headers_are_the_last_ones() {
        // The original record carried a group header of its own; kafkad's comes after it.
        let copy = copy(
            &[
                (header::CONSUMER_GROUP, "someone-else"),
                (header::SOURCE_PARTITION, "0"),
                (header::SOURCE_OFFSET, "3"),
                (header::CONSUMER_GROUP, "g"),
            ],
            1000,
        );
        assert_eq!(
            decide(&copy, "g", &options(&[], None)),
            Ok(Decision::Replay {
                partition: 0,
                offset: 3
            })
        );
    }

    #[test]
    fn reason_and_since_pass_copies_over() {
        let copy = kafkad_copy("g", "not_json", 5_000);
        assert_eq!(
            decide(&copy, "g", &options(&["processing_failed"], None)),
            Ok(Decision::OtherKind)
        );
        assert!(matches!(
            decide(
                &copy,
                "g",
                &options(&["processing_failed", "not_json"], None)
            ),
            Ok(Decision::Replay { .. })
        ));
        assert_eq!(
            decide(&copy, "g", &options(&[], Some(5_001))),
            Ok(Decision::BeforeSince)
        );
        assert!(matches!(
            decide(&copy, "g", &options(&[], Some(5_000))),
            Ok(Decision::Replay { .. })
        ));
    }

    #[test]
    fn a_copy_of_the_group_without_its_source_position_is_named() {
        let copy = copy(&[(header::CONSUMER_GROUP, "g")], 1000);
        assert_eq!(
            decide(&copy, "g", &options(&[], None)),
            Err(header::SOURCE_PARTITION)
        );
    }

    #[test]
    fn reasons_are_the_dead_letter_kinds() {
        assert_eq!(
            "too_large".parse::<ErrorKind>().map(ErrorKind::as_str),
            Ok("too_large")
        );
        let error = "nonsense".parse::<ErrorKind>().expect_err("unknown");
        assert!(error.contains("processing_failed"), "{error}");
    }
}
