//! What every librdkafka client of kafkad shares: its log lines and errors go to `tracing`,
//! with secret values removed first (librdkafka's debug output can echo configuration).

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;

use crate::config::kafka::Redactor;
use crate::telemetry::logging;
use crate::telemetry::stats::ClientStats;

/// The base context: a client name for log lines, the redactor, and where statistics go.
#[derive(Debug, Clone)]
pub struct ClientLog {
    name: String,
    redactor: Redactor,
    stats: Option<ClientStats>,
}

impl ClientLog {
    pub fn new(name: impl Into<String>, redactor: Redactor) -> Self {
        ClientLog {
            name: name.into(),
            redactor,
            stats: None,
        }
    }

    /// Feeds librdkafka statistics into `stats` (needs `statistics.interval.ms`).
    pub fn with_stats(mut self, stats: ClientStats) -> Self {
        self.stats = Some(stats);
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn redact<'t>(&self, text: &'t str) -> std::borrow::Cow<'t, str> {
        self.redactor.redact(text)
    }
}

impl ClientContext for ClientLog {
    fn stats(&self, statistics: rdkafka::Statistics) {
        if let Some(stats) = &self.stats {
            stats.observe(&statistics);
        }
    }

    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        logging::librdkafka_line(level, facility, &self.redactor.redact(message), &self.name);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // Transport errors while a broker is down repeat every retry; they are expected and
        // librdkafka recovers by itself, so they are warnings. Anything else is an error.
        let reason = self.redactor.redact(reason);
        match error.rdkafka_error_code() {
            Some(
                rdkafka::types::RDKafkaErrorCode::BrokerTransportFailure
                | rdkafka::types::RDKafkaErrorCode::AllBrokersDown
                | rdkafka::types::RDKafkaErrorCode::Resolve,
            ) => tracing::warn!(client = %self.name, %error, "{reason}"),
            _ => tracing::error!(client = %self.name, %error, "{reason}"),
        }
    }
}
