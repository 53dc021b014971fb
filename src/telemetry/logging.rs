//! Logging through `tracing`, and librdkafka's own log lines routed into it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::config::RDKafkaLogLevel;
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSettings};

/// Installs the global subscriber on stderr: text or JSON as `[log] format` says, filtered by
/// `RUST_LOG` when set, else by `[log] level`. Safe to call twice (the second call is ignored).
///
/// JSON lines carry the role's span (`"span":{"role":..,"topic":..,"group":..}`), so every
/// line of a process says which role, topic, group or producer it comes from.
pub fn init(settings: &LogSettings) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match settings.format {
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
    };
}

/// The logging of commands that run no role (demo, topic ensure): text at `level`.
pub fn init_text(level: &str) {
    init(&LogSettings {
        format: LogFormat::Text,
        level: level.to_owned(),
    });
}

/// Re-emits one librdkafka log line at the matching tracing level, under target `librdkafka`
/// (so `RUST_LOG=librdkafka=debug` shows them), with secret values already removed.
/// `repeated` is how often the line occurred since it was last logged (see [`RepeatLimiter`]).
pub fn librdkafka_line(
    level: RDKafkaLogLevel,
    facility: &str,
    message: &str,
    client: &str,
    repeated: Option<u64>,
) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => {
            tracing::error!(target: "librdkafka", client, facility, repeated, "{message}")
        }
        RDKafkaLogLevel::Warning => {
            tracing::warn!(target: "librdkafka", client, facility, repeated, "{message}")
        }
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(target: "librdkafka", client, facility, repeated, "{message}")
        }
        RDKafkaLogLevel::Debug => {
            tracing::debug!(target: "librdkafka", client, facility, repeated, "{message}")
        }
    }
}

/// How long an error that keeps happening goes without a new line: it is logged when it first
/// happens, then at most once per window, with how often it happened meanwhile.
pub const REPEAT_WINDOW: Duration = Duration::from_secs(10);

/// Holds back the repeats of errors that keep happening (librdkafka reports every failed
/// connection attempt, many a second while no broker is reachable). An error's first
/// occurrence is logged; later ones within the window are counted, and the count is logged
/// with the first occurrence after the window, or by [`overdue`](Self::overdue) once the
/// window is over. `L` is what it takes to log the error's line again.
#[derive(Debug)]
pub struct RepeatLimiter<L> {
    window: Duration,
    errors: Mutex<HashMap<String, Repeats<L>>>,
}

#[derive(Debug)]
struct Repeats<L> {
    /// When the error's last line was logged.
    logged_at: Instant,
    /// Occurrences since then that were not logged.
    held_back: u64,
    /// The latest occurrence, to log with the count once the window is over.
    latest: L,
}

/// What to do with one occurrence of an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Log it, with `repeated`: how often the error occurred since its previous line, this
    /// occurrence included (none for a first occurrence, or the first after a quiet window).
    Log { repeated: Option<u64> },
    /// Count it, and log nothing now.
    HoldBack,
}

impl<L: Clone> RepeatLimiter<L> {
    pub fn new(window: Duration) -> Self {
        RepeatLimiter {
            window,
            errors: Mutex::default(),
        }
    }

    /// Decides about an occurrence at `now` of the error `key` (what makes two occurrences
    /// the same error), whose line is `line`.
    pub fn admit(&self, key: &str, line: &L, now: Instant) -> Admission {
        let Ok(mut errors) = self.errors.lock() else {
            // A thread panicked while holding the lock: logging everything beats logging
            // nothing.
            return Admission::Log { repeated: None };
        };
        let Some(repeats) = errors.get_mut(key) else {
            errors.insert(
                key.to_owned(),
                Repeats {
                    logged_at: now,
                    held_back: 0,
                    latest: line.clone(),
                },
            );
            return Admission::Log { repeated: None };
        };
        if now.saturating_duration_since(repeats.logged_at) < self.window {
            repeats.held_back += 1;
            repeats.latest = line.clone();
            return Admission::HoldBack;
        }
        let repeated = (repeats.held_back > 0).then_some(repeats.held_back + 1);
        repeats.logged_at = now;
        repeats.held_back = 0;
        Admission::Log { repeated }
    }

    /// The errors whose window is over at `now` with occurrences held back: each one's latest
    /// line and how many were held back, for logging now. An error that stayed quiet for a
    /// whole window is forgotten, so that its next occurrence is logged at once.
    pub fn overdue(&self, now: Instant) -> Vec<(L, u64)> {
        let Ok(mut errors) = self.errors.lock() else {
            return Vec::new();
        };
        let mut due = Vec::new();
        errors.retain(|_, repeats| {
            if now.saturating_duration_since(repeats.logged_at) < self.window {
                return true;
            }
            if repeats.held_back == 0 {
                return false;
            }
            due.push((repeats.latest.clone(), repeats.held_back));
            repeats.logged_at = now;
            repeats.held_back = 0;
            true
        });
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(10);

    #[test]
    fn an_error_is_logged_once_per_window_with_the_count_of_its_repeats() {
        let limiter = RepeatLimiter::new(WINDOW);
        let start = Instant::now();
        let at = |seconds: u64| start + Duration::from_secs(seconds);
        let first = Admission::Log { repeated: None };
        assert_eq!(limiter.admit("down", &"1/1 down", at(0)), first);
        // Another error is its own.
        assert_eq!(limiter.admit("refused", &"refused", at(1)), first);
        for second in 1..10 {
            assert_eq!(
                limiter.admit("down", &"0/1 down", at(second)),
                Admission::HoldBack
            );
        }
        // The window is over: this one is logged, standing for the 9 held back and itself.
        assert_eq!(
            limiter.admit("down", &"1/1 down", at(10)),
            Admission::Log { repeated: Some(10) }
        );
        assert_eq!(
            limiter.admit("down", &"1/1 down", at(12)),
            Admission::HoldBack
        );
        // The error stops: the one held back is reported when the window is over, then the
        // error is forgotten, and its next occurrence is a first one again.
        assert_eq!(limiter.overdue(at(19)), Vec::<(&str, u64)>::new());
        assert_eq!(limiter.overdue(at(20)), vec![("1/1 down", 1)]);
        assert_eq!(limiter.overdue(at(30)), Vec::<(&str, u64)>::new());
        assert_eq!(limiter.admit("down", &"1/1 down", at(31)), first);
        // "refused" happened once, so it went quiet long ago: also a first one again.
        assert_eq!(limiter.admit("refused", &"refused", at(31)), first);
    }

    #[test]
    fn an_error_seen_once_per_window_is_logged_every_time_without_a_count() {
        let limiter = RepeatLimiter::new(WINDOW);
        let start = Instant::now();
        for n in 0..3 {
            let at = start + WINDOW * n;
            assert_eq!(
                limiter.admit("slow", &"slow", at),
                Admission::Log { repeated: None }
            );
            assert!(limiter.overdue(at).is_empty());
        }
    }
}
