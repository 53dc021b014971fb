//! The replay's consumer and the position it keeps: each partition of the dead-letter topic
//! read from the replay group's committed offset to the end it had when the run started, how
//! far the run got, and the commits that make that the next run's start. The consumer reads
//! its partitions itself, without joining the group.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

use super::{ReplayError, ReplayReport, Target};
use crate::client::ClientLog;
use crate::config::{Scope, Settings};

/// How long one metadata, watermark, committed-offset or timestamp lookup may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The replay consumer's context: librdkafka's log lines and errors go where every other
/// client's go.
pub(super) struct ReplayContext {
    pub(super) log: ClientLog,
}

crate::delegate_client_context!(ReplayContext, log);

impl ConsumerContext for ReplayContext {}

pub(super) type ReplayConsumer = BaseConsumer<ReplayContext>;

/// A partition of the dead-letter topic: the next offset to read, and where this run stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Span {
    pub(super) next: i64,
    pub(super) end: i64,
}

/// One replay run.
pub(super) struct Replay<'a> {
    pub(super) consumer: ReplayConsumer,
    pub(super) target: &'a Target,
    pub(super) progress: Progress,
}

/// How far a run got: per partition, and in counts.
#[derive(Debug, Default)]
pub(super) struct Progress {
    pub(super) spans: BTreeMap<i32, Span>,
    pub(super) report: ReplayReport,
}

impl Progress {
    pub(super) fn open_partitions(&self) -> usize {
        self.spans.values().filter(|s| s.next < s.end).count()
    }

    /// The partition has nothing more to read now: it ends where the run got to.
    pub(super) fn end_where_read(&mut self, partition: i32) {
        if let Some(span) = self.spans.get_mut(&partition) {
            span.end = span.end.min(span.next);
        }
    }

    /// The copy at `offset` was dealt with: the partition goes on after it.
    pub(super) fn advance(&mut self, partition: i32, offset: i64) {
        if let Some(span) = self.spans.get_mut(&partition) {
            span.next = offset + 1;
        }
    }

    /// A copy this replay leaves alone: counted, and behind the position from now on.
    pub(super) fn pass_over(
        &mut self,
        partition: i32,
        offset: i64,
        count: fn(&mut ReplayReport) -> &mut u64,
    ) {
        *count(&mut self.report) += 1;
        self.advance(partition, offset);
    }
}

pub(super) fn create_consumer(
    settings: &Settings,
    target: &Target,
) -> Result<ReplayConsumer, ReplayError> {
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
    pub(super) fn topic(&self) -> &str {
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
    pub(super) fn start(&mut self) -> Result<(), ReplayError> {
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
    /// Commits `partition`'s next offset: everything before it was replayed or passed over.
    pub(super) fn commit(&self, partition: i32) -> Result<(), ReplayError> {
        self.commit_spans(self.progress.spans.range(partition..=partition))
    }

    pub(super) fn commit_all(&self) -> Result<(), ReplayError> {
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
