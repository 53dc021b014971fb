//! How a sink call fails: [`SinkError`], whether trying again may help, and the short kind
//! the processing-failure metric counts it by. Every sink and the consumer engine share it;
//! it sits apart from the [`Sink`](super::Sink) trait because most of it is about the ways
//! each destination fails.

use std::path::PathBuf;
use std::time::Duration;

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
    /// The server answered, but not with a 2xx. A redirect (3xx) is one of these: the sink
    /// never follows one (see [`http`](super::http)).
    #[error("POST {url} answered HTTP {status}{}: {}", redirect_note(answer.location.as_deref()), answer.body)]
    HttpStatus {
        url: String,
        status: u16,
        /// Boxed: every role's error carries a `SinkError`, and should stay small.
        answer: Box<HttpAnswer>,
    },
    /// No answer: connection refused or reset, a name that does not resolve, a timeout.
    #[error("POST {url} failed: {reason}")]
    HttpTransport { url: String, reason: String },
    #[error("cannot start the sink command `{command}`: {source}")]
    CommandSpawn {
        command: String,
        source: std::io::Error,
    },
    /// The program started, but watching it run failed (a failing `poll` or `waitid`); it was
    /// killed.
    #[error("lost track of the sink command `{command}` while it ran, and killed it: {source}")]
    CommandRun {
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
    /// The database failed or refused a write (or, at start-up, cannot be used as
    /// configured); `code` is its SQLSTATE when it answered with one.
    #[error("PostgreSQL: {message}{}", code.as_deref().map(|c| format!(" (SQLSTATE {c})")).unwrap_or_default())]
    Database {
        /// What was being done, and the database's or the client's words.
        message: String,
        code: Option<String>,
        retryable: bool,
    },
    /// The output cluster failed or refused a send or a transaction.
    #[error("Kafka sink: {what}: {reason}")]
    Produce {
        what: String,
        reason: String,
        retryable: bool,
    },
    /// A sink keeping positions refused to write for a partition this member's claim no
    /// longer covers: another member, or a later assignment of this one, holds it now. The
    /// records are not this call's to write; they were not written.
    #[error("not written: {0}")]
    Fenced(String),
    /// The schema registry could not be asked for a record's schema (down, unreachable,
    /// answering 5xx): not the record's fault, so it waits like a downstream outage.
    #[error("cannot decode the record: {0}")]
    SchemaRegistry(String),
}

/// What a non-2xx HTTP answer said besides its status.
#[derive(Debug, Default)]
pub struct HttpAnswer {
    /// Where a redirect pointed (its `Location`), as the server wrote it.
    pub location: Option<String>,
    /// How long the server asked to be left alone (its `Retry-After`), counted from when it
    /// answered.
    pub retry_after: Option<Duration>,
    /// The start of the answer's body.
    pub body: String,
}

/// What an [`SinkError::HttpStatus`] adds after the status when the answer was a redirect.
fn redirect_note(location: Option<&str>) -> String {
    location.map_or_else(String::new, |location| {
        format!(
            " redirecting to {location}, which the sink does not follow (set [sink] url to \
             where it points)"
        )
    })
}

/// The exit status with which a sink command says "this input is bad, do not retry it"
/// (`EX_DATAERR` of sysexits.h). Every other failing status counts as retryable.
pub const COMMAND_REJECTS: i32 = 65;

impl SinkError {
    /// Every [`kind`](Self::kind): the kinds `kafkad_processing_failures_total` shows, each
    /// at 0 until a sink fails that way.
    pub const KINDS: [&'static str; 12] = [
        "io",
        "http_status",
        "http_transport",
        "command_spawn",
        "command_run",
        "command_timeout",
        "command_exit",
        "rejected",
        "fenced",
        "database",
        "kafka",
        "schema_registry",
    ];

    /// Whether the same call may succeed later: timeouts, refused or broken connections,
    /// HTTP 408 (request timeout), 429 (too many requests) and 5xx, a command that could not
    /// start, could not be watched, was killed by its timeout or exited with a status other than
    /// [`COMMAND_REJECTS`], a file write (a full disk clears). Permanent: any other HTTP 4xx,
    /// a 3xx (a redirect, which the sink does not follow: asking again gets the same one), a
    /// 1xx or other status a POST does not expect, a record the downstream rejects, a sink
    /// file that cannot be opened.
    pub fn is_retryable(&self) -> bool {
        match self {
            SinkError::Open { .. } | SinkError::Rejected(_) | SinkError::Fenced(_) => false,
            SinkError::HttpStatus { status, .. } => {
                matches!(status, 408 | 429) || (500..600).contains(status)
            }
            SinkError::CommandExit { code, .. } => *code != Some(COMMAND_REJECTS),
            SinkError::Database { retryable, .. } | SinkError::Produce { retryable, .. } => {
                *retryable
            }
            SinkError::Write { .. }
            | SinkError::HttpTransport { .. }
            | SinkError::CommandSpawn { .. }
            | SinkError::CommandRun { .. }
            | SinkError::CommandTimeout { .. }
            | SinkError::SchemaRegistry(_) => true,
        }
    }

    /// How long the downstream asked to be left alone before the next attempt (an HTTP
    /// `Retry-After`), if it said so: the server's own figure, not bounded here.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SinkError::HttpStatus { answer, .. } => answer.retry_after,
            _ => None,
        }
    }

    /// A short name for the failure: the `kind` label of the processing-failure metric.
    pub fn kind(&self) -> &'static str {
        match self {
            SinkError::Open { .. } | SinkError::Write { .. } => "io",
            SinkError::HttpStatus { .. } => "http_status",
            SinkError::HttpTransport { .. } => "http_transport",
            SinkError::CommandSpawn { .. } => "command_spawn",
            SinkError::CommandRun { .. } => "command_run",
            SinkError::CommandTimeout { .. } => "command_timeout",
            SinkError::CommandExit { .. } => "command_exit",
            SinkError::Rejected(_) => "rejected",
            SinkError::Fenced(_) => "fenced",
            SinkError::Database { .. } => "database",
            SinkError::Produce { .. } => "kafka",
            SinkError::SchemaRegistry(_) => "schema_registry",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn errors_say_whether_to_retry() {
        let status = |status| SinkError::HttpStatus {
            url: "http://x".into(),
            status,
            answer: Box::default(),
        };
        for retryable in [408, 429, 500, 502, 503, 504] {
            assert!(status(retryable).is_retryable(), "{retryable}");
        }
        for permanent in [400, 401, 403, 404, 409, 413, 422, 301, 302, 303, 307, 308] {
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
    fn kinds_lists_the_kind_of_every_error() {
        let io = || std::io::Error::other("x");
        let (path, url, command) = (
            std::path::PathBuf::from("x"),
            String::from("x"),
            String::from("x"),
        );
        let one_of_each = [
            SinkError::Open {
                path: path.clone(),
                source: io(),
            },
            SinkError::Write { path, source: io() },
            SinkError::HttpStatus {
                url: url.clone(),
                status: 500,
                answer: Box::default(),
            },
            SinkError::HttpTransport {
                url,
                reason: String::new(),
            },
            SinkError::CommandSpawn {
                command: command.clone(),
                source: io(),
            },
            SinkError::CommandRun {
                command: command.clone(),
                source: io(),
            },
            SinkError::CommandTimeout {
                command: command.clone(),
                timeout: Duration::from_secs(1),
            },
            SinkError::CommandExit {
                command,
                code: Some(1),
                stderr: String::new(),
            },
            SinkError::Rejected(String::new()),
            SinkError::Fenced(String::new()),
            SinkError::Database {
                message: String::new(),
                code: None,
                retryable: true,
            },
            SinkError::Produce {
                what: String::new(),
                reason: String::new(),
                retryable: true,
            },
            SinkError::SchemaRegistry(String::new()),
        ];
        // Without a wildcard arm, a new variant does not compile here until it is added above.
        for error in &one_of_each {
            match error {
                SinkError::Open { .. }
                | SinkError::Write { .. }
                | SinkError::HttpStatus { .. }
                | SinkError::HttpTransport { .. }
                | SinkError::CommandSpawn { .. }
                | SinkError::CommandRun { .. }
                | SinkError::CommandTimeout { .. }
                | SinkError::CommandExit { .. }
                | SinkError::Rejected(_)
                | SinkError::Fenced(_)
                | SinkError::Database { .. }
                | SinkError::Produce { .. }
                | SinkError::SchemaRegistry(_) => {}
            }
        }
        let kinds: std::collections::BTreeSet<&str> =
            one_of_each.iter().map(SinkError::kind).collect();
        assert_eq!(kinds, SinkError::KINDS.into_iter().collect());
    }
}
