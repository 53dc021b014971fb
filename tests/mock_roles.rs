//! The roles end to end on librdkafka's mock cluster, through the same code the daemon runs.
//! Every test that moves messages reconciles produced against processed.

mod support;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafkad::reconcile::reconcile;
use kafkad::roles::RoleError;
use kafkad::sink::{MemorySink, ProcessedLine, Record, Sink, SinkError};
use support::offsets::committed;
use support::*;

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_producers_reach_both_groups_with_nothing_lost() {
    let mock = MockTopology::start(3);
    let single_sink = MemorySink::default();
    let batch_sink = MemorySink::default();
    let mut consumers = Vec::new();
    for _ in 0..2 {
        consumers.push(mock.single(single_sink.clone(), &[]));
        consumers.push(mock.batch(batch_sink.clone(), &[]));
    }
    let producers: Vec<_> = ["producer-1", "producer-2"]
        .iter()
        .map(|id| mock.producer(id, 2500))
        .collect();
    let mut reports = Vec::new();
    for p in producers {
        reports.push(p.delivered().await);
    }
    for r in &reports {
        assert_eq!(
            (r.accepted, r.delivered, r.failed),
            (2500, 2500, 0),
            "{r:?}"
        );
    }
    let produced = delivered_keys(&reports.iter().collect::<Vec<_>>());
    assert_eq!(produced.len(), 5000);

    for (name, sink) in [("single", &single_sink), ("batch", &batch_sink)] {
        wait_until(WAIT, &format!("{name} group to process everything"), || {
            reconcile(&produced, processed_keys(sink)).lost == 0
        })
        .await;
    }
    for consumer in consumers {
        consumer.stop().await.expect("consumer stops cleanly");
    }
    for (name, sink) in [
        ("single-message-group", &single_sink),
        ("batch-message-group", &batch_sink),
    ] {
        let r = reconcile(&produced, processed_keys(sink));
        eprintln!(
            "{name}: consumed {} lost {} duplicates {}",
            r.consumed, r.lost, r.duplicates
        );
        assert_eq!(r.lost, 0, "{name}");
        assert_eq!(r.consumed, 5000, "{name}");
        assert_eq!(r.unexpected, 0, "{name}");
    }
}

/// A sink failure stops the role at once, as a crash would.
const STOP_AT_ONCE: &[(&str, &str)] =
    &[("retry.max_attempts", "1"), ("retry.on_exhausted", "stop")];

/// A sink that records what it was given and then fails: the role must stop without
/// committing, as if it had crashed between processing and commit.
#[derive(Clone, Default)]
struct FailingSink {
    seen: Arc<Mutex<Vec<ProcessedLine>>>,
    /// Succeed this many times (messages for `process`, batches for `process_batch`) first.
    succeed: usize,
    calls: Arc<Mutex<usize>>,
}

impl FailingSink {
    fn fail(&self) -> Result<(), SinkError> {
        let mut calls = self.calls.lock().expect("lock");
        *calls += 1;
        if *calls > self.succeed {
            Err(SinkError::Write {
                path: "/dev/full".into(),
                source: std::io::Error::other("injected sink failure"),
            })
        } else {
            Ok(())
        }
    }
}

impl Sink for FailingSink {
    fn process(&mut self, record: &Record<'_>) -> Result<(), SinkError> {
        self.fail()?;
        self.seen
            .lock()
            .expect("lock")
            .push(ProcessedLine::of(record).expect("kafka_message"));
        Ok(())
    }

    fn process_batch(&mut self, batch: &[Record<'_>]) -> Result<(), SinkError> {
        self.seen
            .lock()
            .expect("lock")
            .extend(batch.iter().filter_map(ProcessedLine::of));
        self.fail()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_stopped_before_its_commit_is_redelivered_to_the_group() {
    let mock = MockTopology::start(1);
    let report = mock.producer("p", 30).delivered().await;
    let produced = delivered_keys(&[&report]);
    let batch_settings = [("batch.min_size", "10"), ("batch.max_size", "10")];

    // The first consumer processes a batch, then "crashes" before committing it: a sink
    // failure that stops the role at once (one attempt, on_exhausted = "stop").
    let failing = FailingSink::default();
    let first = mock.batch(
        failing.clone(),
        &[batch_settings.as_slice(), STOP_AT_ONCE].concat(),
    );
    let outcome = first.ended().await;
    assert!(
        matches!(outcome, Err(RoleError::ProcessingFailed { .. })),
        "{outcome:?}"
    );
    let attempted: Vec<i64> = failing
        .seen
        .lock()
        .expect("lock")
        .iter()
        .map(|l| l.message_id)
        .collect();
    assert_eq!(
        attempted,
        (1..=10).collect::<Vec<_>>(),
        "the first batch is messages 1..=10"
    );
    assert_eq!(
        committed(&mock.bootstrap, "batch-message-group", TOPIC, 1),
        [None],
        "nothing committed"
    );

    // The next member of the group gets the same batch again, and the rest.
    let sink = MemorySink::default();
    let second = mock.batch(sink.clone(), &batch_settings);
    wait_until(WAIT, "the second consumer to process all 30", || {
        sink.len() >= 30
    })
    .await;
    second.stop().await.expect("stops cleanly");
    let processed: Vec<i64> = sink.lines().iter().map(|l| l.message_id).collect();
    assert_eq!(
        processed,
        (1..=30).collect::<Vec<_>>(),
        "redelivered from the first message, in order"
    );
    let r = reconcile(&produced, processed_keys(&sink));
    assert_eq!((r.consumed, r.lost, r.duplicates), (30, 0, 0));
    assert_eq!(
        committed(&mock.bootstrap, "batch-message-group", TOPIC, 1),
        [Some(30)],
        "last + 1 committed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_consumer_commits_exactly_what_it_processed() {
    let mock = MockTopology::start(1);
    let report = mock.producer("p", 20).delivered().await;
    let produced = delivered_keys(&[&report]);

    // Processes messages 1..=4, fails on 5: offsets of 1..=4 are stored and committed, 5 is not.
    let failing = FailingSink {
        succeed: 4,
        ..FailingSink::default()
    };
    let first = mock.single(failing.clone(), STOP_AT_ONCE);
    let outcome = first.ended().await;
    assert!(
        matches!(outcome, Err(RoleError::ProcessingFailed { .. })),
        "{outcome:?}"
    );
    assert_eq!(
        committed(&mock.bootstrap, "single-message-group", TOPIC, 1),
        [Some(4)]
    );

    let sink = MemorySink::default();
    let second = mock.single(sink.clone(), &[]);
    wait_until(WAIT, "the second consumer to reach message 20", || {
        sink.lines().iter().any(|l| l.message_id == 20)
    })
    .await;
    second.stop().await.expect("stops cleanly");
    let resumed: Vec<i64> = sink.lines().iter().map(|l| l.message_id).collect();
    assert_eq!(
        resumed,
        (5..=20).collect::<Vec<_>>(),
        "resumes at the first unprocessed message"
    );
    let mut all: Vec<_> = failing
        .seen
        .lock()
        .expect("lock")
        .iter()
        .map(|l| (l.producer_id.clone(), l.message_id))
        .collect();
    all.extend(processed_keys(&sink));
    let r = reconcile(&produced, all);
    assert_eq!((r.consumed, r.lost, r.duplicates), (20, 0, 0));
    assert_eq!(
        committed(&mock.bootstrap, "single-message-group", TOPIC, 1),
        [Some(20)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_tail_below_min_size_is_processed_after_max_wait() {
    let mock = MockTopology::start(1);
    let report = mock.producer("p", 3).delivered().await;
    let sink = MemorySink::default();
    let consumer = mock.batch(
        sink.clone(),
        &[
            ("batch.min_size", "10"),
            ("batch.max_wait", "300ms"),
            ("kafka.fetch.wait.max.ms", "100"),
        ],
    );
    // The tail arrives (consumed), waits out max_wait below min_size, then goes as one batch.
    wait_until(WAIT, "the 3-message tail to arrive", || {
        consumer.metrics.consumed.get() == 3
    })
    .await;
    let arrived = std::time::Instant::now();
    assert_eq!(sink.len(), 0, "held below min_size");
    wait_until(WAIT, "the 3-message tail", || sink.len() == 3).await;
    let waited = arrived.elapsed();
    // max_wait counts from the first record of the batch, which came at most a poll before
    // the third; the batch may be late by a poll interval (100 ms) and scheduling.
    assert!(
        waited >= Duration::from_millis(150) && waited < Duration::from_millis(1300),
        "the tail was processed {waited:?} after it arrived; max_wait is 300 ms"
    );
    let report2 = consumer.stop().await.expect("stops");
    assert_eq!(report2.processed, 3);
    let ids: HashSet<i64> = sink.lines().iter().map(|l| l.message_id).collect();
    assert_eq!(ids, report.delivered_ids().collect());
}

/// `partitions` partitions led by broker 1, and the batch group's coordinator on broker 3,
/// 300 ms away: commits are slow, fetches are not.
fn far_batch_coordinator(partitions: i32) -> MockTopology {
    use rdkafka::mocking::MockCoordinator;
    let mock = MockTopology::start(partitions);
    for partition in 0..partitions {
        mock.cluster
            .partition_leader(TOPIC, partition, 1)
            .expect("leader near");
    }
    mock.cluster
        .mock()
        .coordinator(MockCoordinator::Group("batch-message-group".to_owned()), 3)
        .expect("coordinator far");
    mock.cluster
        .mock()
        .broker_round_trip_time(3, Duration::from_millis(300))
        .expect("rtt");
    mock
}

/// The batch role does not wait for its commits: with the group's coordinator 300 ms away
/// (its partitions' leaders are near), batches go on while a commit is out, and one commit
/// carries every batch that finished meanwhile. A commit per batch, waited for, would take
/// 60 × 300 ms here. Everything is committed at the end, nothing past what was processed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_go_on_while_their_commit_is_out_and_one_commit_carries_many() {
    let mock = far_batch_coordinator(1);
    const N: u64 = 3000;
    let report = mock.producer("p", N).delivered().await;
    let produced = delivered_keys(&[&report]);

    let sink = MemorySink::default();
    let run = mock.batch(
        sink.clone(),
        &[("batch.min_size", "50"), ("batch.max_size", "50")],
    );
    wait_until(WAIT, "every record processed", || sink.len() as u64 >= N).await;
    let (batches, commits) = (run.metrics.batches.get(), run.metrics.commits.get());
    let report = run.stop().await.expect("stops cleanly");
    assert_eq!(report.processed, N);
    assert_eq!(batches, N / 50);
    assert!(
        commits * 4 <= batches,
        "{commits} commits for {batches} batches: batches waited for their commits"
    );
    let r = reconcile(&produced, processed_keys(&sink));
    assert_eq!((r.consumed, r.lost, r.duplicates), (N, 0, 0));
    assert_eq!(
        committed(&mock.bootstrap, "batch-message-group", TOPIC, 1),
        [Some(N as i64)],
        "the final commit carries the last batch"
    );
}

/// A member joins while the batch role's commits are slow (the coordinator is 300 ms away)
/// and go out back to back: the revocation commits what finished, after the commit on its
/// way (librdkafka itself held the revocation back until that commit returned, each time it
/// was traced), and the partitions move on. Nothing is lost; what the first member finished
/// after its last accepted commit, if anything, is processed again by the new owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_joining_while_a_batch_commit_is_out_loses_nothing() {
    let mock = far_batch_coordinator(3);
    const N: u64 = 6000;
    let producer = mock.producer_at("p", N, 1500);
    let batch = [("batch.min_size", "20"), ("batch.max_size", "20")];
    let sink = MemorySink::default();
    let first = mock.batch(sink.clone(), &batch);
    wait_until(WAIT, "the first member to commit", || {
        first.metrics.commits.get() >= 2
    })
    .await;
    let second = mock.batch(sink.clone(), &batch);
    let report = producer.delivered().await;
    let produced = delivered_keys(&[&report]);
    wait_until(WAIT, "every record processed", || {
        reconcile(&produced, processed_keys(&sink)).lost == 0
    })
    .await;
    assert!(
        first.metrics.rebalances.get() >= 2,
        "the join revoked and assigned"
    );
    first.stop().await.expect("the first stops cleanly");
    second.stop().await.expect("the second stops cleanly");
    let r = reconcile(&produced, processed_keys(&sink));
    println!(
        "a member joined while a commit was out: {} produced, {} processed, {} lost, {} again",
        N, r.consumed, r.lost, r.duplicates
    );
    assert_eq!((r.lost, r.unexpected), (0, 0));
}
