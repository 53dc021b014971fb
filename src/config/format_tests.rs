//! `format`, `[producer] source` and `key`, `[schema_registry]`, and `topic` as a list or a
//! pattern: what loads, and each refusal naming its key and source.

use super::tests::toml_file;
use super::*;

fn load_toml(role: Option<Role>, text: &str) -> Result<LoadedConfig, String> {
    let file = toml_file(text);
    load(&LoadRequest {
        file: Some(file.path().to_owned()),
        role,
        ..LoadRequest::default()
    })
    .map_err(|error| error.to_string())
}

fn loaded(role: Option<Role>, text: &str) -> Settings {
    load_toml(role, text)
        .unwrap_or_else(|e| panic!("expected a valid configuration: {e}"))
        .settings
}

fn refused(role: Option<Role>, text: &str) -> String {
    match load_toml(role, text) {
        Ok(_) => panic!("expected a configuration error for:\n{text}"),
        Err(error) => error,
    }
}

fn load_env(role: Role, env: &[(&str, &str)]) -> Result<LoadedConfig, String> {
    load(&LoadRequest {
        role: Some(role),
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..LoadRequest::default()
    })
    .map_err(|error| error.to_string())
}

#[test]
fn the_seed_format_and_generated_messages_are_the_defaults() {
    let settings = loaded(Some(Role::Producer), "");
    assert_eq!(settings.producer.format, Format::KafkaMessage);
    assert_eq!(settings.producer.source, InputSource::Generate);
    assert_eq!(settings.producer.key, None);
    let settings = loaded(Some(Role::Batch), "");
    assert_eq!(settings.consumer.format, Format::KafkaMessage);
    assert_eq!(settings.schema_registry, None);
}

#[test]
fn every_format_is_spelled_as_its_name() {
    for format in Format::ALL {
        let text = format!("[consumer]\nformat = \"{format}\"\n[schema_registry]\nurl = \"http://127.0.0.1:8081\"\n");
        assert_eq!(loaded(None, &text).consumer.format, format);
    }
    let error = refused(None, "[consumer]\nformat = \"xml\"\n");
    assert!(
        error.contains("consumer.format")
            && error.contains("unknown format `xml`; allowed: kafka_message, json, text"),
        "{error}"
    );
}

#[test]
fn schema_formats_need_a_registry_that_parses() {
    let error = refused(Some(Role::Batch), "[consumer]\nformat = \"avro\"\n");
    assert!(
        error.starts_with("`schema_registry.url`") && error.contains("consumer.format = \"avro\""),
        "{error}"
    );
    let error = refused(
        Some(Role::Batch),
        "[consumer]\nformat = \"protobuf\"\n[schema_registry]\nurl = \"registry:8081\"\n",
    );
    assert!(
        error.starts_with("`schema_registry.url` (file ") && error.contains("not an http://"),
        "{error}"
    );
    let text = "[consumer]\nformat = \"protobuf\"\n[schema_registry]\nurl = \"http://127.0.0.1:8080/apis/ccompat/v7\"\n";
    let registry = loaded(None, text).schema_registry.expect("configured");
    assert_eq!(registry.timeout, Duration::from_secs(10));
    let consumer = loaded(Some(Role::Batch), text);
    assert_eq!(consumer.consumer.format, Format::Protobuf);
}

#[test]
fn the_sinks_writing_the_seeds_message_refuse_other_formats() {
    for format in ["json", "text", "bytes"] {
        let sink = "[sink]\nkind = \"postgres\"\nurl = \"postgres://db/k\"\ntable = \"rows\"\n";
        let error = refused(
            Some(Role::Single),
            &format!("[consumer]\nformat = \"{format}\"\n{sink}"),
        );
        assert!(
            error.starts_with("`consumer.format` (file ")
                && error.contains(&format!(
                    "the postgres sink writes the seed's message (kafka_message), not {format}"
                )),
            "{error}"
        );
        let jsonl = loaded(
            Some(Role::Single),
            &format!("[consumer]\nformat = \"{format}\"\n[sink]\nkind = \"jsonl\"\npath = \"/tmp/x.jsonl\"\n"),
        );
        assert_eq!(jsonl.consumer.format.as_str(), format);
    }
}

#[test]
fn the_producer_reads_stdin_or_a_file_and_finds_keys() {
    let input = tempfile::NamedTempFile::new().expect("input file");
    let path = input.path().display().to_string();
    let settings = loaded(
        Some(Role::Producer),
        &format!("[producer]\nsource = {{ file = \"{path}\" }}\nformat = \"json\"\nkey = {{ field = \"user_id\" }}\n[producer.headers]\norigin = \"crm\"\n"),
    );
    assert_eq!(
        settings.producer.source,
        InputSource::File(path.clone().into())
    );
    assert_eq!(
        settings.producer.key,
        Some(LineKey::Field("user_id".into()))
    );
    assert_eq!(settings.producer.headers["origin"], "crm");

    let settings = load_env(
        Role::Producer,
        &[
            ("KAFKAD_PRODUCER__SOURCE", "stdin"),
            ("KAFKAD_PRODUCER__FORMAT", "text"),
            ("KAFKAD_PRODUCER__KEY__DELIMITER", "\t"),
        ],
    )
    .expect("valid")
    .settings;
    assert_eq!(settings.producer.source, InputSource::Stdin);
    assert_eq!(settings.producer.key, Some(LineKey::Delimiter("\t".into())));
    let settings = load_env(
        Role::Producer,
        &[
            ("KAFKAD_PRODUCER__SOURCE__FILE", &path),
            ("KAFKAD_PRODUCER__FORMAT", "bytes"),
        ],
    )
    .expect("valid")
    .settings;
    assert_eq!(settings.producer.source, InputSource::File(path.into()));
    // The file must be there to be read: a missing one is a configuration error.
    let error = load_env(
        Role::Producer,
        &[("KAFKAD_PRODUCER__SOURCE__FILE", "/no/such/input")],
    )
    .expect_err("missing file");
    assert_eq!(
        error,
        "`producer.source` (env KAFKAD_PRODUCER__SOURCE__FILE): cannot read /no/such/input: No such file or directory (os error 2)"
    );
}

#[test]
fn producer_input_that_cannot_work_is_refused_naming_the_key() {
    for (text, key, says) in [
        (
            "[producer]\nsource = \"file\"\n",
            "producer.source",
            "source = { file = \"/path/to/lines\" }",
        ),
        (
            "[producer]\nsource = \"kafka\"\n",
            "producer.source",
            "unknown source `kafka`",
        ),
        (
            "[producer]\nsource = { path = \"/x\" }\n",
            "producer.source",
            "unknown source `path`",
        ),
        (
            "[producer]\nformat = \"json\"\n",
            "producer.format",
            "source = \"generate\" makes the seed's messages",
        ),
        (
            "[producer]\nsource = \"stdin\"\nformat = \"avro\"\n",
            "producer.format",
            "it registers no schemas",
        ),
        (
            "[producer]\nsource = \"stdin\"\nformat = \"text\"\nkey = { field = \"id\" }\n",
            "producer.key",
            "needs format = \"json\"",
        ),
        (
            "[producer]\nsource = \"stdin\"\nformat = \"text\"\nkey = { delimiter = \"\" }\n",
            "producer.key",
            "at least one character",
        ),
        (
            "[producer]\nkey = { delimiter = \",\" }\n",
            "producer.key",
            "generated messages are keyed by their id",
        ),
        (
            "[producer]\nsource = \"stdin\"\nkey = { column = 1 }\n",
            "producer.key",
            "unknown key source `column`",
        ),
    ] {
        let error = refused(Some(Role::Producer), text);
        assert!(
            error.starts_with(&format!("`{key}` (")) && error.contains(says),
            "{text}: {error}"
        );
    }
}

#[test]
fn topic_is_one_name_a_list_or_a_pattern() {
    let settings = loaded(None, "topic = [\"orders\", \"refunds\"]\n");
    assert_eq!(
        settings.topic.selection,
        TopicSelection::List(vec!["orders".into(), "refunds".into()])
    );
    assert_eq!(settings.topic.name, "", "no single topic");
    assert_eq!(
        settings.dead_letter_topic_of("refunds").as_deref(),
        Some("refunds.dlq")
    );
    let settings = loaded(None, "[topic]\nname = \"^orders\\\\..*\"\n");
    assert!(settings.topic.selection.selects("orders.eu"));
    let settings = load(&LoadRequest {
        topic: Some("a,b".into()),
        ..LoadRequest::default()
    })
    .expect("valid")
    .settings;
    assert_eq!(settings.topic.selection.names(), ["a", "b"]);
    // One topic, as always, and a list of one.
    assert_eq!(
        loaded(Some(Role::Single), "topic = \"orders\"\n")
            .topic
            .name,
        "orders"
    );
    assert_eq!(
        loaded(Some(Role::Single), "topic = [\"orders\"]\n")
            .topic
            .name,
        "orders"
    );
}

#[test]
fn topic_selections_that_cannot_work_are_refused_naming_the_key() {
    for (role, text, key, says) in [
        (
            None,
            "topic = \"^orders(\"\n",
            "topic.name",
            "`^orders(` is not a regular expression",
        ),
        (
            None,
            "topic = [\"a\", \"b c\"]\n",
            "topic.name",
            "`b c` contains ' '",
        ),
        (
            None,
            "topic = [\"a\", \"a\"]\n",
            "topic.name",
            "`a` is listed twice",
        ),
        (
            None,
            "topic = []\n",
            "topic.name",
            "an empty list names no topic",
        ),
        (
            None,
            "topic = [\"a\", \"^b\"]\n",
            "topic.name",
            "a pattern stands alone",
        ),
        (
            None,
            "topic = [\"a\", \"b\"]\ndlq_topic = \"b\"\n",
            "dlq_topic",
            "must not be one of the topics",
        ),
        (
            None,
            "topic = \"^orders\\\\..*\"\ndlq_topic = \"orders.dead\"\n",
            "dlq_topic",
            "must not match the topic pattern",
        ),
        (
            Some(Role::Producer),
            "topic = [\"a\", \"b\"]\n",
            "topic.name",
            "the producer writes one topic",
        ),
        (
            Some(Role::Batch),
            "topic = \"^a.*\"\n[sink]\nkind = \"postgres\"\nurl = \"postgres://db/k\"\ntable = \"rows\"\n",
            "topic.name",
            "the postgres sink keeps the consumer's positions for one topic",
        ),
        (
            Some(Role::Single),
            "topic = [\"a\", \"a.dlq\"]\n",
            "topic.name",
            "lists `a.dlq`, the default dead-letter topic of another topic listed",
        ),
    ] {
        let error = refused(role, text);
        assert!(
            error.starts_with(&format!("`{key}` (file ")) && error.contains(says),
            "{text}: {error}"
        );
    }
    let error = load(&LoadRequest {
        topic: Some("^x[".into()),
        ..LoadRequest::default()
    })
    .expect_err("bad pattern")
    .to_string();
    assert!(error.starts_with("`topic.name` (flag --topic)"), "{error}");
}

#[test]
fn the_consumers_read_a_list_or_a_pattern() {
    for role in [Role::Single, Role::Batch] {
        let list = loaded(Some(role), "topic = [\"orders\", \"refunds\"]\n");
        assert_eq!(list.topic.selection.subscription(), ["orders", "refunds"]);
        assert_eq!(
            list.dead_letter_topic_of("refunds").as_deref(),
            Some("refunds.dlq")
        );
        let pattern = loaded(Some(role), "topic = \"^orders\\\\..*\"\n");
        assert_eq!(pattern.topic.selection.subscription(), [r"^orders\..*"]);
    }
}

#[test]
fn config_print_shows_formats_sources_and_topic_lists() {
    let printed = load_toml(None, "[consumer]\nformat = \"json\"\n")
        .expect("valid")
        .render();
    assert!(printed.contains("[consumer]"), "{printed}");
    assert!(
        printed
            .lines()
            .any(|l| l.starts_with("format = \"json\"") && l.contains("# file ")),
        "{printed}"
    );
    let printed = load_toml(
        Some(Role::Producer),
        "[producer]\nsource = \"stdin\"\nformat = \"text\"\n",
    )
    .expect("valid")
    .render();
    assert!(
        printed.lines().any(|l| l.starts_with("source = \"stdin\"")),
        "{printed}"
    );
    let printed = load_toml(None, "topic = [\"a\", \"b\"]\n")
        .expect("valid")
        .render();
    assert!(
        printed
            .lines()
            .any(|l| l.starts_with("name = [\"a\", \"b\"]")),
        "{printed}"
    );
    assert!(
        printed
            .lines()
            .any(|l| l.starts_with("dlq_topic = \"<topic>.dlq\"") && l.contains("each topic's own")),
        "{printed}"
    );
}
