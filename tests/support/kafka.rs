//! Apache Kafka itself on loopback, through the project's own `scripts/kafka-cluster.sh` (the
//! same script `make kafka` and anyone trying kafkad by hand use).
//!
//! A JVM cluster takes a while to start on a small machine, so a test binary starts one shared
//! cluster ([`KafkaCluster::shared`]) and its tests isolate themselves by topic and group;
//! destructive tests (brokers killed or stopped) start their own ([`KafkaCluster::start`]).
//! The script's watcher stops a cluster once the test process that started it is gone, so a
//! crashed or interrupted test binary leaves no Java process behind; a cluster started with
//! [`KafkaCluster::start`] is also stopped on drop.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// One running cluster: its state directory and bootstrap list.
pub struct KafkaCluster {
    dir: PathBuf,
    pub bootstrap: String,
    pub brokers: usize,
    /// Stop on drop (own clusters); the shared one lives until the test binary exits.
    stop_on_drop: bool,
}

/// What a cluster gets beyond the defaults (see scripts/kafka-cluster.sh).
#[derive(Debug, Default)]
pub struct ClusterOptions<'a> {
    /// Server properties appended to every node's configuration (`@NODE@` and `@DIR@` stand
    /// for the node number and its directory).
    pub node_config: Option<&'a Path>,
    /// Listeners beside PLAINTEXT: `SSL`, `SASL_SSL`, `SASL_PLAINTEXT`, or `NAME:PROTOCOL`.
    pub listeners: &'a [&'a str],
    /// SCRAM-SHA-512 users (name, password) written into the metadata at format time.
    /// Names and passwords must not hold spaces, `=`, `,` or `]`.
    pub scram_users: &'a [(&'a str, &'a str)],
}

/// What an ACL grants rights on: a topic or a consumer group, by its name or, in the
/// `...Prefix` forms, every one whose name starts with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AclResource<'a> {
    Topic(&'a str),
    Group(&'a str),
    TopicPrefix(&'a str),
    GroupPrefix(&'a str),
}

impl AclResource<'_> {
    fn is_prefix(self) -> bool {
        matches!(
            self,
            AclResource::TopicPrefix(_) | AclResource::GroupPrefix(_)
        )
    }
}

/// The arguments of `kafka-acls --add` that allow each of `users` (principal `User:<name>`)
/// each of `operations` (`Read`, `Write`, `Describe`, `All`, ...) on each of `resources`.
///
/// One `kafka-acls` run takes one pattern type for all its resources, so the resources must
/// all be names or all be prefixes.
pub fn acl_args(users: &[&str], resources: &[AclResource<'_>], operations: &[&str]) -> Vec<String> {
    let prefixed = resources.first().is_some_and(|r| r.is_prefix());
    assert!(
        resources.iter().all(|r| r.is_prefix() == prefixed),
        "one kafka-acls run cannot mix names and prefixes: {resources:?}"
    );
    let mut args = vec!["--add".to_owned()];
    for user in users {
        args.extend(["--allow-principal".to_owned(), format!("User:{user}")]);
    }
    for operation in operations {
        args.extend(["--operation".to_owned(), (*operation).to_owned()]);
    }
    for resource in resources {
        let (flag, name) = match resource {
            AclResource::Topic(name) | AclResource::TopicPrefix(name) => ("--topic", name),
            AclResource::Group(name) | AclResource::GroupPrefix(name) => ("--group", name),
        };
        args.extend([flag.to_owned(), (*name).to_owned()]);
    }
    if prefixed {
        args.extend(["--resource-pattern-type".to_owned(), "prefixed".to_owned()]);
    }
    args
}

/// One partition as `kafka-topics --describe` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionState {
    pub partition: i32,
    pub leader: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka-cluster.sh")
}

/// The test binary's name without cargo's hash suffix (`kafka_e2e-1a2b...` -> `kafka_e2e`).
fn binary_name() -> String {
    let exe = std::env::current_exe().expect("test binary path");
    let stem = exe
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("test")
        .to_owned();
    stem.rsplit_once('-')
        .map_or(stem.clone(), |(name, _)| name.to_owned())
}

impl KafkaCluster {
    /// The test binary's shared 3-broker cluster, started on first use.
    pub fn shared() -> &'static KafkaCluster {
        Self::shared_of(3)
    }

    /// The test binary's shared cluster of `brokers` brokers (1 or 3), started on first use;
    /// a test binary uses one size.
    pub fn shared_of(brokers: usize) -> &'static KafkaCluster {
        static SHARED: OnceLock<KafkaCluster> = OnceLock::new();
        let cluster = SHARED.get_or_init(|| {
            let mut cluster =
                KafkaCluster::start_named("shared", brokers, &ClusterOptions::default());
            cluster.stop_on_drop = false;
            cluster
        });
        assert_eq!(
            cluster.brokers, brokers,
            "one shared cluster size per test binary"
        );
        cluster
    }

    /// A cluster of its own (1 or 3 brokers), stopped when dropped.
    pub fn start(brokers: usize) -> KafkaCluster {
        Self::start_with_config(brokers, None)
    }

    /// As [`start`](Self::start), with extra server properties appended to every node's
    /// configuration (`@NODE@` and `@DIR@` stand for the node number and its directory).
    pub fn start_with_config(brokers: usize, node_config: Option<&Path>) -> KafkaCluster {
        Self::start_with_options(
            brokers,
            &ClusterOptions {
                node_config,
                ..ClusterOptions::default()
            },
        )
    }

    /// As [`start`](Self::start), with extra listeners, server properties and SCRAM users.
    pub fn start_with_options(brokers: usize, options: &ClusterOptions<'_>) -> KafkaCluster {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Self::start_named(&format!("own-{n}"), brokers, options)
    }

    fn start_named(name: &str, brokers: usize, options: &ClusterOptions<'_>) -> KafkaCluster {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("kafka-clusters")
            .join(format!("{}-{}-{name}", binary_name(), std::process::id()));
        let started = Instant::now();
        let mut command = Command::new(script());
        command
            .args(["start", "--brokers", &brokers.to_string()])
            .env("KAFKA_CLUSTER_DIR", &dir)
            .stdin(Stdio::null());
        if let Some(config) = options.node_config {
            command.env("KAFKA_NODE_CONFIG", config);
        }
        if !options.listeners.is_empty() {
            command.args(["--listeners", &options.listeners.join(",")]);
        }
        if !options.scram_users.is_empty() {
            let users: Vec<String> = options
                .scram_users
                .iter()
                .map(|(user, password)| format!("{user}={password}"))
                .collect();
            command.env("KAFKA_SCRAM_USERS", users.join(" "));
        }
        let output = command.output().expect("scripts/kafka-cluster.sh runs");
        assert!(
            output.status.success(),
            "scripts/kafka-cluster.sh start failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let bootstrap = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        eprintln!(
            "kafka cluster {name}: {brokers} broker(s) at {bootstrap} in {:.1?} ({})",
            started.elapsed(),
            dir.display()
        );
        KafkaCluster {
            dir,
            bootstrap,
            brokers,
            stop_on_drop: true,
        }
    }

    fn script(&self, args: &[&str]) -> Output {
        Command::new(script())
            .args(args)
            .env("KAFKA_CLUSTER_DIR", &self.dir)
            .stdin(Stdio::null())
            .output()
            .expect("scripts/kafka-cluster.sh runs")
    }

    fn script_ok(&self, args: &[&str]) -> String {
        let output = self.script(args);
        assert!(
            output.status.success(),
            "scripts/kafka-cluster.sh {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The bootstrap list of an extra listener (`SSL`, `SASL_SSL`, or a listener's own name).
    pub fn listener_bootstrap(&self, listener: &str) -> String {
        self.script_ok(&["bootstrap", listener]).trim().to_owned()
    }

    /// Runs one of Kafka's own tools (`kafka-topics`, `kafka-consumer-groups`, ...) against the
    /// cluster; panics with its output unless it succeeds; returns its stdout.
    pub fn tool(&self, name: &str, args: &[&str]) -> String {
        let all: Vec<&str> = ["tool", name].iter().chain(args).copied().collect();
        self.script_ok(&all)
    }

    /// Adds ACLs with Kafka's own tool (over the PLAINTEXT listener, whose principal a secured
    /// cluster makes its super user): see [`acl_args`].
    pub fn allow(&self, users: &[&str], resources: &[AclResource<'_>], operations: &[&str]) {
        let args = acl_args(users, resources, operations);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.tool("kafka-acls", &args);
    }

    /// Creates `topic` with Kafka's own tool, with `configs` (`key=value`) of its own.
    pub fn create_topic(&self, topic: &str, partitions: u32, replicas: u32, configs: &[&str]) {
        let (partitions, replicas) = (partitions.to_string(), replicas.to_string());
        let mut args = vec![
            "--create",
            "--topic",
            topic,
            "--partitions",
            &partitions,
            "--replication-factor",
            &replicas,
        ];
        for config in configs {
            args.extend(["--config", config]);
        }
        self.tool("kafka-topics", &args);
    }

    /// Sets `configs` (`key=value,key=value`) on an existing topic with Kafka's own tool.
    pub fn alter_topic(&self, topic: &str, configs: &str) {
        self.tool(
            "kafka-configs",
            &[
                "--alter",
                "--entity-type",
                "topics",
                "--entity-name",
                topic,
                "--add-config",
                configs,
            ],
        );
    }

    /// SIGKILL broker `node` (a crash).
    pub fn kill(&self, node: i32) {
        self.script_ok(&["kill", &node.to_string()]);
    }

    /// SIGTERM broker `node` (a controlled shutdown) and wait until it exited.
    pub fn stop_broker(&self, node: i32) {
        self.script_ok(&["stop-broker", &node.to_string()]);
    }

    /// Start broker `node` again; returns once the cluster reports every broker.
    pub fn restart(&self, node: i32) {
        self.script_ok(&["restart", &node.to_string()]);
    }

    /// `kafka-topics --describe` of `topic`, as printed.
    ///
    /// Asked again (up to three times in all) when the tool's admin client reaches no broker
    /// within its own timeout: on two loaded cores a broker just restarted can take that long
    /// to answer, and the question is safe to repeat.
    pub fn describe_topic(&self, topic: &str) -> String {
        let args = ["tool", "kafka-topics", "--describe", "--topic", topic];
        for _ in 1..3 {
            let output = self.script(&args);
            if output.status.success() {
                return String::from_utf8_lossy(&output.stdout).into_owned();
            }
            if !String::from_utf8_lossy(&output.stderr)
                .contains("Timed out waiting for a node assignment")
            {
                break;
            }
            println!("kafka-topics --describe reached no broker in time; asking again");
        }
        self.script_ok(&args)
    }

    /// Leader, replicas and in-sync replicas of each partition of `topic`.
    pub fn partitions(&self, topic: &str) -> Vec<PartitionState> {
        parse_partitions(&self.describe_topic(topic))
    }

    /// Waits until every partition of `topic` has all its replicas in sync (after a broker
    /// came back, before the next fault).
    pub fn wait_fully_replicated(&self, topic: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let partitions = self.partitions(topic);
            if !partitions.is_empty()
                && partitions
                    .iter()
                    .all(|p| p.isr.len() == p.replicas.len() && p.leader >= 0)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{topic} not fully replicated after {timeout:?}: {partitions:?}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// `kafka-consumer-groups --describe --group group`, as printed.
    pub fn describe_group(&self, group: &str) -> String {
        self.tool("kafka-consumer-groups", &["--describe", "--group", group])
    }

    /// Per-partition lag of `group` on `topic` as Kafka's tool reports it (`None` for `-`).
    pub fn group_lag(&self, group: &str, topic: &str) -> Vec<(i32, Option<i64>)> {
        parse_group_lag(&self.describe_group(group), topic)
    }

    /// Stops the whole cluster now.
    pub fn stop(&self) {
        self.script_ok(&["stop"]);
    }
}

impl Drop for KafkaCluster {
    fn drop(&mut self) {
        if self.stop_on_drop {
            let _ = self.script(&["stop"]);
        }
    }
}

/// `Topic: t  Partition: 0  Leader: 2  Replicas: 2,0  Isr: 2,0 ...` lines.
pub fn parse_partitions(describe: &str) -> Vec<PartitionState> {
    let field = |line: &str, name: &str| -> Option<String> {
        let start = line.find(&format!("{name}: "))? + name.len() + 2;
        Some(
            line[start..]
                .split(|c: char| c.is_whitespace())
                .next()
                .unwrap_or("")
                .to_owned(),
        )
    };
    let ids = |text: String| -> Vec<i32> {
        text.split(',')
            .filter_map(|id| id.trim().parse().ok())
            .collect()
    };
    describe
        .lines()
        .filter(|line| line.contains("Partition: "))
        .filter_map(|line| {
            Some(PartitionState {
                partition: field(line, "Partition")?.parse().ok()?,
                leader: field(line, "Leader")?.parse().unwrap_or(-1),
                replicas: ids(field(line, "Replicas")?),
                isr: ids(field(line, "Isr")?),
            })
        })
        .collect()
}

/// The LAG column of `kafka-consumer-groups --describe` for `topic`'s partitions.
pub fn parse_group_lag(describe: &str, topic: &str) -> Vec<(i32, Option<i64>)> {
    let mut lines = describe.lines().filter(|l| !l.trim().is_empty());
    let Some(header) = lines.find(|l| l.contains("PARTITION") && l.contains("LAG")) else {
        return Vec::new();
    };
    let columns: Vec<&str> = header.split_whitespace().collect();
    let index = |name: &str| columns.iter().position(|c| *c == name);
    let (Some(topic_at), Some(partition_at), Some(lag_at)) =
        (index("TOPIC"), index("PARTITION"), index("LAG"))
    else {
        return Vec::new();
    };
    let mut lag: Vec<(i32, Option<i64>)> = lines
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|cells| cells.get(topic_at) == Some(&topic))
        .filter_map(|cells| {
            Some((
                cells.get(partition_at)?.parse().ok()?,
                cells.get(lag_at)?.parse().ok(),
            ))
        })
        .collect();
    lag.sort();
    lag
}
