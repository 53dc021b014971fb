//! Logging through `tracing`, and librdkafka's own log lines routed into it.

use rdkafka::config::RDKafkaLogLevel;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
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
            .finish()
            .with(WithoutPolledErrorCopies)
            .try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .finish()
            .with(WithoutPolledErrorCopies)
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

/// Drops the second report of a consumer error. rdkafka's consumer hands every error event
/// to the client's context first, which logs it with librdkafka's description (the broker,
/// the cause) under its client's name, and then returns it from `poll` once more as a bare
/// code (`KafkaError::MessageConsumption`, "Message consumption error: AllBrokersDown ..."),
/// which the consumer loop logs as a warning: the same error twice, and the copy tells less.
/// Fatal consumer errors have a wording of their own and stay.
struct WithoutPolledErrorCopies;

/// rdkafka's wording of a non-fatal error returned by a consumer's `poll`.
const POLLED_ERROR: &str = "Message consumption error: ";

impl<S: Subscriber> Layer<S> for WithoutPolledErrorCopies {
    fn event_enabled(&self, event: &Event<'_>, _: Context<'_, S>) -> bool {
        if *event.metadata().level() != Level::WARN {
            return true;
        }
        let mut error = PolledError(false);
        event.record(&mut error);
        !error.0
    }
}

/// Whether an event's `error` field is a consumer error returned by `poll`.
struct PolledError(bool);

impl Visit for PolledError {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "error" {
            self.0 = format!("{value:?}").starts_with(POLLED_ERROR);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A consumer's `poll` error as rdkafka formats it, and one it reports otherwise.
    #[test]
    fn only_the_polled_copy_of_a_consumer_error_is_dropped() {
        use rdkafka::error::KafkaError;
        use rdkafka::types::RDKafkaErrorCode;
        use std::sync::{Arc, Mutex as StdMutex};

        #[derive(Clone, Default)]
        struct Written(Arc<StdMutex<Vec<u8>>>);
        impl std::io::Write for Written {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                if let Ok(mut written) = self.0.lock() {
                    written.extend_from_slice(bytes);
                }
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }

        let written = Written::default();
        let sink = written.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .finish()
            .with(WithoutPolledErrorCopies);
        tracing::subscriber::with_default(subscriber, || {
            let polled = KafkaError::MessageConsumption(RDKafkaErrorCode::AllBrokersDown);
            assert!(polled.to_string().starts_with(POLLED_ERROR), "{polled}");
            tracing::warn!(error = %polled, "consumer error; continuing");
            let fatal = KafkaError::MessageConsumptionFatal(RDKafkaErrorCode::Fatal);
            tracing::warn!(error = %fatal, "fatal, kept");
            let global = KafkaError::Global(RDKafkaErrorCode::AllBrokersDown);
            tracing::warn!(error = %global, "1/1 brokers are down");
            tracing::error!(error = %polled, "an error-level report, kept");
        });
        let text = String::from_utf8(written.0.lock().expect("lock").clone()).expect("UTF-8");
        assert!(!text.contains("consumer error; continuing"), "{text}");
        for kept in [
            "fatal, kept",
            "1/1 brokers are down",
            "an error-level report, kept",
        ] {
            assert!(text.contains(kept), "{kept} in {text}");
        }
    }
}
