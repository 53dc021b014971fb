//! What the single and batch consumers share: creating the consumer, the rebalance hooks,
//! decoding-or-dead-lettering a record, and a bounded close.
//!
//! # Why a dedicated thread
//!
//! librdkafka runs rebalance, commit and log callbacks on the thread that polls, inside
//! `poll()`. The batch consumer must commit synchronously inside the revoke callback (after
//! `pre_rebalance` returns, the partitions are gone and a later commit fails). A synchronous
//! commit is a blocking network round trip, and so is the final close. On an async worker
//! those would stall every other task on that worker. So each consumer owns one blocking
//! thread (`spawn_blocking`) for its whole life: poll, decode, process, store or commit,
//! close; the async side only waits for it to finish. Polling with a short timeout lets the
//! loop look at the shutdown signal between messages.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaResult;
use rdkafka::message::BorrowedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};

use super::{ConsumerReport, RoleError};
use crate::client::ClientLog;
use crate::config::{Role, Scope, Settings};
use crate::dlq::{self, DeadLetters, Interrupted};
use crate::message::KafkaMessage;
use crate::shutdown::Shutdown;
use crate::sink::Sink;
use crate::telemetry::metrics::ConsumerMetrics;
use crate::telemetry::summary;
use tracing::Instrument;

/// Processed-but-uncommitted positions, and revocations the loop has not seen yet. Shared
/// between the loop and the rebalance callback, which run on the same thread, one after the
/// other (the callback runs inside `poll`): the mutex is never contended, it only satisfies
/// the `Sync` bound on contexts.
#[derive(Debug, Default)]
struct PartitionState {
    /// Next offset to commit per partition, for records processed but not yet committed
    /// (a commit failed, or the batch role has not committed yet).
    uncommitted: HashMap<i32, i64>,
    /// Partitions revoked since the loop last called [`ConsumerHooks::take_revoked`].
    revoked: Vec<i32>,
    /// Partitions currently assigned: the consumer is ready while it holds any.
    assigned: usize,
}

/// The consumer context: librdkafka logs into tracing, rebalances committed safely, commit
/// results counted.
pub(crate) struct ConsumerHooks {
    log: ClientLog,
    topic: String,
    group: String,
    metrics: ConsumerMetrics,
    state: Mutex<PartitionState>,
}

impl ConsumerHooks {
    pub fn new(log: ClientLog, topic: &str, group: &str, metrics: ConsumerMetrics) -> Self {
        ConsumerHooks {
            log,
            topic: topic.to_owned(),
            group: group.to_owned(),
            metrics,
            state: Mutex::default(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, PartitionState> {
        // A poisoned lock means a panic mid-update on this very thread; the data is plain
        // offsets, still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The first TLS or authentication failure of this consumer, if any.
    pub fn failure(&self) -> Option<String> {
        self.log.failure()
    }

    /// Partitions revoked since the last call. The batch loop drops their buffered records.
    pub fn take_revoked(&self) -> Vec<i32> {
        std::mem::take(&mut self.state().revoked)
    }

    /// Commits `positions` (next offset per partition, i.e. last processed + 1) together with
    /// any earlier positions whose commit failed, synchronously. On failure they are kept and
    /// retried with the next commit, or in the revoke callback.
    pub fn commit(&self, consumer: &BaseConsumer<ConsumerHooks>, positions: &HashMap<i32, i64>) {
        let all = {
            let mut state = self.state();
            for (&partition, &next) in positions {
                let entry = state.uncommitted.entry(partition).or_insert(next);
                *entry = (*entry).max(next);
            }
            state.uncommitted.clone()
        };
        if all.is_empty() {
            return;
        }
        if self.commit_now(consumer, &all, "batch") {
            let mut state = self.state();
            for (partition, next) in all {
                if state.uncommitted.get(&partition) == Some(&next) {
                    state.uncommitted.remove(&partition);
                }
            }
        }
    }

    fn commit_now(
        &self,
        consumer: &BaseConsumer<ConsumerHooks>,
        positions: &HashMap<i32, i64>,
        when: &str,
    ) -> bool {
        let mut list = TopicPartitionList::with_capacity(positions.len());
        for (&partition, &next) in positions {
            if let Err(error) =
                list.add_partition_offset(&self.topic, partition, Offset::Offset(next))
            {
                tracing::error!(partition, next, %error, "cannot build the commit list");
                return false;
            }
        }
        match consumer.commit(&list, CommitMode::Sync) {
            Ok(()) => {
                self.metrics.commits.inc();
                tracing::debug!(when, ?positions, "committed");
                true
            }
            Err(error) => {
                self.metrics.commit_failures.inc();
                tracing::warn!(when, ?positions, %error, "commit failed; the records will be redelivered unless a later commit succeeds");
                false
            }
        }
    }
}

crate::delegate_client_context!(ConsumerHooks, log);

impl ConsumerContext for ConsumerHooks {
    /// Before partitions go: commit what was processed on them (only processed positions are
    /// ever in `uncommitted`), and tell the loop to drop their unprocessed buffered records,
    /// which the next owner will receive from the committed offset.
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(list) => {
                self.metrics.rebalances.inc();
                let partitions: Vec<i32> = list
                    .elements_for_topic(&self.topic)
                    .iter()
                    .map(|element| element.partition())
                    .collect();
                let to_commit: HashMap<i32, i64> = {
                    let mut state = self.state();
                    state.assigned = state.assigned.saturating_sub(list.count());
                    self.metrics.health.set_ready(state.assigned > 0);
                    state.revoked.extend(&partitions);
                    partitions
                        .iter()
                        .filter_map(|p| state.uncommitted.remove(p).map(|next| (*p, next)))
                        .collect()
                };
                tracing::info!(?partitions, "partitions revoked");
                if !to_commit.is_empty() {
                    self.commit_now(consumer, &to_commit, "revoke");
                }
            }
            Rebalance::Assign(_) => {}
            Rebalance::Error(error) => tracing::error!(%error, "rebalance error"),
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(list) = rebalance {
            self.metrics.rebalances.inc();
            {
                let mut state = self.state();
                state.assigned += list.count();
                self.metrics.health.set_ready(state.assigned > 0);
            }
            let partitions: Vec<i32> = list.elements().iter().map(|e| e.partition()).collect();
            tracing::info!(?partitions, "partitions assigned");
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        // Only auto commits (single role) are reported here without being counted elsewhere;
        // "no offset to commit" is librdkafka telling us nothing new was stored.
        // (Synchronous commits are answered on their own queue and counted in `commit_now`.)
        match result {
            Err(rdkafka::error::KafkaError::ConsumerCommit(
                rdkafka::types::RDKafkaErrorCode::NoOffset,
            )) => {}
            Err(error) => {
                self.metrics.commit_failures.inc();
                tracing::warn!(%error, count = offsets.count(), "offset commit failed");
            }
            Ok(()) => {
                self.metrics.commits.inc();
                tracing::trace!(count = offsets.count(), "offsets committed");
            }
        }
    }
}

/// The consumer of one role, subscribed to the topic.
pub(crate) type KafkadConsumer = BaseConsumer<ConsumerHooks>;

/// A consumer ready to poll, and what routes its bad records.
pub(crate) struct ConsumerParts {
    pub consumer: KafkadConsumer,
    pub dead_letters: DeadLetters,
    pub group: String,
}

/// Creates the consumer, subscribes it, and creates the dead-letter router.
pub(crate) fn create(
    settings: &Settings,
    metrics: &ConsumerMetrics,
) -> Result<ConsumerParts, RoleError> {
    let kafka = &settings.resolved_kafka;
    let group = kafka.get("group.id").unwrap_or_default().to_owned();
    let hooks = ConsumerHooks::new(
        ClientLog::new(format!("consumer {group}"), kafka.redactor())
            .with_stats(metrics.client.clone()),
        &settings.topic.name,
        &group,
        metrics.clone(),
    );
    let consumer: KafkadConsumer = kafka
        .client_config(Scope::Consumer)
        .create_with_context(hooks)
        .map_err(|source| RoleError::Client {
            client: "consumer",
            source,
        })?;
    consumer
        .subscribe(&[&settings.topic.name])
        .map_err(|source| RoleError::Subscribe {
            topic: settings.topic.name.clone(),
            source,
        })?;
    let dead_letters = DeadLetters::new(settings, &group, metrics.clone()).map_err(|source| {
        RoleError::Client {
            client: "dead-letter producer",
            source,
        }
    })?;
    Ok(ConsumerParts {
        consumer,
        dead_letters,
        group,
    })
}

/// The outcome of one record.
pub(crate) enum Inspected<'m> {
    /// A valid message, ready for the sink.
    Message(KafkaMessage<'m>),
    /// Not a valid message; its dead-letter copy is acknowledged. Commit past it.
    DeadLettered,
}

/// Decodes `record`, or dead-letters it (blocking until the copy is acknowledged).
pub(crate) fn inspect<'m>(
    record: &'m BorrowedMessage<'_>,
    settings: &Settings,
    dead_letters: &DeadLetters,
    shutdown: &Shutdown,
) -> Result<Inspected<'m>, Interrupted> {
    match dlq::inspect(record.payload(), settings.max_record_bytes) {
        Ok(message) => Ok(Inspected::Message(message)),
        Err(rejection) => dead_letters
            .send(record, &rejection, shutdown)
            .map(|()| Inspected::DeadLettered),
    }
}

/// Records the end-to-end latency of a message being processed now.
pub(crate) fn observe_latency(metrics: &ConsumerMetrics, message: &KafkaMessage<'_>) {
    let age = chrono::Utc::now().signed_duration_since(message.timestamp.to_utc());
    if let Ok(age) = age.to_std() {
        metrics.end_to_end_latency.observe(age.as_secs_f64());
    }
}

/// A poll error: transient ones (a broker went away) are logged and polling continues, as
/// librdkafka recovers by itself; fatal ones stop the role.
///
/// A refused authorization of the group or the topic stops it too. librdkafka hands it to the
/// application once and then keeps asking the broker quietly, so a consumer that carried on
/// would sit idle behind green health checks until someone changed the ACLs; stopping makes
/// the missing permission visible where the process is supervised.
pub(crate) fn poll_error(
    consumer: &KafkadConsumer,
    error: rdkafka::error::KafkaError,
) -> Result<(), RoleError> {
    use rdkafka::types::RDKafkaErrorCode;
    let hooks = consumer.context();
    match error.rdkafka_error_code() {
        Some(RDKafkaErrorCode::Fatal) => Err(RoleError::FatalConsumer(error.to_string())),
        Some(RDKafkaErrorCode::GroupAuthorizationFailed) => Err(RoleError::NotAuthorized {
            resource: format!("consumer group {}", hooks.group),
            reason: error.to_string(),
        }),
        Some(RDKafkaErrorCode::TopicAuthorizationFailed) => Err(RoleError::NotAuthorized {
            resource: format!("topic {}", hooks.topic),
            reason: error.to_string(),
        }),
        // `poll` hands back a bare code ("SSL error"); the client's error description or
        // librdkafka's last error line names the broker and the cause.
        code if crate::client::is_unrecoverable(code) => Err(RoleError::Connection(
            hooks
                .log
                .failure_description()
                .unwrap_or_else(|| error.to_string()),
        )),
        Some(RDKafkaErrorCode::PartitionEOF) => Ok(()),
        _ => {
            tracing::warn!(%error, "consumer error; continuing");
            Ok(())
        }
    }
}

/// Leaves the group and closes, waiting at most `timeout`: librdkafka's close (what dropping
/// the consumer does) has no bound and can hang while brokers are unreachable. Revocation
/// callbacks run during the close, so the batch role's last processed offsets are committed on
/// the way out. If the close does not finish in time, it is left running on its own thread;
/// the process is exiting anyway.
pub(crate) fn close(consumer: KafkadConsumer, timeout: Duration) {
    let (closed, wait) = std::sync::mpsc::channel();
    let closer = std::thread::Builder::new()
        .name("kafkad-close".to_owned())
        .spawn(move || {
            drop(consumer);
            let _ = closed.send(());
        });
    if let Err(error) = closer {
        tracing::warn!(%error, "cannot start a thread to close the consumer");
        return;
    }
    match wait.recv_timeout(timeout) {
        Ok(()) => tracing::info!("consumer closed, group left"),
        Err(_) => tracing::warn!(
            ?timeout,
            "consumer did not close in time; exiting without waiting for it"
        ),
    }
}

/// A consumer role's loop, run on its own blocking thread.
pub(crate) type ConsumeLoop =
    fn(&Settings, Box<dyn Sink>, &ConsumerMetrics, &Shutdown) -> Result<ConsumerReport, RoleError>;

/// Runs a consumer role: `consume` on a dedicated blocking thread inside the role's span,
/// with its periodic summary alongside and its health kept up to date.
pub(crate) async fn run_role(
    role: Role,
    consume: ConsumeLoop,
    settings: Arc<Settings>,
    sink: Box<dyn Sink>,
    metrics: ConsumerMetrics,
    shutdown: Shutdown,
) -> Result<ConsumerReport, RoleError> {
    let span = tracing::info_span!(
        "role",
        role = role.as_str(),
        topic = %settings.topic.name,
        group = settings.resolved_kafka.get("group.id").unwrap_or_default(),
    );
    let summary = tokio::spawn(
        summary::consumer(settings.summary_interval, metrics.clone()).instrument(span.clone()),
    );
    let health = Arc::clone(&metrics.health);
    health.set_running(true);
    let outcome = tokio::task::spawn_blocking(move || {
        span.in_scope(|| consume(&settings, sink, &metrics, &shutdown))
    })
    .await
    .map_err(|e| RoleError::Thread(e.to_string()));
    health.set_running(false);
    summary.abort();
    outcome?
}

/// Whether the loop should stop; the first time it sees shutdown, health turns to 503 while
/// the consumer finishes, commits and closes.
pub(crate) fn stopping(shutdown: &Shutdown, metrics: &ConsumerMetrics) -> bool {
    let stop = shutdown.is_triggered();
    if stop {
        metrics.health.begin_shutdown();
    }
    stop
}

/// A TLS or authentication failure reported by the consumer's client: the role must stop.
pub(crate) fn connection_failure(consumer: &KafkadConsumer) -> Option<RoleError> {
    consumer.context().failure().map(RoleError::Connection)
}
