//! `kafkad-bench` end to end on the embedded mock cluster, small and quick: the command runs
//! both sides, and its JSON line carries the figures and the ratios. No timing is asserted:
//! speed is shown by `make bench`, not judged by tests on a shared machine.

use std::process::Command;

fn bench(args: &[&str]) -> serde_json::Value {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kafkad-bench"));
    command.args(args).args(["--runs", "1", "--json"]);
    for (name, _) in std::env::vars() {
        if name.starts_with("KAFKAD_") {
            command.env_remove(name);
        }
    }
    let output = command.output().expect("kafkad-bench runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "kafkad-bench {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let last = stdout.lines().last().expect("a last line");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("last line is JSON ({e}): {last}"))
}

fn positive(report: &serde_json::Value, key: &str) -> f64 {
    let value = report[key]
        .as_f64()
        .unwrap_or_else(|| panic!("`{key}` is a number in {report}"));
    assert!(value > 0.0, "`{key}` = {value} in {report}");
    value
}

#[test]
fn bench_produce_reports_figures_and_ratios() {
    let report = bench(&["produce", "--messages", "20000"]);
    assert_eq!(report["workload"], "produce");
    for key in [
        "msgs_per_s",
        "mb_per_s",
        // cpu_s is rounded to milliseconds and 2000 messages may take less; per message it
        // is always above 0.
        "cpu_us_per_msg",
        "peak_rss_mb",
        "reference_msgs_per_s",
        "ratio_msgs_per_s",
        "ratio_peak_rss_mb",
    ] {
        positive(&report, key);
    }
    assert_eq!(report["settings"]["producer.acks"], "all");
    assert_eq!(report["settings"]["producer.enable.idempotence"], "true");
}

#[test]
fn bench_consume_measures_both_consumer_roles() {
    let report = bench(&["consume", "--messages", "2000"]);
    for key in [
        "single_msgs_per_s",
        "batch_msgs_per_s",
        "reference_single_msgs_per_s",
        "reference_batch_msgs_per_s",
        "ratio_single_msgs_per_s",
        "ratio_batch_msgs_per_s",
        "single_peak_rss_mb",
    ] {
        positive(&report, key);
    }
}

#[test]
fn bench_roundtrip_reports_latency_percentiles() {
    let report = bench(&["roundtrip", "--messages", "300", "--rate", "1000"]);
    for key in [
        "latency_p50_ms",
        "latency_p99_ms",
        "latency_max_ms",
        "reference_latency_p50_ms",
        "ratio_latency_p50_ms",
    ] {
        positive(&report, key);
    }
    assert!(report["latency_p50_ms"].as_f64() <= report["latency_max_ms"].as_f64());
}

/// Runs kafkad-bench expecting it to refuse its arguments; returns its stderr.
fn refused(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_kafkad-bench"))
        .args(args)
        .output()
        .expect("kafkad-bench runs");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(
        output.status.code(),
        Some(2),
        "kafkad-bench {args:?} should refuse its arguments:\n{stderr}"
    );
    stderr
}

#[test]
fn bench_refuses_missing_peer_programs_before_running_anything() {
    let stderr = refused(&[
        "produce",
        "--franz-go",
        "/nonexistent/kafkad-bench-franz-go",
    ]);
    assert!(stderr.contains("--franz-go /nonexistent"), "{stderr}");
    let empty = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("no-kafka-tools");
    std::fs::create_dir_all(&empty).expect("a scratch directory");
    let empty = empty.to_str().expect("a UTF-8 path");
    let stderr = refused(&["consume", "--kafka-tools", empty, "--java-probe", empty]);
    assert!(stderr.contains("no kafka-tools jar"), "{stderr}");
    // The tools without the probe that times them would have no comparable window.
    let stderr = refused(&["consume", "--kafka-tools", empty]);
    assert!(stderr.contains("--java-probe"), "{stderr}");
}

/// Writes an executable shell script.
fn script(path: &std::path::Path, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, format!("#!/bin/sh\n{body}")).expect("a script");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("executable");
}

/// Stand-ins for the peers, answering as the real ones do: the franz-go program's result line,
/// and a `java` that prints what Kafka's perf tools and the window probe print. Each logs its
/// arguments. Returns the options that name them, and `JAVA_HOME`.
fn fake_peers(dir: &std::path::Path) -> (Vec<String>, std::path::PathBuf) {
    let log = dir.join("args.log");
    let log = log.display();
    script(
        &dir.join("franz-go"),
        &format!(
            r#"echo "franz-go $*" >> {log}
for a in "$@"; do case "$a" in *payloads.txt) echo "payload lines $(wc -l < "$a")" >> {log};; esac; done
echo '{{"messages": 1000, "seconds": 0.5, "cpu_user_s": 0.2, "cpu_sys_s": 0.05, "peak_rss_mb": 20.0, "startup_s": 0.1}}'
"#
        ),
    );
    let java_home = dir.join("jdk");
    std::fs::create_dir_all(java_home.join("bin")).expect("a fake JDK");
    script(
        &java_home.join("bin/java"),
        &format!(
            r#"echo "java $*" >> {log}
case "$*" in
*ProducerPerformance*batch.size=1000000*)
  echo 'kafkad-bench-window {{"messages": 999, "seconds": 0.5, "cpu_user_s": 0.4, "cpu_sys_s": 0, "peak_rss_mb": 150.0, "startup_s": 1.0}}'
  echo '1000 records sent, 1500.0 records/sec (0.25 MB/sec), 1.00 ms avg latency, 2.00 ms max latency, 1 ms 50th, 2 ms 95th, 2 ms 99th, 2 ms 99.9th.' ;;
*ProducerPerformance*)
  echo 'kafkad-bench-window {{"messages": 999, "seconds": 1.0, "cpu_user_s": 0.5, "cpu_sys_s": 0, "peak_rss_mb": 150.0, "startup_s": 1.0}}'
  echo '1000 records sent, 800.0 records/sec (0.13 MB/sec), 1.00 ms avg latency, 2.00 ms max latency, 1 ms 50th, 2 ms 95th, 2 ms 99th, 2 ms 99.9th.' ;;
*ConsumerPerformance*)
  echo 'start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec'
  echo 'kafkad-bench-window {{"messages": 2000, "seconds": 0.004, "cpu_user_s": 0.01, "cpu_sys_s": 0, "peak_rss_mb": 140.0, "startup_s": 1.0}}'
  echo '2026-01-01 00:00:00:000, 2026-01-01 00:00:01:000, 0.3, 0.3, 2000, 2000.0, 500, 500, 0.6, 4000.0' ;;
esac
"#
        ),
    );
    let libs = dir.join("libs");
    std::fs::create_dir_all(&libs).expect("a jar directory");
    std::fs::write(libs.join("kafka-tools-4.1.1.jar"), b"").expect("a jar");
    let probe = dir.join("probe");
    std::fs::create_dir_all(probe.join("kafkad/bench")).expect("a probe directory");
    std::fs::write(probe.join("kafkad/bench/ProducerWindow.class"), b"").expect("a class");
    let options = [
        "--franz-go".to_owned(),
        dir.join("franz-go").display().to_string(),
        "--kafka-tools".to_owned(),
        libs.display().to_string(),
        "--java-probe".to_owned(),
        probe.display().to_string(),
    ];
    (options.to_vec(), java_home)
}

/// Runs kafkad-bench with the fake peers; returns its whole stdout and its JSON line.
fn bench_with_peers(args: &[&str], dir: &std::path::Path) -> (String, serde_json::Value) {
    let (options, java_home) = fake_peers(dir);
    let output = Command::new(env!("CARGO_BIN_EXE_kafkad-bench"))
        .args(args)
        .args(&options)
        .args(["--runs", "1", "--json"])
        .env("JAVA_HOME", java_home)
        .output()
        .expect("kafkad-bench runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "kafkad-bench {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let last = stdout.lines().last().expect("a last line");
    let json = serde_json::from_str(last).unwrap_or_else(|e| panic!("not JSON ({e}): {last}"));
    (stdout, json)
}

fn close(report: &serde_json::Value, key: &str, expected: f64) {
    let value = report[key]
        .as_f64()
        .unwrap_or_else(|| panic!("`{key}` is a number in {report}"));
    // The JSON rounds every figure to three decimals.
    assert!(
        (value - expected).abs() <= 0.001 + 1e-6 * expected,
        "`{key}` = {value}, expected {expected}"
    );
}

/// Runs scripts/bench_report.py on a directory of outputs; returns BENCHMARKS.md's text.
fn report_of(dir: &std::path::Path) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/bench_report.py");
    let output = Command::new("python3")
        .arg(script)
        .arg(dir)
        .output()
        .expect("python3 runs the report script");
    assert!(
        output.status.success(),
        "bench_report.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn peers_run_as_further_sides_and_the_report_tables_them() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("fake-peers");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    let (produce_out, produce) = bench_with_peers(&["produce", "--messages", "20000"], &dir);
    close(&produce, "franz_go_msgs_per_s", 2000.0);
    close(&produce, "franz_go_median_msgs_per_s", 2000.0);
    close(&produce, "franz_go_cpu_us_per_msg", 250.0);
    close(&produce, "java_msgs_per_s", 999.0);
    close(&produce, "java_tool_msgs_per_s", 800.0);
    close(&produce, "java_librdkafka_batch_msgs_per_s", 1998.0);
    close(&produce, "java_librdkafka_batch_tool_msgs_per_s", 1500.0);
    let kafkad = produce["median_msgs_per_s"]
        .as_f64()
        .expect("kafkad's median");
    close(
        &produce,
        "ratio_franz_go_median_msgs_per_s",
        kafkad / 2000.0,
    );
    let (consume_out, consume) = bench_with_peers(&["consume", "--messages", "2000"], &dir);
    for role in ["single", "batch"] {
        close(&consume, &format!("franz_go_{role}_msgs_per_s"), 2000.0);
        close(&consume, &format!("java_{role}_msgs_per_s"), 500_000.0);
        close(&consume, &format!("java_{role}_tool_msgs_per_s"), 4000.0);
        positive(&consume, &format!("ratio_java_{role}_median_msgs_per_s"));
    }
    // What each peer was given: the producer role's values, the roles' fetch and batch
    // settings, the seed's producer settings, and a consumer group per run.
    let log = std::fs::read_to_string(dir.join("args.log")).expect("the peers' log");
    assert!(log.contains("payload lines 1024"), "{log}");
    assert!(log.contains("franz-go single ") && log.contains("-max-partition-fetch-bytes "));
    assert!(log.contains("franz-go batch ") && log.contains("-min-size 10 -max-size 500"));
    assert!(log.contains("enable.idempotence=true max.in.flight.requests.per.connection=1"));
    assert!(log.contains("-single-java-perf-0") && log.contains("-batch-java-perf-0"));

    let outputs = dir.join("outputs");
    std::fs::create_dir_all(&outputs).expect("an output directory");
    std::fs::write(outputs.join("kafka-produce.txt"), &produce_out).expect("written");
    std::fs::write(outputs.join("kafka-consume.txt"), &consume_out).expect("written");
    std::fs::write(
        outputs.join("machine.txt"),
        "franz_go=franz-go v1.22.3, go1.26.8\njava_tools=Apache Kafka 4.1.1\n",
    )
    .expect("written");
    let text = report_of(&outputs);
    assert!(text.contains("### Against the clients users would pick instead"));
    assert!(
        text.contains("| producer | franz-go (pre-serialized values) | 2,000 | **"),
        "{text}"
    );
    assert!(text.contains("with librdkafka's `batch.size` (1,000,000) | 1,998 | **"));
    assert!(text.contains("| single | ConsumerPerformance (decodes nothing) | 500,000 | **"));
    assert!(
        text.contains("| batch | msgs/s ≥ 1.0× franz-go's |"),
        "{text}"
    );
    assert!(text.contains("| every role | kafkad's peak RSS ≤ 64 MiB |"));
    assert!(text.contains("msgs/s as the tool itself reports the best run"));

    // Without Go the report says so in the franz-go rows and keeps the others.
    let without_go = |out: &str| -> String {
        let mut lines: Vec<String> = out.lines().map(str::to_owned).collect();
        let mut json: serde_json::Value =
            serde_json::from_str(lines.last().expect("a JSON line")).expect("JSON");
        let object = json.as_object_mut().expect("an object");
        object
            .retain(|key, _| !key.starts_with("franz_go_") && !key.starts_with("ratio_franz_go_"));
        *lines.last_mut().expect("a JSON line") = json.to_string();
        lines.join("\n")
    };
    std::fs::write(outputs.join("kafka-produce.txt"), without_go(&produce_out)).expect("written");
    std::fs::write(outputs.join("kafka-consume.txt"), without_go(&consume_out)).expect("written");
    std::fs::write(
        outputs.join("machine.txt"),
        "franz_go=not measured: Go is not installed (no go on PATH)\n",
    )
    .expect("written");
    let text = report_of(&outputs);
    assert!(
        text.contains(
            "| producer | franz-go | not measured: Go is not installed (no go on PATH) |"
        ),
        "{text}"
    );
    assert!(text.contains("| single | ConsumerPerformance (decodes nothing) | 500,000 | **"));
}
