//! Tables that hold secrets (`[kafka]`, the http sink's headers, resolved headers), and how
//! they show: `config print` and `Debug` never show a secret value.

use super::*;

/// Header names and values ready to send; `Debug` never shows the values.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ResolvedHeaders(pub Vec<(String, String)>);

impl std::fmt::Debug for ResolvedHeaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(name, _)| (name, kafka::REDACTED)))
            .finish()
    }
}

/// `{ name = value }` entries as `config print` shows them: secret text (`is_secret` decides)
/// redacted, `{ file = ... }` and `{ env = ... }` references as written.
pub(super) fn serialize_values<'a, S: serde::Serializer>(
    entries: impl Iterator<Item = (&'a String, &'a KafkaValue)>,
    len: usize,
    is_secret: fn(&str) -> bool,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut out = serializer.serialize_map(Some(len))?;
    for (name, value) in entries {
        match value {
            KafkaValue::Text(_) if is_secret(name) => out.serialize_entry(name, kafka::REDACTED)?,
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

/// The `[kafka]` table as written. Neither `config print` (see `serialize_values`) nor
/// `Debug` shows a secret: logging the settings is safe.
#[derive(Clone, Default, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct KafkaTable(pub Map<String, KafkaValue>);

impl std::fmt::Debug for KafkaTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = |name: &str, value: &KafkaValue| match value {
            KafkaValue::Text(_) if kafka::is_secret(name) => kafka::REDACTED.to_owned(),
            KafkaValue::Text(text) => text.clone(),
            KafkaValue::FromFile(path) => format!("{{ file = {} }}", path.display()),
            KafkaValue::FromEnv(var) => format!("{{ env = {var} }}"),
        };
        f.debug_map()
            .entries(
                self.0
                    .iter()
                    .map(|(name, value)| (name, shown(name, value))),
            )
            .finish()
    }
}

impl Serialize for KafkaTable {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_values(self.0.iter(), self.0.len(), kafka::is_secret, serializer)
    }
}

/// Whether an http sink header carries a credential by its name.
pub(super) fn is_secret_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "authorization",
        "cookie",
        "token",
        "secret",
        "key",
        "password",
    ]
    .iter()
    .any(|word| name.contains(word))
}

/// The http sink's extra headers as written. Serialized (`config print`) and debug-printed
/// without secrets: references show where the value comes from, plain values of secret-looking
/// names show as redacted, and `Debug` shows no value at all.
#[derive(Clone, Default, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct SinkHeaders(pub BTreeMap<String, KafkaValue>);

impl std::fmt::Debug for SinkHeaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.0.keys().map(|name| (name, kafka::REDACTED)))
            .finish()
    }
}

impl Serialize for SinkHeaders {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_headers(&self.0, serializer)
    }
}

pub(super) fn serialize_headers<S: serde::Serializer>(
    headers: &BTreeMap<String, KafkaValue>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serialize_values(headers.iter(), headers.len(), is_secret_header, serializer)
}
