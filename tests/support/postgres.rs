//! PostgreSQL on loopback, through the project's own `scripts/postgres.sh` (the same script
//! anyone trying the postgres sink by hand uses). One plain-text server per test binary, and
//! one TLS-only server (`--tls`) for the tests that need it, each started on first use and
//! stopped by the script's watcher once the test binary is gone; tests isolate themselves by
//! table (and offsets table).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Instant;

use kafkad::reconcile::MessageKey;

/// One of the test binary's servers.
pub struct Postgres {
    dir: PathBuf,
    /// `postgres://kafkad@127.0.0.1:PORT/kafkad?sslmode=disable` (`sslmode=require` for the
    /// TLS server), without the password.
    pub url: String,
    pub password: String,
    pub password_file: PathBuf,
    /// The TLS server's CA certificate (PEM), the only one its certificate verifies against;
    /// `None` for the plain-text server.
    pub ca: Option<PathBuf>,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/postgres.sh")
}

/// `scripts/postgres.sh ARGS` for the server in `dir`; what it prints, trimmed.
fn run_script(dir: &Path, args: &[&str]) -> String {
    let output = Command::new(script())
        .args(args)
        .env("POSTGRES_DIR", dir)
        .stdin(Stdio::null())
        .output()
        .expect("scripts/postgres.sh runs");
    assert!(
        output.status.success(),
        "scripts/postgres.sh {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// TLS that trusts the certificates `ca` signed, and checks the host name, as kafkad does.
fn verifying(ca: &Path) -> postgres_native_tls::MakeTlsConnector {
    let pem = std::fs::read(ca).unwrap_or_else(|e| panic!("{}: {e}", ca.display()));
    let certificate = native_tls::Certificate::from_pem(&pem).expect("the CA is PEM");
    let connector = native_tls::TlsConnector::builder()
        .add_root_certificate(certificate)
        .build()
        .expect("TLS connector");
    postgres_native_tls::MakeTlsConnector::new(connector)
}

impl Postgres {
    /// The test binary's plain-text server, started on first use.
    pub fn shared() -> &'static Postgres {
        static SHARED: OnceLock<Postgres> = OnceLock::new();
        SHARED.get_or_init(|| Postgres::start(false))
    }

    /// The test binary's TLS-only server (`scripts/postgres.sh start --tls`), started on
    /// first use: a server of its own, because it refuses the plain-text clients the other
    /// tests use.
    pub fn shared_tls() -> &'static Postgres {
        static SHARED_TLS: OnceLock<Postgres> = OnceLock::new();
        SHARED_TLS.get_or_init(|| Postgres::start(true))
    }

    fn start(tls: bool) -> Postgres {
        let exe = std::env::current_exe().expect("test binary path");
        let name = exe.file_stem().and_then(|s| s.to_str()).unwrap_or("test");
        let suffix = if tls { "-tls" } else { "" };
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("postgres")
            .join(format!("{name}-{}{suffix}", std::process::id()));
        let started = Instant::now();
        let owner = std::process::id().to_string();
        let mut args = vec!["start", "--owner", &owner];
        if tls {
            args.push("--tls");
        }
        let url = run_script(&dir, &args);
        let password_file = dir.join("password");
        let password = std::fs::read_to_string(&password_file)
            .expect("password file")
            .trim()
            .to_owned();
        let ca = tls.then(|| PathBuf::from(run_script(&dir, &["ca"])));
        eprintln!("postgres at {url} in {:.1?}", started.elapsed());
        Postgres {
            dir,
            url,
            password,
            password_file,
            ca,
        }
    }

    /// Runs `query` with a client of the server on a thread of its own: the synchronous
    /// client runs a runtime of its own, which cannot start inside a test's.
    /// The TLS server's client verifies its certificate against [`Postgres::ca`] alone.
    pub fn with_client<T: Send>(&self, query: impl FnOnce(&mut postgres::Client) -> T + Send) -> T {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let mut config: postgres::Config = self.url.parse().expect("url");
                    config.password(&self.password);
                    let connected = match &self.ca {
                        None => config.connect(postgres::NoTls),
                        Some(ca) => config.connect(verifying(ca)),
                    };
                    let mut client = connected.expect("connect to postgres");
                    query(&mut client)
                })
                .join()
                .expect("postgres query thread")
        })
    }

    /// The script's state directory (`POSTGRES_DIR`) of this server.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Runs `sql` (statements separated by `;`).
    pub fn execute(&self, sql: &str) {
        self.with_client(|client| client.batch_execute(sql))
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// SIGKILL the server (a crash of the database).
    pub fn kill(&self) {
        let status = Command::new(script())
            .arg("kill")
            .env("POSTGRES_DIR", &self.dir)
            .status()
            .expect("scripts/postgres.sh kill");
        assert!(status.success());
    }

    /// The `[sink]` settings of a postgres sink writing `table` (and `table_offsets`), as
    /// `--set` pairs; the password as plain text (redacted wherever kafkad shows it).
    /// The TLS server's settings trust its CA (`sink.ca`).
    pub fn sink_settings(&self, table: &str) -> Vec<(String, String)> {
        let mut settings = vec![
            ("sink.kind".into(), "postgres".into()),
            ("sink.url".into(), self.url.clone()),
            ("sink.password".into(), self.password.clone()),
            ("sink.table".into(), table.into()),
            ("sink.offsets_table".into(), format!("{table}_offsets")),
            ("sink.create_table".into(), "true".into()),
        ];
        if let Some(ca) = &self.ca {
            settings.push(("sink.ca".into(), ca.display().to_string()));
        }
        settings
    }

    /// The same as `KAFKAD_SINK__*` variables, for kafkad processes.
    pub fn sink_env(&self, table: &str) -> Vec<(&'static str, String)> {
        self.sink_settings(table)
            .into_iter()
            .map(|(key, value)| {
                let var = match key.as_str() {
                    "sink.kind" => "KAFKAD_SINK__KIND",
                    "sink.url" => "KAFKAD_SINK__URL",
                    "sink.password" => "KAFKAD_SINK__PASSWORD",
                    "sink.table" => "KAFKAD_SINK__TABLE",
                    "sink.offsets_table" => "KAFKAD_SINK__OFFSETS_TABLE",
                    "sink.create_table" => "KAFKAD_SINK__CREATE_TABLE",
                    "sink.ca" => "KAFKAD_SINK__CA",
                    other => panic!("no KAFKAD_SINK__* variable for {other}"),
                };
                (var, value)
            })
            .collect()
    }

    /// Every (producer_id, message_id) row of `table`, duplicates included.
    pub fn keys(&self, table: &str) -> Vec<MessageKey> {
        let sql = format!("SELECT producer_id, message_id FROM \"{table}\"");
        let rows = self
            .with_client(|client| client.query(&sql, &[]))
            .unwrap_or_else(|e| panic!("reading {table}: {e}"));
        rows.iter().map(|row| (row.get(0), row.get(1))).collect()
    }

    /// How many rows `table` holds (0 when it does not exist yet).
    pub fn count(&self, table: &str) -> i64 {
        let sql = format!("SELECT count(*) FROM \"{table}\"");
        self.with_client(|client| client.query_one(&sql, &[]).map(|row| row.get(0)))
            .unwrap_or(0)
    }

    /// The next offset per partition `table`'s sink keeps for `group` and `topic`.
    pub fn next_offsets(&self, table: &str, group: &str, topic: &str) -> BTreeMap<i32, i64> {
        let sql = format!(
            "SELECT partition, next_offset FROM \"{table}_offsets\" \
             WHERE consumer_group = $1 AND topic = $2 AND next_offset IS NOT NULL"
        );
        self.with_client(|client| {
            client
                .query(&sql, &[&group, &topic])
                .map(|rows| rows.iter().map(|row| (row.get(0), row.get(1))).collect())
        })
        .unwrap_or_default()
    }
}
