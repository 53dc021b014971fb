//! Layering, provenance and every kind of bad input, one test each.

use std::io::Write;

use super::*;

pub(super) fn toml_file(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new()
        .suffix(".toml")
        .tempfile()
        .expect("temp file");
    file.write_all(text.as_bytes()).expect("write");
    file
}

fn request(role: Option<Role>, file: Option<&Path>, env: &[(&str, &str)]) -> LoadRequest {
    LoadRequest {
        file: file.map(Path::to_owned),
        role,
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        role_required: true,
        ..LoadRequest::default()
    }
}

fn load_ok(request: &LoadRequest) -> LoadedConfig {
    load(request).unwrap_or_else(|e| panic!("expected a valid configuration: {e}"))
}

fn load_err(request: &LoadRequest) -> String {
    match load(request) {
        Ok(_) => panic!("expected a configuration error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn producer_defaults_are_the_seed_settings() {
    let config = load_ok(&request(Some(Role::Producer), None, &[]));
    let kafka = &config.settings.resolved_kafka;
    for (name, value) in [
        ("acks", "all"),
        ("enable.idempotence", "true"),
        ("delivery.timeout.ms", "120000"),
        ("max.in.flight.requests.per.connection", "1"),
        ("compression.type", "lz4"),
        ("bootstrap.servers", "localhost:9092"),
    ] {
        assert_eq!(kafka.get(name), Some(value), "{name}");
    }
    // The seed's retries=10 is not a default: it would fail messages long before
    // delivery.timeout.ms (see config/producer.toml).
    assert_eq!(kafka.get("retries"), None);
    assert_eq!(config.settings.topic.name, "andrew-topic");
    assert_eq!(
        config.settings.dlq_topic().as_deref(),
        Some("andrew-topic.dlq")
    );
}

#[test]
fn a_single_consumer_without_auto_commit_is_refused() {
    let error = load_err(&request(
        Some(Role::Single),
        None,
        &[("KAFKAD_KAFKA__ENABLE_AUTO_COMMIT", "false")],
    ));
    assert!(
        error.contains("kafka.enable.auto.commit")
            && error.contains("KAFKAD_KAFKA__ENABLE_AUTO_COMMIT")
            && error.contains("never be committed"),
        "{error}"
    );
}

#[test]
fn a_dead_letter_topic_equal_to_the_topic_is_refused() {
    let error = load_err(&request(
        Some(Role::Batch),
        None,
        &[("KAFKAD_DLQ_TOPIC", "andrew-topic")],
    ));
    assert!(
        error.contains("dlq_topic")
            && error.contains("KAFKAD_DLQ_TOPIC")
            && error.contains("must differ"),
        "{error}"
    );
}

#[test]
fn topic_names_kafka_would_refuse_are_refused() {
    let long = "t".repeat(250);
    for (var, name, why) in [
        ("KAFKAD_TOPIC__NAME", long.as_str(), "at most 249"),
        ("KAFKAD_TOPIC__NAME", "orders/eu", "contains '/'"),
        ("KAFKAD_TOPIC__NAME", "..", "not a topic name"),
        ("KAFKAD_DLQ_TOPIC", long.as_str(), "at most 249"),
        ("KAFKAD_DLQ_TOPIC", "dead letters", "contains ' '"),
    ] {
        let error = load_err(&request(Some(Role::Single), None, &[(var, name)]));
        assert!(
            error.contains(var) && error.contains(why),
            "{name}: {error}"
        );
    }
    // 249 characters is a name Kafka takes, but not with `.dlq` appended.
    let longest = "a".repeat(249);
    let error = load_err(&request(
        Some(Role::Single),
        None,
        &[("KAFKAD_TOPIC__NAME", &longest)],
    ));
    assert!(error.contains("default dead-letter topic"), "{error}");
    load_ok(&request(
        Some(Role::Single),
        None,
        &[
            ("KAFKAD_TOPIC__NAME", &longest),
            ("KAFKAD_DLQ_TOPIC", "dlq"),
        ],
    ));
    load_ok(&request(
        Some(Role::Single),
        None,
        &[("KAFKAD_TOPIC__NAME", &"a".repeat(245))],
    ));
}

#[test]
fn consumer_defaults_are_the_seed_settings() {
    let single = load_ok(&request(Some(Role::Single), None, &[]));
    let kafka = &single.settings.resolved_kafka;
    assert_eq!(kafka.get("group.id"), Some("single-message-group"));
    assert_eq!(kafka.get("enable.auto.commit"), Some("true"));
    assert_eq!(kafka.get("enable.auto.offset.store"), Some("false"));
    assert_eq!(kafka.get("fetch.min.bytes"), Some("1"));
    assert_eq!(kafka.get("fetch.wait.max.ms"), Some("500"));

    let batch = load_ok(&request(Some(Role::Batch), None, &[]));
    let kafka = &batch.settings.resolved_kafka;
    assert_eq!(kafka.get("group.id"), Some("batch-message-group"));
    assert_eq!(kafka.get("enable.auto.commit"), Some("false"));
    assert_eq!(kafka.get("fetch.min.bytes"), Some("1024"));
    assert_eq!(kafka.get("fetch.wait.max.ms"), Some("5000"));
    assert_eq!(batch.settings.batch.min_size.get(), 10);
    // The producer's settings are not a consumer's.
    assert_eq!(kafka.get("acks"), None);
}

#[test]
fn env_beats_file_beats_defaults_and_flags_beat_env() {
    let file = toml_file(
        r#"
role = "batch"
[batch]
min_size = 15
max_size = 40
[kafka]
"fetch.wait.max.ms" = 700
"client.id" = "from-file"
"#,
    );
    let mut req = request(
        None,
        Some(file.path()),
        &[
            ("KAFKAD_BATCH__MIN_SIZE", "20"),
            ("KAFKAD_KAFKA__FETCH_WAIT_MAX_MS", "100"),
            ("KAFKAD_SHUTDOWN_TIMEOUT", "250ms"),
            ("UNRELATED", "x"),
        ],
    );
    let config = load_ok(&req);
    let s = &config.settings;
    assert_eq!(s.role, Some(Role::Batch), "role from the file");
    assert_eq!(s.batch.min_size.get(), 20, "env beats file");
    assert_eq!(s.batch.max_size.get(), 40, "file beats default");
    assert_eq!(s.batch.max_wait, Duration::from_secs(5), "default stays");
    assert_eq!(s.shutdown_timeout, Duration::from_millis(250));
    assert_eq!(
        s.resolved_kafka.get("fetch.wait.max.ms"),
        Some("100"),
        "env beats file"
    );
    assert_eq!(s.resolved_kafka.get("client.id"), Some("from-file"));
    assert_eq!(
        s.resolved_kafka.get("fetch.min.bytes"),
        Some("1024"),
        "role default"
    );

    req.overrides = vec![("batch.min_size".into(), "30".into())];
    req.topic = Some("other".into());
    let config = load_ok(&req);
    assert_eq!(config.settings.batch.min_size.get(), 30, "flag beats env");
    assert_eq!(config.settings.topic.name, "other");
    assert_eq!(config.settings.dlq_topic().as_deref(), Some("other.dlq"));
}

#[test]
fn the_role_from_the_environment_picks_its_defaults() {
    let config = load_ok(&request(None, None, &[("KAFKAD_ROLE", "single")]));
    assert_eq!(config.settings.role, Some(Role::Single));
    assert_eq!(
        config.settings.resolved_kafka.get("group.id"),
        Some("single-message-group")
    );
}

#[test]
fn print_shows_each_source_and_redacts_secrets() {
    let secret_file = toml_file("s3cr3t-from-file\n");
    let file = toml_file(&format!(
        r#"
topic = "orders"
[kafka]
"sasl.password" = "hunter2"
"ssl.key.password" = {{ file = "{}" }}
"#,
        secret_file.path().display()
    ));
    let req = request(
        Some(Role::Single),
        Some(file.path()),
        &[("KAFKAD_KAFKA__CLIENT_ID", "env-client")],
    );
    let config = load_ok(&req);
    assert_eq!(
        config.settings.resolved_kafka.get("ssl.key.password"),
        Some("s3cr3t-from-file"),
        "secret file read without its newline"
    );
    let printed = config.render();
    let line_of = |needle: &str| {
        printed
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle} in:\n{printed}"))
            .to_owned()
    };
    assert!(line_of("role =").ends_with("# flag --role"));
    assert!(line_of("name = \"orders\"").contains(&format!("# file {}", file.path().display())));
    assert!(line_of("\"client.id\"").ends_with("# env KAFKAD_KAFKA__CLIENT_ID"));
    assert!(line_of("\"group.id\"").ends_with("# default"));
    assert!(line_of("\"sasl.password\"").contains("<redacted>"));
    assert!(line_of("\"ssl.key.password\"").contains("{ file = "));
    assert!(!printed.contains("hunter2"), "{printed}");
    assert!(!printed.contains("s3cr3t"), "{printed}");
    let debugged = format!("{:?}", config.settings);
    for secret in ["hunter2", "s3cr3t"] {
        assert!(
            !debugged.contains(secret),
            "Debug shows {secret}: {debugged}"
        );
    }
    assert!(debugged.contains("env-client"), "{debugged}");
    // The printed configuration is itself valid TOML.
    toml::from_str::<toml::Table>(&printed).expect("config print emits TOML");
}

#[test]
fn missing_file_names_the_path() {
    let error = load_err(&request(
        Some(Role::Single),
        Some(Path::new("does-not-exist.toml")),
        &[],
    ));
    assert!(error.contains("does-not-exist.toml"), "{error}");
    assert!(!error.contains('\n'));
}

#[test]
fn toml_syntax_error_names_the_file_line_and_column() {
    let file = toml_file("role = \"batch\"\n[batch\nmin_size = 1\n");
    let error = load_err(&request(None, Some(file.path()), &[]));
    assert!(
        error.contains("not valid TOML at line 2, column 7"),
        "{error}"
    );
    assert!(!error.contains("byte"), "{error}");
    assert!(
        error.contains(&file.path().display().to_string()),
        "{error}"
    );
    assert!(!error.contains('\n'), "{error}");
}

#[test]
fn unknown_keys_are_errors_naming_their_source() {
    let file = toml_file("[batch]\nmin_sise = 3\n");
    let error = load_err(&request(Some(Role::Batch), Some(file.path()), &[]));
    assert!(error.contains("unknown key `batch.min_sise`"), "{error}");
    assert!(
        error.contains(&file.path().display().to_string()),
        "{error}"
    );
    assert!(
        error.contains("min_size"),
        "lists the allowed keys: {error}"
    );

    let error = load_err(&request(
        Some(Role::Batch),
        None,
        &[("KAFKAD_BATCH__SIZE", "3")],
    ));
    assert!(
        error.contains("batch.size") && error.contains("KAFKAD_BATCH__SIZE"),
        "{error}"
    );

    let file = toml_file("colour = \"blue\"\n");
    let error = load_err(&request(Some(Role::Batch), Some(file.path()), &[]));
    assert!(error.contains("unknown key `colour`"), "{error}");
}

#[test]
fn wrong_types_and_bad_durations_name_key_and_source() {
    let error = load_err(&request(
        Some(Role::Batch),
        None,
        &[("KAFKAD_BATCH__MIN_SIZE", "many")],
    ));
    assert!(error.contains("batch.min_size"), "{error}");
    assert!(error.contains("KAFKAD_BATCH__MIN_SIZE"), "{error}");

    let file = toml_file("[batch]\nmax_wait = \"five seconds\"\n");
    let error = load_err(&request(Some(Role::Batch), Some(file.path()), &[]));
    assert!(error.contains("batch.max_wait"), "{error}");
    assert!(
        error.contains(&file.path().display().to_string()),
        "{error}"
    );
}

#[test]
fn unknown_librdkafka_property_is_an_error_with_a_suggestion() {
    let file = toml_file("[kafka]\n\"fetch.max.wait.ms\" = 500\n");
    let error = load_err(&request(Some(Role::Single), Some(file.path()), &[]));
    assert!(error.contains("`kafka.fetch.max.wait.ms`"), "{error}");
    assert!(
        error.contains("did you mean `fetch.wait.max.ms`"),
        "{error}"
    );
    assert!(
        error.contains(&file.path().display().to_string()),
        "{error}"
    );

    let error = load_err(&request(
        Some(Role::Producer),
        None,
        &[("KAFKAD_KAFKA__ACKS", "most")],
    ));
    assert!(
        error.contains("acks") && error.contains("KAFKAD_KAFKA__ACKS"),
        "{error}"
    );
}

#[test]
fn unknown_or_missing_role_is_an_error() {
    let error = load_err(&request(None, None, &[("KAFKAD_ROLE", "dancer")]));
    assert!(
        error.contains("dancer") && error.contains("KAFKAD_ROLE"),
        "{error}"
    );
    assert!(error.contains("producer, single, batch"), "{error}");
    let error = load_err(&request(None, None, &[]));
    assert!(error.contains("no role"), "{error}");
}

#[test]
fn settings_that_break_a_guarantee_are_refused() {
    let error = load_err(&request(
        Some(Role::Batch),
        None,
        &[("KAFKAD_KAFKA__ENABLE_AUTO_COMMIT", "true")],
    ));
    assert!(error.contains("enable.auto.commit"), "{error}");
    let error = load_err(&request(
        Some(Role::Single),
        None,
        &[("KAFKAD_KAFKA__ENABLE_AUTO_OFFSET_STORE", "true")],
    ));
    assert!(error.contains("enable.auto.offset.store"), "{error}");
    let error = load_err(&request(
        Some(Role::Batch),
        None,
        &[
            ("KAFKAD_BATCH__MIN_SIZE", "50"),
            ("KAFKAD_BATCH__MAX_SIZE", "5"),
        ],
    ));
    assert!(
        error.contains("batch.max_size") && error.contains("KAFKAD_BATCH__MAX_SIZE"),
        "{error}"
    );
    let error = load_err(&request(
        Some(Role::Single),
        None,
        &[("KAFKAD_SINK__KIND", "jsonl")],
    ));
    assert!(error.contains("sink.path"), "{error}");
}

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
fn the_http_listen_address_is_an_address_or_empty() {
    let config = load_ok(&request(Some(Role::Single), None, &[]));
    assert_eq!(
        config.settings.http.listen,
        Some(SocketAddr::from(([0, 0, 0, 0], 9464)))
    );
    let config = load_ok(&request(
        Some(Role::Single),
        None,
        &[("KAFKAD_HTTP__LISTEN", "")],
    ));
    assert_eq!(config.settings.http.listen, None, "\"\" turns it off");
    let error = load_err(&request(
        Some(Role::Single),
        None,
        &[("KAFKAD_HTTP__LISTEN", "localhost")],
    ));
    assert!(
        error.contains("http.listen") && error.contains("KAFKAD_HTTP__LISTEN"),
        "{error}"
    );
    assert!(
        error.contains("0.0.0.0:9464"),
        "says what is allowed: {error}"
    );
}

#[test]
fn sizes_that_cannot_be_zero_refuse_zero() {
    for (var, key) in [
        ("KAFKAD_BATCH__MIN_SIZE", "batch.min_size"),
        ("KAFKAD_BATCH__MAX_SIZE", "batch.max_size"),
        ("KAFKAD_MAX_RECORD_BYTES", "max_record_bytes"),
    ] {
        let error = load_err(&request(Some(Role::Batch), None, &[(var, "0")]));
        assert!(error.contains(key) && error.contains(var), "{error}");
        assert!(error.contains("above 0"), "{error}");
    }
}

#[test]
fn dlq_can_be_disabled_explicitly() {
    let config = load_ok(&request(
        Some(Role::Single),
        None,
        &[("KAFKAD_DLQ_TOPIC", "")],
    ));
    assert_eq!(config.settings.dlq_topic(), None);
    let config = load_ok(&request(
        Some(Role::Single),
        None,
        &[("KAFKAD_DLQ_TOPIC", "dead")],
    ));
    assert_eq!(config.settings.dlq_topic().as_deref(), Some("dead"));
}

#[test]
fn secret_from_a_missing_variable_is_an_error_without_the_value() {
    let file = toml_file("[kafka]\n\"sasl.password\" = { env = \"KAFKA_PASSWORD\" }\n");
    let error = load_err(&request(Some(Role::Single), Some(file.path()), &[]));
    assert!(error.contains("KAFKA_PASSWORD is not set"), "{error}");
    let config = load_ok(&request(
        Some(Role::Single),
        Some(file.path()),
        &[("KAFKA_PASSWORD", "pw")],
    ));
    assert_eq!(
        config.settings.resolved_kafka.get("sasl.password"),
        Some("pw")
    );
}

#[test]
fn shipped_config_files_are_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    for (file, role) in [
        ("producer.toml", Role::Producer),
        ("single.toml", Role::Single),
        ("batch.toml", Role::Batch),
    ] {
        let config = load_ok(&request(None, Some(&root.join(file)), &[]));
        assert_eq!(config.settings.role, Some(role), "{file}");
        assert_eq!(
            config.settings.resolved_kafka.get("bootstrap.servers"),
            Some("localhost:9092"),
            "{file}"
        );
    }
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

/// What the kubelet writes into every container of a namespace holding Services named
/// `kafkad` (one unnamed TCP port), `kafkad-metrics` (TCP port 9464 named `http`) and
/// `kafkad-dns` (UDP port 53 named `dns-udp`, an IPv6 cluster IP), unless the pod sets
/// `enableServiceLinks: false`.
const KUBERNETES_SERVICE_LINKS: &[(&str, &str)] = &[
    ("KAFKAD_SERVICE_HOST", "10.0.0.7"),
    ("KAFKAD_SERVICE_PORT", "80"),
    ("KAFKAD_PORT", "tcp://10.0.0.7:80"),
    ("KAFKAD_PORT_80_TCP", "tcp://10.0.0.7:80"),
    ("KAFKAD_PORT_80_TCP_PROTO", "tcp"),
    ("KAFKAD_PORT_80_TCP_PORT", "80"),
    ("KAFKAD_PORT_80_TCP_ADDR", "10.0.0.7"),
    ("KAFKAD_METRICS_SERVICE_HOST", "10.0.0.1"),
    ("KAFKAD_METRICS_SERVICE_PORT", "9464"),
    ("KAFKAD_METRICS_SERVICE_PORT_HTTP", "9464"),
    ("KAFKAD_METRICS_PORT", "tcp://10.0.0.1:9464"),
    ("KAFKAD_METRICS_PORT_9464_TCP", "tcp://10.0.0.1:9464"),
    ("KAFKAD_METRICS_PORT_9464_TCP_PROTO", "tcp"),
    ("KAFKAD_METRICS_PORT_9464_TCP_PORT", "9464"),
    ("KAFKAD_METRICS_PORT_9464_TCP_ADDR", "10.0.0.1"),
    ("KAFKAD_DNS_SERVICE_HOST", "fd00::a"),
    ("KAFKAD_DNS_SERVICE_PORT", "53"),
    ("KAFKAD_DNS_SERVICE_PORT_DNS_UDP", "53"),
    ("KAFKAD_DNS_PORT", "udp://[fd00::a]:53"),
    ("KAFKAD_DNS_PORT_53_UDP", "udp://[fd00::a]:53"),
    ("KAFKAD_DNS_PORT_53_UDP_PROTO", "udp"),
    ("KAFKAD_DNS_PORT_53_UDP_PORT", "53"),
    ("KAFKAD_DNS_PORT_53_UDP_ADDR", "fd00::a"),
];

#[test]
fn kubernetes_service_link_variables_are_set_aside_not_read() {
    let mut env = KUBERNETES_SERVICE_LINKS.to_vec();
    env.push(("KAFKAD_BATCH__MIN_SIZE", "20"));
    let config = load_ok(&request(Some(Role::Batch), None, &env));
    assert_eq!(
        config.settings.batch.min_size.get(),
        20,
        "real settings still read"
    );
    let mut expected: Vec<String> = KUBERNETES_SERVICE_LINKS
        .iter()
        .map(|(name, _)| name.to_string())
        .collect();
    expected.sort();
    assert_eq!(config.service_links, expected);
    let printed = config.render();
    assert!(
        printed.contains("# not configuration: KAFKAD_METRICS_PORT (a Kubernetes service link"),
        "{printed}"
    );
}

#[test]
fn a_kafkad_variable_that_only_looks_like_a_service_link_is_still_an_unknown_key() {
    for (name, value, key) in [
        // The kubelet writes a link address, never a bare port, into `<SERVICE>_PORT`.
        ("KAFKAD_METRICS_PORT", "9464", "metrics_port"),
        (
            "KAFKAD_METRICS_PORT",
            "http://10.0.0.1:9464",
            "metrics_port",
        ),
        ("KAFKAD_SERVICE_HOST", "kafka-0", "service_host"),
        // The port in the name and in the address differ.
        (
            "KAFKAD_METRICS_PORT_9464_TCP",
            "tcp://10.0.0.1:80",
            "metrics_port_9464_tcp",
        ),
        ("KAFKAD_SERVICE_PORT", "0", "service_port"),
    ] {
        let error = load_err(&request(Some(Role::Single), None, &[(name, value)]));
        assert!(
            error.contains(&format!("unknown key `{key}`")) && error.contains(name),
            "{name}={value}: {error}"
        );
    }
}

#[test]
fn client_id_names_the_instance_unless_kafka_sets_one() {
    let producer = load_ok(&request(
        Some(Role::Producer),
        None,
        &[("KAFKAD_PRODUCER__PRODUCER_ID", "producer-1")],
    ));
    assert_eq!(
        producer.settings.resolved_kafka.get("client.id"),
        Some("kafkad-producer-producer-1")
    );
    let printed = producer.render();
    assert!(
        printed.lines().any(
            |l| l.starts_with("\"client.id\" = \"kafkad-producer-producer-1\"")
                && l.contains("# default")
        ),
        "{printed}"
    );

    let pid = format!("-{}", std::process::id());
    for (role, prefix) in [
        (Role::Single, "kafkad-single-"),
        (Role::Batch, "kafkad-batch-"),
    ] {
        let config = load_ok(&request(Some(role), None, &[]));
        let id = config
            .settings
            .resolved_kafka
            .get("client.id")
            .unwrap_or_default();
        assert!(id.starts_with(prefix) && id.ends_with(&pid), "{id}");
        assert!(
            id.len() > prefix.len() + pid.len(),
            "the host name is in it: {id}"
        );
    }

    let file = toml_file("[kafka]\n\"client.id\" = \"billing-consumer\"\n");
    let config = load_ok(&request(Some(Role::Single), Some(file.path()), &[]));
    assert_eq!(
        config.settings.resolved_kafka.get("client.id"),
        Some("billing-consumer")
    );
    assert!(config.render().contains("billing-consumer"));
}

#[test]
fn topic_config_from_every_layer_with_a_min_insync_replicas_default() {
    let config = load_ok(&request(Some(Role::Producer), None, &[]));
    assert!(config.settings.topic.config.is_empty());
    assert_eq!(
        config.settings.topic.creation_config(),
        BTreeMap::from([("min.insync.replicas".to_owned(), "2".to_owned())]),
        "two replicas by default: both hold an acknowledged write"
    );
    let printed = config.render();
    assert!(
        printed.contains("[topic.config]")
            && printed.lines().any(
                |l| l.starts_with("\"min.insync.replicas\" = \"2\"") && l.contains("# default")
            ),
        "{printed}"
    );
    toml::from_str::<toml::Table>(&printed).expect("config print emits TOML");

    let single_replica = load_ok(&request(
        Some(Role::Producer),
        None,
        &[("KAFKAD_TOPIC__REPLICATION_FACTOR", "1")],
    ));
    assert_eq!(
        single_replica.settings.topic.creation_config()["min.insync.replicas"],
        "1",
        "the one value a single replica can meet"
    );

    let file = toml_file(
        "[topic]\nreplication_factor = 3\n[topic.config]\n\"retention.ms\" = 86400000\n\"cleanup.policy\" = \"delete\"\n",
    );
    let mut req = request(
        Some(Role::Producer),
        Some(file.path()),
        &[("KAFKAD_TOPIC__CONFIG__MIN_INSYNC_REPLICAS", "3")],
    );
    req.overrides = vec![("topic.config.retention.ms".into(), "3600000".into())];
    let config = load_ok(&req);
    assert_eq!(
        config.settings.topic.creation_config(),
        BTreeMap::from([
            ("cleanup.policy".to_owned(), "delete".to_owned()),
            ("min.insync.replicas".to_owned(), "3".to_owned()),
            ("retention.ms".to_owned(), "3600000".to_owned()),
        ])
    );
    assert_eq!(
        config.origin("topic.config.min.insync.replicas"),
        "env KAFKAD_TOPIC__CONFIG__MIN_INSYNC_REPLICAS"
    );
    let printed = config.render();
    assert!(
        printed
            .lines()
            .any(|l| l.starts_with("\"retention.ms\" = \"3600000\"")
                && l.ends_with("# flag --set topic.config.retention.ms")),
        "{printed}"
    );
}

#[test]
fn a_min_insync_replicas_the_replicas_cannot_meet_is_refused() {
    for (value, why) in [
        ("3", "more than the 2 replicas"),
        ("0", "not a number of replicas from 1"),
        ("two", "not a number of replicas from 1"),
    ] {
        let error = load_err(&request(
            Some(Role::Producer),
            None,
            &[("KAFKAD_TOPIC__CONFIG__MIN_INSYNC_REPLICAS", value)],
        ));
        assert!(
            error.contains("topic.config.min.insync.replicas")
                && error.contains("KAFKAD_TOPIC__CONFIG__MIN_INSYNC_REPLICAS")
                && error.contains(why),
            "{value}: {error}"
        );
    }
    let file = toml_file("[topic.config]\n\"Retention_MS\" = 1\n");
    let error = load_err(&request(Some(Role::Producer), Some(file.path()), &[]));
    assert!(
        error.contains("topic.config.Retention_MS") && error.contains("not a topic config name"),
        "{error}"
    );
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
