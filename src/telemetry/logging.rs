//! Logging through `tracing`, and librdkafka's own log lines routed into it.

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
/// (so `RUST_LOG=librdkafka=debug` shows them). `redact` removes secrets the line may echo.
pub fn librdkafka_line(level: RDKafkaLogLevel, facility: &str, message: &str, client: &str) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => {
            tracing::error!(target: "librdkafka", client, facility, "{message}")
        }
        RDKafkaLogLevel::Warning => {
            tracing::warn!(target: "librdkafka", client, facility, "{message}")
        }
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(target: "librdkafka", client, facility, "{message}")
        }
        RDKafkaLogLevel::Debug => {
            tracing::debug!(target: "librdkafka", client, facility, "{message}")
        }
    }
}
