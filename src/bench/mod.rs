//! `kafkad bench produce|consume|roundtrip`: what kafkad costs on top of librdkafka.
//!
//! Each workload runs twice over: through kafkad's real role code (`producer::run`,
//! `roles::run_consumer`, with a sink that only counts) and through a *reference* loop
//! that calls rdkafka directly with pre-serialized payloads: no codec, no sink, no metrics,
//! no statistics parsing. Both get the identical librdkafka client configuration, built from
//! the same [`Settings`] (`client_config(Scope::…)`), so the role's real settings apply:
//! `acks=all`, idempotence, `max.in.flight=1`, lz4 and `linger.ms=5` for the producer;
//! `enable.auto.offset.store=false` for single, `enable.auto.commit=false` for batch.
//!
//! The reference does the same Kafka work kafkad's guarantees need, and nothing else:
//! the single reference stores every offset after "processing" it (auto commit on, as the
//! role), the batch reference forms batches with the same `min_size`/`max_size` rule and
//! commits last+1 per partition synchronously after each. So a ratio below 1 is kafkad's own
//! overhead (decoding, metrics, the sink call, owned copies), not a different protocol.
//!
//! # Measuring honestly on a shared 2-core machine
//!
//! * Every measured run is its own child process (`kafkad bench … --phase X`), so CPU time
//!   (`getrusage(RUSAGE_SELF)` deltas over the measured window) and peak RSS (`VmHWM` from
//!   `/proc/self/status`) belong to that run alone. The mock cluster (and the topic filling)
//!   live in the parent process, so their cost never lands on either side.
//! * Runs alternate reference, kafkad, kafkad, reference, … (ABBA) and each side reports its
//!   best run (highest throughput); peak RSS is the highest over that side's runs.
//! * Throughput windows: producer from client creation until every message is acknowledged
//!   (both sides); consumers from the first record handed to processing until the N-th was
//!   processed, excluding the group join (consumers read a topic pre-filled with N messages,
//!   each run under a fresh `group.id`).
//! * Roundtrip: one consumer (single role), joined before the producer starts, and a
//!   producer at a fixed `--rate`; latency is consumer clock minus the producer's timestamp
//!   of each message (same host, same clock). Messages sent before the producer's first
//!   acknowledgement are not counted: they waited for its connections and, with idempotence,
//!   its producer id (about 0.5 s), which is start-up, not latency.
//!
//! Ratios are kafkad / reference: above 1 is better for throughput, below 1 is better for CPU,
//! RSS and latency.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use crate::cli::ConfigArgs;
use crate::cluster::{self, EmbeddedCluster};
use crate::config::{self, LoadRequest, ProducerSettings, Role, Scope, Settings};
use crate::message::{KafkaMessage, Timestamp};
use crate::roles::{self, producer, ConsumerRole, RoleError};
use crate::shutdown::{self, ShutdownTrigger};
use crate::sink::{Record, Sink, SinkError};
use crate::telemetry::logging;
use crate::telemetry::metrics::{ConsumerMetrics, ProducerMetrics};

mod kafkad;
mod measure;
mod reference;
mod report;

use kafkad::*;
pub use measure::PhaseResult;
use measure::*;
use reference::*;
use report::*;

/// The producer id of every bench message (the role's default, host name and pid, would
/// differ in length between runs).
const PRODUCER_ID: &str = "kafkad-bench";

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// The producer role against a raw rdkafka producer, as fast as they go.
    Produce,
    /// The single and batch consumer roles against raw rdkafka consumers, on a pre-filled topic.
    Consume,
    /// End-to-end latency at a fixed `--rate`: producer role to single consumer role.
    Roundtrip,
}

/// One measured run, executed in a child process (internal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    ProduceKafkad,
    ProduceReference,
    SingleKafkad,
    SingleReference,
    BatchKafkad,
    BatchReference,
    RoundtripKafkad,
    RoundtripReference,
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Phase::ProduceKafkad => "produce-kafkad",
            Phase::ProduceReference => "produce-reference",
            Phase::SingleKafkad => "single-kafkad",
            Phase::SingleReference => "single-reference",
            Phase::BatchKafkad => "batch-kafkad",
            Phase::BatchReference => "batch-reference",
            Phase::RoundtripKafkad => "roundtrip-kafkad",
            Phase::RoundtripReference => "roundtrip-reference",
        }
    }

    fn role(self) -> Role {
        match self {
            Phase::ProduceKafkad | Phase::ProduceReference => Role::Producer,
            Phase::SingleKafkad
            | Phase::SingleReference
            | Phase::RoundtripKafkad
            | Phase::RoundtripReference => Role::Single,
            Phase::BatchKafkad | Phase::BatchReference => Role::Batch,
        }
    }
}

/// `kafkad bench` options. The configuration flags (`--config`, `--set`) apply to both sides.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// produce, consume (single and batch) or roundtrip (latency at a fixed rate).
    #[arg(value_enum)]
    pub workload: Workload,
    /// Brokers to measure against (e.g. 127.0.0.1:9092). Default: a fresh embedded mock
    /// cluster of 3 brokers in this process. `[kafka] bootstrap.servers` is not used.
    #[arg(long, value_name = "HOST:PORT,...")]
    pub bootstrap: Option<String>,
    /// Messages per run. Default: 100000 (produce, consume), 3000 (roundtrip).
    #[arg(long)]
    pub messages: Option<u64>,
    /// Bytes of padding added to each message's content (`producer.payload_bytes`); the
    /// seed-shaped message is about 165 bytes without it.
    #[arg(long, value_name = "BYTES")]
    pub payload_bytes: Option<usize>,
    /// Messages per second of the roundtrip producer.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Runs per side; each side reports its best.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub runs: u32,
    /// Partitions of the bench topics (replication factor: `topic.replication_factor`, 2 by
    /// default, as the seed's topic).
    #[arg(long, default_value_t = 3)]
    pub partitions: i32,
    /// Make the last line of stdout one JSON object with every figure and ratio.
    #[arg(long)]
    pub json: bool,
    /// Internal: run one measured phase and print its result as JSON.
    #[arg(long, hide = true, value_enum)]
    pub phase: Option<Phase>,
    /// Internal: the topic of the phase.
    #[arg(long, hide = true)]
    pub bench_topic: Option<String>,
    /// Internal: the consumer group of the phase.
    #[arg(long, hide = true)]
    pub group: Option<String>,
    /// Internal: the brokers are the mock cluster (short group timings).
    #[arg(long, hide = true)]
    pub mock: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("cannot start the embedded cluster: {0}")]
    Cluster(rdkafka::error::KafkaError),
    #[error(transparent)]
    Topic(#[from] crate::topic::TopicError),
    #[error("{phase}: {source}")]
    Role {
        phase: &'static str,
        source: RoleError,
    },
    #[error("{0}")]
    Reference(String),
    #[error("{phase}: {detail}")]
    Child { phase: &'static str, detail: String },
    #[error("{0}")]
    Invalid(String),
}

/// Runs `kafkad bench`: the orchestrator, or (with `--phase`) one measured run.
pub async fn run(args: BenchArgs, config: &ConfigArgs) -> Result<(), BenchError> {
    let request = config.request(false);
    if let Some(phase) = args.phase {
        let result = run_phase(phase, &args, &request).await?;
        println!(
            "{}",
            serde_json::to_string(&result).expect("a phase result serializes")
        );
        return Ok(());
    }
    logging::init_text("error");
    let report = orchestrate(&args, config, &request).await?;
    print!("{}", report.table());
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&report.json()).expect("the report serializes")
        );
    }
    Ok(())
}

/// What a run needs to build its settings.
struct Target<'a> {
    bootstrap: &'a str,
    mock: bool,
    topic: &'a str,
    group: Option<&'a str>,
}

/// The role's settings from the user's configuration (defaults < file < env < `--set`),
/// pointed at the bench's brokers, topic and group.
fn role_settings(
    request: &LoadRequest,
    role: Role,
    target: &Target<'_>,
    extra: &[(&str, String)],
) -> Result<Settings, config::ConfigError> {
    // Lowest first: the bench's own default, which the user's `--set` may change...
    let mut request = request.clone();
    request
        .overrides
        .insert(0, ("log.level".into(), "error".into()));
    // ...then what the bench must decide.
    let mut pinned: Vec<(&str, String)> = vec![
        ("topic.name", target.topic.to_owned()),
        ("producer.producer_id", PRODUCER_ID.to_owned()),
    ];
    if let Some(group) = target.group {
        pinned.push(("kafka.group.id", group.to_owned()));
    }
    pinned.extend(extra.iter().cloned());
    if target.mock {
        return cluster::mock_settings(target.bootstrap, role, &request, pinned);
    }
    request.overrides.push((
        "kafka.bootstrap.servers".into(),
        target.bootstrap.to_owned(),
    ));
    request
        .overrides
        .extend(pinned.into_iter().map(|(k, v)| (k.to_owned(), v)));
    request.role = Some(role);
    request.role_required = true;
    Ok(config::load(&request)?.settings)
}

fn payload_override(args: &BenchArgs) -> Vec<(&'static str, String)> {
    args.payload_bytes
        .map(|bytes| vec![("producer.payload_bytes", bytes.to_string())])
        .unwrap_or_default()
}

/// The record value the producer role sends for message `id` (its `MessageFactory` shape:
/// content template, padding, `{"source":"kafkad"}` metadata, a UTC timestamp).
fn seed_payload(settings: &ProducerSettings, id: i64, buf: &mut Vec<u8>) {
    let mut content = settings
        .content
        .replace("{id}", &id.to_string())
        .replace("{producer_id}", PRODUCER_ID);
    content.extend(std::iter::repeat_n('x', settings.payload_bytes));
    let metadata = serde_json::value::RawValue::from_string(r#"{"source":"kafkad"}"#.to_owned())
        .expect("valid JSON");
    let message = KafkaMessage {
        message_id: id,
        content: content.into(),
        producer_id: PRODUCER_ID.into(),
        timestamp: Timestamp::now(),
        metadata: std::borrow::Cow::Owned(metadata),
    };
    buf.clear();
    message.encode_into(buf);
}

/// Mean value size of messages `1..=n`, as the producer role writes them.
fn mean_value_bytes(settings: &ProducerSettings, n: u64) -> f64 {
    let mut buf = Vec::new();
    let total: u64 = (1..=n.max(1) as i64)
        .map(|id| {
            seed_payload(settings, id, &mut buf);
            buf.len() as u64
        })
        .sum();
    total as f64 / n.max(1) as f64
}

async fn run_phase(
    phase: Phase,
    args: &BenchArgs,
    request: &LoadRequest,
) -> Result<PhaseResult, BenchError> {
    let missing = |what: &str| BenchError::Invalid(format!("--phase needs --{what}"));
    let bootstrap = args
        .bootstrap
        .as_deref()
        .ok_or_else(|| missing("bootstrap"))?;
    let topic = args
        .bench_topic
        .as_deref()
        .ok_or_else(|| missing("bench-topic"))?;
    let messages = args.messages.ok_or_else(|| missing("messages"))?;
    let target = Target {
        bootstrap,
        mock: args.mock,
        topic,
        group: args.group.as_deref(),
    };
    let mut producer_extra = payload_override(args);
    producer_extra.push(("producer.count", messages.to_string()));
    if matches!(phase, Phase::RoundtripKafkad | Phase::RoundtripReference) {
        producer_extra.push(("producer.rate", args.rate.to_string()));
    }
    let settings = role_settings(request, phase.role(), &target, &producer_extra)?;
    logging::init(&settings.log);
    let producer_settings = || {
        role_settings(
            request,
            Role::Producer,
            &Target {
                group: None,
                ..target
            },
            &producer_extra,
        )
    };
    let mut result = match phase {
        Phase::ProduceKafkad => kafkad_produce(settings, messages).await?,
        Phase::ProduceReference => {
            tokio::task::spawn_blocking(move || reference_produce(&settings, messages))
                .await
                .map_err(|e| BenchError::Reference(e.to_string()))??
        }
        Phase::SingleKafkad | Phase::BatchKafkad => {
            kafkad_consume(phase, settings, messages).await?
        }
        Phase::SingleReference => {
            tokio::task::spawn_blocking(move || reference_single(&settings, messages))
                .await
                .map_err(|e| BenchError::Reference(e.to_string()))??
        }
        Phase::BatchReference => {
            tokio::task::spawn_blocking(move || reference_batch(&settings, messages))
                .await
                .map_err(|e| BenchError::Reference(e.to_string()))??
        }
        Phase::RoundtripKafkad => {
            kafkad_roundtrip(settings, producer_settings()?, messages).await?
        }
        Phase::RoundtripReference => {
            let producer_settings = producer_settings()?;
            let rate = args.rate;
            tokio::task::spawn_blocking(move || {
                reference_roundtrip(&settings, &producer_settings, messages, rate)
            })
            .await
            .map_err(|e| BenchError::Reference(e.to_string()))??
        }
    };
    result.peak_rss_mb = peak_rss_mb();
    Ok(result)
}

/// Where the runs go: the mock cluster this process holds, or the user's brokers.
struct Brokers {
    cluster: Option<EmbeddedCluster>,
    bootstrap: String,
}

impl Brokers {
    fn mock(&self) -> bool {
        self.cluster.is_some()
    }

    fn describe(&self) -> String {
        match &self.cluster {
            Some(_) => {
                "embedded mock cluster (3 brokers, in the bench's parent process)".to_owned()
            }
            None => format!("brokers at {}", self.bootstrap),
        }
    }
}

/// Creates a bench topic: on the mock through its API, elsewhere as `kafkad topic ensure`.
async fn create_topic(
    brokers: &Brokers,
    request: &LoadRequest,
    name: &str,
    partitions: i32,
) -> Result<i32, BenchError> {
    let target = Target {
        bootstrap: &brokers.bootstrap,
        mock: brokers.mock(),
        topic: name,
        group: None,
    };
    let settings = role_settings(
        request,
        Role::Producer,
        &target,
        &[("topic.partitions", partitions.to_string())],
    )?;
    let replication = settings.topic.replication_factor;
    match &brokers.cluster {
        Some(cluster) => {
            cluster
                .create_topic(name, partitions, replication)
                .map_err(BenchError::Cluster)?;
            if let Some(dlq) = settings.dlq_topic() {
                cluster
                    .create_topic(&dlq, 1, replication)
                    .map_err(BenchError::Cluster)?;
            }
        }
        None => {
            crate::topic::ensure(&settings, Duration::from_secs(30)).await?;
        }
    }
    Ok(replication)
}

/// Runs one phase as a child process and reads its result.
async fn spawn_phase(
    phase: Phase,
    args: &BenchArgs,
    config: &ConfigArgs,
    brokers: &Brokers,
    topic: &str,
    group: Option<&str>,
    messages: u64,
) -> Result<PhaseResult, BenchError> {
    let exe = std::env::current_exe().map_err(|e| BenchError::Child {
        phase: phase.as_str(),
        detail: format!("cannot find the kafkad executable: {e}"),
    })?;
    let mut command = std::process::Command::new(exe);
    command
        .arg("bench")
        .arg(match args.workload {
            Workload::Produce => "produce",
            Workload::Consume => "consume",
            Workload::Roundtrip => "roundtrip",
        })
        .args(["--phase", phase.as_str()])
        .args(["--bootstrap", &brokers.bootstrap])
        .args(["--bench-topic", topic])
        .args(["--messages", &messages.to_string()])
        .args(["--rate", &args.rate.to_string()]);
    if let Some(bytes) = args.payload_bytes {
        command.args(["--payload-bytes", &bytes.to_string()]);
    }
    if let Some(group) = group {
        command.args(["--group", group]);
    }
    if brokers.mock() {
        command.arg("--mock");
    }
    if let Some(file) = &config.config {
        command.arg("--config").arg(file);
    }
    for (key, value) in &config.overrides {
        command.args(["--set", &format!("{key}={value}")]);
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    // The child measures itself; waiting for it needs no async worker.
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .map_err(|e| BenchError::Reference(e.to_string()))?
        .map_err(|e| BenchError::Child {
            phase: phase.as_str(),
            detail: format!("cannot run: {e}"),
        })?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(BenchError::Child {
            phase: phase.as_str(),
            detail: format!("exited with {} (its error is above)", output.status),
        });
    }
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).map_err(|e| BenchError::Child {
        phase: phase.as_str(),
        detail: format!("unreadable result `{last}`: {e}"),
    })
}

/// Runs `kafkad_phase` and `reference_phase` `runs` times each, ABBA, and keeps each side's
/// best run (peak RSS: the highest of the side's runs).
#[allow(clippy::too_many_arguments)]
async fn compare(
    prefix: &'static str,
    label: &'static str,
    kafkad_phase: Phase,
    reference_phase: Phase,
    args: &BenchArgs,
    config: &ConfigArgs,
    request: &LoadRequest,
    brokers: &Brokers,
    messages: u64,
    fresh_topic: Option<&str>,
    shared_topic: &str,
) -> Result<Comparison, BenchError> {
    let mut kafkad_runs: Vec<PhaseResult> = Vec::new();
    let mut reference_runs: Vec<PhaseResult> = Vec::new();
    let pid = std::process::id();
    for run in 0..args.runs {
        let order = if run % 2 == 0 {
            [reference_phase, kafkad_phase]
        } else {
            [kafkad_phase, reference_phase]
        };
        for phase in order {
            let topic = match fresh_topic {
                Some(stem) => {
                    let name = format!("{stem}-{}-{run}", phase.as_str());
                    create_topic(brokers, request, &name, args.partitions).await?;
                    name
                }
                None => shared_topic.to_owned(),
            };
            let group = format!("kafkad-bench-{pid}-{}-{run}", phase.as_str());
            let group = (phase.role() != Role::Producer).then_some(group.as_str());
            eprintln!(
                "bench: {} run {}/{} ...",
                phase.as_str(),
                run + 1,
                args.runs
            );
            let result = spawn_phase(phase, args, config, brokers, &topic, group, messages).await?;
            if phase == kafkad_phase {
                kafkad_runs.push(result);
            } else {
                reference_runs.push(result);
            }
        }
    }
    let best = |runs: &[PhaseResult]| -> PhaseResult {
        let mut best = runs
            .iter()
            .max_by(|a, b| a.msgs_per_s().total_cmp(&b.msgs_per_s()))
            .cloned()
            .unwrap_or_default();
        best.peak_rss_mb = runs.iter().map(|r| r.peak_rss_mb).fold(0.0, f64::max);
        best
    };
    Ok(Comparison {
        prefix,
        label,
        kafkad: best(&kafkad_runs),
        reference: best(&reference_runs),
        kafkad_runs: kafkad_runs.iter().map(PhaseResult::msgs_per_s).collect(),
        reference_runs: reference_runs.iter().map(PhaseResult::msgs_per_s).collect(),
    })
}

async fn orchestrate(
    args: &BenchArgs,
    config: &ConfigArgs,
    request: &LoadRequest,
) -> Result<BenchReport, BenchError> {
    if args.rate.is_nan() || args.rate <= 0.0 {
        return Err(BenchError::Invalid("--rate must be above 0".to_owned()));
    }
    let messages = args.messages.unwrap_or(match args.workload {
        Workload::Roundtrip => 3_000,
        _ => 100_000,
    });
    if messages == 0 {
        return Err(BenchError::Invalid("--messages must be above 0".to_owned()));
    }
    let brokers = match &args.bootstrap {
        Some(bootstrap) => Brokers {
            cluster: None,
            bootstrap: bootstrap.clone(),
        },
        None => {
            let cluster = EmbeddedCluster::start(3).map_err(BenchError::Cluster)?;
            // Fresh groups with one member each: no need to wait 3 s for more members.
            cluster.set_initial_rebalance_delay(Duration::from_millis(100));
            let bootstrap = cluster.bootstrap_servers().to_owned();
            Brokers {
                cluster: Some(cluster),
                bootstrap,
            }
        }
    };
    let stem = format!("kafkad-bench-{}", std::process::id());
    let target = |role_topic: &'static str| Target {
        bootstrap: &brokers.bootstrap,
        mock: brokers.mock(),
        topic: role_topic,
        group: Some("kafkad-bench"),
    };
    let with_payload = payload_override(args);
    let producer_settings = role_settings(request, Role::Producer, &target("t"), &with_payload)?;
    let single_settings = role_settings(request, Role::Single, &target("t"), &[])?;
    let batch_settings = role_settings(request, Role::Batch, &target("t"), &[])?;
    let value_bytes = mean_value_bytes(&producer_settings.producer, messages);

    let mut comparisons = Vec::new();
    let replication_factor;
    let mut shown = vec![&producer_settings];
    match args.workload {
        Workload::Produce => {
            replication_factor = producer_settings.topic.replication_factor;
            comparisons.push(
                compare(
                    "",
                    "producer",
                    Phase::ProduceKafkad,
                    Phase::ProduceReference,
                    args,
                    config,
                    request,
                    &brokers,
                    messages,
                    Some(&stem),
                    "",
                )
                .await?,
            );
        }
        Workload::Consume => {
            shown.extend([&single_settings, &batch_settings]);
            let topic = format!("{stem}-consume");
            replication_factor = create_topic(&brokers, request, &topic, args.partitions).await?;
            eprintln!("bench: filling {topic} with {messages} messages ...");
            fill(request, &brokers, &topic, messages, &with_payload).await?;
            for (prefix, label, kafkad, reference) in [
                (
                    "single_",
                    "single consumer",
                    Phase::SingleKafkad,
                    Phase::SingleReference,
                ),
                (
                    "batch_",
                    "batch consumer",
                    Phase::BatchKafkad,
                    Phase::BatchReference,
                ),
            ] {
                comparisons.push(
                    compare(
                        prefix, label, kafkad, reference, args, config, request, &brokers,
                        messages, None, &topic,
                    )
                    .await?,
                );
            }
        }
        Workload::Roundtrip => {
            shown.push(&single_settings);
            replication_factor = producer_settings.topic.replication_factor;
            comparisons.push(
                compare(
                    "",
                    "roundtrip (single)",
                    Phase::RoundtripKafkad,
                    Phase::RoundtripReference,
                    args,
                    config,
                    request,
                    &brokers,
                    messages,
                    Some(&stem),
                    "",
                )
                .await?,
            );
        }
    }
    Ok(BenchReport {
        workload: args.workload,
        brokers: brokers.describe(),
        mock: brokers.mock(),
        messages,
        runs: args.runs,
        partitions: args.partitions,
        replication_factor,
        value_bytes,
        rate: (args.workload == Workload::Roundtrip).then_some(args.rate),
        settings: effective_settings(&shown),
        comparisons,
    })
}

/// Fills `topic` with `messages` messages through the producer role (not measured).
async fn fill(
    request: &LoadRequest,
    brokers: &Brokers,
    topic: &str,
    messages: u64,
    extra: &[(&'static str, String)],
) -> Result<(), BenchError> {
    let mut extra = extra.to_vec();
    extra.push(("producer.count", messages.to_string()));
    let settings = role_settings(
        request,
        Role::Producer,
        &Target {
            bootstrap: &brokers.bootstrap,
            mock: brokers.mock(),
            topic,
            group: None,
        },
        &extra,
    )?;
    let report = producer::run(
        Arc::new(settings),
        ProducerMetrics::default(),
        shutdown::Shutdown::never(),
    )
    .await
    .map_err(|source| BenchError::Role {
        phase: "fill",
        source,
    })?;
    if report.delivered != messages {
        return Err(BenchError::Invalid(format!(
            "filling {topic}: {} of {messages} delivered",
            report.delivered
        )));
    }
    Ok(())
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

    #[test]
    fn seed_payload_matches_the_producer_role_shape() {
        let settings = ProducerSettings {
            count: 0,
            rate: 0.0,
            producer_id: None,
            content: "Message {id} from {producer_id}".to_owned(),
            payload_bytes: 3,
        };
        let mut buf = Vec::new();
        seed_payload(&settings, 7, &mut buf);
        let message = KafkaMessage::decode(&buf).expect("valid");
        assert_eq!(message.content, "Message 7 from kafkad-benchxxx");
        assert_eq!(message.metadata_map()["source"], "kafkad");
    }
}
