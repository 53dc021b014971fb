//! Broker faults under load on a 3-broker Apache Kafka cluster of this test's own (it kills
//! brokers, so it shares the cluster with nobody). Modelled on Kafka's own replication system
//! test: hard and clean shutdown of partition leaders while producers send with `acks=all`;
//! no acknowledged message may be lost.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use kafkad::reconcile::MessageKey;
use support::kafka::KafkaCluster;
use support::scenario::*;

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
