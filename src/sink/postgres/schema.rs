//! The postgres sink's side of the database: connecting, the tables it writes (checked, or
//! created), the statements it runs, and what a database error means for a retry.

use std::time::Duration;

use postgres::{Client, NoTls, Statement};

use super::COLUMNS;
use crate::config::{Delivery, OnConflict, PostgresSettings, ResolvedSecret};
use crate::sink::SinkError;

/// Where to connect and how, ready for every connection of one sink.
pub(super) struct Target {
    config: postgres::Config,
    tls: Option<postgres_native_tls::MakeTlsConnector>,
    /// The URL with its password replaced, for errors and logs.
    pub shown: String,
    timeout: Duration,
}

impl Target {
    pub fn new(settings: &PostgresSettings, password: &ResolvedSecret) -> Result<Self, SinkError> {
        let shown = settings.url.shown();
        let setup = |message: String| setup(&format!("cannot use {shown}"), &message);
        let mut config: postgres::Config = settings
            .url
            .expose()
            .parse()
            .map_err(|e: postgres::Error| setup(e.to_string()))?;
        if let Some(password) = &password.0 {
            config.password(password);
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(settings.timeout);
        }
        // `sslmode=disable` is plain text; otherwise TLS is offered (`prefer`, the default,
        // goes on without it only when the server has none) or required, and the server's
        // certificate is always verified: stricter than libpq's `require`, which is not.
        let tls = match config.get_ssl_mode() {
            postgres::config::SslMode::Disable => None,
            _ => {
                let mut builder = native_tls::TlsConnector::builder();
                if let Some(ca) = &settings.ca {
                    let pem = std::fs::read(ca)
                        .map_err(|e| setup(format!("cannot read sink.ca {}: {e}", ca.display())))?;
                    let certificate = native_tls::Certificate::from_pem(&pem).map_err(|e| {
                        setup(format!(
                            "sink.ca {} is not a PEM certificate: {e}",
                            ca.display()
                        ))
                    })?;
                    builder.add_root_certificate(certificate);
                }
                let connector = builder.build().map_err(|e| setup(e.to_string()))?;
                Some(postgres_native_tls::MakeTlsConnector::new(connector))
            }
        };
        Ok(Target {
            config,
            tls,
            shown,
            timeout: settings.timeout,
        })
    }

    /// A new connection, with every statement bounded by the sink's timeout and timestamps
    /// read in UTC.
    pub fn connect(&self) -> Result<Client, SinkError> {
        let connected = match &self.tls {
            Some(tls) => self.config.connect(tls.clone()),
            None => self.config.connect(NoTls),
        };
        let mut client =
            connected.map_err(|e| database(&format!("cannot connect to {}", self.shown), &e))?;
        let millis = self.timeout.as_millis();
        client
            .batch_execute(&format!(
                "SET statement_timeout = {millis}; SET lock_timeout = {millis}; SET TIME ZONE 'UTC'"
            ))
            .map_err(|e| database(&format!("cannot set up a session on {}", self.shown), &e))?;
        Ok(client)
    }
}

/// The SQL types the sink accepts for each of its columns (as `format_type` spells them, up
/// to a parenthesis), the first being what `create_table` makes.
const TYPES: [(&str, &[&str]); 8] = [
    ("message_id", &["bigint", "numeric"]),
    ("producer_id", &["text", "character varying"]),
    ("content", &["text", "character varying"]),
    (
        "timestamp",
        &["timestamp with time zone", "timestamp without time zone"],
    ),
    ("metadata", &["jsonb", "json"]),
    ("topic", &["text", "character varying"]),
    ("partition", &["integer", "bigint"]),
    ("offset", &["bigint", "numeric"]),
];

/// The statements of one sink, built for the tables as they are.
pub(super) struct Sql {
    pub insert: String,
    pub claim: String,
    pub update: String,
    pub read: String,
}

/// Every (name, type) of `table`'s columns; empty when the table does not exist.
fn columns(client: &mut Client, table: &str) -> Result<Vec<(String, String)>, postgres::Error> {
    let rows = client.query(
        "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a \
         WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped",
        &[&table],
    )?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}

/// Creates what is missing (the offsets table always; the rows' table with `create_table`),
/// checks the rows' table has the sink's columns with types it can write, and returns the
/// statements to run. Concurrent members creating the same tables wait for each other.
pub(super) fn prepare(client: &mut Client, settings: &PostgresSettings) -> Result<Sql, SinkError> {
    let table = settings.table.quoted();
    let offsets = settings.offsets_table.quoted();
    let db = |e: postgres::Error| database(&format!("preparing table {}", settings.table), &e);
    let create = creation(settings, &table, &offsets);
    if !create.is_empty() {
        // One lock for every kafkad creating tables in this database: CREATE ... IF NOT
        // EXISTS run by two sessions at once can still collide.
        let mut tx = client.transaction().map_err(db)?;
        tx.batch_execute(&format!(
            "SELECT pg_advisory_xact_lock(4242424242); {create}"
        ))
        .map_err(db)?;
        tx.commit().map_err(db)?;
    }
    let found = columns(client, &table).map_err(db)?;
    let metadata_type = check_columns(settings, &found)?;
    Ok(statements(settings, &table, &offsets, metadata_type))
}

/// The statements creating what the sink needs and may be missing: the rows' table (and its
/// conflict key's index) with `create_table`, the offsets table for exactly-once.
fn creation(settings: &PostgresSettings, table: &str, offsets: &str) -> String {
    let mut create = String::new();
    if settings.create_table {
        let columns: Vec<String> = TYPES
            .iter()
            .map(|(name, types)| format!("\"{name}\" {} NOT NULL", types[0]))
            .collect();
        create.push_str(&format!(
            "CREATE TABLE IF NOT EXISTS {table} ({}, \"written_at\" timestamp with time zone NOT NULL DEFAULT now());",
            columns.join(", ")
        ));
        if !settings.conflict_key.is_empty() {
            let name = settings.table.parts().last().copied().unwrap_or("kafkad");
            let index: String = format!("{name}_kafkad_key").chars().take(63).collect();
            create.push_str(&format!(
                "CREATE UNIQUE INDEX IF NOT EXISTS \"{index}\" ON {table} ({});",
                quoted_list(settings.conflict_key.iter().map(|c| c.as_str()))
            ));
        }
    }
    if settings.delivery == Delivery::ExactlyOnce {
        create.push_str(&format!(
            "CREATE TABLE IF NOT EXISTS {offsets} (\"consumer_group\" text NOT NULL, \
             \"topic\" text NOT NULL, \"partition\" integer NOT NULL, \"next_offset\" bigint, \
             \"claim\" bigint NOT NULL, \"claimed_by\" text NOT NULL, \
             \"claimed_at\" timestamp with time zone NOT NULL, \
             \"updated_at\" timestamp with time zone, \
             PRIMARY KEY (\"consumer_group\", \"topic\", \"partition\"));"
        ));
    }
    create
}

/// The rows' table, as `found` lists its columns, has each of the sink's with a type it can
/// write; returns the type of its metadata column (`json` or `jsonb`), which the insert casts to.
fn check_columns(
    settings: &PostgresSettings,
    found: &[(String, String)],
) -> Result<&'static str, SinkError> {
    let fail = |message: String| setup(&format!("table {}", settings.table), &message);
    if found.is_empty() {
        return Err(fail(
            "does not exist; create it (docs/sinks.md, postgres) or set [sink] create_table = true"
                .to_owned(),
        ));
    }
    let mut metadata_type = "jsonb";
    for (name, accepted) in TYPES {
        let Some((_, actual)) = found.iter().find(|(column, _)| column == name) else {
            return Err(fail(format!(
                "has no column \"{name}\" (the sink writes {})",
                COLUMNS.join(", ")
            )));
        };
        let base = actual.split('(').next().unwrap_or(actual);
        if !accepted.contains(&base) {
            return Err(fail(format!(
                "column \"{name}\" is {actual}; the sink writes {} into it",
                accepted.join(" or ")
            )));
        }
        if name == "metadata" {
            metadata_type = if base == "json" { "json" } else { "jsonb" };
        }
    }
    Ok(metadata_type)
}

/// The statements the sink runs on the tables: the insert of its rows, and the claim, update
/// and read of the offsets rows.
fn statements(settings: &PostgresSettings, table: &str, offsets: &str, metadata_type: &str) -> Sql {
    let conflict = match settings.on_conflict {
        Some(OnConflict::Ignore) => format!(
            " ON CONFLICT ({}) DO NOTHING",
            quoted_list(settings.conflict_key.iter().map(|c| c.as_str()))
        ),
        None => String::new(),
    };
    Sql {
        insert: format!(
            "INSERT INTO {table} ({}) SELECT m, p, c, ts, md::{metadata_type}, tp, pa, o FROM \
             unnest($1::int8[], $2::text[], $3::text[], $4::timestamptz[], $5::text[], \
             $6::text[], $7::int4[], $8::int8[]) AS r(m, p, c, ts, md, tp, pa, o){conflict}",
            quoted_list(COLUMNS.iter().copied())
        ),
        claim: format!(
            "INSERT INTO {offsets} AS o (\"consumer_group\", \"topic\", \"partition\", \"claim\", \
             \"claimed_by\", \"claimed_at\") VALUES ($1, $2, $3, 1, $4, now()) \
             ON CONFLICT (\"consumer_group\", \"topic\", \"partition\") DO UPDATE SET \
             \"claim\" = o.\"claim\" + 1, \"claimed_by\" = EXCLUDED.\"claimed_by\", \
             \"claimed_at\" = now() RETURNING \"claim\", \"next_offset\""
        ),
        update: format!(
            "UPDATE {offsets} SET \"next_offset\" = $5, \"updated_at\" = now() \
             WHERE \"consumer_group\" = $1 AND \"topic\" = $2 AND \"partition\" = $3 \
             AND \"claim\" = $4 AND \"next_offset\" IS NOT DISTINCT FROM $6"
        ),
        read: format!(
            "SELECT \"claim\", \"next_offset\", \"claimed_by\" FROM {offsets} \
             WHERE \"consumer_group\" = $1 AND \"topic\" = $2 AND \"partition\" = $3"
        ),
    }
}

/// The statements of `sql` prepared on `client`.
pub(super) struct Prepared {
    pub insert: Statement,
    pub claim: Option<Statement>,
    pub update: Option<Statement>,
    pub read: Option<Statement>,
}

impl Prepared {
    pub fn new(
        client: &mut Client,
        sql: &Sql,
        exactly_once: bool,
    ) -> Result<Self, postgres::Error> {
        let mut positions = |text: &str| -> Result<Option<Statement>, postgres::Error> {
            exactly_once.then(|| client.prepare(text)).transpose()
        };
        let (claim, update, read) = (
            positions(&sql.claim)?,
            positions(&sql.update)?,
            positions(&sql.read)?,
        );
        Ok(Prepared {
            insert: client.prepare(&sql.insert)?,
            claim,
            update,
            read,
        })
    }
}

fn quoted_list<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names
        .map(|name| format!("\"{name}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A database error as a [`SinkError`], classified by its SQLSTATE: a lost connection
/// (class 08, or no answer at all), a serialization failure (40001), a deadlock (40P01) and
/// every other trouble of the database itself are retryable; data (22) and integrity
/// constraint (23) violations are about the records, and permanent.
pub(super) fn database(what: &str, error: &postgres::Error) -> SinkError {
    let (message, code) = match error.as_db_error() {
        Some(db) => (
            format!(
                "{}: {}{}",
                db.severity(),
                db.message(),
                db.detail().map(|d| format!(" ({d})")).unwrap_or_default()
            ),
            Some(db.code().code().to_owned()),
        ),
        None => {
            // The client's own text is the kind ("error connecting to server"); the cause
            // (connection refused, a timeout, a TLS failure) is its source.
            let mut text = error.to_string();
            let mut source = std::error::Error::source(error);
            while let Some(cause) = source {
                if let Some(tls) = cause.downcast_ref::<native_tls::Error>() {
                    text = tls_failure(tls);
                    break;
                }
                text.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            (text, None)
        }
    };
    let retryable = !code
        .as_deref()
        .is_some_and(|c| c.starts_with("22") || c.starts_with("23"));
    SinkError::Database {
        message: format!("{what}: {message}"),
        code,
        retryable,
    }
}

/// A failed TLS handshake, in place of the client's "error performing TLS handshake" and the
/// TLS error's sources, which only repeat its text. With OpenSSL that text is the library's
/// error, then in parentheses why the certificate was refused ("unable to get local issuer
/// certificate": signed by no CA kafkad trusts; "hostname mismatch": the certificate does
/// not name the URL's host); a refused certificate also says what kafkad checks, and where
/// the fix goes.
fn tls_failure(error: &native_tls::Error) -> String {
    let text = error.to_string();
    if text.contains("certificate verify failed") {
        format!(
            "the server's TLS certificate failed verification: {text}; kafkad trusts the \
             system's CAs and those in [sink] ca, and the certificate must name the URL's host"
        )
    } else {
        format!("TLS handshake failed: {text}")
    }
}

/// A database that cannot be used as configured, found at start-up: not worth a retry.
pub(super) fn setup(what: &str, message: &str) -> SinkError {
    SinkError::Database {
        message: format!("{what}: {message}"),
        code: None,
        retryable: false,
    }
}

/// [`database`], at start-up: not worth a retry either.
pub(super) fn at_setup(what: &str, error: &postgres::Error) -> SinkError {
    match database(what, error) {
        SinkError::Database { message, code, .. } => SinkError::Database {
            message,
            code,
            retryable: false,
        },
        other => other,
    }
}

/// Whether the connection must be made again after `error`.
pub(super) fn connection_lost(error: &postgres::Error) -> bool {
    error.is_closed()
        || match error.code() {
            None => error.as_db_error().is_none(),
            Some(code) => {
                let code = code.code();
                code.starts_with("08") || code.starts_with("57P")
            }
        }
}
