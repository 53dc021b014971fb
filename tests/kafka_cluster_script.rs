//! scripts/kafka-cluster.sh on bad input: each failure is one line naming the cause (and the
//! broker's log file where there is one), a non-zero exit, and nothing left running.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka-cluster.sh")
}

/// Runs the script with `KAFKA_CLUSTER_DIR` set to a directory of this test's own and `env`.
fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(script())
        .args(args)
        .env("KAFKA_CLUSTER_DIR", dir)
        .envs(env.iter().copied())
        .output()
        .expect("scripts/kafka-cluster.sh runs")
}

/// The processes whose command line names `dir` (a node's server.properties lives there).
fn processes_of(dir: &Path) -> String {
    let output = Command::new("pgrep")
        .args(["-af", &dir.display().to_string()])
        .output()
        .expect("pgrep runs");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The one line the script printed on stderr for a failure.
fn failure_line(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("kafka-cluster: ") && !l.contains("fetching"))
        .collect();
    assert_eq!(lines.len(), 1, "one line naming the cause: {stderr}");
    lines[0].to_owned()
}

#[test]
fn a_missing_java_is_named() {
    let dir = tempfile::tempdir().expect("dir");
    let output = run(
        dir.path(),
        &["start", "--brokers", "1"],
        &[("JAVA_HOME", "/nonexistent-jdk")],
    );
    assert_eq!(output.status.code(), Some(1));
    let line = failure_line(&output);
    assert!(
        line.contains("/nonexistent-jdk/bin/java not found") && line.contains("JDK 17"),
        "{line}"
    );
    assert_eq!(processes_of(dir.path()), "");
}

#[test]
fn a_taken_port_is_named_and_nothing_is_left_running() {
    let dir = tempfile::tempdir().expect("dir");
    let taken = TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = taken.local_addr().expect("address").port().to_string();
    let output = run(
        dir.path(),
        &["start", "--brokers", "1", "--port", &port],
        &[],
    );
    assert_eq!(output.status.code(), Some(1));
    let line = failure_line(&output);
    assert!(
        line.contains(&format!("port {port} (node 0) is taken")),
        "{line}"
    );
    assert_eq!(processes_of(dir.path()), "");
}

mod real_broker {
    use super::*;

    /// A broker that is not up within its timeout: named with its log file, stopped.
    #[test]
    fn a_broker_that_does_not_come_up_in_time_is_named_with_its_log() {
        let dir = tempfile::tempdir().expect("dir");
        let output = run(
            dir.path(),
            &["start", "--brokers", "1"],
            &[("KAFKA_START_TIMEOUT", "1")],
        );
        assert_eq!(output.status.code(), Some(1));
        let line = failure_line(&output);
        let log = dir.path().join("node-0/server.log");
        assert!(
            line.contains("node 0 did not start within 1s")
                && line.contains(&log.display().to_string()),
            "{line}"
        );
        assert!(log.is_file(), "the named log exists");
        assert_eq!(processes_of(dir.path()), "");
    }

    /// `start` then `stop` leaves no Java process behind.
    #[test]
    fn start_then_stop_leaves_no_java_process() {
        let dir = tempfile::tempdir().expect("dir");
        let output = run(dir.path(), &["start", "--brokers", "1"], &[]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let bootstrap = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        assert!(bootstrap.starts_with("127.0.0.1:"), "{bootstrap}");
        assert!(processes_of(dir.path()).contains("kafka.Kafka"));
        let output = run(dir.path(), &["stop"], &[]);
        assert!(output.status.success());
        assert_eq!(processes_of(dir.path()), "");
    }
}
