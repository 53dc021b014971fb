//! `config print`: the effective configuration as TOML, one value per line followed by the
//! layer it came from. The output is itself a valid config file (secrets aside).

use std::fmt::Write;

use config::{Map, Value};

use super::{origin_of, Role, Settings, MIN_INSYNC_REPLICAS};

/// Width of the `key = value` column before the `# source` comment.
const COLUMN: usize = 48;

/// The tables, in the order they are printed.
const TABLES: [&str; 10] = [
    "topic",
    "kafka",
    "producer",
    "consumer",
    "batch",
    "sink",
    "retry",
    "http",
    "log",
    "schema_registry",
];

pub(super) fn render(
    settings: &Settings,
    tree: &Map<String, Value>,
    service_links: &[String],
) -> String {
    let document = toml::Value::try_from(settings).expect("settings serialize to TOML");
    let toml::Value::Table(document) = document else {
        unreachable!("settings are a struct");
    };
    let mut out = String::new();
    header(&mut out, service_links);
    top_level(&mut out, settings, &document, tree);
    for table in TABLES {
        if table == "schema_registry" && settings.schema_registry.is_none() {
            continue;
        }
        let _ = writeln!(out, "\n[{table}]");
        let Some(toml::Value::Table(values)) = document.get(table) else {
            continue;
        };
        table_values(&mut out, table, values, tree);
        table_defaults(&mut out, table, settings, tree);
    }
    out
}

/// The first comment lines: what the output is, and the Kubernetes service links set aside.
fn header(out: &mut String, service_links: &[String]) {
    let _ = writeln!(
        out,
        "# kafkad effective configuration; each value's source follows it"
    );
    for name in service_links {
        let _ = writeln!(
            out,
            "# not configuration: {name} (a Kubernetes service link, set aside)"
        );
    }
}

/// The keys outside any table: `role`, the durations and limits, and `dlq_topic`.
fn top_level(
    out: &mut String,
    settings: &Settings,
    document: &toml::Table,
    tree: &Map<String, Value>,
) {
    match settings.role {
        Some(role) => line(out, "role", &quote(role.as_str()), &origin_of(tree, "role")),
        None => out.push_str("# role: not set\n"),
    }
    for key in [
        "shutdown_timeout",
        "summary_interval",
        "stall_timeout",
        "max_record_bytes",
    ] {
        if let Some(value) = document.get(key) {
            line(out, key, &value.to_string(), &origin_of(tree, key));
        }
    }
    dlq_topic(out, settings, tree);
}

/// `dlq_topic`: as configured, disabled, or the default each topic gets.
fn dlq_topic(out: &mut String, settings: &Settings, tree: &Map<String, Value>) {
    let dlq_origin = || origin_of(tree, "dlq_topic");
    match (&settings.dlq_topic, settings.dlq_topic()) {
        (Some(dlq), _) if dlq.is_empty() => line(
            out,
            "dlq_topic",
            "\"\"",
            &format!("{} (dead-letter topic disabled)", dlq_origin()),
        ),
        (Some(dlq), _) => line(out, "dlq_topic", &quote(dlq), &dlq_origin()),
        (None, Some(dlq)) if !settings.topic.name.is_empty() => {
            line(out, "dlq_topic", &quote(&dlq), "default (<topic>.dlq)")
        }
        (None, _) => line(
            out,
            "dlq_topic",
            "\"<topic>.dlq\"",
            "default (each topic's own)",
        ),
    }
}

/// A table's values in key order, each with its source; `[kafka]` keys are quoted (they hold
/// dots), and `[topic.config]` comes after the table, on its own.
fn table_values(out: &mut String, table: &str, values: &toml::Table, tree: &Map<String, Value>) {
    let mut keys: Vec<&String> = values.keys().collect();
    keys.sort();
    for key in keys {
        if table == "topic" && key == "config" {
            continue;
        }
        let value = &values[key];
        let shown_key = if table == "kafka" {
            quote(key)
        } else {
            key.clone()
        };
        let shown_value = match value {
            toml::Value::Table(reference) => inline_table(reference),
            other => other.to_string(),
        };
        line(
            out,
            &shown_key,
            &shown_value,
            &origin_of(tree, &format!("{table}.{key}")),
        );
    }
}

/// What a table gets after its values: the defaults kafkad fills in where nothing is
/// configured (`client.id`, `producer_id`, `[topic.config]`), and the note on `retries`.
fn table_defaults(out: &mut String, table: &str, settings: &Settings, tree: &Map<String, Value>) {
    if table == "kafka" && !settings.kafka.0.contains_key("client.id") {
        line(
            out,
            &quote("client.id"),
            &quote(&settings.default_client_id()),
            "default (kafkad-<role>-<producer id, or host name-pid>)",
        );
    }
    let retry_count_set = ["retries", "message.send.max.retries"]
        .iter()
        .any(|name| settings.resolved_kafka.get(name).is_some());
    if table == "kafka" && settings.role == Some(Role::Producer) && !retry_count_set {
        let _ = writeln!(
            out,
            "# \"retries\" is not set: librdkafka retries a message until delivery.timeout.ms; the seed's retries=10 would fail it after about ten retriable errors (a leader election, NOT_ENOUGH_REPLICAS), long before that"
        );
    }
    let consumer = settings.role.and_then(Role::consumer);
    if let Some(consumer) = consumer.filter(|_| table == "kafka") {
        // Shown commented out: the output stays a config file kafkad accepts.
        for (name, value) in consumer.owned_properties() {
            let assignment = format!("# {} = {}", quote(name), quote(value));
            let _ = writeln!(
                out,
                "{assignment:<COLUMN$} # set by kafkad for the {} role; not configurable",
                consumer.role()
            );
        }
    }
    if table == "topic" {
        topic_config(out, settings, tree);
    }
    if table == "producer" && settings.producer.producer_id.is_none() {
        line(
            out,
            "producer_id",
            &quote(&settings.producer.producer_id()),
            "default (<host name>-<pid>)",
        );
    }
}

/// `[topic.config]`: each configured name with its source, and the default
/// `min.insync.replicas` where none is configured.
fn topic_config(out: &mut String, settings: &Settings, tree: &Map<String, Value>) {
    let _ = writeln!(out, "\n[topic.config]");
    for (name, value) in &settings.topic.config {
        line(
            out,
            &quote(name),
            &quote(value),
            &origin_of(tree, &format!("topic.config.{name}")),
        );
    }
    if !settings.topic.config.contains_key(MIN_INSYNC_REPLICAS) {
        line(
            out,
            &quote(MIN_INSYNC_REPLICAS),
            &quote(&settings.topic.default_min_insync_replicas().to_string()),
            "default (2, or 1 for a single replica)",
        );
    }
}

fn line(out: &mut String, key: &str, value: &str, origin: &str) {
    let assignment = format!("{key} = {value}");
    let _ = writeln!(out, "{assignment:<COLUMN$} # {origin}");
}

fn quote(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

fn inline_table(table: &toml::Table) -> String {
    let fields: Vec<String> = table.iter().map(|(k, v)| format!("{k} = {v}")).collect();
    format!("{{ {} }}", fields.join(", "))
}
