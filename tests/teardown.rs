//! A consumer role returns only once every Kafka client it created is destroyed, librdkafka's
//! threads included: the daemon exits right after, and exiting under a live client's threads
//! (OpenSSL's exit handler freeing what a TLS handshake on one of them still uses) corrupts
//! the heap, an abort in place of the exit code.
//!
//! The only test of its binary: it counts this process's librdkafka threads, which another
//! test running beside it would change.

mod support;

use std::time::Duration;

use kafkad::sink::{JsonlSink, MemorySink};
use support::*;

const WAIT: Duration = Duration::from_secs(60);

/// The threads of this process that librdkafka started (it names them `rdk:...`).
fn librdkafka_threads() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(Result::ok)
        .filter_map(|task| std::fs::read_to_string(task.path().join("comm")).ok())
        .map(|name| name.trim_end().to_owned())
        .filter(|name| name.starts_with("rdk:"))
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_role_returns_only_after_its_clients_and_their_threads_are_gone() {
    let mock = MockTopology::start(1);
    // A bad record among good ones: the dead-letter producer has a copy to send, so it is
    // connected when the role stops.
    let mut records: Vec<RawRecord> = (1..=20)
        .map(|i| RawRecord::value(message("p", i)))
        .collect();
    records.push(RawRecord::value(b"not json".to_vec()));
    produce_raw(&mock.bootstrap, TOPIC, &records).await;
    let baseline = librdkafka_threads();

    // Stopped by a shutdown.
    let sink = MemorySink::default();
    let run = mock.single(sink.clone(), &[("kafka.group.id", "teardown-stopped")]);
    let metrics = run.metrics.clone();
    wait_until(WAIT, "20 records processed and 1 dead-lettered", || {
        metrics.processed.get() == 20 && metrics.dead_lettered.get() == 1
    })
    .await;
    run.stop().await.expect("a clean stop");
    assert_eq!(
        librdkafka_threads(),
        baseline,
        "librdkafka threads outlived the role stopped by a shutdown"
    );
    let processed = processed_keys(&sink);
    assert_eq!(processed.len(), 20, "each good record processed once");

    // Stopped by a failure: a sink that cannot write, with on_exhausted = "stop".
    let run = mock.batch(
        JsonlSink::create("/dev/full".as_ref()).expect("/dev/full opens"),
        &[
            ("kafka.group.id", "teardown-failed"),
            ("retry.max_attempts", "1"),
            ("retry.on_exhausted", "stop"),
        ],
    );
    let outcome = run.ended().await;
    assert!(outcome.is_err(), "the sink failure is the role's outcome");
    assert_eq!(
        librdkafka_threads(),
        baseline,
        "librdkafka threads outlived the role stopped by a failure"
    );
}
