//! The poison-record suite: a topic seeded with valid messages interleaved
//! with every kind of bad record. For both consumer roles: every valid message is processed,
//! every bad record lands in the dead-letter topic exactly once per group, with its original
//! key, value and headers and the headers that say why and where from; the consumer keeps
//! running and commits to the end of every partition. Then the same with the dead-letter
//! topic disabled, and with the dead-letter topic failing.

mod support;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use kafkad::config::Role;
use kafkad::reconcile::{reconcile, MessageKey};
use kafkad::roles::ConsumerReport;
use kafkad::sink::MemorySink;
use kafkad::telemetry::metrics::{ConsumerMetrics, ReasonLabel};
use rdkafka::message::{Headers, OwnedMessage};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::Message;
use serde_json::{json, Value};
use support::offsets::{self, wait_committed};
use support::*;

const WAIT: Duration = Duration::from_secs(60);
const DLQ: &str = "andrew-topic.dlq";
const PRODUCER: &str = "poison-producer";
/// Small enough that a 150 kB record is too large, large enough for the 10,000-deep record.
const MAX_RECORD_BYTES: &str = "100000";

/// One bad record of the suite and the `kafkad.error.kind` it must be dead-lettered with.
struct Bad {
    name: &'static str,
    kind: &'static str,
    value: Option<Vec<u8>>,
}

impl Bad {
    fn key(&self) -> Vec<u8> {
        format!("bad-{}", self.name).into_bytes()
    }

    /// Custom headers, one of them not UTF-8: they must come back byte for byte.
    fn headers(&self) -> Vec<(String, Vec<u8>)> {
        vec![
            (
                "trace-id".to_owned(),
                format!("trace-{}", self.name).into_bytes(),
            ),
            ("binary".to_owned(), vec![0, 1, 0xfe, 0xff]),
        ]
    }
}

/// A well-formed message value as JSON, for mutating into a mistyped one.
fn valid_json() -> serde_json::Map<String, Value> {
    let Value::Object(map) = json!({
        "message_id": 1,
        "content": "looks fine",
        "producer_id": "mallory",
        "timestamp": "2026-11-25T18:08:06.906824",
        "metadata": {"source": "poison"}
    }) else {
        unreachable!()
    };
    map
}

fn with(field: &str, value: Value) -> Option<Vec<u8>> {
    let mut map = valid_json();
    map.insert(field.to_owned(), value);
    Some(serde_json::to_vec(&map).expect("json"))
}

fn without(field: &str) -> Option<Vec<u8>> {
    let mut map = valid_json();
    map.remove(field);
    Some(serde_json::to_vec(&map).expect("json"))
}

/// `{"a":{"a":...1...}}`, `depth` objects deep.
fn nested_objects(depth: usize) -> String {
    format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth))
}

fn bad_records() -> Vec<Bad> {
    let deep_metadata = format!(
        r#"{{"message_id":1,"content":"c","producer_id":"p","timestamp":"2026-11-25T18:08:06Z","metadata":{}}}"#,
        nested_objects(10_000)
    );
    let bad = |name, kind, value: Option<Vec<u8>>| Bad { name, kind, value };
    vec![
        bad("not-utf8", "not_utf8", Some(vec![b'{', 0xc3, 0x28, 0xff, b'}'])),
        bad("not-json", "not_json", Some(b"this is not json".to_vec())),
        bad("json-array", "not_json", Some(b"[1, 2, 3]".to_vec())),
        bad("trailing-garbage", "not_json", {
            let mut value = crate_message(9);
            value.extend_from_slice(b" trailing");
            Some(value)
        }),
        bad("empty", "empty", Some(Vec::new())),
        bad("tombstone", "tombstone", None),
        bad("missing-content", "missing_field", without("content")),
        bad("missing-metadata", "missing_field", without("metadata")),
        bad("string-message-id", "wrong_type", with("message_id", json!("7"))),
        bad("number-content", "wrong_type", with("content", json!(42))),
        bad("null-producer-id", "wrong_type", with("producer_id", Value::Null)),
        bad("bad-timestamp", "wrong_type", with("timestamp", json!("yesterday"))),
        bad("metadata-array", "wrong_type", with("metadata", json!([1, 2]))),
        bad(
            "duplicate-field",
            "duplicate_field",
            Some(
                br#"{"message_id":1,"message_id":2,"content":"c","producer_id":"p","timestamp":"2026-11-25T18:08:06Z","metadata":{}}"#
                    .to_vec(),
            ),
        ),
        bad("above-limit", "too_large", with("content", json!("x".repeat(150_000)))),
        bad("one-mib-content", "too_large", with("content", json!("x".repeat(1 << 20)))),
        bad("deep-metadata", "too_deep", Some(deep_metadata.into_bytes())),
    ]
}

fn crate_message(id: i64) -> Vec<u8> {
    message(PRODUCER, id)
}

/// Valid message `id` with an unknown extra field nested 10,000 arrays deep. Unknown fields
/// are skipped without recursing (serde_json ignores a value with an explicit stack), so this
/// is a good message, processed like any other, and decoding it is no danger to the stack.
fn deep_extra_field_message(id: i64) -> Vec<u8> {
    let mut value = crate_message(id);
    assert_eq!(value.pop(), Some(b'}'));
    value.extend_from_slice(b",\"extra\":");
    value.extend(std::iter::repeat_n(b'[', 10_000));
    value.extend(std::iter::repeat_n(b']', 10_000));
    value.push(b'}');
    value
}

/// The valid records `1..=good`: the last one carries the deeply nested unknown field.
fn good_values(good: i64) -> Vec<(i64, Vec<u8>)> {
    (1..=good)
        .map(|id| {
            let value = if id == good {
                deep_extra_field_message(id)
            } else {
                crate_message(id)
            };
            (id, value)
        })
        .collect()
}

/// The seeded topic: valid messages `1..=good` and the bad records interleaved, spread
/// round-robin over `partitions`.
fn seed(bad: &[Bad], good: i64, partitions: i32) -> Vec<RawRecord> {
    let mut records = Vec::new();
    let mut bad = bad.iter();
    for (id, value) in good_values(good) {
        records.push(RawRecord {
            key: Some(id.to_string().into_bytes()),
            value: Some(value),
            headers: vec![("kind".to_owned(), b"good".to_vec())],
            partition: None,
        });
        if let Some(b) = bad.next() {
            records.push(RawRecord {
                key: Some(b.key()),
                value: b.value.clone(),
                headers: b.headers(),
                partition: None,
            });
        }
    }
    assert!(bad.next().is_none(), "every bad record is seeded");
    for (n, record) in records.iter_mut().enumerate() {
        record.partition = Some(n as i32 % partitions);
    }
    records
}

/// Where each seeded record landed: key -> (partition, offset).
async fn source_offsets(bootstrap: &str, partitions: i32) -> HashMap<Vec<u8>, (i32, i64)> {
    let b = bootstrap.to_owned();
    let records = blocking(move || read_topic(&b, TOPIC, partitions)).await;
    records
        .iter()
        .map(|r| {
            (
                r.key().expect("every seeded record has a key").to_vec(),
                (r.partition(), r.offset()),
            )
        })
        .collect()
}

fn decode_errors(metrics: &ConsumerMetrics, kind: &'static str) -> u64 {
    metrics
        .decode_errors
        .get_or_create(&ReasonLabel { reason: kind })
        .get()
}

fn header<'a>(record: &'a OwnedMessage, name: &str) -> Option<&'a [u8]> {
    let headers = record.headers()?;
    headers.iter().find(|h| h.key == name).and_then(|h| h.value)
}

fn header_str<'a>(record: &'a OwnedMessage, name: &str) -> &'a str {
    std::str::from_utf8(header(record, name).unwrap_or_else(|| panic!("header {name}")))
        .expect("kafkad headers are UTF-8")
}

/// Checks the dead-letter copies `group` made: one per bad record, each carrying the
/// original key, value and headers, and kafkad's headers naming the kind and the source.
fn check_dead_letters(
    group: &str,
    dlq: &[OwnedMessage],
    bad: &[Bad],
    sources: &HashMap<Vec<u8>, (i32, i64)>,
) {
    let copies: Vec<&OwnedMessage> = dlq
        .iter()
        .filter(|r| header(r, "kafkad.consumer.group") == Some(group.as_bytes()))
        .collect();
    let keys: Vec<Vec<u8>> = copies
        .iter()
        .map(|r| r.key().expect("key preserved").to_vec())
        .collect();
    let distinct: HashSet<&Vec<u8>> = keys.iter().collect();
    assert_eq!(
        (copies.len(), distinct.len()),
        (bad.len(), bad.len()),
        "{group}: one dead-letter copy per bad record"
    );
    for b in bad {
        let copy = copies
            .iter()
            .find(|r| r.key() == Some(b.key().as_slice()))
            .unwrap_or_else(|| panic!("{group}: {} is in the dead-letter topic", b.name));
        let what = format!("{group}: {}", b.name);
        assert_eq!(copy.payload(), b.value.as_deref(), "{what}: original value");
        let headers: Vec<(String, Option<Vec<u8>>)> = copy
            .headers()
            .expect("headers")
            .iter()
            .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
            .collect();
        let original: Vec<(String, Option<Vec<u8>>)> =
            b.headers().into_iter().map(|(k, v)| (k, Some(v))).collect();
        assert_eq!(
            headers[..original.len()],
            original[..],
            "{what}: original headers first, unchanged"
        );
        let added: Vec<&str> = headers[original.len()..]
            .iter()
            .map(|(k, _)| k.as_str())
            .collect();
        assert_eq!(
            added,
            [
                "kafkad.error",
                "kafkad.error.kind",
                "kafkad.source.topic",
                "kafkad.source.partition",
                "kafkad.source.offset",
                "kafkad.consumer.group"
            ],
            "{what}"
        );
        let (partition, offset) = sources[&b.key()];
        assert_eq!(header_str(copy, "kafkad.error.kind"), b.kind, "{what}");
        assert!(!header_str(copy, "kafkad.error").is_empty(), "{what}");
        assert_eq!(header_str(copy, "kafkad.source.topic"), TOPIC, "{what}");
        assert_eq!(
            header_str(copy, "kafkad.source.partition"),
            partition.to_string(),
            "{what}"
        );
        assert_eq!(
            header_str(copy, "kafkad.source.offset"),
            offset.to_string(),
            "{what}"
        );
    }
    // The error text names the field for field errors.
    let error_of = |name: &str| {
        let key = format!("bad-{name}").into_bytes();
        let copy = copies
            .iter()
            .find(|r| r.key() == Some(key.as_slice()))
            .expect("copy");
        header_str(copy, "kafkad.error").to_owned()
    };
    assert!(error_of("missing-content").contains("content"));
    assert!(error_of("string-message-id").contains("message_id"));
    assert!(error_of("bad-timestamp").contains("timestamp"));
}

/// Settings for a consumer of the suite: the lowered record limit, and a brisk batch, with
/// `extra` on top.
fn suite_settings<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut overrides = vec![
        ("max_record_bytes", MAX_RECORD_BYTES),
        ("batch.max_wait", "500ms"),
        ("kafka.fetch.wait.max.ms", "100"),
    ];
    overrides.extend_from_slice(extra);
    overrides
}

const GROUPS: [(Role, &str); 2] = [
    (Role::Single, "single-message-group"),
    (Role::Batch, "batch-message-group"),
];

/// A mock cluster whose topic (`partitions` partitions) holds the suite: `good` valid messages
/// interleaved with every bad record (see [`seed`]). Returns the cluster, the bad records and
/// the keys of the valid messages.
async fn seeded(partitions: i32, good: i64) -> (MockTopology, Vec<Bad>, HashSet<MessageKey>) {
    let mock = MockTopology::start(partitions);
    let bad = bad_records();
    produce_raw(&mock.bootstrap, TOPIC, &seed(&bad, good, partitions)).await;
    let produced = (1..=good).map(|id| (PRODUCER.to_owned(), id)).collect();
    (mock, bad, produced)
}

/// Waits until every group of [`GROUPS`] committed `expected` (one offset a partition).
async fn wait_groups_committed(mock: &MockTopology, expected: Vec<Option<i64>>) {
    for &(_, group) in &GROUPS {
        wait_committed(&mock.bootstrap, group, expected.clone()).await;
    }
}

/// Waits until every group of [`GROUPS`] committed the end of each of the topic's
/// `partitions` partitions: lag 0.
async fn wait_groups_at_the_end(mock: &MockTopology, partitions: i32) {
    let bootstrap = mock.bootstrap.clone();
    let ends = blocking(move || offsets::ends(&bootstrap, TOPIC, partitions)).await;
    wait_groups_committed(mock, ends.into_iter().map(Some).collect()).await;
}

/// Where the (one-partition) dead-letter topic ends: how many copies were written to it.
async fn dead_letter_end(mock: &MockTopology) -> i64 {
    let bootstrap = mock.bootstrap.clone();
    blocking(move || offsets::ends(&bootstrap, DLQ, 1)[0]).await
}

/// Every record of the (one-partition) dead-letter topic.
async fn dead_letters(mock: &MockTopology) -> Vec<OwnedMessage> {
    let bootstrap = mock.bootstrap.clone();
    blocking(move || read_topic(&bootstrap, DLQ, 1)).await
}

/// One consumer per group of [`GROUPS`], each with its own sink.
fn start_groups(mock: &MockTopology, extra: &[(&str, &str)]) -> Vec<(MemorySink, ConsumerRun)> {
    GROUPS
        .iter()
        .map(|&(role, _)| {
            let sink = MemorySink::default();
            let run = mock.consumer(role, sink.clone(), &suite_settings(extra));
            (sink, run)
        })
        .collect()
}

/// The suite's premise, checked without a broker: each bad record is rejected, with the kind
/// its dead-letter copy must carry.
#[test]
fn every_bad_record_is_rejected_with_its_kind() {
    let limit: usize = MAX_RECORD_BYTES.parse().expect("number");
    for b in bad_records() {
        let kind = kafkad::dlq::inspect(b.value.as_deref(), limit)
            .map(|m| format!("accepted as message {}", m.message_id))
            .unwrap_or_else(|rejection| rejection.kind().to_owned());
        assert_eq!(kind, b.kind, "{}", b.name);
    }
    for (id, value) in good_values(3) {
        let message = kafkad::dlq::inspect(Some(&value), limit).expect("a good record");
        assert_eq!((message.message_id, &*message.producer_id), (id, PRODUCER));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_poison_record_is_dead_lettered_once_and_every_good_one_processed() {
    const PARTITIONS: i32 = 3;
    const GOOD: i64 = 30;
    let (mock, bad, produced) = seeded(PARTITIONS, GOOD).await;
    let sources = source_offsets(&mock.bootstrap, PARTITIONS).await;
    assert_eq!(sources.len(), GOOD as usize + bad.len());

    let runs = start_groups(&mock, &[]);
    let total_bad = 2 * bad.len() as i64;
    let deadline = Instant::now() + WAIT;
    loop {
        let end = dead_letter_end(&mock).await;
        let done = runs.iter().all(|(sink, _)| sink.len() >= GOOD as usize);
        if end >= total_bad && done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "dead-letter topic holds {end} of {total_bad}; processed {:?}",
            runs.iter().map(|(s, _)| s.len()).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Lag 0: each group committed the end of every partition, and is still running.
    wait_groups_at_the_end(&mock, PARTITIONS).await;
    for (sink, run) in &runs {
        assert!(!run.task.is_finished(), "the consumer is still running");
        let r = reconcile(&produced, processed_keys(sink));
        assert_eq!(
            (r.consumed, r.lost, r.duplicates, r.unexpected),
            (30, 0, 0, 0)
        );
    }

    let dlq = dead_letters(&mock).await;
    assert_eq!(
        dlq.len() as i64,
        total_bad,
        "nothing else in the dead-letter topic"
    );
    for &(_, group) in &GROUPS {
        check_dead_letters(group, &dlq, &bad, &sources);
    }

    for ((sink, run), (role, group)) in runs.into_iter().zip(GROUPS) {
        let metrics = run.metrics.clone();
        let report = run.stop().await.expect("stops cleanly");
        let r = reconcile(&produced, processed_keys(&sink));
        eprintln!(
            "poison {role}: {group}: produced {} good + {} bad, processed {} lost {} duplicates {} dead-lettered {}",
            GOOD,
            bad.len(),
            report.processed,
            r.lost,
            r.duplicates,
            report.dead_lettered
        );
        assert_eq!(
            (report.consumed, report.processed, report.dead_lettered),
            (
                GOOD as u64 + bad.len() as u64,
                GOOD as u64,
                bad.len() as u64
            ),
            "{group}"
        );
        assert_eq!(metrics.dead_letter_failures.get(), 0, "{group}");
        let mut kinds: HashMap<&str, u64> = HashMap::new();
        for b in &bad {
            *kinds.entry(b.kind).or_default() += 1;
        }
        for (kind, count) in kinds {
            assert_eq!(decode_errors(&metrics, kind), count, "{group}: {kind}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_dead_letter_topic_disabled_bad_records_are_counted_and_skipped() {
    const PARTITIONS: i32 = 2;
    const GOOD: i64 = 20;
    let (mock, bad, produced) = seeded(PARTITIONS, GOOD).await;
    let runs = start_groups(&mock, &[("dlq_topic", "")]);
    for (sink, run) in &runs {
        wait_until(WAIT, "every record consumed", || {
            run.metrics.dead_lettered.get() == bad.len() as u64 && sink.len() >= GOOD as usize
        })
        .await;
    }
    wait_groups_at_the_end(&mock, PARTITIONS).await;
    assert_eq!(
        dead_letter_end(&mock).await,
        0,
        "nothing was written to a dead-letter topic"
    );
    for ((sink, run), (role, group)) in runs.into_iter().zip(GROUPS) {
        assert!(!run.task.is_finished(), "{group}: still running");
        let metrics = run.metrics.clone();
        let report = run.stop().await.expect("stops cleanly");
        let r = reconcile(&produced, processed_keys(&sink));
        eprintln!(
            "dlq disabled {role}: {group}: produced {GOOD} good + {} bad, processed {} lost {} duplicates {} skipped {}",
            bad.len(),
            report.processed,
            r.lost,
            r.duplicates,
            report.dead_lettered
        );
        assert_eq!((r.consumed, r.lost, r.duplicates), (GOOD as u64, 0, 0));
        assert_eq!(
            (report.processed, report.dead_lettered),
            (GOOD as u64, bad.len() as u64)
        );
        let counted: u64 = [
            "not_utf8",
            "not_json",
            "empty",
            "tombstone",
            "missing_field",
        ]
        .into_iter()
        .chain(["wrong_type", "duplicate_field", "too_large", "too_deep"])
        .map(|kind| decode_errors(&metrics, kind))
        .sum();
        assert_eq!(
            counted,
            bad.len() as u64,
            "{group}: every skip counted by reason"
        );
    }
}

/// One partition: valid 1 and 2, the bad record at offset 2, valid 3 and 4.
const BAD_OFFSET: i64 = 2;

fn one_bad_record() -> Vec<RawRecord> {
    let good = |id: i64| RawRecord {
        key: Some(id.to_string().into_bytes()),
        value: Some(crate_message(id)),
        ..RawRecord::default()
    };
    vec![
        good(1),
        good(2),
        RawRecord {
            key: Some(b"bad".to_vec()),
            value: Some(b"not json".to_vec()),
            headers: vec![("trace-id".to_owned(), b"t-1".to_vec())],
            partition: None,
        },
        good(3),
        good(4),
    ]
}

fn ids(sink: &MemorySink) -> Vec<i64> {
    let mut ids: Vec<i64> = sink.lines().iter().map(|l| l.message_id).collect();
    ids.sort_unstable();
    ids
}

/// A one-partition mock cluster holding [`one_bad_record`].
async fn mock_with_one_bad_record() -> MockTopology {
    let mock = MockTopology::start(1);
    produce_raw(&mock.bootstrap, TOPIC, &one_bad_record()).await;
    mock
}

/// While `failing`, the dead-letter topic has no leader: each copy waits, and times out after
/// `kafka.message.timeout.ms`, a failure that can clear (a refusal for good, such as an
/// authorization failure, stops the consumer instead: tests/kafka_dead_letters.rs). Then the
/// fault clears.
fn dead_letter_topic_fails(mock: &MockTopology, failing: bool) {
    let error = if failing {
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE
    } else {
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR
    };
    mock.cluster
        .mock()
        .topic_error(DLQ, error)
        .expect("dead-letter topic error");
}

/// A mock holding [`one_bad_record`] whose dead-letter topic fails (see
/// [`dead_letter_topic_fails`]), read by one consumer per group of [`GROUPS`], its copies timing
/// out after 1 s, until each has seen `failures` of them fail.
async fn groups_with_failing_copies(
    failures: u64,
) -> (MockTopology, Vec<(MemorySink, ConsumerRun)>) {
    let mock = mock_with_one_bad_record().await;
    dead_letter_topic_fails(&mock, true);
    let runs = start_groups(&mock, &[("kafka.message.timeout.ms", "1000")]);
    for (_, run) in &runs {
        wait_until(WAIT, "dead-letter attempts to fail", || {
            run.metrics.dead_letter_failures.get() >= failures
        })
        .await;
    }
    (mock, runs)
}

/// What `group` committed on the one partition of the topic.
async fn committed(mock: &MockTopology, group: &'static str) -> Vec<Option<i64>> {
    let bootstrap = mock.bootstrap.clone();
    blocking(move || offsets::committed(&bootstrap, group, TOPIC, 1)).await
}

/// A consumer of `group` stopped (its `report`) while the bad record's copy could not be made:
/// nothing dead-lettered, what came before it finished, and the group committed up to the bad
/// record, not past it.
async fn assert_stopped_at_the_bad_record(
    mock: &MockTopology,
    group: &'static str,
    sink: &MemorySink,
    report: &ConsumerReport,
) {
    assert_eq!(report.dead_lettered, 0, "{group}");
    assert_eq!(ids(sink), [1, 2], "{group}: what came before is finished");
    assert_eq!(
        committed(mock, group).await,
        [Some(BAD_OFFSET)],
        "{group}: committed up to the bad record, not past it"
    );
}

/// Waits until both groups committed all five records; the dead-letter topic then, which must
/// hold one copy of the bad record per group (none of any copy that failed or was abandoned).
async fn copies_once_every_group_committed(mock: &MockTopology) -> Vec<OwnedMessage> {
    wait_groups_committed(mock, vec![Some(5)]).await;
    let dlq = dead_letters(mock).await;
    assert_eq!(
        dlq.len(),
        2,
        "one copy per group, of those that failed none"
    );
    dlq
}

/// The groups' next consumers, once dead-letter copies can be made again after a run stopped
/// at the bad record: each receives the bad record again and dead-letters it, goes on to the
/// end, and processes only what came after it (`what` names the case in the output).
async fn assert_the_next_run_resumes_at_the_bad_record(mock: &MockTopology, what: &str) {
    let second = start_groups(mock, &[]);
    for (sink, run) in &second {
        wait_until(WAIT, "the redelivered record dead-lettered", || {
            run.metrics.dead_lettered.get() == 1 && sink.len() >= 2
        })
        .await;
    }
    copies_once_every_group_committed(mock).await;
    for ((sink, run), (role, group)) in second.into_iter().zip(GROUPS) {
        let report = run.stop().await.expect("stops cleanly");
        eprintln!(
            "{what} {role}: {group}: second run processed {} dead-lettered {}",
            report.processed, report.dead_lettered
        );
        assert_eq!(ids(&sink), [3, 4], "{group}: resumes at the bad record");
        assert_eq!((report.processed, report.dead_lettered), (2, 1), "{group}");
    }
}

/// The dead-letter topic refuses writes for a while: the bad record's offset is not committed
/// (the records before it may be) until its copy is acknowledged, then everything completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_dead_letter_topic_holds_the_offset_until_it_recovers() {
    // Three failed attempts each: the copies are retried.
    let (mock, runs) = groups_with_failing_copies(3).await;
    // The single consumer stored 1 and 2 before the bad record; auto commit commits them,
    // and never more while the copy fails.
    wait_committed(
        &mock.bootstrap,
        "single-message-group",
        vec![Some(BAD_OFFSET)],
    )
    .await;
    for _ in 0..5 {
        for &(_, group) in &GROUPS {
            let now = committed(&mock, group).await;
            assert!(
                now[0].is_none_or(|c| c <= BAD_OFFSET),
                "{group}: committed {now:?} past the bad record at {BAD_OFFSET} while its copy fails"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for ((sink, run), (role, _)) in runs.iter().zip(GROUPS) {
        assert_eq!(run.metrics.dead_lettered.get(), 0);
        // Each consumer holds all five records; 3 and 4 wait behind the bad record in its
        // lane: read, but nothing after it processed.
        assert_eq!(run.metrics.consumed.get(), 5, "{role}");
        let processed = ids(sink);
        assert!(
            processed.iter().all(|id| *id <= 2),
            "{role}: nothing after the bad record, got {processed:?}"
        );
        // The single role processed what came before; the batch role holds 1 and 2 in its
        // batch, unprocessed and uncommitted, until the copy is made.
        let expected: &[i64] = if role == Role::Single { &[1, 2] } else { &[] };
        assert_eq!(processed, expected, "{role}");
    }

    // The fault clears: the copy goes through, and the consumers carry on to the end.
    dead_letter_topic_fails(&mock, false);
    for (sink, run) in &runs {
        wait_until(WAIT, "the copy and the rest processed", || {
            run.metrics.dead_lettered.get() == 1 && sink.len() >= 4
        })
        .await;
    }
    let dlq = copies_once_every_group_committed(&mock).await;
    for ((sink, run), (role, group)) in runs.into_iter().zip(GROUPS) {
        assert!(!run.task.is_finished());
        let copy = dlq
            .iter()
            .find(|r| header(r, "kafkad.consumer.group") == Some(group.as_bytes()))
            .expect("copy");
        assert_eq!(copy.key(), Some(&b"bad"[..]));
        assert_eq!(copy.payload(), Some(&b"not json"[..]));
        assert_eq!(header(copy, "trace-id"), Some(&b"t-1"[..]));
        assert_eq!(header_str(copy, "kafkad.error.kind"), "not_json");
        assert_eq!(header_str(copy, "kafkad.source.offset"), "2");
        let failures = run.metrics.dead_letter_failures.get();
        let report = run.stop().await.expect("stops cleanly");
        eprintln!(
            "dlq failing {role}: {group}: produced 4 good + 1 bad, processed {} lost 0 dead-lettered {} after {failures} failed attempts",
            report.processed, report.dead_lettered
        );
        assert_eq!(ids(&sink), [1, 2, 3, 4]);
        assert_eq!((report.processed, report.dead_lettered), (4, 1));
    }
}

/// Shutdown while the dead-letter copy keeps failing: the consumer stops cleanly, with the
/// committed offset exactly at the bad record, which the next consumer of the group receives
/// again and dead-letters once the topic accepts writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_while_the_dead_letter_copy_fails_leaves_the_record_uncommitted() {
    let (mock, first) = groups_with_failing_copies(1).await;
    for ((sink, run), (_, group)) in first.into_iter().zip(GROUPS) {
        let started = Instant::now();
        let report = run
            .stop()
            .await
            .expect("stops cleanly while the copy fails");
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{group}: shutdown is not held up by the failing copy ({:?})",
            started.elapsed()
        );
        assert_stopped_at_the_bad_record(&mock, group, &sink, &report).await;
    }

    // Next run, the topic writable again: the bad record is redelivered and dead-lettered,
    // and the records before it are not processed twice.
    dead_letter_topic_fails(&mock, false);
    assert_the_next_run_resumes_at_the_bad_record(&mock, "dlq shutdown").await;
}

/// Shutdown while a dead-letter copy is in flight and not getting anywhere (every produce
/// attempt answered with a retriable error, which librdkafka keeps retrying): the consumer
/// stops within `shutdown_timeout` anyway, committed up to the bad record and not past it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_not_held_up_by_a_dead_letter_copy_stuck_in_flight() {
    let mock = mock_with_one_bad_record().await;
    // From now on every Produce request fails retriably: only the dead-letter producers
    // produce, and librdkafka retries their copies until `message.timeout.ms` (30 s).
    mock.cluster.fail_requests(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS; 500],
    );
    let shutdown_timeout = Duration::from_secs(3);
    let runs = start_groups(&mock, &[("shutdown_timeout", "3s")]);
    for (_, run) in &runs {
        wait_until(WAIT, "the bad record to be taken up", || {
            run.metrics.consumed.get() >= 3
        })
        .await;
    }
    // Deliberate window: the copies are out, being retried inside librdkafka.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for ((sink, run), (_, group)) in runs.into_iter().zip(GROUPS) {
        assert_eq!(
            run.metrics.dead_lettered.get(),
            0,
            "{group}: no copy got through"
        );
        let started = Instant::now();
        let report = run.stop().await.expect("stops cleanly");
        let took = started.elapsed();
        eprintln!("dlq stuck: {group}: stopped in {took:?}");
        assert!(
            took < shutdown_timeout,
            "{group}: stopping took {took:?}, beyond shutdown_timeout = {shutdown_timeout:?}"
        );
        assert_stopped_at_the_bad_record(&mock, group, &sink, &report).await;
    }
    // Produce works again: the next consumers dead-letter the redelivered record.
    mock.cluster
        .mock()
        .clear_request_errors(RDKafkaApiKey::Produce);
    assert_the_next_run_resumes_at_the_bad_record(&mock, "dlq stuck").await;
}

/// The whole stop of a consumer process fits in `shutdown_timeout` and ends with its report,
/// however its steps go: here the dead-letter copy in flight is refused (retriably, for ever)
/// and the final commit goes to a group coordinator two seconds away. Each step takes its time
/// from the one deadline; a step that took the whole budget for itself would push the exit
/// past it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_with_a_refused_dead_letter_copy_and_a_slow_final_commit_ends_within_shutdown_timeout(
) {
    use rdkafka::mocking::MockCoordinator;
    use support::process::{count_jsonl, read_jsonl, Kafkad};
    const GROUP: &str = "stop-budget";
    const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(4);
    /// What the process may take past the deadline: its report, the exit, and at most one
    /// wait for a client it gave up on.
    const MARGIN: Duration = Duration::from_secs(2);
    /// Half the budget for each request to the coordinator: the final commit, then the
    /// revocation's commit and leaving the group while closing, add up to more than the
    /// budget, so the close must be cut short at the deadline.
    const COORDINATOR_RTT: Duration = Duration::from_secs(2);
    let mock = mock_with_one_bad_record().await;
    mock.cluster
        .partition_leader(TOPIC, 0, 1)
        .expect("leader near");
    mock.cluster
        .mock()
        .coordinator(MockCoordinator::Group(GROUP.to_owned()), 3)
        .expect("coordinator far");
    mock.cluster
        .mock()
        .broker_round_trip_time(3, COORDINATOR_RTT)
        .expect("rtt");
    // Only the dead-letter producer produces from now on; librdkafka retries its copy.
    mock.cluster.fail_requests(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS; 500],
    );
    let dir = tempfile::tempdir().expect("dir");
    let sink = dir.path().join("processed.jsonl");
    let addr = format!("127.0.0.1:{}", free_port());
    let mut consumer = Kafkad::spawn(
        "single",
        dir.path(),
        &["--role", "single"],
        &[
            ("KAFKAD_KAFKA__BOOTSTRAP_SERVERS", mock.bootstrap.clone()),
            ("KAFKAD_KAFKA__GROUP_ID", GROUP.to_owned()),
            // Only the final commit sends what was processed.
            ("KAFKAD_KAFKA__AUTO_COMMIT_INTERVAL_MS", "600000".to_owned()),
            ("KAFKAD_SINK__KIND", "jsonl".to_owned()),
            ("KAFKAD_SINK__PATH", sink.display().to_string()),
            ("KAFKAD_SHUTDOWN_TIMEOUT", "4s".to_owned()),
            ("KAFKAD_HTTP__LISTEN", addr.clone()),
        ],
    );
    // Every record in hand and the two before the bad one processed: the worker has the bad
    // one, whose copy librdkafka keeps retrying.
    wait_until(
        WAIT,
        "the records before the bad one to be processed",
        || {
            let consumed = http_get(&addr, "/metrics")
                .and_then(|(_, text)| sample(&text, "kafkad_records_consumed_total", &[]));
            count_jsonl(&sink) >= 2 && consumed == Some(5.0)
        },
    )
    .await;

    let started = Instant::now();
    consumer.signal(libc::SIGTERM);
    let exit = consumer.wait(SHUTDOWN_TIMEOUT + MARGIN + Duration::from_secs(10));
    let took = started.elapsed();
    let log = consumer.log_text();
    eprintln!("stop budget: exited {exit:?} {took:?} after SIGTERM");
    assert!(
        took < SHUTDOWN_TIMEOUT + MARGIN,
        "stopping took {took:?}, shutdown_timeout is {SHUTDOWN_TIMEOUT:?}:\n{}",
        consumer.log_tail()
    );
    assert_eq!(exit.code(), Some(0), "{}", consumer.log_tail());
    assert!(
        log.contains("done") && log.contains("processed="),
        "the report: {}",
        consumer.log_tail()
    );
    let processed: Vec<i64> = read_jsonl(&sink).iter().map(|l| l.message_id).collect();
    assert!(processed.starts_with(&[1, 2]), "{processed:?}");
    assert_eq!(
        committed(&mock, GROUP).await,
        [Some(BAD_OFFSET)],
        "the final commit: up to the bad record, not past it"
    );
}
