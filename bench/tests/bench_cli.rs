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
