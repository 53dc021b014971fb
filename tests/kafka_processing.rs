//! Processing failures on Apache Kafka (one broker of its own): a kafkad single consumer
//! process posting to a local HTTP server that goes away for 25 s keeps its partition (no
//! rebalance, though `max.poll.interval.ms` is 10 s), then drains the backlog; lost = 0.

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use kafkad::reconcile::{reconcile, MessageKey};
use support::http_server::HttpServer;
use support::kafka::KafkaCluster;
use support::scenario::*;
use support::{message, produce_raw, RawRecord};

fn good(ids: std::ops::RangeInclusive<i64>) -> Vec<RawRecord> {
    ids.map(|id| RawRecord::value(message("p", id))).collect()
}

/// The messages in the server's accepted bodies (one JSON object each).
fn accepted_keys(server: &HttpServer) -> Vec<MessageKey> {
    server
        .accepted()
        .iter()
        .map(|body| {
            let m: serde_json::Value = serde_json::from_slice(body).expect("JSON body");
            (
                m["producer_id"].as_str().expect("producer_id").to_owned(),
                m["message_id"].as_i64().expect("message_id"),
            )
        })
        .collect()
}

fn wait_for(timeout: Duration, what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

mod real_broker {
    use super::*;

    #[test]
    fn an_http_outage_keeps_the_partition_and_loses_nothing() {
        let cluster = KafkaCluster::start(1);
        let server = HttpServer::start(|_, _| 200);
        let url = server.url();
        let scenario = Scenario::isolated(&cluster, "http-outage")
            .with("KAFKAD_KAFKA__SESSION_TIMEOUT_MS", "6000")
            .with("KAFKAD_KAFKA__HEARTBEAT_INTERVAL_MS", "500")
            .with("KAFKAD_KAFKA__MAX_POLL_INTERVAL_MS", "10000")
            .with("KAFKAD_SINK__KIND", "http")
            .with("KAFKAD_SINK__URL", &url)
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
                "1",
                "--replication-factor",
                "1",
            ],
        );
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
        let outage = Instant::now();
        while outage.elapsed() < Duration::from_secs(25) {
            assert_eq!(
                server.accepted().len(),
                10,
                "nothing gets through while down"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        server.up();
        wait_for(CONSUME_TIMEOUT, "the backlog drained", || {
            server.accepted().len() >= 40
        });
        stop_gracefully(std::slice::from_mut(&mut consumer));
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
        assert!(log.contains("processing message failed; retrying"), "{log}");
        let produced: HashSet<MessageKey> = (1..=40).map(|id| ("p".to_owned(), id)).collect();
        let r = reconcile(&produced, accepted_keys(&server));
        assert_eq!((r.lost, r.duplicates, r.unexpected), (0, 0, 0), "{r:?}");
    }
}
