//! Exactly-once on Apache Kafka (3 brokers, a cluster of this binary's own: brokers are
//! killed) and PostgreSQL (scripts/postgres.sh): the seed's two batch consumers writing to
//! the database while they are killed with SIGKILL over and over, some of the kills landing
//! between the database's commit and Kafka's (a test-only pause there, logged, tells when),
//! and a broker killed and restarted; a zombie whose transaction comes after its partitions
//! moved on; the same kills with `delivery = "at_least_once"`, where duplicates are counted
//! and explained; the kafka sink through the same consumer kills, read back with
//! `read_committed` and `read_uncommitted`. Each prints its reconciliation table.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use kafkad::reconcile::{reconcile, MessageKey};
use support::kafka::KafkaCluster;
use support::kills::*;
use support::postgres::Postgres;
use support::process::Kafkad;
use support::scenario::*;

/// Messages per producer, and their rate: production outlasts the kills.
const PER_PRODUCER: u64 = 40_000;
const RATE: u32 = 120;

/// The kill test's cluster, started once for the binary (the tests kill brokers, and share
/// the cluster with nobody else).
fn cluster() -> &'static KafkaCluster {
    KafkaCluster::shared()
}

/// A scenario whose consumers notice a killed member within 6 s.
fn scenario(name: &str) -> Scenario<'static> {
    Scenario::isolated(cluster(), name)
        .with("KAFKAD_KAFKA__SESSION_TIMEOUT_MS", "6000")
        .with("KAFKAD_KAFKA__HEARTBEAT_INTERVAL_MS", "1000")
}

/// A kill run's start: the scenario `name` with its topic, both batch members under `env`
/// plus the pause after each commit at the sink (ready), and both producers with what they
/// will send.
struct KillRun {
    scenario: Scenario<'static>,
    members: Vec<Kafkad>,
    producers: Vec<Kafkad>,
    produced: HashSet<MessageKey>,
    env: Vec<(&'static str, String)>,
}

fn start_kill_run(name: &str, mut env: Vec<(&'static str, String)>) -> KillRun {
    let scenario = scenario(name);
    scenario.ensure_topic();
    env.push(("TEST_KAFKAD_SINK_PAUSE", PAUSE_AFTER_COMMIT.to_owned()));
    let mut members: Vec<Kafkad> = BATCH.iter().map(|s| scenario.start(s, s, &env)).collect();
    for m in &mut members {
        wait_ready(m);
    }
    let (producers, produced) = producers(&scenario);
    KillRun {
        scenario,
        members,
        producers,
        produced,
        env,
    }
}

/// Starts both producers; returns them with what they will send.
fn producers(scenario: &Scenario) -> (Vec<Kafkad>, HashSet<MessageKey>) {
    let producers = vec![
        scenario.producer("producer-1", "producer-1", PER_PRODUCER, RATE),
        scenario.producer("producer-2", "producer-2", PER_PRODUCER, RATE),
    ];
    let produced = ["producer-1", "producer-2"]
        .iter()
        .flat_map(|p| produced_ids(p, PER_PRODUCER))
        .collect();
    (producers, produced)
}

/// Waits for the producers to deliver everything, then for `rows` to hold every key.
fn drain(
    producers: &mut [Kafkad],
    produced: &HashSet<MessageKey>,
    rows: &dyn Fn() -> Vec<MessageKey>,
    scenario: &Scenario,
) {
    for p in producers.iter_mut() {
        assert_eq!(
            p.wait(Duration::from_secs(600)).code(),
            Some(0),
            "{}",
            p.log_tail()
        );
    }
    let deadline = Instant::now() + CONSUME_TIMEOUT;
    loop {
        let r = reconcile(produced, rows());
        if r.lost == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} still missing\n{}",
            r.lost,
            scenario.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Every message of `topic` (all partitions, to their end) as a reader with
/// `isolation.level = isolation` sees it, duplicates included.
fn read_keys(topic: &str, partitions: i32, isolation: &str) -> Vec<MessageKey> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::error::KafkaError;
    use rdkafka::{Message, Offset, TopicPartitionList};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &cluster().bootstrap)
        .set("group.id", "kafkad-test-isolation")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", isolation)
        .create()
        .expect("reader");
    let mut list = TopicPartitionList::new();
    for partition in 0..partitions {
        list.add_partition_offset(topic, partition, Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&list).expect("assign");
    let mut at_end = HashSet::new();
    let mut keys = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while at_end.len() < partitions as usize && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(record)) => {
                let message =
                    kafkad::message::KafkaMessage::decode(record.payload().unwrap_or_default())
                        .expect("output messages decode");
                keys.push((message.producer_id.into_owned(), message.message_id));
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                at_end.insert(partition);
            }
            _ => {}
        }
    }
    keys
}

mod real_broker {
    use super::*;

    /// The batch consumers write to PostgreSQL exactly-once while they are killed 24 times
    /// (16 of them right after a database commit, before Kafka's) and a broker is killed and
    /// restarted: every produced message is in the table exactly once.
    #[test]
    fn postgres_exactly_once_through_kills_and_a_broker_crash() {
        let pg = Postgres::shared();
        let table = "eos_pg";
        let KillRun {
            scenario,
            mut members,
            mut producers,
            produced,
            env,
        } = start_kill_run("eos-pg", pg.sink_env(table));
        let group = scenario.batch_group.clone();
        let windows = kill_loop(
            cluster(),
            true,
            &scenario,
            &mut members,
            &env,
            &|| pg.count(table),
            &|| pg.next_offsets(table, &group, &scenario.topic),
        );
        drain(&mut producers, &produced, &|| pg.keys(table), &scenario);
        stop_gracefully(&mut members);
        print_windows(&windows);
        let r = reconcile(&produced, pg.keys(table));
        print_reconciliation(
            &format!(
                "postgres exactly_once: {KILLS} consumer kills, a broker killed and restarted"
            ),
            produced.len(),
            &BTreeMap::from([(format!("{group} (table {table})"), r)]),
        );
        assert_eq!((r.lost, r.duplicates, r.unexpected), (0, 0, 0));
        assert!(windows.len() >= 3, "too few kills landed in the window");
    }

    /// The same kills with `delivery = "at_least_once"`: nothing lost; duplicates are the
    /// rows a killed member wrote past Kafka's committed offset, written again by the next
    /// owner.
    #[test]
    fn postgres_at_least_once_through_kills_loses_nothing() {
        let pg = Postgres::shared();
        let table = "alo_pg";
        let mut env = pg.sink_env(table);
        env.push(("KAFKAD_SINK__DELIVERY", "at_least_once".to_owned()));
        let KillRun {
            scenario,
            mut members,
            mut producers,
            produced,
            env,
        } = start_kill_run("alo-pg", env);
        kill_loop(
            cluster(),
            true,
            &scenario,
            &mut members,
            &env,
            &|| pg.count(table),
            &BTreeMap::new,
        );
        drain(&mut producers, &produced, &|| pg.keys(table), &scenario);
        stop_gracefully(&mut members);
        let r = reconcile(&produced, pg.keys(table));
        print_reconciliation(
            &format!(
                "postgres at_least_once: {KILLS} consumer kills, a broker killed and restarted"
            ),
            produced.len(),
            &BTreeMap::from([(format!("{} (table {table})", scenario.batch_group), r)]),
        );
        // Duplicated rows by (partition, offset): runs of consecutive offsets are the batches
        // written again.
        let sql = format!("SELECT \"partition\", \"offset\" FROM {table} GROUP BY 1, 2 HAVING count(*) > 1 ORDER BY 1, 2");
        let twice: Vec<(i32, i64)> = pg
            .with_client(|c| {
                c.query(&sql, &[])
                    .map(|rows| rows.iter().map(|row| (row.get(0), row.get(1))).collect())
            })
            .expect("duplicates");
        let runs = twice
            .windows(2)
            .filter(|w| w[1] != (w[0].0, w[0].1 + 1))
            .count()
            + usize::from(!twice.is_empty());
        println!(
            "the {} duplicates are {runs} runs of consecutive offsets: batches a member wrote to the table and was killed before committing to Kafka ({KILLS} kills; a commit refused while a broker was down can leave more than one), which the next owner read again from Kafka's committed offset",
            r.duplicates
        );

        assert_eq!((r.lost, r.unexpected), (0, 0));
    }

    /// The kafka sink, exactly-once, through the same consumer kills (the brokers left alone:
    /// a transaction coordinator moving while members are killed stalled a run here for
    /// minutes on this two-core machine): a `read_committed` reader of the output topic sees
    /// every message once; a `read_uncommitted` reader also sees the copies
    /// of transactions that were aborted (killed members, fenced zombies).
    #[test]
    fn kafka_sink_exactly_once_through_kills() {
        let output = "eos-kafka-out";
        cluster().create_topic(output, 3, 3, &["min.insync.replicas=2"]);
        let env = vec![
            ("KAFKAD_SINK__KIND", "kafka".to_owned()),
            ("KAFKAD_SINK__TOPIC", output.to_owned()),
        ];
        let KillRun {
            scenario,
            mut members,
            mut producers,
            produced,
            env,
        } = start_kill_run("eos-kafka", env);
        // Progress: the output topic's end offsets (a read of the group's offsets can meet a
        // coordinator that is moving while brokers are killed; an error counts as no progress).
        let reader = support::plain_consumer(&cluster().bootstrap, "kafkad-test-progress");
        let written = || {
            use rdkafka::consumer::Consumer;
            (0..3)
                .filter_map(|p| {
                    reader
                        .fetch_watermarks(output, p, Duration::from_secs(5))
                        .ok()
                })
                .map(|(_, high)| high)
                .sum::<i64>()
        };
        kill_loop(
            cluster(),
            false,
            &scenario,
            &mut members,
            &env,
            &written,
            &BTreeMap::new,
        );
        drain(
            &mut producers,
            &produced,
            &|| read_keys(output, 3, "read_committed"),
            &scenario,
        );
        stop_gracefully(&mut members);
        let committed_view = reconcile(&produced, read_keys(output, 3, "read_committed"));
        let uncommitted_view = reconcile(&produced, read_keys(output, 3, "read_uncommitted"));
        print_reconciliation(
            &format!("kafka sink exactly_once: {KILLS} consumer kills; the output topic as its readers see it"),
            produced.len(),
            &BTreeMap::from([
                (format!("{output} read_committed"), committed_view),
                (format!("{output} read_uncommitted"), uncommitted_view),
            ]),
        );
        println!(
            "read_uncommitted sees {} copies of aborted transactions: the transactions were real",
            uncommitted_view.duplicates
        );
        assert_eq!(
            (
                committed_view.lost,
                committed_view.duplicates,
                committed_view.unexpected
            ),
            (0, 0, 0)
        );
        assert_eq!(uncommitted_view.lost, 0);
    }

    /// A zombie: a batch consumer pauses inside its sink call (before its commit) while a
    /// second member joins and the partitions are assigned anew and processed; when it
    /// resumes, its transaction is refused, and the table holds each message once.
    #[test]
    fn a_zombie_member_cannot_write_after_its_partitions_moved() {
        let pg = Postgres::shared();
        let scenario = scenario("eos-zombie");
        scenario.ensure_topic();
        let table = "eos_zombie";
        let env = pg.sink_env(table);
        let mut zombie_env = env.clone();
        zombie_env.push((
            "TEST_KAFKAD_SINK_PAUSE",
            "before_commit:30s:once".to_owned(),
        ));
        let mut zombie = scenario.start("batch-1", "zombie", &zombie_env);
        wait_ready(&mut zombie);
        let total = 3000;
        let mut producer = scenario.producer("producer-1", "producer-1", total, 0);
        wait_for_log(
            &zombie,
            "pausing inside the sink call",
            "the zombie never paused",
        );
        let paused_at = Instant::now();
        let mut other = scenario.start("batch-2", "batch-2", &env);
        assert_eq!(producer.wait(CONSUME_TIMEOUT).code(), Some(0));
        let produced: HashSet<MessageKey> = produced_ids("producer-1", total).collect();
        wait_for_log(
            &zombie,
            "refused by the sink",
            "the zombie's write was not refused",
        );
        let other_rows = pg.count(table);
        println!(
            "the zombie resumed {:.1?} after pausing; by then the table held {other_rows} rows, and its transaction was refused:",
            paused_at.elapsed()
        );
        for line in zombie
            .log_text()
            .lines()
            .filter(|l| l.contains("refused by the sink") || l.contains("test hook"))
        {
            println!("  {line}");
        }
        drain(&mut [], &produced, &|| pg.keys(table), &scenario);
        let mut both = vec![zombie, other];
        stop_gracefully(&mut both);
        let r = reconcile(&produced, pg.keys(table));
        print_reconciliation(
            "postgres exactly_once with a zombie member",
            produced.len(),
            &BTreeMap::from([(format!("{} (table {table})", scenario.batch_group), r)]),
        );
        assert_eq!((r.lost, r.duplicates, r.unexpected), (0, 0, 0));
        other = both.pop().expect("two");
        assert!(
            other.log_text().contains("partitions claimed"),
            "the other member claimed partitions"
        );
    }
}
