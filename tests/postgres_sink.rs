//! The postgres sink against a real PostgreSQL server (scripts/postgres.sh) and the mock Kafka
//! cluster: rows written once with their offsets, restarts that trust the database and not
//! Kafka, the claim fence, a record the table refuses, and every kind of bad set-up refused
//! at start with one line. The crash, zombie and broker-fault runs on Apache Kafka are in
//! tests/kafka_exactly_once.rs.

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use kafkad::config::Role;
use kafkad::message::KafkaMessage;
use kafkad::reconcile::{reconcile, MessageKey};
use kafkad::sink::{self, Positions, Record, SinkError, Span};
use support::postgres::Postgres;
use support::process::Kafkad;
use support::*;

const WAIT: Duration = Duration::from_secs(60);
/// What the postgres sink logs once the database took it: the line a refused start never has.
const READY: &str = "postgres sink ready";
const P: &str = "pg";

/// Messages `ids` of producer `P`, each on partition `id % partitions`.
async fn produce(mock: &MockTopology, ids: std::ops::RangeInclusive<i64>, partitions: i32) {
    let records: Vec<RawRecord> = ids
        .map(|id| RawRecord {
            value: Some(message(P, id)),
            partition: Some((id % i64::from(partitions)) as i32),
            ..RawRecord::default()
        })
        .collect();
    produce_raw(&mock.bootstrap, TOPIC, &records).await;
}

fn keys(ids: impl IntoIterator<Item = i64>) -> HashSet<MessageKey> {
    ids.into_iter().map(|id| (P.to_owned(), id)).collect()
}

fn settings(
    mock: &MockTopology,
    role: Role,
    pg: &Postgres,
    table: &str,
    extra: &[(&str, &str)],
) -> kafkad::config::Settings {
    let sink = pg.sink_settings(table);
    let mut all: Vec<(&str, &str)> = sink.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    all.extend([
        ("kafka.fetch.wait.max.ms", "100"),
        ("batch.max_wait", "200ms"),
    ]);
    all.extend(extra);
    mock.settings(role, &all)
}

/// Runs a consumer of `role` until the table holds `expected` rows, then stops it.
async fn consume_until(
    settings: kafkad::config::Settings,
    role: Role,
    pg: &Postgres,
    table: &str,
    expected: i64,
) {
    let run = start_consumer(settings, role).await;
    let table = table.to_owned();
    let before = pg.count(&table);
    wait_until(WAIT, "rows in the table", || pg.count(&table) >= expected).await;
    // One transaction per sink call: the single role too writes the records in hand of a
    // partition together, not a transaction per record.
    let (rows, calls) = (expected - before, run.metrics.processing_time.count());
    run.stop().await.expect("consumer stops cleanly");
    assert!(
        calls > 0 && calls * 2 <= rows as u64,
        "{role}: {calls} transactions for {rows} rows"
    );
}

/// A consumer of `role` running in the background, writing through the sink `settings` ask
/// for, which is made off the test's runtime (it connects synchronously).
async fn start_consumer(settings: kafkad::config::Settings, role: Role) -> ConsumerRun {
    let for_sink = settings.clone();
    let sink = blocking(move || {
        sink::SinkConfig::new(&for_sink, role)
            .open()
            .expect("the postgres sink starts")
    })
    .await;
    spawn_consumer(role, settings, sink)
}

/// The consumer group `settings` name: the one whose positions the offsets table keeps.
fn group_of(settings: &kafkad::config::Settings) -> String {
    settings
        .group_id()
        .expect("a consumer's settings name its group")
        .to_owned()
}

fn print_table(title: &str, produced: &HashSet<MessageKey>, rows: Vec<MessageKey>) {
    let r = reconcile(produced, rows);
    println!(
        "\n{title}: {} produced; in the table {}, lost {}, duplicates {}",
        produced.len(),
        r.consumed,
        r.lost,
        r.duplicates
    );
    assert_eq!((r.lost, r.duplicates, r.unexpected), (0, 0, 0), "{title}");
}

/// Both roles, exactly-once: each row once, the offsets table at the end of each partition;
/// then more is produced and a restarted consumer, starting where the database says, writes
/// only the new messages. (That a restart trusts the database over Kafka's commit is shown on
/// Apache Kafka, where processes are killed between the two: tests/kafka_exactly_once.rs.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exactly_once_writes_rows_and_offsets_once_across_restarts() {
    let pg = Postgres::shared();
    for (role, table) in [(Role::Batch, "eo_batch"), (Role::Single, "eo_single")] {
        let mock = MockTopology::start(2);
        produce(&mock, 1..=300, 2).await;
        let s = settings(&mock, role, pg, table, &[]);
        let group = group_of(&s);
        consume_until(s.clone(), role, pg, table, 300).await;
        let offsets = pg.next_offsets(table, &group, TOPIC);
        assert_eq!(offsets.values().sum::<i64>(), 300, "{offsets:?}");

        produce(&mock, 301..=400, 2).await;
        consume_until(s, role, pg, table, 400).await;
        print_table(
            &format!("{role}, exactly_once, restarted once"),
            &keys(1..=400),
            pg.keys(table),
        );
        assert_eq!(
            pg.next_offsets(table, &group, TOPIC).values().sum::<i64>(),
            400
        );
    }
}

/// At-least-once with `on_conflict = "ignore"`: every message is in the topic twice (a
/// producer that retried, a consumer that redelivered), and the unique key keeps it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn at_least_once_with_a_conflict_key_stores_redeliveries_once() {
    let pg = Postgres::shared();
    let mock = MockTopology::start(2);
    produce(&mock, 1..=200, 2).await;
    produce(&mock, 1..=200, 2).await;
    let table = "alo_ignore";
    let s = settings(
        &mock,
        Role::Batch,
        pg,
        table,
        &[
            ("sink.delivery", "at_least_once"),
            ("sink.on_conflict", "ignore"),
            ("sink.conflict_key", "producer_id,message_id"),
        ],
    );
    let group = group_of(&s);
    let run = start_consumer(s, Role::Batch).await;
    wait_until(WAIT, "both copies processed", || {
        run.metrics.processed.get() >= 400
    })
    .await;
    run.stop().await.expect("stops");
    print_table(
        "batch, at_least_once, on_conflict = ignore, every message twice in the topic",
        &keys(1..=200),
        pg.keys(table),
    );
    assert!(
        pg.next_offsets(table, &group, TOPIC).is_empty(),
        "no offsets table rows"
    );
}

fn record(partition: i32, offset: i64, id: i64) -> Record<'static> {
    Record {
        topic: "t",
        partition,
        offset,
        payload: kafkad::payload::Payload::Message(KafkaMessage::new(id, format!("m{id}"), P)),
        key: None,
        headers: None,
    }
}

/// The fence, sink calls made by hand: a member whose claim was taken by another member, or
/// by its own later assignment, writes nothing; the holder of the latest claim does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_under_a_claim_that_no_longer_holds_is_refused_and_rolled_back() {
    let pg = Postgres::shared();
    let mock = MockTopology::start(1);
    let table = "fence";
    let s = settings(&mock, Role::Batch, pg, table, &[]);
    let (s1, s2) = (s.clone(), s.clone());
    let outcomes = blocking(move || {
        let mut zombie = sink::SinkConfig::new(&s1, Role::Batch)
            .open()
            .expect("sink");
        let mut zombie_store = zombie.positions().expect("keeps positions");
        let mut owner = sink::SinkConfig::new(&s2, Role::Batch)
            .open()
            .expect("sink");
        let mut owner_store = owner.positions().expect("keeps positions");
        let at = |spans: &'static [Span]| Positions {
            topic: TOPIC,
            spans,
            group: None,
        };
        let mut outcomes = Vec::new();
        zombie_store.claim(TOPIC, &[(0, 1)]).expect("claim");
        zombie
            .process_batch_at(
                &[record(0, 0, 1)],
                &at(&[Span {
                    partition: 0,
                    assignment: 1,
                    next: 1,
                }]),
            )
            .expect("the holder writes");
        // Another member claims the partition: the first one's next write is refused.
        let starts = owner_store.claim(TOPIC, &[(0, 7)]).expect("claim");
        outcomes.push(format!("owner starts at {starts:?}"));
        let refused = zombie.process_batch_at(
            &[record(0, 1, 2)],
            &at(&[Span {
                partition: 0,
                assignment: 1,
                next: 2,
            }]),
        );
        outcomes.push(format!("zombie: {refused:?}"));
        assert!(matches!(refused, Err(SinkError::Fenced(_))), "{refused:?}");
        owner
            .process_batch_at(
                &[record(0, 1, 2)],
                &at(&[Span {
                    partition: 0,
                    assignment: 7,
                    next: 2,
                }]),
            )
            .expect("the new holder writes");
        // The owner is assigned the partition again (the eager protocol): a call of its
        // earlier assignment is refused though it starts from the same offset.
        owner_store.claim(TOPIC, &[(0, 8)]).expect("claim");
        let earlier = owner.process_batch_at(
            &[record(0, 2, 3)],
            &at(&[Span {
                partition: 0,
                assignment: 7,
                next: 3,
            }]),
        );
        assert!(matches!(earlier, Err(SinkError::Fenced(_))), "{earlier:?}");
        owner
            .process_batch_at(
                &[record(0, 2, 3)],
                &at(&[Span {
                    partition: 0,
                    assignment: 8,
                    next: 3,
                }]),
            )
            .expect("the latest assignment writes");
        // Every record dead-lettered: no rows, the positions still move.
        owner
            .process_batch_at(
                &[],
                &at(&[Span {
                    partition: 0,
                    assignment: 8,
                    next: 5,
                }]),
            )
            .expect("positions alone");
        outcomes
    })
    .await;
    println!("{outcomes:#?}");
    print_table("the fence, by hand", &keys(1..=3), pg.keys(table));
    let group = group_of(&s);
    assert_eq!(pg.next_offsets(table, &group, TOPIC).get(&0), Some(&5));
}

/// A record the table refuses (a NUL character, which PostgreSQL text cannot hold) is a
/// permanent failure: it is dead-lettered with the database's error, the rest are written.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_record_the_table_refuses_is_dead_lettered_with_the_database_error() {
    let pg = Postgres::shared();
    let mock = MockTopology::start(1);
    let mut records: Vec<RawRecord> = (1..=20)
        .map(|id| RawRecord::value(message(P, id)))
        .collect();
    records[9] = RawRecord::value(KafkaMessage::new(10, "nul \u{0} inside", P).encode());
    produce_raw(&mock.bootstrap, TOPIC, &records).await;
    let table = "refused";
    let s = settings(
        &mock,
        Role::Batch,
        pg,
        table,
        &[("retry.initial", "50ms"), ("retry.max", "100ms")],
    );
    let run = start_consumer(s, Role::Batch).await;
    wait_until(WAIT, "19 rows and one dead letter", || {
        pg.count(table) >= 19 && run.metrics.dead_lettered.get() >= 1
    })
    .await;
    run.stop().await.expect("stops");
    let dlq = blocking({
        let bootstrap = mock.bootstrap.clone();
        move || read_topic(&bootstrap, &format!("{TOPIC}.dlq"), 1)
    })
    .await;
    assert_eq!(dlq.len(), 1);
    let error = header_text(&dlq[0], "kafkad.error").expect("error header");
    println!("dead-lettered with: {error}");
    assert!(error.contains("SQLSTATE 22"), "{error}");
    let ids = (1..=20).filter(|id| *id != 10);
    print_table(
        "one record refused by the table",
        &keys(ids),
        pg.keys(table),
    );
}

/// A start-up that must fail: what is wrong, the settings that make it so, the exit code and
/// what the one line must say.
type BadStart = (&'static str, Vec<(&'static str, String)>, i32, &'static str);

/// Start-up with a database that cannot be used: one line naming the cause, exit 1 (the
/// database) or 2 (the configuration), and never the password.
#[test]
fn a_database_that_cannot_be_used_stops_kafkad_at_start_with_one_line() {
    let pg = Postgres::shared();
    pg.execute(
        "DROP TABLE IF EXISTS wrong_type; CREATE TABLE wrong_type (message_id bigint, \
         producer_id text, content text, \"timestamp\" timestamptz, metadata integer, \
         topic text, \"partition\" integer, \"offset\" bigint)",
    );
    let port = free_port().to_string();
    let unreachable = format!("postgres://kafkad@127.0.0.1:{port}/kafkad?sslmode=disable");
    let cases: [BadStart; 6] = [
        (
            "unreachable database",
            vec![("KAFKAD_SINK__URL", unreachable)],
            1,
            "cannot connect",
        ),
        (
            "wrong password",
            vec![("KAFKAD_SINK__PASSWORD", "not-the-password".into())],
            1,
            "password authentication failed",
        ),
        (
            "missing table",
            vec![
                ("KAFKAD_SINK__TABLE", "no_such_table".into()),
                ("KAFKAD_SINK__CREATE_TABLE", "false".into()),
            ],
            1,
            "does not exist",
        ),
        (
            "a column of the wrong type",
            vec![
                ("KAFKAD_SINK__TABLE", "wrong_type".into()),
                ("KAFKAD_SINK__CREATE_TABLE", "false".into()),
            ],
            1,
            "column \"metadata\" is integer",
        ),
        (
            "key ordering with exactly_once",
            vec![("KAFKAD_CONSUMER__ORDERING", "key".into())],
            2,
            "consumer.ordering",
        ),
        (
            "a URL that does not parse",
            vec![("KAFKAD_SINK__URL", "postgres://kafkad:pw@[::1/x".into())],
            2,
            "sink.url",
        ),
    ];
    refused_at_start(&pg.sink_env("startup_checks"), cases, &pg.password);
}

/// Runs `kafkad --role batch` with `base` and each case's overrides on top, against a broker
/// nobody listens on (the sink is set up before the consumer contacts Kafka): each must exit
/// with its code and one `kafkad:` line naming its cause, and never show a password. Returns
/// those lines, in the order of `cases`.
fn refused_at_start(
    base: &[(&'static str, String)],
    cases: impl IntoIterator<Item = BadStart>,
    password: &str,
) -> Vec<String> {
    // Tests run side by side in one process: each call's logs get names of their own.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let broker = format!("127.0.0.1:{}", free_port());
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("postgres_sink-refused");
    std::fs::create_dir_all(&dir).expect("log directory");
    let mut lines = Vec::new();
    for (i, (what, overrides, code, cause)) in cases.into_iter().enumerate() {
        let mut env: Vec<(&str, String)> = base.to_vec();
        env.push(("KAFKAD_KAFKA__BOOTSTRAP_SERVERS", broker.clone()));
        for (key, value) in overrides {
            env.retain(|(k, _)| *k != key);
            env.push((key, value));
        }
        let name = format!("refused-{}-{call}-{i}", std::process::id());
        let _ = std::fs::remove_file(dir.join(format!("{name}.log")));
        let mut kafkad = Kafkad::spawn(&name, &dir, &["--role", "batch"], &env);
        // A kafkad the database lets in goes on to wait for the broker: it is stopped (on
        // drop) as soon as its sink is ready, rather than hanging the test.
        let started = Instant::now();
        while kafkad.running() {
            let log = kafkad.log_text();
            assert!(
                !log.contains(READY),
                "{what}: kafkad got past the database:\n{log}"
            );
            assert!(
                started.elapsed() < WAIT,
                "{what}: kafkad still runs after {WAIT:?}:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let status = kafkad.wait(Duration::ZERO);
        let log = kafkad.log_text();
        assert!(
            !log.contains(READY),
            "{what}: kafkad got past the database:\n{log}"
        );
        let last = log
            .lines()
            .filter(|l| l.starts_with("kafkad:"))
            .collect::<Vec<_>>();
        println!("{what}: exit {:?}: {}", status.code(), last.join(" | "));
        assert_eq!(status.code(), Some(code), "{what}: {log}");
        assert_eq!(last.len(), 1, "{what}: one line: {log}");
        assert!(last[0].contains(cause), "{what}: {}", last[0]);
        for secret in [password, "not-the-password", ":pw@"] {
            assert!(!log.contains(secret), "{what} shows a password: {log}");
        }
        lines.push(last[0].to_owned());
    }
    lines
}

/// Exactly-once over TLS to a server that refuses plain TCP (scripts/postgres.sh --tls):
/// the sink trusts the server's CA through `sink.ca` and verifies its certificate, every row
/// lands once with its offsets, and the server itself reports each of the sink's
/// connections encrypted while it writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exactly_once_over_tls_trusting_the_servers_ca_writes_each_row_once() {
    let pg = Postgres::shared_tls();
    let mock = MockTopology::start(2);
    produce(&mock, 1..=300, 2).await;
    let table = "tls_eo";
    // The sink's sessions, told apart from the test's own in pg_stat_activity.
    let application = "kafkad-tls-eo";
    let url = format!("{}&application_name={application}", pg.url);
    let s = settings(
        &mock,
        Role::Batch,
        pg,
        table,
        &[("sink.url", &url), ("sink.delivery", "exactly_once")],
    );
    let group = group_of(&s);
    let run = start_consumer(s, Role::Batch).await;
    wait_until(WAIT, "every row in the table", || pg.count(table) >= 300).await;
    let sessions: Vec<(i32, bool, Option<String>)> = pg
        .with_client(|client| {
            client.query(
                "SELECT a.pid, s.ssl, s.version FROM pg_stat_activity a \
                 JOIN pg_stat_ssl s ON s.pid = a.pid WHERE a.application_name = $1",
                &[&application],
            )
        })
        .expect("pg_stat_ssl")
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    run.stop().await.expect("consumer stops cleanly");
    println!("the sink's sessions (pid, ssl, version): {sessions:?}");
    assert!(!sessions.is_empty(), "no session of the sink's found");
    for (pid, ssl, version) in &sessions {
        assert!(
            *ssl && version.as_deref().is_some_and(|v| v.starts_with("TLS")),
            "session {pid} of the sink is not TLS: {sessions:?}"
        );
    }
    print_table(
        "batch, exactly_once, over TLS",
        &keys(1..=300),
        pg.keys(table),
    );
    assert_eq!(
        pg.next_offsets(table, &group, TOPIC).values().sum::<i64>(),
        300
    );
}

/// A server kafkad cannot verify is never written to: without `sink.ca` its certificate is
/// signed by nobody kafkad trusts, and with it a URL host the certificate does not name is
/// still refused. Each stops kafkad at start with one line naming the database and the
/// certificate's problem; so does plain text to the TLS-only server (the server's refusal,
/// which is what makes the sessions above TLS). Nothing is written, not even the table.
#[test]
fn a_database_whose_certificate_cannot_be_verified_stops_kafkad_at_start_with_one_line() {
    let pg = Postgres::shared_tls();
    let table = "tls_refused";
    let ca = pg.ca.as_ref().expect("a TLS server").display().to_string();
    let mut base = pg.sink_env(table);
    base.retain(|(key, _)| *key != "KAFKAD_SINK__CA");
    // `hostaddr` is where to connect, the host what the certificate must name (as in libpq):
    // the same server, reached by a name its certificate lacks, needs no resolver set-up.
    let unnamed = "not-in-the-certificate.invalid";
    let by_other_name = format!(
        "{}&hostaddr=127.0.0.1",
        pg.url.replace("@127.0.0.1:", &format!("@{unnamed}:"))
    );
    let plain = pg.url.replace("sslmode=require", "sslmode=disable");
    let cases: [BadStart; 3] = [
        (
            "the server's CA not trusted (no sink.ca)",
            vec![],
            1,
            "unable to get local issuer certificate",
        ),
        (
            "a host the certificate does not name",
            vec![
                ("KAFKAD_SINK__CA", ca.clone()),
                ("KAFKAD_SINK__URL", by_other_name),
            ],
            1,
            "hostname mismatch",
        ),
        (
            "plain text to a server that requires TLS",
            vec![("KAFKAD_SINK__CA", ca), ("KAFKAD_SINK__URL", plain)],
            1,
            "no encryption",
        ),
    ];
    let lines = refused_at_start(&base, cases, &pg.password);
    let database = pg
        .url
        .split_once('@')
        .and_then(|(_, rest)| rest.split_once('?'))
        .map(|(database, _)| database.to_owned())
        .expect("host:port/database in the URL");
    for (line, database) in lines.iter().zip([
        database.clone(),
        database.replace("127.0.0.1", unnamed),
        database,
    ]) {
        assert!(line.contains(&database), "names {database}: {line}");
    }
    for line in &lines[..2] {
        assert!(
            line.contains("certificate failed verification") && line.contains("[sink] ca"),
            "says what was checked and where the fix goes: {line}"
        );
    }
    let exists: bool = pg
        .with_client(|client| {
            client
                .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
                .map(|row| row.get(0))
        })
        .expect("to_regclass");
    assert!(!exists, "a refused kafkad created {table}");
}

/// The throughput figure of docs/guarantees.md's Exactly-once section: the batch role writing
/// the same 100,000 messages into PostgreSQL exactly-once, then at-least-once, then psql's
/// `\copy` of those rows into a table of the same shape (the database's own limit for loading
/// them), on one machine, in one run. A benchmark, run by hand:
/// `cargo test --release --test postgres_sink -- --ignored --nocapture benchmark`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a benchmark, run by hand"]
async fn benchmark_exactly_once_at_least_once_and_copy() {
    const N: u64 = 100_000;
    let pg = Postgres::shared();
    let mock = MockTopology::start(3);
    let producer = spawn_producer(mock.settings(
        Role::Producer,
        &[
            ("producer.count", &N.to_string()),
            ("producer.producer_id", P),
        ],
    ));
    producer.task.await.expect("producer").expect("delivered");
    let mut figures = Vec::new();
    for (delivery, table) in [("exactly_once", "bench_eo"), ("at_least_once", "bench_alo")] {
        let s = settings(
            &mock,
            Role::Batch,
            pg,
            table,
            &[("sink.delivery", delivery), ("kafka.group.id", table)],
        );
        let run = start_consumer(s, Role::Batch).await;
        wait_until(WAIT, "the first rows", || pg.count(table) > 0).await;
        let started = std::time::Instant::now();
        let first = pg.count(table);
        wait_until(Duration::from_secs(600), "every row", || {
            pg.count(table) >= N as i64
        })
        .await;
        let rate = (N as i64 - first) as f64 / started.elapsed().as_secs_f64();
        run.stop().await.expect("stops");
        figures.push((format!("kafkad batch, {delivery}"), rate));
    }
    let csv = std::env::temp_dir().join(format!("kafkad-bench-{}.csv", std::process::id()));
    pg.execute(
        "DROP TABLE IF EXISTS bench_copy; CREATE TABLE bench_copy (LIKE bench_alo INCLUDING ALL)",
    );
    let psql = |command: String| {
        let status =
            std::process::Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/postgres.sh"))
                .args(["psql", "-qc", &command])
                .env("POSTGRES_DIR", pg.dir())
                .status()
                .expect("psql");
        assert!(status.success(), "{command}");
    };
    psql(format!("\\copy bench_alo TO '{}' CSV", csv.display()));
    let started = std::time::Instant::now();
    psql(format!("\\copy bench_copy FROM '{}' CSV", csv.display()));
    figures.push((
        "psql \\copy of the same rows".to_owned(),
        N as f64 / started.elapsed().as_secs_f64(),
    ));
    let _ = std::fs::remove_file(&csv);
    println!("\n{N} messages into PostgreSQL, batch role (max_size 500), one run:");
    for (what, rate) in &figures {
        println!("  {what:<40}{rate:>10.0} msgs/s");
    }
}
