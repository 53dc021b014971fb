//! What operators see: /metrics counters equal to the reconciliation, /healthz and /readyz
//! following the role's life, JSON logs with the role's fields.

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use kafkad::config::{ConsumerRole, Role};
use kafkad::reconcile::reconcile;
use kafkad::roles;
use kafkad::shutdown;
use kafkad::sink::MemorySink;
use kafkad::telemetry::http;
use kafkad::telemetry::metrics::{ProducerMetrics, RoleMetrics};
use support::process::{self, Kafkad};
use support::*;

const WAIT: Duration = Duration::from_secs(60);

/// Serves one role's registry on a free loopback port, as its process would.
async fn endpoint(settings: &kafkad::config::Settings, metrics: RoleMetrics) -> String {
    // The labels the daemon gives the role these settings describe.
    let labels = roles::RolePlan::new(settings)
        .expect("the settings name a role")
        .labels();
    let registry = http::role_registry(&labels, &metrics);
    let endpoint = http::serve(
        "127.0.0.1:0".parse().expect("addr"),
        Arc::new(registry),
        vec![metrics.health()],
    )
    .await
    .expect("serves");
    endpoint.addr.to_string()
}

async fn scrape(addr: &str) -> String {
    let addr = addr.to_owned();
    let (status, body) = tokio::task::spawn_blocking(move || http_get(&addr, "/metrics"))
        .await
        .expect("task")
        .expect("HTTP response");
    assert_eq!(status, 200);
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_counters_equal_the_reconciliation() {
    let mock = MockTopology::start(3);
    const N: u64 = 3000;
    let bad_records = [
        RawRecord::value(b"not json".to_vec()),
        RawRecord::value(vec![0xff, 0xfe]),
        RawRecord {
            key: Some(b"k".to_vec()),
            value: None,
            ..RawRecord::default()
        },
        RawRecord::value(br#"{"message_id":"7","content":"c","producer_id":"p","timestamp":"2026-11-25T18:08:06","metadata":{}}"#.to_vec()),
    ];
    produce_raw(&mock.bootstrap, TOPIC, &bad_records).await;

    let producer_settings = mock.settings(
        Role::Producer,
        &[("producer.count", "3000"), ("producer.producer_id", "p-1")],
    );
    let producer_metrics = ProducerMetrics::default();
    let producer_addr = endpoint(
        &producer_settings,
        RoleMetrics::Producer(producer_metrics.clone()),
    )
    .await;

    let mut consumers = Vec::new();
    for role in [Role::Single, Role::Batch] {
        let settings = mock.settings(role, &[]);
        let sink = MemorySink::default();
        let run = spawn_consumer(role, settings.clone(), Box::new(sink.clone()));
        let consumer = role.consumer().expect("a consumer role");
        let addr = endpoint(
            &settings,
            RoleMetrics::Consumer(consumer, run.metrics.clone()),
        )
        .await;
        consumers.push((role, addr, sink, run));
    }

    let (_stop, shutdown) = shutdown::channel();
    let report = roles::producer::run(
        roles::ProducerConfig::new(&producer_settings),
        producer_metrics,
        shutdown,
    )
    .await
    .expect("all delivered");
    let produced: HashSet<_> = report
        .delivered_ids()
        .map(|id| ("p-1".to_owned(), id))
        .collect();
    assert_eq!(produced.len() as u64, N);

    let metrics = scrape(&producer_addr).await;
    assert_eq!(
        sample(
            &metrics,
            "kafkad_messages_produced_total",
            &[("role", "producer")]
        ),
        Some(N as f64),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "kafkad_messages_delivered_total",
            &[("role", "producer")]
        ),
        Some(N as f64)
    );
    assert_eq!(
        sample(
            &metrics,
            "kafkad_delivery_failures_total",
            &[("role", "producer")]
        ),
        Some(0.0)
    );

    for (role, addr, sink, run) in consumers {
        wait_until(WAIT, &format!("{role} to process {N}"), || {
            run.metrics.processed.get() >= N
        })
        .await;
        let group = if role == Role::Single {
            "single-message-group"
        } else {
            "batch-message-group"
        };
        let labels = [("role", role.as_str()), ("topic", TOPIC), ("group", group)];
        let text = scrape(&addr).await;
        assert_eq!(
            sample(&text, "kafkad_records_processed_total", &labels),
            Some(N as f64),
            "{text}"
        );
        assert_eq!(
            sample(&text, "kafkad_records_dead_lettered_total", &labels),
            Some(bad_records.len() as f64),
            "{text}"
        );
        assert_eq!(
            sample(&text, "kafkad_records_consumed_total", &labels),
            Some((N as usize + bad_records.len()) as f64)
        );
        assert_eq!(
            sample(
                &text,
                "kafkad_decode_errors_total",
                &[("reason", "not_json")]
            ),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            sample(
                &text,
                "kafkad_decode_errors_total",
                &[("reason", "tombstone")]
            ),
            Some(1.0),
            "{text}"
        );
        assert!(
            sample(&text, "kafkad_end_to_end_latency_seconds_count", &labels)
                .is_some_and(|c| c >= N as f64),
            "{text}"
        );
        if role == Role::Batch {
            assert!(
                sample(&text, "kafkad_batches_processed_total", &labels).is_some_and(|b| b >= 1.0)
            );
            assert!(sample(&text, "kafkad_commits_total", &labels).is_some_and(|c| c >= 1.0));
        }
        let report = run.stop().await.expect("stops cleanly");
        assert_eq!(report.processed, N);
        // The scraped count is the reconciliation's: every produced message, once.
        let r = reconcile(&produced, processed_keys(&sink));
        assert_eq!((r.consumed, r.lost, r.duplicates), (N, 0, 0), "{role}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_the_assignment_and_both_probes_fail_during_shutdown() {
    let mock = MockTopology::start(3);
    // A long initial rebalance delay keeps the consumer unassigned long enough to see 503.
    mock.cluster
        .set_initial_rebalance_delay(Duration::from_secs(3));
    let records: Vec<RawRecord> = (1..=5)
        .map(|id| RawRecord::value(message("p", id)))
        .collect();
    produce_raw(&mock.bootstrap, TOPIC, &records).await;
    let dir = tempfile::tempdir().expect("dir");
    let addr = format!("127.0.0.1:{}", free_port());
    // A batch consumer that keeps the five records buffered (min_size 1000, max_wait 10m).
    let mut consumer = Kafkad::spawn(
        "batch",
        dir.path(),
        &["--role", "batch"],
        &[
            ("KAFKAD_KAFKA__BOOTSTRAP_SERVERS", mock.bootstrap.clone()),
            ("KAFKAD_KAFKA__FETCH_WAIT_MAX_MS", "100".to_owned()),
            ("KAFKAD_HTTP__LISTEN", addr.clone()),
            ("KAFKAD_SHUTDOWN_TIMEOUT", "4s".to_owned()),
            ("KAFKAD_BATCH__MIN_SIZE", "1000".to_owned()),
            ("KAFKAD_BATCH__MAX_SIZE", "1000".to_owned()),
            ("KAFKAD_BATCH__MAX_WAIT", "10m".to_owned()),
        ],
    );
    let probe = |path: &'static str| {
        let addr = addr.clone();
        move || http_get(&addr, path)
    };
    let (healthz, readyz, metrics) = (probe("/healthz"), probe("/readyz"), probe("/metrics"));
    let status = |probe: &dyn Fn() -> Option<(u16, String)>| probe().map(|(status, _)| status);

    wait_until(WAIT, "/healthz to answer 200", || {
        status(&healthz) == Some(200)
    })
    .await;
    assert_eq!(status(&readyz), Some(503), "no assignment yet");
    wait_until(
        WAIT,
        "/readyz to answer 200 once partitions are assigned",
        || status(&readyz) == Some(200),
    )
    .await;
    assert!(
        consumer.log_text().contains("partitions assigned"),
        "{}",
        consumer.log_tail()
    );
    wait_until(WAIT, "the five records to be buffered", || {
        metrics().is_some_and(|(_, text)| {
            sample(&text, "kafkad_records_consumed_total", &[]) == Some(5.0)
        })
    })
    .await;

    // Shutdown processes the batch in hand, then must commit it; with every broker gone the
    // commit cannot finish, so the process stays in its shutdown until shutdown_timeout, and
    // both probes must say so.
    for broker in 1..=3 {
        mock.cluster.broker_down(broker).expect("broker down");
    }
    consumer.signal(libc::SIGTERM);
    wait_until(WAIT, "/healthz to answer 503 while shutting down", || {
        status(&healthz) == Some(503)
    })
    .await;
    assert_eq!(status(&readyz), Some(503));
    let exit = consumer.wait(Duration::from_secs(20));
    assert_eq!(
        exit.code(),
        Some(1),
        "gave up after shutdown_timeout: {}",
        consumer.log_tail()
    );
    assert!(
        consumer
            .log_text()
            .contains("did not stop within shutdown_timeout"),
        "{}",
        consumer.log_tail()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_parse_and_carry_role_and_group() {
    let mock = MockTopology::start(1);
    produce_raw(
        &mock.bootstrap,
        TOPIC,
        &[
            RawRecord::value(message("p", 1)),
            RawRecord::value(b"garbage".to_vec()),
        ],
    )
    .await;
    let dir = tempfile::tempdir().expect("dir");
    let mut consumer = Kafkad::spawn(
        "batch",
        dir.path(),
        &["--role", "batch"],
        &[
            ("KAFKAD_KAFKA__BOOTSTRAP_SERVERS", mock.bootstrap.clone()),
            ("KAFKAD_LOG__FORMAT", "json".to_owned()),
            ("KAFKAD_HTTP__LISTEN", String::new()),
            ("KAFKAD_BATCH__MAX_WAIT", "200ms".to_owned()),
            ("KAFKAD_SUMMARY_INTERVAL", "300ms".to_owned()),
            ("KAFKAD_KAFKA__STATISTICS_INTERVAL_MS", "100".to_owned()),
        ],
    );
    // Lag comes from a probe of its own, which may answer after the first summaries: those
    // say `unknown`, so wait for one that carries a figure.
    let summarized_with_lag = |log: &str| {
        log.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .any(|v| {
                v["fields"]["message"] == "summary"
                    && v["fields"]["processed"] == 1
                    && v["fields"]["lag"].is_i64()
            })
    };
    wait_until(
        WAIT,
        "the batch to be processed and summarized with lag",
        || {
            let log = consumer.log_text();
            log.contains("processed batch") && summarized_with_lag(&log)
        },
    )
    .await;
    consumer.signal(libc::SIGTERM);
    assert_eq!(
        consumer.wait(WAIT).code(),
        Some(0),
        "{}",
        consumer.log_tail()
    );

    let log = consumer.log_text();
    let mut with_span = 0;
    for line in log.lines() {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            value["level"].is_string() && value["timestamp"].is_string(),
            "{line}"
        );
        if let Some(span) = value.get("span") {
            assert_eq!(span["role"], "batch", "{line}");
            assert_eq!(span["group"], "batch-message-group", "{line}");
            assert_eq!(span["topic"], TOPIC, "{line}");
            with_span += 1;
        }
    }
    assert!(with_span >= 3, "role lines carry the span: {log}");
    let summary: serde_json::Value = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .rfind(|v| v["fields"]["message"] == "summary" && v["fields"]["lag"].is_i64())
        .expect("a periodic summary line with lag");
    assert_eq!(summary["fields"]["processed"], 1, "{summary}");
    assert_eq!(summary["fields"]["dead_lettered"], 1, "{summary}");
    assert!(summary["fields"]["rate"].is_string(), "{summary}");
    assert!(log.contains("dead-lettered undecodable record"), "{log}");
    // Statistics arrive every 100 ms: they feed gauges, and never flood the log.
    assert!(
        !log.contains("Client stats"),
        "statistics must not be logged: {log}"
    );
}

/// Releases a hanging sink when dropped, also when the test fails: a sink left hanging would
/// keep the runtime from shutting down, and the failure would look like a hang.
struct Release(Arc<std::sync::atomic::AtomicBool>);

impl Drop for Release {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A sink that blocks until released, like a downstream call that never returns.
struct HangingSink {
    entered: Arc<std::sync::atomic::AtomicBool>,
    release: Arc<std::sync::atomic::AtomicBool>,
}

impl kafkad::sink::Sink for HangingSink {
    fn process(&mut self, _: &kafkad::sink::Record<'_>) -> Result<(), kafkad::sink::SinkError> {
        self.entered
            .store(true, std::sync::atomic::Ordering::SeqCst);
        while !self.release.load(std::sync::atomic::Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }
}

/// A hung sink makes no progress: `/healthz` fails once `stall_timeout` passed without it,
/// not before, and recovers when the sink returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_sink_fails_liveness_after_stall_timeout() {
    let mock = MockTopology::start(1);
    let records: Vec<RawRecord> = (1..=3)
        .map(|id| RawRecord::value(message("p", id)))
        .collect();
    produce_raw(&mock.bootstrap, TOPIC, &records).await;
    let settings = mock.settings(Role::Single, &[("stall_timeout", "2s")]);
    let entered = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let release = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sink = HangingSink {
        entered: Arc::clone(&entered),
        release: Arc::clone(&release),
    };
    let run = spawn_consumer(Role::Single, settings, Box::new(sink));
    let _release_on_failure = Release(Arc::clone(&release));
    let health = Arc::clone(&run.metrics.health);
    wait_until(WAIT, "the sink to be called", || {
        entered.load(std::sync::atomic::Ordering::SeqCst)
    })
    .await;
    let hung = std::time::Instant::now();
    assert!(health.is_alive(), "alive while within stall_timeout");
    wait_until(WAIT, "liveness to fail", || !health.is_alive()).await;
    let stalled_after = hung.elapsed();
    assert!(
        stalled_after >= Duration::from_millis(1900) && stalled_after < Duration::from_secs(4),
        "stall reported {stalled_after:?} after the sink hung, stall_timeout is 2s"
    );
    health.refresh();
    assert!(health.since_progress_gauge().get() >= 2.0);

    release.store(true, std::sync::atomic::Ordering::SeqCst);
    wait_until(WAIT, "liveness to recover", || health.is_alive()).await;
    let report = run.stop().await.expect("stops cleanly");
    assert_eq!(report.processed, 3);
}

/// A process of each of `roles` with its shipped config/*.toml and `env`, pointed at a port
/// where no broker listens.
fn spawn_without_broker(
    dir: &std::path::Path,
    roles: &[&str],
    env: &[(&str, String)],
) -> Vec<Kafkad> {
    let unreachable = format!("127.0.0.1:{}", free_port());
    roles
        .iter()
        .map(|role| {
            let mut env = env.to_vec();
            env.push(("KAFKAD_KAFKA__BOOTSTRAP_SERVERS", unreachable.clone()));
            Kafkad::spawn(
                role,
                dir,
                &["--role", role, "--config", &format!("config/{role}.toml")],
                &env,
            )
        })
        .collect()
}

/// The seed's six processes on one host with the shipped configuration: each would take the
/// default HTTP port 9464. Every process after the first serves on a free port instead and
/// says where, rather than dying.
#[test]
fn processes_on_one_host_with_the_default_port_all_serve() {
    let dir = tempfile::tempdir().expect("dir");
    // Hold the default port, as a first kafkad on this host would (if something else holds
    // it already, that does as well).
    let _first = std::net::TcpListener::bind("0.0.0.0:9464");
    let mut processes = spawn_without_broker(dir.path(), &["single", "batch"], &[]);
    for process in &mut processes {
        let deadline = std::time::Instant::now() + WAIT;
        // The warning names the address it serves on instead.
        let addr = loop {
            let log = process.log_text();
            let moved = log
                .lines()
                .find(|l| l.contains("the default HTTP port is taken"))
                .and_then(|l| l.split("serving=").nth(1))
                .and_then(|rest| rest.split_whitespace().next())
                .map(str::to_owned);
            if let Some(addr) = moved {
                break addr;
            }
            assert!(process.running(), "{} died: {log}", process.name);
            assert!(std::time::Instant::now() < deadline, "{log}");
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(!addr.ends_with(":9464"), "{addr}");
        assert_eq!(http_get(&addr, "/healthz").map(|(s, _)| s), Some(200));
        process.signal(libc::SIGKILL);
    }
}

/// A port the operator chose is never moved: taken, it is one line naming the setting's
/// source, and exit 1.
#[test]
fn an_explicitly_configured_port_that_is_taken_is_one_clear_error() {
    let dir = tempfile::tempdir().expect("dir");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let addr = taken.local_addr().expect("address");
    let mut process = Kafkad::spawn(
        "explicit",
        dir.path(),
        &["--role", "single"],
        &[("KAFKAD_HTTP__LISTEN", addr.to_string())],
    );
    let status = process.wait(WAIT);
    let log = process.log_text();
    assert_eq!(status.code(), Some(1), "{log}");
    let line = format!(
        "kafkad: cannot serve HTTP on {addr} ([http] listen from env KAFKAD_HTTP__LISTEN): Address already in use"
    );
    assert!(log.lines().any(|l| l.starts_with(&line)), "{log}");
}

/// The longest a process waits before saying again that an error repeats.
const REPEAT_WINDOW: Duration = kafkad::telemetry::logging::REPEAT_WINDOW;

/// An error line's identity for grouping its repeats: the text without what changes from one
/// repeat to the next (librdkafka's "(after 3ms in state CONNECT, 2 identical error(s)
/// suppressed)", the "1/1" of "1/1 brokers are down"), and without the "[thrd:...]: " that
/// librdkafka's own log lines begin with, so that a log line and an error event with the
/// same text count as the same error.
fn error_identity(message: &str) -> String {
    let message = match message.strip_prefix("[thrd:") {
        Some(rest) => rest.split_once("]: ").map_or(message, |(_, text)| text),
        None => message,
    };
    let message = message.split(" (after ").next().unwrap_or(message);
    message
        .chars()
        .map(|c| if c.is_ascii_digit() { '#' } else { c })
        .collect()
}

/// Each role for 15 s against a port where no broker listens: librdkafka retries for ever and
/// reports every failed attempt. The log must stay readable: each distinct error once when it
/// first happens, then at most once per REPEAT_WINDOW with how often it repeated meanwhile,
/// and never twice by two paths (librdkafka's log line beside its error event, a consumer's
/// poll handing back the error its client already reported).
#[test]
fn with_no_broker_each_error_is_logged_once_per_window_with_its_repeats() {
    let dir = tempfile::tempdir().expect("dir");
    let roles = ["producer", "single", "batch"];
    let processes = spawn_without_broker(
        dir.path(),
        &roles,
        &[
            ("KAFKAD_LOG__FORMAT", "json".to_owned()),
            ("KAFKAD_HTTP__LISTEN", String::new()),
        ],
    );
    let run = Duration::from_secs(15);
    std::thread::sleep(run);
    let logs: Vec<String> = processes.iter().map(Kafkad::log_text).collect();
    drop(processes);

    for (role, log) in roles.iter().zip(&logs) {
        let lines: Vec<serde_json::Value> = log
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect();
        // Before: 500 to 700 lines in 15 s. Now a few lines of start-up and summaries, and for
        // each of the two errors of each librdkafka client (connection refused, all brokers
        // down) one line at first and one per window after.
        assert!(
            lines.len() <= 30,
            "{role}: {} lines in {run:?}:\n{log}",
            lines.len()
        );
        let mut last_of: HashMap<(String, String), chrono::DateTime<chrono::Utc>> = HashMap::new();
        let mut repeat_lines = 0;
        for line in lines
            .iter()
            .filter(|l| matches!(l["level"].as_str(), Some("WARN" | "ERROR")))
        {
            let fields = &line["fields"];
            let client = fields["client"]
                .as_str()
                .unwrap_or_else(|| panic!("{role}: a warning not from a librdkafka client: {line}"))
                .to_owned();
            let message = fields["message"].as_str().expect("a message");
            let at: chrono::DateTime<chrono::Utc> = line["timestamp"]
                .as_str()
                .and_then(|t| t.parse().ok())
                .expect("a timestamp");
            let repeated = fields["repeated"].as_u64();
            match last_of.insert((client, error_identity(message)), at) {
                None => assert_eq!(repeated, None, "{role}: the first line of an error: {line}"),
                Some(previous) => {
                    let since = (at - previous).to_std().unwrap_or_default();
                    assert!(
                        since + Duration::from_millis(100) >= REPEAT_WINDOW,
                        "{role}: the same error again after {since:?}: {line}\n{log}"
                    );
                    assert!(
                        repeated.is_some_and(|n| n >= 1),
                        "{role}: a repeat line says how often: {line}"
                    );
                    repeat_lines += 1;
                }
            }
        }
        assert!(
            !last_of.is_empty(),
            "{role}: no error logged at all:\n{log}"
        );
        assert!(
            repeat_lines >= 1,
            "{role}: no line counted the repeats:\n{log}"
        );
        // A consumer that never reached its group knows nothing of its lag: not 0.
        for summary in lines
            .iter()
            .filter(|l| l["fields"]["message"] == "summary" && *role != "producer")
        {
            assert_eq!(summary["fields"]["lag"], "unknown", "{role}: {summary}");
        }
        if *role != "producer" {
            assert!(
                lines.iter().any(|l| l["fields"]["message"] == "summary"),
                "{role}: no summary line in {run:?}:\n{log}"
            );
        }
    }
}

/// Four single consumers in one group on a three-partition topic (a Deployment of three
/// during a rolling update's surge): one gets no partition. Readiness means "joined its group
/// and polling", not "holds partitions", so all four are ready, else the rollout would wait
/// for the idle pod for ever. What a member holds is a metric:
/// `kafkad_assigned_partitions` adds up to 3, one member at 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fourth_member_of_a_three_partition_group_is_ready() {
    let mock = MockTopology::start(3);
    let dir = tempfile::tempdir().expect("dir");
    let addrs: Vec<String> = (0..4)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let members: Vec<Kafkad> = addrs
        .iter()
        .enumerate()
        .map(|(n, addr)| {
            Kafkad::spawn(
                &format!("single-{n}"),
                dir.path(),
                &["--role", "single"],
                &[
                    ("KAFKAD_KAFKA__BOOTSTRAP_SERVERS", mock.bootstrap.clone()),
                    ("KAFKAD_KAFKA__SESSION_TIMEOUT_MS", "6000".to_owned()),
                    ("KAFKAD_HTTP__LISTEN", addr.clone()),
                ],
            )
        })
        .collect();
    let assigned = |addr: &str| {
        http_get(addr, "/metrics")
            .and_then(|(_, text)| sample(&text, "kafkad_assigned_partitions", &[]))
    };
    let ready = |addr: &str| http_get(addr, "/readyz").is_some_and(|(status, _)| status == 200);
    wait_until(WAIT, "all four ready, the partitions spread", || {
        addrs.iter().all(|addr| ready(addr))
            && addrs.iter().filter_map(|a| assigned(a)).sum::<f64>() == 3.0
    })
    .await;
    let held: Vec<f64> = addrs.iter().filter_map(|a| assigned(a)).collect();
    assert_eq!(held.len(), 4);
    assert!(held.contains(&0.0), "one member holds nothing: {held:?}");
    for member in &members {
        member.signal(libc::SIGTERM);
    }
}

/// The single role hands the `jsonl` sink every record in hand of a lane in one call (one
/// write, one flush), rather than a call per record: fewer sink calls than records (how many
/// fewer depends on how many arrive while a call runs: about a third on the mock), each record
/// still written once, as a single message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_single_role_writes_a_file_sink_in_runs() {
    let mock = MockTopology::start(3);
    const N: i64 = 3000;
    let records: Vec<RawRecord> = (1..=N)
        .map(|id| RawRecord::value(message("p", id)))
        .collect();
    produce_raw(&mock.bootstrap, TOPIC, &records).await;

    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("processed.jsonl");
    let settings = mock.settings(Role::Single, &[]);
    let sink = kafkad::sink::JsonlSink::create(&path).expect("sink file");
    let run = spawn_consumer(Role::Single, settings.clone(), Box::new(sink));
    let addr = endpoint(
        &settings,
        RoleMetrics::Consumer(ConsumerRole::Single, run.metrics.clone()),
    )
    .await;
    wait_until(WAIT, "the single role to process every record", || {
        run.metrics.processed.get() >= N as u64
    })
    .await;
    let text = scrape(&addr).await;
    let report = run.stop().await.expect("stops cleanly");
    assert_eq!(report.processed, N as u64);

    let labels = [
        ("role", "single"),
        ("topic", TOPIC),
        ("group", "single-message-group"),
    ];
    let calls = sample(&text, "kafkad_processing_seconds_count", &labels).expect("{text}");
    assert!(
        calls > 0.0 && calls * 2.0 <= N as f64,
        "{calls} sink calls for {N} records: {text}"
    );
    let produced: HashSet<_> = (1..=N).map(|id| ("p".to_owned(), id)).collect();
    let written = process::read_jsonl(&path)
        .into_iter()
        .map(|line| (line.producer_id, line.message_id));
    let r = reconcile(&produced, written);
    assert_eq!((r.consumed, r.lost, r.duplicates), (N as u64, 0, 0));
}
