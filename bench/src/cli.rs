//! The command line of `kafkad-bench`.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use kafkad::cli::ConfigLayers;
use kafkad::config::Role;
use serde::Serialize;

/// kafkad-bench: what kafkad's roles cost on top of librdkafka. Each workload runs through
/// kafkad's own role code and through a reference loop that calls rdkafka directly, each run
/// in a process of its own; the table compares the two.
#[derive(Debug, Parser)]
#[command(name = "kafkad-bench", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// The kafkad configuration both sides are built from: kafkad's own `--config` and `--set`
    /// (the `KAFKAD_*` environment applies too, as it does to kafkad). Not its `--role` and
    /// `--topic`: each run decides those itself.
    #[command(flatten)]
    pub config: ConfigLayers,
}

/// The configuration flags again, for a child process (a `phase` run).
pub fn child_args(config: &ConfigLayers) -> Vec<OsString> {
    let mut args = Vec::new();
    if let Some(file) = &config.config {
        args.push("--config".into());
        args.push(file.into());
    }
    for (key, value) in &config.overrides {
        args.push("--set".into());
        args.push(format!("{key}={value}").into());
    }
    args
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The producer role against a raw rdkafka producer, as fast as they go.
    Produce(CompareArgs),
    /// The single and batch consumer roles against raw rdkafka consumers, on a pre-filled
    /// topic.
    Consume(CompareArgs),
    /// End-to-end latency at a fixed `--rate`: producer role to single consumer role.
    Roundtrip(CompareArgs),
    /// What `[consumer] concurrency` buys against a slow downstream: the single role with
    /// `ordering = "key"` into an HTTP server answering after `--delay-ms`, at concurrency 1
    /// and at `--concurrency`, per-key order checked.
    Concurrency(ConcurrencyArgs),
    /// One measured run in this process, its result printed as one JSON line. The three
    /// comparisons run each of their runs this way, as a child process.
    Phase(PhaseArgs),
}

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    Produce,
    Consume,
    Roundtrip,
}

/// The options of `produce`, `consume` and `roundtrip`.
#[derive(Debug, Clone, Args)]
pub struct CompareArgs {
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
    /// A Python interpreter with confluent-kafka: also runs the seed's Python system
    /// (`--seed-script`) as a third side, on the same brokers, and reports kafkad's ratio to it.
    #[arg(long, value_name = "PYTHON")]
    pub seed_python: Option<PathBuf>,
    /// The seed's system in Python, as `--seed-python` runs it.
    #[arg(long, value_name = "FILE", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/python/seed_bench.py"))]
    pub seed_script: PathBuf,
    /// Messages the seed's batch consumer handles per run (of the topic's `--messages`): it
    /// commits synchronously every 10 messages, as the seed does, and so runs at about a
    /// thousandth of the other sides' rate.
    #[arg(long, value_name = "N", default_value_t = 20_000)]
    pub seed_batch_messages: u64,
    /// The franz-go peer (`bench/go`, built by scripts/bench.sh with the Go toolchain): also
    /// runs a franz-go producer, and consumers decoding with encoding/json, as a further side.
    #[arg(long, value_name = "PROGRAM")]
    pub franz_go: Option<PathBuf>,
    /// Kafka's jars (`scripts/kafka-cluster.sh libs`): also runs Kafka's own perf tools,
    /// `ProducerPerformance` (at its defaults, and with librdkafka's `batch.size`) and
    /// `ConsumerPerformance`, as further sides. Needs `--java-probe`.
    #[arg(long, value_name = "DIR", requires = "java_probe")]
    pub kafka_tools: Option<PathBuf>,
    /// The window probe that times Kafka's perf tools from inside their clients (`bench/java`,
    /// compiled by scripts/bench.sh).
    #[arg(long, value_name = "DIR", requires = "kafka_tools")]
    pub java_probe: Option<PathBuf>,
}

/// The options of `concurrency`.
#[derive(Debug, Clone, Args)]
pub struct ConcurrencyArgs {
    /// Records in the topic, read whole by each run.
    #[arg(long, default_value_t = 1000)]
    pub messages: u64,
    /// Distinct record keys.
    #[arg(long, default_value_t = 1000)]
    pub keys: u64,
    /// How long the downstream takes to answer each request.
    #[arg(long, default_value_t = 20)]
    pub delay_ms: u64,
    /// The concurrency measured against concurrency 1.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Give up on a run after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout_s: u64,
    /// Make the last line of stdout one JSON object with every figure.
    #[arg(long)]
    pub json: bool,
}

/// The options of `phase`: everything one run needs, decided by the comparison that starts it.
#[derive(Debug, Clone, Args)]
pub struct PhaseArgs {
    /// Which side of which workload.
    #[arg(value_enum)]
    pub phase: Phase,
    /// The brokers.
    #[arg(long, value_name = "HOST:PORT,...")]
    pub bootstrap: String,
    /// The brokers are the embedded mock cluster (its short group timings apply).
    #[arg(long)]
    pub mock: bool,
    /// The topic to produce to or consume from.
    #[arg(long, value_name = "NAME")]
    pub topic: String,
    /// The consumer group (consumer phases).
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,
    /// Messages to produce or to consume.
    #[arg(long)]
    pub messages: u64,
    /// As for the comparisons.
    #[arg(long, value_name = "BYTES")]
    pub payload_bytes: Option<usize>,
    /// Messages per second of the roundtrip producer.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
}

/// One measured run: a workload's kafkad or reference side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum)]
pub enum Phase {
    ProduceKafkad,
    ProduceReference,
    ProduceReferenceCodec,
    SingleKafkad,
    SingleReference,
    SingleReferenceCodec,
    BatchKafkad,
    BatchReference,
    BatchReferenceCodec,
    RoundtripKafkad,
    RoundtripReference,
}

impl Phase {
    /// The name on the command line and in progress lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::ProduceKafkad => "produce-kafkad",
            Phase::ProduceReference => "produce-reference",
            Phase::ProduceReferenceCodec => "produce-reference-codec",
            Phase::SingleKafkad => "single-kafkad",
            Phase::SingleReference => "single-reference",
            Phase::SingleReferenceCodec => "single-reference-codec",
            Phase::BatchKafkad => "batch-kafkad",
            Phase::BatchReference => "batch-reference",
            Phase::BatchReferenceCodec => "batch-reference-codec",
            Phase::RoundtripKafkad => "roundtrip-kafkad",
            Phase::RoundtripReference => "roundtrip-reference",
        }
    }

    /// The role whose settings the phase runs with.
    pub fn role(self) -> Role {
        match self {
            Phase::ProduceKafkad | Phase::ProduceReference | Phase::ProduceReferenceCodec => {
                Role::Producer
            }
            Phase::SingleKafkad
            | Phase::SingleReference
            | Phase::SingleReferenceCodec
            | Phase::RoundtripKafkad
            | Phase::RoundtripReference => Role::Single,
            Phase::BatchKafkad | Phase::BatchReference | Phase::BatchReferenceCodec => Role::Batch,
        }
    }

    /// Whether the phase paces its producer at `--rate`.
    pub fn paced(self) -> bool {
        matches!(self, Phase::RoundtripKafkad | Phase::RoundtripReference)
    }
}
