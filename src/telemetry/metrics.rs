//! Named metrics per role, kept in one place (Vector's "each component emits its metrics from
//! one place"). The same counters feed the Prometheus endpoint, the periodic summary line, the
//! demo's progress line and the role reports, so those can never disagree.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::exponential_buckets;
use prometheus_client::registry::Registry;

use super::health::Health;
use super::histogram::Histogram;
use super::stats::ClientStats;
use crate::config::{ConsumerRole, Role};
use crate::dlq::Rejection;

/// A producer's counters, its librdkafka statistics and its health.
#[derive(Debug, Clone)]
pub struct ProducerMetrics {
    /// Messages librdkafka accepted into its queue.
    pub accepted: Counter,
    /// Messages the broker acknowledged (delivery report OK).
    pub delivered: Counter,
    /// Messages whose delivery report carried an error.
    pub failed: Counter,
    /// Broker connection state; it also makes the producer ready.
    pub client: ClientStats,
    pub health: Arc<Health>,
}

impl Default for ProducerMetrics {
    fn default() -> Self {
        let health = Arc::new(Health::default());
        ProducerMetrics {
            accepted: Counter::default(),
            delivered: Counter::default(),
            failed: Counter::default(),
            client: ClientStats::with_readiness(Arc::clone(&health)),
            health,
        }
    }
}

impl ProducerMetrics {
    pub fn register(&self, registry: &mut Registry) {
        self.client.register_broker_state(registry);
        registry.register(
            "messages_produced",
            "Messages accepted by librdkafka for delivery",
            self.accepted.clone(),
        );
        registry.register(
            "messages_delivered",
            "Messages acknowledged by the broker",
            self.delivered.clone(),
        );
        registry.register(
            "delivery_failures",
            "Messages whose delivery failed",
            self.failed.clone(),
        );
    }
}

/// Why a record was dead-lettered, as a label.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

/// What kind of sink failure, as a label.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

/// A consumer's counters and histograms, its librdkafka statistics and its health.
#[derive(Debug, Clone)]
pub struct ConsumerMetrics {
    /// Lag per partition and broker connection state.
    pub client: ClientStats,
    /// Ready while the consumer holds partitions.
    pub health: Arc<Health>,
    /// Records received from librdkafka.
    pub consumed: Counter,
    /// Records the sink processed.
    pub processed: Counter,
    /// Records copied to the dead-letter topic (or, with it disabled, skipped).
    pub dead_lettered: Counter,
    /// Records that could not be decoded, by reason.
    pub decode_errors: Family<ReasonLabel, Counter>,
    /// Dead-letter produce attempts that failed (and were retried).
    pub dead_letter_failures: Counter,
    /// Records copied to the dead-letter topic (or skipped), by reason: a decode error's kind,
    /// or `processing_failed`.
    pub dead_lettered_by_reason: Family<ReasonLabel, Counter>,
    /// Failed sink calls, by the error's kind (`http_status`, `command_exit`, ...).
    pub processing_failures: Family<KindLabel, Counter>,
    /// Sink calls repeated after a retryable failure.
    pub retries: Counter,
    /// Seconds partitions spent paused while a record or batch waited for its next attempt
    /// (once per backoff, however many partitions it paused).
    pub paused_seconds: Counter<f64, std::sync::atomic::AtomicU64>,
    /// Batches processed (batch role).
    pub batches: Counter,
    /// Records per processed batch.
    pub batch_size: Histogram,
    /// Offset commits that succeeded / failed.
    pub commits: Counter,
    pub commit_failures: Counter,
    /// Partition assignments and revocations.
    pub rebalances: Counter,
    /// Partitions this member holds now.
    pub assigned_partitions: Gauge,
    /// Now minus the message's own timestamp, at processing time.
    pub end_to_end_latency: Histogram,
    /// Time spent in one sink call: a message, a run of messages (a file sink in the single
    /// role), or a batch.
    pub processing_time: Histogram,
}

impl Default for ConsumerMetrics {
    /// Every counter with a known set of labels starts with each of them at 0: a series that
    /// appeared only with its first event would leave dashboards without data and give
    /// `rate()` and `increase()` nothing to compare that first event with.
    fn default() -> Self {
        ConsumerMetrics {
            client: ClientStats::default(),
            health: Arc::default(),
            consumed: Counter::default(),
            processed: Counter::default(),
            dead_lettered: Counter::default(),
            decode_errors: counters_at_zero(
                Rejection::unusable_record_kinds().map(|reason| ReasonLabel { reason }),
            ),
            dead_letter_failures: Counter::default(),
            dead_lettered_by_reason: counters_at_zero(
                Rejection::kinds().map(|reason| ReasonLabel { reason }),
            ),
            processing_failures: counters_at_zero(
                crate::sink::SinkError::KINDS.map(|kind| KindLabel { kind }),
            ),
            retries: Counter::default(),
            paused_seconds: Counter::default(),
            batches: Counter::default(),
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            commits: Counter::default(),
            commit_failures: Counter::default(),
            rebalances: Counter::default(),
            assigned_partitions: Gauge::default(),
            // 100 µs .. ~100 s
            end_to_end_latency: Histogram::new(exponential_buckets(0.0001, 2.5, 16)),
            // 1 µs .. ~30 s
            processing_time: Histogram::new(exponential_buckets(0.000001, 3.0, 16)),
        }
    }
}

/// A counter family holding a series for each of `labels`, at 0.
fn counters_at_zero<L>(labels: impl IntoIterator<Item = L>) -> Family<L, Counter>
where
    L: Clone + std::hash::Hash + Eq,
{
    let family = Family::default();
    for label in labels {
        // Creating the series is the point; the lock guard it returns is released at once.
        drop(family.get_or_create(&label));
    }
    family
}

impl ConsumerMetrics {
    /// Registers every series of the consumer; a scrape lists them in this order.
    pub fn register(&self, registry: &mut Registry) {
        self.client.register_broker_state(registry);
        self.client.register_lag(registry);
        self.register_record_counts(registry);
        self.register_sink_failures(registry);
        self.register_batches_and_group(registry);
        self.register_timings(registry);
    }

    /// What became of the records read: consumed, processed, dead-lettered (and why), and the
    /// dead-letter copies that failed.
    fn register_record_counts(&self, registry: &mut Registry) {
        registry.register(
            "records_consumed",
            "Records received from Kafka",
            self.consumed.clone(),
        );
        registry.register(
            "records_processed",
            "Records processed by the sink",
            self.processed.clone(),
        );
        registry.register(
            "records_dead_lettered",
            "Records that could not be decoded, copied to the dead-letter topic",
            self.dead_lettered.clone(),
        );
        registry.register(
            "decode_errors",
            "Records that could not be decoded, by reason",
            self.decode_errors.clone(),
        );
        registry.register(
            "dead_letter_failures",
            "Failed dead-letter produce attempts (retried)",
            self.dead_letter_failures.clone(),
        );
        registry.register(
            "records_dead_lettered_by_reason",
            "Records copied to the dead-letter topic, by reason (a decode error kind, or processing_failed)",
            self.dead_lettered_by_reason.clone(),
        );
    }

    /// Failed sink calls, their retries, and the time partitions spent paused for them.
    fn register_sink_failures(&self, registry: &mut Registry) {
        registry.register(
            "processing_failures",
            "Failed sink calls (a record or a batch), by error kind",
            self.processing_failures.clone(),
        );
        registry.register(
            "processing_retries",
            "Sink calls repeated after a retryable failure",
            self.retries.clone(),
        );
        registry.register_with_unit(
            "paused",
            "Time spent with partitions paused, waiting to retry a failed record or batch",
            prometheus_client::registry::Unit::Seconds,
            self.paused_seconds.clone(),
        );
    }

    /// Batches, offset commits, and the partitions the group gave this member.
    fn register_batches_and_group(&self, registry: &mut Registry) {
        registry.register(
            "batches_processed",
            "Batches processed",
            self.batches.clone(),
        );
        registry.register(
            "batch_size",
            "Records per processed batch",
            self.batch_size.clone(),
        );
        registry.register("commits", "Successful offset commits", self.commits.clone());
        registry.register(
            "commit_failures",
            "Failed offset commits",
            self.commit_failures.clone(),
        );
        registry.register(
            "rebalances",
            "Partition assignments and revocations",
            self.rebalances.clone(),
        );
        registry.register(
            "assigned_partitions",
            "Partitions this member of the group holds (0 for a member with none, which is still ready)",
            self.assigned_partitions.clone(),
        );
    }

    /// How long records took end to end, and each sink call.
    fn register_timings(&self, registry: &mut Registry) {
        registry.register_with_unit(
            "end_to_end_latency",
            "Processing time minus the message timestamp",
            prometheus_client::registry::Unit::Seconds,
            self.end_to_end_latency.clone(),
        );
        registry.register_with_unit(
            "processing",
            "Time spent in one sink call (a message, a run of messages, or a batch)",
            prometheus_client::registry::Unit::Seconds,
            self.processing_time.clone(),
        );
    }
}

/// The role that runs, with its metrics (and health): what runs and what it reports to are
/// one value, so they cannot disagree.
#[derive(Debug, Clone)]
pub enum RoleMetrics {
    Producer(ProducerMetrics),
    Consumer(ConsumerRole, ConsumerMetrics),
}

impl RoleMetrics {
    pub fn role(&self) -> Role {
        match self {
            RoleMetrics::Producer(_) => Role::Producer,
            RoleMetrics::Consumer(consumer, _) => consumer.role(),
        }
    }

    pub fn register(&self, registry: &mut Registry) {
        match self {
            RoleMetrics::Producer(m) => m.register(registry),
            RoleMetrics::Consumer(_, m) => m.register(registry),
        }
        registry.register(
            "seconds_since_progress",
            "Seconds the role has gone without the progress it owes (a consumer: work out and none finished, its loop not turning, or a partition not delivering; the producer: no message sent); /healthz fails past stall_timeout",
            self.health().since_progress_gauge(),
        );
    }

    pub fn health(&self) -> Arc<Health> {
        match self {
            RoleMetrics::Producer(m) => Arc::clone(&m.health),
            RoleMetrics::Consumer(_, m) => Arc::clone(&m.health),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape(metrics: &ConsumerMetrics) -> String {
        let mut registry = Registry::with_prefix("kafkad");
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        text
    }

    #[test]
    fn every_known_reason_and_kind_is_served_at_zero_before_any_event() {
        let text = scrape(&ConsumerMetrics::default());
        let expected = Rejection::unusable_record_kinds()
            .map(|reason| format!("kafkad_decode_errors_total{{reason=\"{reason}\"}} 0"))
            .chain(Rejection::kinds().map(|reason| {
                format!("kafkad_records_dead_lettered_by_reason_total{{reason=\"{reason}\"}} 0")
            }))
            .chain(
                crate::sink::SinkError::KINDS
                    .map(|kind| format!("kafkad_processing_failures_total{{kind=\"{kind}\"}} 0")),
            );
        for line in expected {
            assert!(text.lines().any(|l| l == line), "{line} in {text}");
        }
    }

    #[test]
    fn processing_failure_metrics_have_the_documented_names() {
        let metrics = ConsumerMetrics::default();
        metrics
            .processing_failures
            .get_or_create(&KindLabel {
                kind: "http_status",
            })
            .inc();
        metrics
            .dead_lettered_by_reason
            .get_or_create(&ReasonLabel {
                reason: "processing_failed",
            })
            .inc();
        metrics.retries.inc();
        metrics.paused_seconds.inc_by(1.5);
        let text = scrape(&metrics);
        for line in [
            "kafkad_processing_failures_total{kind=\"http_status\"} 1",
            "kafkad_records_dead_lettered_by_reason_total{reason=\"processing_failed\"} 1",
            "kafkad_processing_retries_total 1",
            "kafkad_paused_seconds_total 1.5",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }
}
