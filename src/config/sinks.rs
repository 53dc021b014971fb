//! The keys of the two sinks that can take part in a transaction: `[sink] kind = "postgres"`
//! and `[sink] kind = "kafka"`, parsed into types (a URL that parses, table and column names
//! PostgreSQL accepts unquoted, a delivery mode), with the password never shown.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::kafka::{KafkaProperties, KafkaValue, REDACTED};
use super::{KafkaTable, SinkHeaders};

/// What a sink that can take part in a transaction promises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// The records and the consumer's next offsets are written in one transaction of the
    /// destination: each record once, across crashes and rebalances.
    ExactlyOnce,
    /// The records are written, then Kafka's offsets committed, as with every other sink: a
    /// crash between the two writes the records again.
    AtLeastOnce,
}

fn exactly_once() -> Delivery {
    Delivery::ExactlyOnce
}

/// `[sink] kind = "postgres"`: one row per message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSettings {
    /// `postgres://user@host:port/database?sslmode=require`; a password in it is never shown.
    pub url: DatabaseUrl,
    /// The password, when it is not in the URL: `{ file = "/run/secrets/pg" }`,
    /// `{ env = "PGPASSWORD" }` or text. Overrides one in the URL.
    #[serde(default, skip_serializing_if = "SecretRef::is_unset")]
    pub password: SecretRef,
    /// The table the rows go to, `name` or `schema.name`.
    pub table: SqlName,
    /// Create `table` (and its unique index for `conflict_key`) when it does not exist.
    #[serde(default, deserialize_with = "flag")]
    pub create_table: bool,
    #[serde(default = "exactly_once")]
    pub delivery: Delivery,
    /// Where `exactly_once` keeps each partition's next offset and its claim; kafkad creates
    /// it when missing.
    #[serde(default = "default_offsets_table")]
    pub offsets_table: SqlName,
    /// `at_least_once` only: what a row whose `conflict_key` is taken does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_conflict: Option<OnConflict>,
    /// The columns of the unique key `on_conflict` looks at, e.g.
    /// `["producer_id", "message_id"]`.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "names"
    )]
    pub conflict_key: Vec<SqlName>,
    /// PEM certificates to trust for the database's TLS besides the system's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    /// How long connecting, and each statement, may take.
    #[serde(default = "default_sink_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_offsets_table() -> SqlName {
    SqlName("kafkad_offsets".to_owned())
}

/// What an insert does with a row whose unique key is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnConflict {
    /// Keep the row that is there (`ON CONFLICT (key) DO NOTHING`): an idempotent write.
    Ignore,
}

/// `[sink] kind = "kafka"`: each message produced to `topic`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkSettings {
    /// The output topic.
    pub topic: String,
    #[serde(default = "exactly_once")]
    pub delivery: Delivery,
    /// The start of each sink worker's `transactional.id` (exactly_once); the rest is the
    /// consumer's `client.id` and the worker's number. A restarted process with the same
    /// ids fences its predecessor's open transactions at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transactional_id: Option<String>,
    /// How long one send, or one transaction's commit, may take.
    #[serde(default = "default_sink_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// librdkafka properties of the output cluster's producer. Without `bootstrap.servers`
    /// the output cluster is the input's: `[kafka]`'s connection settings apply first.
    #[serde(default)]
    pub kafka: KafkaTable,
}

/// A boolean as TOML writes it, or as text (`true`/`false`) from the environment or `--set`:
/// the `[sink]` table is read through its `kind`, which keeps values as they were given.
fn flag<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Flag {
        Bool(bool),
        Text(String),
    }
    match Flag::deserialize(deserializer)? {
        Flag::Bool(value) => Ok(value),
        Flag::Text(text) => match text.trim() {
            "true" => Ok(true),
            "false" => Ok(false),
            other => Err(serde::de::Error::custom(format_args!(
                "expected true or false, found `{other}`"
            ))),
        },
    }
}

/// A list of names as TOML writes it, or as comma-separated text from the environment or
/// `--set`.
fn names<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<SqlName>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Names {
        List(Vec<String>),
        Text(String),
    }
    let list = match Names::deserialize(deserializer)? {
        Names::List(list) => list,
        Names::Text(text) => text.split(',').map(|n| n.trim().to_owned()).collect(),
    };
    list.into_iter()
        .map(|name| SqlName::deserialize(serde::de::value::StringDeserializer::new(name)))
        .collect()
}

/// A PostgreSQL connection string as written (URL or `key=value` form), checked to parse.
/// `Debug` and `config print` show it with its password replaced.
#[derive(Clone, PartialEq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// The text to connect with, password included.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The text to show: the password replaced by `<redacted>`.
    pub fn shown(&self) -> String {
        redact_url(&self.0)
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown())
    }
}

impl Serialize for DatabaseUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.shown())
    }
}

impl<'de> Deserialize<'de> for DatabaseUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(DatabaseUrl)
    }
}

impl DatabaseUrl {
    /// Whether it parses, with a host: why not, in one line without the password.
    pub fn check(&self) -> Result<(), String> {
        if let Some(option) = libpq_tls_option(&self.0) {
            return Err(format!(
                "`{}` sets {option}, which is libpq's and not taken here: kafkad's \
                 sslmode=require already verifies the server's certificate and that it names \
                 the host (as libpq's verify-full does); write sslmode=require and set \
                 [sink] ca to the CA's PEM file",
                self.shown()
            ));
        }
        match self.0.parse::<postgres::Config>() {
            // The parser's message quotes no part of the text, so no password leaks here.
            Err(error) => Err(format!(
                "`{}` is not a PostgreSQL connection URL: {error}",
                self.shown()
            )),
            Ok(config) if config.get_hosts().is_empty() => {
                Err(format!("`{}` names no host", self.shown()))
            }
            Ok(_) => Ok(()),
        }
    }
}

/// The first of libpq's certificate options that the URL sets and kafkad's client does not
/// take (`sslmode=verify-ca`, `sslmode=verify-full`, `sslrootcert=...`), as written: an
/// operator who copied a libpq URL is told what to write instead.
fn libpq_tls_option(text: &str) -> Option<&str> {
    let query = match text.split_once('?') {
        Some((_, query)) => query,
        // The `key=value key=value` form.
        None => text,
    };
    query.split(['&', ' ']).find_map(|pair| match pair.trim() {
        option @ ("sslmode=verify-ca" | "sslmode=verify-full") => Some(option),
        option if option.starts_with("sslrootcert=") => Some("sslrootcert"),
        _ => None,
    })
}

/// `text` with the password of a `postgres://user:password@host` URL, or of a `password=`
/// parameter (URL query or `key=value` form), replaced by [`REDACTED`].
pub fn redact_url(text: &str) -> String {
    let mut out = text.to_owned();
    if let Some(rest_at) = ["postgres://", "postgresql://"]
        .iter()
        .find_map(|scheme| text.starts_with(scheme).then_some(scheme.len()))
    {
        let authority_end = text[rest_at..]
            .find(['/', '?'])
            .map_or(text.len(), |i| rest_at + i);
        if let Some(at) = text[rest_at..authority_end].rfind('@') {
            let userinfo = &text[rest_at..rest_at + at];
            if let Some(colon) = userinfo.find(':') {
                out = format!(
                    "{}{}:{REDACTED}{}",
                    &text[..rest_at],
                    &userinfo[..colon],
                    &text[rest_at + at..]
                );
            }
        }
    }
    // `password=...` up to the next `&` or space, wherever it stands.
    let mut redacted = String::with_capacity(out.len());
    let mut rest = out.as_str();
    while let Some(at) = rest.find("password=") {
        let boundary = at == 0 || matches!(rest.as_bytes()[at - 1], b'?' | b'&' | b' ');
        let value_at = at + "password=".len();
        redacted.push_str(&rest[..value_at]);
        rest = &rest[value_at..];
        if boundary {
            let end = rest.find(['&', ' ']).unwrap_or(rest.len());
            redacted.push_str(REDACTED);
            rest = &rest[end..];
        }
    }
    redacted.push_str(rest);
    redacted
}

/// An optional secret value: text, `{ file }` or `{ env }`; text is never shown.
#[derive(Clone, Default, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct SecretRef(pub Option<KafkaValue>);

impl SecretRef {
    pub fn is_unset(&self) -> bool {
        self.0.is_none()
    }
}

impl std::fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            None => f.write_str("None"),
            Some(KafkaValue::Text(_)) => f.write_str(REDACTED),
            Some(KafkaValue::FromFile(path)) => write!(f, "{{ file = {} }}", path.display()),
            Some(KafkaValue::FromEnv(var)) => write!(f, "{{ env = {var} }}"),
        }
    }
}

impl Serialize for SecretRef {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match &self.0 {
            None => serializer.serialize_none(),
            Some(KafkaValue::Text(_)) => serializer.serialize_str(REDACTED),
            Some(KafkaValue::FromFile(path)) => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("file", &path.display().to_string())?;
                map.end()
            }
            Some(KafkaValue::FromEnv(var)) => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("env", var)?;
                map.end()
            }
        }
    }
}

/// A secret read at start-up; `Debug` never shows it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ResolvedSecret(pub Option<String>);

impl std::fmt::Debug for ResolvedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(_) => f.write_str(REDACTED),
            None => f.write_str("None"),
        }
    }
}

/// A table or column name, optionally `schema.name`: letters, digits and `_`, not starting
/// with a digit, at most 63 characters a part. kafkad quotes it in every statement, so it is
/// taken as written, case included.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct SqlName(String);

impl SqlName {
    /// Parts (schema, name), each to be quoted.
    pub fn parts(&self) -> Vec<&str> {
        self.0.split('.').collect()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name quoted for SQL: `"schema"."name"`.
    pub fn quoted(&self) -> String {
        let parts: Vec<String> = self.parts().iter().map(|p| format!("\"{p}\"")).collect();
        parts.join(".")
    }
}

impl std::fmt::Display for SqlName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SqlName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let parts: Vec<&str> = text.split('.').collect();
        let part_ok = |part: &str| {
            (1..=63).contains(&part.len())
                && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !part.starts_with(|c: char| c.is_ascii_digit())
        };
        if parts.len() > 2 || !parts.iter().all(|p| part_ok(p)) {
            return Err(serde::de::Error::custom(format_args!(
                "`{text}` is not a PostgreSQL name kafkad accepts: letters, digits and _ (not \
                 first), at most 63 characters, optionally schema.name"
            )));
        }
        Ok(SqlName(text))
    }
}

/// The output cluster's producer properties for the kafka sink: `[kafka]`'s connection
/// settings (the input cluster's) unless `[sink.kafka]` names its own `bootstrap.servers`,
/// then `[sink.kafka]` on top, each value resolved by `resolve`.
pub(super) fn output_properties<E>(
    input: &KafkaProperties,
    output: &config::Map<String, KafkaValue>,
    resolve: impl Fn(&str, &KafkaValue) -> Result<String, E>,
) -> Result<KafkaProperties, E> {
    let mut properties = std::collections::BTreeMap::new();
    if !output.contains_key("bootstrap.servers") {
        let connection = |name: &str| {
            ["bootstrap.servers", "security.protocol", "client.id"].contains(&name)
                || ["ssl.", "sasl.", "socket."]
                    .iter()
                    .any(|prefix| name.starts_with(prefix))
        };
        for (name, value) in input.iter().filter(|(name, _)| connection(name)) {
            properties.insert(name.to_owned(), value.to_owned());
        }
    }
    for (name, value) in output {
        properties.insert(name.clone(), resolve(name, value)?);
    }
    Ok(KafkaProperties::new(properties))
}

/// Where processed messages go: `[sink]`, its `kind` choosing the variant, each variant with
/// its own keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum SinkSettings {
    /// Logs each message (single) or a summary per batch.
    Log {},
    /// Appends one JSON line per processed message to `path`.
    Jsonl {
        /// The file to append to; created if missing.
        path: PathBuf,
    },
    /// POSTs each message (single) or each batch as a JSON array (batch) to `url`; any 2xx
    /// answer means processed.
    Http {
        /// `http://` or `https://` address to POST to.
        url: String,
        /// How long one request may take, connecting included, before it counts as a
        /// (retryable) failure.
        #[serde(default = "default_sink_timeout", with = "humantime_serde")]
        timeout: Duration,
        /// Extra request headers. A value may be `{ file = "/path" }` or `{ env = "VAR" }` so
        /// a token stays out of the file; `config print` and logs never show the values of
        /// references, nor of headers whose names look secret (authorization, token, key...).
        #[serde(default)]
        headers: SinkHeaders,
    },
    /// Runs `command` (program and arguments) per message or batch, writing the messages to
    /// its standard input as JSON lines; exit status 0 means processed.
    Command {
        /// The program and its arguments, e.g. `["sh", "-c", "cat >> /data/out.jsonl"]`.
        command: Vec<String>,
        /// How long one run may take before it is killed (a retryable failure).
        #[serde(default = "default_sink_timeout", with = "humantime_serde")]
        timeout: Duration,
    },
    /// Inserts one row per message into a PostgreSQL table; with `delivery = "exactly_once"`
    /// (the default) the consumer's next offsets are written in the same transaction.
    Postgres(PostgresSettings),
    /// Produces each message to an output topic; with `delivery = "exactly_once"` (the
    /// default) inside a Kafka transaction that also commits the consumer's offsets.
    Kafka(KafkaSinkSettings),
}

impl SinkSettings {
    /// The delivery mode of a sink that can take part in a transaction, `None` for the others.
    pub fn delivery(&self) -> Option<Delivery> {
        match self {
            SinkSettings::Postgres(postgres) => Some(postgres.delivery),
            SinkSettings::Kafka(kafka) => Some(kafka.delivery),
            _ => None,
        }
    }
}

pub(super) fn default_sink_timeout() -> Duration {
    Duration::from_secs(30)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show_in_a_url() {
        for (url, shown) in [
            (
                "postgres://kafkad:s3cret@db:5432/kafkad?sslmode=require",
                "postgres://kafkad:<redacted>@db:5432/kafkad?sslmode=require",
            ),
            ("postgresql://u:p@w@h/d", "postgresql://u:<redacted>@h/d"),
            ("postgres://kafkad@db/kafkad", "postgres://kafkad@db/kafkad"),
            (
                "postgres://db/k?user=u&password=s3cret&sslmode=disable",
                "postgres://db/k?user=u&password=<redacted>&sslmode=disable",
            ),
            (
                "host=db user=u password=s3cret dbname=k",
                "host=db user=u password=<redacted> dbname=k",
            ),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }

    #[test]
    fn a_libpq_certificate_option_is_named_with_what_to_write_instead() {
        for (url, named) in [
            (
                "postgres://u:s3cret@db/k?sslmode=verify-full",
                "sets sslmode=verify-full",
            ),
            (
                "postgres://u@db/k?sslmode=verify-ca",
                "sets sslmode=verify-ca",
            ),
            (
                "postgres://u@db/k?sslmode=require&sslrootcert=/ca.pem",
                "sets sslrootcert,",
            ),
            (
                "host=db user=u sslmode=verify-full",
                "sets sslmode=verify-full",
            ),
        ] {
            let why = DatabaseUrl(url.to_owned()).check().expect_err(url);
            assert!(why.contains(named), "{url}: {why}");
            assert!(
                why.contains("write sslmode=require and set [sink] ca"),
                "{why}"
            );
            assert!(!why.contains("s3cret"), "{why}");
        }
        for url in [
            "postgres://u@db/k?sslmode=require",
            "host=db user=u sslmode=disable",
        ] {
            assert_eq!(DatabaseUrl(url.to_owned()).check(), Ok(()), "{url}");
        }
    }
}
