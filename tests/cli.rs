//! The `kafkad` binary as an operator runs it: exit codes, one-line errors, layering.

mod support;

use std::process::Output;

use support::process::run_kafkad as kafkad;

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_missing_config_file_exits_2_with_one_line_naming_it() {
    let output = kafkad(
        &["--role", "single", "--config", "does-not-exist.toml"],
        &[],
    );
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("does-not-exist.toml"), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
}

#[test]
fn bad_configuration_exits_2_naming_key_and_source() {
    for (args, env, needles) in [
        (
            vec!["config", "check", "--role", "batch"],
            vec![("KAFKAD_BATCH__MIN_SIZE", "many")],
            vec!["batch.min_size", "KAFKAD_BATCH__MIN_SIZE"],
        ),
        (
            vec!["config", "check", "--role", "batch"],
            vec![("KAFKAD_BATCH__MAX_WAIT", "soon")],
            vec!["batch.max_wait", "KAFKAD_BATCH__MAX_WAIT"],
        ),
        (
            vec![
                "config",
                "check",
                "--role",
                "single",
                "--set",
                "kafka.fetch.max.wait.ms=9",
            ],
            vec![],
            vec!["fetch.max.wait.ms", "fetch.wait.max.ms"],
        ),
        (
            vec!["config", "check", "--config", "config/single.toml"],
            vec![("KAFKAD_COLOUR", "blue")],
            vec!["colour", "KAFKAD_COLOUR"],
        ),
        (
            vec!["config", "check"],
            vec![("KAFKAD_ROLE", "dancer")],
            vec!["dancer", "KAFKAD_ROLE"],
        ),
        (
            vec!["config", "check", "--role", "single"],
            vec![("KAFKAD_SINK__KIND", "jsonl")],
            vec!["sink.path", "KAFKAD_SINK__KIND"],
        ),
        // A replay sends a consumer group's dead letters through that group's sink.
        (
            vec!["dlq", "replay", "--role", "producer"],
            vec![],
            vec!["`role`", "flag --role", "single or batch"],
        ),
        (
            vec!["dlq", "replay", "--config", "config/batch.toml"],
            vec![("KAFKAD_DLQ_TOPIC", "")],
            vec!["dlq_topic", "KAFKAD_DLQ_TOPIC", "no dead-letter topic"],
        ),
    ] {
        let output = kafkad(&args, &env);
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?} {env:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        for needle in needles {
            assert!(err.contains(needle), "`{needle}` missing from: {err}");
        }
    }
}

/// A Service named `kafkad-metrics` in the namespace makes Kubernetes inject these into every
/// pod; they once failed as unknown keys and crash-looped every kafkad pod.
#[test]
fn kubernetes_service_link_variables_do_not_stop_kafkad() {
    let output = kafkad(
        &["config", "check", "--config", "config/single.toml"],
        &[
            ("KAFKAD_METRICS_PORT", "tcp://10.0.0.1:9464"),
            ("KAFKAD_METRICS_PORT_9464_TCP", "tcp://10.0.0.1:9464"),
            ("KAFKAD_METRICS_PORT_9464_TCP_ADDR", "10.0.0.1"),
            ("KAFKAD_METRICS_SERVICE_HOST", "10.0.0.1"),
            ("KAFKAD_METRICS_SERVICE_PORT", "9464"),
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

#[test]
fn config_print_shows_env_beating_file_beating_defaults() {
    let output = kafkad(
        &[
            "config",
            "print",
            "--config",
            "config/batch.toml",
            "--set",
            "batch.max_wait=2s",
        ],
        &[
            ("KAFKAD_BATCH__MIN_SIZE", "20"),
            ("KAFKAD_KAFKA__FETCH_WAIT_MAX_MS", "100"),
            ("KAFKAD_KAFKA__SASL_PASSWORD", "hunter2"),
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let out = String::from_utf8_lossy(&output.stdout);
    let line = |key: &str| {
        out.lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("no {key} in {out}"))
            .to_owned()
    };
    assert!(line("min_size = 20").ends_with("# env KAFKAD_BATCH__MIN_SIZE"));
    assert!(
        line("\"fetch.wait.max.ms\" = \"100\"").ends_with("# env KAFKAD_KAFKA__FETCH_WAIT_MAX_MS")
    );
    assert!(line("max_size = 500").ends_with("# file config/batch.toml"));
    assert!(line("max_wait = \"2s\"").ends_with("# flag --set batch.max_wait"));
    assert!(line("# \"enable.auto.commit\" = \"false\"")
        .ends_with("# set by kafkad for the batch role; not configurable"));
    assert!(!out.contains("hunter2"));
}

#[test]
fn config_check_accepts_every_shipped_file() {
    for file in [
        "config/producer.toml",
        "config/single.toml",
        "config/batch.toml",
    ] {
        let output = kafkad(&["config", "check", "--config", file], &[]);
        assert_eq!(output.status.code(), Some(0), "{file}: {}", stderr(&output));
    }
}

#[test]
fn the_demo_reconciles_with_nothing_lost() {
    let output = kafkad(&["demo", "--messages", "4000", "--json"], &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout.lines().last().expect("output");
    let report: serde_json::Value = serde_json::from_str(last).expect("last line is JSON");
    assert_eq!(report["produced"], 4000);
    for group in ["single-message-group", "batch-message-group"] {
        assert_eq!(report["groups"][group]["lost"], 0, "{group}: {last}");
        assert_eq!(report["groups"][group]["consumed"], 4000, "{group}: {last}");
        assert!(report["groups"][group]["duplicates"].is_u64(), "{last}");
    }
}
