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
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};

use super::client::KafkadConsumer;
use super::engine::Engine;
use super::thread::{self, Thread};
use super::tp::Tp;
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
    assigned: Vec<(Tp, Arc<str>)>,
    ends: HashMap<Tp, Ends>,
}

/// The probe: a thread asking the brokers about the assigned partitions.
pub(crate) struct Probe {
    shared: Arc<Mutex<Shared>>,
    stop: Option<Sender<()>>,
    thread: Option<Thread>,
}

impl Probe {
    pub fn start(consumer: Arc<KafkadConsumer>) -> Self {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (stop, stopped) = mpsc::channel();
        let view = Arc::clone(&shared);
        let span = tracing::Span::current();
        let thread = thread::spawn("kafkad-probe".to_owned(), move || {
            span.in_scope(|| loop {
                ask(&consumer, &view);
                match stopped.recv_timeout(PROBE_EVERY) {
                    Err(RecvTimeoutError::Timeout) => {}
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                }
            })
        })
        .map_err(|error| tracing::warn!(%error, "cannot start the lag probe; lag stays unknown"))
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
            thread.join_within(timeout);
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
    let mut list = TopicPartitionList::with_capacity(assigned.len());
    for (tp, topic) in &assigned {
        list.add_partition(topic, tp.partition);
    }
    let tp_of = |topic: &str, partition: i32| {
        assigned
            .iter()
            .find(|(tp, name)| tp.partition == partition && &**name == topic)
            .map(|(tp, _)| *tp)
    };
    let committed: HashMap<Tp, i64> = match consumer.committed_offsets(list, PROBE_TIMEOUT) {
        Ok(list) => list
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(offset) => Some((tp_of(e.topic(), e.partition())?, offset)),
                _ => None,
            })
            .collect(),
        Err(error) => {
            tracing::debug!(%error, "cannot read committed offsets for lag");
            return;
        }
    };
    for (tp, topic) in assigned {
        match consumer.fetch_watermarks(&topic, tp.partition, PROBE_TIMEOUT) {
            Ok((low, high)) => {
                let ends = Ends {
                    low,
                    high,
                    committed: committed.get(&tp).copied(),
                    at: Instant::now(),
                };
                if let Ok(mut shared) = shared.lock() {
                    shared.ends.insert(tp, ends);
                }
            }
            Err(error) => {
                tracing::debug!(%topic, partition = tp.partition, %error, "cannot read the partition's end")
            }
        }
    }
}

/// What the engine knows of a partition.
#[derive(Debug, Clone, Copy)]
struct Seen {
    commit_point: Option<i64>,
    received_to: Option<i64>,
    /// Paused by kafkad, on purpose.
    paused: bool,
    /// Assigned, resumed, or a record came.
    active_at: Tick,
}

/// What a partition's figures say.
#[derive(Debug, PartialEq)]
struct Reading {
    /// Records not yet processed, if the next one to process is known.
    lag: Option<i64>,
    /// Since when it has had records to read that did not arrive, while not paused.
    behind_since: Option<Tick>,
    /// How long it has been waiting for them.
    wait: Duration,
}

/// Reads one partition: `seen` by the engine, `ends` by the brokers, `behind_since` as the
/// last reading left it.
fn read(
    seen: &Seen,
    ends: &Ends,
    from_earliest: bool,
    behind_since: Option<Tick>,
    now: Tick,
) -> Reading {
    let known = ends.committed.or(from_earliest.then_some(ends.low));
    let lag = seen
        .commit_point
        .or(known)
        .map(|next| (ends.high - next).max(0));
    // Records beyond what was received, and the partition not paused on purpose: they
    // should be arriving. How long they have not is what liveness watches.
    let fetched_to = seen.received_to.or(known);
    let behind = fetched_to.is_some_and(|fetched| ends.high > fetched) && !seen.paused;
    let behind_since = behind.then(|| behind_since.unwrap_or(now));
    let wait = behind_since.map_or(Duration::ZERO, |since| {
        now.duration_since(since.max(seen.active_at))
    });
    Reading {
        lag,
        behind_since,
        wait,
    }
}

/// Lag, fetch stalls and readiness, worked out on the polling thread once a second.
pub(crate) struct Watch {
    last: Option<Tick>,
    stall_timeout: Duration,
    /// A partition the group never committed starts at its beginning.
    from_earliest: bool,
    /// Since when each partition has had records to read that did not arrive.
    behind_since: HashMap<Tp, Tick>,
    /// Partitions already reported as not delivering.
    reported: Vec<Tp>,
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
        let partitions = &engine.partitions;
        shared.assigned = partitions
            .assigned()
            .into_iter()
            .map(|tp| (tp, Arc::clone(partitions.topic_name(tp))))
            .collect();
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
            let seen = Seen {
                commit_point: state.offsets.commit_point(),
                received_to: state.offsets.received_to(),
                paused: state.is_paused(),
                active_at: state.active_at,
            };
            let reading = read(
                &seen,
                ends,
                self.from_earliest,
                self.behind_since.get(&partition).copied(),
                now,
            );
            match reading.lag {
                Some(lag) => {
                    let topic = engine.partitions.topic_name(partition);
                    metrics.client.set_lag(topic, partition.partition, lag);
                    total = total.map(|t| t + lag);
                }
                None => total = None,
            }
            if let Some(since) = reading.behind_since {
                behind_since.insert(partition, since);
                if reading.wait > self.stall_timeout {
                    waiting.push(partition);
                }
                longest_wait = longest_wait.max(reading.wait);
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
                    topic = %engine.partitions.topic_name(partition),
                    partition = partition.partition,
                    stall_timeout = ?self.stall_timeout,
                    "partition has records to read and none arrived within stall_timeout, though kafkad does not hold it paused; /healthz reports the consumer stalled"
                );
            }
        }
        self.reported = waiting;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ends(low: i64, high: i64, committed: Option<i64>) -> Ends {
        Ends {
            low,
            high,
            committed,
            at: Instant::now(),
        }
    }

    #[test]
    fn a_paused_partition_lags_on_without_counting_as_stalled() {
        let start = Tick::now();
        let seen = Seen {
            commit_point: Some(10),
            received_to: Some(12),
            paused: true,
            active_at: start,
        };
        let later = start.after(Duration::from_secs(600));
        let reading = read(&seen, &ends(0, 40, Some(10)), true, None, later);
        assert_eq!(
            reading.lag,
            Some(30),
            "the brokers' end, not the last fetch"
        );
        assert_eq!((reading.behind_since, reading.wait), (None, Duration::ZERO));
    }

    #[test]
    fn records_that_do_not_arrive_at_an_unpaused_partition_count_from_when_they_were_seen() {
        let start = Tick::now();
        // Assigned long ago, nothing received (librdkafka holding it paused), committed at 5.
        let seen = Seen {
            commit_point: None,
            received_to: None,
            paused: false,
            active_at: start,
        };
        let first_seen = start.after(Duration::from_secs(3600));
        let reading = read(&seen, &ends(0, 9, Some(5)), true, None, first_seen);
        assert_eq!(reading.lag, Some(4));
        assert_eq!(reading.behind_since, Some(first_seen));
        assert_eq!(
            reading.wait,
            Duration::ZERO,
            "an hour idle is not an hour stalled"
        );
        let later = first_seen.after(Duration::from_secs(150));
        let reading = read(&seen, &ends(0, 9, Some(5)), true, Some(first_seen), later);
        assert_eq!(reading.wait, Duration::from_secs(150));
        // Caught up: nothing to wait for.
        let caught_up = Seen {
            received_to: Some(9),
            ..seen
        };
        let reading = read(
            &caught_up,
            &ends(0, 9, Some(5)),
            true,
            Some(first_seen),
            later,
        );
        assert_eq!((reading.behind_since, reading.wait), (None, Duration::ZERO));
    }

    #[test]
    fn lag_needs_a_known_start() {
        let seen = Seen {
            commit_point: None,
            received_to: None,
            paused: false,
            active_at: Tick::now(),
        };
        let reading = read(&seen, &ends(3, 9, None), false, None, Tick::now());
        assert_eq!(
            reading.lag, None,
            "starting from the latest, with nothing committed"
        );
        let reading = read(&seen, &ends(3, 9, None), true, None, Tick::now());
        assert_eq!(reading.lag, Some(6));
    }
}
