//! What the producer sends: `[producer] source` and, for lines of real input, `key`.
//!
//! ```toml
//! [producer]
//! source = "generate"                    # the default: the seed's messages, `count` at `rate`
//! source = "stdin"                       # one record per line of standard input
//! source = { file = "/data/events.jsonl" }   # one record per line of a file
//! format = "json"                        # what a line is (see crate::payload)
//! key = { field = "user_id" }            # a line's key: a field of its JSON object...
//! key = { delimiter = "\t" }             # ...or the text before the first delimiter
//! [producer.headers]                     # headers every record carries
//! source-system = "crm"
//! ```

use std::fmt;
use std::path::PathBuf;

use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Where the producer's records come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputSource {
    /// The seed's messages, made up: `count` of them at `rate`.
    Generate,
    /// One record per line of standard input, until it ends.
    Stdin,
    /// One record per line of a file, until its end.
    File(PathBuf),
}

impl Serialize for InputSource {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            InputSource::Generate => serializer.serialize_str("generate"),
            InputSource::Stdin => serializer.serialize_str("stdin"),
            InputSource::File(path) => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("file", path)?;
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for InputSource {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Source;
        impl<'de> Visitor<'de> for Source {
            type Value = InputSource;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"generate\", \"stdin\" or { file = \"/path\" }")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<InputSource, E> {
                match text {
                    "generate" => Ok(InputSource::Generate),
                    "stdin" => Ok(InputSource::Stdin),
                    "file" => Err(E::custom(
                        "a file is given with its path: source = { file = \"/path/to/lines\" }",
                    )),
                    other => Err(E::custom(format_args!(
                        "unknown source `{other}`; allowed: \"generate\", \"stdin\", {{ file = \"/path\" }}"
                    ))),
                }
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<InputSource, A::Error> {
                let mut path = None;
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "file" if path.is_none() => path = Some(map.next_value::<PathBuf>()?),
                        other => {
                            return Err(de::Error::custom(format_args!(
                                "unknown source `{other}`; allowed: {{ file = \"/path\" }}"
                            )))
                        }
                    }
                }
                match path {
                    Some(path) if !path.as_os_str().is_empty() => Ok(InputSource::File(path)),
                    _ => Err(de::Error::custom("{ file = ... } needs a path")),
                }
            }
        }
        deserializer.deserialize_any(Source)
    }
}

/// Where a line's record key comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LineKey {
    /// A top-level field of the line's JSON object (`format = "json"`): a string is the key
    /// as it is, any other value its JSON text, `null` no key.
    Field(String),
    /// The text before the first occurrence of this delimiter; the value is what follows.
    Delimiter(String),
}

impl<'de> Deserialize<'de> for LineKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Key;
        impl<'de> Visitor<'de> for Key {
            type Value = LineKey;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("{ field = \"name\" } or { delimiter = \"text\" }")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<LineKey, A::Error> {
                let mut key = None;
                while let Some(name) = map.next_key::<String>()? {
                    let text = map.next_value::<String>()?;
                    key = match (name.as_str(), key) {
                        ("field", None) => Some(LineKey::Field(text)),
                        ("delimiter", None) => Some(LineKey::Delimiter(text)),
                        (other, _) => {
                            return Err(de::Error::custom(format_args!(
                                "unknown key source `{other}`; allowed: {{ field = \"name\" }} or {{ delimiter = \"text\" }}, one of them"
                            )))
                        }
                    };
                }
                key.ok_or_else(|| de::Error::custom("{ field = ... } or { delimiter = ... }"))
            }
        }
        deserializer.deserialize_map(Key)
    }
}
