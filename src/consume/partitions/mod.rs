//! Partition state in one place: for each assigned partition, what it has received and
//! finished (its offsets), the records waiting for a worker (its lanes' hands), whether a lane
//! waits for a retry, and whether the engine holds it paused and why.
//!
//! Pausing goes through here only, and is settled on every assignment: librdkafka keeps an
//! application's pause flag on a partition across unassign and assign, so a partition paused
//! for a retry, revoked and assigned again would never be fetched unless resumed. A new
//! assignment therefore starts resumed, from a fresh state with a new epoch; work still out
//! from the earlier assignment is told apart by its epoch and counts for nothing.
//!
//! Memory stays bounded however slow the sink: a partition whose records in hand reach the
//! window is *full*. While one is, the poll loop takes no more records and waits for the
//! workers instead (a fast sink frees room within milliseconds); a partition full for
//! [`PAUSE_AFTER`] is paused until its records in hand fall to half the window, and polling
//! goes on for the others. Pausing is not the first resort because it is not free: librdkafka
//! drops what it prefetched for the partition and fetches it again on resume.
//!
//! A partition is also paused while, with `ordering = "partition"`, its lane waits for a retry
//! (nothing more of it can go to the sink meanwhile), and while the consumer is stopping.
//! Pausing loses nothing: librdkafka fetches again from the record after the last one it
//! handed over, and every record handed over stays in hand here until it is finished.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::BuildHasherDefault;

use rdkafka::Message;

use super::chunk::Chunk;
use super::job::Lane;
use super::offsets::OffsetTracker;
use super::tp::{TopicNames, Tp};
use crate::config::ProcessingOrder;
use crate::telemetry::clock::Tick;

/// Emptied chunks kept for reuse: enough for every worker's job and the hands filling
/// meanwhile.
const SPARE: usize = 16;

/// How long a partition may stay full before it is paused (see the module doc).
pub(crate) const PAUSE_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// How much of a partition may be in hand before it is full.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    pub records: usize,
    pub bytes: usize,
}

/// Records of one lane not yet sent to a worker.
#[derive(Debug, Default)]
struct LaneState {
    hand: Chunk,
    /// When the oldest record in `hand` arrived.
    oldest: Option<Tick>,
    /// A job of this lane is out (with a worker, waiting for a retry, or queued to go on).
    busy: bool,
    /// In the ready queue.
    queued: bool,
}

#[derive(Debug)]
pub(crate) struct PartitionState {
    /// Which assignment this state belongs to.
    pub epoch: u64,
    pub offsets: OffsetTracker,
    lanes: HashMap<u64, LaneState, BuildHasherDefault<LaneKeyHasher>>,
    /// Key and value bytes of the records in hand.
    held_bytes: usize,
    /// Lanes waiting for a retry.
    waiting_lanes: usize,
    /// Paused in librdkafka, by the engine.
    paused: bool,
    /// Being revoked: nothing more of it goes to a worker.
    revoking: bool,
    /// When the partition was last seen able to deliver: assigned, resumed, or a record came.
    pub active_at: Tick,
    /// Since when its records in hand have filled the window.
    full_since: Option<Tick>,
    /// The commit point last stored.
    stored: Option<i64>,
}

impl PartitionState {
    pub fn is_paused(&self) -> bool {
        self.paused
    }
}

/// The assigned partitions, of every topic the consumer reads.
#[derive(Debug)]
pub(crate) struct Partitions {
    map: BTreeMap<Tp, PartitionState>,
    /// The topics met so far: what a [`Tp`]'s topic number stands for.
    names: TopicNames,
    ordering: ProcessingOrder,
    window: Window,
    /// Lanes that are not busy and hold records, in the order they became so.
    ready: VecDeque<Lane>,
    /// Records in the hands of lanes that are not busy.
    ready_records: usize,
    next_epoch: u64,
    /// The consumer is stopping: every partition is paused.
    stopping: bool,
    /// Emptied chunks of finished jobs, their buffers kept for the next hands: a hand taken
    /// whole would otherwise start a new one that grows by doubling, an allocation and a copy
    /// per doubling for every job.
    spare: Vec<Chunk>,
}

impl Partitions {
    pub fn new(ordering: ProcessingOrder, window: Window) -> Self {
        Partitions {
            map: BTreeMap::new(),
            names: TopicNames::default(),
            ordering,
            window,
            ready: VecDeque::new(),
            ready_records: 0,
            next_epoch: 1,
            stopping: false,
            spare: Vec::new(),
        }
    }

    /// The topic and partition `topic`/`partition` stands for, numbering the topic if it is
    /// new.
    pub fn tp(&mut self, topic: &str, partition: i32) -> Tp {
        Tp {
            topic: self.names.intern(topic),
            partition,
        }
    }

    /// The name of the topic of `tp`.
    pub fn topic_name(&self, tp: Tp) -> &std::sync::Arc<str> {
        self.names.name(tp.topic)
    }

    /// Fresh states for newly assigned `partitions` (resumed by the caller); their
    /// assignment numbers.
    pub fn assign(&mut self, partitions: &[Tp], now: Tick) -> Vec<(Tp, u64)> {
        let mut assigned = Vec::with_capacity(partitions.len());
        for &partition in partitions {
            let epoch = self.next_epoch;
            self.next_epoch += 1;
            self.map.insert(
                partition,
                PartitionState {
                    epoch,
                    offsets: OffsetTracker::default(),
                    lanes: HashMap::default(),
                    held_bytes: 0,
                    waiting_lanes: 0,
                    paused: false,
                    revoking: false,
                    active_at: now,
                    full_since: None,
                    stored: None,
                },
            );
            assigned.push((partition, epoch));
        }
        assigned
    }

    /// Starts revoking `partitions`: their records not sent to a worker are dropped (the next
    /// owner reads them again from the last commit) and nothing more of them is sent.
    pub fn begin_revoke(&mut self, partitions: &[Tp]) {
        for partition in partitions {
            if let Some(state) = self.map.get_mut(partition) {
                state.revoking = true;
                for lane in state.lanes.values_mut() {
                    if !lane.busy {
                        self.ready_records -= lane.hand.len();
                    }
                    lane.hand = Chunk::default();
                    lane.oldest = None;
                }
            }
        }
        self.ready.retain(|lane| !partitions.contains(&lane.tp));
    }

    /// Forgets revoked `partitions`.
    pub fn remove(&mut self, partitions: &[Tp]) {
        for partition in partitions {
            self.map.remove(partition);
        }
    }

    #[cfg(test)]
    pub fn get(&self, partition: Tp) -> Option<&PartitionState> {
        self.map.get(&partition)
    }

    pub fn iter(&self) -> impl Iterator<Item = (Tp, &PartitionState)> + '_ {
        self.map.iter().map(|(&p, s)| (p, s))
    }

    pub fn assigned(&self) -> Vec<Tp> {
        self.map.keys().copied().collect()
    }

    /// Whether work of `partition` from assignment `epoch` still counts.
    pub fn is_current(&self, partition: Tp, epoch: u64) -> bool {
        self.map
            .get(&partition)
            .is_some_and(|s| s.epoch == epoch && !s.revoking)
    }

    /// The lane `record` belongs to; `None` for a record of a topic never assigned.
    #[inline]
    fn lane_of<M: Message>(&self, record: &M) -> Option<Lane> {
        let key = match self.ordering {
            ProcessingOrder::Partition => 0,
            ProcessingOrder::Key => record.key().map_or(0, key_hash),
        };
        Some(Lane {
            tp: Tp {
                topic: self.names.find(record.topic())?,
                partition: record.partition(),
            },
            key,
        })
    }

    /// Takes a record in hand. Returns false for a record that is not ours to take (its
    /// partition not assigned, or read again).
    pub fn receive<M: Message>(&mut self, record: &M, now: Tick) -> bool {
        let Some(lane) = self.lane_of(record) else {
            return false;
        };
        let Some(state) = self.map.get_mut(&lane.tp) else {
            return false;
        };
        if state.revoking || !state.offsets.receive(record.offset()) {
            return false;
        }
        state.active_at = now;
        state.held_bytes +=
            record.payload().map_or(0, <[u8]>::len) + record.key().map_or(0, <[u8]>::len);
        let spare = &mut self.spare;
        let hand = state.lanes.entry(lane.key).or_insert_with(|| LaneState {
            hand: spare.pop().unwrap_or_default(),
            ..LaneState::default()
        });
        hand.hand.push(record);
        hand.oldest.get_or_insert(now);
        if !hand.busy {
            self.ready_records += 1;
            if !hand.queued {
                hand.queued = true;
                self.ready.push_back(lane);
            }
        }
        true
    }

    /// Records ready to go to a worker.
    pub fn ready_records(&self) -> usize {
        self.ready_records
    }

    /// When the oldest record ready to go arrived.
    pub fn oldest_ready(&self) -> Option<Tick> {
        self.ready
            .iter()
            .filter_map(|lane| self.lane(lane).and_then(|l| l.oldest))
            .min()
    }

    fn lane(&self, lane: &Lane) -> Option<&LaneState> {
        self.map.get(&lane.tp)?.lanes.get(&lane.key)
    }

    /// The next ready lane's records, at most `limit` of them, with the partition's epoch;
    /// the lane is busy until [`free`](Self::free).
    pub fn take(&mut self, limit: usize) -> Option<(Lane, u64, Chunk)> {
        while let Some(lane) = self.ready.pop_front() {
            let Some(state) = self.map.get_mut(&lane.tp) else {
                continue;
            };
            let epoch = state.epoch;
            let Some(hand) = state.lanes.get_mut(&lane.key) else {
                continue;
            };
            hand.queued = false;
            if hand.busy || hand.hand.is_empty() {
                continue;
            }
            hand.busy = true;
            let chunk = match hand.hand.len() > limit {
                true => hand.hand.take_front(limit),
                false => {
                    hand.oldest = None;
                    let fresh = self.spare.pop().unwrap_or_default();
                    std::mem::replace(&mut hand.hand, fresh)
                }
            };
            self.ready_records -= chunk.len() + hand.hand.len();
            return Some((lane, epoch, chunk));
        }
        None
    }

    /// Keeps the buffers of a finished job's `chunk` for a hand to come.
    pub fn recycle(&mut self, mut chunk: Chunk) {
        if self.spare.len() < SPARE {
            chunk.clear();
            self.spare.push(chunk);
        }
    }

    /// The job of `lane` is over: its records wait no longer.
    pub fn free(&mut self, lane: Lane) {
        let Some(state) = self.map.get_mut(&lane.tp) else {
            return;
        };
        let Some(hand) = state.lanes.get_mut(&lane.key) else {
            return;
        };
        hand.busy = false;
        if hand.hand.is_empty() {
            // Lanes come and go with keys: keep the table to lanes with something to do.
            if let Some(gone) = state.lanes.remove(&lane.key) {
                if self.spare.len() < SPARE {
                    self.spare.push(gone.hand);
                }
            }
        } else if !state.revoking {
            self.ready_records += hand.hand.len();
            if !hand.queued {
                hand.queued = true;
                self.ready.push_back(lane);
            }
        }
    }

    /// A lane starts or stops waiting for a retry.
    pub fn set_waiting(&mut self, lane: Lane, waiting: bool) {
        if let Some(state) = self.map.get_mut(&lane.tp) {
            match waiting {
                true => state.waiting_lanes += 1,
                false => state.waiting_lanes = state.waiting_lanes.saturating_sub(1),
            }
        }
    }

    /// Records of `partition` from assignment `epoch` are finished: their offsets, and the
    /// bytes they held.
    pub fn finish(
        &mut self,
        partition: Tp,
        epoch: u64,
        finished: impl IntoIterator<Item = (i64, usize)>,
    ) {
        if let Some(state) = self.map.get_mut(&partition) {
            if state.epoch == epoch {
                for (offset, bytes) in finished {
                    state.offsets.finish(offset);
                    state.held_bytes = state.held_bytes.saturating_sub(bytes);
                }
            }
        }
    }

    /// Commit points that moved since last stored, now counted as stored.
    pub fn take_unstored(&mut self, only: Option<&[Tp]>) -> Vec<(Tp, i64)> {
        let mut moved = Vec::new();
        for (&partition, state) in &mut self.map {
            if only.is_some_and(|only| !only.contains(&partition)) {
                continue;
            }
            if let Some(point) = state.offsets.commit_point() {
                if state.stored != Some(point) {
                    state.stored = Some(point);
                    moved.push((partition, point));
                }
            }
        }
        moved
    }

    /// The consumer is stopping: pause everything.
    pub fn stop(&mut self) {
        self.stopping = true;
    }

    /// Whether a partition that is not paused is full: no more records should be taken.
    pub fn any_full(&self) -> bool {
        self.map
            .values()
            .any(|state| state.full_since.is_some() && !state.paused)
    }

    /// Notes which partitions are full at `now`, and returns those whose pause state must
    /// change: (to pause, to resume). The caller applies them and reports back with
    /// [`paused`](Self::paused).
    pub fn pauses_due(&mut self, now: Tick) -> (Vec<Tp>, Vec<Tp>) {
        let (mut pause, mut resume) = (Vec::new(), Vec::new());
        let by_lane_wait = self.ordering == ProcessingOrder::Partition;
        for (&partition, state) in &mut self.map {
            let held = state.offsets.in_hand();
            let full = held >= self.window.records || state.held_bytes >= self.window.bytes;
            let drained =
                held <= self.window.records / 2 && state.held_bytes <= self.window.bytes / 2;
            if full {
                state.full_since.get_or_insert(now);
            } else if drained {
                state.full_since = None;
            }
            let too_long = state
                .full_since
                .is_some_and(|since| now.passed(since, PAUSE_AFTER));
            let waiting = by_lane_wait && state.waiting_lanes > 0;
            let hold = self.stopping || waiting || state.revoking;
            if !state.paused && (too_long || hold) {
                pause.push(partition);
            } else if state.paused && state.full_since.is_none() && !hold {
                resume.push(partition);
            }
        }
        (pause, resume)
    }

    /// `partitions` were paused (`true`) or resumed at `now`.
    pub fn paused(&mut self, partitions: &[Tp], paused: bool, now: Tick) {
        for partition in partitions {
            if let Some(state) = self.map.get_mut(partition) {
                state.paused = paused;
                state.active_at = now;
            }
        }
    }
}

/// The lane table's hasher: lane keys are hashes already (or 0), so they are used as they are.
#[derive(Debug, Default)]
pub(crate) struct LaneKeyHasher(u64);

impl std::hash::Hasher for LaneKeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, key: u64) {
        self.0 = key;
    }
}

/// A key's lane: a hash of its bytes. Two keys sharing a hash share a lane, which only
/// orders them one after the other.
fn key_hash(key: &[u8]) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    // A fixed hasher: a key keeps its lane for the life of the process.
    BuildHasherDefault::<DefaultHasher>::default().hash_one(key) | 1
}

#[cfg(test)]
mod tests;
