//! What a comparison prints: the table, and the JSON line with every figure and ratio.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use kafkad::config::{self, Role, Scope, Settings};

use crate::cli::Workload;
use crate::measure::PhaseResult;

/// Who ran a side of a comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SideKind {
    /// rdkafka called directly, pre-serialized payloads: the client's limit.
    Reference,
    /// The same loop with kafkad's codec: encode on the way out, decode on the way in.
    Codec,
    /// kafkad's role code.
    Kafkad,
    /// The seed's system: Python on confluent-kafka.
    Python,
    /// A peer: the same loops on franz-go, decoding with encoding/json.
    FranzGo,
    /// A peer: Kafka's own perf tool, at the Java client's defaults.
    Java,
    /// A peer: Kafka's producer perf tool with librdkafka's `batch.size`.
    JavaLibrdkafkaBatch,
}

impl SideKind {
    /// Key prefix of this side's figures in the JSON (kafkad's have none).
    pub fn json_prefix(self) -> &'static str {
        match self {
            SideKind::Reference => "reference_",
            SideKind::Codec => "codec_reference_",
            SideKind::Kafkad => "",
            SideKind::Python => "python_",
            SideKind::FranzGo => "franz_go_",
            SideKind::Java => "java_",
            SideKind::JavaLibrdkafkaBatch => "java_librdkafka_batch_",
        }
    }

    /// Key prefix of kafkad's ratio to this side (`ratio_` for the raw reference, as before).
    fn ratio_prefix(self) -> Option<&'static str> {
        match self {
            SideKind::Reference => Some("ratio_"),
            SideKind::Codec => Some("ratio_codec_"),
            SideKind::Kafkad => None,
            SideKind::Python => Some("ratio_python_"),
            SideKind::FranzGo => Some("ratio_franz_go_"),
            SideKind::Java => Some("ratio_java_"),
            SideKind::JavaLibrdkafkaBatch => Some("ratio_java_librdkafka_batch_"),
        }
    }

    fn label(self) -> &'static str {
        match self {
            SideKind::Reference => "reference (raw)",
            SideKind::Codec => "reference + codec",
            SideKind::Kafkad => "kafkad",
            SideKind::Python => "Python seed",
            SideKind::FranzGo => "franz-go",
            SideKind::Java => "Kafka perf tool",
            SideKind::JavaLibrdkafkaBatch => "Kafka perf tool, librdkafka batch.size",
        }
    }
}

/// One side's best and median runs, and every run's throughput for the record.
#[derive(Debug, Clone)]
pub struct Side {
    pub kind: SideKind,
    pub best: PhaseResult,
    pub median: PhaseResult,
    pub runs: Vec<f64>,
}

impl Side {
    /// The run a statistic stands for: the median, or the best.
    fn run(&self, median: bool) -> &PhaseResult {
        if median {
            &self.median
        } else {
            &self.best
        }
    }
}

/// A role measured on every side (kafkad and the raw reference always; the codec reference
/// and the Python seed where they ran).
#[derive(Debug, Clone)]
pub struct Comparison {
    /// Key prefix in the JSON (`""`, `single_`, `batch_`).
    pub prefix: &'static str,
    pub label: &'static str,
    pub sides: Vec<Side>,
}

impl Comparison {
    fn side(&self, kind: SideKind) -> Option<&Side> {
        self.sides.iter().find(|side| side.kind == kind)
    }
}

/// Everything one comparison measured.
pub struct BenchReport {
    pub workload: Workload,
    pub brokers: String,
    pub mock: bool,
    pub messages: u64,
    pub runs: u32,
    pub partitions: i32,
    pub replication_factor: i32,
    pub value_bytes: f64,
    pub rate: Option<f64>,
    pub settings: BTreeMap<String, String>,
    pub comparisons: Vec<Comparison>,
}

/// Percentile `q` (0..1) of sorted `values`, nearest rank.
pub fn percentile(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1] as f64
}

/// The figures of one side, in display order: (key, unit, value).
pub fn figures(result: &PhaseResult, value_bytes: f64) -> Vec<(&'static str, f64)> {
    let msgs_per_s = result.msgs_per_s();
    let mut figures = vec![
        ("msgs_per_s", msgs_per_s),
        ("mb_per_s", msgs_per_s * value_bytes / 1e6),
        ("cpu_s", result.cpu_s()),
        (
            "cpu_us_per_msg",
            if result.messages > 0 {
                result.cpu_s() * 1e6 / result.messages as f64
            } else {
                0.0
            },
        ),
        ("peak_rss_mb", result.peak_rss_mb),
    ];
    if !result.latencies_us.is_empty() {
        let mut sorted = result.latencies_us.clone();
        sorted.sort_unstable();
        for (key, q) in [
            ("latency_p50_ms", 0.50),
            ("latency_p95_ms", 0.95),
            ("latency_p99_ms", 0.99),
            ("latency_max_ms", 1.0),
        ] {
            figures.push((key, percentile(&sorted, q) / 1000.0));
        }
    }
    figures
}

pub fn ratio(kafkad: f64, reference: f64) -> f64 {
    if reference > 0.0 {
        kafkad / reference
    } else {
        0.0
    }
}

impl BenchReport {
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "kafkad-bench {}: {} messages of {:.0} bytes (mean value), {}, topic {} partitions RF {}, best of {} run(s) per side{}",
            serde_json::to_value(self.workload).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default(),
            self.messages,
            self.value_bytes,
            self.brokers,
            self.partitions,
            self.replication_factor,
            self.runs,
            self.rate.map(|r| format!(", {r} msgs/s")).unwrap_or_default(),
        );
        for c in &self.comparisons {
            let Some(kafkad) = c.side(SideKind::Kafkad) else {
                continue;
            };
            let kafkad_figures = figures(&kafkad.best, self.value_bytes);
            // Wide enough for the longest row title, "  kafkad / <side>".
            let width = c
                .sides
                .iter()
                .map(|side| side.kind.label().len() + 11)
                .fold(30, usize::max);
            let _ = write!(out, "{:<width$}", c.label);
            for (key, _) in &kafkad_figures {
                let _ = write!(out, "{key:>16}");
            }
            out.push('\n');
            for side in &c.sides {
                let _ = write!(out, "{:<width$}", format!("  {}", side.kind.label()));
                for (_, value) in figures(&side.best, self.value_bytes) {
                    let _ = write!(out, "{:>16}", format_figure(value));
                }
                out.push('\n');
            }
            for side in c.sides.iter().filter(|s| s.kind != SideKind::Kafkad) {
                let other = figures(&side.best, self.value_bytes);
                let _ = write!(
                    out,
                    "{:<width$}",
                    format!("  kafkad / {}", side.kind.label())
                );
                for ((_, k), (_, r)) in kafkad_figures.iter().zip(&other) {
                    let _ = write!(out, "{:>16}", format!("{:.3}x", ratio(*k, *r)));
                }
                out.push('\n');
            }
            let runs = |v: &[f64]| {
                v.iter()
                    .map(|x| format!("{x:.0}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            for side in &c.sides {
                let _ = writeln!(
                    out,
                    "  msgs/s of every run, {}: [{}], median {:.0}{}",
                    side.kind.label(),
                    runs(&side.runs),
                    side.median.msgs_per_s(),
                    side.best
                        .tool_msgs_per_s
                        .map(|own| format!(" (as the tool reports its best run: {own:.0})"))
                        .unwrap_or_default()
                );
            }
        }
        out
    }

    pub fn json(&self) -> serde_json::Value {
        let mut object = serde_json::Map::new();
        object.insert(
            "workload".into(),
            serde_json::to_value(self.workload).unwrap_or_default(),
        );
        object.insert("brokers".into(), self.brokers.clone().into());
        object.insert("mock".into(), self.mock.into());
        object.insert("messages".into(), self.messages.into());
        object.insert("runs".into(), self.runs.into());
        object.insert("partitions".into(), self.partitions.into());
        object.insert("replication_factor".into(), self.replication_factor.into());
        object.insert("value_bytes".into(), round(self.value_bytes).into());
        if let Some(rate) = self.rate {
            object.insert("rate".into(), rate.into());
        }
        object.insert(
            "settings".into(),
            serde_json::to_value(&self.settings).unwrap_or_default(),
        );
        // Each side's figures twice: of its best run (keys as they always were) and of its
        // median run (`median_` before the figure's name), each with kafkad's ratio to it.
        for c in &self.comparisons {
            let p = c.prefix;
            for (statistic, median) in [("", false), ("median_", true)] {
                let kafkad = c
                    .side(SideKind::Kafkad)
                    .map(|side| figures(side.run(median), self.value_bytes))
                    .unwrap_or_default();
                for side in &c.sides {
                    let side_prefix = side.kind.json_prefix();
                    let values = figures(side.run(median), self.value_bytes);
                    for (key, value) in &values {
                        object.insert(
                            format!("{side_prefix}{p}{statistic}{key}"),
                            round(*value).into(),
                        );
                    }
                    if let Some(ratio_prefix) = side.kind.ratio_prefix() {
                        for ((key, k), (_, r)) in kafkad.iter().zip(&values) {
                            object.insert(
                                format!("{ratio_prefix}{p}{statistic}{key}"),
                                round(ratio(*k, *r)).into(),
                            );
                        }
                    }
                    if let Some(own) = side.run(median).tool_msgs_per_s {
                        object.insert(
                            format!("{side_prefix}{p}{statistic}tool_msgs_per_s"),
                            round(own).into(),
                        );
                    }
                }
            }
            for side in &c.sides {
                let side_prefix = side.kind.json_prefix();
                object.insert(
                    format!("{side_prefix}{p}window_messages"),
                    side.best.messages.into(),
                );
                object.insert(
                    format!("{side_prefix}{p}startup_s"),
                    round(side.best.startup_s).into(),
                );
                object.insert(
                    format!("{side_prefix}{p}runs_msgs_per_s"),
                    side.runs
                        .iter()
                        .map(|v| round(*v))
                        .collect::<Vec<_>>()
                        .into(),
                );
            }
        }
        serde_json::Value::Object(object)
    }
}

pub fn round(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

pub fn format_figure(value: f64) -> String {
    if value >= 1000.0 {
        format!("{value:.0}")
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.3}")
    }
}

/// The librdkafka settings that shape the figures, as the roles resolve them.
pub fn effective_settings(settings: &[&Settings]) -> BTreeMap<String, String> {
    const SHOWN: &[&str] = &[
        "acks",
        "enable.idempotence",
        "max.in.flight.requests.per.connection",
        "compression.type",
        "linger.ms",
        "batch.num.messages",
        "batch.size",
        "queue.buffering.max.messages",
        "queue.buffering.max.kbytes",
        "enable.auto.commit",
        "enable.auto.offset.store",
        "auto.commit.interval.ms",
        "fetch.min.bytes",
        "fetch.wait.max.ms",
        "fetch.max.bytes",
        "max.partition.fetch.bytes",
        "queued.min.messages",
        "queued.max.messages.kbytes",
        "fetch.queue.backoff.ms",
        "statistics.interval.ms",
        "session.timeout.ms",
    ];
    let mut out = BTreeMap::new();
    for s in settings {
        let role = s.role.map(Role::as_str).unwrap_or("-");
        let scope = match s.role {
            Some(Role::Producer) | None => Scope::Producer,
            Some(_) => Scope::Consumer,
        };
        for name in SHOWN {
            let applies = !matches!(
                (config::kafka::scope_of(name), scope),
                (Some(Scope::Consumer), Scope::Producer) | (Some(Scope::Producer), Scope::Consumer)
            );
            if let Some(value) = s.resolved_kafka.get(name).filter(|_| applies) {
                out.insert(format!("{role}.{name}"), value.to_owned());
            }
        }
        if let Some(consumer) = s.role.and_then(Role::consumer) {
            for (name, value) in consumer.owned_properties() {
                out.insert(format!("{role}.{name}"), value.to_owned());
            }
        }
        if s.role == Some(Role::Batch) {
            out.insert("batch.min_size".into(), s.batch.min_size.to_string());
            out.insert("batch.max_size".into(), s.batch.max_size.to_string());
            out.insert(
                "batch.max_wait".into(),
                humantime::format_duration(s.batch.max_wait).to_string(),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let values: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&values, 0.50), 50.0);
        assert_eq!(percentile(&values, 0.99), 99.0);
        assert_eq!(percentile(&values, 1.0), 100.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}
