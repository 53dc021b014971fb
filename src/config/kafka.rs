//! The `[kafka]` table: librdkafka properties passed through verbatim, plus what kafkad needs
//! to know about them: which exist (so a typo is an error, not a silently ignored setting),
//! which client they apply to, which hold secrets, and where a secret's value comes from.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use super::librdkafka_properties::PROPERTIES;

/// Which kind of client a librdkafka property applies to (`C`, `P` or `*` in librdkafka's own
/// property table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Consumer,
    Producer,
    Both,
}

/// The scope of a known property; `None` for a name librdkafka does not have.
pub fn scope_of(name: &str) -> Option<Scope> {
    PROPERTIES
        .iter()
        .find(|(known, _)| *known == name)
        .map(|(_, scope)| *scope)
}

/// Whether a property's value must never be shown: passwords, private keys, tokens, secrets
/// and SASL/JAAS or OAuth configuration strings (which embed credentials).
pub fn is_secret(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "password",
        "secret",
        "token",
        "jaas",
        "sasl.oauthbearer.config",
    ]
    .iter()
    .any(|word| name.contains(word))
        || name == "ssl.key.pem"
        || name.ends_with("private.key")
}

/// What `config print`, logs and errors show in place of a secret.
pub const REDACTED: &str = "<redacted>";

/// One `[kafka]` value as written by the operator. Plain values are what librdkafka gets;
/// `{ file = "..." }` and `{ env = "..." }` let a secret live outside the TOML (a mounted
/// secret file, an injected variable), so a ConfigMap never has to hold it.
#[derive(Debug, Clone, PartialEq)]
pub enum KafkaValue {
    Text(String),
    FromFile(PathBuf),
    FromEnv(String),
}

impl<'de> Deserialize<'de> for KafkaValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ValueVisitor;
        impl<'de> Visitor<'de> for ValueVisitor {
            type Value = KafkaValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    r#"a string, number or boolean, or { file = "/path" } or { env = "VAR" }"#,
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<KafkaValue, E> {
                Ok(KafkaValue::Text(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<KafkaValue, E> {
                Ok(KafkaValue::Text(v))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<KafkaValue, E> {
                Ok(KafkaValue::Text(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<KafkaValue, E> {
                Ok(KafkaValue::Text(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<KafkaValue, E> {
                Ok(KafkaValue::Text(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<KafkaValue, E> {
                Ok(KafkaValue::Text(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<KafkaValue, A::Error> {
                let Some((kind, value)) = map.next_entry::<String, String>()? else {
                    return Err(de::Error::custom(
                        r#"expected { file = "/path" } or { env = "VAR" }, found an empty table"#,
                    ));
                };
                if map.next_key::<String>()?.is_some() {
                    return Err(de::Error::custom(
                        "a secret reference holds exactly one key: `file` or `env`",
                    ));
                }
                match kind.as_str() {
                    "file" => Ok(KafkaValue::FromFile(PathBuf::from(value))),
                    "env" => Ok(KafkaValue::FromEnv(value)),
                    other => Err(de::Error::custom(format_args!(
                        "unknown secret reference `{other}`: use `file` or `env`"
                    ))),
                }
            }
        }
        deserializer.deserialize_any(ValueVisitor)
    }
}

/// The `[kafka]` table after secret references were resolved: property name to value.
/// Debug output redacts secrets, so logging a `KafkaProperties` is always safe.
#[derive(Clone, Default, PartialEq)]
pub struct KafkaProperties(BTreeMap<String, String>);

impl fmt::Debug for KafkaProperties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(
                self.0
                    .iter()
                    .map(|(k, v)| (k, if is_secret(k) { REDACTED } else { v.as_str() })),
            )
            .finish()
    }
}

impl KafkaProperties {
    pub fn new(map: BTreeMap<String, String>) -> Self {
        KafkaProperties(map)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.0.insert(name.into(), value.into());
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// A boolean property as librdkafka reads it (`true`/`false`, also `1`/`0`).
    pub fn flag(&self, name: &str) -> Option<bool> {
        self.get(name)
            .map(|v| matches!(v.trim(), "true" | "1" | "yes" | "on"))
    }

    /// The properties as an rdkafka `ClientConfig`, keeping only those that apply to `client`:
    /// a dead-letter producer built from a consumer's `[kafka]` table must not receive
    /// `group.id` & co. (librdkafka would warn about each one).
    pub fn client_config(&self, client: Scope) -> ClientConfig {
        let mut config = ClientConfig::new();
        for (name, value) in self.iter() {
            let applies = !matches!(
                (scope_of(name), client),
                (Some(Scope::Consumer), Scope::Producer) | (Some(Scope::Producer), Scope::Consumer)
            );
            if applies {
                config.set(name, value);
            }
        }
        config
    }

    /// Asks librdkafka itself to accept every name and value (`rd_kafka_conf_set`), without
    /// connecting anywhere. The error names the property, redacts secret values and suggests
    /// the intended name for a typo or a Java-client spelling.
    pub fn validate(&self) -> Result<(), PropertyError> {
        let mut config = ClientConfig::new();
        for (name, value) in self.iter() {
            config.set(name, value);
        }
        match config.create_native_config() {
            Ok(_) => Ok(()),
            Err(KafkaError::ClientConfig(_, description, name, value)) => {
                let shown = if is_secret(&name) {
                    REDACTED.to_owned()
                } else {
                    value
                };
                Err(PropertyError {
                    suggestion: scope_of(&name).is_none().then(|| suggest(&name)).flatten(),
                    unknown: scope_of(&name).is_none(),
                    name,
                    value: shown,
                    description: scrub(&description, self),
                })
            }
            Err(other) => Err(PropertyError {
                name: String::new(),
                value: String::new(),
                description: scrub(&other.to_string(), self),
                suggestion: None,
                unknown: false,
            }),
        }
    }

    /// Replaces every secret value that occurs in `text` by [`REDACTED`]; for messages that
    /// librdkafka builds from configuration (its debug log echoes properties, for example).
    pub fn redact(&self, text: &str) -> String {
        scrub(text, self)
    }

    /// A [`Redactor`] holding only the secret values, for client contexts to keep.
    pub fn redactor(&self) -> Redactor {
        Redactor {
            secrets: self
                .iter()
                .filter(|(name, value)| is_secret(name) && !value.is_empty())
                .map(|(_, value)| value.to_owned())
                .collect(),
        }
    }
}

fn scrub(text: &str, properties: &KafkaProperties) -> String {
    properties.redactor().redact(text).into_owned()
}

/// Removes known secret values from text that may echo them (librdkafka log lines, errors).
#[derive(Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Redactor({} secrets)", self.secrets.len())
    }
}

impl Redactor {
    pub fn redact<'t>(&self, text: &'t str) -> std::borrow::Cow<'t, str> {
        let mut text = std::borrow::Cow::Borrowed(text);
        for secret in &self.secrets {
            if text.contains(secret.as_str()) {
                text = std::borrow::Cow::Owned(text.replace(secret.as_str(), REDACTED));
            }
        }
        text
    }
}

/// librdkafka refused a `[kafka]` property.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropertyError {
    /// The property name (empty when librdkafka did not say).
    pub name: String,
    /// The value, or [`REDACTED`] for secrets.
    pub value: String,
    /// librdkafka's own words.
    pub description: String,
    /// The closest known property, for a name librdkafka does not know.
    pub suggestion: Option<&'static str>,
    /// Whether the name itself is unknown (as opposed to a bad value).
    pub unknown: bool,
}

impl fmt::Display for PropertyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.unknown {
            write!(f, "unknown librdkafka property `{}`", self.name)?;
            if let Some(suggestion) = self.suggestion {
                write!(f, " (did you mean `{suggestion}`?)")?;
            }
            return write!(
                f,
                "; see https://github.com/confluentinc/librdkafka/blob/master/CONFIGURATION.md"
            );
        }
        if self.name.is_empty() {
            return write!(
                f,
                "librdkafka rejected the configuration: {}",
                self.description
            );
        }
        write!(
            f,
            "invalid value `{}` for librdkafka property `{}`: {}",
            self.value, self.name, self.description
        )
    }
}

/// The known property closest to an unknown `name`: the same words in another order first
/// (Java's `fetch.max.wait.ms` is librdkafka's `fetch.wait.max.ms`), then a small edit distance.
pub fn suggest(name: &str) -> Option<&'static str> {
    let words = |s: &str| {
        let mut w: Vec<String> = s
            .split(['.', '_', '-'])
            .map(str::to_ascii_lowercase)
            .collect();
        w.sort();
        w
    };
    let wanted = words(name);
    if let Some((known, _)) = PROPERTIES.iter().find(|(known, _)| words(known) == wanted) {
        return Some(known);
    }
    let normalized = name.to_ascii_lowercase().replace(['_', '-'], ".");
    PROPERTIES
        .iter()
        .map(|(known, _)| (strsim::levenshtein(&normalized, known), *known))
        .filter(|(distance, _)| *distance <= 3)
        .min()
        .map(|(_, known)| known)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> KafkaProperties {
        KafkaProperties::new(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn knows_scopes() {
        assert_eq!(scope_of("group.id"), Some(Scope::Consumer));
        assert_eq!(scope_of("acks"), Some(Scope::Producer));
        assert_eq!(scope_of("bootstrap.servers"), Some(Scope::Both));
        assert_eq!(scope_of("fetch.max.wait.ms"), None);
    }

    #[test]
    fn suggests_the_librdkafka_spelling_of_a_java_name() {
        assert_eq!(suggest("fetch.max.wait.ms"), Some("fetch.wait.max.ms"));
        assert_eq!(suggest("bootstrap.server"), Some("bootstrap.servers"));
        assert_eq!(suggest("completely.different.thing.here"), None);
    }

    #[test]
    fn librdkafka_rejects_unknown_names_and_bad_values() {
        let error = props(&[("fetch.max.wait.ms", "100")])
            .validate()
            .expect_err("unknown");
        assert!(error.unknown);
        assert!(
            error
                .to_string()
                .contains("did you mean `fetch.wait.max.ms`"),
            "{error}"
        );

        let error = props(&[("acks", "most")])
            .validate()
            .expect_err("bad value");
        assert!(!error.unknown);
        assert!(error.to_string().contains("`acks`"), "{error}");

        props(&[("acks", "all"), ("fetch.wait.max.ms", "100")])
            .validate()
            .expect("valid");
    }

    #[test]
    fn secret_values_never_appear_in_errors_or_debug() {
        let p = props(&[("sasl.password", "hunter2"), ("acks", "most")]);
        let error = p.validate().expect_err("bad acks");
        assert!(!error.to_string().contains("hunter2"));
        assert!(!format!("{p:?}").contains("hunter2"));
        assert_eq!(p.redact("login hunter2 failed"), "login <redacted> failed");
    }

    #[test]
    fn classifies_secrets() {
        for name in [
            "sasl.password",
            "ssl.key.password",
            "ssl.key.pem",
            "sasl.oauthbearer.client.secret",
            "sasl.oauthbearer.config",
            "sasl.jaas.config",
            "ssl.keystore.password",
        ] {
            assert!(is_secret(name), "{name}");
        }
        for name in [
            "bootstrap.servers",
            "ssl.key.location",
            "ssl.ca.location",
            "sasl.username",
        ] {
            assert!(!is_secret(name), "{name}");
        }
    }

    #[test]
    fn producer_config_drops_consumer_properties() {
        let p = props(&[
            ("group.id", "g"),
            ("bootstrap.servers", "b:9092"),
            ("acks", "all"),
        ]);
        let producer = p.client_config(Scope::Producer);
        assert_eq!(producer.get("group.id"), None);
        assert_eq!(producer.get("bootstrap.servers"), Some("b:9092"));
        let consumer = p.client_config(Scope::Consumer);
        assert_eq!(consumer.get("acks"), None);
        assert_eq!(consumer.get("group.id"), Some("g"));
    }
}
