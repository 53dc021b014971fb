//! The seed topology as six real `kafkad` processes against a real Kafka-protocol broker
//! (tansu, on loopback), with crash and graceful-stop scenarios. Each test starts its own
//! broker and reconciles what was produced against what each group's jsonl sinks recorded.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kafkad::reconcile::{reconcile, MessageKey, Reconciliation};
use kafkad::sink::ProcessedLine;
use support::process::{read_jsonl, Kafkad};
use support::tansu::{free_port, TansuBroker};

/// A consumer group's first join on tansu can take ~20 s; everything else is fast.
const CONSUME_TIMEOUT: Duration = Duration::from_secs(240);
const EXIT_TIMEOUT: Duration = Duration::from_secs(60);

struct Scenario {
    broker: TansuBroker,
    /// Sinks and process logs; kept under target/e2e-logs/ when the test fails.
    dir: PathBuf,
}

impl Drop for Scenario {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("logs and sinks kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Scenario {
    fn start() -> Self {
        let test = std::thread::current()
            .name()
            .unwrap_or("e2e")
            .replace("::", "-");
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("e2e-logs")
            .join(format!("{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("log dir");
        let scenario = Scenario {
            broker: TansuBroker::start(),
            dir,
        };
        let mut ensure = scenario.kafkad("topic-init", &["topic", "ensure"], &[]);
        assert!(
            ensure.wait(EXIT_TIMEOUT).success(),
            "topic ensure failed:\n{}",
            ensure.log_tail()
        );
        scenario
    }

    fn dir(&self) -> &Path {
        &self.dir
    }

    fn sink(&self, name: &str) -> PathBuf {
        self.dir().join(format!("{name}.jsonl"))
    }

    /// The environment every process shares: the broker, RF 1 (one broker), a short
    /// session timeout so a killed member is noticed in seconds.
    fn env(&self, extra: &[(&str, String)]) -> Vec<(&'static str, String)> {
        let mut env = vec![
            (
                "KAFKAD_KAFKA__BOOTSTRAP_SERVERS",
                self.broker.bootstrap.clone(),
            ),
            ("KAFKAD_TOPIC__REPLICATION_FACTOR", "1".to_owned()),
            ("KAFKAD_SHUTDOWN_TIMEOUT", "20s".to_owned()),
            // Six processes on one host: each takes a free port for its endpoint.
            ("KAFKAD_HTTP__LISTEN", "127.0.0.1:0".to_owned()),
        ];
        for (key, value) in extra {
            let key: &'static str = Box::leak(key.to_string().into_boxed_str());
            env.push((key, value.clone()));
        }
        env
    }

    fn kafkad(&self, name: &str, args: &[&str], extra: &[(&str, String)]) -> Kafkad {
        Kafkad::spawn(name, self.dir(), args, &self.env(extra))
    }

    fn consumer(&self, role: &str, name: &str) -> Kafkad {
        self.consumer_with(role, name, &[])
    }

    fn consumer_with(&self, role: &str, name: &str, extra: &[(&str, String)]) -> Kafkad {
        let config = format!("config/{role}.toml");
        let mut env = vec![
            ("KAFKAD_SINK__KIND", "jsonl".to_owned()),
            ("KAFKAD_SINK__PATH", self.sink(name).display().to_string()),
            ("KAFKAD_KAFKA__SESSION_TIMEOUT_MS", "10000".to_owned()),
            ("KAFKAD_KAFKA__HEARTBEAT_INTERVAL_MS", "1000".to_owned()),
        ];
        env.extend(extra.iter().cloned());
        self.kafkad(name, &["--role", role, "--config", &config], &env)
    }

    fn producer(&self, name: &str, count: u64, rate: u32) -> Kafkad {
        self.kafkad(
            name,
            &["--role", "producer", "--config", "config/producer.toml"],
            &[
                ("KAFKAD_PRODUCER__COUNT", count.to_string()),
                ("KAFKAD_PRODUCER__RATE", rate.to_string()),
                ("KAFKAD_PRODUCER__PRODUCER_ID", name.to_owned()),
            ],
        )
    }

    /// The group-membership and problem lines of every process log, for a failure message.
    fn diagnostics(&self) -> String {
        let mut out = String::new();
        let mut logs: Vec<_> = std::fs::read_dir(self.dir())
            .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        logs.sort();
        for path in logs
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
        {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            out.push_str(&format!("--- {}\n", path.display()));
            for line in text.lines().filter(|l| {
                [
                    "assigned", "revoked", "WARN", "ERROR", "stopped", "closed", "summary",
                ]
                .iter()
                .any(|w| l.contains(w))
            }) {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    /// Everything the named consumers' sinks hold.
    fn processed(&self, consumers: &[&str]) -> Vec<ProcessedLine> {
        consumers
            .iter()
            .flat_map(|name| read_jsonl(&self.sink(name)))
            .collect()
    }

    /// Waits until the named consumers together processed every produced message.
    fn wait_for_group(&self, group: &str, consumers: &[&str], produced: &HashSet<MessageKey>) {
        let deadline = Instant::now() + CONSUME_TIMEOUT;
        loop {
            let r = reconcile(produced, keys(&self.processed(consumers)));
            if r.lost == 0 {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "{group}: {} of {} still missing after {CONSUME_TIMEOUT:?}\n{}",
                    r.lost,
                    produced.len(),
                    self.diagnostics()
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

fn keys(lines: &[ProcessedLine]) -> Vec<MessageKey> {
    lines
        .iter()
        .map(|l| (l.producer_id.clone(), l.message_id))
        .collect()
}

fn produced_ids(producer: &str, count: u64) -> impl Iterator<Item = MessageKey> + '_ {
    (1..=count as i64).map(move |id| (producer.to_owned(), id))
}

/// Waits until a process logged that it has partitions: it joined its group.
fn wait_for_assignment(process: &Kafkad) {
    let deadline = Instant::now() + CONSUME_TIMEOUT;
    while !process.log_text().contains("partitions assigned") {
        assert!(
            Instant::now() < deadline,
            "{} never got partitions:\n{}",
            process.name,
            process.log_tail()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn stop_gracefully(mut processes: Vec<Kafkad>) {
    for p in &processes {
        p.signal(libc::SIGTERM);
    }
    for p in &mut processes {
        let status = p.wait(EXIT_TIMEOUT);
        assert_eq!(
            status.code(),
            Some(0),
            "{} exit status after SIGTERM; log tail:\n{}",
            p.name,
            p.log_tail()
        );
    }
}

fn print_reconciliation(title: &str, produced: usize, groups: &BTreeMap<&str, Reconciliation>) {
    println!("{title}: {produced} messages produced");
    println!(
        "{:<24}{:>10}{:>8}{:>12}",
        "group", "consumed", "lost", "duplicates"
    );
    for (group, r) in groups {
        println!(
            "{group:<24}{:>10}{:>8}{:>12}",
            r.consumed, r.lost, r.duplicates
        );
    }
}

/// Within one consumer's sink, offsets of a partition only go up: no message of a partition
/// is processed out of order, nor twice by the same member.
fn assert_offsets_increase(name: &str, lines: &[ProcessedLine]) {
    let mut last: BTreeMap<i32, i64> = BTreeMap::new();
    for line in lines {
        if let Some(previous) = last.insert(line.partition, line.offset) {
            assert!(
                line.offset > previous,
                "{name}: partition {} offset {} after {previous}",
                line.partition,
                line.offset
            );
        }
    }
}

/// Every test here needs tansu (`scripts/test-broker.sh install`); `make test` runs them with
/// their output shown, so the reconciliation tables appear in the log.
mod real_broker {
    use super::*;

    #[test]
    fn six_processes_against_a_real_broker_lose_nothing() {
        let scenario = Scenario::start();
        let mut again = scenario.kafkad("topic-init-again", &["topic", "ensure"], &[]);
        assert!(
            again.wait(EXIT_TIMEOUT).success(),
            "topic ensure is idempotent:\n{}",
            again.log_tail()
        );
        assert!(
            again
                .log_text()
                .contains("exists with the configured shape"),
            "{}",
            again.log_text()
        );

        let consumers: Vec<Kafkad> = [
            ("single", "single-1"),
            ("single", "single-2"),
            ("batch", "batch-1"),
            ("batch", "batch-2"),
        ]
        .iter()
        .map(|(role, name)| scenario.consumer(role, name))
        .collect();
        let mut producers = vec![
            scenario.producer("producer-1", 3000, 0),
            scenario.producer("producer-2", 3000, 0),
        ];
        for p in &mut producers {
            let status = p.wait(CONSUME_TIMEOUT);
            assert_eq!(status.code(), Some(0), "{}:\n{}", p.name, p.log_tail());
            assert_eq!(
                p.logged_field("producer stopped", "accepted"),
                Some(3000),
                "{}",
                p.log_tail()
            );
            assert_eq!(
                p.logged_field("producer stopped", "delivered"),
                Some(3000),
                "{}",
                p.log_tail()
            );
        }
        let produced: HashSet<MessageKey> = produced_ids("producer-1", 3000)
            .chain(produced_ids("producer-2", 3000))
            .collect();

        let groups = [
            ("single-message-group", ["single-1", "single-2"]),
            ("batch-message-group", ["batch-1", "batch-2"]),
        ];
        for (group, members) in &groups {
            scenario.wait_for_group(group, members, &produced);
        }
        stop_gracefully(consumers);

        let mut table = BTreeMap::new();
        for (group, members) in &groups {
            for member in members {
                assert_offsets_increase(member, &read_jsonl(&scenario.sink(member)));
            }
            let r = reconcile(&produced, keys(&scenario.processed(members)));
            assert_eq!(r.lost, 0, "{group}");
            assert_eq!(r.unexpected, 0, "{group}");
            table.insert(*group, r);
        }
        print_reconciliation("six processes on tansu", produced.len(), &table);
    }

    #[test]
    fn a_batch_consumer_killed_mid_run_and_restarted_loses_nothing() {
        let scenario = Scenario::start();
        // Static membership (group.instance.id), as a restarting pod would use: the restarted
        // process takes its old place without a rebalance. With dynamic membership, tansu 0.6.0's
        // coordinator completes the rebalance that the dead member's session expiry starts without
        // the surviving member, which keeps its old generation: the dead member's partitions are
        // then assigned to nobody (no loss: they stay uncommitted, but nobody consumes them).
        let member = |name: &str| [("KAFKAD_KAFKA__GROUP_INSTANCE_ID", name.to_owned())];
        let batch_1 = scenario.consumer_with("batch", "batch-1", &member("batch-1"));
        let batch_2 = scenario.consumer_with("batch", "batch-2", &member("batch-2"));
        wait_for_assignment(&batch_1);
        wait_for_assignment(&batch_2);

        let mut producer = scenario.producer("producer-1", 12_000, 1500);
        let deadline = Instant::now() + CONSUME_TIMEOUT;
        while read_jsonl(&scenario.sink("batch-1")).len() < 1000 {
            assert!(
                Instant::now() < deadline,
                "batch-1 processed nothing:\n{}",
                batch_1.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // A crash: no commit of the batch in hand, no leaving the group.
        batch_1.signal(libc::SIGKILL);
        let mut batch_1 = batch_1;
        assert_eq!(
            batch_1.wait(EXIT_TIMEOUT).code(),
            None,
            "killed by a signal"
        );
        let restarted = scenario.consumer_with("batch", "batch-1", &member("batch-1"));

        assert_eq!(
            producer.wait(CONSUME_TIMEOUT).code(),
            Some(0),
            "{}",
            producer.log_tail()
        );
        let produced: HashSet<MessageKey> = produced_ids("producer-1", 12_000).collect();
        scenario.wait_for_group("batch-message-group", &["batch-1", "batch-2"], &produced);
        stop_gracefully(vec![restarted, batch_2]);

        let r = reconcile(
            &produced,
            keys(&scenario.processed(&["batch-1", "batch-2"])),
        );
        print_reconciliation(
            "batch consumer killed with SIGKILL",
            produced.len(),
            &BTreeMap::from([("batch-message-group", r)]),
        );
        assert_eq!((r.consumed, r.lost, r.unexpected), (12_000, 0, 0));
    }

    #[test]
    fn a_producer_stopped_at_full_rate_delivers_everything_it_accepted() {
        let scenario = Scenario::start();
        let consumer = scenario.consumer("single", "single-1");
        wait_for_assignment(&consumer);

        let mut producer = scenario.producer("producer-term", 0, 0);
        let deadline = Instant::now() + CONSUME_TIMEOUT;
        while read_jsonl(&scenario.sink("single-1")).len() < 2000 {
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
        let accepted = producer
            .logged_field("producer stopped", "accepted")
            .expect("final report logged");
        let delivered = producer
            .logged_field("producer stopped", "delivered")
            .expect("final report logged");
        assert_eq!(accepted, delivered, "every accepted message delivered");
        assert!(accepted >= 2000);

        let produced: HashSet<MessageKey> = produced_ids("producer-term", accepted).collect();
        scenario.wait_for_group("single-message-group", &["single-1"], &produced);
        stop_gracefully(vec![consumer]);
        let r = reconcile(&produced, keys(&scenario.processed(&["single-1"])));
        print_reconciliation(
            "producer stopped with SIGTERM",
            produced.len(),
            &BTreeMap::from([("single-message-group", r)]),
        );
        assert_eq!((r.lost, r.unexpected), (0, 0));
    }

    #[test]
    fn topic_ensure_refuses_an_existing_topic_of_another_shape() {
        let scenario = Scenario::start(); // created with 3 partitions
        let mut ensure = scenario.kafkad(
            "ensure-1",
            &["topic", "ensure"],
            &[("KAFKAD_TOPIC__PARTITIONS", "1".to_owned())],
        );
        let status = ensure.wait(EXIT_TIMEOUT);
        let log = ensure.log_text();
        assert_eq!(status.code(), Some(1), "{log}");
        assert!(
            log.contains("has 3 partitions") && log.contains("says 1"),
            "{log}"
        );
    }

    #[test]
    fn topic_ensure_gives_up_on_an_unreachable_broker_naming_it() {
        let dir = tempfile::tempdir().expect("dir");
        let bootstrap = format!("127.0.0.1:{}", free_port());
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
}
