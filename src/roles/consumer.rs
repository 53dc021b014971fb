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

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::BorrowedMessage;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Message, Offset, TopicPartitionList};

use super::RoleError;
use crate::client::ClientLog;
use crate::config::{Scope, Settings};
use crate::dlq::{self, DeadLetterError, DeadLetters};
use crate::message::KafkaMessage;
use crate::shutdown::Shutdown;
use crate::telemetry::clock::Tick;
use crate::telemetry::histogram::LocalHistogram;
use crate::telemetry::metrics::ConsumerMetrics;

/// Revocations the loop has not seen yet, and how many partitions are assigned. Shared
/// between the loop and the rebalance callback, which run on the same thread, one after the
/// other (the callback runs inside `poll`): the mutex is never contended, it only satisfies
/// the `Sync` bound on contexts.
#[derive(Debug, Default)]
struct PartitionState {
    /// Partitions revoked since the loop last called [`ConsumerHooks::take_revoked`].
    revoked: Vec<i32>,
    /// Partitions currently assigned: the consumer is ready while it holds any.
    assigned: usize,
}

/// The consumer context: librdkafka logs into tracing, stored offsets committed before
/// partitions move, commit results counted.
///
/// Both consumer roles use one offset mechanism: an offset is stored (librdkafka's stored
/// offset, `enable.auto.offset.store = false`) only once its record was processed, and
/// commits only ever send stored offsets. A failed commit leaves them stored, so the next
/// commit carries them again.
pub(crate) struct ConsumerHooks {
    log: ClientLog,
    topic: String,
    group: String,
    metrics: ConsumerMetrics,
    /// With auto commit off, nothing else commits the stored offsets of revoked partitions.
    commit_on_revoke: bool,
    state: Mutex<PartitionState>,
    /// Whether `state.revoked` holds anything: the loop asks after every poll, and this
    /// spares it the lock.
    any_revoked: AtomicBool,
}

impl ConsumerHooks {
    pub fn new(
        log: ClientLog,
        topic: &str,
        group: &str,
        metrics: ConsumerMetrics,
        commit_on_revoke: bool,
    ) -> Self {
        ConsumerHooks {
            log,
            topic: topic.to_owned(),
            group: group.to_owned(),
            metrics,
            commit_on_revoke,
            state: Mutex::default(),
            any_revoked: AtomicBool::new(false),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, PartitionState> {
        // A poisoned lock means a panic mid-update on this very thread; the data is plain
        // counts, still usable.
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
        if !self.any_revoked.swap(false, Ordering::Relaxed) {
            return Vec::new();
        }
        std::mem::take(&mut self.state().revoked)
    }

    /// Stores `positions` (next offset per partition, i.e. last processed + 1) as the
    /// partitions' stored offsets, for the next commit to send.
    pub fn store(
        &self,
        consumer: &BaseConsumer<ConsumerHooks>,
        positions: impl IntoIterator<Item = (i32, i64)>,
    ) {
        let mut list = TopicPartitionList::new();
        for (partition, next) in positions {
            if let Err(error) =
                list.add_partition_offset(&self.topic, partition, Offset::Offset(next))
            {
                tracing::error!(partition, next, %error, "cannot build the offset list");
                return;
            }
        }
        // librdkafka answers per partition, and fails the call only when none was stored.
        let _ = consumer.store_offsets(&list);
        for element in list.elements() {
            if let Err(error) = element.error() {
                // A partition revoked meanwhile ("Erroneous state"): its new owner
                // redelivers from the last commit. Expected during rebalances.
                tracing::debug!(partition = element.partition(), offset = ?element.offset(), %error, "offset not stored");
            }
        }
    }

    /// Commits the stored offsets, synchronously. On failure they stay stored and the next
    /// commit (after the next batch, in the revoke callback, or on the way out) carries them.
    /// Whether a commit was made (not when nothing new was stored, nor when it failed).
    pub fn commit_stored(&self, consumer: &BaseConsumer<ConsumerHooks>, when: &str) -> bool {
        match consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) => {
                self.metrics.commits.inc();
                tracing::debug!(when, "committed the stored offsets");
                true
            }
            // Nothing stored since the last commit.
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => false,
            Err(error) => {
                self.metrics.commit_failures.inc();
                tracing::warn!(when, %error, "commit failed; the offsets stay stored for the next commit, and the records are redelivered if none succeeds");
                false
            }
        }
    }
}

crate::delegate_client_context!(ConsumerHooks, log);

impl ConsumerContext for ConsumerHooks {
    /// Before partitions go: commit what was processed on them (only processed records ever
    /// have their offsets stored), and tell the loop to drop their unprocessed buffered
    /// records, which the next owner will receive from the committed offset.
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(list) => {
                self.metrics.rebalances.inc();
                let partitions: Vec<i32> = list
                    .elements_for_topic(&self.topic)
                    .iter()
                    .map(|element| element.partition())
                    .collect();
                {
                    let mut state = self.state();
                    state.assigned = state.assigned.saturating_sub(list.count());
                    self.metrics.health.set_ready(state.assigned > 0);
                    state.revoked.extend(&partitions);
                    self.any_revoked.store(true, Ordering::Relaxed);
                }
                // Their lag is the next owner's to report: a series left behind would freeze at
                // its last value on this member.
                self.metrics.client.forget_partitions(&partitions);
                tracing::info!(?partitions, "partitions revoked");
                // After this callback the partitions are gone and a commit for them fails.
                if self.commit_on_revoke && self.commit_stored(consumer, "revoke") {
                    tracing::info!(
                        ?partitions,
                        "committed the processed offsets before the partitions move"
                    );
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
    metrics.client.set_from_earliest(matches!(
        kafka.get("auto.offset.reset"),
        Some("earliest" | "smallest" | "beginning")
    ));
    let hooks = ConsumerHooks::new(
        ClientLog::new(format!("consumer {group}"), kafka.redactor())
            .with_stats(metrics.client.clone()),
        &settings.topic.name,
        &group,
        metrics.clone(),
        kafka.flag("enable.auto.commit") == Some(false),
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
) -> Result<Inspected<'m>, DeadLetterError> {
    match dlq::inspect(record.payload(), settings.max_record_bytes.get()) {
        Ok(message) => Ok(Inspected::Message(message)),
        Err(rejection) => dead_letters
            .send(record, &rejection, shutdown)
            .map(|()| Inspected::DeadLettered),
    }
}

/// The wall clock in microseconds since the Unix epoch.
pub(crate) fn unix_micros_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_micros() as i64)
}

/// The end-to-end latency in seconds of a message processed at `now` ([`unix_micros_now`]):
/// `now` minus the message's own timestamp; none for a timestamp in the future.
pub(crate) fn latency(message: &KafkaMessage<'_>, now: i64) -> Option<f64> {
    let age = now - message.timestamp.unix_micros();
    (age >= 0).then(|| age as f64 / 1e6)
}

/// Publish what a [`Tally`] gathered at least this often...
const PUBLISH_EVERY: u64 = 256;
/// ...and at least this often while messages keep coming.
const PUBLISH_INTERVAL: Duration = Duration::from_millis(100);

/// The per-message figures of the single consumer (processed count, processing time and
/// end-to-end latency), gathered on the loop's thread with no lock and no atomic, and
/// published together every [`PUBLISH_EVERY`] messages, every [`PUBLISH_INTERVAL`], when the
/// loop is idle and when it ends: so `/metrics` and the summaries lag by at most that.
/// Publishing one message at a time (two histogram locks, a counter, a wall-clock read) cost
/// the loop more than anything but decoding.
pub(crate) struct Tally<'m> {
    metrics: &'m ConsumerMetrics,
    processed: u64,
    latency: LocalHistogram,
    processing: LocalHistogram,
    /// The last publish, on both clocks: a message's processing end (a [`Tick`], read anyway
    /// for the processing time) gives its wall-clock time without another clock read. Taken
    /// again at every publish, so it is never more than [`PUBLISH_INTERVAL`] old when used.
    published: Tick,
    published_unix_micros: i64,
}

impl<'m> Tally<'m> {
    pub fn new(metrics: &'m ConsumerMetrics) -> Self {
        Tally {
            metrics,
            processed: 0,
            latency: metrics.end_to_end_latency.local(),
            processing: metrics.processing_time.local(),
            published: Tick::now(),
            published_unix_micros: unix_micros_now(),
        }
    }

    /// One message processed from `started` to `ended`.
    pub fn processed(&mut self, message: &KafkaMessage<'_>, started: Tick, ended: Tick) {
        let mut since = ended.nanos_since(self.published);
        if u128::from(since) >= PUBLISH_INTERVAL.as_nanos() {
            self.publish_now();
            since = 0;
        }
        self.processing.observe(ended.seconds_since(started));
        let now = self.published_unix_micros + i64::try_from(since / 1000).unwrap_or(i64::MAX);
        if let Some(latency) = latency(message, now) {
            self.latency.observe(latency);
        }
        self.processed += 1;
        if self.processed >= PUBLISH_EVERY {
            self.publish_now();
        }
    }

    /// Publishes what was gathered, if anything.
    pub fn publish(&mut self) {
        if self.processed > 0 {
            self.publish_now();
        }
    }

    /// Histograms first, then the count: whoever sees `processed` reach N also finds N
    /// observations.
    fn publish_now(&mut self) {
        self.metrics.end_to_end_latency.add(&mut self.latency);
        self.metrics.processing_time.add(&mut self.processing);
        self.metrics.processed.inc_by(self.processed);
        self.processed = 0;
        self.published = Tick::now();
        self.published_unix_micros = unix_micros_now();
    }
}

impl Drop for Tally<'_> {
    fn drop(&mut self) {
        self.publish();
    }
}

/// A poll error: transient ones (a broker went away) are logged and polling continues, as
/// librdkafka recovers by itself; fatal ones stop the role.
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
        Some(RDKafkaErrorCode::PartitionEOF) => Ok(()),
        _ => {
            tracing::warn!(%error, "consumer error; continuing");
            Ok(())
        }
    }
}

/// Leaves the group and closes, waiting at most `timeout`: librdkafka's close (what dropping
/// the consumer does) has no bound and can hang while brokers are unreachable. Revocation
/// callbacks run during the close, so stored offsets are committed on the way out (by the
/// revoke callback, or by librdkafka's auto commit). If the close does not finish in time, it is left running on its own thread;
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
