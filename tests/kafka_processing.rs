//! Processing failures on Apache Kafka (one broker, shared by the tests, each on a topic and
//! groups of its own): kafkad consumer processes posting to local HTTP servers.
//!
//! * A server that goes away for 20-25 s: the consumer keeps its partitions (no rebalance,
//!   though `max.poll.interval.ms` is 10 s), then drains the backlog; lost = 0 and, since
//!   nothing failed is ever committed, duplicates = 0. The single consumer retries the one
//!   message in hand; the batch consumer retries its batch whole while records keep
//!   arriving, which wait in hand behind it.
//! * A rebalance (a member joins, then leaves) while every partition waits for a retry, then
//!   new records: all reach the server (librdkafka would keep the partitions paused).
//! * A server that hangs while a batch is taken apart: the member stays in its group, its
//!   `/healthz` turns 503 within `stall_timeout`, and no record is processed by two members.
//! * Lag keeps growing while a retry waits with the partition paused.
//! * A server that redirects some messages gets them dead-lettered, never "delivered" by a
//!   redirected request without the body.

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use kafkad::message::KafkaMessage;
use kafkad::reconcile::{reconcile, MessageKey};
use rdkafka::message::{Message, OwnedMessage};
use support::http_server::{HttpServer, Reply};
use support::kafka::KafkaCluster;
use support::offsets::OffsetReader;
use support::scenario::*;
use support::{header_text, message, produce_raw, read_topic, sent_keys, RawRecord};

fn good(ids: std::ops::RangeInclusive<i64>) -> Vec<RawRecord> {
    ids.map(|id| RawRecord::value(message("p", id))).collect()
}

/// The messages the server accepted.
fn accepted_keys(server: &HttpServer) -> Vec<MessageKey> {
    sent_keys(&server.accepted())
}

fn wait_for(timeout: Duration, what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A scenario whose consumers post to `url` and retry a down server for as long as it takes,
/// on its own topic of `partitions` partitions.
fn outage_scenario<'c>(
    cluster: &'c KafkaCluster,
    name: &str,
    url: &str,
    partitions: u32,
) -> Scenario<'c> {
    let scenario = Scenario::isolated(cluster, name)
        .with("KAFKAD_KAFKA__SESSION_TIMEOUT_MS", "6000")
        .with("KAFKAD_KAFKA__HEARTBEAT_INTERVAL_MS", "500")
        .with("KAFKAD_KAFKA__MAX_POLL_INTERVAL_MS", "10000")
        .with("KAFKAD_SINK__KIND", "http")
        .with("KAFKAD_SINK__URL", url)
        .with("KAFKAD_RETRY__INITIAL", "100ms")
        .with("KAFKAD_RETRY__MAX", "1s")
        .with("KAFKAD_RETRY__MAX_ATTEMPTS", "100000");
    cluster.tool(
        "kafka-topics",
        &[
            "--create",
            "--topic",
            &scenario.topic,
            "--partitions",
            &partitions.to_string(),
            "--replication-factor",
            "1",
        ],
    );
    scenario
}

/// Watches the server stay down for `outage`: it accepts nothing beyond `accepted`.
fn hold_outage(server: &HttpServer, accepted: usize, outage: Duration) {
    let started = Instant::now();
    while started.elapsed() < outage {
        assert_eq!(
            server.accepted().len(),
            accepted,
            "nothing gets through while down"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The consumer's log after a graceful stop: one assignment and one revocation (on the way
/// out), so the group never lost it during the outage; and it did retry.
fn assert_kept_its_partitions(consumer: &mut support::process::Kafkad) {
    stop_gracefully(std::slice::from_mut(consumer));
    let log = consumer.log_text();
    assert_eq!(
        log.matches("partitions assigned").count(),
        1,
        "assigned once, never again: {log}"
    );
    assert_eq!(
        log.matches("partitions revoked").count(),
        1,
        "revoked only on the way out: {log}"
    );
    assert!(log.contains("failed; retrying"), "{log}");
}

/// The redirect a server answers for message `id` (every fifth message, each redirect status
/// in turn), or `None`: accepted.
fn redirect_for(id: i64) -> Option<u16> {
    const REDIRECTS: [u16; 5] = [301, 302, 303, 307, 308];
    (id % 5 == 0).then(|| REDIRECTS[(id / 5) as usize % REDIRECTS.len()])
}

/// A server that accepts a POST to its url unless it holds a message [`redirect_for`]
/// redirects (a batch: its first such message), sending that to `/moved`; `/moved` accepts
/// anything, a GET without a body included, as a careless endpoint would.
fn redirecting_server() -> HttpServer {
    HttpServer::start_with(|request| {
        if request.path != "/ingest" {
            return 200.into();
        }
        let redirect = sent_keys(&[request.body.to_vec()])
            .into_iter()
            .find_map(|(_, id)| redirect_for(id));
        match redirect {
            Some(status) => Reply {
                status,
                headers: vec![("Location".into(), "/moved".into())],
            },
            None => 200.into(),
        }
    })
}

/// The dead-letter copies `group` made: each message's key and its `kafkad.error`.
fn dead_lettered_by(copies: &[OwnedMessage], group: &str) -> Vec<(MessageKey, String)> {
    copies
        .iter()
        .filter(|copy| header_text(copy, "kafkad.consumer.group").as_deref() == Some(group))
        .map(|copy| {
            let message = KafkaMessage::decode(copy.payload().unwrap_or_default())
                .expect("a dead-lettered message is a valid one");
            assert_eq!(
                header_text(copy, "kafkad.error.kind").as_deref(),
                Some("processing_failed")
            );
            (
                (message.producer_id.into_owned(), message.message_id),
                header_text(copy, "kafkad.error").unwrap_or_default(),
            )
        })
        .collect()
}

/// How many records `group` committed past in `partitions` partitions of `topic` (each
/// starting at offset 0); 0 while the broker cannot tell yet (a coordinator still loading).
fn committed_count(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> i64 {
    OffsetReader::new(bootstrap, group)
        .try_committed(topic, partitions)
        .map_or(0, |committed| committed.into_iter().flatten().sum())
}

/// Messages of ids `ids` spread over `partitions` partitions, id on partition `id % partitions`.
fn spread(ids: std::ops::RangeInclusive<i64>, partitions: i32) -> Vec<RawRecord> {
    ids.map(|id| RawRecord {
        partition: Some((id % i64::from(partitions)) as i32),
        ..RawRecord::value(message("p", id))
    })
    .collect()
}

/// A process's `/metrics`, `/healthz` or `/readyz`: status and body, once it serves.
fn probe(process: &support::process::Kafkad, path: &str) -> Option<(u16, String)> {
    http_addr(process).and_then(|addr| support::http_get(&addr, path))
}

/// The last "partitions assigned" line of a process's log.
fn last_assignment(process: &support::process::Kafkad) -> Option<String> {
    let log = process.log_text();
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("partitions assigned"))?;
    Some(line.to_owned())
}

/// The consumer lag a process reports, summed over its partitions.
fn total_lag(process: &support::process::Kafkad) -> Option<f64> {
    let (_, metrics) = probe(process, "/metrics")?;
    let lags: Vec<f64> = metrics
        .lines()
        .filter(|l| l.starts_with("kafkad_consumer_lag{"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse().ok())
        .collect();
    (!lags.is_empty()).then(|| lags.iter().sum())
}

/// Prints and checks one group's reconciliation: lost = 0, duplicates = 0.
fn assert_exactly_once(
    title: &str,
    group: &str,
    produced: &HashSet<MessageKey>,
    got: Vec<MessageKey>,
) {
    let r = reconcile(produced, got);
    let groups = std::collections::BTreeMap::from([(group.to_owned(), r)]);
    print_reconciliation(title, produced.len(), &groups);
    assert_eq!((r.lost, r.duplicates, r.unexpected), (0, 0, 0), "{r:?}");
}

mod real_broker {
    use super::*;

    #[test]
    fn an_http_outage_keeps_the_partition_and_loses_nothing() {
        let cluster = KafkaCluster::shared_of(1);
        let server = HttpServer::start(|_, _| 200);
        let scenario = outage_scenario(cluster, "http-outage", &server.url(), 1);
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        runtime.block_on(produce_raw(
            &cluster.bootstrap,
            &scenario.topic,
            &good(1..=10),
        ));
        let mut consumer = scenario.consumer("single-1", "single-1");
        wait_for(CONSUME_TIMEOUT, "the first 10 accepted", || {
            server.accepted().len() >= 10
        });

        server.down();
        runtime.block_on(produce_raw(
            &cluster.bootstrap,
            &scenario.topic,
            &good(11..=40),
        ));
        hold_outage(&server, 10, Duration::from_secs(25));
        server.up();
        wait_for(CONSUME_TIMEOUT, "the backlog drained", || {
            server.accepted().len() >= 40
        });
        assert_kept_its_partitions(&mut consumer);
        let produced: HashSet<MessageKey> = (1..=40).map(|id| ("p".to_owned(), id)).collect();
        let r = reconcile(&produced, accepted_keys(&server));
        assert_eq!((r.lost, r.duplicates, r.unexpected), (0, 0, 0), "{r:?}");
    }

    /// The batch consumer's failed batch waits for its retry with its partitions paused,
    /// while 40 more records arrive on two partitions; those librdkafka handed over before
    /// the pause wait in hand behind the batch, the rest are fetched after it. Each of the 60
    /// messages reaches the server exactly once.
    #[test]
    fn a_batch_outage_while_records_keep_arriving_loses_and_repeats_nothing() {
        let cluster = KafkaCluster::shared_of(1);
        let server = HttpServer::start(|_, _| 200);
        let scenario = outage_scenario(cluster, "batch-outage", &server.url(), 2)
            .with("KAFKAD_BATCH__MAX_WAIT", "200ms");
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        runtime.block_on(produce_raw(
            &cluster.bootstrap,
            &scenario.topic,
            &good(1..=20),
        ));
        let mut consumer = scenario.consumer("batch-1", "batch-1");
        wait_for(CONSUME_TIMEOUT, "the first 20 accepted", || {
            accepted_keys(&server).len() >= 20
        });
        let accepted_before = server.accepted().len();

        server.down();
        for ids in [21..=40, 41..=60] {
            runtime.block_on(produce_raw(&cluster.bootstrap, &scenario.topic, &good(ids)));
            hold_outage(&server, accepted_before, Duration::from_secs(10));
        }
        server.up();
        wait_for(CONSUME_TIMEOUT, "the backlog drained", || {
            accepted_keys(&server).len() >= 60
        });
        assert_kept_its_partitions(&mut consumer);
        let produced: HashSet<MessageKey> = (1..=60).map(|id| ("p".to_owned(), id)).collect();
        let r = reconcile(&produced, accepted_keys(&server));
        assert_eq!((r.lost, r.duplicates, r.unexpected), (0, 0, 0), "{r:?}");
    }

    /// Every fifth message is answered with a redirect (301, 302, 303, 307, 308 in turn) to a
    /// path that accepts anything. A single and a batch consumer, each posting to a server
    /// of its own: a redirected message is dead-lettered with the redirect named, never
    /// counted as processed by a request without its body (no request ever reaches the
    /// path redirected to). Once each group committed past every record, its accepted bodies
    /// plus its dead-lettered copies against what was produced: lost = 0, duplicates = 0.
    #[test]
    fn a_redirecting_endpoint_loses_nothing() {
        const MESSAGES: i64 = 50;
        let cluster = KafkaCluster::shared_of(1);
        let scenario = Scenario::isolated(cluster, "http-redirect")
            .with("KAFKAD_TOPIC__PARTITIONS", "2")
            .with("KAFKAD_TOPIC__REPLICATION_FACTOR", "1")
            .with("KAFKAD_BATCH__MAX_WAIT", "200ms");
        scenario.ensure_topic();
        let dlq = format!("{}.dlq", scenario.topic);
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        runtime.block_on(produce_raw(
            &cluster.bootstrap,
            &scenario.topic,
            &good(1..=MESSAGES),
        ));
        let produced: HashSet<MessageKey> = produced_ids("p", MESSAGES as u64).collect();
        let redirected = (1..=MESSAGES).filter(|id| redirect_for(*id).is_some());
        let redirected: HashSet<MessageKey> = redirected.map(|id| ("p".to_owned(), id)).collect();

        let servers = [
            (
                scenario.single_group.clone(),
                "single-1",
                redirecting_server(),
            ),
            (
                scenario.batch_group.clone(),
                "batch-1",
                redirecting_server(),
            ),
        ];
        let mut consumers: Vec<_> = servers
            .iter()
            .map(|(_, service, server)| {
                let sink = [
                    ("KAFKAD_SINK__KIND", "http".to_owned()),
                    ("KAFKAD_SINK__URL", server.url()),
                ];
                scenario.start(service, service, &sink)
            })
            .collect();
        // Committed past every record: kafkad counts each one as processed or dead-lettered.
        wait_for(
            CONSUME_TIMEOUT,
            "both groups committed every record",
            || {
                servers.iter().all(|(group, _, _)| {
                    committed_count(&cluster.bootstrap, group, &scenario.topic, 2) == MESSAGES
                })
            },
        );
        stop_gracefully(&mut consumers);

        let copies = read_topic(&cluster.bootstrap, &dlq, 2);
        let mut groups = std::collections::BTreeMap::new();
        for (group, _, server) in &servers {
            let dead = dead_lettered_by(&copies, group);
            let mut processed = accepted_keys(server);
            processed.extend(dead.iter().map(|(key, _)| key.clone()));
            groups.insert(group.clone(), reconcile(&produced, processed));
        }
        print_reconciliation(
            "a redirecting endpoint: accepted bodies plus dead-lettered copies",
            produced.len(),
            &groups,
        );
        for (group, r) in &groups {
            assert_eq!(
                (r.lost, r.duplicates, r.unexpected),
                (0, 0, 0),
                "{group}: {r:?}"
            );
        }
        for (group, _, server) in &servers {
            let dead = dead_lettered_by(&copies, group);
            let dead_keys: HashSet<MessageKey> = dead.iter().map(|(key, _)| key.clone()).collect();
            assert_eq!(
                dead_keys, redirected,
                "{group}: exactly the redirected are dead-lettered"
            );
            for (key, error) in &dead {
                let status = redirect_for(key.1).expect("a redirected message");
                assert!(
                    error.contains(&format!("answered HTTP {status} redirecting to /moved")),
                    "{group}: {error}"
                );
            }
            let exchanges = server.exchanges();
            assert!(
                exchanges
                    .iter()
                    .all(|e| e.method == "POST" && e.path == "/ingest"),
                "{group}: nothing but POSTs to the configured url: {exchanges:?}"
            );
        }
    }

    /// Every partition of a single consumer waits for a retry (the server is down) when a
    /// second member joins, and later leaves: two rebalances, each revoking partitions paused
    /// for the retry and assigning them again. Then the server comes back and 30 more records
    /// arrive: every record reaches it. librdkafka keeps a partition's pause flag across
    /// unassign and assign, so without the engine resuming what it is assigned the partitions
    /// would stay paused behind a green health check.
    #[test]
    fn a_rebalance_while_partitions_wait_for_a_retry_leaves_nothing_behind() {
        let cluster = KafkaCluster::shared_of(1);
        let server = HttpServer::start(|_, _| 200);
        let scenario = outage_scenario(cluster, "rebalance-retry", &server.url(), 3);
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let produce = |ids| {
            runtime.block_on(produce_raw(
                &cluster.bootstrap,
                &scenario.topic,
                &spread(ids, 3),
            ))
        };
        produce(1..=30);
        let mut first = scenario.consumer("single-1", "single-1");
        wait_for(CONSUME_TIMEOUT, "the first 30 accepted", || {
            server.accepted().len() >= 30
        });
        server.down();
        produce(31..=60);
        wait_for(CONSUME_TIMEOUT, "retries on every partition", || {
            first.log_text().matches("failed; retrying").count() >= 6
        });
        let mut second = scenario.consumer("single-1", "single-2");
        wait_for(
            CONSUME_TIMEOUT,
            "the second member to get partitions",
            || {
                second
                    .log_text()
                    .contains("partitions assigned partitions=[")
                    && !second
                        .log_text()
                        .contains("partitions assigned partitions=[]")
            },
        );
        stop_gracefully(std::slice::from_mut(&mut second));
        wait_for(
            CONSUME_TIMEOUT,
            "the first member to get them all back",
            || {
                last_assignment(&first).is_some_and(|l| l.contains("[0, 1, 2]"))
                    && first.log_text().matches("partitions assigned").count() >= 3
            },
        );
        server.up();
        produce(61..=90);
        let produced: HashSet<MessageKey> = (1..=90).map(|id| ("p".to_owned(), id)).collect();
        wait_for(CONSUME_TIMEOUT, "every record accepted", || {
            accepted_keys(&server).into_iter().collect::<HashSet<_>>() == produced
        });
        stop_gracefully(std::slice::from_mut(&mut first));
        assert_exactly_once(
            "a rebalance while partitions wait for a retry",
            &scenario.single_group,
            &produced,
            accepted_keys(&server),
        );
    }

    /// Two batch consumers share a two-partition topic. A batch on one of them is refused
    /// (one record answered 400), so it is taken apart, and the server hangs on the next
    /// record sent alone, far past `max.poll.interval.ms`. The member keeps polling: it
    /// stays in its group (no partition moves, so no record goes to two members), and its
    /// `/healthz` turns 503 within `stall_timeout` while the other member's stays 200. Once
    /// the server answers again, every record is accepted once or dead-lettered.
    #[test]
    fn a_hung_sink_while_a_batch_is_taken_apart_stalls_health_not_the_group() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        const POISON: i64 = 2;
        const HANG_ON: i64 = 4;
        let hang = Arc::new(AtomicBool::new(true));
        let hanging = Arc::clone(&hang);
        let server = HttpServer::start_with(move |request| {
            let ids: Vec<i64> = sent_keys(&[request.body.to_vec()])
                .into_iter()
                .map(|(_, id)| id)
                .collect();
            if ids.contains(&POISON) {
                return 400.into();
            }
            if ids == [HANG_ON] {
                while hanging.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            200.into()
        });
        let cluster = KafkaCluster::shared_of(1);
        let scenario = outage_scenario(cluster, "hung-isolation", &server.url(), 2)
            .with("KAFKAD_SINK__TIMEOUT", "5m")
            .with("KAFKAD_STALL_TIMEOUT", "8s")
            .with("KAFKAD_BATCH__MIN_SIZE", "5")
            .with("KAFKAD_BATCH__MAX_WAIT", "500ms");
        let dlq = format!("{}.dlq", scenario.topic);
        cluster.create_topic(&dlq, 1, 1, &[]);
        let mut members = vec![
            scenario.consumer("batch-1", "batch-1"),
            scenario.consumer("batch-1", "batch-2"),
        ];
        for member in &mut members {
            wait_ready(member);
        }
        wait_for(CONSUME_TIMEOUT, "both members to hold a partition", || {
            members
                .iter()
                .all(|m| last_assignment(m).is_some_and(|l| !l.contains("[]")))
        });
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        // Even ids on partition 0: the poison and the record that hangs.
        runtime.block_on(produce_raw(
            &cluster.bootstrap,
            &scenario.topic,
            &spread(1..=20, 2),
        ));
        let started = Instant::now();
        wait_for(CONSUME_TIMEOUT, "the batch taken apart and hung", || {
            members
                .iter()
                .any(|m| m.log_text().contains("trying its records one at a time"))
                && server.requests() >= 3
        });
        let hung = members
            .iter()
            .position(|m| m.log_text().contains("trying its records one at a time"))
            .expect("one member took the batch apart");
        let revocations =
            |m: &support::process::Kafkad| m.log_text().matches("partitions revoked").count();
        let revoked_before: Vec<usize> = members.iter().map(revocations).collect();
        wait_for(
            Duration::from_secs(30),
            "/healthz 503 on the hung member",
            || probe(&members[hung], "/healthz").is_some_and(|(status, _)| status == 503),
        );
        eprintln!(
            "hung member unhealthy {:?} after the records arrived (stall_timeout 8s)",
            started.elapsed()
        );
        // Well past max.poll.interval.ms (10 s): the member is still in the group, the other
        // one healthy, and nothing was revoked since the hang began.
        std::thread::sleep(Duration::from_secs(15));
        assert!(probe(&members[1 - hung], "/healthz").is_some_and(|(status, _)| status == 200));
        for (member, before) in members.iter().zip(&revoked_before) {
            assert_eq!(revocations(member), *before, "{}", member.log_tail());
        }
        let described = cluster.tool(
            "kafka-consumer-groups",
            &["--describe", "--members", "--group", &scenario.batch_group],
        );
        assert_eq!(
            described
                .lines()
                .filter(|l| l.contains(&scenario.batch_group))
                .count(),
            2,
            "{described}"
        );

        hang.store(false, Ordering::SeqCst);
        let expected: HashSet<MessageKey> = (1..=20)
            .filter(|&id| id != POISON)
            .map(|id| ("p".to_owned(), id))
            .collect();
        wait_for(CONSUME_TIMEOUT, "every good record accepted", || {
            accepted_keys(&server).into_iter().collect::<HashSet<_>>() == expected
        });
        wait_for(CONSUME_TIMEOUT, "/healthz 200 again", || {
            probe(&members[hung], "/healthz").is_some_and(|(status, _)| status == 200)
        });
        stop_gracefully(&mut members);
        let dlq = read_topic(&cluster.bootstrap, &dlq, 1);
        let mut got = accepted_keys(&server);
        got.extend(
            dead_lettered_by(&dlq, &scenario.batch_group)
                .into_iter()
                .map(|(key, _)| key),
        );
        let produced: HashSet<MessageKey> = (1..=20).map(|id| ("p".to_owned(), id)).collect();
        assert_exactly_once(
            "a hung sink while a batch is taken apart: accepted plus dead-lettered",
            &scenario.batch_group,
            &produced,
            got,
        );
    }

    /// A single consumer's record waits for a retry (the server is down) with its partition
    /// paused, and more records arrive: the reported lag grows with them, though librdkafka's
    /// statistics learn nothing of a partition that is not fetched. Once the server is back
    /// the lag falls to 0.
    #[test]
    fn lag_keeps_growing_while_a_retry_waits() {
        let cluster = KafkaCluster::shared_of(1);
        let server = HttpServer::start(|_, _| 200);
        let scenario = outage_scenario(cluster, "lag-paused", &server.url(), 1);
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let mut consumer = scenario.consumer("single-1", "single-1");
        wait_ready(&mut consumer);
        server.down();
        runtime.block_on(produce_raw(
            &cluster.bootstrap,
            &scenario.topic,
            &good(1..=10),
        ));
        wait_for(
            CONSUME_TIMEOUT,
            "a lag of 10 while the first record waits",
            || {
                consumer.log_text().contains("failed; retrying")
                    && total_lag(&consumer) == Some(10.0)
            },
        );
        runtime.block_on(produce_raw(
            &cluster.bootstrap,
            &scenario.topic,
            &good(11..=40),
        ));
        wait_for(
            Duration::from_secs(30),
            "the lag to reach 40 while paused",
            || total_lag(&consumer) == Some(40.0),
        );
        assert!(server.accepted().is_empty(), "still waiting");
        server.up();
        wait_for(CONSUME_TIMEOUT, "the lag back to 0", || {
            total_lag(&consumer) == Some(0.0)
        });
        stop_gracefully(std::slice::from_mut(&mut consumer));
        let produced: HashSet<MessageKey> = (1..=40).map(|id| ("p".to_owned(), id)).collect();
        assert_exactly_once(
            "lag while a retry waits",
            &scenario.single_group,
            &produced,
            accepted_keys(&server),
        );
    }
}
