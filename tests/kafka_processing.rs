//! Processing failures on Apache Kafka (one broker per test): a kafkad consumer process
//! posting to a local HTTP server that goes away for 20-25 s keeps its partitions (no
//! rebalance, though `max.poll.interval.ms` is 10 s), then drains the backlog; lost = 0 and,
//! since nothing failed is ever committed, duplicates = 0. The single consumer retries the one
//! message in hand; the batch consumer retries its batch whole while records keep arriving,
//! which it drops and reads again after the pause.

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use kafkad::reconcile::{reconcile, MessageKey};
use support::http_server::HttpServer;
use support::kafka::KafkaCluster;
use support::scenario::*;
use support::{message, produce_raw, sent_keys, RawRecord};

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

mod real_broker {
    use super::*;

    #[test]
    fn an_http_outage_keeps_the_partition_and_loses_nothing() {
        let cluster = KafkaCluster::start(1);
        let server = HttpServer::start(|_, _| 200);
        let scenario = outage_scenario(&cluster, "http-outage", &server.url(), 1);
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

    /// The batch consumer's failed batch waits for its retry with every partition paused,
    /// while 40 more records arrive on two partitions; librdkafka hands some over before
    /// the pause takes effect, and the loop drops them and seeks back once the batch is
    /// through. Each of the 60 messages reaches the server exactly once.
    #[test]
    fn a_batch_outage_while_records_keep_arriving_loses_and_repeats_nothing() {
        let cluster = KafkaCluster::start(1);
        let server = HttpServer::start(|_, _| 200);
        let scenario = outage_scenario(&cluster, "batch-outage", &server.url(), 2)
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
}
