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
use std::time::{Duration, Instant};

use kafkad::reconcile::MessageKey;
use support::kafka::KafkaCluster;
use support::offsets::committed;
use support::process::{count_jsonl, read_jsonl, Kafkad};
use support::scenario::*;

/// An unreachable cluster: bounded retries, then exit 1 naming the bootstrap list.
#[test]
fn topic_ensure_gives_up_on_an_unreachable_broker_naming_it() {
    let dir = tempfile::tempdir().expect("dir");
    let bootstrap = format!(
        "127.0.0.1:{}",
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port()
    );
    let started = Instant::now();
    let mut ensure = Kafkad::spawn(
        "ensure",
        dir.path(),
        &["topic", "ensure", "--wait", "3s"],
        &[("KAFKAD_KAFKA__BOOTSTRAP_SERVERS", bootstrap.clone())],
    );
    let status = ensure.wait(EXIT_TIMEOUT);
    let log = ensure.log_text();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains(&format!("cannot reach the Kafka brokers at {bootstrap}")),
        "{log}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "bounded retries"
    );
}

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

    /// Scenario: one of two batch consumers (ordinary dynamic membership, no
    /// `group.instance.id`) is killed with SIGKILL mid-run. Its partitions move to the
    /// survivor once its session expires; nothing is lost, and the only duplicates are the
    /// records the dead member processed but had not committed.
    #[test]
    fn a_killed_batch_consumer_hands_its_partitions_to_the_survivor() {
        consumer_crash(KafkaCluster::shared(), "batch", "classic");
    }

    /// The same for the single role, whose stored offsets are committed every 5 s.
    #[test]
    fn a_killed_single_consumer_hands_its_partitions_to_the_survivor() {
        consumer_crash(KafkaCluster::shared(), "single", "classic");
    }

    /// The crash scenario on the consumer group protocol (KIP-848), batch role.
    #[test]
    fn a_killed_batch_consumer_on_the_consumer_group_protocol_loses_nothing() {
        consumer_crash(KafkaCluster::shared(), "batch", "consumer");
    }

    /// The crash scenario on the consumer group protocol (KIP-848), single role.
    #[test]
    fn a_killed_single_consumer_on_the_consumer_group_protocol_loses_nothing() {
        consumer_crash(KafkaCluster::shared(), "single", "consumer");
    }

    /// Scenario: a rolling restart. While both producers send, each of the six processes in
    /// turn is stopped with SIGTERM and started again. Every producer incarnation exits 0
    /// having delivered all it accepted, nothing is lost, and every graceful consumer's final
    /// commit succeeds.
    #[test]
    fn a_rolling_restart_of_all_six_processes_loses_nothing() {
        rolling_restart(KafkaCluster::shared());
    }

    /// A rebalance under load on Apache Kafka: batch-2 joins while batch-1 processes.
    /// batch-1 gives up partitions (its revoke callback commits whatever it processed and had
    /// not committed yet, and drops what it buffered); no commit fails (librdkafka's mock
    /// refuses commits during a rebalance, so only a real broker can show this); committed
    /// offsets, sampled throughout, are never ahead of what was processed; and since the new
    /// owner starts exactly where processing stopped, nothing is processed twice.
    #[test]
    fn a_rebalance_commits_what_was_processed_and_never_more() {
        let cluster = KafkaCluster::shared();
        let scenario = Scenario::isolated(cluster, "rebalance");
        scenario.ensure_topic();
        let group = scenario.batch_group.clone();
        let mut first = scenario.consumer("batch-1", "batch-1");
        wait_ready(&mut first);
        let total = 12_000;
        let mut producer = scenario.producer("producer-1", "producer-1", total, 1500);
        let deadline = Instant::now() + CONSUME_TIMEOUT;
        while count_jsonl(&scenario.sink("batch-1")) < 2000 {
            assert!(Instant::now() < deadline, "{}", first.log_tail());
            std::thread::sleep(Duration::from_millis(20));
        }
        let second = scenario.consumer("batch-2", "batch-2");
        let members = ["batch-1", "batch-2"];
        let produced: HashSet<MessageKey> = produced_ids("producer-1", total).collect();
        // Committed offsets read first, processed offsets after: processing only moves on in
        // between, so a commit ahead of processing would show.
        let mut samples = 0;
        while scenario.reconcile(&produced, &members).lost > 0 {
            assert!(Instant::now() < deadline, "{}", scenario.diagnostics());
            let committed = committed(&cluster.bootstrap, &group, &scenario.topic, 3);
            let mut next_to_process = [0i64; 3];
            for line in scenario.processed(&members) {
                let next = &mut next_to_process[line.partition as usize];
                *next = (*next).max(line.offset + 1);
            }
            for (partition, committed) in committed.iter().enumerate() {
                if let Some(committed) = committed {
                    assert!(
                        *committed <= next_to_process[partition],
                        "partition {partition}: committed {committed}, processed up to {}",
                        next_to_process[partition]
                    );
                }
            }
            samples += 1;
            std::thread::sleep(Duration::from_millis(200));
        }
        assert_eq!(producer.wait(CONSUME_TIMEOUT).code(), Some(0));
        let mut consumers = vec![first, second];
        stop_gracefully(&mut consumers);
        let log = consumers[0].log_text();
        let revocations = log
            .lines()
            .filter(|l| l.contains("partitions revoked"))
            .count();
        // After each batch its offsets are committed at once, so the revoke callback usually
        // finds nothing new to commit; when it does, its commit is logged.
        let revoke_commits = log
            .lines()
            .filter(|l| l.contains("committed the processed offsets before the partitions move"))
            .count();
        let r = scenario.reconcile(&produced, &members);
        print_reconciliation(
            &format!("batch-2 joined under load: batch-1 revoked {revocations} time(s), {revoke_commits} revoke-time commit(s), committed offsets sampled {samples} times"),
            produced.len(),
            &BTreeMap::from([(group.clone(), r)]),
        );
        assert!(revocations >= 1, "batch-1 gave up partitions: {log}");
        assert_eq!((r.lost, r.unexpected, r.duplicates), (0, 0, 0));
        for consumer in &consumers {
            assert!(
                !consumer.log_text().contains("commit failed"),
                "{}",
                consumer.log_text()
            );
        }
    }

    /// A producer sending as fast as it can is stopped with SIGTERM: it stops generating,
    /// flushes, and exits 0 with every accepted message acknowledged and consumed.
    #[test]
    fn a_producer_stopped_at_full_rate_delivers_everything_it_accepted() {
        let scenario = Scenario::isolated(KafkaCluster::shared(), "producer-sigterm");
        scenario.ensure_topic();
        let mut consumer = scenario.consumer("single-1", "single-1");
        wait_ready(&mut consumer);
        let mut producer = scenario.producer("producer-1", "producer-term", 0, 0);
        let deadline = Instant::now() + CONSUME_TIMEOUT;
        while count_jsonl(&scenario.sink("single-1")) < 5000 {
            assert!(
                Instant::now() < deadline,
                "nothing consumed:\n{}",
                producer.log_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        producer.signal(libc::SIGTERM);
        assert_eq!(
            producer.wait(EXIT_TIMEOUT).code(),
            Some(0),
            "{}",
            producer.log_tail()
        );
        let (accepted, delivered, failed) = producer_totals(&producer);
        assert_eq!(
            (delivered, failed),
            (accepted, 0),
            "every accepted message delivered"
        );
        assert!(accepted >= 5000);

        let produced: HashSet<MessageKey> = produced_ids("producer-term", accepted).collect();
        scenario.wait_for_group(&scenario.single_group, &["single-1"], &produced);
        stop_gracefully(std::slice::from_mut(&mut consumer));
        let r = scenario.reconcile(&produced, &["single-1"]);
        print_reconciliation(
            "producer stopped with SIGTERM at full rate",
            produced.len(),
            &BTreeMap::from([(scenario.single_group.clone(), r)]),
        );
        assert_eq!((r.lost, r.unexpected), (0, 0));
    }

    /// `topic ensure` run again on an existing topic of the right shape succeeds without
    /// changing it; one of another shape is refused naming both numbers.
    #[test]
    fn topic_ensure_is_idempotent_and_refuses_another_shape() {
        let scenario = Scenario::isolated(KafkaCluster::shared(), "ensure-shape");
        assert!(scenario.ensure_topic().contains("created"));
        let again = scenario.ensure_topic();
        assert!(
            again.contains("exists with the configured shape"),
            "{again}"
        );

        let log = scenario.ensure_topic_refused(
            "ensure-other-shape",
            &[("KAFKAD_TOPIC__PARTITIONS", "1".to_owned())],
        );
        assert!(
            log.contains("has 3 partitions") && log.contains("says 1"),
            "{log}"
        );
    }

    /// `topic ensure` reports the live topic's durability settings beside the producer's
    /// acks and says what can be lost where they fall short; the dead-letter topic is created
    /// accepting records as large as the source topic does.
    #[test]
    fn topic_ensure_reports_durability_and_sizes_the_dead_letter_topic() {
        let cluster = KafkaCluster::shared();
        let scenario = Scenario::isolated(cluster, "ensure-durability");
        // The source topic exists already, made by hand with a 2 MB record limit and
        // unclean leader election on.
        cluster.create_topic(
            &scenario.topic,
            3,
            2,
            &[
                "max.message.bytes=2097152",
                "unclean.leader.election.enable=true",
            ],
        );
        let log = scenario.ensure_topic();
        assert!(
            log.contains(&format!("topic {}: exists with the configured shape; replication factor 2, min.insync.replicas=1, unclean.leader.election.enable=true, max.message.bytes=2097152; producer acks=all", scenario.topic)),
            "{log}"
        );
        assert!(
            log.contains("min.insync.replicas=1: acks=all is then met by the leader alone"),
            "{log}"
        );
        assert!(
            log.contains(
                "unclean.leader.election.enable=true: after a failure an out-of-sync replica"
            ),
            "{log}"
        );
        let dlq = format!("{}.dlq", scenario.topic);
        assert!(log.contains(&format!("topic {dlq}: created")), "{log}");
        let configs = cluster.tool(
            "kafka-configs",
            &[
                "--describe",
                "--entity-type",
                "topics",
                "--entity-name",
                &dlq,
            ],
        );
        assert!(configs.contains("max.message.bytes=2097152"), "{configs}");

        // With min.insync.replicas=2 and clean elections, acks=all keeps its promise: no
        // warning is left, only a note that with two replicas either broker down stops the
        // writes.
        cluster.alter_topic(
            &scenario.topic,
            "min.insync.replicas=2,unclean.leader.election.enable=false",
        );
        let log = scenario.ensure_topic();
        let about_topic = |kind: &str| -> Vec<String> {
            log.lines()
                .filter(|l| l.contains(&format!("{kind}: topic {} ", scenario.topic)))
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(about_topic("warning"), Vec::<String>::new(), "{log}");
        let notes = about_topic("note");
        assert_eq!(notes.len(), 1, "{log}");
        assert!(notes[0].contains("NOT_ENOUGH_REPLICAS"), "{log}");
        assert!(
            log.contains("min.insync.replicas=2, unclean.leader.election.enable=false"),
            "{log}"
        );
    }

    /// `[topic] config` on Apache Kafka: the topic is created with it and with
    /// min.insync.replicas=2 for its two replicas (no warning about a setting kafkad chose);
    /// the dead-letter topic gets the durability settings but not the retention; an existing
    /// topic whose config differs from the configuration is refused naming both values.
    #[test]
    fn topic_ensure_creates_with_topic_config_and_checks_it_on_an_existing_topic() {
        let cluster = KafkaCluster::shared();
        let scenario = Scenario::isolated(cluster, "ensure-config")
            .with("KAFKAD_TOPIC__CONFIG__RETENTION_MS", "3600000");
        let log = scenario.ensure_topic();
        assert!(
            log.contains(&format!("topic {}: created", scenario.topic)),
            "{log}"
        );
        assert!(
            !log.contains("warning:"),
            "kafkad's own choices draw no warning: {log}"
        );
        let configs = |topic: &str| {
            cluster.tool(
                "kafka-configs",
                &[
                    "--describe",
                    "--entity-type",
                    "topics",
                    "--entity-name",
                    topic,
                ],
            )
        };
        let source = configs(&scenario.topic);
        assert!(
            source.contains("min.insync.replicas=2") && source.contains("retention.ms=3600000"),
            "{source}"
        );
        let dlq = configs(&format!("{}.dlq", scenario.topic));
        assert!(
            dlq.contains("min.insync.replicas=2") && !dlq.contains("retention.ms"),
            "{dlq}"
        );

        let log = scenario.ensure_topic_refused(
            "ensure-other-retention",
            &[("KAFKAD_TOPIC__CONFIG__RETENTION_MS", "7200000".to_owned())],
        );
        assert!(
            log.contains(&format!(
                "topic {} has retention.ms=3600000, but the configuration says 7200000 (topic.config.retention.ms)",
                scenario.topic
            )),
            "{log}"
        );
    }
}

/// Session settings for the crash scenarios: a killed member is noticed after 10 s instead of
/// librdkafka's default 45 s (the consumer group protocol takes them from the broker, whose
/// test configuration says the same).
fn crash_settings<'c>(scenario: Scenario<'c>, protocol: &str) -> Scenario<'c> {
    if protocol == "consumer" {
        scenario.with("KAFKAD_KAFKA__GROUP_PROTOCOL", "consumer")
    } else {
        scenario
            .with("KAFKAD_KAFKA__SESSION_TIMEOUT_MS", "10000")
            .with("KAFKAD_KAFKA__HEARTBEAT_INTERVAL_MS", "1000")
    }
}

fn consumer_crash(cluster: &KafkaCluster, role: &str, protocol: &str) {
    let name = format!("crash-{role}-{protocol}");
    let scenario = crash_settings(Scenario::isolated(cluster, &name), protocol);
    scenario.ensure_topic();
    let (victim, survivor) = (format!("{role}-1"), format!("{role}-2"));
    let group = scenario.group_of(&victim).to_owned();
    let mut dead = scenario.consumer(&victim, &victim);
    let mut alive = scenario.consumer(&survivor, &survivor);
    wait_ready(&mut dead);
    wait_ready(&mut alive);

    let total = 12_000;
    let mut producer = scenario.producer("producer-1", "producer-1", total, 1500);
    let deadline = Instant::now() + CONSUME_TIMEOUT;
    while count_jsonl(&scenario.sink(&victim)) < 1000 {
        assert!(
            Instant::now() < deadline,
            "{victim} processed nothing:\n{}",
            dead.log_tail()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // A crash: no commit of the work in hand, no leaving the group.
    dead.signal(libc::SIGKILL);
    assert_eq!(dead.wait(EXIT_TIMEOUT).code(), None, "killed by a signal");
    // What the dead member processed beyond its group's committed offsets is all that may
    // be delivered twice. Read now: its partitions stay unowned until its session expires.
    let committed = committed(&cluster.bootstrap, &group, &scenario.topic, 3);
    let uncommitted = read_jsonl(&scenario.sink(&victim))
        .iter()
        .filter(|line| committed[line.partition as usize].is_none_or(|c| line.offset >= c))
        .count() as u64;

    assert_eq!(
        producer.wait(CONSUME_TIMEOUT).code(),
        Some(0),
        "{}",
        producer.log_tail()
    );
    let produced: HashSet<MessageKey> = produced_ids("producer-1", total).collect();
    let members = [victim.as_str(), survivor.as_str()];
    scenario.wait_for_group(&group, &members, &produced);
    stop_gracefully(std::slice::from_mut(&mut alive));

    let r = scenario.reconcile(&produced, &members);
    print_reconciliation(
        &format!("{role} consumer killed with SIGKILL ({protocol} protocol); the dead member had {uncommitted} processed records uncommitted"),
        produced.len(),
        &BTreeMap::from([(group.clone(), r)]),
    );
    assert_eq!((r.consumed, r.lost, r.unexpected), (total, 0, 0));
    assert!(
        r.duplicates <= uncommitted,
        "{} duplicates, but only {uncommitted} records were processed and uncommitted",
        r.duplicates
    );
    assert_eq!(final_commit_failures(&alive), 0, "{}", alive.log_tail());
}

fn rolling_restart(cluster: &KafkaCluster) {
    let scenario = Scenario::isolated(cluster, "rolling");
    scenario.ensure_topic();
    let consumer_services = ["single-1", "single-2", "batch-1", "batch-2"];
    let mut consumers: Vec<Kafkad> = consumer_services
        .iter()
        .map(|name| scenario.consumer(name, name))
        .collect();
    for consumer in &mut consumers {
        wait_ready(consumer);
    }
    let rate = 300;
    let mut producers = vec![
        scenario.producer("producer-1", "producer-1", 0, rate),
        scenario.producer("producer-2", "producer-2", 0, rate),
    ];
    // Every producer incarnation's id and what it delivered: a restarted producer numbers its
    // messages from 1 again, so it gets an id of its own to keep the keys apart.
    let mut produced: HashSet<MessageKey> = HashSet::new();
    let mut stopped_consumers: Vec<Kafkad> = Vec::new();
    let record_producer = |p: &mut Kafkad, produced: &mut HashSet<MessageKey>| {
        let status = p.wait(EXIT_TIMEOUT);
        assert_eq!(status.code(), Some(0), "{}:\n{}", p.name, p.log_tail());
        let (accepted, delivered, failed) = producer_totals(p);
        assert_eq!((delivered, failed), (accepted, 0), "{}", p.name);
        assert!(accepted > 0, "{} sent nothing", p.name);
        produced.extend(produced_ids(&p.name, accepted));
    };

    // Between two restarts the topology does real work: every running consumer processes
    // another 300 records.
    let work = |consumers: &[Kafkad]| {
        let names: Vec<&str> = consumers.iter().map(|c| c.name.as_str()).collect();
        scenario.wait_for_progress(&names, 300, "between restarts");
    };
    for (i, producer) in producers.iter_mut().enumerate() {
        work(&consumers);
        producer.signal(libc::SIGTERM);
        record_producer(producer, &mut produced);
        let service = format!("producer-{}", i + 1);
        *producer = scenario.producer(&service, &format!("{service}-restarted"), 0, rate);
    }
    for (i, service) in consumer_services.iter().enumerate() {
        work(&consumers);
        consumers[i].signal(libc::SIGTERM);
        let status = consumers[i].wait(EXIT_TIMEOUT);
        assert_eq!(
            status.code(),
            Some(0),
            "{}:\n{}",
            consumers[i].name,
            consumers[i].log_tail()
        );
        let restarted = scenario.consumer(service, &format!("{service}-restarted"));
        let old = std::mem::replace(&mut consumers[i], restarted);
        wait_ready(&mut consumers[i]);
        stopped_consumers.push(old);
    }
    work(&consumers);
    for p in &producers {
        p.signal(libc::SIGTERM);
    }
    for p in &mut producers {
        record_producer(p, &mut produced);
    }

    // Every incarnation of a group's two services.
    let members_of = |group: &str| -> Vec<String> {
        consumer_services
            .iter()
            .filter(|service| scenario.group_of(service) == group)
            .flat_map(|service| [service.to_string(), format!("{service}-restarted")])
            .collect()
    };
    let mut table = BTreeMap::new();
    for group in [&scenario.single_group, &scenario.batch_group] {
        let members = members_of(group);
        let members: Vec<&str> = members.iter().map(String::as_str).collect();
        scenario.wait_for_group(group, &members, &produced);
    }
    stop_gracefully(&mut consumers);
    let mut failures = 0;
    for process in stopped_consumers.iter().chain(&consumers) {
        let n = final_commit_failures(process);
        println!("{}: {n} failed final commits", process.name);
        failures += n;
    }
    for group in [&scenario.single_group, &scenario.batch_group] {
        let members = members_of(group);
        let members: Vec<&str> = members.iter().map(String::as_str).collect();
        let r = scenario.reconcile(&produced, &members);
        assert_eq!((r.lost, r.unexpected), (0, 0), "{group}");
        table.insert(group.clone(), r);
    }
    print_reconciliation("rolling restart of six processes", produced.len(), &table);
    assert_eq!(
        failures, 0,
        "every graceful consumer's final commit succeeds"
    );
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
    let produced = wait_producers(&mut producers, per_producer);

    let groups = scenario.seed_groups();
    for (group, members) in &groups {
        scenario.wait_for_group(group, members, &produced);
    }
    // `--list --type` prints each group with its type: `single-message-group  Classic`.
    let listed = cluster.tool("kafka-consumer-groups", &["--list", "--type", protocol]);
    for (group, _) in &groups {
        assert!(
            listed.lines().any(|l| {
                let columns: Vec<&str> = l.split_whitespace().collect();
                columns.len() == 2
                    && columns[0] == group
                    && columns[1].eq_ignore_ascii_case(protocol)
            }),
            "{group} is not a {protocol} group: {listed}"
        );
    }
    // Both members of each group leave at the same instant here. librdkafka's mock cluster
    // refuses one of their final commits (RebalanceInProgress); Apache Kafka accepts both,
    // since a member's commit with the current generation is valid until the group moves on.
    stop_gracefully(&mut consumers);
    for consumer in &consumers {
        assert_eq!(
            final_commit_failures(consumer),
            0,
            "{}",
            consumer.log_tail()
        );
    }

    let table = scenario.reconcile_groups(&produced, &groups);
    for (group, members) in &groups {
        for member in members {
            assert_offsets_increase(member, &read_jsonl(&scenario.sink(member)));
        }
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
