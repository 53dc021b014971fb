//! The seed topology as real `kafkad` processes on a real Apache Kafka cluster: each process
//! runs under exactly the environment its docker-compose.yml service has (the bootstrap list
//! pointed at the local cluster), plus the few settings a test must add to observe it (a jsonl
//! sink to reconcile, a free port for the HTTP endpoint, a message count).
//!
//! A scenario isolates itself on a shared cluster by topic and group names of its own, and
//! keeps its logs and sinks under target/ when it fails.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kafkad::reconcile::{reconcile, MessageKey, Reconciliation};
use kafkad::sink::ProcessedLine;

use super::deploy::{compose, compose_env, local_env, service};
use super::http_get;
use super::kafka::KafkaCluster;
use super::process::{count_jsonl, read_jsonl, Kafkad};

/// How long a group may take to consume everything produced.
pub const CONSUME_TIMEOUT: Duration = Duration::from_secs(240);
/// How long a process may take to exit after SIGTERM (config/*.toml: shutdown_timeout 30s).
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Scenario<'c> {
    pub cluster: &'c KafkaCluster,
    /// The topic and the two groups this scenario uses.
    pub topic: String,
    pub single_group: String,
    pub batch_group: String,
    /// Settings every process of this scenario gets on top of its compose environment.
    pub extra: Vec<(String, String)>,
    /// `RUST_LOG` of every process.
    log_filter: String,
    /// Sinks and process logs; kept under target/ when the test fails.
    dir: PathBuf,
    /// How many times `topic ensure` ran.
    ensure_runs: std::cell::Cell<u32>,
}

impl Drop for Scenario<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("logs and sinks kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl<'c> Scenario<'c> {
    /// The seed's own names: `andrew-topic`, `single-message-group`, `batch-message-group`.
    pub fn seed(cluster: &'c KafkaCluster) -> Self {
        Self::new(
            cluster,
            "seed",
            "andrew-topic",
            "single-message-group",
            "batch-message-group",
        )
    }

    /// A scenario named `name` with a topic and groups of its own.
    pub fn isolated(cluster: &'c KafkaCluster, name: &str) -> Self {
        Self::new(
            cluster,
            name,
            &format!("{name}-topic"),
            &format!("{name}-single"),
            &format!("{name}-batch"),
        )
    }

    fn new(
        cluster: &'c KafkaCluster,
        name: &str,
        topic: &str,
        single_group: &str,
        batch_group: &str,
    ) -> Self {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("e2e-logs")
            .join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("log dir");
        Scenario {
            cluster,
            topic: topic.to_owned(),
            single_group: single_group.to_owned(),
            batch_group: batch_group.to_owned(),
            extra: Vec::new(),
            log_filter: "info,librdkafka=warn".to_owned(),
            dir,
            ensure_runs: std::cell::Cell::new(0),
        }
    }

    /// Adds a setting every process of the scenario gets (e.g. `group.protocol`).
    pub fn with(mut self, key: &str, value: &str) -> Self {
        self.extra.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Sets `RUST_LOG` for every process (e.g. `info,librdkafka=debug` to keep librdkafka's
    /// debug output in the logs).
    pub fn log_filter(mut self, filter: &str) -> Self {
        filter.clone_into(&mut self.log_filter);
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn sink(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.jsonl"))
    }

    /// The group a consumer service (`single-1`, `batch-2`, ...) belongs to.
    pub fn group_of(&self, service: &str) -> &str {
        if service.starts_with("single") {
            &self.single_group
        } else {
            &self.batch_group
        }
    }

    /// The environment of compose service `service`, made to run here and in this scenario.
    fn env(&self, service_name: &str, extra: &[(&str, String)]) -> Vec<(String, String)> {
        let compose = compose();
        let mut env: BTreeMap<String, String> =
            local_env(&compose_env(service(&compose, service_name)));
        env.insert(
            "KAFKAD_KAFKA__BOOTSTRAP_SERVERS".into(),
            self.cluster.bootstrap.clone(),
        );
        env.insert("KAFKAD_TOPIC__NAME".into(), self.topic.clone());
        // Six processes on one host: each takes a free port for its HTTP endpoint.
        env.insert("KAFKAD_HTTP__LISTEN".into(), "127.0.0.1:0".into());
        if service_name.starts_with("single") || service_name.starts_with("batch") {
            env.insert(
                "KAFKAD_KAFKA__GROUP_ID".into(),
                self.group_of(service_name).to_owned(),
            );
            env.insert("KAFKAD_SINK__KIND".into(), "jsonl".into());
        }
        for (key, value) in &self.extra {
            env.insert(key.clone(), value.clone());
        }
        for (key, value) in extra {
            env.insert((*key).to_owned(), value.clone());
        }
        env.into_iter().collect()
    }

    /// Starts compose service `service` as process `name` (a restarted service gets a new
    /// name so its log and sink stay apart) with `extra` settings on top.
    pub fn start(&self, service: &str, name: &str, extra: &[(&str, String)]) -> Kafkad {
        // The service's `command` (topic-init: `topic ensure`); the roles have none.
        let compose = compose();
        let args: Vec<String> = match super::deploy::service(&compose, service).get("command") {
            Some(_) => {
                super::deploy::strings(super::deploy::service(&compose, service), &["command"])
            }
            None => Vec::new(),
        };
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.start_with_args(service, name, &args, extra)
    }

    /// As [`start`](Self::start), running `kafkad <args>` (e.g. `dlq replay`) under the
    /// service's environment.
    pub fn start_with_args(
        &self,
        service: &str,
        name: &str,
        args: &[&str],
        extra: &[(&str, String)],
    ) -> Kafkad {
        let mut extra = extra.to_vec();
        // The sink path belongs to the jsonl sink only (an http or command sink refuses it).
        let sink_kind = extra
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .chain(self.extra.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .find(|(k, _)| *k == "KAFKAD_SINK__KIND")
            .map(|(_, v)| v.to_owned());
        if !service.starts_with("producer")
            && service != "topic-init"
            && sink_kind.as_deref().is_none_or(|kind| kind == "jsonl")
        {
            extra.push(("KAFKAD_SINK__PATH", self.sink(name).display().to_string()));
        }
        let env = self.env(service, &extra);
        let env: Vec<(&str, String)> = env.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        Kafkad::spawn_with_log_filter(name, &self.dir, args, &env, &self.log_filter)
    }

    /// `kafkad topic ensure` under topic-init's environment, which must succeed; returns the
    /// log of this run (each run logs to a file of its own).
    pub fn ensure_topic(&self) -> String {
        let run = self.ensure_runs.get() + 1;
        self.ensure_runs.set(run);
        let mut ensure = self.start("topic-init", &format!("topic-init-{run}"), &[]);
        let status = ensure.wait(EXIT_TIMEOUT);
        assert!(status.success(), "topic ensure:\n{}", ensure.log_text());
        ensure.log_text()
    }

    /// `kafkad topic ensure` under topic-init's environment with `extra` on top, as process
    /// `name`, which must refuse (exit 1); returns its log.
    pub fn ensure_topic_refused(&self, name: &str, extra: &[(&str, String)]) -> String {
        let mut ensure = self.start("topic-init", name, extra);
        let status = ensure.wait(EXIT_TIMEOUT);
        let log = ensure.log_text();
        assert_eq!(status.code(), Some(1), "topic ensure must refuse:\n{log}");
        log
    }

    /// A producer service sending `count` messages (0 = until stopped) at `rate` per second
    /// (0 = as fast as it can) as `producer_id`.
    pub fn producer(&self, service: &str, producer_id: &str, count: u64, rate: u32) -> Kafkad {
        self.start(
            service,
            producer_id,
            &[
                ("KAFKAD_PRODUCER__COUNT", count.to_string()),
                ("KAFKAD_PRODUCER__RATE", rate.to_string()),
                ("KAFKAD_PRODUCER__PRODUCER_ID", producer_id.to_owned()),
            ],
        )
    }

    /// A consumer service (`single-1`, `batch-2`, ...) as process `name`.
    pub fn consumer(&self, service: &str, name: &str) -> Kafkad {
        self.start(service, name, &[])
    }

    /// Everything the named consumers' sinks hold.
    pub fn processed(&self, consumers: &[&str]) -> Vec<ProcessedLine> {
        consumers
            .iter()
            .flat_map(|name| read_jsonl(&self.sink(name)))
            .collect()
    }

    pub fn reconcile(&self, produced: &HashSet<MessageKey>, consumers: &[&str]) -> Reconciliation {
        reconcile(produced, keys(&self.processed(consumers)))
    }

    /// The seed's two groups, each with its two consumer services.
    pub fn seed_groups(&self) -> [(String, [&'static str; 2]); 2] {
        [
            (self.single_group.clone(), ["single-1", "single-2"]),
            (self.batch_group.clone(), ["batch-1", "batch-2"]),
        ]
    }

    /// Each group's reconciliation of what its members processed against `produced`, none
    /// lost and nothing unexpected in any group (duplicates are counted, not refused): the
    /// table [`print_reconciliation`] prints.
    pub fn reconcile_groups(
        &self,
        produced: &HashSet<MessageKey>,
        groups: &[(String, [&str; 2])],
    ) -> BTreeMap<String, Reconciliation> {
        let mut table = BTreeMap::new();
        for (group, members) in groups {
            let r = self.reconcile(produced, members);
            assert_eq!((r.lost, r.unexpected), (0, 0), "{group}");
            table.insert(group.clone(), r);
        }
        table
    }

    /// Waits until the named consumers together processed every produced message.
    pub fn wait_for_group(&self, group: &str, consumers: &[&str], produced: &HashSet<MessageKey>) {
        let deadline = Instant::now() + CONSUME_TIMEOUT;
        loop {
            let r = self.reconcile(produced, consumers);
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

    /// Waits until each named consumer's sink grew by `records` beyond what it holds now: the
    /// topology makes progress (between restarts, with a broker down, ...).
    pub fn wait_for_progress(&self, consumers: &[&str], records: usize, what: &str) {
        let start: Vec<usize> = consumers
            .iter()
            .map(|name| count_jsonl(&self.sink(name)))
            .collect();
        let deadline = Instant::now() + CONSUME_TIMEOUT;
        for (name, before) in consumers.iter().zip(start) {
            while count_jsonl(&self.sink(name)) < before + records {
                assert!(
                    Instant::now() < deadline,
                    "{name}: no progress {what}\n{}",
                    self.diagnostics()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// The group-membership and problem lines of every process log, for a failure message.
    pub fn diagnostics(&self) -> String {
        let mut out = String::new();
        let mut logs: Vec<_> = std::fs::read_dir(&self.dir)
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
                ["assigned", "revoked", "WARN", "ERROR", "done", "closed"]
                    .iter()
                    .any(|w| l.contains(w))
            }) {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

pub fn keys(lines: &[ProcessedLine]) -> Vec<MessageKey> {
    lines
        .iter()
        .map(|l| (l.producer_id.clone(), l.message_id))
        .collect()
}

/// `(producer_id, 1..=count)`: what a producer that delivered everything sent.
pub fn produced_ids(producer: &str, count: u64) -> impl Iterator<Item = MessageKey> + '_ {
    (1..=count as i64).map(move |id| (producer.to_owned(), id))
}

/// The address a process serves /metrics, /healthz and /readyz on, from its log.
pub fn http_addr(process: &Kafkad) -> Option<String> {
    let text = process.log_text();
    let line = text
        .lines()
        .rev()
        .find(|l| l.contains("serving /metrics") && l.contains("addr="))?;
    let start = line.find("addr=")? + "addr=".len();
    Some(
        line[start..]
            .split_whitespace()
            .next()?
            .trim_matches('"')
            .to_owned(),
    )
}

/// Waits until the process's `/readyz` answers 200: a consumer joined its group, a producer
/// reached a broker.
pub fn wait_ready(process: &mut Kafkad) {
    let deadline = Instant::now() + CONSUME_TIMEOUT;
    loop {
        if let Some(addr) = http_addr(process) {
            if http_get(&addr, "/readyz").is_some_and(|(status, _)| status == 200) {
                return;
            }
        }
        assert!(
            process.running(),
            "{} exited before it was ready:\n{}",
            process.name,
            process.log_tail()
        );
        assert!(
            Instant::now() < deadline,
            "{} not ready after {CONSUME_TIMEOUT:?}:\n{}",
            process.name,
            process.log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// SIGTERM every process, then each must exit 0 within [`EXIT_TIMEOUT`].
pub fn stop_gracefully(processes: &mut [Kafkad]) {
    for p in processes.iter() {
        p.signal(libc::SIGTERM);
    }
    for p in processes.iter_mut() {
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

/// Waits for each producer, its producer id its process name, to send its `count` messages
/// and exit 0, every one delivered; the keys they produced.
pub fn wait_producers(producers: &mut [Kafkad], count: u64) -> HashSet<MessageKey> {
    let mut produced = HashSet::new();
    for p in producers {
        let status = p.wait(CONSUME_TIMEOUT);
        assert_eq!(status.code(), Some(0), "{}:\n{}", p.name, p.log_tail());
        assert_eq!(producer_totals(p), (count, count, 0), "{}", p.name);
        produced.extend(produced_ids(&p.name, count));
    }
    produced
}

/// A producer's final report: (accepted, delivered, failed), from its `done` log line.
pub fn producer_totals(process: &Kafkad) -> (u64, u64, u64) {
    let field = |name| {
        process
            .logged_field("done", name)
            .unwrap_or_else(|| panic!("{}: no final report:\n{}", process.name, process.log_tail()))
    };
    (field("accepted"), field("delivered"), field("failed"))
}

/// Prints the reconciliation table: produced; per group consumed, lost, duplicates.
pub fn print_reconciliation(
    title: &str,
    produced: usize,
    groups: &BTreeMap<String, Reconciliation>,
) {
    println!("\n{title}: {produced} messages produced");
    println!(
        "{:<32}{:>10}{:>8}{:>12}",
        "group", "consumed", "lost", "duplicates"
    );
    for (group, r) in groups {
        println!(
            "{group:<32}{:>10}{:>8}{:>12}",
            r.consumed, r.lost, r.duplicates
        );
    }
}

/// Within one consumer's sink, offsets of a partition only go up: no message of a partition
/// is processed out of order, nor twice by the same member.
pub fn assert_offsets_increase(name: &str, lines: &[ProcessedLine]) {
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

/// Commit failures a process logged after it was asked to stop: its final commits (the batch
/// in hand, the revoke-time commit while leaving, the single role's stored offsets).
pub fn final_commit_failures(process: &Kafkad) -> usize {
    process
        .log_text()
        .lines()
        .skip_while(|l| !l.contains("shutting down gracefully"))
        .filter(|l| l.contains("commit failed"))
        .count()
}
