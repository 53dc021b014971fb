//! The consumer engine against a model of what it promises, on librdkafka's mock cluster.
//!
//! Each case runs kafkad processes (the real binary, an http sink to a local server) through
//! a random sequence of events: records produced, a downstream that fails now and then, is
//! down for a while, is slow, or refuses one record for good; members joining, leaving
//! gracefully, and killed with SIGKILL; the dead-letter topic refusing writes for a while.
//! Then the downstream heals, one member drains what is left, and the case checks, per
//! partition and per group:
//!
//! * lost = 0: every produced record reached the downstream or the dead-letter topic;
//! * the committed offset was never ahead of what was finished: at every sample, every
//!   record below it had been accepted (or its dead-letter copy made) before the sample;
//! * no partition stays paused: the drain ends within its deadline;
//! * order: no record reached the downstream before the one before it of its key (and, with
//!   `ordering = "partition"`, of its partition) had been accepted or dead-lettered.
//!
//! Duplicates (records accepted again after a kill or a rebalance) are counted and printed,
//! not forbidden: that is at-least-once. `KAFKAD_MODEL_CASES` sets how many random cases run
//! (default 6); a fixed case (a rebalance while partitions wait for a retry) always runs.

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use rdkafka::bindings::rd_kafka_resp_err_t as RDKafkaRespErr;
use rdkafka::message::{Headers, OwnedMessage};
use rdkafka::Message;

use support::http_server::{HttpServer, Reply};
use support::offsets::OffsetReader;
use support::process::Kafkad;
use support::{message, produce_raw, read_topic, MockTopology};
use support::{RawRecord, TOPIC};

const DLQ: &str = "andrew-topic.dlq";
const PARTITIONS: i32 = 3;
const KEYS: i64 = 5;
const DRAIN: Duration = Duration::from_secs(120);

/// What the downstream does to the next requests.
#[derive(Debug, Default)]
struct Downstream {
    /// Requests still to answer 503.
    transient: usize,
    /// Answer 503 until then.
    outage_until: Option<Instant>,
    /// Take this long to answer.
    slow: Duration,
    /// Message ids answered 400, for good.
    poison: HashSet<i64>,
}

/// One event of a case.
#[derive(Debug, Clone)]
enum Event {
    Produce(u8),
    Transient(u8),
    Outage(u16),
    Slow(u8),
    /// The next record produced is one the downstream refuses for good.
    Poison,
    Join,
    Leave,
    Kill,
    /// The dead-letter topic refuses writes for this many milliseconds.
    DeadLetterRefusal(u16),
    Pause(u16),
}

/// How the members of a case consume.
#[derive(Debug, Clone, Copy)]
struct Shape {
    batch: bool,
    concurrency: u8,
    by_key: bool,
}

fn events() -> impl Strategy<Value = Vec<Event>> {
    let event = prop_oneof![
        4 => (5u8..40).prop_map(Event::Produce),
        1 => (1u8..6).prop_map(Event::Transient),
        1 => (300u16..2500).prop_map(Event::Outage),
        1 => (5u8..60).prop_map(Event::Slow),
        1 => Just(Event::Poison),
        2 => Just(Event::Join),
        1 => Just(Event::Leave),
        1 => Just(Event::Kill),
        1 => (300u16..2000).prop_map(Event::DeadLetterRefusal),
        1 => (100u16..1500).prop_map(Event::Pause),
    ];
    proptest::collection::vec(event, 4..12)
}

fn shapes() -> impl Strategy<Value = Shape> {
    (
        any::<bool>(),
        prop_oneof![Just(1u8), Just(4u8)],
        any::<bool>(),
    )
        .prop_map(|(batch, concurrency, by_key)| Shape {
            batch,
            concurrency,
            by_key,
        })
}

/// One case's world: the mock cluster, the downstream, the members.
struct World {
    mock: MockTopology,
    server: HttpServer,
    downstream: Arc<Mutex<Downstream>>,
    dir: tempfile::TempDir,
    shape: Shape,
    members: Vec<Kafkad>,
    started: usize,
    next_id: i64,
    /// Message ids produced, in order.
    produced: Vec<i64>,
    runtime: tokio::runtime::Runtime,
}

impl World {
    fn new(shape: Shape) -> Self {
        let mock = MockTopology::start(PARTITIONS);
        let downstream = Arc::new(Mutex::new(Downstream::default()));
        let answering = Arc::clone(&downstream);
        let server = HttpServer::start_with(move |request| answer(&answering, request.body));
        World {
            mock,
            server,
            downstream,
            dir: tempfile::tempdir().expect("dir"),
            shape,
            members: Vec::new(),
            started: 0,
            next_id: 1,
            produced: Vec::new(),
            runtime: tokio::runtime::Runtime::new().expect("runtime"),
        }
    }

    fn group(&self) -> &'static str {
        match self.shape.batch {
            true => "batch-message-group",
            false => "single-message-group",
        }
    }

    fn downstream(&self) -> std::sync::MutexGuard<'_, Downstream> {
        self.downstream.lock().expect("downstream")
    }

    fn join(&mut self) {
        self.started += 1;
        let role = if self.shape.batch { "batch" } else { "single" };
        let ordering = if self.shape.by_key {
            "key"
        } else {
            "partition"
        };
        let env = [
            (
                "KAFKAD_KAFKA__BOOTSTRAP_SERVERS",
                self.mock.bootstrap.clone(),
            ),
            ("KAFKAD_KAFKA__SESSION_TIMEOUT_MS", "6000".to_owned()),
            ("KAFKAD_KAFKA__HEARTBEAT_INTERVAL_MS", "500".to_owned()),
            ("KAFKAD_KAFKA__FETCH_WAIT_MAX_MS", "50".to_owned()),
            ("KAFKAD_KAFKA__MESSAGE_TIMEOUT_MS", "1000".to_owned()),
            ("KAFKAD_HTTP__LISTEN", String::new()),
            ("KAFKAD_SINK__KIND", "http".to_owned()),
            ("KAFKAD_SINK__URL", self.server.url()),
            ("KAFKAD_SINK__TIMEOUT", "5s".to_owned()),
            ("KAFKAD_RETRY__INITIAL", "50ms".to_owned()),
            ("KAFKAD_RETRY__MAX", "300ms".to_owned()),
            ("KAFKAD_RETRY__MAX_ATTEMPTS", "3".to_owned()),
            (
                "KAFKAD_CONSUMER__CONCURRENCY",
                self.shape.concurrency.to_string(),
            ),
            ("KAFKAD_CONSUMER__ORDERING", ordering.to_owned()),
            ("KAFKAD_CONSUMER__DRAIN_TIMEOUT", "2s".to_owned()),
            ("KAFKAD_BATCH__MIN_SIZE", "3".to_owned()),
            ("KAFKAD_BATCH__MAX_SIZE", "8".to_owned()),
            ("KAFKAD_BATCH__MAX_WAIT", "200ms".to_owned()),
            ("KAFKAD_SHUTDOWN_TIMEOUT", "5s".to_owned()),
        ];
        let name = format!("member-{}", self.started);
        let member = Kafkad::spawn(&name, self.dir.path(), &["--role", role], &env);
        self.members.push(member);
    }

    /// Stops the oldest member with `signal`, waiting for it to end.
    fn stop_one(&mut self, signal: i32) {
        if self.members.is_empty() {
            return;
        }
        let mut member = self.members.remove(0);
        member.signal(signal);
        member.wait(Duration::from_secs(20));
    }

    fn produce(&mut self, count: u8) {
        let records: Vec<RawRecord> = (0..count)
            .map(|_| {
                let id = self.next_id;
                self.next_id += 1;
                self.produced.push(id);
                RawRecord {
                    key: Some(format!("k{}", id % KEYS).into_bytes()),
                    value: Some(message("p", id)),
                    ..RawRecord::default()
                }
            })
            .collect();
        self.runtime
            .block_on(produce_raw(&self.mock.bootstrap, TOPIC, &records));
    }

    fn refuse_dead_letters(&self, refuse: bool) {
        let error = match refuse {
            true => RDKafkaRespErr::RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE,
            false => RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR,
        };
        self.mock
            .cluster
            .mock()
            .topic_error(DLQ, error)
            .expect("topic error");
    }

    fn apply(&mut self, event: &Event) {
        match *event {
            Event::Produce(count) => self.produce(count),
            Event::Transient(calls) => self.downstream().transient += usize::from(calls),
            Event::Outage(millis) => {
                self.downstream().outage_until =
                    Some(Instant::now() + Duration::from_millis(u64::from(millis)));
            }
            Event::Slow(millis) => {
                self.downstream().slow = Duration::from_millis(u64::from(millis))
            }
            Event::Poison => {
                let id = self.next_id;
                self.downstream().poison.insert(id);
                self.produce(1);
            }
            Event::Join => self.join(),
            Event::Leave => self.stop_one(libc::SIGTERM),
            Event::Kill => self.stop_one(libc::SIGKILL),
            Event::DeadLetterRefusal(millis) => {
                self.refuse_dead_letters(true);
                std::thread::sleep(Duration::from_millis(u64::from(millis)));
                self.refuse_dead_letters(false);
            }
            Event::Pause(millis) => std::thread::sleep(Duration::from_millis(u64::from(millis))),
        }
    }

    /// The group's dead-letter copies: message id and when the copy was made.
    fn dead_lettered(&self) -> HashMap<i64, Instant> {
        let copies = read_topic(&self.mock.bootstrap, DLQ, 1);
        let now = (Instant::now(), std::time::SystemTime::now());
        copies
            .iter()
            .filter(|copy| header(copy, "kafkad.consumer.group").as_deref() == Some(self.group()))
            .filter_map(|copy| {
                let id = id_of(copy.payload()?)?;
                let made = copy.timestamp().to_millis()?;
                let since_epoch = now.1.duration_since(std::time::UNIX_EPOCH).ok()?;
                let age = since_epoch.saturating_sub(Duration::from_millis(made as u64));
                Some((id, now.0.checked_sub(age)?))
            })
            .collect()
    }

    /// Accepted message ids in the order the downstream accepted them, each with when.
    fn accepted(&self) -> Vec<(Instant, i64)> {
        self.server
            .accepted_at()
            .into_iter()
            .flat_map(|(at, body)| {
                support::sent_keys(&[body])
                    .into_iter()
                    .map(move |(_, id)| (at, id))
            })
            .collect()
    }
}

/// The downstream's answer to one request.
fn answer(downstream: &Mutex<Downstream>, body: &[u8]) -> Reply {
    let ids: Vec<i64> = support::sent_keys(&[body.to_vec()])
        .into_iter()
        .map(|(_, id)| id)
        .collect();
    let slow = {
        let mut d = downstream.lock().expect("downstream");
        if ids.iter().any(|id| d.poison.contains(id)) {
            return 400.into();
        }
        if d.outage_until.is_some_and(|until| Instant::now() < until) {
            return 503.into();
        }
        if d.transient > 0 {
            d.transient -= 1;
            return 503.into();
        }
        d.slow
    };
    std::thread::sleep(slow);
    200.into()
}

fn header(record: &OwnedMessage, key: &str) -> Option<String> {
    let headers = record.headers()?;
    headers
        .iter()
        .filter(|h| h.key == key)
        .last()
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

fn id_of(value: &[u8]) -> Option<i64> {
    let message: serde_json::Value = serde_json::from_slice(value).ok()?;
    message["message_id"].as_i64()
}

/// The group's committed offset of each partition, and when it was read.
type Sample = (Instant, Vec<Option<i64>>);

/// Samples the group's committed offsets every 100 ms until stopped.
struct Sampler {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Vec<Sample>>>,
}

impl Sampler {
    fn start(bootstrap: &str, group: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (bootstrap, group, stopped) =
            (bootstrap.to_owned(), group.to_owned(), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let reader = OffsetReader::new(&bootstrap, &group);
            let mut samples = Vec::new();
            while !stopped.load(Ordering::SeqCst) {
                let offsets = reader.committed(TOPIC, PARTITIONS);
                samples.push((Instant::now(), offsets));
                std::thread::sleep(Duration::from_millis(100));
            }
            samples
        });
        Sampler {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> Vec<Sample> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread
            .take()
            .map(|t| t.join().expect("sampler"))
            .unwrap_or_default()
    }
}

/// Runs `events` in a world of `shape` and checks the model; a description of the first
/// broken promise, if any.
fn run_case(shape: Shape, events: &[Event]) -> Result<(), String> {
    let mut world = World::new(shape);
    let sampler = Sampler::start(&world.mock.bootstrap, world.group());
    world.join();
    for event in events {
        world.apply(event);
    }
    // Heal everything, keep one member, and let it drain.
    let poison = std::mem::take(&mut world.downstream().poison);
    *world.downstream() = Downstream {
        poison,
        ..Downstream::default()
    };
    world.refuse_dead_letters(false);
    if world.members.is_empty() {
        world.join();
    }
    let produced: HashSet<i64> = world.produced.iter().copied().collect();
    let deadline = Instant::now() + DRAIN;
    let (accepted, dead) = loop {
        let accepted = world.accepted();
        let dead = world.dead_lettered();
        let done: HashSet<i64> = accepted
            .iter()
            .map(|&(_, id)| id)
            .chain(dead.keys().copied())
            .collect();
        if produced.is_subset(&done) || Instant::now() > deadline {
            break (accepted, dead);
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    while !world.members.is_empty() {
        world.stop_one(libc::SIGTERM);
    }
    let samples = sampler.finish();
    check(&world, &accepted, &dead, &samples)
}

/// The model's promises, against what happened.
fn check(
    world: &World,
    accepted: &[(Instant, i64)],
    dead: &HashMap<i64, Instant>,
    samples: &[Sample],
) -> Result<(), String> {
    let records = read_topic(&world.mock.bootstrap, TOPIC, PARTITIONS);
    let mut first_done: HashMap<i64, (usize, Instant)> = HashMap::new();
    for (index, &(at, id)) in accepted.iter().enumerate() {
        first_done.entry(id).or_insert((index, at));
    }
    let mut per_partition: BTreeMap<i32, Vec<(i64, i64, String)>> = BTreeMap::new();
    for record in &records {
        let id = record
            .payload()
            .and_then(id_of)
            .ok_or("a record without a message id")?;
        let key = String::from_utf8_lossy(record.key().unwrap_or_default()).into_owned();
        per_partition
            .entry(record.partition())
            .or_default()
            .push((record.offset(), id, key));
    }
    let finished_at = |id: i64| -> Option<Instant> {
        let accepted = first_done.get(&id).map(|&(_, at)| at);
        match (accepted, dead.get(&id).copied()) {
            (Some(a), Some(d)) => Some(a.min(d)),
            (a, d) => a.or(d),
        }
    };
    let lost: Vec<i64> = world
        .produced
        .iter()
        .copied()
        .filter(|&id| finished_at(id).is_none())
        .collect();
    let duplicates = accepted.len() - first_done.len();
    eprintln!(
        "model {:?}: produced {}, accepted {} ({} first time), dead-lettered {}, lost {}, duplicates {} (redelivered after kills and rebalances), commit samples {}",
        world.shape,
        world.produced.len(),
        accepted.len(),
        first_done.len(),
        dead.len(),
        lost.len(),
        duplicates,
        samples.len()
    );
    if !lost.is_empty() {
        return Err(format!("lost records {lost:?}"));
    }
    // The committed offset never passed a record not finished by then (5 ms of slack for the
    // two clocks compared: the server's answer and the copy's timestamp, in milliseconds).
    let slack = Duration::from_millis(5);
    for (at, committed) in samples {
        for (partition, records) in &per_partition {
            let Some(Some(committed)) = committed.get(*partition as usize) else {
                continue;
            };
            for &(offset, id, _) in records.iter().filter(|r| r.0 < *committed) {
                let done = finished_at(id).is_some_and(|done| done <= *at + slack);
                if !done {
                    return Err(format!(
                        "partition {partition} committed at {committed} before offset {offset} (message {id}) was finished"
                    ));
                }
            }
        }
    }
    // Order: nothing reached the downstream before its predecessor (of its key, and with
    // partition ordering of its partition) was finished.
    for records in per_partition.values() {
        let mut previous_of_key: HashMap<&str, i64> = HashMap::new();
        let mut previous_in_partition: Option<i64> = None;
        for (_, id, key) in records {
            let predecessors = [
                previous_of_key.get(key.as_str()).copied(),
                previous_in_partition.filter(|_| !world.shape.by_key),
            ];
            if let Some(&(index, _)) = first_done.get(id) {
                for before in predecessors.into_iter().flatten() {
                    let kept = dead.contains_key(&before)
                        || first_done.get(&before).is_some_and(|&(i, _)| i < index);
                    if !kept {
                        return Err(format!(
                            "message {id} reached the downstream before message {before}, which comes before it"
                        ));
                    }
                }
            }
            previous_of_key.insert(key.as_str(), *id);
            previous_in_partition = Some(*id);
        }
    }
    Ok(())
}

#[test]
fn random_sequences_of_failures_rebalances_and_kills_keep_every_promise() {
    let cases = std::env::var("KAFKAD_MODEL_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(6);
    let mut runner = TestRunner::new(Config {
        cases,
        // Each case runs processes for tens of seconds; shrinking would take hours.
        max_shrink_iters: 0,
        failure_persistence: None,
        ..Config::default()
    });
    let outcome = runner.run(&(shapes(), events()), |(shape, events)| {
        eprintln!("model case: {shape:?} {events:?}");
        run_case(shape, &events).map_err(TestCaseError::fail)
    });
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
}

/// A rebalance while every partition waits for a retry (the downstream is down), then new
/// records once it is back: all reach it. librdkafka keeps a partition's pause flag across
/// unassign and assign, so a partition paused for the retry and assigned again would never be
/// fetched if the engine did not resume what it is given.
#[test]
fn a_rebalance_while_partitions_wait_for_a_retry_leaves_none_paused() {
    let shape = Shape {
        batch: false,
        concurrency: 1,
        by_key: false,
    };
    let events = [
        Event::Outage(20_000),
        Event::Produce(30),
        Event::Pause(2000),
        Event::Join,
        // The rebalance takes the mock a session timeout at most.
        Event::Pause(8000),
    ];
    let mut world_events = events.to_vec();
    world_events.push(Event::Produce(30));
    // The outage is healed by run_case before the drain: the 30 records produced after the
    // rebalance, on partitions paused before it, must arrive.
    run_case(shape, &world_events).unwrap_or_else(|broken| panic!("{broken}"));
}
