//! Broker faults under load on a 3-broker Apache Kafka cluster of this test's own (it kills
//! brokers, so it shares the cluster with nobody). Modelled on Kafka's own replication system
//! test: hard and clean shutdown of partition leaders while producers send with `acks=all`;
//! no acknowledged message may be lost.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use kafkad::reconcile::MessageKey;
use support::kafka::KafkaCluster;
use support::scenario::*;
use support::{http_get, message, produce_raw, read_topic, sample, RawRecord};

/// How long the cluster may take to have every replica back in sync after a broker returns.
const RESYNC_TIMEOUT: Duration = Duration::from_secs(180);

mod real_broker {
    use super::*;

    /// Scenario: SIGKILL the leader of a partition while both producers send, then restart
    /// it; then a controlled shutdown (SIGTERM) and restart of another broker. The producers
    /// exit 0 having had every accepted message acknowledged, and both groups lose nothing.
    #[test]
    fn killing_and_stopping_partition_leaders_under_load_loses_nothing() {
        let cluster = KafkaCluster::start(3);
        let scenario = Scenario::isolated(&cluster, "broker-faults");
        scenario.ensure_topic();
        let mut consumers = vec![
            scenario.consumer("single-1", "single-1"),
            scenario.consumer("batch-1", "batch-1"),
        ];
        for consumer in &mut consumers {
            wait_ready(consumer);
        }
        let mut producers = vec![
            scenario.producer("producer-1", "producer-1", 0, PRODUCER_RATE),
            scenario.producer("producer-2", "producer-2", 0, PRODUCER_RATE),
        ];
        let observed = ["single-1", "batch-1"];
        scenario.wait_for_progress(&observed, 2000, "before the faults");

        // A hard failure of partition 0's leader.
        let killed = scenario_leader(&cluster, &scenario.topic, None);
        println!("SIGKILL broker {killed}, the leader of partition 0");
        cluster.kill(killed);
        scenario.wait_for_progress(&observed, 2000, "with a broker killed");
        cluster.restart(killed);
        cluster.wait_fully_replicated(&scenario.topic, RESYNC_TIMEOUT);
        println!(
            "broker {killed} back:\n{}",
            cluster.describe_topic(&scenario.topic)
        );

        // A controlled shutdown of another broker that leads a partition now.
        let stopped = scenario_leader(&cluster, &scenario.topic, Some(killed));
        println!("SIGTERM broker {stopped} (controlled shutdown)");
        cluster.stop_broker(stopped);
        scenario.wait_for_progress(&observed, 2000, "with a broker stopped");
        cluster.restart(stopped);
        cluster.wait_fully_replicated(&scenario.topic, RESYNC_TIMEOUT);
        scenario.wait_for_progress(&observed, 2000, "after the faults");

        let mut produced: HashSet<MessageKey> = HashSet::new();
        for p in &producers {
            p.signal(libc::SIGTERM);
        }
        for p in &mut producers {
            let status = p.wait(EXIT_TIMEOUT);
            assert_eq!(status.code(), Some(0), "{}:\n{}", p.name, p.log_tail());
            let (accepted, delivered, failed) = producer_totals(p);
            println!(
                "{}: accepted {accepted}, delivered {delivered}, failed {failed}",
                p.name
            );
            assert_eq!((delivered, failed), (accepted, 0), "{}", p.name);
            produced.extend(produced_ids(&p.name, accepted));
        }

        let groups = [
            (scenario.single_group.clone(), "single-1"),
            (scenario.batch_group.clone(), "batch-1"),
        ];
        for (group, member) in &groups {
            scenario.wait_for_group(group, &[member], &produced);
        }
        stop_gracefully(&mut consumers);
        let mut table = BTreeMap::new();
        for (group, member) in &groups {
            let r = scenario.reconcile(&produced, &[member]);
            assert_eq!((r.lost, r.unexpected), (0, 0), "{group}");
            table.insert(group.clone(), r);
        }
        print_reconciliation(
            &format!("broker {killed} killed and restarted, broker {stopped} stopped and restarted, under load"),
            produced.len(),
            &table,
        );
    }

    /// A dead-letter topic that refuses writes for now (a replica down, too few in sync): the copy
    /// is retried by the worker holding the batch, no work finishes, and `/healthz` answers 503
    /// within `stall_timeout`, with `kafkad_seconds_since_progress` past it. Once the topic
    /// accepts writes the copy is made and the consumer is healthy again. (The batch goes to a
    /// worker, and its bad record to the dead-letter topic, after `max_wait`: half a second
    /// here, so the wait measured is the stall's.)
    #[test]
    fn a_dead_letter_copy_refused_for_now_turns_healthz_503_within_stall_timeout() {
        let cluster = KafkaCluster::start(3);
        let stall_timeout = Duration::from_secs(5);
        let scenario = Scenario::isolated(&cluster, "dlq-transient")
            .with("KAFKAD_STALL_TIMEOUT", "5s")
            .with("KAFKAD_BATCH__MAX_WAIT", "500ms")
            .with("KAFKAD_KAFKA__FETCH_WAIT_MAX_MS", "500");
        let dlq = format!("{}.dlq", scenario.topic);
        cluster.create_topic(&scenario.topic, 1, 2, &["min.insync.replicas=1"]);
        cluster.create_topic(&dlq, 1, 2, &["min.insync.replicas=2"]);
        // With one of its two replicas down the dead-letter topic refuses every write with
        // NOT_ENOUGH_REPLICAS, an error that clears once the broker is back.
        let down = cluster.partitions(&dlq)[0].replicas[0];
        cluster.stop_broker(down);
        let mut records = vec![RawRecord::value(b"not json".to_vec())];
        records.extend((1..=5).map(|id| RawRecord::value(message("p", id))));
        tokio::runtime::Runtime::new()
            .expect("runtime")
            .block_on(produce_raw(&cluster.bootstrap, &scenario.topic, &records));

        let mut consumer = scenario.consumer("batch-1", "batch-1");
        wait_ready(&mut consumer);
        let ready = Instant::now();
        let addr = http_addr(&consumer).expect("endpoint address");
        let deadline = ready + stall_timeout + Duration::from_secs(10);
        let stalled_after = loop {
            assert!(
                Instant::now() < deadline,
                "/healthz still 200 {:?} after the consumer got its partition:\n{}",
                ready.elapsed(),
                consumer.log_tail()
            );
            if http_get(&addr, "/healthz").is_some_and(|(status, _)| status == 503) {
                break ready.elapsed();
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let (_, body) = http_get(&addr, "/healthz").expect("healthz");
        assert!(body.contains("stalled"), "{body}");
        let (_, metrics) = http_get(&addr, "/metrics").expect("metrics");
        let since = sample(&metrics, "kafkad_seconds_since_progress", &[]).expect("gauge");
        assert!(since >= stall_timeout.as_secs_f64(), "{since} s: {metrics}");
        println!("/healthz 503 {stalled_after:?} after the partition was assigned ({since:.1} s without progress)");
        assert!(stalled_after >= stall_timeout - Duration::from_secs(1));
        assert!(
            consumer.running(),
            "a transient refusal does not stop the consumer"
        );

        cluster.restart(down);
        let produced: HashSet<MessageKey> = produced_ids("p", 5).collect();
        scenario.wait_for_group(&scenario.batch_group, &["batch-1"], &produced);
        let healthy = Instant::now() + CONSUME_TIMEOUT;
        while http_get(&addr, "/healthz").is_none_or(|(status, _)| status != 200) {
            assert!(Instant::now() < healthy, "never healthy again");
            std::thread::sleep(Duration::from_millis(100));
        }
        stop_gracefully(std::slice::from_mut(&mut consumer));
        let r = scenario.reconcile(&produced, &["batch-1"]);
        assert_eq!((r.lost, r.unexpected, r.duplicates), (0, 0, 0));
        assert_eq!(read_topic(&cluster.bootstrap, &dlq, 1).len(), 1);
    }
}

/// Messages per second per producer while brokers fail. Flat out, the two producers write
/// over a million messages during the faults on a two-core machine, far more than the two
/// consumers can read back while the brokers recover; 2,000 per second each keeps thousands of
/// messages in flight and queued through every leader change while both groups keep up.
const PRODUCER_RATE: u32 = 2000;

/// The leader of the lowest-numbered partition whose leader is not `except`.
fn scenario_leader(cluster: &KafkaCluster, topic: &str, except: Option<i32>) -> i32 {
    cluster
        .partitions(topic)
        .iter()
        .map(|p| p.leader)
        .find(|leader| *leader >= 0 && Some(*leader) != except)
        .expect("a partition led by another broker")
}
