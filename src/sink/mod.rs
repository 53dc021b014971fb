//! Where processed messages go: the "processing" step of both consumer roles.
//!
//! A [`Sink`] is synchronous on purpose: it runs on the consumer's own blocking thread (see
//! `roles::consumer`), so a slow sink slows that consumer only, never the async runtime.
//! When `process` or `process_batch` returns `Ok`, the output must be durable enough that the
//! offset can be committed: the consumer stores or commits right after. An `Err` says whether
//! trying again may help ([`SinkError::is_retryable`]); the consumer retries or dead-letters
//! per `[retry]` (see `roles::retry`), and commits past a record only once it was processed or
//! its dead-letter copy acknowledged.
//!
//! Sinks: [`LogSink`], [`JsonlSink`], [`http::HttpSink`], [`command::CommandSink`], and
//! [`MemorySink`] for the demo and tests.

pub mod command;
pub mod http;

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::config::{Role, Settings, SinkSettings};
use crate::message::KafkaMessage;

/// One decoded record with its position.
#[derive(Debug, Clone)]
pub struct Record<'a> {
    pub partition: i32,
    pub offset: i64,
    pub message: KafkaMessage<'a>,
}

/// The processing step.
pub trait Sink: Send {
    /// Processes one message (single consumer).
    fn process(&mut self, record: &Record<'_>) -> Result<(), SinkError>;

    /// Processes a batch (batch consumer). By default one message after another, then done.
    fn process_batch(&mut self, batch: &[Record<'_>]) -> Result<(), SinkError> {
        batch.iter().try_for_each(|record| self.process(record))
    }
}

/// A sink could not process a record or batch; [`SinkError::is_retryable`] tells whether
/// trying again may succeed.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("cannot open sink file {}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write sink file {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The server answered, but not with a 2xx.
    #[error("POST {url} answered HTTP {status}: {body}")]
    HttpStatus {
        url: String,
        status: u16,
        /// The start of the answer's body.
        body: String,
    },
    /// No answer: connection refused or reset, a name that does not resolve, a timeout.
    #[error("POST {url} failed: {reason}")]
    HttpTransport { url: String, reason: String },
    #[error("cannot start the sink command `{command}`: {source}")]
    CommandSpawn {
        command: String,
        source: std::io::Error,
    },
    #[error("the sink command `{command}` did not finish within {} and was killed", humantime::format_duration(*timeout))]
    CommandTimeout {
        command: String,
        timeout: std::time::Duration,
    },
    /// The command ran and failed; `code` is `None` when a signal ended it.
    #[error("the sink command `{command}` exited with {}{}", code.map_or("a signal".to_owned(), |c| format!("status {c}")), if stderr.is_empty() { String::new() } else { format!(": {stderr}") })]
    CommandExit {
        command: String,
        code: Option<i32>,
        /// The end of what it wrote to standard error.
        stderr: String,
    },
    /// The downstream refused the record itself: trying it again gives the same answer.
    #[error("the record was rejected: {0}")]
    Rejected(String),
}

/// The exit status with which a sink command says "this input is bad, do not retry it"
/// (`EX_DATAERR` of sysexits.h). Every other failing status counts as retryable.
pub const COMMAND_REJECTS: i32 = 65;

impl SinkError {
    /// Whether the same call may succeed later: timeouts, refused or broken connections,
    /// HTTP 408 (request timeout), 429 (too many requests) and 5xx, a command that could not
    /// start, was killed by its timeout or exited with a status other than
    /// [`COMMAND_REJECTS`], a file write (a full disk clears). Permanent: any other HTTP 4xx
    /// (and 1xx/3xx, which a POST does not expect), a record the downstream rejects, a sink
    /// file that cannot be opened.
    pub fn is_retryable(&self) -> bool {
        match self {
            SinkError::Open { .. } | SinkError::Rejected(_) => false,
            SinkError::HttpStatus { status, .. } => {
                matches!(status, 408 | 429) || (500..600).contains(status)
            }
            SinkError::CommandExit { code, .. } => *code != Some(COMMAND_REJECTS),
            SinkError::Write { .. }
            | SinkError::HttpTransport { .. }
            | SinkError::CommandSpawn { .. }
            | SinkError::CommandTimeout { .. } => true,
        }
    }

    /// A short name for the failure: the `kind` label of the processing-failure metric.
    pub fn kind(&self) -> &'static str {
        match self {
            SinkError::Open { .. } | SinkError::Write { .. } => "io",
            SinkError::HttpStatus { .. } => "http_status",
            SinkError::HttpTransport { .. } => "http_transport",
            SinkError::CommandSpawn { .. } => "command_spawn",
            SinkError::CommandTimeout { .. } => "command_timeout",
            SinkError::CommandExit { .. } => "command_exit",
            SinkError::Rejected(_) => "rejected",
        }
    }
}

/// The sink `[sink]` asks for.
pub fn from_settings(settings: &Settings, role: Role) -> Result<Box<dyn Sink>, SinkError> {
    match &settings.sink {
        SinkSettings::Log {} => Ok(Box::new(LogSink { role })),
        SinkSettings::Jsonl { path } => Ok(Box::new(JsonlSink::create(path)?)),
        SinkSettings::Http { url, timeout, .. } => Ok(Box::new(http::HttpSink::new(
            url,
            *timeout,
            settings.resolved_sink_headers.0.clone(),
        ))),
        SinkSettings::Command { command, timeout } => {
            Ok(Box::new(command::CommandSink::new(command, *timeout)))
        }
    }
}

/// Logs each message (single) or one line per batch with each message at debug level, as the
/// seed application prints them.
#[derive(Debug)]
pub struct LogSink {
    role: Role,
}

impl LogSink {
    pub fn new(role: Role) -> Self {
        LogSink { role }
    }
}

impl Sink for LogSink {
    fn process(&mut self, record: &Record<'_>) -> Result<(), SinkError> {
        let m = &record.message;
        tracing::info!(
            role = %self.role,
            partition = record.partition,
            offset = record.offset,
            producer_id = %m.producer_id,
            message_id = m.message_id,
            timestamp = %m.timestamp,
            content = %m.content,
            "processed message"
        );
        Ok(())
    }

    fn process_batch(&mut self, batch: &[Record<'_>]) -> Result<(), SinkError> {
        for record in batch {
            let m = &record.message;
            tracing::debug!(
                partition = record.partition,
                offset = record.offset,
                producer_id = %m.producer_id,
                message_id = m.message_id,
                "batch message"
            );
        }
        let first = batch.first().map(|r| r.message.message_id);
        let last = batch.last().map(|r| r.message.message_id);
        tracing::info!(role = %self.role, size = batch.len(), ?first, ?last, "processed batch");
        Ok(())
    }
}

/// What the jsonl sink writes per message; reconciliation reads it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ProcessedLine {
    pub producer_id: String,
    pub message_id: i64,
    pub partition: i32,
    pub offset: i64,
}

impl From<&Record<'_>> for ProcessedLine {
    fn from(record: &Record<'_>) -> Self {
        ProcessedLine {
            producer_id: record.message.producer_id.clone().into_owned(),
            message_id: record.message.message_id,
            partition: record.partition,
            offset: record.offset,
        }
    }
}

/// Appends one JSON line per processed message. Each call ends with the lines handed to the
/// kernel (`flush`), so a killed process loses nothing it reported processed.
pub struct JsonlSink {
    path: PathBuf,
    writer: BufWriter<File>,
}

impl JsonlSink {
    pub fn create(path: &Path) -> Result<Self, SinkError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| SinkError::Open {
                path: path.to_owned(),
                source,
            })?;
        Ok(JsonlSink {
            path: path.to_owned(),
            writer: BufWriter::with_capacity(64 * 1024, file),
        })
    }

    fn write(&mut self, record: &Record<'_>) -> std::io::Result<()> {
        let line = ProcessedLine::from(record);
        serde_json::to_writer(&mut self.writer, &line)?;
        self.writer.write_all(b"\n")
    }

    fn fail(&self, source: std::io::Error) -> SinkError {
        SinkError::Write {
            path: self.path.clone(),
            source,
        }
    }
}

impl Sink for JsonlSink {
    fn process(&mut self, record: &Record<'_>) -> Result<(), SinkError> {
        self.write(record)
            .and_then(|()| self.writer.flush())
            .map_err(|e| self.fail(e))
    }

    fn process_batch(&mut self, batch: &[Record<'_>]) -> Result<(), SinkError> {
        batch
            .iter()
            .try_for_each(|record| self.write(record))
            .and_then(|()| self.writer.flush())
            .map_err(|e| self.fail(e))
    }
}

/// Collects processed lines in memory, shared between the consumers of one group: what the
/// demo and the tests reconcile against the producers.
#[derive(Debug, Clone, Default)]
pub struct MemorySink {
    lines: Arc<Mutex<Vec<ProcessedLine>>>,
}

impl MemorySink {
    /// Everything processed so far.
    pub fn lines(&self) -> Vec<ProcessedLine> {
        self.lines.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// How many messages were processed so far.
    pub fn len(&self) -> usize {
        self.lines.lock().map(|l| l.len()).unwrap_or_default()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Sink for MemorySink {
    fn process(&mut self, record: &Record<'_>) -> Result<(), SinkError> {
        if let Ok(mut lines) = self.lines.lock() {
            lines.push(record.into());
        }
        Ok(())
    }

    fn process_batch(&mut self, batch: &[Record<'_>]) -> Result<(), SinkError> {
        if let Ok(mut lines) = self.lines.lock() {
            lines.extend(batch.iter().map(ProcessedLine::from));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: i64, offset: i64) -> Record<'static> {
        Record {
            partition: 2,
            offset,
            message: KafkaMessage::new(id, "c", "p-1"),
        }
    }

    #[test]
    fn jsonl_lines_are_durable_after_each_call() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("out.jsonl");
        let mut sink = JsonlSink::create(&path).expect("create");
        sink.process(&record(1, 10)).expect("process");
        sink.process_batch(&[record(2, 11), record(3, 12)])
            .expect("batch");
        // Read while the sink is still open: nothing may sit in the buffer.
        let lines: Vec<ProcessedLine> = std::fs::read_to_string(&path)
            .expect("read")
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(
            lines[2],
            ProcessedLine {
                producer_id: "p-1".into(),
                message_id: 3,
                partition: 2,
                offset: 12
            }
        );
    }

    #[test]
    fn jsonl_reports_an_unwritable_path() {
        let error = JsonlSink::create(Path::new("/nonexistent-dir/x.jsonl"))
            .err()
            .expect("cannot open");
        assert!(error.to_string().contains("/nonexistent-dir/x.jsonl"));
    }

    #[test]
    fn errors_say_whether_to_retry() {
        let status = |status| SinkError::HttpStatus {
            url: "http://x".into(),
            status,
            body: String::new(),
        };
        for retryable in [408, 429, 500, 502, 503, 504] {
            assert!(status(retryable).is_retryable(), "{retryable}");
        }
        for permanent in [400, 401, 403, 404, 409, 413, 422, 301] {
            assert!(!status(permanent).is_retryable(), "{permanent}");
        }
        assert!(SinkError::HttpTransport {
            url: "http://x".into(),
            reason: "connection refused".into()
        }
        .is_retryable());
        assert!(SinkError::CommandTimeout {
            command: "x".into(),
            timeout: std::time::Duration::from_secs(1)
        }
        .is_retryable());
        let exit = |code| SinkError::CommandExit {
            command: "x".into(),
            code,
            stderr: String::new(),
        };
        assert!(exit(Some(1)).is_retryable());
        assert!(exit(None).is_retryable());
        assert!(!exit(Some(COMMAND_REJECTS)).is_retryable());
        assert!(!SinkError::Rejected("no".into()).is_retryable());
    }

    #[test]
    fn memory_sink_clones_share_lines() {
        let sink = MemorySink::default();
        let mut a = sink.clone();
        let mut b = sink.clone();
        a.process(&record(1, 0)).expect("ok");
        b.process_batch(&[record(2, 1), record(3, 2)]).expect("ok");
        assert_eq!(sink.len(), 3);
    }
}
