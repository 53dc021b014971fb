//! Layered configuration.
//!
//! Lowest first: built-in defaults (the seed's settings for the role) < TOML file (`--config`)
//! < environment (`KAFKAD_*`) < command-line flags. Layering and merging are the `config`
//! crate's; kafkad's sources ([`sources`]) tag every value with where it came from, so each
//! error names the key and its file or variable, and `config print` shows the source of each
//! value.
//!
//! Validation is strict: an unknown key is an error (a typo must not silently fall back to a
//! default), and the `[kafka]` table goes through librdkafka's own `rd_kafka_conf_set` before
//! anything connects.

pub mod kafka;
mod librdkafka_properties;
mod render;
pub mod sources;

use std::path::{Path, PathBuf};
use std::time::Duration;

use config::{Map, Value, ValueKind};
use serde::{Deserialize, Serialize};

pub use kafka::{KafkaProperties, KafkaValue, PropertyError, Scope};
pub use librdkafka_properties::LIBRDKAFKA_VERSION;
use sources::{EnvSource, FlagSource, Origin, TomlSource};

/// Which loop this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Sends `KafkaMessage`s with counted delivery reports.
    Producer,
    /// Consumes one message at a time; offsets stored after processing, auto-committed.
    Single,
    /// Consumes in batches; commits last+1 per partition after each batch.
    Batch,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Producer => "producer",
            Role::Single => "single",
            Role::Batch => "batch",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "producer" => Some(Role::Producer),
            "single" => Some(Role::Single),
            "batch" => Some(Role::Batch),
            _ => None,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Settings every role shares, as defaults. Kafka properties here apply to every client.
const COMMON_DEFAULTS: &str = r#"
shutdown_timeout = "30s"
summary_interval = "10s"
max_record_bytes = 1048576

[http]
listen = "0.0.0.0:9464"

[log]
format = "text"
level = "info"

[topic]
name = "andrew-topic"
partitions = 3
replication_factor = 2

[kafka]
"bootstrap.servers" = "localhost:9092"
# Feeds consumer lag and broker connection state into /metrics (and producer readiness).
"statistics.interval.ms" = "5000"

[producer]
count = 0
rate = 0.0
content = "Message {id} from {producer_id}"
payload_bytes = 0

[batch]
min_size = 10
max_size = 500
max_wait = "5s"

[sink]
kind = "log"
"#;

/// The seed's producer: acks from all in-sync replicas, idempotence, ordered retries, lz4.
const PRODUCER_DEFAULTS: &str = r#"
[kafka]
"acks" = "all"
"retries" = "10"
"enable.idempotence" = "true"
"delivery.timeout.ms" = "120000"
"max.in.flight.requests.per.connection" = "1"
"compression.type" = "lz4"
"linger.ms" = "5"
"#;

/// What both consumer roles share, below their own defaults.
const CONSUMER_DEFAULTS: &str = r#"
[kafka]
# Memory and backlog throughput (see BENCHMARKS.md): prefetch at most 20000 messages per
# partition (librdkafka's 100000 takes a consumer reading a backlog past 64 MB of RSS), and
# refill the prefetch queue 10 ms after it drained (librdkafka waits 1 s, which capped a
# backlog at ~140k msgs/s on the bench).
"queued.min.messages" = "20000"
"fetch.queue.backoff.ms" = "10"
"#;

/// The seed's one-at-a-time consumer. Auto commit stays on as in the seed, but
/// `enable.auto.offset.store = false`: kafkad stores an offset only once the message was
/// processed, so auto commit never commits a message that was not.
const SINGLE_DEFAULTS: &str = r#"
[kafka]
"group.id" = "single-message-group"
"enable.auto.commit" = "true"
"enable.auto.offset.store" = "false"
"fetch.min.bytes" = "1"
"fetch.wait.max.ms" = "500"
"auto.offset.reset" = "earliest"
"#;

/// The seed's batch consumer: manual commits after each processed batch.
const BATCH_DEFAULTS: &str = r#"
[kafka]
"group.id" = "batch-message-group"
"enable.auto.commit" = "false"
"enable.auto.offset.store" = "false"
"fetch.min.bytes" = "1024"
"fetch.wait.max.ms" = "5000"
"auto.offset.reset" = "earliest"
"#;

/// The default layers of a role, lowest first (after [`COMMON_DEFAULTS`]).
fn role_defaults(role: Role) -> &'static [&'static str] {
    match role {
        Role::Producer => &[PRODUCER_DEFAULTS],
        Role::Single => &[CONSUMER_DEFAULTS, SINGLE_DEFAULTS],
        Role::Batch => &[CONSUMER_DEFAULTS, BATCH_DEFAULTS],
    }
}

/// The effective configuration of one process.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The role to run; `None` only for sub-commands that need no role (`topic ensure`).
    pub role: Option<Role>,
    /// The topic and, for `topic ensure`, its shape.
    pub topic: TopicSettings,
    /// How long a graceful shutdown may take before kafkad gives up and exits 1.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// Dead-letter topic for records that cannot be decoded. Unset: `<topic>.dlq`.
    /// `""`: no dead-letter topic (bad records are only logged and counted, then skipped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dlq_topic: Option<String>,
    /// Records with a larger value are dead-lettered without being parsed.
    pub max_record_bytes: usize,
    /// How often each role logs a one-line summary (rates, totals, lag).
    #[serde(with = "humantime_serde")]
    pub summary_interval: Duration,
    /// librdkafka properties, verbatim.
    #[serde(serialize_with = "serialize_kafka")]
    pub kafka: Map<String, KafkaValue>,
    pub producer: ProducerSettings,
    pub batch: BatchSettings,
    pub sink: SinkSettings,
    pub http: HttpSettings,
    pub log: LogSettings,
    /// `[kafka]` with secret references resolved; filled in by [`load`].
    #[serde(skip)]
    pub resolved_kafka: KafkaProperties,
}

fn serialize_kafka<S: serde::Serializer>(
    map: &Map<String, KafkaValue>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut out = serializer.serialize_map(Some(map.len()))?;
    for (name, value) in map {
        match value {
            KafkaValue::Text(text) if kafka::is_secret(name) => {
                out.serialize_entry(name, kafka::REDACTED)?
            }
            KafkaValue::Text(text) => out.serialize_entry(name, text)?,
            KafkaValue::FromFile(path) => out.serialize_entry(
                name,
                &Map::from([("file".to_owned(), path.display().to_string())]),
            )?,
            KafkaValue::FromEnv(var) => {
                out.serialize_entry(name, &Map::from([("env".to_owned(), var.clone())]))?
            }
        }
    }
    out.end()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicSettings {
    /// The topic every role uses (`topic = "name"` at the top level is shorthand for this).
    pub name: String,
    /// Partitions `topic ensure` creates or expects.
    pub partitions: i32,
    /// Replication factor `topic ensure` creates or expects.
    pub replication_factor: i32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProducerSettings {
    /// Messages to send before flushing and exiting; 0 sends until stopped.
    pub count: u64,
    /// Messages per second; 0 sends as fast as librdkafka accepts them.
    pub rate: f64,
    /// Identifies this producer in every message. Unset: `<host name>-<pid>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub producer_id: Option<String>,
    /// Message text; `{id}` and `{producer_id}` are replaced.
    pub content: String,
    /// Pads `content` with this many extra bytes, for load tests.
    pub payload_bytes: usize,
}

impl ProducerSettings {
    /// The configured id, or `<host name>-<pid>`, unique per process on a host.
    pub fn producer_id(&self) -> String {
        self.producer_id
            .clone()
            .filter(|id| !id.is_empty())
            .unwrap_or_else(|| format!("{}-{}", host_name(), std::process::id()))
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "kafkad".to_owned())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchSettings {
    /// A batch is processed once it holds this many records and no more are waiting...
    pub min_size: usize,
    /// ...or as soon as it holds this many...
    pub max_size: usize,
    /// ...or when its first record has waited this long, however few it holds.
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    /// Logs each message (single) or a summary per batch.
    Log,
    /// Appends one JSON line per processed message to `path`.
    Jsonl,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkSettings {
    pub kind: SinkKind,
    /// Output file of the `jsonl` sink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
}

/// The HTTP endpoint: `/metrics`, `/healthz`, `/readyz`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// Address to listen on, e.g. `0.0.0.0:9464`; `""` turns the endpoint off.
    pub listen: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, with the role's span fields.
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    /// A tracing filter (`info`, `kafkad=debug,librdkafka=info`); `RUST_LOG` overrides it.
    pub level: String,
}

impl Settings {
    /// The dead-letter topic, or `None` where the operator disabled it with `dlq_topic = ""`.
    pub fn dlq_topic(&self) -> Option<String> {
        match &self.dlq_topic {
            None => Some(format!("{}.dlq", self.topic.name)),
            Some(topic) if topic.is_empty() => None,
            Some(topic) => Some(topic.clone()),
        }
    }
}

/// Keys allowed outside `[kafka]`, table by table; `[kafka]` is checked by librdkafka.
const TOP_LEVEL_KEYS: &[&str] = &[
    "role",
    "shutdown_timeout",
    "summary_interval",
    "dlq_topic",
    "max_record_bytes",
];
const TABLE_KEYS: &[(&str, &[&str])] = &[
    ("topic", &["name", "partitions", "replication_factor"]),
    (
        "producer",
        &["count", "rate", "producer_id", "content", "payload_bytes"],
    ),
    ("batch", &["min_size", "max_size", "max_wait"]),
    ("sink", &["kind", "path"]),
    ("http", &["listen"]),
    ("log", &["format", "level"]),
    ("kafka", &[]),
];

/// A configuration problem, always one line naming the key and where its value came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}", path.display())]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {} is not valid TOML: {message}", path.display())]
    Syntax { path: PathBuf, message: String },
    #[error("unknown key `{key}` ({origin}); {hint}")]
    UnknownKey {
        key: String,
        origin: String,
        hint: String,
    },
    #[error("`{key}` ({origin}): {message}")]
    Invalid {
        key: String,
        origin: String,
        message: String,
    },
    #[error("no role given: pass --role producer|single|batch, set `role` in the config file, or set KAFKAD_ROLE")]
    NoRole,
}

/// What the command line asks for; the environment is passed in so tests need not touch the
/// process environment.
#[derive(Debug, Clone, Default)]
pub struct LoadRequest {
    /// `--config`.
    pub file: Option<PathBuf>,
    /// `--role`.
    pub role: Option<Role>,
    /// `--topic`.
    pub topic: Option<String>,
    /// `--set KEY=VALUE`, in order.
    pub overrides: Vec<(String, String)>,
    /// The environment (normally `std::env::vars()`).
    pub env: Vec<(String, String)>,
    /// Whether the command needs a role (`run`) or works without one (`topic ensure`).
    pub role_required: bool,
}

impl LoadRequest {
    /// A request that reads the real process environment.
    pub fn with_process_env(mut self) -> Self {
        self.env = std::env::vars().collect();
        self
    }
}

/// Merged settings plus the merged value tree they came from (which keeps each value's origin).
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub settings: Settings,
    tree: Map<String, Value>,
}

/// Loads, layers and validates the configuration.
pub fn load(request: &LoadRequest) -> Result<LoadedConfig, ConfigError> {
    let file = request.file.as_deref().map(TomlSource::file).transpose()?;
    let env = EnvSource::new(&request.env)?;
    let mut flags = FlagSource::default();
    if let Some(role) = request.role {
        flags.set("role", role.as_str(), "--role");
    }
    if let Some(topic) = &request.topic {
        flags.set("topic", topic, "--topic");
    }
    for (key, value) in &request.overrides {
        flags.set(key, value, &format!("--set {key}"));
    }

    // The role picks the defaults, so it is read from the upper layers first.
    let upper = build(None, file.as_ref(), &env, &flags)?;
    let role = match upper.get("role") {
        None => None,
        Some(value) => {
            let text = value.clone().into_string().unwrap_or_default();
            Some(Role::parse(&text).ok_or_else(|| ConfigError::Invalid {
                key: "role".to_owned(),
                origin: Origin::describe(value.origin()),
                message: format!("unknown role `{text}`; allowed: producer, single, batch"),
            })?)
        }
    };
    if role.is_none() && request.role_required {
        return Err(ConfigError::NoRole);
    }

    let tree = build(role, file.as_ref(), &env, &flags)?;
    check_keys(&tree)?;
    let mut settings: Settings = Value::new(None, ValueKind::Table(tree.clone()))
        .try_deserialize()
        .map_err(|e| deserialize_error(e, &tree))?;
    settings.role = role;
    settings.resolved_kafka = resolve_kafka(&settings.kafka, &request.env, &tree)?;
    validate(&settings, &tree)?;
    Ok(LoadedConfig { settings, tree })
}

fn build(
    role: Option<Role>,
    file: Option<&TomlSource>,
    env: &EnvSource,
    flags: &FlagSource,
) -> Result<Map<String, Value>, ConfigError> {
    let mut builder = config::Config::builder().add_source(TomlSource::defaults(COMMON_DEFAULTS));
    for layer in role.map(role_defaults).unwrap_or_default() {
        builder = builder.add_source(TomlSource::defaults(layer));
    }
    if let Some(file) = file {
        builder = builder.add_source(file.clone());
    }
    let merged = builder
        .add_source(env.clone())
        .add_source(flags.clone())
        .build()
        .and_then(|c| config::Source::collect(&c))
        .map_err(|e| ConfigError::Invalid {
            key: "(configuration)".to_owned(),
            origin: "merge".to_owned(),
            message: e.to_string(),
        })?;
    Ok(merged)
}

/// Every key outside `[kafka]` must be one kafkad knows.
fn check_keys(tree: &Map<String, Value>) -> Result<(), ConfigError> {
    for (key, value) in tree {
        if TOP_LEVEL_KEYS.contains(&key.as_str()) {
            continue;
        }
        let Some((_, allowed)) = TABLE_KEYS.iter().find(|(table, _)| table == key) else {
            let mut known: Vec<&str> = TOP_LEVEL_KEYS.to_vec();
            known.extend(TABLE_KEYS.iter().map(|(t, _)| *t));
            return Err(ConfigError::UnknownKey {
                key: key.clone(),
                origin: Origin::describe(first_origin(value)),
                hint: format!("allowed top-level keys: {}", known.join(", ")),
            });
        };
        let ValueKind::Table(table) = &value.kind else {
            return Err(ConfigError::Invalid {
                key: key.clone(),
                origin: Origin::describe(value.origin()),
                message: format!("expected a table `[{key}]`"),
            });
        };
        if key == "kafka" {
            continue;
        }
        for (inner, inner_value) in table {
            if !allowed.contains(&inner.as_str()) {
                return Err(ConfigError::UnknownKey {
                    key: format!("{key}.{inner}"),
                    origin: Origin::describe(inner_value.origin()),
                    hint: format!("allowed keys in [{key}]: {}", allowed.join(", ")),
                });
            }
        }
    }
    Ok(())
}

/// The origin of a value, or of the first leaf under a table.
fn first_origin(value: &Value) -> Option<&str> {
    match &value.kind {
        ValueKind::Table(table) => table.values().find_map(first_origin),
        _ => value.origin(),
    }
}

/// Looks a dotted key up in the merged tree (keeping `[kafka]` names whole).
fn lookup<'t>(tree: &'t Map<String, Value>, key: &str) -> Option<&'t Value> {
    let path = sources::split_key(key);
    let mut current = tree.get(&path[0])?;
    for segment in &path[1..] {
        let ValueKind::Table(table) = &current.kind else {
            return None;
        };
        current = table.get(segment)?;
    }
    Some(current)
}

fn origin_of(tree: &Map<String, Value>, key: &str) -> String {
    Origin::describe(lookup(tree, key).and_then(first_origin))
}

fn deserialize_error(error: config::ConfigError, tree: &Map<String, Value>) -> ConfigError {
    let (key, message) = match error {
        config::ConfigError::Type {
            key,
            unexpected,
            expected,
            ..
        } => (key, format!("expected {expected}, found {unexpected}")),
        config::ConfigError::At { error, key, .. } => (key, error.to_string()),
        config::ConfigError::NotFound(key) => (Some(key), "missing".to_owned()),
        other => (None, other.to_string()),
    };
    let key = key.unwrap_or_else(|| "(configuration)".to_owned());
    let origin = origin_of(tree, &key);
    ConfigError::Invalid {
        key,
        origin,
        message: message.replace('\n', " "),
    }
}

fn resolve_kafka(
    kafka: &Map<String, KafkaValue>,
    env: &[(String, String)],
    tree: &Map<String, Value>,
) -> Result<KafkaProperties, ConfigError> {
    let mut resolved = std::collections::BTreeMap::new();
    for (name, value) in kafka {
        let invalid = |message: String| ConfigError::Invalid {
            key: format!("kafka.{name}"),
            origin: origin_of(tree, &format!("kafka.{name}")),
            message,
        };
        let text = match value {
            KafkaValue::Text(text) => text.clone(),
            KafkaValue::FromFile(path) => read_secret_file(path)
                .map_err(|e| invalid(format!("cannot read {}: {e}", path.display())))?,
            KafkaValue::FromEnv(var) => env
                .iter()
                .find(|(name, _)| name == var)
                .map(|(_, value)| value.clone())
                .ok_or_else(|| invalid(format!("environment variable {var} is not set")))?,
        };
        resolved.insert(name.clone(), text);
    }
    Ok(KafkaProperties::new(resolved))
}

/// A secret file's content without the trailing newline editors and `echo` add.
fn read_secret_file(path: &Path) -> std::io::Result<String> {
    let text = std::fs::read_to_string(path)?;
    Ok(text.trim_end_matches(['\n', '\r']).to_owned())
}

/// Checks what serde cannot: value ranges, and settings that would break a role's guarantee.
fn validate(settings: &Settings, tree: &Map<String, Value>) -> Result<(), ConfigError> {
    let fail = |key: &str, message: String| {
        Err(ConfigError::Invalid {
            key: key.to_owned(),
            origin: origin_of(tree, key),
            message,
        })
    };
    if settings.topic.name.trim().is_empty() {
        return fail("topic.name", "must not be empty".to_owned());
    }
    if settings.topic.partitions < 1 {
        return fail("topic.partitions", "must be at least 1".to_owned());
    }
    if settings.topic.replication_factor < 1 {
        return fail("topic.replication_factor", "must be at least 1".to_owned());
    }
    if settings.shutdown_timeout.is_zero() {
        return fail(
            "shutdown_timeout",
            "must be above 0 (e.g. \"30s\")".to_owned(),
        );
    }
    if settings.max_record_bytes == 0 {
        return fail("max_record_bytes", "must be above 0".to_owned());
    }
    if !(settings.producer.rate >= 0.0 && settings.producer.rate.is_finite()) {
        return fail(
            "producer.rate",
            "must be 0 (unlimited) or a positive number of messages per second".to_owned(),
        );
    }
    if settings.batch.min_size == 0 {
        return fail("batch.min_size", "must be at least 1".to_owned());
    }
    if settings.batch.max_size < settings.batch.min_size {
        return fail(
            "batch.max_size",
            format!(
                "must be at least batch.min_size ({})",
                settings.batch.min_size
            ),
        );
    }
    if settings.batch.max_wait.is_zero() {
        return fail("batch.max_wait", "must be above 0 (e.g. \"5s\")".to_owned());
    }
    if settings.summary_interval.is_zero() {
        return fail(
            "summary_interval",
            "must be above 0 (e.g. \"10s\")".to_owned(),
        );
    }
    if !settings.http.listen.is_empty()
        && settings
            .http
            .listen
            .parse::<std::net::SocketAddr>()
            .is_err()
    {
        return fail(
            "http.listen",
            format!(
                "`{}` is not an address like 0.0.0.0:9464 (\"\" turns the endpoint off)",
                settings.http.listen
            ),
        );
    }
    if let Err(error) = tracing_subscriber::EnvFilter::try_new(&settings.log.level) {
        return fail("log.level", format!("not a log filter: {error}"));
    }
    if settings.sink.kind == SinkKind::Jsonl && settings.sink.path.is_none() {
        return fail("sink.path", "the jsonl sink needs a file path".to_owned());
    }

    let kafka = &settings.resolved_kafka;
    kafka.validate().map_err(|error| ConfigError::Invalid {
        key: format!("kafka.{}", error.name),
        origin: origin_of(tree, &format!("kafka.{}", error.name)),
        message: error.to_string(),
    })?;
    // Settings that would silently turn at-least-once into at-most-once.
    match settings.role {
        Some(Role::Single | Role::Batch) if kafka.get("group.id").is_none_or(str::is_empty) => {
            return fail(
                "kafka.group.id",
                "consumers need a consumer group".to_owned(),
            );
        }
        Some(Role::Single | Role::Batch)
            if kafka.flag("enable.auto.offset.store") != Some(false) =>
        {
            return fail(
                "kafka.enable.auto.offset.store",
                "must be false: the consumers store each offset after processing, otherwise a commit could cover messages that were never processed".to_owned(),
            );
        }
        Some(Role::Batch) if kafka.flag("enable.auto.commit") != Some(false) => {
            return fail(
                "kafka.enable.auto.commit",
                "must be false: the batch consumer commits after each processed batch, auto commit would commit records still in the buffer".to_owned(),
            );
        }
        _ => {}
    }
    Ok(())
}

impl LoadedConfig {
    /// `config print`: the effective configuration as TOML, each value followed by its source,
    /// secrets redacted.
    pub fn render(&self) -> String {
        render::render(&self.settings, &self.tree)
    }
}

#[cfg(test)]
mod tests;
