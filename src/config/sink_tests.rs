//! `[sink]` and `[retry]`: each sink kind's keys, secrets that stay hidden, and settings that
//! contradict each other or a sink's guarantee.

use super::tests::{load_err, load_ok, request, toml_file};
use super::*;

#[test]
fn the_sink_kind_decides_which_keys_it_takes() {
    let file = toml_file("[sink]\nkind = \"jsonl\"\n");
    let error = load_err(&request(Some(Role::Single), Some(file.path()), &[]));
    assert!(error.contains("`sink.path`"), "{error}");
    assert!(
        error.contains(&file.path().display().to_string()),
        "names where `kind` came from: {error}"
    );
    assert!(error.contains("jsonl"), "{error}");

    let error = load_err(&request(
        Some(Role::Single),
        None,
        &[("KAFKAD_SINK__PATH", "/tmp/out.jsonl")],
    ));
    assert!(
        error.contains("unknown key `sink.path`") && error.contains("KAFKAD_SINK__PATH"),
        "the log sink takes no path: {error}"
    );

    let config = load_ok(&request(
        Some(Role::Single),
        None,
        &[
            ("KAFKAD_SINK__KIND", "jsonl"),
            ("KAFKAD_SINK__PATH", "/tmp/out.jsonl"),
        ],
    ));
    assert_eq!(
        config.settings.sink,
        SinkSettings::Jsonl {
            path: PathBuf::from("/tmp/out.jsonl")
        }
    );
}

#[test]
fn retry_defaults_are_documented_values() {
    let retry = load_ok(&request(Some(Role::Single), None, &[]))
        .settings
        .retry;
    assert_eq!(retry.max_attempts.get(), 5);
    assert_eq!(retry.initial, Duration::from_secs(1));
    assert_eq!(retry.max, Duration::from_secs(60));
    assert_eq!(retry.multiplier, 2.0);
    assert_eq!(retry.jitter, 0.2);
    assert_eq!(retry.on_exhausted, OnExhausted::DeadLetter);
}

#[test]
fn bad_retry_settings_name_the_key_and_its_source() {
    let file = toml_file("[retry]\nmax_attempts = 0\n");
    let error = load_err(&request(Some(Role::Single), Some(file.path()), &[]));
    assert!(error.contains("retry.max_attempts"), "{error}");
    assert!(
        error.contains(&file.path().display().to_string()),
        "{error}"
    );

    let error = load_err(&request(
        Some(Role::Batch),
        None,
        &[
            ("KAFKAD_RETRY__INITIAL", "10s"),
            ("KAFKAD_RETRY__MAX", "5s"),
        ],
    ));
    assert!(
        error.contains("retry.max") && error.contains("KAFKAD_RETRY__MAX"),
        "{error}"
    );

    let error = load_err(&request(
        Some(Role::Single),
        None,
        &[("KAFKAD_RETRY__ON_EXHAUSTED", "ignore")],
    ));
    assert!(error.contains("retry"), "{error}");
    let error = load_err(&request(
        Some(Role::Single),
        None,
        &[("KAFKAD_RETRY__JITTER", "1.5")],
    ));
    assert!(error.contains("retry.jitter"), "{error}");
}

#[test]
fn http_sink_urls_must_parse_and_header_secrets_stay_hidden() {
    let file = toml_file("[sink]\nkind = \"http\"\nurl = \"not a url\"\n");
    let error = load_err(&request(Some(Role::Single), Some(file.path()), &[]));
    assert!(
        error.contains("sink.url") && error.contains(&file.path().display().to_string()),
        "{error}"
    );
    let file = toml_file("[sink]\nkind = \"http\"\nurl = \"ftp://host/x\"\n");
    let error = load_err(&request(Some(Role::Single), Some(file.path()), &[]));
    assert!(error.contains("sink.url"), "{error}");

    let file = toml_file(
        "[sink]\nkind = \"http\"\nurl = \"http://127.0.0.1:9/in\"\ntimeout = \"2s\"\n\
         [sink.headers]\nAuthorization = { env = \"SINK_TOKEN\" }\nX-Api-Key = \"plain-secret\"\nX-Source = \"kafkad\"\n",
    );
    let mut req = request(Some(Role::Single), Some(file.path()), &[]);
    let error = load_err(&req);
    assert!(
        error.contains("sink.headers.Authorization") && error.contains("SINK_TOKEN"),
        "{error}"
    );
    req.env
        .push(("SINK_TOKEN".to_owned(), "Bearer very-secret".to_owned()));
    let config = load_ok(&req);
    assert!(config
        .settings
        .resolved_sink_headers
        .0
        .contains(&("Authorization".to_owned(), "Bearer very-secret".to_owned())));
    let printed = config.render();
    for secret in ["very-secret", "plain-secret"] {
        assert!(!printed.contains(secret), "{printed}");
        assert!(
            !format!("{:?}", config.settings).contains(secret),
            "Debug hides {secret}"
        );
    }
    assert!(
        printed.contains("SINK_TOKEN") && printed.contains("kafkad"),
        "{printed}"
    );
    assert!(
        printed.contains("[retry]") && printed.contains("on_exhausted = \"dead_letter\""),
        "config print shows the retry policy: {printed}"
    );
}

#[test]
fn a_command_sink_needs_a_program_that_exists() {
    let file = toml_file("[sink]\nkind = \"command\"\ncommand = [\"no-such-program-kafkad\"]\n");
    let error = load_err(&request(Some(Role::Batch), Some(file.path()), &[]));
    assert!(
        error.contains("sink.command")
            && error.contains("no-such-program-kafkad")
            && error.contains(&file.path().display().to_string()),
        "{error}"
    );
    let file = toml_file("[sink]\nkind = \"command\"\ncommand = [\"sh\", \"-c\", \"cat\"]\n");
    let config = load_ok(&request(Some(Role::Batch), Some(file.path()), &[]));
    assert!(matches!(
        config.settings.sink,
        SinkSettings::Command { timeout, .. } if timeout == Duration::from_secs(30)
    ));
}

#[test]
fn postgres_sink_passwords_stay_hidden_wherever_they_come_from() {
    let secret_file = toml_file("pg-from-file\n");
    let file = toml_file(&format!(
        "[sink]\nkind = \"postgres\"\nurl = \"postgres://kafkad:pg-in-url@db/kafkad\"\n\
         password = {{ file = \"{}\" }}\ntable = \"rows\"\n",
        secret_file.path().display()
    ));
    let config = load_ok(&request(Some(Role::Batch), Some(file.path()), &[]));
    assert_eq!(
        config.settings.resolved_sink_password.0.as_deref(),
        Some("pg-from-file"),
        "read without its newline"
    );
    let printed = config.render();
    let debugged = format!("{:?}", config.settings);
    for secret in ["pg-from-file", "pg-in-url"] {
        assert!(!printed.contains(secret), "{printed}");
        assert!(!debugged.contains(secret), "Debug shows {secret}");
    }
    assert!(
        printed.contains("postgres://kafkad:<redacted>@db/kafkad"),
        "{printed}"
    );
    assert!(printed.contains("delivery = \"exactly_once\""), "{printed}");
    let plain = toml_file(
        "[sink]\nkind = \"postgres\"\nurl = \"postgres://db/k\"\npassword = \"pg-plain\"\ntable = \"rows\"\n",
    );
    let config = load_ok(&request(Some(Role::Batch), Some(plain.path()), &[]));
    assert!(!config.render().contains("pg-plain"));
}

#[test]
fn transactional_sinks_refuse_settings_that_contradict_each_other() {
    for (sink, key) in [
        ("kind = \"postgres\"\nurl = \"postgres://db/k\"\ntable = \"a.b.c\"", "sink"),
        (
            "kind = \"postgres\"\nurl = \"postgres://db/k\"\ntable = \"t\"\non_conflict = \"ignore\"\nconflict_key = [\"message_id\"]",
            "sink.on_conflict",
        ),
        (
            "kind = \"postgres\"\nurl = \"postgres://db/k\"\ntable = \"t\"\ndelivery = \"at_least_once\"\non_conflict = \"ignore\"",
            "sink.conflict_key",
        ),
        (
            "kind = \"postgres\"\nurl = \"postgres://db/k\"\ntable = \"t\"\ndelivery = \"at_least_once\"\non_conflict = \"ignore\"\nconflict_key = [\"nope\"]",
            "sink.conflict_key",
        ),
        ("kind = \"kafka\"\ntopic = \"andrew-topic\"", "sink.topic"),
        ("kind = \"kafka\"\ntopic = \"out\"\n[sink.kafka]\n\"no.such.property\" = \"1\"", "sink.kafka.no.such.property"),
    ] {
        let file = toml_file(&format!("[sink]\n{sink}\n"));
        let error = load_err(&request(Some(Role::Batch), Some(file.path()), &[]));
        assert!(error.contains(&format!("`{key}`")), "{sink}: {error}");
    }
    let file = toml_file("[sink]\nkind = \"kafka\"\ntopic = \"out\"\n[sink.kafka]\n\"sasl.password\" = \"kafka-secret\"\n");
    let config = load_ok(&request(Some(Role::Batch), Some(file.path()), &[]));
    assert_eq!(
        config.settings.resolved_sink_kafka.get("bootstrap.servers"),
        Some("localhost:9092"),
        "the input cluster's"
    );
    assert!(!config.render().contains("kafka-secret"));
    assert!(!format!("{:?}", config.settings).contains("kafka-secret"));
}
