//! `kafkad-bench produce|consume|roundtrip`: what kafkad costs on top of librdkafka; and
//! `kafkad-bench concurrency`: what `[consumer] concurrency` buys against a slow downstream.
//!
//! Each workload runs through kafkad's real role code (`producer::run`,
//! `roles::run_consumer`, with a sink that only counts) and through a *reference* loop
//! that calls rdkafka directly with pre-serialized payloads: no codec, no sink, no metrics,
//! no statistics parsing. A second, *codec* reference is the same loop plus kafkad's codec
//! (each message encoded with serde_json into a reused buffer, each consumed one decoded), so
//! the codec's cost and the cost of kafkad's own loop show apart. With `--seed-python`, the
//! seed's own system (Python on confluent-kafka, `python/seed_bench.py`, with the seed's
//! settings) runs as a further side on the same brokers. With `--franz-go` and
//! `--kafka-tools`/`--java-probe`, the clients users would pick instead run as further sides
//! too: a franz-go program (`go/`) and Kafka's own `ProducerPerformance` and
//! `ConsumerPerformance` (see `peers.rs`). kafkad and the references get the
//! identical librdkafka client configuration, built from
//! the same `Settings` (`client_config(Scope::…)`, `consumer_client_config`), so the role's real settings apply:
//! `acks=all`, idempotence, `max.in.flight=1`, lz4 and `linger.ms=5` for the producer;
//! `enable.auto.offset.store=false` for both consumers, `enable.auto.commit=false` for batch.
//!
//! The reference does the same Kafka work kafkad's guarantees need, and nothing else:
//! the single reference stores every offset after "processing" it (auto commit on, as the
//! role), the batch reference forms batches with the same `min_size`/`max_size` rule, stores
//! last+1 per partition after each and commits the stored offsets synchronously. So a ratio below 1 is kafkad's own
//! overhead (decoding, metrics, the sink call, owned copies), not a different protocol.
//!
//! # Measuring honestly on a shared 2-core machine
//!
//! * Every measured run is its own child process (`kafkad-bench phase X …`), so CPU time
//!   (`getrusage(RUSAGE_SELF)` deltas over the measured window) and peak RSS (`VmHWM` from
//!   `/proc/self/status`) belong to that run alone. The mock cluster (and the topic filling)
//!   live in the parent process, so their cost never lands on either side.
//! * The sides run in turn, in an order reversed on every other run (reference, codec,
//!   kafkad, Python, peers, then peers, Python, kafkad, codec, reference, …), and each side
//!   reports its best run (highest throughput; for the paced roundtrip, lowest p99 latency) and,
//!   in the JSON under `median_` keys, its median run by throughput (of an even number of runs,
//!   the slower middle one); peak RSS is the highest over that side's runs either way.
//! * The peers measure themselves over the same windows: franz-go with `getrusage` and
//!   `VmHWM` as the phases do; Kafka's Java tools through a probe in their clients, whose CPU
//!   is the JVM's process CPU (every thread: JIT compiler and garbage collector included; in
//!   steps of 10 ms, as the JVM reads it) and whose start-up, JVM included, is outside the
//!   window.
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

mod cli;
mod compare;
mod concurrency;
mod downstream;
mod kafkad_side;
mod measure;
mod peers;
mod phase;
mod reference;
mod report;
mod settings;

use std::process::ExitCode;

use clap::Parser;
use kafkad::cli::ConfigLayers;
use kafkad::config::ConfigError;
use kafkad::roles::RoleError;

use crate::cli::{Cli, Command, CompareArgs, Workload};

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot start the embedded cluster: {0}")]
    Cluster(rdkafka::error::KafkaError),
    #[error(transparent)]
    Topic(#[from] kafkad::topic::TopicError),
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
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

impl BenchError {
    /// 2 for a bad configuration or option, as kafkad; 1 for a failed run.
    fn exit_code(&self) -> ExitCode {
        match self {
            BenchError::Config(_) | BenchError::Invalid(_) => ExitCode::from(2),
            _ => ExitCode::from(1),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("kafkad-bench: cannot start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    let outcome = runtime.block_on(run(cli));
    // A consumer stuck closing against unreachable brokers must not hold the exit.
    runtime.shutdown_background();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("kafkad-bench: {error}");
            error.exit_code()
        }
    }
}

async fn run(cli: Cli) -> Result<(), BenchError> {
    let request = cli.config.request();
    let (workload, args) = match cli.command {
        Command::Phase(args) => {
            let result = phase::run(&args, &request).await?;
            println!(
                "{}",
                serde_json::to_string(&result).expect("a phase result serializes")
            );
            return Ok(());
        }
        Command::Produce(args) => (Workload::Produce, args),
        Command::Consume(args) => (Workload::Consume, args),
        Command::Roundtrip(args) => (Workload::Roundtrip, args),
        Command::Concurrency(args) => return concurrency::run(&args, &request).await,
    };
    compare(workload, &args, &cli.config, &request).await
}

/// Runs a workload's comparisons and prints the table (and, with `--json`, the JSON line).
async fn compare(
    workload: Workload,
    args: &CompareArgs,
    config: &ConfigLayers,
    request: &kafkad::config::LoadRequest,
) -> Result<(), BenchError> {
    kafkad::telemetry::logging::init_text("error");
    let report = compare::Bench::start(workload, args, config, request)?
        .run()
        .await?;
    print!("{}", report.table());
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&report.json()).expect("the report serializes")
        );
    }
    Ok(())
}
