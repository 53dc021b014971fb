//! The peers: what users would run instead of kafkad, as further sides of a comparison, each
//! run a child process measured as kafkad's own runs are.
//!
//! * **franz-go** (`bench/go`): a Go program on franz-go with the seed's producer settings,
//!   sending the same pre-serialized values the raw reference sends; its consumers decode every
//!   record into the seed's `KafkaMessage` with encoding/json, with the role's fetch settings,
//!   the single one marking each record for the automatic commit, the batch one committing each
//!   batch of the role's sizes synchronously. It measures itself (`getrusage`, `VmHWM`).
//! * **Kafka's perf tools** (`ProducerPerformance`, `ConsumerPerformance`, from the jars the
//!   cluster script fetches), run as Kafka's own `kafka-*-perf-test.sh` run them. They cannot
//!   time the window kafkad-bench uses (their clocks start before the client connects), so a
//!   probe (`bench/java`) loaded into their clients through `interceptor.classes` marks it:
//!   every acknowledgement and every poll's records pass through it. Their own figure is kept
//!   beside the window's.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use kafkad::config::Settings;

use crate::measure::PhaseResult;
use crate::report::SideKind;

/// The seed's producer settings (its README), given to every peer producer. Kafka's Java
/// client and librdkafka spell these five alike.
pub const SEED_PRODUCER: [(&str, &str); 5] = [
    ("acks", "all"),
    ("enable.idempotence", "true"),
    ("max.in.flight.requests.per.connection", "1"),
    ("compression.type", "lz4"),
    ("linger.ms", "5"),
];

/// librdkafka's default `batch.size`, which kafkad's producer runs with: the Java client's
/// default is 16384, so `ProducerPerformance` runs once with each.
pub const LIBRDKAFKA_BATCH_SIZE: &str = "1000000";

/// How Kafka's `kafka-producer-perf-test.sh` and `kafka-consumer-perf-test.sh` start the JVM:
/// their heap, and `kafka-run-class.sh`'s performance options.
const JVM_OPTIONS: [&str; 8] = [
    "-Xmx512M",
    "-server",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:MaxInlineLevel=15",
    "-Djava.awt.headless=true",
];

/// The probe's client property: how many records its window waits for.
const PROBE_MESSAGES: &str = "kafkad.bench.messages";
/// What starts the probe's result line among the tool's own output.
const PROBE_PREFIX: &str = "kafkad-bench-window ";

/// One way of running one of Kafka's perf tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JavaTool {
    /// `ProducerPerformance` with the seed's settings, the rest at the Java client's defaults.
    Producer,
    /// The same with librdkafka's `batch.size`.
    ProducerLibrdkafkaBatch,
    /// `ConsumerPerformance` at its defaults (fetching as librdkafka's defaults do: 1 MiB per
    /// partition, `fetch.min.bytes` 1, 500 ms wait); it never looks inside a record.
    Consumer,
}

impl JavaTool {
    pub fn name(self) -> &'static str {
        match self {
            JavaTool::Producer | JavaTool::Consumer => "java-perf",
            JavaTool::ProducerLibrdkafkaBatch => "java-perf-librdkafka-batch",
        }
    }

    pub fn kind(self) -> SideKind {
        match self {
            JavaTool::Producer | JavaTool::Consumer => SideKind::Java,
            JavaTool::ProducerLibrdkafkaBatch => SideKind::JavaLibrdkafkaBatch,
        }
    }

    pub fn consumes(self) -> bool {
        self == JavaTool::Consumer
    }
}

/// Where the peers' programs are, as the command line named them.
#[derive(Debug, Clone)]
pub struct Programs {
    pub franz_go: Option<PathBuf>,
    /// Kafka's jars and the compiled probe.
    pub java: Option<(PathBuf, PathBuf)>,
}

impl Programs {
    /// Checks that what was named is there, so a wrong path fails before any run.
    pub fn check(
        franz_go: Option<&Path>,
        kafka_tools: Option<&Path>,
        java_probe: Option<&Path>,
    ) -> Result<Self, String> {
        if let Some(program) = franz_go {
            if !program.is_file() {
                return Err(format!(
                    "--franz-go {}: no such program (scripts/bench.sh builds it from bench/go)",
                    program.display()
                ));
            }
        }
        let java = match (kafka_tools, java_probe) {
            (Some(libs), Some(probe)) => {
                if !has_tools_jar(libs).unwrap_or(false) {
                    return Err(format!(
                        "--kafka-tools {}: no kafka-tools jar there (scripts/kafka-cluster.sh libs prints the directory)",
                        libs.display()
                    ));
                }
                if !probe.join("kafkad/bench/ProducerWindow.class").is_file() {
                    return Err(format!(
                        "--java-probe {}: no compiled probe there (scripts/bench.sh compiles bench/java into it)",
                        probe.display()
                    ));
                }
                Some((libs.to_owned(), probe.to_owned()))
            }
            _ => None,
        };
        Ok(Programs {
            franz_go: franz_go.map(Path::to_owned),
            java,
        })
    }

    pub fn any(&self) -> bool {
        self.franz_go.is_some() || self.java.is_some()
    }
}

fn has_tools_jar(libs: &Path) -> std::io::Result<bool> {
    Ok(std::fs::read_dir(libs)?.flatten().any(|entry| {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        name.starts_with("kafka-tools-") && name.ends_with(".jar")
    }))
}

/// Files the peers read, in a directory of this process's own, removed when it is dropped.
pub struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    pub fn create() -> std::io::Result<Self> {
        let dir = std::env::temp_dir().join(format!("kafkad-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(Scratch { dir })
    }

    pub fn write(&self, name: &str, contents: &[u8]) -> std::io::Result<PathBuf> {
        let path = self.dir.join(name);
        std::fs::write(&path, contents)?;
        Ok(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Record values one per line, as the franz-go producer and `ProducerPerformance
/// --payload-file` read them.
pub fn payload_lines(payloads: &[Vec<u8>]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for payload in payloads {
        if payload.contains(&b'\n') {
            return Err(
                "a payload holds a line break: it cannot be a line of the payload file".to_owned(),
            );
        }
        out.extend_from_slice(payload);
        out.push(b'\n');
    }
    Ok(out)
}

/// What a peer's run needs to know.
pub struct PeerRun<'a> {
    pub bootstrap: &'a str,
    pub topic: &'a str,
    pub group: Option<&'a str>,
    pub messages: u64,
    /// The values file (producers).
    pub payloads: &'a Path,
}

/// The franz-go program's command for `workload` (`produce`, `single`, `batch`); a consumer
/// gets the role's fetch settings and, for batch, its batch sizes.
pub fn franz_go_command(
    program: &Path,
    workload: &str,
    run: &PeerRun<'_>,
    role: &Settings,
) -> Command {
    let mut command = Command::new(program);
    command
        .arg(workload)
        .args(["-bootstrap", run.bootstrap])
        .args(["-topic", run.topic])
        .args(["-messages", &run.messages.to_string()]);
    if let Some(group) = run.group {
        command.args(["-group", group]);
    }
    if workload == "produce" {
        command.arg("-payloads").arg(run.payloads);
        return command;
    }
    // librdkafka's defaults where the role leaves a setting alone.
    let kafka =
        |name: &str, default: &str| role.resolved_kafka.get(name).unwrap_or(default).to_owned();
    command
        .args(["-fetch-min-bytes", &kafka("fetch.min.bytes", "1")])
        .args([
            "-fetch-max-wait",
            &format!("{}ms", kafka("fetch.wait.max.ms", "500")),
        ])
        .args([
            "-max-partition-fetch-bytes",
            &kafka("max.partition.fetch.bytes", "1048576"),
        ]);
    if workload == "batch" {
        command
            .args(["-min-size", &role.batch.min_size.to_string()])
            .args(["-max-size", &role.batch.max_size.to_string()])
            .args([
                "-max-wait",
                &format!("{}ms", role.batch.max_wait.as_millis()),
            ]);
    }
    command
}

/// The JVM command running `tool` as Kafka's scripts run it, with the probe in its client.
/// `consumer_config`: a properties file naming the probe for `ConsumerPerformance` (it takes
/// client properties from a file only).
pub fn java_command(
    tool: JavaTool,
    (libs, probe): (&Path, &Path),
    run: &PeerRun<'_>,
    consumer_config: &Path,
) -> Command {
    let java = std::env::var_os("JAVA_HOME")
        .map(|home| PathBuf::from(home).join("bin/java"))
        .unwrap_or_else(|| PathBuf::from("java"));
    let mut classpath = OsString::from(libs.join("*"));
    classpath.push(":");
    classpath.push(probe);
    let mut log_config = OsString::from("-Dlog4j2.configurationFile=");
    log_config.push(probe.join("log4j2.xml"));
    let mut command = Command::new(java);
    command
        .args(JVM_OPTIONS)
        .arg(log_config)
        .arg("-cp")
        .arg(classpath);
    let messages = run.messages.to_string();
    match tool {
        JavaTool::Producer | JavaTool::ProducerLibrdkafkaBatch => {
            command
                .arg("org.apache.kafka.tools.ProducerPerformance")
                .args(["--topic", run.topic])
                .args(["--num-records", &messages])
                .args(["--throughput", "-1"])
                .arg("--payload-file")
                .arg(run.payloads)
                .arg("--producer-props")
                .arg(format!("bootstrap.servers={}", run.bootstrap))
                .args(SEED_PRODUCER.map(|(key, value)| format!("{key}={value}")))
                .arg("interceptor.classes=kafkad.bench.ProducerWindow")
                .arg(format!("{PROBE_MESSAGES}={messages}"));
            if tool == JavaTool::ProducerLibrdkafkaBatch {
                command.arg(format!("batch.size={LIBRDKAFKA_BATCH_SIZE}"));
            }
        }
        JavaTool::Consumer => {
            command
                .arg("org.apache.kafka.tools.ConsumerPerformance")
                .args(["--bootstrap-server", run.bootstrap])
                .args(["--topic", run.topic])
                .args(["--messages", &messages])
                .arg("--consumer.config")
                .arg(consumer_config);
            if let Some(group) = run.group {
                command.args(["--group", group]);
            }
        }
    }
    command
}

/// `ConsumerPerformance`'s properties file: the probe, and the records its window waits for.
pub fn consumer_config(messages: u64) -> String {
    format!("interceptor.classes=kafkad.bench.ConsumerWindow\n{PROBE_MESSAGES}={messages}\n")
}

/// A perf tool's run as the probe timed it, with the throughput the tool printed itself.
pub fn java_result(tool: JavaTool, stdout: &str) -> Result<PhaseResult, String> {
    let line = stdout
        .lines()
        .find_map(|line| line.strip_prefix(PROBE_PREFIX))
        .ok_or("the window probe printed nothing (was it loaded?)")?;
    let value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("unreadable probe line `{line}`: {e}"))?;
    if let Some(error) = value.get("error") {
        return Err(format!("the window probe: {error}"));
    }
    let mut result: PhaseResult = serde_json::from_value(value)
        .map_err(|e| format!("unreadable probe line `{line}`: {e}"))?;
    result.tool_msgs_per_s = match tool {
        JavaTool::Producer | JavaTool::ProducerLibrdkafkaBatch => producer_own_rate(stdout),
        JavaTool::Consumer => consumer_own_rate(stdout),
    };
    Ok(result)
}

/// `ProducerPerformance`'s closing line: `N records sent, R records/sec (…), … 50th, …`.
fn producer_own_rate(stdout: &str) -> Option<f64> {
    let line = stdout
        .lines()
        .rev()
        .find(|line| line.contains(" records sent, ") && line.contains(" 50th"))?;
    let (_, rest) = line.split_once(" records sent, ")?;
    rest.split_once(" records/sec")?.0.trim().parse().ok()
}

/// `ConsumerPerformance`'s result: the line after its header, whose last field is
/// `fetch.nMsg.sec`, the records per second after its group join.
fn consumer_own_rate(stdout: &str) -> Option<f64> {
    let mut lines = stdout.lines();
    lines.find(|line| line.starts_with("start.time, end.time,"))?;
    let values = lines.find(|line| !line.starts_with(PROBE_PREFIX))?;
    values.rsplit(", ").next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRODUCER_OUT: &str = "Reading payloads from: /tmp/p.txt
Number of messages read: 1024
51276 records sent, 10251.1 records/sec (1.77 MB/sec), 1475.8 ms avg latency, 1946.0 ms max latency.
kafkad-bench-window {\"messages\": 99999, \"seconds\": 5.461324880, \"cpu_user_s\": 1.840000000, \"cpu_sys_s\": 0, \"peak_rss_mb\": 178.559, \"startup_s\": 1.088442772}
100000 records sent, 15549.7 records/sec (2.68 MB/sec), 1886.42 ms avg latency, 2588.00 ms max latency, 1900 ms 50th, 2530 ms 95th, 2573 ms 99th, 2587 ms 99.9th.
";

    const CONSUMER_OUT: &str = "start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec
kafkad-bench-window {\"messages\": 100000, \"seconds\": 0.820568988, \"cpu_user_s\": 0.470000000, \"cpu_sys_s\": 0, \"peak_rss_mb\": 153.348, \"startup_s\": 1.134518909}
2026-12-06 13:22:26:376, 2026-12-06 13:22:28:164, 17.7064, 9.9029, 100000, 55928.4116, 650, 1138, 15.5593, 87873.4622
";

    #[test]
    fn producer_tool_output_gives_the_window_and_the_tools_own_rate() {
        let result = java_result(JavaTool::Producer, PRODUCER_OUT).expect("readable");
        assert_eq!(result.messages, 99_999);
        assert!((result.seconds - 5.461_324_88).abs() < 1e-9);
        assert!((result.cpu_s() - 1.84).abs() < 1e-9);
        assert!((result.peak_rss_mb - 178.559).abs() < 1e-9);
        // The closing line, not the progress line before it.
        assert_eq!(result.tool_msgs_per_s, Some(15_549.7));
    }

    #[test]
    fn consumer_tool_output_gives_the_fetch_rate_after_the_join() {
        let result = java_result(JavaTool::Consumer, CONSUMER_OUT).expect("readable");
        assert_eq!(result.messages, 100_000);
        assert_eq!(result.tool_msgs_per_s, Some(87_873.462_2));
    }

    #[test]
    fn a_probe_error_or_no_probe_line_fails_the_run() {
        let failed =
            "kafkad-bench-window {\"error\": \"9 of 10 records in the window, 1 failed\"}\n";
        let error = java_result(JavaTool::Producer, failed).expect_err("an error");
        assert!(error.contains("9 of 10"), "{error}");
        let error = java_result(JavaTool::Consumer, "start.time, end.time, x\n").expect_err("none");
        assert!(error.contains("printed nothing"), "{error}");
    }

    #[test]
    fn payload_lines_refuse_a_line_break() {
        let lines = payload_lines(&[b"{\"a\":1}".to_vec(), b"{}".to_vec()]).expect("no breaks");
        assert_eq!(lines, b"{\"a\":1}\n{}\n");
        assert!(payload_lines(&[b"a\nb".to_vec()]).is_err());
    }
}
