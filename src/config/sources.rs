//! The configuration layers as `config` crate sources: built-in defaults, the TOML file, the
//! `KAFKAD_*` environment and command-line flags.
//!
//! Each source tags every value with its origin (`Value::origin`), so the merged configuration
//! can say where any value came from: `config print` shows it, and every error names it.
//! The `config` crate's own `File` and `Environment` sources are not used because of two
//! kafkad rules they cannot express: librdkafka property names are dotted (`bootstrap.servers`
//! must stay one key, while `KAFKAD_KAFKA__BOOTSTRAP_SERVERS` must become it), and
//! `topic = "name"` is shorthand for `[topic] name = "name"`.

use std::path::{Path, PathBuf};

use config::{Map, Source, Value, ValueKind};

use super::ConfigError;

/// The environment prefix of every kafkad variable.
pub const ENV_PREFIX: &str = "KAFKAD_";
/// Variables with the prefix that are command-line flags, not configuration keys.
pub const ENV_FLAGS: &[&str] = &["KAFKAD_CONFIG"];

/// Where a value came from, as written into `Value::origin`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Default,
    File(PathBuf),
    Env(String),
    Flag(String),
}

impl Origin {
    fn tag(&self) -> Option<String> {
        match self {
            Origin::Default => None,
            Origin::File(path) => Some(format!("file {}", path.display())),
            Origin::Env(name) => Some(format!("env {name}")),
            Origin::Flag(flag) => Some(format!("flag {flag}")),
        }
    }

    /// Reads an origin back from a value: `default`, `file <path>`, `env <VAR>`, `flag <flag>`.
    pub fn describe(value_origin: Option<&str>) -> String {
        value_origin.unwrap_or("default").to_owned()
    }
}

/// A key path: `["batch", "min_size"]`, `["kafka", "bootstrap.servers"]`, `["role"]`.
pub type KeyPath = Vec<String>;

/// Splits a dotted key as an operator writes it (`--set kafka.bootstrap.servers=...`,
/// `batch.min_size`): the first segment names the table, and under `[kafka]` the rest is one
/// librdkafka property name.
pub fn split_key(key: &str) -> KeyPath {
    match key.split_once('.') {
        Some(("kafka", property)) => vec!["kafka".to_owned(), property.to_owned()],
        _ => match key.strip_prefix("topic.config.") {
            Some(name) => vec!["topic".to_owned(), "config".to_owned(), name.to_owned()],
            None => normalize_topic(key.split('.').map(str::to_owned).collect()),
        },
    }
}

/// `topic` alone is the topic's name.
fn normalize_topic(path: KeyPath) -> KeyPath {
    if path.len() == 1 && path[0] == "topic" {
        vec!["topic".to_owned(), "name".to_owned()]
    } else {
        path
    }
}

fn insert(map: &mut Map<String, Value>, path: &[String], value: Value) {
    let (first, rest) = path.split_first().expect("key paths are never empty");
    if rest.is_empty() {
        map.insert(first.clone(), value);
        return;
    }
    let entry = map
        .entry(first.clone())
        .or_insert_with(|| Value::new(None, ValueKind::Table(Map::new())));
    if !matches!(entry.kind, ValueKind::Table(_)) {
        *entry = Value::new(None, ValueKind::Table(Map::new()));
    }
    if let ValueKind::Table(table) = &mut entry.kind {
        insert(table, rest, value);
    }
}

/// A TOML document as a source, every value tagged with `origin`.
#[derive(Debug, Clone)]
pub struct TomlSource {
    map: Map<String, Value>,
}

impl TomlSource {
    /// Reads and parses a TOML file.
    pub fn file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
            path: path.to_owned(),
            source,
        })?;
        let table: toml::Table = toml::from_str(&text).map_err(|error| ConfigError::Syntax {
            path: path.to_owned(),
            at: error.span().map(|span| Position::of(&text, span.start)),
            message: error.message().trim().replace('\n', " "),
        })?;
        Ok(Self::from_table(table, &Origin::File(path.to_owned())))
    }

    /// A layer of the built-in defaults (see `defaults`).
    pub fn defaults(table: toml::Table) -> Self {
        Self::from_table(table, &Origin::Default)
    }

    fn from_table(table: toml::Table, origin: &Origin) -> Self {
        let tag = origin.tag();
        let mut map = Map::new();
        for (key, value) in table {
            let value = convert(value, tag.as_ref());
            match (key.as_str(), &value.kind) {
                ("topic", ValueKind::String(_) | ValueKind::Array(_)) => {
                    insert(&mut map, &normalize_topic(vec![key]), value)
                }
                _ => {
                    map.insert(key, value);
                }
            }
        }
        TomlSource { map }
    }
}

/// A place in a file as an editor shows it: 1-based line and column, the column counted in
/// characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl Position {
    /// Where byte `offset` of `text` is (an offset inside a character counts as that
    /// character; one past the end as the end).
    pub fn of(text: &str, offset: usize) -> Self {
        let mut end = offset.min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let before = &text[..end];
        let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
        Position {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

fn convert(value: toml::Value, tag: Option<&String>) -> Value {
    let kind = match value {
        toml::Value::String(s) => ValueKind::String(s),
        toml::Value::Integer(i) => ValueKind::I64(i),
        toml::Value::Float(f) => ValueKind::Float(f),
        toml::Value::Boolean(b) => ValueKind::Boolean(b),
        toml::Value::Datetime(d) => ValueKind::String(d.to_string()),
        toml::Value::Array(items) => {
            ValueKind::Array(items.into_iter().map(|v| convert(v, tag)).collect())
        }
        toml::Value::Table(table) => ValueKind::Table(
            table
                .into_iter()
                .map(|(k, v)| (k, convert(v, tag)))
                .collect(),
        ),
    };
    Value::new(tag, kind)
}

impl Source for TomlSource {
    fn clone_into_box(&self) -> Box<dyn Source + Send + Sync> {
        Box::new(self.clone())
    }

    fn collect(&self) -> Result<Map<String, Value>, config::ConfigError> {
        Ok(self.map.clone())
    }
}

/// `KAFKAD_<SECTION>__<KEY>` variables. `KAFKAD_BATCH__MIN_SIZE` is `batch.min_size`;
/// under `[kafka]` underscores become dots (librdkafka names never hold underscores), so
/// `KAFKAD_KAFKA__FETCH_WAIT_MAX_MS` is `fetch.wait.max.ms`, and likewise for topic configs:
/// `KAFKAD_TOPIC__CONFIG__MIN_INSYNC_REPLICAS` is `topic.config.min.insync.replicas`. A single
/// segment is a top-level key (`KAFKAD_SHUTDOWN_TIMEOUT`), and `KAFKAD_TOPIC` is the topic
/// name. The producer's `source` and `key` tables take a third segment, their one key
/// (`KAFKAD_PRODUCER__SOURCE__FILE`).
///
/// A variable Kubernetes injects for a Service whose name starts with `kafkad` is not
/// configuration: it is set aside (see [`is_service_link`]) instead of failing as an unknown
/// key, which would crash-loop every pod of the namespace the moment such a Service appears.
#[derive(Debug, Clone)]
pub struct EnvSource {
    map: Map<String, Value>,
    /// The service-link variables set aside, by name.
    pub service_links: Vec<String>,
}

impl EnvSource {
    pub fn new(vars: &[(String, String)]) -> Result<Self, ConfigError> {
        let mut map = Map::new();
        let mut service_links = Vec::new();
        for (name, value) in vars {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            if ENV_FLAGS.contains(&name.as_str()) || rest.is_empty() {
                continue;
            }
            if is_service_link(rest, value) {
                service_links.push(name.clone());
                continue;
            }
            let path = env_key_path(rest).ok_or_else(|| ConfigError::UnknownKey {
                key: rest.to_ascii_lowercase(),
                origin: format!("env {name}"),
                hint: "variables are KAFKAD_<KEY> or KAFKAD_<SECTION>__<KEY>".to_owned(),
            })?;
            let tag = Origin::Env(name.clone()).tag();
            insert(
                &mut map,
                &path,
                Value::new(tag.as_ref(), ValueKind::String(value.clone())),
            );
        }
        service_links.sort();
        Ok(EnvSource { map, service_links })
    }
}

/// Whether `KAFKAD_<rest>=<value>` is one of the variables the kubelet writes into every
/// container for each Service of the namespace (unless the pod sets `enableServiceLinks:
/// false`): for a Service `kafkad-metrics` with cluster IP 10.0.0.1 and port 9464 named
/// `http`, `KAFKAD_METRICS_SERVICE_HOST=10.0.0.1`, `KAFKAD_METRICS_SERVICE_PORT=9464`,
/// `KAFKAD_METRICS_SERVICE_PORT_HTTP=9464`, `KAFKAD_METRICS_PORT=tcp://10.0.0.1:9464`,
/// `KAFKAD_METRICS_PORT_9464_TCP=tcp://10.0.0.1:9464` and its `_PROTO=tcp`, `_PORT=9464` and
/// `_ADDR=10.0.0.1`. Both the name's ending and the value's form must match, so a mistyped
/// kafkad variable is still an unknown key: no kafkad key ends like these names, and none
/// takes a `tcp://address:port` or a bare IP address.
pub fn is_service_link(rest: &str, value: &str) -> bool {
    let is_ip = || value.parse::<std::net::IpAddr>().is_ok();
    let is_port = || value.parse::<u16>().is_ok_and(|port| port > 0);
    let tokens: Vec<&str> = rest.split('_').collect();
    // `<SERVICE>_SERVICE_PORT`, and `<SERVICE>_SERVICE_PORT_<PORT NAME>` for named ports.
    let service_port = tokens.windows(2).any(|pair| pair == ["SERVICE", "PORT"]);
    match tokens.as_slice() {
        [.., "SERVICE", "HOST"] if is_ip() => true,
        _ if service_port && is_port() => true,
        [.., "PORT"] if link_address(value).is_some() => true,
        [.., "PORT", port, protocol] => {
            link_address(value) == Some((protocol.to_ascii_lowercase(), (*port).to_owned()))
        }
        [.., "PORT", _, protocol, "PROTO"] => value == protocol.to_ascii_lowercase(),
        [.., "PORT", port, _, "PORT"] => value == *port,
        [.., "PORT", _, _, "ADDR"] => is_ip(),
        _ => false,
    }
}

/// The protocol and port of a Docker-style link address, `tcp://10.0.0.1:9464` (also `udp`,
/// `sctp`, and `[fd00::1]:9464` for IPv6).
fn link_address(value: &str) -> Option<(String, String)> {
    let (protocol, address) = value.split_once("://")?;
    if !matches!(protocol, "tcp" | "udp" | "sctp") {
        return None;
    }
    let address: std::net::SocketAddr = address.parse().ok()?;
    Some((protocol.to_owned(), address.port().to_string()))
}

fn env_key_path(rest: &str) -> Option<KeyPath> {
    let segments: Vec<&str> = rest.split("__").collect();
    match segments.as_slice() {
        // Topic config names, like librdkafka's, are dotted words without underscores.
        ["TOPIC", "CONFIG", name] if !name.is_empty() => Some(vec![
            "topic".to_owned(),
            "config".to_owned(),
            name.to_ascii_lowercase().replace('_', "."),
        ]),
        // The producer's input is a table of one key: `KAFKAD_PRODUCER__SOURCE__FILE=/in`
        // is `source = { file = "/in" }`, `KAFKAD_PRODUCER__KEY__FIELD=id` `key = { field = "id" }`.
        ["PRODUCER", table @ ("SOURCE" | "KEY"), variant] if !variant.is_empty() => Some(vec![
            "producer".to_owned(),
            table.to_ascii_lowercase(),
            variant.to_ascii_lowercase(),
        ]),
        [key] if !key.is_empty() => Some(normalize_topic(vec![key.to_ascii_lowercase()])),
        [section, key] if !section.is_empty() && !key.is_empty() => {
            let section = section.to_ascii_lowercase();
            let key = if section == "kafka" {
                key.to_ascii_lowercase().replace('_', ".")
            } else {
                key.to_ascii_lowercase()
            };
            Some(vec![section, key])
        }
        _ => None,
    }
}

/// Values from the command line: dedicated flags (`--role`, `--topic`) and `--set KEY=VALUE`.
#[derive(Debug, Clone, Default)]
pub struct FlagSource {
    map: Map<String, Value>,
}

impl FlagSource {
    /// Adds a value at a dotted key, shown as coming from `flag`.
    pub fn set(&mut self, key: &str, value: &str, flag: &str) {
        let tag = Origin::Flag(flag.to_owned()).tag();
        insert(
            &mut self.map,
            &split_key(key),
            Value::new(tag.as_ref(), ValueKind::String(value.to_owned())),
        );
    }
}

impl Source for FlagSource {
    fn clone_into_box(&self) -> Box<dyn Source + Send + Sync> {
        Box::new(self.clone())
    }

    fn collect(&self) -> Result<Map<String, Value>, config::ConfigError> {
        Ok(self.map.clone())
    }
}

impl Source for EnvSource {
    fn clone_into_box(&self) -> Box<dyn Source + Send + Sync> {
        Box::new(self.clone())
    }

    fn collect(&self) -> Result<Map<String, Value>, config::ConfigError> {
        Ok(self.map.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names_map_to_keys() {
        let path = |s: &str| env_key_path(s).expect("valid");
        assert_eq!(path("BATCH__MIN_SIZE"), ["batch", "min_size"]);
        assert_eq!(
            path("KAFKA__FETCH_WAIT_MAX_MS"),
            ["kafka", "fetch.wait.max.ms"]
        );
        assert_eq!(path("SHUTDOWN_TIMEOUT"), ["shutdown_timeout"]);
        assert_eq!(path("TOPIC"), ["topic", "name"]);
        assert_eq!(path("TOPIC__PARTITIONS"), ["topic", "partitions"]);
        assert_eq!(
            path("TOPIC__CONFIG__MIN_INSYNC_REPLICAS"),
            ["topic", "config", "min.insync.replicas"]
        );
        assert_eq!(env_key_path("A__B__C"), None);
        assert_eq!(
            env_key_path("PRODUCER__SOURCE__FILE"),
            Some(vec!["producer".into(), "source".into(), "file".into()])
        );
        assert_eq!(env_key_path("PRODUCER__COUNT__X"), None);
        assert_eq!(env_key_path("BATCH__CONFIG__X"), None);
        assert_eq!(env_key_path("KAFKA__"), None);
    }

    #[test]
    fn positions_count_lines_and_characters_from_one() {
        let text = "a = 1\nname = \"é\" x\n";
        assert_eq!(Position::of(text, 0), Position { line: 1, column: 1 });
        assert_eq!(Position::of(text, 6), Position { line: 2, column: 1 });
        // After the two-byte `é`, the column counts characters, not bytes.
        let x = text.find(" x").expect("x") + 1;
        assert_eq!(
            Position::of(text, x),
            Position {
                line: 2,
                column: 12
            }
        );
        assert_eq!(Position::of(text, 15), Position::of(text, 14), "inside `é`");
        assert_eq!(Position::of(text, 999), Position { line: 3, column: 1 });
    }

    #[test]
    fn dotted_keys_keep_librdkafka_names_whole() {
        assert_eq!(
            split_key("kafka.bootstrap.servers"),
            ["kafka", "bootstrap.servers"]
        );
        assert_eq!(split_key("batch.max_wait"), ["batch", "max_wait"]);
        assert_eq!(split_key("topic"), ["topic", "name"]);
        assert_eq!(
            split_key("topic.config.retention.ms"),
            ["topic", "config", "retention.ms"]
        );
    }
}
