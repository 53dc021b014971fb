//! `kafkad-bench produce|consume|roundtrip`: the comparisons. Each run is a `phase` child
//! process; the brokers (the mock cluster, when it is used) and the topics live here.

use std::process::Stdio;
use std::time::Duration;

use kafkad::cli::ConfigLayers;
use kafkad::cluster::EmbeddedCluster;
use kafkad::config::{LoadRequest, Role, Settings};
use kafkad::roles::producer;
use kafkad::shutdown::Shutdown;
use kafkad::telemetry::metrics::ProducerMetrics;

use crate::cli::{self, CompareArgs, Phase, Workload};
use crate::measure::PhaseResult;
use crate::peers::{self, JavaTool, PeerRun, Programs, Scratch};
use crate::reference::payload_ring;
use crate::report::{effective_settings, BenchReport, Comparison, Side, SideKind};
use crate::settings::{mean_value_bytes, payload_override, role_settings, Target};
use crate::BenchError;

/// A role measured on every side.
struct Pair {
    /// Key prefix in the JSON (`""`, `single_`, `batch_`).
    prefix: &'static str,
    label: &'static str,
    kafkad: Phase,
    reference: Phase,
    /// The codec-inclusive reference, where there is one.
    codec: Option<Phase>,
    /// The workload's name to the seed's Python loops (`seed_bench.py WORKLOAD`), to the
    /// franz-go peer, and in the names of the peers' runs.
    workload: &'static str,
    /// Whether the franz-go peer has a loop for it.
    franz_go: bool,
    /// The ways Kafka's perf tools run beside this workload.
    java: &'static [JavaTool],
}

const PRODUCER: Pair = Pair {
    prefix: "",
    label: "producer",
    kafkad: Phase::ProduceKafkad,
    reference: Phase::ProduceReference,
    codec: Some(Phase::ProduceReferenceCodec),
    workload: "produce",
    franz_go: true,
    java: &[JavaTool::Producer, JavaTool::ProducerLibrdkafkaBatch],
};
const SINGLE: Pair = Pair {
    prefix: "single_",
    label: "single consumer",
    kafkad: Phase::SingleKafkad,
    reference: Phase::SingleReference,
    codec: Some(Phase::SingleReferenceCodec),
    workload: "single",
    franz_go: true,
    java: &[JavaTool::Consumer],
};
const BATCH: Pair = Pair {
    prefix: "batch_",
    label: "batch consumer",
    kafkad: Phase::BatchKafkad,
    reference: Phase::BatchReference,
    codec: Some(Phase::BatchReferenceCodec),
    workload: "batch",
    franz_go: true,
    java: &[JavaTool::Consumer],
};
const ROUNDTRIP: Pair = Pair {
    prefix: "",
    label: "roundtrip (single)",
    kafkad: Phase::RoundtripKafkad,
    reference: Phase::RoundtripReference,
    codec: None,
    workload: "roundtrip",
    franz_go: false,
    java: &[],
};

impl Pair {
    /// Whether its producer runs at a fixed `--rate`.
    fn paced(&self) -> bool {
        self.kafkad.paced()
    }
}

/// What runs one side's run: a `kafkad-bench phase` child, the seed's Python loop, the
/// franz-go peer's loop, or one of Kafka's perf tools.
#[derive(Debug, Clone, Copy)]
enum Runner {
    Phase(Phase),
    Python(&'static str),
    FranzGo(&'static str),
    /// A perf tool, and the workload it runs beside (`ConsumerPerformance` runs beside both
    /// consumers, each time under a group of its own).
    Java(JavaTool, &'static str),
}

impl Runner {
    fn name(self) -> String {
        match self {
            Runner::Phase(phase) => phase.as_str().to_owned(),
            Runner::Python(workload) => format!("{workload}-python"),
            Runner::FranzGo(workload) => format!("{workload}-franz-go"),
            Runner::Java(tool, workload) => format!("{workload}-{}", tool.name()),
        }
    }

    fn consumes(self) -> bool {
        match self {
            Runner::Phase(phase) => phase.role() != Role::Producer,
            Runner::Python(workload) | Runner::FranzGo(workload) => workload != "produce",
            Runner::Java(tool, _) => tool.consumes(),
        }
    }
}

/// The files the peers read: the producer role's values, one per line, and the properties
/// that load the window probe into `ConsumerPerformance`'s client.
struct PeerFiles {
    payloads: std::path::PathBuf,
    consumer_config: std::path::PathBuf,
    /// Owns the directory they are in (removed with it).
    _scratch: Scratch,
}

/// Which topic a run reads or writes.
enum Topics<'a> {
    /// A new topic per run, named after this stem (producing runs).
    Fresh(&'a str),
    /// One pre-filled topic for every run (consuming runs).
    Shared(&'a str),
}

/// Where the runs go: the mock cluster this process holds, or the user's brokers.
struct Brokers {
    cluster: Option<EmbeddedCluster>,
    bootstrap: String,
}

impl Brokers {
    fn start(bootstrap: Option<&str>) -> Result<Self, BenchError> {
        if let Some(bootstrap) = bootstrap {
            return Ok(Brokers {
                cluster: None,
                bootstrap: bootstrap.to_owned(),
            });
        }
        let cluster = EmbeddedCluster::start(3).map_err(BenchError::Cluster)?;
        // Fresh groups with one member each: no need to wait 3 s for more members.
        cluster.set_initial_rebalance_delay(Duration::from_millis(100));
        let bootstrap = cluster.bootstrap_servers().to_owned();
        Ok(Brokers {
            cluster: Some(cluster),
            bootstrap,
        })
    }

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

/// One comparison run: its options, its brokers, and the settings both sides share.
pub struct Bench<'a> {
    workload: Workload,
    args: &'a CompareArgs,
    config: &'a ConfigLayers,
    request: &'a LoadRequest,
    brokers: Brokers,
    messages: u64,
    /// Names of this run's topics and groups start with it.
    stem: String,
    programs: Programs,
    peer_files: Option<PeerFiles>,
}

impl<'a> Bench<'a> {
    /// Checks the options and starts the brokers (the mock cluster, unless `--bootstrap`).
    pub fn start(
        workload: Workload,
        args: &'a CompareArgs,
        config: &'a ConfigLayers,
        request: &'a LoadRequest,
    ) -> Result<Self, BenchError> {
        if args.rate.is_nan() || args.rate <= 0.0 {
            return Err(BenchError::Invalid("--rate must be above 0".to_owned()));
        }
        let messages = args.messages.unwrap_or(match workload {
            Workload::Roundtrip => 3_000,
            Workload::Produce | Workload::Consume => 100_000,
        });
        if messages == 0 {
            return Err(BenchError::Invalid("--messages must be above 0".to_owned()));
        }
        let programs = Programs::check(
            args.franz_go.as_deref(),
            args.kafka_tools.as_deref(),
            args.java_probe.as_deref(),
        )
        .map_err(BenchError::Invalid)?;
        let mut bench = Bench {
            workload,
            args,
            config,
            request,
            brokers: Brokers::start(args.bootstrap.as_deref())?,
            messages,
            stem: format!("kafkad-bench-{}", std::process::id()),
            programs,
            peer_files: None,
        };
        if bench.programs.any() {
            bench.peer_files = Some(bench.peer_files()?);
        }
        Ok(bench)
    }

    /// Writes the peers' files: the values the producer role sends (the raw reference's, from
    /// the same message factory), and `ConsumerPerformance`'s properties.
    fn peer_files(&self) -> Result<PeerFiles, BenchError> {
        let io = |what: &str| {
            let what = what.to_owned();
            move |source| BenchError::Io { what, source }
        };
        let scratch = Scratch::create().map_err(io("the peers' scratch directory"))?;
        let producer = self.settings(Role::Producer, &payload_override(self.args.payload_bytes))?;
        let lines = peers::payload_lines(&payload_ring(&producer.producer, self.messages))
            .map_err(BenchError::Invalid)?;
        let payloads = scratch
            .write("payloads.txt", &lines)
            .map_err(io("the peers' payload file"))?;
        let consumer_config = scratch
            .write(
                "consumer-window.properties",
                peers::consumer_config(self.messages).as_bytes(),
            )
            .map_err(io("ConsumerPerformance's properties"))?;
        Ok(PeerFiles {
            payloads,
            consumer_config,
            _scratch: scratch,
        })
    }

    /// Runs the workload's comparisons.
    pub async fn run(&self) -> Result<BenchReport, BenchError> {
        let with_payload = payload_override(self.args.payload_bytes);
        let producer = self.settings(Role::Producer, &with_payload)?;
        let single = self.settings(Role::Single, &[])?;
        let batch = self.settings(Role::Batch, &[])?;
        let (replication_factor, comparisons, shown) = match self.workload {
            Workload::Produce => (
                producer.topic.replication_factor,
                vec![self.compare(&PRODUCER, Topics::Fresh(&self.stem)).await?],
                vec![&producer],
            ),
            Workload::Consume => {
                let topic = format!("{}-consume", self.stem);
                let replication_factor = self.create_topic(&topic).await?;
                eprintln!("bench: filling {topic} with {} messages ...", self.messages);
                self.fill(&topic, &with_payload).await?;
                let mut comparisons = Vec::new();
                for pair in [&SINGLE, &BATCH] {
                    comparisons.push(self.compare(pair, Topics::Shared(&topic)).await?);
                }
                (
                    replication_factor,
                    comparisons,
                    vec![&producer, &single, &batch],
                )
            }
            Workload::Roundtrip => (
                producer.topic.replication_factor,
                vec![self.compare(&ROUNDTRIP, Topics::Fresh(&self.stem)).await?],
                vec![&producer, &single],
            ),
        };
        Ok(BenchReport {
            workload: self.workload,
            brokers: self.brokers.describe(),
            mock: self.brokers.mock(),
            messages: self.messages,
            runs: self.args.runs,
            partitions: self.args.partitions,
            replication_factor,
            value_bytes: mean_value_bytes(&producer.producer, self.messages),
            rate: (self.workload == Workload::Roundtrip).then_some(self.args.rate),
            settings: effective_settings(&shown),
            comparisons,
        })
    }

    fn target<'t>(&'t self, topic: &'t str, group: Option<&'t str>) -> Target<'t> {
        Target {
            bootstrap: &self.brokers.bootstrap,
            mock: self.brokers.mock(),
            topic,
            group,
        }
    }

    /// A role's settings as the runs get them, for the report.
    fn settings(&self, role: Role, extra: &[(&str, String)]) -> Result<Settings, BenchError> {
        let target = self.target("t", Some("kafkad-bench"));
        Ok(role_settings(self.request, role, &target, extra)?)
    }

    /// Runs every side of `pair` `--runs` times each, in an order reversed on every other run
    /// (A B C, C B A, ...), and keeps each side's best run (peak RSS: the highest of the side's
    /// runs).
    async fn compare(&self, pair: &Pair, topics: Topics<'_>) -> Result<Comparison, BenchError> {
        let mut sides = vec![(SideKind::Reference, Runner::Phase(pair.reference))];
        if let Some(codec) = pair.codec {
            sides.push((SideKind::Codec, Runner::Phase(codec)));
        }
        sides.push((SideKind::Kafkad, Runner::Phase(pair.kafkad)));
        if self.args.seed_python.is_some() {
            sides.push((SideKind::Python, Runner::Python(pair.workload)));
        }
        if pair.franz_go && self.programs.franz_go.is_some() {
            sides.push((SideKind::FranzGo, Runner::FranzGo(pair.workload)));
        }
        if self.programs.java.is_some() {
            sides.extend(
                pair.java
                    .iter()
                    .map(|&tool| (tool.kind(), Runner::Java(tool, pair.workload))),
            );
        }
        let mut results: Vec<Vec<PhaseResult>> = vec![Vec::new(); sides.len()];
        for run in 0..self.args.runs {
            let mut order: Vec<usize> = (0..sides.len()).collect();
            if run % 2 == 1 {
                order.reverse();
            }
            for i in order {
                results[i].push(self.measure(sides[i].1, run, &topics).await?);
            }
        }
        Ok(Comparison {
            prefix: pair.prefix,
            label: pair.label,
            sides: sides
                .iter()
                .zip(&results)
                .map(|((kind, _), runs)| Side {
                    kind: *kind,
                    best: best(runs, pair.paced()),
                    median: median(runs),
                    runs: runs.iter().map(PhaseResult::msgs_per_s).collect(),
                })
                .collect(),
        })
    }

    /// One run of `phase`: its topic (created for it, or the shared one), a fresh group, and
    /// the child process that measures it.
    async fn measure(
        &self,
        runner: Runner,
        run: u32,
        topics: &Topics<'_>,
    ) -> Result<PhaseResult, BenchError> {
        let name = runner.name();
        let topic = match topics {
            Topics::Fresh(stem) => {
                let topic = format!("{stem}-{name}-{run}");
                self.create_topic(&topic).await?;
                topic
            }
            Topics::Shared(topic) => (*topic).to_owned(),
        };
        let group = format!("{}-{name}-{run}", self.stem);
        let group = runner.consumes().then_some(group.as_str());
        eprintln!("bench: {name} run {}/{} ...", run + 1, self.args.runs);
        match runner {
            Runner::Phase(phase) => self.spawn_phase(phase, &topic, group).await,
            Runner::Python(workload) => self.spawn_python(workload, &topic, group).await,
            Runner::FranzGo(workload) => self.spawn_franz_go(workload, &topic, group).await,
            Runner::Java(tool, _) => self.spawn_java(tool, &topic, group).await,
        }
    }

    /// What a peer's run gets: the brokers, its topic and group, and the peers' files.
    fn peer_run<'r>(
        &'r self,
        topic: &'r str,
        group: Option<&'r str>,
    ) -> Result<(PeerRun<'r>, &'r PeerFiles), BenchError> {
        let files = self
            .peer_files
            .as_ref()
            .ok_or_else(|| BenchError::Invalid("no peer files were written".to_owned()))?;
        let run = PeerRun {
            bootstrap: &self.brokers.bootstrap,
            topic,
            group,
            messages: self.messages,
            payloads: &files.payloads,
        };
        Ok((run, files))
    }

    /// Runs the franz-go peer's loop for `workload` as a child process and reads its result.
    async fn spawn_franz_go(
        &self,
        workload: &'static str,
        topic: &str,
        group: Option<&str>,
    ) -> Result<PhaseResult, BenchError> {
        let program = self
            .programs
            .franz_go
            .as_ref()
            .ok_or_else(|| BenchError::Invalid("no --franz-go".to_owned()))?;
        let role = match workload {
            "single" => Role::Single,
            "batch" => Role::Batch,
            _ => Role::Producer,
        };
        let settings = self.settings(role, &[])?;
        let (run, _) = self.peer_run(topic, group)?;
        let command = peers::franz_go_command(program, workload, &run, &settings);
        run_child("franz-go", command).await
    }

    /// Runs one of Kafka's perf tools as a child process and reads what its probe measured.
    async fn spawn_java(
        &self,
        tool: JavaTool,
        topic: &str,
        group: Option<&str>,
    ) -> Result<PhaseResult, BenchError> {
        let (libs, probe) = self
            .programs
            .java
            .as_ref()
            .ok_or_else(|| BenchError::Invalid("no --kafka-tools".to_owned()))?;
        let (run, files) = self.peer_run(topic, group)?;
        let command = peers::java_command(tool, (libs, probe), &run, &files.consumer_config);
        let stdout = child_stdout(tool.name(), command).await?;
        peers::java_result(tool, &stdout).map_err(|detail| BenchError::Child {
            phase: tool.name(),
            detail,
        })
    }

    /// Runs the seed's Python loop for `workload` as a child process and reads its result.
    async fn spawn_python(
        &self,
        workload: &'static str,
        topic: &str,
        group: Option<&str>,
    ) -> Result<PhaseResult, BenchError> {
        let python = self
            .args
            .seed_python
            .as_ref()
            .ok_or_else(|| BenchError::Invalid("no --seed-python".to_owned()))?;
        let messages = match workload {
            "batch" => self.messages.min(self.args.seed_batch_messages.max(1)),
            _ => self.messages,
        };
        let mut command = std::process::Command::new(python);
        command
            .arg(&self.args.seed_script)
            .arg(workload)
            .args(["--bootstrap", &self.brokers.bootstrap])
            .args(["--topic", topic])
            .args(["--messages", &messages.to_string()])
            .args(["--rate", &self.args.rate.to_string()]);
        if let Some(group) = group {
            command.args(["--group", group]);
        }
        run_child("seed-python", command).await
    }

    /// Runs one phase as a child process and reads its result.
    async fn spawn_phase(
        &self,
        phase: Phase,
        topic: &str,
        group: Option<&str>,
    ) -> Result<PhaseResult, BenchError> {
        let exe = std::env::current_exe().map_err(|e| BenchError::Child {
            phase: phase.as_str(),
            detail: format!("cannot find the kafkad-bench executable: {e}"),
        })?;
        let mut command = std::process::Command::new(exe);
        command
            .args(["phase", phase.as_str()])
            .args(["--bootstrap", &self.brokers.bootstrap])
            .args(["--topic", topic])
            .args(["--messages", &self.messages.to_string()])
            .args(["--rate", &self.args.rate.to_string()])
            .args(cli::child_args(self.config));
        if let Some(bytes) = self.args.payload_bytes {
            command.args(["--payload-bytes", &bytes.to_string()]);
        }
        if let Some(group) = group {
            command.args(["--group", group]);
        }
        if self.brokers.mock() {
            command.arg("--mock");
        }
        run_child(phase.as_str(), command).await
    }

    /// Creates a bench topic: on the mock through its API, elsewhere as `kafkad topic ensure`
    /// does. Returns its replication factor.
    async fn create_topic(&self, name: &str) -> Result<i32, BenchError> {
        let partitions = self.args.partitions;
        let settings = role_settings(
            self.request,
            Role::Producer,
            &self.target(name, None),
            &[("topic.partitions", partitions.to_string())],
        )?;
        let replication = settings.topic.replication_factor;
        match &self.brokers.cluster {
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
                kafkad::topic::ensure(&settings, Duration::from_secs(30)).await?;
            }
        }
        Ok(replication)
    }

    /// Fills `topic` with `--messages` messages through the producer role (not measured).
    async fn fill(&self, topic: &str, extra: &[(&'static str, String)]) -> Result<(), BenchError> {
        let mut extra = extra.to_vec();
        extra.push(("producer.count", self.messages.to_string()));
        let settings = role_settings(
            self.request,
            Role::Producer,
            &self.target(topic, None),
            &extra,
        )?;
        let report = producer::run(
            producer::ProducerConfig::new(&settings),
            ProducerMetrics::default(),
            Shutdown::never(),
        )
        .await
        .map_err(|source| BenchError::Role {
            phase: "fill",
            source,
        })?;
        if report.delivered != self.messages {
            return Err(BenchError::Invalid(format!(
                "filling {topic}: {} of {} delivered",
                report.delivered, self.messages
            )));
        }
        Ok(())
    }
}

/// Runs one measured child and reads its result, the last line of its stdout.
async fn run_child(
    phase: &'static str,
    command: std::process::Command,
) -> Result<PhaseResult, BenchError> {
    let stdout = child_stdout(phase, command).await?;
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).map_err(|e| BenchError::Child {
        phase,
        detail: format!("unreadable result `{last}`: {e}"),
    })
}

/// Runs one measured child to its end and returns its stdout; its stderr goes to ours.
async fn child_stdout(
    phase: &'static str,
    mut command: std::process::Command,
) -> Result<String, BenchError> {
    let child = |detail: String| BenchError::Child { phase, detail };
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    // The child measures itself; waiting for it needs no async worker.
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .map_err(|e| BenchError::Reference(e.to_string()))?
        .map_err(|e| child(format!("cannot run: {e}")))?;
    if !output.status.success() {
        return Err(child(format!(
            "exited with {} (its error is above)",
            output.status
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// A side's best run, with the highest peak RSS of all its runs. Best is the highest
/// throughput; for a paced workload, whose throughput is the pace, the lowest p99 latency.
fn best(runs: &[PhaseResult], paced: bool) -> PhaseResult {
    let p99 = |run: &PhaseResult| {
        let mut sorted = run.latencies_us.clone();
        sorted.sort_unstable();
        crate::report::percentile(&sorted, 0.99)
    };
    let chosen = if paced {
        runs.iter().min_by(|a, b| p99(a).total_cmp(&p99(b)))
    } else {
        runs.iter()
            .max_by(|a, b| a.msgs_per_s().total_cmp(&b.msgs_per_s()))
    };
    with_peak_rss(chosen, runs)
}

/// A side's median run by throughput (of an even number of runs, the slower of the two in
/// the middle), with the highest peak RSS of all its runs.
fn median(runs: &[PhaseResult]) -> PhaseResult {
    let mut sorted: Vec<&PhaseResult> = runs.iter().collect();
    sorted.sort_by(|a, b| a.msgs_per_s().total_cmp(&b.msgs_per_s()));
    with_peak_rss(
        sorted.get(sorted.len().saturating_sub(1) / 2).copied(),
        runs,
    )
}

/// `chosen`, carrying the highest peak RSS of all `runs`: a side's memory is its worst run's.
fn with_peak_rss(chosen: Option<&PhaseResult>, runs: &[PhaseResult]) -> PhaseResult {
    let mut result = chosen.cloned().unwrap_or_default();
    result.peak_rss_mb = runs.iter().map(|r| r.peak_rss_mb).fold(0.0, f64::max);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(msgs_per_s: f64, peak_rss_mb: f64) -> PhaseResult {
        PhaseResult {
            messages: msgs_per_s as u64,
            seconds: 1.0,
            peak_rss_mb,
            ..PhaseResult::default()
        }
    }

    #[test]
    fn the_median_run_is_the_middle_one_by_throughput_with_the_highest_peak_rss() {
        let runs = [run(300.0, 10.0), run(100.0, 30.0), run(200.0, 20.0)];
        let middle = median(&runs);
        assert_eq!(middle.messages, 200);
        assert_eq!(middle.peak_rss_mb, 30.0);
        assert_eq!(best(&runs, false).messages, 300);
        // Of two, the slower: a median never flatters a side.
        assert_eq!(median(&runs[..2]).messages, 100);
        assert_eq!(median(&[]).messages, 0);
    }
}
