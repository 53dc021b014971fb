//! The `postgres` sink: one row per message (message_id, producer_id, content, timestamp,
//! metadata as jsonb, and the record's topic, partition and offset) in a PostgreSQL table.
//!
//! # Exactly-once (`delivery = "exactly_once"`, the default)
//!
//! The rows of a sink call and the consumer's next offset of each partition the call covers
//! are written in one database transaction, into the offsets table keyed by (group, topic,
//! partition). That table, not Kafka, is where a member starts: on every assignment the
//! engine asks the sink's [`PositionStore`] to claim the partitions, and fetching starts at
//! the next offset the table holds (Kafka's committed offset where it holds none yet). The
//! consumer still commits to Kafka after the database, for Kafka's tools to show lag.
//!
//! **Fencing.** Claiming a partition increments its row's `claim` number (and names the
//! member in `claimed_by`); this member keeps the number it got, per partition, with the
//! assignment it was taken for ([`Claims`]). Every later write of the partition's next
//! offset is `UPDATE ... WHERE claim = <ours> AND next_offset IS NOT DISTINCT FROM <what
//! this member last left there>`, in the transaction of the rows. So a write is refused
//! ([`SinkError::Fenced`], the transaction rolled back, nothing written) when
//! * another member claimed the partition since (a zombie still finishing a batch after a
//!   rebalance took its partitions),
//! * this member was assigned the partition again since (the eager protocol revokes and
//!   re-assigns the same partitions; work of the earlier assignment still running past
//!   `drain_timeout` must not write, although it "started from" the same offset as the new
//!   assignment's first call: the claim number differs, the offset alone would not tell),
//! * the row holds another offset than this member last wrote, whatever the reason.
//!
//! The claim number, not the record's offset, is the fence because a call's first offset is
//! not always the previous call's next: dead-lettered records and compaction leave gaps. The
//! next offset only moves up: each write sets the offset after the call's last record, and
//! only the claim holder's calls, one after another per partition (`ordering = "partition"`
//! is required), write it. A commit whose answer was lost (the connection broke) is found
//! out on the next attempt: the row already holds that attempt's next offset under our
//! claim, so the records were written and the call succeeds without writing them again.
//!
//! # At-least-once
//!
//! Plain inserts, one statement per call, then Kafka's commit as with every other sink;
//! `on_conflict = "ignore"` with a `conflict_key` skips rows whose key is taken, so a
//! redelivered record is not stored twice. A dead-letter replay, which keeps its own
//! position in Kafka, writes rows this way in either mode.
//!
//! Errors are classified by SQLSTATE (see `schema::database`): a lost connection, a
//! serialization failure or a deadlock is retried; a record the table refuses (a constraint
//! or a type) is dead-lettered per `[retry]`, with the database's error in its headers.

mod positions;
mod schema;

use std::fmt::Write;
use std::sync::{Arc, Mutex};

use postgres::Client;

use super::claims::{Claim, Claims};
use super::test_pause::{self, Stage};
use super::{PositionStore, Positions, Record, Sink, SinkError, Span, WritesUnits};
use crate::config::{Delivery, PostgresSettings, ResolvedSecret};
use schema::{connection_lost, database, Prepared, Sql, Target};

/// The columns the sink writes, in this order.
pub const COLUMNS: [&str; 8] = [
    "message_id",
    "producer_id",
    "content",
    "timestamp",
    "metadata",
    "topic",
    "partition",
    "offset",
];

/// What every connection of one consumer's sink shares.
struct Shared {
    target: Target,
    sql: Sql,
    table: String,
    /// The consumer's topic, each row's `topic`.
    topic: String,
    exactly_once: bool,
    /// The consumer group the offsets rows belong to.
    group: String,
    /// Who claims, as `claimed_by` shows it: the consumer's `client.id`.
    member: String,
    claims: Claims,
}

/// One connection and its prepared statements.
struct Connection {
    client: Client,
    statements: Prepared,
}

/// The postgres sink of one worker.
pub struct PostgresSink {
    shared: Arc<Shared>,
    connection: Option<Connection>,
    /// The start-up connection, handed to the position store (exactly_once).
    spare: Mutex<Option<Connection>>,
}

impl PostgresSink {
    /// Connects, creates or checks the tables, and prepares the statements: every problem
    /// with the database shows here, at start-up, before the consumer joins its group.
    pub fn connect(
        settings: &PostgresSettings,
        password: &ResolvedSecret,
        topic: &str,
        group: &str,
        member: &str,
    ) -> Result<Self, SinkError> {
        let target = Target::new(settings, password)?;
        let mut client = target.connect()?;
        let sql = schema::prepare(&mut client, settings)?;
        let exactly_once = settings.delivery == Delivery::ExactlyOnce;
        let statements = Prepared::new(&mut client, &sql, exactly_once)
            .map_err(|e| schema::at_setup(&format!("table {}", settings.table), &e))?;
        tracing::info!(
            database = %target.shown,
            table = %settings.table,
            delivery = ?settings.delivery,
            "postgres sink ready"
        );
        let shared = Arc::new(Shared {
            target,
            sql,
            table: settings.table.to_string(),
            topic: topic.to_owned(),
            exactly_once,
            group: group.to_owned(),
            member: member.to_owned(),
            claims: Claims::default(),
        });
        Ok(PostgresSink {
            shared,
            connection: None,
            spare: Mutex::new(Some(Connection { client, statements })),
        })
    }

    /// The connection, made (again) if there is none.
    fn connection(&mut self) -> Result<&mut Connection, SinkError> {
        if self.connection.is_none() {
            let spare = self.spare.get_mut().map(Option::take).unwrap_or_default();
            let connection = match spare {
                Some(connection) => connection,
                None => open(&self.shared)?,
            };
            self.connection = Some(connection);
        }
        Ok(self.connection.as_mut().expect("set above"))
    }

    /// Runs `write` on the connection; after an error that broke it, the next call connects
    /// again.
    fn with_connection<T>(
        &mut self,
        write: impl FnOnce(&mut Connection, &Shared) -> Result<T, Failure>,
    ) -> Result<T, SinkError> {
        let shared = Arc::clone(&self.shared);
        let connection = self.connection()?;
        match write(connection, &shared) {
            Ok(value) => Ok(value),
            Err(Failure::Sink(error)) => Err(error),
            Err(Failure::Database(what, error)) => {
                if connection_lost(&error) {
                    self.connection = None;
                }
                Err(database(&what, &error))
            }
        }
    }

    /// Inserts `batch` in one statement, outside any transaction of ours.
    fn insert(&mut self, batch: &[Record<'_>]) -> Result<(), SinkError> {
        if batch.is_empty() {
            return Ok(());
        }
        only_messages(batch)?;
        self.with_connection(|connection, shared| {
            insert(
                &mut connection.client,
                &connection.statements,
                &shared.topic,
                batch,
            )
            .map(|_| ())
            .map_err(|e| {
                let what = format!("insert of {} row(s) into {}", batch.len(), shared.table);
                Failure::Database(what, e)
            })
        })
    }

    /// The rows of `batch` and the positions `at` in one transaction.
    fn write_at(&mut self, batch: &[Record<'_>], at: &Positions<'_>) -> Result<(), SinkError> {
        only_messages(batch)?;
        let mut spans = at.spans.to_vec();
        // Rows locked in one order by every member: two transactions never wait on each other
        // in a circle.
        spans.sort_by_key(|span| span.partition);
        let claims: Vec<Claim> = spans
            .iter()
            .map(|span| self.shared.claims.of(at.topic, span))
            .collect::<Result<_, _>>()?;
        let written = self.with_connection(|connection, shared| {
            transaction(connection, shared, batch, at.topic, &spans, &claims)
        })?;
        for span in &spans {
            self.shared.claims.written(span);
        }
        if written {
            test_pause::at(Stage::AfterCommit, &covers(at.topic, &spans));
        }
        Ok(())
    }
}

/// Why a write failed: the database, or a refusal of ours.
enum Failure {
    Database(String, postgres::Error),
    Sink(SinkError),
}

/// A new connection with the statements prepared.
fn open(shared: &Shared) -> Result<Connection, SinkError> {
    let mut client = shared.target.connect()?;
    let statements = Prepared::new(&mut client, &shared.sql, shared.exactly_once).map_err(|e| {
        database(
            &format!("preparing statements on {}", shared.target.shown),
            &e,
        )
    })?;
    Ok(Connection { client, statements })
}

/// The rows are the seed's message's columns: a record of another format has none
/// (configuration refuses such a consumer this sink; this keeps a row from going missing).
fn only_messages(batch: &[Record<'_>]) -> Result<(), SinkError> {
    batch
        .iter()
        .try_for_each(|record| record.expect_message("postgres").map(|_| ()))
}

/// `partition@next` of each span, for log lines.
fn covers(topic: &str, spans: &[Span]) -> String {
    let mut text = format!("{topic}:");
    for span in spans {
        let _ = write!(text, " {}@{}", span.partition, span.next);
    }
    text
}

/// One insert of every row of `batch`.
fn insert(
    client: &mut impl postgres::GenericClient,
    statements: &Prepared,
    topic: &str,
    batch: &[Record<'_>],
) -> Result<u64, postgres::Error> {
    let n = batch.len();
    let (mut ids, mut producers, mut contents, mut times, mut metadata) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut topics, mut partitions, mut offsets) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for record in batch {
        // Checked by `only_messages` before any write.
        let Some(message) = record.message() else {
            continue;
        };
        ids.push(message.message_id);
        producers.push(message.producer_id.as_ref());
        contents.push(message.content.as_ref());
        times.push(message.timestamp.to_utc());
        metadata.push(message.metadata.get());
        topics.push(topic);
        partitions.push(record.partition);
        offsets.push(record.offset);
    }
    client.execute(
        &statements.insert,
        &[
            &ids,
            &producers,
            &contents,
            &times,
            &metadata,
            &topics,
            &partitions,
            &offsets,
        ],
    )
}

/// Rows and positions in one transaction. `Ok(false)`: a commit whose answer was lost had
/// written them already.
fn transaction(
    connection: &mut Connection,
    shared: &Shared,
    batch: &[Record<'_>],
    topic: &str,
    spans: &[Span],
    claims: &[Claim],
) -> Result<bool, Failure> {
    let db = |what: &str| {
        let what = format!("{what} ({})", covers(topic, spans));
        move |e| Failure::Database(what, e)
    };
    let Connection { client, statements } = connection;
    let mut tx = client.transaction().map_err(db("BEGIN"))?;
    if !batch.is_empty() {
        insert(&mut tx, statements, topic, batch).map_err(db(&format!(
            "insert of {} row(s) into {}",
            batch.len(),
            shared.table
        )))?;
    }
    test_pause::at(Stage::BeforeCommit, &covers(topic, spans));
    let (update, read) = match (&statements.update, &statements.read) {
        (Some(update), Some(read)) => (update, read),
        _ => unreachable!("prepared for exactly_once"),
    };
    for (span, claim) in spans.iter().zip(claims) {
        refuse_moving_back(topic, span, claim)?;
        let updated = tx
            .execute(
                update,
                &[
                    &shared.group,
                    &topic,
                    &span.partition,
                    &claim.token,
                    &span.next,
                    &claim.written,
                ],
            )
            .map_err(db("writing the next offsets"))?;
        if updated == 1 {
            continue;
        }
        let row = tx
            .query_opt(read, &[&shared.group, &topic, &span.partition])
            .map_err(db("reading the offsets row"))?;
        // Dropping `tx` rolls the rows back.
        return lost_commit_or_fenced(row.as_ref(), &shared.group, topic, span, claim, batch.len());
    }
    tx.commit().map_err(db("COMMIT"))?;
    Ok(true)
}

/// A partition's next offset only moves up: this member never writes one below what it last
/// wrote there.
fn refuse_moving_back(topic: &str, span: &Span, claim: &Claim) -> Result<(), Failure> {
    if claim.written.is_some_and(|written| span.next < written) {
        return Err(Failure::Sink(SinkError::Fenced(format!(
            "{topic}/{}: next offset {} would move back from {:?}",
            span.partition, span.next, claim.written
        ))));
    }
    Ok(())
}

/// Why the offsets row (`row`, as read in the transaction) refused this member's update: a
/// commit of this same call whose answer was lost (`Ok(false)`: written already), or a fence
/// (another claim, or another offset than this member left there).
fn lost_commit_or_fenced(
    row: Option<&postgres::Row>,
    group: &str,
    topic: &str,
    span: &Span,
    claim: &Claim,
    rows: usize,
) -> Result<bool, Failure> {
    let (token, next, by): (i64, Option<i64>, String) = match row {
        Some(row) => (row.get(0), row.get(1), row.get(2)),
        None => (0, None, "nobody".to_owned()),
    };
    if token == claim.token && next == Some(span.next) {
        tracing::info!(
            partition = span.partition,
            next = span.next,
            "the previous attempt's commit went through (its answer was lost); not writing again"
        );
        return Ok(false);
    }
    let why = if token == claim.token {
        format!(
            "holds next offset {next:?}, where this member last left {:?}",
            claim.written
        )
    } else {
        format!(
            "was claimed again (claim {token}, by {by}); this member's claim {} no longer holds",
            claim.token
        )
    };
    Err(Failure::Sink(SinkError::Fenced(format!(
        "{topic}/{}: the offsets row of group {group} {why}; {rows} row(s) rolled back",
        span.partition
    ))))
}

/// Each unit is one transaction: the rows, and with exactly-once their partition's next
/// offset.
impl WritesUnits for PostgresSink {
    fn write(
        &mut self,
        records: &[Record<'_>],
        at: Option<&Positions<'_>>,
    ) -> Result<(), SinkError> {
        match (self.shared.exactly_once, at) {
            (true, Some(at)) => self.write_at(records, at),
            (false, Some(at)) => {
                self.insert(records)?;
                test_pause::at(Stage::AfterCommit, &covers(at.topic, at.spans));
                Ok(())
            }
            (_, None) => self.insert(records),
        }
    }

    fn positions(&self) -> Option<Box<dyn PositionStore>> {
        if !self.shared.exactly_once {
            return None;
        }
        let spare = self.spare.lock().unwrap_or_else(|p| p.into_inner()).take();
        Some(Box::new(positions::PostgresPositions::new(
            Arc::clone(&self.shared),
            spare,
        )))
    }

    fn another(&self) -> Option<Box<dyn Sink>> {
        Some(Box::new(PostgresSink {
            shared: Arc::clone(&self.shared),
            connection: None,
            spare: Mutex::new(None),
        }))
    }
}
