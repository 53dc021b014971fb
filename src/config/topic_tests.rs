//! `topic`, `dlq_topic` and `[topic.config]`: names Kafka accepts, dead-letter topics never
//! read again as input, and the topic config of every layer.

use super::tests::{load_err, load_ok, request, toml_file};
use super::*;

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
