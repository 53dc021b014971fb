//! Exactly-once on Apache Kafka (3 brokers, a cluster of this binary's own: brokers are
//! killed) and PostgreSQL (scripts/postgres.sh): the seed's two batch consumers writing to
//! the database while they are killed with SIGKILL over and over, some of the kills landing
//! between the database's commit and Kafka's (a test-only pause there, logged, tells when),
//! and a broker killed and restarted; a zombie whose transaction comes after its partitions
//! moved on; the same kills with `delivery = "at_least_once"`, where duplicates are counted
//! and explained; the kafka sink through the same consumer kills, read back with
//! `read_committed` and `read_uncommitted`, some kills inside open transactions. Each prints
//! its reconciliation table.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use kafkad::reconcile::{reconcile, MessageKey};
use support::kafka::KafkaCluster;
use support::kills::*;
use support::offsets::OffsetReader;
use support::postgres::Postgres;
use support::process::Kafkad;
use support::scenario::*;

/// Messages per second per producer. The producers of a kill run send until its kills are
/// done (they are then stopped, and what they delivered is what was produced), so production
/// outlasts the kills whatever the machine's speed.
const RATE: u32 = 120;

/// The kill tests' cluster, started once for the binary (the tests kill brokers, and share
/// the cluster with nobody else). Its brokers accept sessions down to 1 s (Kafka's floor is
/// 6 s by default): each kill ends in a rebalance that waits for the killed member's session
/// to expire, and 24 kills a run at 6 s each were most of this binary's time.
fn cluster() -> &'static KafkaCluster {
    static CLUSTER: OnceLock<KafkaCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let config = Path::new(env!("CARGO_TARGET_TMPDIR")).join("exactly-once-node.properties");
        std::fs::write(&config, "group.min.session.timeout.ms=1000\n").expect("node config");
        KafkaCluster::start_with_config(3, Some(&config))
    })
}

/// A scenario whose consumers notice a killed member within 2.5 s.
fn scenario(name: &str) -> Scenario<'static> {
    Scenario::isolated(cluster(), name)
        .with("KAFKAD_KAFKA__SESSION_TIMEOUT_MS", "2500")
        .with("KAFKAD_KAFKA__HEARTBEAT_INTERVAL_MS", "500")
}

/// A kill run's start: the scenario `name` with its topic, both batch members under `env`
/// plus the test hook's `pauses` (ready), and both producers, sending until they are stopped.
struct KillRun {
    scenario: Scenario<'static>,
    members: Vec<Kafkad>,
    producers: Vec<Kafkad>,
    env: Vec<(&'static str, String)>,
}

fn start_kill_run(name: &str, mut env: Vec<(&'static str, String)>, pauses: &str) -> KillRun {
    let scenario = scenario(name);
    scenario.ensure_topic();
    env.push(("TEST_KAFKAD_SINK_PAUSE", pauses.to_owned()));
    let mut members: Vec<Kafkad> = BATCH.iter().map(|s| scenario.start(s, s, &env)).collect();
    for m in &mut members {
        wait_ready(m);
    }
    // `count` 0: they send until stopped.
    let producers = ["producer-1", "producer-2"]
        .iter()
        .map(|p| scenario.producer(p, p, 0, RATE))
        .collect();
    KillRun {
        scenario,
        members,
        producers,
        env,
    }
}

impl KillRun {
    /// Kills the members as `plan` says (see [`kill_loop`]; `progress` and `positions` are
    /// its), then stops the producers, waits for `rows` to hold every key they produced and
    /// stops the members gracefully. Returns the scenario, what was produced, and the windows
    /// the kills landed in.
    fn kill_and_drain(
        mut self,
        plan: KillPlan,
        progress: &dyn Fn() -> i64,
        positions: &dyn Fn(&Scenario) -> BTreeMap<i32, i64>,
        rows: &dyn Fn() -> Vec<MessageKey>,
    ) -> (Scenario<'static>, HashSet<MessageKey>, Vec<Window>) {
        let windows = kill_loop(
            cluster(),
            plan,
            &self.scenario,
            &mut self.members,
            &self.env,
            progress,
            &|| positions(&self.scenario),
        );
        let produced = drain(&mut self.producers, rows, &self.scenario);
        stop_gracefully(&mut self.members);
        (self.scenario, produced, windows)
    }
}

/// Stops the producers (SIGTERM: they flush and exit 0 once everything they accepted is
/// delivered); returns what they produced, from their final reports.
fn stop_producers(producers: &mut [Kafkad]) -> HashSet<MessageKey> {
    let mut produced = HashSet::new();
    for p in producers.iter_mut() {
        p.signal(libc::SIGTERM);
        assert_eq!(p.wait(EXIT_TIMEOUT).code(), Some(0), "{}", p.log_tail());
        let (accepted, delivered, failed) = producer_totals(p);
        assert_eq!((delivered, failed), (accepted, 0), "{}", p.log_tail());
        produced.extend(produced_ids(&p.name, delivered));
    }
    produced
}

/// Stops the producers, then waits for `rows` to hold every key they produced; returns
/// what they produced.
fn drain(
    producers: &mut [Kafkad],
    rows: &dyn Fn() -> Vec<MessageKey>,
    scenario: &Scenario,
) -> HashSet<MessageKey> {
    let produced = stop_producers(producers);
    wait_for_rows(&produced, rows, scenario);
    produced
}

/// Waits for `rows` to hold every key of `produced`.
fn wait_for_rows(
    produced: &HashSet<MessageKey>,
    rows: &dyn Fn() -> Vec<MessageKey>,
    scenario: &Scenario,
) {
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
        let (scenario, produced, windows) =
            start_kill_run("eos-pg", pg.sink_env(table), PAUSE_AFTER_COMMIT).kill_and_drain(
                KillPlan {
                    broker_fault: true,
                    third_kills: Aim::Random,
                },
                &|| pg.count(table),
                &|s| pg.next_offsets(table, &s.batch_group, &s.topic),
                &|| pg.keys(table),
            );
        let group = &scenario.batch_group;
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
        // No positions: at least once, the sink keeps none.
        let (scenario, produced, _) = start_kill_run("alo-pg", env, PAUSE_AFTER_COMMIT)
            .kill_and_drain(
                KillPlan {
                    broker_fault: true,
                    third_kills: Aim::Random,
                },
                &|| pg.count(table),
                &|_| BTreeMap::new(),
                &|| pg.keys(table),
            );
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
            "the {} duplicates are {runs} runs of consecutive offsets: batches a member wrote to the table and was killed before committing to Kafka ({KILLS} kills; a batch leaves a run on each partition it covered, and a commit refused while a broker was down more than one), which the next owner read again from Kafka's committed offset",
            r.duplicates
        );

        assert_eq!((r.lost, r.unexpected), (0, 0));
    }

    /// The kafka sink, exactly-once, through the same consumer kills (the brokers left alone:
    /// a transaction coordinator moving while members are killed stalled a run here for
    /// minutes on this two-core machine), every third kill inside an open transaction whose
    /// records the brokers hold: a `read_committed` reader of the output topic sees every
    /// message once; a `read_uncommitted` reader also sees the copies of the transactions
    /// those kills left open, which their successors aborted.
    #[test]
    fn kafka_sink_exactly_once_through_kills() {
        let output = "eos-kafka-out";
        cluster().create_topic(output, 3, 3, &["min.insync.replicas=2"]);
        let env = vec![
            ("KAFKAD_SINK__KIND", "kafka".to_owned()),
            ("KAFKAD_SINK__TOPIC", output.to_owned()),
        ];
        let run = start_kill_run("eos-kafka", env, PAUSE_AROUND_COMMIT);
        // Progress: the output topic's end offsets (a read of the group's offsets can meet a
        // coordinator that is moving while brokers are killed; an error counts as no progress).
        let reader = OffsetReader::watermarks_only(&cluster().bootstrap)
            .with_timeout(Duration::from_secs(5));
        let written = || {
            (0..3)
                .filter_map(|p| reader.try_watermarks(output, p).ok())
                .map(|(_, high)| high)
                .sum::<i64>()
        };
        // No positions: the kafka sink's are Kafka's own committed offsets.
        let (_scenario, produced, _) = run.kill_and_drain(
            KillPlan {
                broker_fault: false,
                third_kills: Aim::OpenTransaction,
            },
            &written,
            &|_| BTreeMap::new(),
            &|| read_keys(output, 3, "read_committed"),
        );
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
            "read_uncommitted sees {} copies of aborted transactions (the kills inside open transactions): the transactions were real, and read_committed hides them",
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
        assert!(
            uncommitted_view.duplicates > 0,
            "every third kill left a transaction open with its records written"
        );
    }

    /// The single role with the kafka sink, exactly-once: the records in hand of a
    /// partition go out in one transaction with their offsets, not a transaction each, and a
    /// `read_committed` reader of the output sees every message once.
    #[test]
    fn the_single_role_writes_a_transaction_per_run_of_records() {
        let scenario = scenario("eos-kafka-single");
        scenario.ensure_topic();
        let output = "eos-kafka-single-out";
        cluster().create_topic(output, 3, 3, &["min.insync.replicas=2"]);
        const N: u64 = 3000;
        let mut producer = scenario.producer("producer-1", "producer-1", N, 0);
        assert_eq!(
            producer.wait(CONSUME_TIMEOUT).code(),
            Some(0),
            "{}",
            producer.log_tail()
        );
        let produced: HashSet<MessageKey> = produced_ids("producer-1", N).collect();
        let env = vec![
            ("KAFKAD_SINK__KIND", "kafka".to_owned()),
            ("KAFKAD_SINK__TOPIC", output.to_owned()),
        ];
        let mut consumer = scenario.start("single-1", "single-1", &env);
        wait_for_rows(
            &produced,
            &|| read_keys(output, 3, "read_committed"),
            &scenario,
        );
        let addr = http_addr(&consumer).expect("the consumer serves /metrics");
        let (_, metrics) = support::http_get(&addr, "/metrics").expect("/metrics answers");
        let transactions = support::sample(
            &metrics,
            "kafkad_processing_seconds_count",
            &[("role", "single")],
        )
        .expect("the sink calls are counted");
        stop_gracefully(std::slice::from_mut(&mut consumer));
        let r = reconcile(&produced, read_keys(output, 3, "read_committed"));
        print_reconciliation(
            &format!("kafka sink exactly_once, single role: {transactions} transactions"),
            produced.len(),
            &BTreeMap::from([(format!("{output} read_committed"), r)]),
        );
        assert_eq!((r.lost, r.duplicates, r.unexpected), (0, 0, 0));
        assert!(
            transactions > 0.0 && transactions * 2.0 <= N as f64,
            "{transactions} transactions for {N} records"
        );
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
        wait_for_rows(&produced, &|| pg.keys(table), &scenario);
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
