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

pub(super) fn request(
    role: Option<Role>,
    file: Option<&Path>,
    env: &[(&str, &str)],
) -> LoadRequest {
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

pub(super) fn load_ok(request: &LoadRequest) -> LoadedConfig {
    load(request).unwrap_or_else(|e| panic!("expected a valid configuration: {e}"))
}

pub(super) fn load_err(request: &LoadRequest) -> String {
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
fn the_commit_properties_kafkad_owns_are_refused_in_kafka_whatever_their_value() {
    for (role, variable, value) in [
        (Role::Single, "KAFKAD_KAFKA__ENABLE_AUTO_COMMIT", "false"),
        (Role::Single, "KAFKAD_KAFKA__ENABLE_AUTO_COMMIT", "true"),
        (Role::Batch, "KAFKAD_KAFKA__ENABLE_AUTO_COMMIT", "false"),
        (
            Role::Batch,
            "KAFKAD_KAFKA__ENABLE_AUTO_OFFSET_STORE",
            "false",
        ),
        (
            Role::Producer,
            "KAFKAD_KAFKA__ENABLE_AUTO_OFFSET_STORE",
            "true",
        ),
    ] {
        let error = load_err(&request(Some(role), None, &[(variable, value)]));
        assert!(
            error.contains(variable) && error.contains("is kafkad's to set"),
            "{role} {variable}={value}: {error}"
        );
    }
    assert_eq!(
        ConsumerRole::Single.owned_properties(),
        [
            ("enable.auto.commit", "true"),
            ("enable.auto.offset.store", "false")
        ]
    );
    assert_eq!(
        ConsumerRole::Batch.owned_properties(),
        [
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false")
        ]
    );
}

#[test]
fn consumer_defaults_are_the_seed_settings() {
    let single = load_ok(&request(Some(Role::Single), None, &[]));
    let kafka = &single.settings.resolved_kafka;
    assert_eq!(kafka.get("group.id"), Some("single-message-group"));
    assert_eq!(kafka.get("fetch.min.bytes"), Some("1"));
    assert_eq!(kafka.get("fetch.wait.max.ms"), Some("500"));

    let batch = load_ok(&request(Some(Role::Batch), None, &[]));
    let kafka = &batch.settings.resolved_kafka;
    assert_eq!(kafka.get("group.id"), Some("batch-message-group"));
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
