//! The consumer's librdkafka client: creating it, its rebalance and commit callbacks, storing
//! and committing offsets, pausing, and a bounded close.
//!
//! # Why the engine lives in the client's context
//!
//! librdkafka runs rebalance callbacks on the thread that polls, inside `poll()`, and the
//! commit for revoked partitions must happen inside the revoke callback: once it returns the
//! partitions are gone and a commit for them fails. The callback therefore needs the engine's
//! partition state. The engine sits in the context behind a mutex that only the polling
//! thread ever takes (the loop between polls, the callback during one), so it is never
//! contended; the loop never holds it across a poll. Workers never touch it: they talk to the
//! engine through channels.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rdkafka::bindings::rd_kafka_resp_err_t as RDKafkaRespErr;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, RebalanceProtocol,
};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use super::commits::CommitRequests;
use super::engine::Engine;
use super::partitions::Partitions;
use super::tp::Tp;
use crate::client::ClientLog;
use crate::roles::RoleError;
use crate::telemetry::clock::Tick;
use crate::telemetry::metrics::ConsumerMetrics;

/// The consumer of one role.
pub(crate) type KafkadConsumer = BaseConsumer<ConsumerHooks>;

/// The consumer context: librdkafka logs into tracing, the engine, rebalances settled in it,
/// commit results counted.
pub(crate) struct ConsumerHooks {
    log: ClientLog,
    /// The topics read, as configured (one name, a list, or a pattern), for messages.
    pub topic: String,
    pub group: String,
    metrics: ConsumerMetrics,
    /// Batch role: every store is followed by a commit (auto commit is off), sent by the
    /// commit thread (see `commits`).
    commit_every_store: bool,
    /// The commit thread's requests.
    pub commits: Arc<CommitRequests>,
    engine: Mutex<Engine>,
}

impl ConsumerHooks {
    pub fn new(
        log: ClientLog,
        topic: &str,
        group: &str,
        metrics: ConsumerMetrics,
        commit_every_store: bool,
        engine: Engine,
    ) -> Self {
        ConsumerHooks {
            log,
            topic: topic.to_owned(),
            group: group.to_owned(),
            metrics,
            commit_every_store,
            commits: Arc::default(),
            engine: Mutex::new(engine),
        }
    }

    /// The engine. Only the polling thread calls this, never while it polls.
    pub fn engine(&self) -> MutexGuard<'_, Engine> {
        // A poisoned lock means a panic on this very thread mid-update; the role is failing
        // anyway, and what the engine holds is still the best account of what was finished.
        self.engine.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The first TLS or authentication failure of this consumer, if any.
    pub fn failure(&self) -> Option<String> {
        self.log.failure()
    }

    /// Stores the commit points that moved, then commits them: the batch role asks the
    /// commit thread for a commit and goes on (see `commits`); `always` (revocation,
    /// shutdown) commits synchronously here, once the commit thread's commit in flight
    /// returned. A failed commit's offsets stay stored, and the next commit carries them.
    pub fn store_and_commit(
        &self,
        consumer: &KafkadConsumer,
        engine: &mut Engine,
        only: Option<&[Tp]>,
        always: Option<&str>,
    ) {
        let moved = engine.partitions.take_unstored(only);
        if !moved.is_empty() {
            self.store(consumer, &engine.partitions, &moved);
        }
        match always {
            Some(when) => {
                self.commits.quiesce();
                self.commit_stored(consumer, when);
            }
            None if self.commit_every_store && !moved.is_empty() => self.commits.request(),
            None => {}
        }
    }

    /// Stores `points` (next offset per partition) for the next commit to send.
    fn store(&self, consumer: &KafkadConsumer, partitions: &Partitions, points: &[(Tp, i64)]) {
        let mut list = TopicPartitionList::with_capacity(points.len());
        for &(tp, next) in points {
            let topic = partitions.topic_name(tp);
            if let Err(error) = list.add_partition_offset(topic, tp.partition, Offset::Offset(next))
            {
                tracing::error!(%topic, partition = tp.partition, next, %error, "cannot build the offset list");
                return;
            }
        }
        // librdkafka answers per partition, and fails the call only when none was stored.
        let _ = consumer.store_offsets(&list);
        for element in list.elements() {
            if let Err(error) = element.error() {
                // A partition revoked meanwhile ("Erroneous state"): its new owner
                // redelivers from the last commit. Expected during rebalances.
                tracing::debug!(topic = element.topic(), partition = element.partition(), offset = ?element.offset(), %error, "offset not stored");
            }
        }
    }

    /// Commits the stored offsets, synchronously. Whether a commit was made (not when nothing
    /// new was stored, nor when it failed: the offsets then stay stored for the next one).
    pub fn commit_stored(&self, consumer: &KafkadConsumer, when: &str) -> bool {
        self.metrics.health.commit_out(Some(Tick::now()));
        let committed = consumer.commit_consumer_state(CommitMode::Sync);
        self.metrics.health.commit_out(None);
        match committed {
            Ok(()) => {
                self.metrics.commits.inc();
                tracing::debug!(when, "committed the stored offsets");
                true
            }
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => false,
            Err(error) => {
                self.metrics.commit_failures.inc();
                tracing::warn!(when, %error, "commit failed; the offsets stay stored for the next commit, and the records are redelivered if none succeeds");
                false
            }
        }
    }

    /// Pauses and resumes what the engine's partition state asks for.
    pub fn apply_pauses(&self, consumer: &KafkadConsumer, engine: &mut Engine, now: Tick) {
        let (pause, resume) = engine.partitions.pauses_due(now);
        if !pause.is_empty() {
            let list = list(&engine.partitions, &pause);
            if let Err(error) = consumer.pause(&list) {
                tracing::warn!(partitions = %describe(&list), %error, "cannot pause partitions");
            }
            engine.partitions.paused(&pause, true, now);
        }
        if !resume.is_empty() {
            let list = list(&engine.partitions, &resume);
            if let Err(error) = consumer.resume(&list) {
                tracing::warn!(partitions = %describe(&list), %error, "cannot resume partitions");
            }
            engine.partitions.paused(&resume, false, now);
        }
    }
}

/// `partitions` as librdkafka names them.
fn list(names: &Partitions, partitions: &[Tp]) -> TopicPartitionList {
    let mut list = TopicPartitionList::with_capacity(partitions.len());
    for &tp in partitions {
        list.add_partition(names.topic_name(tp), tp.partition);
    }
    list
}

/// The partitions of `list`, of whatever topic, numbering topics not met before.
fn partitions_of(names: &mut Partitions, list: &TopicPartitionList) -> Vec<Tp> {
    list.elements()
        .iter()
        .map(|element| names.tp(element.topic(), element.partition()))
        .collect()
}

/// The partition numbers of `list`, of whatever topic, for log lines.
fn numbers(list: &TopicPartitionList) -> Vec<i32> {
    list.elements().iter().map(|e| e.partition()).collect()
}

/// `topic/partition` of each element, for log lines.
pub(crate) fn describe(list: &TopicPartitionList) -> String {
    let parts: Vec<String> = list
        .elements()
        .iter()
        .map(|e| format!("{}/{}", e.topic(), e.partition()))
        .collect();
    parts.join(" ")
}

crate::delegate_client_context!(ConsumerHooks, log);

impl ConsumerContext for ConsumerHooks {
    /// rdkafka's own rebalance (pre-rebalance, assign or unassign by the group's protocol,
    /// post-rebalance), with one addition: partitions a sink keeping positions knows start
    /// at its offsets, given to librdkafka with the assignment itself, so fetching never
    /// starts anywhere else first.
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        list: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let starts = {
                    let mut engine = self.engine();
                    let assigned = partitions_of(&mut engine.partitions, list);
                    let starts = engine.assign(&assigned);
                    starts
                        .into_iter()
                        .map(|(tp, next)| {
                            (engine.partitions.topic_name(tp).clone(), tp.partition, next)
                        })
                        .collect::<Vec<_>>()
                };
                for (topic, partition, next) in starts {
                    if let Err(error) =
                        list.set_partition_offset(&topic, partition, Offset::Offset(next))
                    {
                        tracing::error!(%topic, partition, next, %error, "cannot start the partition where the sink says");
                        self.engine().fail(RoleError::Thread(format!(
                            "cannot start partition {topic}/{partition} at offset {next}: {error}"
                        )));
                    }
                }
                let assigned = match cooperative {
                    true => consumer.incremental_assign(list),
                    false => consumer.assign(list),
                };
                if let Err(error) = assigned {
                    tracing::error!(%error, "cannot take the assigned partitions");
                }
                self.post_rebalance(consumer, &Rebalance::Assign(list));
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.pre_rebalance(consumer, &Rebalance::Revoke(list));
                let unassigned = match cooperative {
                    true => consumer.incremental_unassign(list),
                    false => consumer.unassign(),
                };
                if let Err(error) = unassigned {
                    tracing::error!(%error, "cannot give up the revoked partitions");
                }
            }
            other => {
                let error = KafkaError::Rebalance(other.into());
                tracing::error!(%error, "rebalance error");
            }
        }
    }

    /// Before partitions go: their records not yet with a worker are dropped, work in flight
    /// on them gets up to `drain_timeout` to finish, and what is finished is committed; their
    /// next owner reads on from there.
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(list) => {
                self.metrics.rebalances.inc();
                tracing::info!(partitions = ?numbers(list), topic_partitions = %describe(list), "partitions revoked");
                let mut engine = self.engine();
                let partitions = partitions_of(&mut engine.partitions, list);
                engine.revoke(&partitions);
                self.store_and_commit(consumer, &mut engine, Some(&partitions), Some("revoke"));
                engine.forget(&partitions);
                self.metrics
                    .assigned_partitions
                    .set(engine.partitions.assigned().len() as i64);
                // Their lag is the next owner's to report: a series left behind would freeze at
                // its last value on this member.
                let elements = list.elements();
                let gone: Vec<(&str, i32)> = elements
                    .iter()
                    .map(|e| (e.topic(), e.partition()))
                    .collect();
                self.metrics.client.forget_partitions(&gone);
            }
            Rebalance::Assign(_) => {}
            Rebalance::Error(error) => tracing::error!(%error, "rebalance error"),
        }
    }

    /// After partitions came (each with a fresh state, see `rebalance`): each is resumed,
    /// since librdkafka keeps a pause flag set on an earlier assignment (see `partitions`).
    /// The member joined its group, with or without partitions: it is ready.
    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(list) = rebalance {
            self.metrics.rebalances.inc();
            let partitions = numbers(list);
            if list.count() > 0 {
                if let Err(error) = consumer.resume(list) {
                    tracing::warn!(topic_partitions = %describe(list), %error, "cannot resume newly assigned partitions");
                }
            }
            let mut engine = self.engine();
            if engine.keeps_positions() {
                engine.set_group(consumer.group_metadata());
            }
            self.metrics
                .assigned_partitions
                .set(engine.partitions.assigned().len() as i64);
            self.metrics.health.set_ready(true);
            tracing::info!(?partitions, topic_partitions = %describe(list), "partitions assigned");
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        // Only auto commits (single role) are reported here; "no offset to commit" is
        // librdkafka telling us nothing new was stored. (Synchronous commits are answered on
        // their own queue and counted in `commit_stored`.)
        match result {
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
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

/// A poll error: after a transient one (a broker went away) polling continues, as librdkafka
/// recovers by itself; fatal ones stop the role.
///
/// A refused authorization of the group or the topic stops it too. librdkafka hands it to the
/// application once and then keeps asking the broker quietly, so a consumer that carried on
/// would sit idle behind green health checks until someone changed the ACLs; stopping makes
/// the missing permission visible where the process is supervised.
pub(crate) fn poll_error(consumer: &KafkadConsumer, error: KafkaError) -> Result<(), RoleError> {
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
        // Logged already: rdkafka hands every consumer error to the client's context (which
        // logs it with librdkafka's description) before `poll` returns it as a bare code.
        _ => Ok(()),
    }
}

/// A TLS or authentication failure reported by the consumer's client: the role must stop.
pub(crate) fn connection_failure(consumer: &KafkadConsumer) -> Option<RoleError> {
    consumer.context().failure().map(RoleError::Connection)
}

/// Leaves the group and closes, waiting at most `timeout`: librdkafka's close (what dropping
/// the last handle on the consumer does) has no bound and can hang while brokers are
/// unreachable. The revoke callback runs during the close and commits what was finished. If
/// the close does not finish in time, it is left running on its own thread; the process is
/// exiting anyway. Whether it finished.
pub(crate) fn close(consumer: Arc<KafkadConsumer>, timeout: Duration) -> bool {
    let closer = match super::thread::spawn("kafkad-close".to_owned(), move || drop(consumer)) {
        Ok(closer) => closer,
        Err(error) => {
            tracing::warn!(%error, "cannot start a thread to close the consumer");
            return false;
        }
    };
    let closed = closer.join_within(timeout);
    if closed {
        tracing::info!("consumer closed, group left");
    } else {
        tracing::warn!(
            ?timeout,
            "consumer did not close in time; exiting without waiting for it"
        );
    }
    closed
}
