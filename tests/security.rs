//! Secured clusters: kafkad against Apache Kafka itself over TLS, mutual TLS and SASL/SCRAM
//! over TLS, with ACLs enforced by the broker's StandardAuthorizer. Certificates and users are
//! made at test time. Every test that moves messages reconciles what was produced against what
//! was consumed; every failure must be fast, exit 1 and name the broker or resource and the
//! cause; no password ever appears in anything a process wrote. Also: what managed clusters
//! need passes `config check`, and every compression codec round-trips.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kafkad::reconcile::reconcile;
use kafkad::sink::MemorySink;
use support::process::Kafkad;
use support::*;

const WAIT: Duration = Duration::from_secs(180);

/// Runs `kafkad <args>` (process `name`) with `env` in `dir`, which must exit 0 within
/// [`WAIT`]; what it wrote.
fn succeeds(dir: &Path, name: &str, args: &[&str], env: &[(&str, String)]) -> String {
    let mut process = Kafkad::spawn(name, dir, args, env);
    let status = process.wait(WAIT);
    let log = process.log_text();
    assert_eq!(status.code(), Some(0), "{name}: {log}");
    log
}

/// `kafkad <args>` (process `name`, a `config print`) with `env` exits 0 and shows `shown` (how
/// a secret setting is given, never its value); what it printed.
fn assert_printed(
    dir: &Path,
    name: &str,
    args: &[&str],
    env: &[(&str, String)],
    shown: &str,
) -> String {
    let printed = succeeds(dir, name, args, env);
    assert!(printed.contains(shown), "{name}: {printed}");
    printed
}

/// The secured cluster's ACLs as `kafka-acls` takes them: every principal, operation and
/// resource named, and prefixes marked as such (plain names are `kafka-acls`'s default).
#[test]
fn acl_arguments_name_each_principal_operation_and_resource() {
    use support::kafka::{acl_args, AclResource::*};
    assert_eq!(
        acl_args(
            &["CN=kafkad-client", "app"],
            &[TopicPrefix("mtls-"), GroupPrefix("mtls-")],
            &["Read", "Write"],
        ),
        [
            "--add",
            "--allow-principal",
            "User:CN=kafkad-client",
            "--allow-principal",
            "User:app",
            "--operation",
            "Read",
            "--operation",
            "Write",
            "--topic",
            "mtls-",
            "--group",
            "mtls-",
            "--resource-pattern-type",
            "prefixed",
        ]
    );
    assert_eq!(
        acl_args(&["limited"], &[Group("acl-group")], &["Read"]),
        [
            "--add",
            "--allow-principal",
            "User:limited",
            "--operation",
            "Read",
            "--group",
            "acl-group",
        ]
    );
}

/// Tests that need Java and the Kafka jars (`scripts/kafka-cluster.sh install`). They share one
/// secured single-broker cluster; `make test` runs them one at a time.
mod real_broker {
    use super::*;

    use std::collections::{BTreeMap, HashSet};
    use std::sync::OnceLock;

    use kafkad::reconcile::{MessageKey, Reconciliation};
    use support::kafka::AclResource::{Group, GroupPrefix, Topic, TopicPrefix};
    use support::kafka::{ClusterOptions, KafkaCluster};
    use support::offsets::committed;
    use support::process::read_jsonl;
    use support::scenario::*;
    use support::tls::{Issued, Pki, Usage};

    /// How long a connection that cannot work may take to be reported.
    const FAIL_FAST: Duration = Duration::from_secs(30);

    /// SCRAM users: two application principals (one takes its password from a file, the other
    /// from a variable), one that may create topics, and one whose rights stop at one topic.
    const APP_FILE: &str = "app-file";
    const APP_ENV: &str = "app-env";
    const TOPIC_ADMIN: &str = "topic-admin";
    const LIMITED: &str = "limited";

    /// The one secured cluster of this test binary.
    struct Secured {
        cluster: KafkaCluster,
        /// The CA that signed the broker's and the client's certificates.
        pki: Pki,
        /// Listener `SSL`: one-way TLS (clients are anonymous).
        ssl: String,
        /// Listener `MTLS`: TLS with a client certificate required.
        mtls: String,
        /// Listener `SASL_SSL`: SCRAM-SHA-512 over TLS.
        sasl: String,
        /// The client certificate (principal `User:CN=kafkad-client`), its key encrypted.
        client: Issued,
        key_password: String,
        /// SCRAM user name to password.
        passwords: BTreeMap<&'static str, String>,
        dir: PathBuf,
    }

    impl Secured {
        fn password(&self, user: &str) -> &str {
            &self.passwords[user]
        }

        /// Every password and key password this binary uses: none may ever be shown.
        fn secrets(&self) -> Vec<&str> {
            let mut all: Vec<&str> = self.passwords.values().map(String::as_str).collect();
            all.push(&self.key_password);
            all
        }
    }

    /// A value nobody could guess or find by accident in a log: `label-` and 24 hex digits.
    fn secret(label: &str) -> String {
        let mut bytes = [0u8; 12];
        openssl::rand::rand_bytes(&mut bytes).expect("random bytes");
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        format!("{label}-{hex}")
    }

    fn secured() -> &'static Secured {
        static SECURED: OnceLock<Secured> = OnceLock::new();
        SECURED.get_or_init(|| {
            let started = Instant::now();
            let runs = Path::new(env!("CARGO_TARGET_TMPDIR")).join("security");
            remove_finished_runs(&runs);
            let dir = runs.join(std::process::id().to_string());
            let pki = Pki::new(&dir.join("pki"), "kafkad test CA");
            // The broker's certificate names 127.0.0.1 and nothing else: `localhost` is a
            // host name it does not cover.
            let broker = pki.issue(
                "kafka-broker",
                Usage::Server {
                    ips: &["127.0.0.1"],
                },
                None,
            );
            let key_password = secret("keypw");
            let client = pki.issue("kafkad-client", Usage::Client, Some(&key_password));
            let passwords: BTreeMap<&'static str, String> = [APP_FILE, APP_ENV, TOPIC_ADMIN, LIMITED]
                .into_iter()
                .map(|user| (user, secret(&format!("pw-{user}"))))
                .collect();

            let node_config = dir.join("secured.properties");
            std::fs::write(
                &node_config,
                format!(
                    "\
# TLS on every secured listener: a PEM keystore (key and chain), the test CA as trust store.
ssl.keystore.type=PEM
ssl.keystore.location={keystore}
ssl.truststore.type=PEM
ssl.truststore.location={ca}
# MTLS requires a client certificate; SSL and SASL_SSL do not ask for one.
listener.name.mtls.ssl.client.auth=required
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
# ACLs enforced. The PLAINTEXT and CONTROLLER listeners (the node itself, Kafka's tools) and
# one-way TLS clients are User:ANONYMOUS.
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:ANONYMOUS
allow.everyone.if.no.acl.found=false
",
                    keystore = broker.keystore.display(),
                    ca = pki.ca.display(),
                ),
            )
            .expect("node config");
            let users: Vec<(&str, &str)> = passwords
                .iter()
                .map(|(user, password)| (*user, password.as_str()))
                .collect();
            let cluster = KafkaCluster::start_with_options(
                1,
                &ClusterOptions {
                    node_config: Some(&node_config),
                    listeners: &["SSL", "MTLS:SSL", "SASL_SSL"],
                    scram_users: &users,
                },
            );
            let secured = Secured {
                ssl: cluster.listener_bootstrap("SSL"),
                mtls: cluster.listener_bootstrap("MTLS"),
                sasl: cluster.listener_bootstrap("SASL_SSL"),
                cluster,
                pki,
                client,
                key_password,
                passwords,
                dir,
            };

            let acls = &secured.cluster;
            // The client certificate's principal: everything on topics and groups `mtls-*`.
            acls.allow(
                &["CN=kafkad-client"],
                &[TopicPrefix("mtls-"), GroupPrefix("mtls-")],
                &["All"],
            );
            // The application principals: read and write topics `sasl-*` (their dead-letter
            // topics included), read as groups `sasl-*`; no Create.
            let apps = [APP_FILE, APP_ENV];
            acls.allow(&apps, &[TopicPrefix("sasl-")], &["Read", "Write", "Describe"]);
            acls.allow(&apps, &[GroupPrefix("sasl-")], &["Read"]);
            // The topic administrator: creates and inspects topics `sasl-*`.
            acls.allow(
                &[TOPIC_ADMIN],
                &[TopicPrefix("sasl-")],
                &["Create", "Describe", "DescribeConfigs"],
            );
            // The limited principal: reads and writes topic `acl-topic` (as the seed's
            // application does its topic), reads as group `acl-group`, and nothing else: not
            // `acl-topic.dlq`, not `acl-forbidden`, no other group. (Write on some topic is also
            // what lets its dead-letter producer, which is idempotent, obtain a producer id.)
            acls.allow(&[LIMITED], &[Topic("acl-topic")], &["Read", "Write", "Describe"]);
            acls.allow(&[LIMITED], &[Group("acl-group")], &["Read"]);
            // The limited principal's topics, the dead-letter topic included, made by the super
            // user.
            create_topics(
                &secured.cluster.bootstrap,
                &[("acl-topic", 3), ("acl-topic.dlq", 3), ("acl-forbidden", 1)],
            );
            eprintln!(
                "secured cluster: SSL {}, MTLS {}, SASL_SSL {}; ready with ACLs in {:.1?}",
                secured.ssl,
                secured.mtls,
                secured.sasl,
                started.elapsed()
            );
            secured
        })
    }

    /// Removes what earlier runs of this test binary left under `runs` (one directory per
    /// process id: certificates, and the logs of tests that failed), unless that run is still
    /// going.
    fn remove_finished_runs(runs: &Path) {
        let Ok(entries) = std::fs::read_dir(runs) else {
            return;
        };
        for entry in entries.filter_map(Result::ok) {
            let alive = entry
                .file_name()
                .to_str()
                .and_then(|name| name.parse::<i32>().ok())
                // SAFETY: kill(2) with signal 0 only asks whether the process exists.
                .is_some_and(|pid| unsafe { libc::kill(pid, 0) } == 0);
            if !alive {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }

    /// Creates `topics` (name, partitions; one replica) over the PLAINTEXT listener.
    fn create_topics(bootstrap: &str, topics: &[(&str, i32)]) {
        use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
        use rdkafka::client::DefaultClientContext;
        let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .create()
            .expect("admin client");
        let new: Vec<NewTopic> = topics
            .iter()
            .map(|(name, partitions)| NewTopic::new(name, *partitions, TopicReplication::Fixed(1)))
            .collect();
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        for result in runtime
            .block_on(admin.create_topics(&new, &options))
            .expect("create topics")
        {
            result.unwrap_or_else(|(topic, code)| panic!("cannot create {topic}: {code}"));
        }
    }

    /// A directory for one test's configuration files, logs and sinks, kept when it fails.
    struct TestDir(PathBuf);

    impl TestDir {
        fn new(name: &str) -> Self {
            let dir = secured().dir.join(name);
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("test dir");
            TestDir(dir)
        }

        fn path(&self) -> &Path {
            &self.0
        }

        /// Writes a TOML configuration file of this test (see [`toml_file`]); returns its path.
        fn toml(&self, name: &str, base: Option<&str>, kafka: &[(&str, toml::Value)]) -> String {
            toml_file(&self.0.join(name), base, kafka)
        }

        /// Writes `{user}.toml`: SCRAM over TLS as `user` (see [`sasl_entries`]), the
        /// password read from a secret file; returns its path.
        fn sasl_config(&self, s: &Secured, user: &str) -> String {
            let password_file = secret_file(&self.0, &format!("{user}-password"), s.password(user));
            self.toml(
                &format!("{user}.toml"),
                None,
                &sasl_entries(s, user, from_file(&password_file)),
            )
        }
    }

    impl Drop for TestDir {
        fn drop(&mut self) {
            if std::thread::panicking() {
                eprintln!("logs kept in {}", self.0.display());
            } else {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    /// A TOML configuration at `path`: the shipped `base` file (e.g. `config/single.toml`),
    /// if any, with `kafka` entries added to its `[kafka]` table. Returns the path.
    fn toml_file(path: &Path, base: Option<&str>, kafka: &[(&str, toml::Value)]) -> String {
        let mut table: toml::Table = match base {
            Some(base) => {
                let text =
                    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(base))
                        .expect("shipped config");
                toml::from_str(&text).expect("shipped config is TOML")
            }
            None => toml::Table::new(),
        };
        let section = table
            .entry("kafka")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .expect("[kafka] is a table");
        for (key, value) in kafka {
            section.insert((*key).to_owned(), value.clone());
        }
        std::fs::write(path, toml::to_string(&table).expect("TOML")).expect("config file");
        path.display().to_string()
    }

    fn text(value: &str) -> toml::Value {
        toml::Value::String(value.to_owned())
    }

    /// `{ file = "path" }`
    fn from_file(path: &Path) -> toml::Value {
        toml::Value::Table(toml::Table::from_iter([(
            "file".to_owned(),
            text(&path.display().to_string()),
        )]))
    }

    /// `{ env = "VAR" }`
    fn from_env(var: &str) -> toml::Value {
        toml::Value::Table(toml::Table::from_iter([("env".to_owned(), text(var))]))
    }

    /// Writes `secret` to `dir/secrets/name` the way a mounted secret often is: with a
    /// trailing newline. (A directory of its own: the files of `dir` are checked for secrets.)
    fn secret_file(dir: &Path, name: &str, secret: &str) -> PathBuf {
        let path = dir.join("secrets").join(name);
        std::fs::create_dir_all(dir.join("secrets")).expect("secrets dir");
        std::fs::write(&path, format!("{secret}\n")).expect("secret file");
        path
    }

    /// What every process of a test gets: where, which topic, a free HTTP port, one replica.
    fn base_env(bootstrap: &str, topic: &str) -> Vec<(&'static str, String)> {
        vec![
            ("KAFKAD_KAFKA__BOOTSTRAP_SERVERS", bootstrap.to_owned()),
            ("KAFKAD_TOPIC__NAME", topic.to_owned()),
            ("KAFKAD_TOPIC__REPLICATION_FACTOR", "1".to_owned()),
            ("KAFKAD_HTTP__LISTEN", "127.0.0.1:0".to_owned()),
            ("KAFKAD_SHUTDOWN_TIMEOUT", "20s".to_owned()),
        ]
    }

    fn with(
        env: &[(&'static str, String)],
        more: &[(&'static str, String)],
    ) -> Vec<(&'static str, String)> {
        env.iter().chain(more).cloned().collect()
    }

    /// `topic ensure`, a single consumer and a producer of `count` messages, all with `env`
    /// and `RUST_LOG=log_filter`: waits until the consumer processed everything, stops it
    /// gracefully, and reconciles.
    fn produce_and_consume(
        dir: &Path,
        env: &[(&'static str, String)],
        log_filter: &str,
        count: u64,
    ) -> Reconciliation {
        let spawn = |name: &str, args: &[&str], env: &[(&'static str, String)]| {
            Kafkad::spawn_with_log_filter(name, dir, args, env, log_filter)
        };
        let mut ensure = spawn("topic-ensure", &["topic", "ensure", "--wait", "30s"], env);
        let (code, log) = (ensure.wait(WAIT).code(), ensure.log_text());
        assert_eq!(
            code,
            Some(0),
            "topic ensure over the secured connection:\n{log}"
        );

        let sink = dir.join("single.jsonl");
        let consumer_env = with(
            env,
            &[
                ("KAFKAD_SINK__KIND", "jsonl".to_owned()),
                ("KAFKAD_SINK__PATH", sink.display().to_string()),
            ],
        );
        let mut consumer = spawn("single", &["--role", "single"], &consumer_env);
        wait_ready(&mut consumer);

        let producer_env = with(
            env,
            &[
                ("KAFKAD_PRODUCER__COUNT", count.to_string()),
                ("KAFKAD_PRODUCER__RATE", "0".to_owned()),
                ("KAFKAD_PRODUCER__PRODUCER_ID", "secure-producer".to_owned()),
            ],
        );
        let mut producer = spawn("producer", &["--role", "producer"], &producer_env);
        assert_eq!(
            producer.wait(WAIT).code(),
            Some(0),
            "producer:\n{}",
            producer.log_tail()
        );
        assert_eq!(producer_totals(&producer), (count, count, 0));

        let produced: HashSet<MessageKey> = produced_ids("secure-producer", count).collect();
        wait_consumed(&produced, &sink, &consumer);
        stop_gracefully(std::slice::from_mut(&mut consumer));
        reconcile(&produced, keys(&read_jsonl(&sink)))
    }

    /// Waits (up to [`WAIT`]) until the jsonl `sink` of `consumer` holds every key of
    /// `produced`.
    fn wait_consumed(produced: &HashSet<MessageKey>, sink: &Path, consumer: &Kafkad) {
        let deadline = Instant::now() + WAIT;
        loop {
            let r = reconcile(produced, keys(&read_jsonl(sink)));
            if r.lost == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {} not consumed:\n{}",
                r.lost,
                produced.len(),
                consumer.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Prints `what`'s reconciliation: `count` messages consumed, none lost, none unexpected
    /// (duplicates are counted, and allowed).
    fn assert_all_consumed(what: &str, r: &Reconciliation, count: u64) {
        println!(
            "{what}: consumed {} lost {} duplicates {}",
            r.consumed, r.lost, r.duplicates
        );
        assert_eq!((r.consumed, r.lost, r.unexpected), (count, 0, 0), "{what}");
    }

    /// Runs `kafkad <args>` expecting it to give up at once: exit 1 within [`FAIL_FAST`];
    /// returns its last line (the error) and its whole output.
    fn fails_fast(
        dir: &Path,
        name: &str,
        args: &[&str],
        env: &[(&str, String)],
        log_filter: &str,
    ) -> (String, String) {
        let started = Instant::now();
        let mut process = Kafkad::spawn_with_log_filter(name, dir, args, env, log_filter);
        let status = process.wait(FAIL_FAST * 2);
        let log = process.log_text();
        assert_eq!(status.code(), Some(1), "{name}:\n{log}");
        assert!(
            started.elapsed() < FAIL_FAST,
            "{name} took {:?} to give up",
            started.elapsed()
        );
        let last = log.lines().last().unwrap_or_default().to_owned();
        (last, log)
    }

    /// What a role says when it cannot connect and will not retry.
    const CANNOT_CONNECT: &str =
        "kafkad: cannot connect to the brokers, and retrying will not help";

    /// Runs `kafkad <args>` expecting it to give up at once (see [`fails_fast`]) for want of a
    /// connection to `broker` (as `scheme://host:port/bootstrap`): its last line, the error,
    /// says that retrying will not help (a role's is kafkad's own [`CANNOT_CONNECT`]) and
    /// names the broker and each of `causes`. Returns the process's whole output.
    fn cannot_connect(
        dir: &Path,
        name: &str,
        args: &[&str],
        env: &[(&str, String)],
        log_filter: &str,
        broker: &str,
        causes: &[&str],
    ) -> String {
        let (last, log) = fails_fast(dir, name, args, env, log_filter);
        println!("{name}: {last}");
        if args.first() == Some(&"--role") {
            assert!(last.starts_with(CANNOT_CONNECT), "{name}: {last}");
        } else {
            assert!(last.contains("retrying will not help"), "{name}: {last}");
        }
        assert!(last.contains(broker), "{name} names the broker: {last}");
        for cause in causes {
            assert!(last.contains(cause), "{name} names the cause: {last}");
        }
        log
    }

    /// No file in `dir` holds any of `secrets`: every process's log (its stdout and stderr,
    /// librdkafka's lines included), `config print` output, sinks and configuration files.
    fn assert_no_secret_in(dir: &Path, secrets: &[&str]) {
        let mut checked = 0;
        for entry in std::fs::read_dir(dir).expect("dir").filter_map(Result::ok) {
            let path = entry.path();
            if !path.is_file() {
                continue;
            }
            let bytes = std::fs::read(&path).expect("read output");
            let text = String::from_utf8_lossy(&bytes);
            for secret in secrets {
                assert!(
                    !text.contains(secret),
                    "{} shows a password",
                    path.display()
                );
            }
            checked += 1;
        }
        assert!(checked > 0, "nothing written in {}", dir.display());
    }

    fn port_of(bootstrap: &str) -> &str {
        bootstrap.rsplit_once(':').map_or("", |(_, port)| port)
    }

    // ---- TLS -----------------------------------------------------------------------------

    /// One-way TLS: kafkad verifies the broker's certificate against the CA it is given,
    /// host name included; messages go through with nothing lost. A client trusting another
    /// CA, and a client that reaches the same broker under a name its certificate does not
    /// cover, each stop at once with exit 1, naming the broker and the cause.
    #[test]
    fn tls_verifies_the_broker_certificate_and_host_name_and_loses_nothing() {
        let s = secured();
        let dir = TestDir::new("tls");
        let tls = |bootstrap: &str, ca: &Path| {
            with(
                &base_env(bootstrap, "tls-topic"),
                &[
                    ("KAFKAD_KAFKA__SECURITY_PROTOCOL", "SSL".to_owned()),
                    ("KAFKAD_KAFKA__SSL_CA_LOCATION", ca.display().to_string()),
                    ("KAFKAD_KAFKA__GROUP_ID", "tls-group".to_owned()),
                    ("KAFKAD_PRODUCER__COUNT", "10".to_owned()),
                ],
            )
        };

        let r = produce_and_consume(
            dir.path(),
            &tls(&s.ssl, &s.pki.ca),
            "info,librdkafka=warn",
            500,
        );
        assert_all_consumed("TLS", &r, 500);

        let stranger = Pki::new(&dir.path().join("other"), "some other CA");
        let untrusted = tls(&s.ssl, &stranger.ca);
        let localhost = format!("localhost:{}", port_of(&s.ssl));
        let wrong_name = tls(&localhost, &s.pki.ca);
        for (case, env, broker) in [
            (
                "untrusted-ca",
                &untrusted,
                format!("ssl://{}/bootstrap", s.ssl),
            ),
            (
                "wrong-host",
                &wrong_name,
                format!("ssl://{localhost}/bootstrap"),
            ),
        ] {
            let commands: [(&str, &[&str]); 4] = [
                ("producer", &["--role", "producer"]),
                ("single", &["--role", "single"]),
                ("batch", &["--role", "batch"]),
                ("topic-ensure", &["topic", "ensure"]),
            ];
            for (command, args) in commands {
                cannot_connect(
                    dir.path(),
                    &format!("{case}-{command}"),
                    args,
                    env,
                    "info,librdkafka=warn",
                    &broker,
                    &["certificate verify failed"],
                );
            }
        }
    }

    // ---- mutual TLS ------------------------------------------------------------------------

    /// Mutual TLS: the broker requires a client certificate; kafkad presents one whose key is
    /// encrypted, the password read from a file. Messages go through with nothing lost, as the
    /// certificate's principal (`User:CN=kafkad-client`, allowed on `mtls-*` by ACL). Without
    /// the certificate the broker refuses the handshake and kafkad stops at once. The key
    /// password appears in nothing the processes wrote, librdkafka's `debug=all` included.
    #[test]
    fn mutual_tls_with_an_encrypted_key_loses_nothing() {
        let s = secured();
        let dir = TestDir::new("mtls");
        let password_file = secret_file(dir.path(), "key-password", &s.key_password);
        let config = dir.toml(
            "mtls.toml",
            None,
            &[
                ("security.protocol", text("SSL")),
                ("ssl.ca.location", text(&s.pki.ca.display().to_string())),
                (
                    "ssl.certificate.location",
                    text(&s.client.cert.display().to_string()),
                ),
                (
                    "ssl.key.location",
                    text(&s.client.key.display().to_string()),
                ),
                ("ssl.key.password", from_file(&password_file)),
                ("debug", text("all")),
            ],
        );
        let env = with(
            &base_env(&s.mtls, "mtls-topic"),
            &[
                ("KAFKAD_CONFIG", config.clone()),
                ("KAFKAD_KAFKA__GROUP_ID", "mtls-group".to_owned()),
            ],
        );

        let r = produce_and_consume(dir.path(), &env, "info,librdkafka=debug", 500);
        assert_all_consumed("mutual TLS", &r, 500);
        // The broker saw the certificate's principal: the group is there, and only
        // `User:CN=kafkad-client` may use groups `mtls-*` (one-way TLS clients are anonymous).
        let groups = s.cluster.tool("kafka-consumer-groups", &["--list"]);
        assert!(groups.lines().any(|l| l.trim() == "mtls-group"), "{groups}");

        // The same client without its certificate: the listener requires one.
        let no_certificate = with(
            &base_env(&s.mtls, "mtls-topic"),
            &[
                ("KAFKAD_KAFKA__SECURITY_PROTOCOL", "SSL".to_owned()),
                (
                    "KAFKAD_KAFKA__SSL_CA_LOCATION",
                    s.pki.ca.display().to_string(),
                ),
                ("KAFKAD_PRODUCER__COUNT", "10".to_owned()),
            ],
        );
        // The cause: the broker's refusal.
        cannot_connect(
            dir.path(),
            "no-certificate",
            &["--role", "producer"],
            &no_certificate,
            "info,librdkafka=warn",
            &format!("ssl://{}/bootstrap", s.mtls),
            &["SSL alert number"],
        );

        assert_printed(
            dir.path(),
            "config-print",
            &["config", "print", "--role", "single"],
            &env,
            "\"ssl.key.password\" = { file = ",
        );
        assert_no_secret_in(dir.path(), &s.secrets());
    }

    // ---- SASL/SCRAM over TLS ----------------------------------------------------------------

    /// A `[kafka]` table for SCRAM-SHA-512 over TLS as `user`, the password given as `password`.
    fn sasl_entries(
        s: &Secured,
        user: &str,
        password: toml::Value,
    ) -> Vec<(&'static str, toml::Value)> {
        vec![
            ("security.protocol", text("SASL_SSL")),
            ("sasl.mechanism", text("SCRAM-SHA-512")),
            ("ssl.ca.location", text(&s.pki.ca.display().to_string())),
            ("sasl.username", text(user)),
            ("sasl.password", password),
        ]
    }

    /// The variable the `{ env = ... }` processes read their password from.
    const PASSWORD_VAR: &str = "APP_KAFKA_PASSWORD";

    /// The seed topology over SASL_SSL with SCRAM-SHA-512, as six processes under their
    /// docker-compose environment plus the SASL settings: producer-1, single-1 and batch-1 log
    /// in as `app-file` with `sasl.password = { file = ... }`, producer-2, single-2 and batch-2
    /// as `app-env` with `{ env = "APP_KAFKA_PASSWORD" }`; topic-init as `topic-admin`, the
    /// only one allowed to create topics, with every setting in the environment
    /// (`KAFKAD_KAFKA__SASL_PASSWORD` holding the password itself), as a container would get
    /// them. Nothing is lost in either group. librdkafka's debug output (`debug=all`) is on in
    /// every process, and no password appears in anything they wrote, nor in `config print`.
    #[test]
    fn sasl_scram_seed_topology_with_file_and_env_credentials_loses_nothing() {
        let s = secured();
        let scenario = Scenario::isolated(&s.cluster, "sasl-topology")
            .with("KAFKAD_KAFKA__BOOTSTRAP_SERVERS", &s.sasl)
            .with("KAFKAD_TOPIC__REPLICATION_FACTOR", "1")
            .with("KAFKAD_KAFKA__DEBUG", "all")
            .log_filter("info,librdkafka=debug");
        let dir = scenario.dir().to_owned();
        let password_file = secret_file(&dir, "app-file-password", s.password(APP_FILE));
        let config = |service: &str| -> String {
            let role = service.split('-').next().expect("service name");
            let (user, password) = if service.ends_with("-1") {
                (APP_FILE, from_file(&password_file))
            } else {
                (APP_ENV, from_env(PASSWORD_VAR))
            };
            toml_file(
                &dir.join(format!("{service}.toml")),
                Some(&format!("config/{role}.toml")),
                &sasl_entries(s, user, password),
            )
        };
        let process_env = |service: &str| -> Vec<(&'static str, String)> {
            vec![
                ("KAFKAD_CONFIG", config(service)),
                (PASSWORD_VAR, s.password(APP_ENV).to_owned()),
            ]
        };

        let admin_env: Vec<(&str, String)> = vec![
            ("KAFKAD_KAFKA__SECURITY_PROTOCOL", "SASL_SSL".to_owned()),
            ("KAFKAD_KAFKA__SASL_MECHANISM", "SCRAM-SHA-512".to_owned()),
            (
                "KAFKAD_KAFKA__SSL_CA_LOCATION",
                s.pki.ca.display().to_string(),
            ),
            ("KAFKAD_KAFKA__SASL_USERNAME", TOPIC_ADMIN.to_owned()),
            (
                "KAFKAD_KAFKA__SASL_PASSWORD",
                s.password(TOPIC_ADMIN).to_owned(),
            ),
        ];
        let mut ensure = scenario.start("topic-init", "topic-init", &admin_env);
        assert_eq!(
            ensure.wait(EXIT_TIMEOUT).code(),
            Some(0),
            "{}",
            ensure.log_text()
        );
        let describe = s.cluster.describe_topic(&scenario.topic);
        println!("{describe}");
        assert_eq!(s.cluster.partitions(&scenario.topic).len(), 3, "{describe}");

        let mut consumers: Vec<Kafkad> = ["single-1", "single-2", "batch-1", "batch-2"]
            .iter()
            .map(|service| scenario.start(service, service, &process_env(service)))
            .collect();
        for consumer in &mut consumers {
            wait_ready(consumer);
        }
        let per_producer = 150;
        let mut producers: Vec<Kafkad> = ["producer-1", "producer-2"]
            .iter()
            .map(|service| {
                let mut env = process_env(service);
                env.extend([
                    ("KAFKAD_PRODUCER__COUNT", per_producer.to_string()),
                    ("KAFKAD_PRODUCER__RATE", "50".to_owned()),
                    ("KAFKAD_PRODUCER__PRODUCER_ID", (*service).to_owned()),
                ]);
                scenario.start(service, service, &env)
            })
            .collect();
        let produced = wait_producers(&mut producers, per_producer);
        let groups = scenario.seed_groups();
        for (group, members) in &groups {
            scenario.wait_for_group(group, members, &produced);
        }
        stop_gracefully(&mut consumers);
        let table = scenario.reconcile_groups(&produced, &groups);
        print_reconciliation(
            "seed topology over SASL_SSL (SCRAM-SHA-512)",
            produced.len(),
            &table,
        );

        // Each process logged in as its own principal: librdkafka's debug output says so.
        for process in consumers.iter().chain(&producers).chain([&ensure]) {
            let user = match process.name.as_str() {
                "topic-init" => TOPIC_ADMIN,
                name if name.ends_with("-1") => APP_FILE,
                _ => APP_ENV,
            };
            let login = format!("Authenticated as {user} using SCRAM-SHA-512");
            assert!(
                process.log_text().contains(&login),
                "{}: no \"{login}\" in its librdkafka debug output",
                process.name
            );
        }
        for (service, shown) in [
            ("producer-1", "\"sasl.password\" = { file = "),
            (
                "single-2",
                "\"sasl.password\" = { env = \"APP_KAFKA_PASSWORD\" }",
            ),
            ("topic-init", "\"sasl.password\" = \"<redacted>\""),
        ] {
            let mut env: Vec<(&str, String)> = scenario
                .extra
                .iter()
                .map(|(k, v)| (k.as_str(), v.clone()))
                .collect();
            if service == "topic-init" {
                env.extend(admin_env.iter().cloned());
                env.push(("KAFKAD_ROLE", "producer".to_owned()));
            } else {
                env.extend(process_env(service));
            }
            assert_printed(
                &dir,
                &format!("config-print-{service}"),
                &["config", "print"],
                &env,
                shown,
            );
        }
        assert_no_secret_in(&dir, &s.secrets());
    }

    /// A wrong SCRAM password: every role and `topic ensure` stop at once with exit 1, naming
    /// the broker and the refused login; neither the wrong password nor any real one appears
    /// in what they wrote, librdkafka's debug output (`debug=all`) included.
    #[test]
    fn a_wrong_scram_password_fails_fast_and_is_never_shown() {
        let s = secured();
        let dir = TestDir::new("sasl-wrong-password");
        let wrong = secret("wrong-password");
        let password_file = secret_file(dir.path(), "password", &wrong);
        let mut entries = sasl_entries(s, APP_FILE, from_file(&password_file));
        entries.push(("debug", text("all")));
        let config = dir.toml("wrong.toml", None, &entries);
        let env = with(
            &base_env(&s.sasl, "sasl-wrong-password"),
            &[
                ("KAFKAD_CONFIG", config),
                ("KAFKAD_KAFKA__GROUP_ID", "sasl-wrong-password".to_owned()),
                ("KAFKAD_PRODUCER__COUNT", "10".to_owned()),
            ],
        );
        let broker = format!("sasl_ssl://{}/bootstrap", s.sasl);
        for role in ["producer", "single", "batch"] {
            let log = cannot_connect(
                dir.path(),
                &format!("wrong-password-{role}"),
                &["--role", role],
                &env,
                "info,librdkafka=debug",
                &broker,
                &["SASL authentication error", "invalid credentials"],
            );
            assert!(
                log.lines().count() > 50,
                "librdkafka debug output was on:\n{log}"
            );
        }
        cannot_connect(
            dir.path(),
            "wrong-password-topic-ensure",
            &["topic", "ensure"],
            &env,
            "info,librdkafka=debug",
            &broker,
            &["invalid credentials"],
        );

        assert_printed(
            dir.path(),
            "config-print",
            &["config", "print", "--role", "single"],
            &env,
            "\"sasl.password\" = { file = ",
        );
        let mut secrets = s.secrets();
        secrets.push(&wrong);
        assert_no_secret_in(dir.path(), &secrets);
    }

    // ---- ACLs -------------------------------------------------------------------------------

    /// The limited principal may read `acl-topic` as group `acl-group` but not write
    /// `acl-topic.dlq`.
    /// Good records are all processed (nothing lost); a bad record's dead-letter copy is
    /// refused with TOPIC_AUTHORIZATION_FAILED, a permanent failure: kafkad stops with exit 1
    /// and one line naming the topic, partition, offset and cause, and never commits past the
    /// bad record.
    #[test]
    fn a_dead_letter_copy_refused_by_acl_is_reported_and_never_skipped() {
        let s = secured();
        let dir = TestDir::new("acl-dlq");
        let config = dir.sasl_config(s, LIMITED);
        let sink = dir.path().join("single.jsonl");
        let env = with(
            &base_env(&s.sasl, "acl-topic"),
            &[
                ("KAFKAD_CONFIG", config),
                ("KAFKAD_KAFKA__GROUP_ID", "acl-group".to_owned()),
                ("KAFKAD_SINK__KIND", "jsonl".to_owned()),
                ("KAFKAD_SINK__PATH", sink.display().to_string()),
            ],
        );
        let mut consumer = Kafkad::spawn("single", dir.path(), &["--role", "single"], &env);
        wait_ready(&mut consumer);

        // Good records first, 10 per partition, written by the super user over PLAINTEXT.
        let good: Vec<RawRecord> = (1..=30)
            .map(|id| RawRecord {
                partition: Some((id % 3) as i32),
                ..RawRecord::value(message("acl-producer", id))
            })
            .collect();
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        runtime.block_on(produce_raw(&s.cluster.bootstrap, "acl-topic", &good));
        let produced: HashSet<MessageKey> = produced_ids("acl-producer", 30).collect();
        wait_consumed(&produced, &sink, &consumer);
        let r = reconcile(&produced, keys(&read_jsonl(&sink)));
        assert_all_consumed("limited principal", &r, 30);

        // Then one record that is not JSON, at offset 10 of partition 0.
        runtime.block_on(produce_raw(
            &s.cluster.bootstrap,
            "acl-topic",
            &[RawRecord {
                partition: Some(0),
                ..RawRecord::value(b"not json".to_vec())
            }],
        ));
        // A refused authorization is a permanent failure (src/dlq/): the consumer stops at
        // once with exit 1 and one line naming the record, the dead-letter topic and the
        // cause, rather than retrying behind green probes.
        let status = consumer.wait(Duration::from_secs(60));
        let log = consumer.log_text();
        assert_eq!(status.code(), Some(1), "{log}");
        let stopped: Vec<&str> = log
            .lines()
            .filter(|l| {
                l.starts_with(
                    "kafkad: cannot dead-letter the record at acl-topic/0@10 to acl-topic.dlq:",
                )
            })
            .collect();
        assert_eq!(stopped.len(), 1, "one line naming the record: {log}");
        assert!(
            stopped[0].contains("Topic authorization failed"),
            "{}",
            stopped[0]
        );
        println!("{}", stopped[0]);

        // Never committed past the bad record: the stop commits partition 0 up to it.
        let committed = committed(&s.cluster.bootstrap, "acl-group", "acl-topic", 3);
        assert_eq!(
            committed,
            vec![Some(10), Some(10), Some(10)],
            "committed offsets"
        );
        assert_no_secret_in(dir.path(), &s.secrets());
    }

    /// A consumer whose principal may not use its group, or may not read its topic, stops at
    /// once with exit 1 and a message naming the group or topic and the authorization failure.
    #[test]
    fn a_consumer_refused_its_group_or_topic_stops_and_names_it() {
        let s = secured();
        let dir = TestDir::new("acl-consumer");
        let config = dir.sasl_config(s, LIMITED);
        for (case, topic, group, resource, code) in [
            (
                "group",
                "acl-topic",
                "acl-strangers",
                "consumer group acl-strangers",
                "GroupAuthorizationFailed",
            ),
            (
                "topic",
                "acl-forbidden",
                "acl-group",
                "topic acl-forbidden",
                "TopicAuthorizationFailed",
            ),
        ] {
            let env = with(
                &base_env(&s.sasl, topic),
                &[
                    ("KAFKAD_CONFIG", config.clone()),
                    ("KAFKAD_KAFKA__GROUP_ID", group.to_owned()),
                ],
            );
            for role in ["single", "batch"] {
                let (last, _) = fails_fast(
                    dir.path(),
                    &format!("{case}-{role}"),
                    &["--role", role],
                    &env,
                    "info,librdkafka=warn",
                );
                println!("no rights on the {case}, {role}: {last}");
                assert!(
                    last.starts_with(&format!("kafkad: not authorized to use {resource}: ")),
                    "{case} {role}: {last}"
                );
                assert!(last.contains(code), "{case} {role}: {last}");
            }
        }
        assert_no_secret_in(dir.path(), &s.secrets());
    }

    /// `kafkad topic ensure` over SASL_SSL: a principal that may read and write but not create
    /// is refused with exit 1 and an error naming the topic and the authorization failure, as
    /// is one that may not even see the topic; the topic administrator then creates it.
    #[test]
    fn topic_ensure_over_sasl_needs_create_rights() {
        let s = secured();
        let dir = TestDir::new("sasl-ensure");
        let topic = "sasl-ensured";
        let env_as = |user: &str| {
            with(
                &base_env(&s.sasl, topic),
                &[("KAFKAD_CONFIG", dir.sasl_config(s, user))],
            )
        };

        let (last, _) = fails_fast(
            dir.path(),
            "ensure-app",
            &["topic", "ensure"],
            &env_as(APP_FILE),
            "info,librdkafka=warn",
        );
        println!("topic ensure without Create: {last}");
        assert_eq!(
            last,
            format!("kafkad: cannot create topic {topic}: TopicAuthorizationFailed (Broker: Topic authorization failed)"),
        );
        let (last, _) = fails_fast(
            dir.path(),
            "ensure-limited",
            &["topic", "ensure"],
            &env_as(LIMITED),
            "info,librdkafka=warn",
        );
        println!("topic ensure without Describe: {last}");
        assert!(
            last.starts_with(&format!("kafkad: not authorized to describe topic {topic}: TopicAuthorizationFailed (Broker: Topic authorization failed)")),
            "{last}"
        );
        let listed = s.cluster.tool("kafka-topics", &["--list"]);
        assert!(!listed.lines().any(|l| l.trim() == topic), "{listed}");

        let log = succeeds(
            dir.path(),
            "ensure-admin",
            &["topic", "ensure"],
            &env_as(TOPIC_ADMIN),
        );
        assert!(log.contains(&format!("topic {topic}: created")), "{log}");
        assert!(
            log.contains(&format!("topic {topic}.dlq: created")),
            "{log}"
        );
        assert_eq!(s.cluster.partitions(topic).len(), 3);
        assert_no_secret_in(dir.path(), &s.secrets());
    }
}

#[test]
fn config_check_accepts_what_managed_clusters_need() {
    let dir = tempfile::tempdir().expect("dir");
    let env = [
        ("KAFKAD_KAFKA__SECURITY_PROTOCOL", "SASL_SSL".to_owned()),
        ("KAFKAD_KAFKA__SASL_MECHANISM", "SCRAM-SHA-512".to_owned()),
        ("KAFKAD_KAFKA__SASL_USERNAME", "svc-kafkad".to_owned()),
        ("KAFKAD_KAFKA__SASL_PASSWORD", "env-secret-9f3".to_owned()),
        ("KAFKAD_KAFKA__COMPRESSION_TYPE", "zstd".to_owned()),
    ];
    succeeds(
        dir.path(),
        "check",
        &["config", "check", "--role", "producer"],
        &env,
    );
    let printed = assert_printed(
        dir.path(),
        "print",
        &["config", "print", "--role", "producer"],
        &env,
        "\"sasl.password\" = \"<redacted>\"",
    );
    assert!(!printed.contains("env-secret-9f3"), "{printed}");
    for mechanism in ["PLAIN", "SCRAM-SHA-256", "OAUTHBEARER"] {
        let env = [
            ("KAFKAD_KAFKA__SECURITY_PROTOCOL", "SASL_SSL".to_owned()),
            ("KAFKAD_KAFKA__SASL_MECHANISM", mechanism.to_owned()),
        ];
        succeeds(
            dir.path(),
            &format!("check-{mechanism}"),
            &["config", "check", "--role", "single"],
            &env,
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_compression_codec_round_trips() {
    for codec in ["zstd", "gzip", "snappy", "lz4", "none"] {
        let mock = MockTopology::start(3);
        let report = mock
            .producer_with(codec, 500, &[("kafka.compression.type", codec)])
            .delivered()
            .await;
        let sink = MemorySink::default();
        let consumer = mock.single(sink.clone(), &[]);
        let produced = delivered_keys(&[&report]);
        wait_until(WAIT, codec, || {
            reconcile(&produced, processed_keys(&sink)).lost == 0
        })
        .await;
        consumer.stop().await.expect("stops");
        let r = reconcile(&produced, processed_keys(&sink));
        assert_eq!((r.consumed, r.lost), (500, 0), "{codec}");
    }
}
