//! A producer stopped with SIGTERM while it cannot deliver keeps its accounting: it stops
//! generating even while librdkafka's queue is full, flushes within `shutdown_timeout`, logs
//! its final report (accepted, delivered, failed, still queued) and exits 1, all within
//! `shutdown_timeout`.

mod support;

use std::time::{Duration, Instant};

use support::process::Kafkad;
use support::scenario::http_addr;
use support::*;

const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Starts a producer against `bootstrap` with a small local queue, waits until the queue is
/// full (`accepted` stops at its size), sends SIGTERM, and checks the exit and the report.
fn stop_with_a_full_queue(name: &str, bootstrap: &str) {
    let dir = tempfile::tempdir().expect("dir");
    let mut producer = Kafkad::spawn(
        name,
        dir.path(),
        &["--role", "producer"],
        &[
            ("KAFKAD_KAFKA__BOOTSTRAP_SERVERS", bootstrap.to_owned()),
            (
                "KAFKAD_KAFKA__QUEUE_BUFFERING_MAX_MESSAGES",
                "500".to_owned(),
            ),
            ("KAFKAD_SHUTDOWN_TIMEOUT", "5s".to_owned()),
            ("KAFKAD_HTTP__LISTEN", "127.0.0.1:0".to_owned()),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let accepted = http_addr(&producer)
            .and_then(|addr| http_get(&addr, "/metrics"))
            .and_then(|(_, text)| sample(&text, "kafkad_messages_produced_total", &[]));
        if accepted == Some(500.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the queue never filled:\n{}",
            producer.log_tail()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let stopped = Instant::now();
    producer.signal(libc::SIGTERM);
    let status = producer.wait(Duration::from_secs(30));
    let took = stopped.elapsed();
    let log = producer.log_text();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        took < SHUTDOWN_TIMEOUT,
        "exited {took:?} after SIGTERM, shutdown_timeout is {SHUTDOWN_TIMEOUT:?}: {log}"
    );
    assert_eq!(
        producer.logged_field("producer stopped", "accepted"),
        Some(500),
        "{log}"
    );
    assert_eq!(
        producer.logged_field("producer stopped", "undelivered"),
        Some(500),
        "{log}"
    );
    assert!(
        log.contains("kafkad: 500 of 500 accepted messages were not delivered"),
        "{log}"
    );
    assert!(
        !log.contains("did not stop within shutdown_timeout"),
        "{log}"
    );
}

/// The brokers are gone: connections are refused.
#[test]
fn sigterm_with_the_broker_unreachable_reports_and_exits_1_in_time() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    stop_with_a_full_queue("unreachable", &format!("127.0.0.1:{port}"));
}

/// The brokers answer, but each request takes 20 s: the local queue fills and stays full.
#[test]
fn sigterm_with_a_full_local_queue_reports_and_exits_1_in_time() {
    let topology = MockTopology::start(3);
    for broker in 1..=3 {
        topology
            .cluster
            .mock()
            .broker_round_trip_time(broker, Duration::from_secs(20))
            .expect("rtt");
    }
    stop_with_a_full_queue("slow-brokers", &topology.bootstrap);
}
