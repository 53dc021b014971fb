//! Logging through `tracing`, and librdkafka's own log lines routed into it.

use rdkafka::config::RDKafkaLogLevel;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber: human-readable text on stderr, filtered by `RUST_LOG`
/// when set, else by `default_level`. Safe to call twice (the second call is ignored).
pub fn init(default_level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{default_level},librdkafka=warn")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
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
