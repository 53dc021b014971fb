//! Processing that fails and recovers, on the mock cluster: the http sink against a local
//! server that fails, refuses one record, or goes away for a while; a batch whose one bad
//! record is isolated; the command sink. Each test reconciles what was produced against what
//! the downstream accepted (lost = 0) and checks the dead-letter topic.

mod support;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use kafkad::config::Role;
use kafkad::reconcile::{reconcile, MessageKey};
use kafkad::sink;
use kafkad::telemetry::metrics::{ConsumerMetrics, KindLabel, ReasonLabel};
use rdkafka::message::OwnedMessage;
use rdkafka::Message;
use support::http_server::HttpServer;
use support::offsets::wait_committed;
use support::*;

const WAIT: Duration = Duration::from_secs(60);
const DLQ: &str = "andrew-topic.dlq";
const P: &str = "proc";

/// Quick retries, so the tests do not wait for the defaults' seconds.
const FAST_RETRY: [(&str, &str); 3] = [
    ("retry.initial", "50ms"),
    ("retry.max", "200ms"),
    ("kafka.fetch.wait.max.ms", "100"),
];

/// Messages `1..=count` of producer `P`, message `id` on partition `id % partitions`, so
/// the ids of one partition increase with its offsets. Returns each id's value as produced.
async fn produce(
    mock: &MockTopology,
    ids: impl IntoIterator<Item = i64>,
    partitions: i32,
) -> HashMap<i64, Vec<u8>> {
    let values: HashMap<i64, Vec<u8>> = ids.into_iter().map(|id| (id, message(P, id))).collect();
    let mut records: Vec<(i64, RawRecord)> = values
        .iter()
        .map(|(&id, value)| {
            let record = RawRecord {
                value: Some(value.clone()),
                partition: Some((id % i64::from(partitions)) as i32),
                ..RawRecord::default()
            };
            (id, record)
        })
        .collect();
    records.sort_by_key(|(id, _)| *id);
    let records: Vec<RawRecord> = records.into_iter().map(|(_, r)| r).collect();
    produce_raw(&mock.bootstrap, TOPIC, &records).await;
    values
}

fn keys(ids: impl IntoIterator<Item = i64>) -> HashSet<MessageKey> {
    ids.into_iter().map(|id| (P.to_owned(), id)).collect()
}

/// The messages in request bodies: one JSON object (single) or an array (batch) each.
fn contains_id(body: &[u8], id: i64) -> bool {
    let needle = format!("\"message_id\":{id},");
    body.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn http_settings(
    mock: &MockTopology,
    role: Role,
    server: &HttpServer,
    extra: &[(&str, &str)],
) -> kafkad::config::Settings {
    let url = server.url();
    let mut all = vec![
        ("sink.kind", "http"),
        ("sink.url", url.as_str()),
        ("sink.timeout", "5s"),
    ];
    all.extend(FAST_RETRY);
    all.extend(extra);
    mock.settings(role, &all)
}

/// Settings with `[sink] kind = "command"` running `sh -c script`, from a config file as an
/// operator would write it.
fn command_settings(
    mock: &MockTopology,
    role: Role,
    script: &str,
    extra: &[(&str, &str)],
) -> kafkad::config::Settings {
    let file = tempfile::Builder::new()
        .suffix(".toml")
        .tempfile()
        .expect("config file");
    let text = format!(
        "[sink]\nkind = \"command\"\ncommand = [\"sh\", \"-c\", {}]\n",
        toml::Value::String(script.to_owned())
    );
    std::fs::write(file.path(), text).expect("write config");
    let request = kafkad::config::LoadRequest {
        file: Some(file.path().to_owned()),
        ..Default::default()
    };
    kafkad::cluster::mock_settings(&mock.bootstrap, role, &request, extra.iter().copied())
        .unwrap_or_else(|e| panic!("test settings are valid: {e}"))
}

/// A consumer role processing into the sink its settings configure (http, command).
fn spawn_with_its_sink(role: Role, settings: kafkad::config::Settings) -> ConsumerRun {
    let sink = sink::SinkConfig::new(&settings, role).open().expect("sink");
    spawn_consumer(role, settings, sink)
}

fn failures(metrics: &ConsumerMetrics, kind: &'static str) -> u64 {
    metrics
        .processing_failures
        .get_or_create(&KindLabel { kind })
        .get()
}

fn dead_lettered_for_processing(metrics: &ConsumerMetrics) -> u64 {
    metrics
        .dead_lettered_by_reason
        .get_or_create(&ReasonLabel {
            reason: "processing_failed",
        })
        .get()
}

/// Waits until `group` committed `expected` (one offset a partition), then stops `consumer`
/// cleanly; its metrics.
async fn stop_once_committed(
    mock: &MockTopology,
    consumer: ConsumerRun,
    group: &str,
    expected: Vec<Option<i64>>,
) -> ConsumerMetrics {
    wait_committed(&mock.bootstrap, group, expected).await;
    let metrics = consumer.metrics.clone();
    consumer.stop().await.expect("stops cleanly");
    metrics
}

/// Each of `expected` reached the downstream (`sent`) exactly once: none lost, none twice,
/// nothing else.
fn assert_each_once(expected: impl IntoIterator<Item = i64>, sent: Vec<MessageKey>) {
    let r = reconcile(&keys(expected), sent);
    assert_eq!((r.lost, r.duplicates, r.unexpected), (0, 0, 0), "{r:?}");
}

/// `server` accepted each of `expected` exactly once, and those of each of `partitions`
/// partitions in order.
fn assert_accepted_once_in_order(
    server: &HttpServer,
    expected: impl IntoIterator<Item = i64>,
    partitions: i64,
) {
    let accepted = sent_keys(&server.accepted());
    assert_each_once(expected, accepted.clone());
    assert_partition_order(&accepted, partitions);
}

/// Every record of the (one-partition) dead-letter topic.
async fn dead_letters(mock: &MockTopology) -> Vec<OwnedMessage> {
    let bootstrap = mock.bootstrap.clone();
    blocking(move || read_topic(&bootstrap, DLQ, 1)).await
}

/// The lines a command sink appended to `out`.
fn appended(out: &std::path::Path) -> Vec<Vec<u8>> {
    std::fs::read_to_string(out)
        .expect("output")
        .lines()
        .map(|l| l.as_bytes().to_vec())
        .collect()
}

/// Per partition (`id % partitions`), the accepted ids must come in increasing order.
fn assert_partition_order(accepted: &[MessageKey], partitions: i64) {
    let mut last: HashMap<i64, i64> = HashMap::new();
    for (_, id) in accepted {
        let previous = last.insert(id % partitions, *id);
        assert!(
            previous.is_none_or(|p| p < *id),
            "partition {} went back from {previous:?} to {id}",
            id % partitions
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_failures_are_retried_until_every_message_is_processed_once() {
    let mock = MockTopology::start(3);
    let server = HttpServer::start(|n, _| if n <= 3 { 503 } else { 200 });
    produce(&mock, 1..=30, 3).await;
    let consumer = spawn_with_its_sink(
        Role::Single,
        http_settings(&mock, Role::Single, &server, &[]),
    );
    wait_until(WAIT, "30 messages accepted", || {
        server.accepted().len() >= 30
    })
    .await;
    let metrics =
        stop_once_committed(&mock, consumer, "single-message-group", vec![Some(10); 3]).await;

    assert_accepted_once_in_order(&server, 1..=30, 3);
    assert_eq!(server.requests(), 33, "30 messages, 3 of them twice");
    assert_eq!(metrics.retries.get(), 3);
    assert_eq!(failures(&metrics, "http_status"), 3);
    assert_eq!(metrics.processed.get(), 30);
    assert_eq!(metrics.dead_lettered.get(), 0);
    assert!(
        server.headers().iter().all(|h| h
            .iter()
            .any(|(n, v)| n == "content-type" && v == "application/json")),
        "JSON bodies"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_answered_400_is_dead_lettered_at_once_and_the_rest_processed() {
    let mock = MockTopology::start(3);
    let server = HttpServer::start(|_, body| if contains_id(body, 7) { 400 } else { 200 });
    let values = produce(&mock, 1..=30, 3).await;
    let settings = http_settings(&mock, Role::Single, &server, &[]);
    let consumer = spawn_with_its_sink(Role::Single, settings);
    let metrics =
        stop_once_committed(&mock, consumer, "single-message-group", vec![Some(10); 3]).await;

    assert_accepted_once_in_order(&server, (1..=30).filter(|&id| id != 7), 3);
    assert_eq!(metrics.retries.get(), 0, "a 400 is not retried");
    assert_eq!(dead_lettered_for_processing(&metrics), 1);

    let dlq = dead_letters(&mock).await;
    assert_eq!(dlq.len(), 1);
    let copy = &dlq[0];
    assert_eq!(
        copy.payload(),
        Some(values[&7].as_slice()),
        "original value"
    );
    assert_eq!(
        header_text(copy, "kafkad.error.kind").as_deref(),
        Some("processing_failed")
    );
    assert_eq!(header_text(copy, "kafkad.attempts").as_deref(), Some("1"));
    let error = header_text(copy, "kafkad.error").expect("error header");
    assert!(error.contains("400"), "{error}");
    assert_eq!(
        header_text(copy, "kafkad.source.partition").as_deref(),
        Some("1")
    );
    assert_eq!(
        header_text(copy, "kafkad.source.offset").as_deref(),
        Some("2")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_downstream_outage_keeps_the_partitions_and_the_backlog_drains_after() {
    let mock = MockTopology::start(2);
    let server = HttpServer::start(|_, _| 200);
    // An unpolled consumer would leave its group after 6 s; the outage lasts 20.
    let settings = http_settings(
        &mock,
        Role::Single,
        &server,
        &[
            ("retry.max_attempts", "100000"),
            ("retry.max", "1s"),
            ("kafka.max.poll.interval.ms", "6000"),
        ],
    );
    let consumer = spawn_with_its_sink(Role::Single, settings);
    produce(&mock, 1..=20, 2).await;
    wait_until(WAIT, "the first 20 accepted", || {
        server.accepted().len() >= 20
    })
    .await;
    let metrics = consumer.metrics.clone();
    let rebalances = metrics.rebalances.get();
    assert_eq!(rebalances, 1, "one assignment");

    server.down();
    produce(&mock, 21..=60, 2).await;
    let outage = Instant::now();
    while outage.elapsed() < Duration::from_secs(20) {
        assert_eq!(
            server.accepted().len(),
            20,
            "nothing gets through while down"
        );
        assert!(
            metrics.health.is_ready(),
            "the consumer keeps its partitions during the outage"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        failures(&metrics, "http_transport") >= 5,
        "retried while down"
    );
    server.up();
    wait_until(WAIT, "the backlog drained", || {
        server.accepted().len() >= 60
    })
    .await;
    wait_committed(&mock.bootstrap, "single-message-group", vec![Some(30); 2]).await;
    assert_eq!(
        metrics.rebalances.get(),
        rebalances,
        "no rebalance: the group never lost the consumer"
    );
    assert!(metrics.paused_seconds.get() >= 15.0, "paused while down");
    consumer.stop().await.expect("stops cleanly");

    assert_accepted_once_in_order(&server, 1..=60, 2);
    assert_eq!(metrics.dead_lettered.get(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_batch_is_retried_then_its_bad_record_isolated_and_dead_lettered() {
    let mock = MockTopology::start(1);
    let server = HttpServer::start(|_, body| if contains_id(body, 7) { 500 } else { 200 });
    let values = produce(&mock, 1..=30, 1).await;
    let settings = http_settings(
        &mock,
        Role::Batch,
        &server,
        &[
            ("batch.min_size", "10"),
            ("batch.max_size", "10"),
            ("retry.max_attempts", "3"),
        ],
    );
    let consumer = spawn_with_its_sink(Role::Batch, settings);
    let metrics = stop_once_committed(&mock, consumer, "batch-message-group", vec![Some(30)]).await;

    assert_accepted_once_in_order(&server, (1..=30).filter(|&id| id != 7), 1);
    assert_eq!(metrics.retries.get(), 2, "3 attempts: 2 retries");
    assert_eq!(metrics.processed.get(), 29);
    assert_eq!(dead_lettered_for_processing(&metrics), 1);

    let dlq = dead_letters(&mock).await;
    assert_eq!(dlq.len(), 1, "only the bad record");
    assert_eq!(dlq[0].payload(), Some(values[&7].as_slice()));
    assert_eq!(
        header_text(&dlq[0], "kafkad.attempts").as_deref(),
        Some("4")
    );
    assert_eq!(
        header_text(&dlq[0], "kafkad.error.kind").as_deref(),
        Some("processing_failed")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_sink_appends_and_a_failing_message_is_dead_lettered() {
    let mock = MockTopology::start(2);
    let dir = tempfile::tempdir().expect("dir");
    let out = dir.path().join("out.jsonl");
    // Exits 1 for message 5 (a retryable failure), appends everything else.
    let script = format!(
        "input=$(cat); case \"$input\" in *'\"message_id\":5,'*) echo refusing 5 >&2; exit 1;; esac; printf '%s\\n' \"$input\" >> {}",
        out.display()
    );
    let settings = command_settings(
        &mock,
        Role::Single,
        &script,
        &[
            FAST_RETRY.as_slice(),
            &[("retry.max_attempts", "2"), ("sink.timeout", "10s")],
        ]
        .concat(),
    );
    let consumer = spawn_with_its_sink(Role::Single, settings);
    let metrics = consumer.metrics.clone();
    // The odd messages only, all on partition 1: message 5 fails, and goes on failing past
    // its two attempts. Nothing else is there for the sink to accept, which looks exactly
    // like an outage, so the record waits rather than being dead-lettered.
    produce(&mock, (1..=21).filter(|id| id % 2 == 1), 2).await;
    wait_until(WAIT, "message 5 to fail four times", || {
        failures(&metrics, "command_exit") >= 4
    })
    .await;
    assert_eq!(
        metrics.dead_lettered.get(),
        0,
        "waits out what may be an outage"
    );
    // Records on the other partition are accepted while 5 keeps failing: the downstream is
    // up, 5 is the problem, and it is dead-lettered; the records behind it follow.
    produce(&mock, (2..=22).filter(|id| id % 2 == 0), 2).await;
    stop_once_committed(&mock, consumer, "single-message-group", vec![Some(11); 2]).await;

    assert_each_once((1..=22).filter(|&id| id != 5), sent_keys(&appended(&out)));
    let failed = failures(&metrics, "command_exit");
    assert_eq!(
        metrics.retries.get(),
        failed - 1,
        "each failure but the last retried"
    );
    assert_eq!(dead_lettered_for_processing(&metrics), 1);

    let dlq = dead_letters(&mock).await;
    assert_eq!(dlq.len(), 1);
    assert_eq!(
        header_text(&dlq[0], "kafkad.attempts").as_deref(),
        Some(failed.to_string().as_str())
    );
    let error = header_text(&dlq[0], "kafkad.error").expect("error");
    assert!(error.contains("refusing 5"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_sink_takes_a_batch_as_json_lines() {
    let mock = MockTopology::start(1);
    let dir = tempfile::tempdir().expect("dir");
    let out = dir.path().join("out.jsonl");
    let settings = command_settings(
        &mock,
        Role::Batch,
        &format!("cat >> {}", out.display()),
        &[("batch.min_size", "5"), ("batch.max_size", "5")],
    );
    let consumer = spawn_with_its_sink(Role::Batch, settings);
    produce(&mock, 1..=20, 1).await;
    let metrics = stop_once_committed(&mock, consumer, "batch-message-group", vec![Some(20)]).await;
    assert_each_once(1..=20, sent_keys(&appended(&out)));
    assert_eq!(metrics.batches.get(), 4);
}

/// A shutdown while a batch is taken apart: the batch of ten is refused (message 3 is
/// answered 400), so its records go one at a time, and the stop comes while message 5 is
/// with the (slow) server. The record in hand is finished, the rest of the batch is left:
/// the commit covers 1..=5 (3 dead-lettered), and the next member of the group processes
/// 6..=10 and nothing else. No record is lost, none processed twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_while_a_batch_is_taken_apart_commits_what_was_finished() {
    let mock = MockTopology::start(1);
    let server = HttpServer::start(|_, body| {
        if contains_id(body, 3) {
            return 400;
        }
        if sent_keys(&[body.to_vec()]) == [(P.to_owned(), 5)] {
            std::thread::sleep(Duration::from_secs(2));
        }
        200
    });
    produce(&mock, 1..=10, 1).await;
    let batch = [("batch.min_size", "10"), ("batch.max_size", "10")];
    let settings = http_settings(&mock, Role::Batch, &server, &batch);
    let first = spawn_with_its_sink(Role::Batch, settings);
    wait_until(WAIT, "message 5 sent alone", || {
        server.requests() >= 6 && sent_keys(&server.accepted()).contains(&(P.to_owned(), 4))
    })
    .await;
    let stopping = Instant::now();
    first.stop().await.expect("stops cleanly");
    assert!(
        stopping.elapsed() < Duration::from_secs(10),
        "{:?}",
        stopping.elapsed()
    );
    let mut first_accepted = sent_keys(&server.accepted());
    first_accepted.sort();
    let finished: Vec<MessageKey> = [1, 2, 4, 5].map(|id| (P.to_owned(), id)).to_vec();
    assert_eq!(
        first_accepted, finished,
        "the record in hand finished, the rest left"
    );
    wait_committed(&mock.bootstrap, "batch-message-group", vec![Some(5)]).await;

    let second = spawn_with_its_sink(
        Role::Batch,
        http_settings(&mock, Role::Batch, &server, &[("batch.max_wait", "200ms")]),
    );
    stop_once_committed(&mock, second, "batch-message-group", vec![Some(10)]).await;
    // Message 3 reached the dead-letter topic instead.
    let mut all = sent_keys(&server.accepted());
    all.push((P.to_owned(), 3));
    assert_each_once(1..=10, all);
    let dlq = dead_letters(&mock).await;
    assert_eq!(dlq.len(), 1, "message 3, once");
}
