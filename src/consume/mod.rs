//! The consumer engine: one poll loop that both consumer roles run on.
//!
//! ```text
//!   poll loop (one thread)                          workers (`concurrency` threads)
//!   ---------------------                           ------------------------------
//!   poll ──> partitions: records in hand per lane ──job──> decode, sink, dead-letter copy
//!    ^       offsets: what is finished per partition <─done── (job back, marked)
//!    |       retries waiting, pauses, store/commit
//!    +── rebalance callbacks (revoke: drain, commit; assign: fresh, resumed)
//! ```
//!
//! * **The poll loop never waits on the sink.** Sink calls and dead-letter copies run on
//!   workers; the loop keeps polling while work is in flight, while a retry waits, while a
//!   batch is taken apart, so the member stays in its group (heartbeats,
//!   `max.poll.interval.ms`) and rebalances are served, however slow or hung the downstream.
//! * **Partition state lives in one place** (`partitions`): records in hand, what waits for
//!   a retry, what the engine paused and why. Every assignment starts fresh and resumed;
//!   every revocation drops what was not handed to a worker, waits up to `drain_timeout` for
//!   what was, and commits what finished.
//! * **Offsets follow acknowledgements** (`offsets`): per partition, only the offset below
//!   which every record is finished (processed, or its dead-letter copy acknowledged) is
//!   stored; the single role's auto commit and the batch role's commit after each stored
//!   move send only that. Never past a record in flight, waiting for a retry, or not yet
//!   dead-lettered.
//! * **Order**: the records of one lane (a partition, or with `ordering = "key"` a key of a
//!   partition) reach the sink one after another; lanes run side by side, at most
//!   `concurrency` sink calls at once. A batch is a job over several lanes' records,
//!   acknowledged together. Memory is bounded: a partition whose records in hand fill its
//!   window is paused until half of them are finished.
//!
//! The role strategies differ only in how jobs are formed (`engine::Strategy`): the single
//! role sends a lane's records one `process` call each; the batch role waits for
//! `min_size`..`max_size` records (or `max_wait`) and sends them in one `process_batch`.

mod chunk;
mod client;
mod commits;
mod config;
mod engine;
mod execute;
mod job;
mod offsets;
mod partitions;
mod retry;
mod tally;
mod thread;
mod tp;
mod watch;
mod worker;

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::message::BorrowedMessage;

use crate::client::ClientLog;
use crate::config::ConsumerRole;
use crate::dlq::DeadLetters;
use crate::payload::{Decoder, SchemaRegistry};
use crate::roles::{ConsumerReport, RoleError};
use crate::shutdown::Shutdown;
use crate::sink::Sink;
use crate::telemetry::clock::Tick;
use crate::telemetry::metrics::ConsumerMetrics;
use client::{ConsumerHooks, KafkadConsumer};
use commits::Committer;
pub use config::ConsumerConfig;
use engine::Engine;
pub(crate) use engine::Strategy;
use partitions::{Partitions, Window};
use watch::{Probe, Watch};
use worker::{WorkerShared, Workers};

/// How long the loop sleeps in a poll when nothing is in flight.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// With work in flight and a worker idle: how long a poll may keep a finished job waiting.
const POLL_WHILE_BUSY: Duration = Duration::from_millis(1);
/// With every worker busy and nothing to read: how long to wait for a job back before
/// polling again.
const WAIT_FOR_WORKERS: Duration = Duration::from_millis(10);
/// Records taken from librdkafka's queue in one go before the loop's other work.
const RECEIVE_BURST: usize = 512;
/// A partition is full once this much of it is in hand (see `partitions`): enough to keep a
/// worker busy while the poll loop takes the next records, little enough that what is held
/// beside librdkafka's own prefetch stays a few megabytes (the bench's peak RSS went from
/// 44 MiB to 80 MiB with 10,000 records, for no more throughput).
const WINDOW_RECORDS: usize = 2_000;
const WINDOW_BYTES: usize = 8 << 20;
/// Of `shutdown_timeout`, what the work in flight gets to finish; the rest is for the final
/// commit, the dead-letter producer and leaving the group.
const DRAIN_SHARE: f64 = 0.6;

/// Runs a consumer role on the calling (blocking) thread until shutdown or a failure.
pub(crate) fn consume(
    config: &ConsumerConfig,
    sink: Box<dyn Sink>,
    metrics: &ConsumerMetrics,
    shutdown: &Shutdown,
) -> Result<ConsumerReport, RoleError> {
    let (consumer, workers) = create(config, sink, metrics, shutdown)?;
    let consumer = Arc::new(consumer);
    let hooks = consumer.context();
    let committer = Committer::start(Arc::clone(&consumer))
        .map_err(|e| RoleError::Thread(format!("cannot start the commit thread: {e}")))?;
    let probe = Probe::start(Arc::clone(&consumer));
    tracing::info!(group = %hooks.group, concurrency = config.consumer.concurrency, ordering = ?config.consumer.ordering, "consumer started");
    let deadline = run(&consumer, &probe, config, metrics, shutdown);
    committer.stop();

    // The final commit, then the dead-letter producer and the group, within what is left.
    let left = || deadline.saturating_duration_since(Instant::now());
    let failure = {
        let mut engine = hooks.engine();
        engine.settle(Duration::ZERO);
        hooks.store_and_commit(&consumer, &mut engine, None, Some("shutdown"));
        let (waiting, in_hand) = engine.describe_unfinished();
        if waiting + in_hand + engine.in_flight() > 0 {
            tracing::info!(
                retries_waiting = waiting,
                records_in_hand = in_hand,
                in_flight = engine.in_flight(),
                "stopping with work unfinished; it stays uncommitted and is processed again by the next owner"
            );
        }
        engine.take_failure()
    };
    let dead_letters = hooks.engine().dead_letters();
    dead_letters.flush(left() / 2);
    probe.stop(left() / 2);
    // Closing drops the engine and with it the workers' inboxes. Once every worker ended,
    // this is the last handle on the dead-letter producer, destroyed here, before the role
    // returns and the process may exit (see `thread`). A close cut short at the deadline
    // leaves them all running: the process exits without them.
    let mut left_running = 0;
    if client::close(consumer, left()) {
        for worker in workers {
            if !worker.join_within(left()) {
                left_running += 1;
            }
        }
    }
    if left_running > 0 {
        tracing::warn!(
            workers = left_running,
            "sink workers did not end in time; exiting without waiting for them"
        );
    }
    drop(dead_letters);
    match failure {
        Some(failure) => Err(failure),
        None => Ok(ConsumerReport::from_metrics(metrics)),
    }
}

/// The consumer, subscribed, with its engine and workers (whose threads it returns).
fn create(
    config: &ConsumerConfig,
    sink: Box<dyn Sink>,
    metrics: &ConsumerMetrics,
    shutdown: &Shutdown,
) -> Result<(KafkadConsumer, Vec<thread::Thread>), RoleError> {
    let group = &config.group;
    let topic = config.topics.to_string();
    let concurrency = config.consumer.concurrency.get();
    let role = config.role();
    let positions = sink.positions();
    let mut sinks = Vec::with_capacity(concurrency);
    for _ in 1..concurrency {
        sinks.push(
            sink.another()
                .ok_or(RoleError::SinkNotShareable { concurrency })?,
        );
    }
    sinks.push(sink);
    let dead_letters =
        DeadLetters::new(&config.dead_letters, metrics.clone()).map_err(|source| {
            RoleError::Client {
                client: "dead-letter producer",
                source,
            }
        })?;
    let shared = Arc::new(WorkerShared {
        dead_letters: Arc::new(dead_letters),
        metrics: metrics.clone(),
        shutdown: shutdown.clone(),
        max_record_bytes: config.max_record_bytes.get(),
        decoder: decoder(config),
    });
    let (workers, threads) = Workers::start(sinks, Arc::clone(&shared))
        .map_err(|e| RoleError::Thread(format!("cannot start a sink worker: {e}")))?;
    let max_batch = match &config.strategy {
        Strategy::Batch(limits) => limits.max_size.get(),
        Strategy::Single => 1,
    };
    let window = Window {
        records: WINDOW_RECORDS.max(2 * max_batch * concurrency),
        bytes: WINDOW_BYTES,
    };
    let engine = Engine::new(
        config.strategy.clone(),
        Partitions::new(config.consumer.ordering, window),
        workers,
        retry::RetryPolicy::new(&config.retry),
        metrics.clone(),
        config.consumer.drain_timeout,
        shared,
        positions,
    );
    let hooks = ConsumerHooks::new(
        ClientLog::new(format!("consumer {group}"), config.redactor.clone())
            .with_stats(metrics.client.clone()),
        &topic,
        group,
        metrics.clone(),
        role == ConsumerRole::Batch,
        engine,
    );
    let consumer: KafkadConsumer =
        config
            .client
            .create_with_context(hooks)
            .map_err(|source| RoleError::Client {
                client: "consumer",
                source,
            })?;
    // Names, or one pattern (librdkafka's convention: it starts with `^`).
    consumer
        .subscribe(&config.topics.subscription())
        .map_err(|source| RoleError::Subscribe { topic, source })?;
    Ok((consumer, threads))
}

/// The decoder of `[consumer] format`, with its schema registry client for the schema'd
/// formats (configuration made sure they have one).
fn decoder(config: &ConsumerConfig) -> Decoder {
    let format = config.consumer.format;
    let registry = match (&config.schema_registry, format.schema_framing()) {
        (Some(registry), Some(_)) => Some(Arc::new(SchemaRegistry::new(
            &registry.url,
            registry.timeout,
        ))),
        _ => None,
    };
    Decoder::new(format, registry)
}

/// The poll loop, until shutdown or a failure and then until the work in flight finished (or
/// its share of `shutdown_timeout` ran out). Returns the deadline of the stop: the shutdown's
/// (see `shutdown`), or for a failure `shutdown_timeout` after the loop saw it.
fn run(
    consumer: &KafkadConsumer,
    probe: &Probe,
    config: &ConsumerConfig,
    metrics: &ConsumerMetrics,
    shutdown: &Shutdown,
) -> Instant {
    let hooks = consumer.context();
    let timing = config.timing;
    let mut watch = Watch::new(timing.stall_timeout, config.from_earliest);
    // What the steps after the drain get of `shutdown_timeout`.
    let after_drain = timing.shutdown_timeout.mul_f64(1.0 - DRAIN_SHARE);
    let mut deadline: Option<Instant> = None;
    let mut queue_drained = true;
    loop {
        let now = Tick::now();
        metrics.health.turn_at(now);
        let (poll_wait, completion_wait) = {
            let mut engine = hooks.engine();
            if let Some(failure) = client::connection_failure(consumer) {
                engine.fail(failure);
            }
            if deadline.is_none() && (shutdown.is_triggered() || engine.has_failed()) {
                if shutdown.is_triggered() {
                    metrics.health.begin_shutdown();
                }
                deadline = Some(
                    shutdown
                        .deadline(timing.shutdown_timeout)
                        .unwrap_or_else(|| Instant::now() + timing.shutdown_timeout),
                );
                engine.stop();
            }
            engine.settle(Duration::ZERO);
            engine.release_due(now);
            // Work goes out before what came back is stored and its commit asked for.
            engine.dispatch(now, queue_drained);
            hooks.store_and_commit(consumer, &mut engine, None, None);
            hooks.apply_pauses(consumer, &mut engine, now);
            watch.turn(&engine, probe, metrics, now);
            if let Some(deadline) = deadline {
                let left = deadline.saturating_duration_since(Instant::now());
                if engine.in_flight() == 0 || left <= after_drain {
                    return deadline;
                }
            }
            waits(&engine, now)
        };
        let Some(poll_wait) = poll_wait else {
            hooks.engine().settle(completion_wait);
            continue;
        };
        queue_drained = false;
        match consumer.poll(poll_wait) {
            None => {
                queue_drained = true;
                if !completion_wait.is_zero() {
                    hooks.engine().settle(completion_wait);
                }
            }
            Some(Err(error)) => {
                if let Err(fatal) = client::poll_error(consumer, error) {
                    hooks.engine().fail(fatal);
                }
            }
            Some(Ok(record)) => {
                if receive(hooks, &record, now) {
                    metrics.consumed.inc();
                }
                drop(record);
                queue_drained = receive_burst(consumer, metrics, now);
            }
        }
    }
}

/// Takes what else librdkafka has ready, up to [`RECEIVE_BURST`] records; whether its queue
/// ran dry. Each record is taken in hand right after its own poll: a poll may run a rebalance
/// callback, after which a record polled before it would belong to an assignment that ended.
fn receive_burst(consumer: &KafkadConsumer, metrics: &ConsumerMetrics, now: Tick) -> bool {
    let hooks = consumer.context();
    let mut taken = 0;
    let mut drained = false;
    for _ in 1..RECEIVE_BURST {
        match consumer.poll(Duration::ZERO) {
            Some(Ok(record)) => taken += u64::from(receive(hooks, &record, now)),
            None => {
                drained = true;
                break;
            }
            Some(Err(error)) => {
                if let Err(fatal) = client::poll_error(consumer, error) {
                    hooks.engine().fail(fatal);
                }
                break;
            }
        }
    }
    metrics.consumed.inc_by(taken);
    drained
}

/// Takes `record` in hand; whether it was taken.
fn receive(hooks: &ConsumerHooks, record: &BorrowedMessage<'_>, now: Tick) -> bool {
    hooks.engine().partitions.receive(record, now)
}

/// What the loop does next: `Some(wait)`: poll, blocking up to `wait`, then wait for a worker
/// up to the second figure if nothing came; `None`: take no records (a partition is full),
/// only wait for a worker.
fn waits(engine: &Engine, now: Tick) -> (Option<Duration>, Duration) {
    let due = [engine.next_due(), engine.batch_due_at()]
        .into_iter()
        .flatten()
        .min()
        .map_or(POLL_INTERVAL, |due| due.duration_since(now));
    if engine.partitions.any_full() {
        (None, WAIT_FOR_WORKERS.min(due))
    } else if engine.in_flight() == 0 {
        (Some(POLL_INTERVAL.min(due)), Duration::ZERO)
    } else if engine.all_workers_busy() {
        (Some(Duration::ZERO), WAIT_FOR_WORKERS.min(due))
    } else {
        (Some(POLL_WHILE_BUSY.min(due)), Duration::ZERO)
    }
}
