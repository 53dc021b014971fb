//! What the consumer measures about its partitions from outside the fetch path: their ends
//! and committed offsets (a probe on its own thread), and from those, once a second on the
//! polling thread, the lag of each partition and whether one that should deliver does not.
//!
//! Statistics cannot serve here: librdkafka learns a partition's end from fetch responses,
//! so a paused partition (a record waiting for a retry) would show a lag frozen at its last
//! value, and a partition that is never fetched (a pause flag left over from an earlier
//! assignment) would look like one with nothing to read. The probe asks the brokers directly
//! (ListOffsets, OffsetFetch), which works whether the partition is fetched or not.

use std::collections::HashMap;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};

use super::client::KafkadConsumer;
use super::engine::Engine;
use crate::telemetry::clock::Tick;
use crate::telemetry::metrics::ConsumerMetrics;

/// How often the probe asks.
const PROBE_EVERY: Duration = Duration::from_secs(5);
/// How long one question may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Answers older than this describe the past.
const FRESH: Duration = Duration::from_secs(20);

/// One partition as the brokers last described it.
#[derive(Debug, Clone, Copy)]
struct Ends {
    low: i64,
    high: i64,
    committed: Option<i64>,
    at: Instant,
}

/// What the probe and the polling thread share.
#[derive(Debug, Default)]
struct Shared {
    assigned: Vec<i32>,
    ends: HashMap<i32, Ends>,
}

/// The probe: a thread asking the brokers about the assigned partitions.
pub(crate) struct Probe {
    shared: Arc<Mutex<Shared>>,
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Probe {
    pub fn start(consumer: Arc<KafkadConsumer>) -> Self {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (stop, stopped) = mpsc::channel();
        let view = Arc::clone(&shared);
        let span = tracing::Span::current();
        let thread = std::thread::Builder::new()
            .name("kafkad-probe".to_owned())
            .spawn(move || {
                span.in_scope(|| loop {
                    ask(&consumer, &view);
                    match stopped.recv_timeout(PROBE_EVERY) {
                        Err(RecvTimeoutError::Timeout) => {}
                        Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                    }
                })
            })
            .map_err(
                |error| tracing::warn!(%error, "cannot start the lag probe; lag stays unknown"),
            )
            .ok();
        Probe {
            shared,
            stop: Some(stop),
            thread,
        }
    }

    fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops the probe, waiting up to `timeout` for its question in flight: it holds a handle
    /// on the consumer, which closes only once every handle is gone.
    pub fn stop(mut self, timeout: Duration) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let deadline = Instant::now() + timeout;
            while !thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
    }
}

/// One round of questions about the assigned partitions.
fn ask(consumer: &KafkadConsumer, shared: &Mutex<Shared>) {
    let assigned = shared
        .lock()
        .map(|s| s.assigned.clone())
        .unwrap_or_default();
    if assigned.is_empty() {
        return;
    }
    let topic = consumer.context().topic.clone();
    let mut list = TopicPartitionList::with_capacity(assigned.len());
    for &partition in &assigned {
        list.add_partition(&topic, partition);
    }
    let committed: HashMap<i32, i64> = match consumer.committed_offsets(list, PROBE_TIMEOUT) {
        Ok(list) => list
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(offset) => Some((e.partition(), offset)),
                _ => None,
            })
            .collect(),
        Err(error) => {
            tracing::debug!(%error, "cannot read committed offsets for lag");
            return;
        }
    };
    for partition in assigned {
        match consumer.fetch_watermarks(&topic, partition, PROBE_TIMEOUT) {
            Ok((low, high)) => {
                let ends = Ends {
                    low,
                    high,
                    committed: committed.get(&partition).copied(),
                    at: Instant::now(),
                };
                if let Ok(mut shared) = shared.lock() {
                    shared.ends.insert(partition, ends);
                }
            }
            Err(error) => tracing::debug!(partition, %error, "cannot read the partition's end"),
        }
    }
}

/// Lag, fetch stalls and readiness, worked out on the polling thread once a second.
pub(crate) struct Watch {
    last: Option<Tick>,
    stall_timeout: Duration,
    /// A partition the group never committed starts at its beginning.
    from_earliest: bool,
    /// Since when each partition has had records to read that did not arrive.
    behind_since: HashMap<i32, Tick>,
    /// Partitions already reported as not delivering.
    reported: Vec<i32>,
}

impl Watch {
    pub fn new(stall_timeout: Duration, from_earliest: bool) -> Self {
        Watch {
            last: None,
            stall_timeout,
            from_earliest,
            behind_since: HashMap::new(),
            reported: Vec::new(),
        }
    }

    pub fn turn(&mut self, engine: &Engine, probe: &Probe, metrics: &ConsumerMetrics, now: Tick) {
        if self
            .last
            .is_some_and(|last| !now.passed(last, Duration::from_secs(1)))
        {
            return;
        }
        self.last = Some(now);
        if metrics.client.joined() {
            metrics.health.set_ready(true);
        }
        let mut shared = probe.shared();
        shared.assigned = engine.partitions.assigned();
        let mut total = Some(0);
        let mut longest_wait = Duration::ZERO;
        let mut waiting = Vec::new();
        let mut behind_since = HashMap::new();
        for (partition, state) in engine.partitions.iter() {
            let ends = shared
                .ends
                .get(&partition)
                .filter(|ends| ends.at.elapsed() <= FRESH);
            let Some(ends) = ends else {
                total = None;
                continue;
            };
            let known = ends.committed.or(self.from_earliest.then_some(ends.low));
            match state.offsets.commit_point().or(known) {
                Some(next) => {
                    let lag = (ends.high - next).max(0);
                    metrics.client.set_lag(partition, lag);
                    total = total.map(|t| t + lag);
                }
                None => total = None,
            }
            // Records behind what was received, not paused on purpose, and none came for a
            // while: the partition is not being fetched.
            let fetched_to = state.offsets.received_to().or(known);
            let behind = fetched_to.is_some_and(|fetched| ends.high > fetched);
            if behind && !state.is_paused() {
                let since = self.behind_since.get(&partition).copied().unwrap_or(now);
                behind_since.insert(partition, since);
                let wait = now.duration_since(since.max(state.active_at));
                if wait > self.stall_timeout {
                    waiting.push(partition);
                }
                longest_wait = longest_wait.max(wait);
            }
        }
        drop(shared);
        self.behind_since = behind_since;
        // Before the member joined its group, "no partitions, no lag" would be a guess.
        let total = total.filter(|_| metrics.health.became_ready());
        metrics.client.set_total_lag(total);
        metrics.health.set_fetch_wait(longest_wait);
        for &partition in &waiting {
            if !self.reported.contains(&partition) {
                tracing::error!(
                    partition,
                    stall_timeout = ?self.stall_timeout,
                    "partition has records to read and none arrived within stall_timeout, though kafkad does not hold it paused; /healthz reports the consumer stalled"
                );
            }
        }
        self.reported = waiting;
    }
}
