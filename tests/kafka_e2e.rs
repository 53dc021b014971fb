//! The seed topology on Apache Kafka itself: three KRaft brokers on loopback (one cluster for
//! this whole test binary, started by scripts/kafka-cluster.sh), `andrew-topic` with 3
//! partitions and replication factor 2, and kafkad as real processes under the environment of
//! their docker-compose.yml services. Every test reconciles what was produced against what
//! each group's jsonl sinks recorded, and prints the table.
//!
//! Tests share the cluster and isolate themselves by topic and group; they run one at a time
//! (`--test-threads=1` in `make test`) because six processes and three brokers already fill a
//! two-core machine.

mod support;

use std::collections::{BTreeMap, HashSet};

use kafkad::reconcile::MessageKey;
use support::kafka::KafkaCluster;
use support::process::read_jsonl;
use support::scenario::*;

/// Every test here needs Java and the Kafka jars (`scripts/kafka-cluster.sh install`);
/// `make test` runs them with their output shown, so the tables appear in the log.
mod real_broker {
    use super::*;

    /// Scenario: the seed's topology. `topic ensure` creates `andrew-topic` as the seed does
    /// by hand, Kafka's own `kafka-topics --describe` confirms it, six processes exchange
    /// messages, and Kafka's `kafka-consumer-groups --describe` shows no lag at the end.
    #[test]
    fn the_seed_topology_on_three_brokers_loses_nothing() {
        let cluster = KafkaCluster::shared();
        let scenario = Scenario::seed(cluster);
        run_seed_topology(&scenario, "classic", 300);
    }

    /// The same on the next-generation consumer group protocol (KIP-848, GA in Kafka 4.0):
    /// the broker assigns partitions, the members only heartbeat.
    #[test]
    fn the_seed_topology_on_the_consumer_group_protocol_loses_nothing() {
        let cluster = KafkaCluster::shared();
        let scenario = Scenario::isolated(cluster, "kip848-topology")
            .with("KAFKAD_KAFKA__GROUP_PROTOCOL", "consumer");
        run_seed_topology(&scenario, "consumer", 300);
    }
}

/// Runs the seed topology in `scenario`; both groups must be of group type `protocol`
/// (`classic` or `consumer`) as Kafka lists them.
fn run_seed_topology(scenario: &Scenario, protocol: &str, per_producer: u64) {
    let cluster = scenario.cluster;
    let ensure_log = scenario.ensure_topic();
    println!("{ensure_log}");
    let describe = cluster.describe_topic(&scenario.topic);
    println!(
        "kafka-topics --describe --topic {}:\n{describe}",
        scenario.topic
    );
    let partitions = cluster.partitions(&scenario.topic);
    assert_eq!(partitions.len(), 3, "{describe}");
    for p in &partitions {
        assert_eq!(p.replicas.len(), 2, "replication factor 2: {describe}");
        assert_eq!(p.isr.len(), 2, "two in-sync replicas: {describe}");
        assert!(p.leader >= 0, "a leader: {describe}");
    }

    let mut consumers: Vec<_> = ["single-1", "single-2", "batch-1", "batch-2"]
        .iter()
        .map(|name| scenario.consumer(name, name))
        .collect();
    for consumer in &mut consumers {
        wait_ready(consumer);
    }
    // The compose services' own rate (10 messages per second each), for a fixed count.
    let mut producers = vec![
        scenario.producer("producer-1", "producer-1", per_producer, 10),
        scenario.producer("producer-2", "producer-2", per_producer, 10),
    ];
    for p in &mut producers {
        let status = p.wait(CONSUME_TIMEOUT);
        assert_eq!(status.code(), Some(0), "{}:\n{}", p.name, p.log_tail());
        assert_eq!(producer_totals(p), (per_producer, per_producer, 0));
    }
    let produced: HashSet<MessageKey> = produced_ids("producer-1", per_producer)
        .chain(produced_ids("producer-2", per_producer))
        .collect();

    let groups = [
        (scenario.single_group.clone(), ["single-1", "single-2"]),
        (scenario.batch_group.clone(), ["batch-1", "batch-2"]),
    ];
    for (group, members) in &groups {
        scenario.wait_for_group(group, members, &produced);
    }
    let listed = cluster.tool("kafka-consumer-groups", &["--list", "--type", protocol]);
    for (group, _) in &groups {
        assert!(
            listed.lines().any(|l| l.trim() == group),
            "{group} is not a {protocol} group: {listed}"
        );
    }
    stop_gracefully(&mut consumers);

    let mut table = BTreeMap::new();
    for (group, members) in &groups {
        for member in members {
            assert_offsets_increase(member, &read_jsonl(&scenario.sink(member)));
        }
        let r = scenario.reconcile(&produced, members);
        assert_eq!((r.lost, r.unexpected), (0, 0), "{group}");
        table.insert(group.clone(), r);
        let describe = cluster.describe_group(group);
        println!("kafka-consumer-groups --describe --group {group}:\n{describe}");
        let lag = cluster.group_lag(group, &scenario.topic);
        assert_eq!(lag.len(), 3, "{describe}");
        assert!(
            lag.iter().all(|(_, lag)| *lag == Some(0)),
            "{group} has lag: {describe}"
        );
    }
    print_reconciliation(
        &format!("seed topology on Apache Kafka ({})", scenario.topic),
        produced.len(),
        &table,
    );
}
