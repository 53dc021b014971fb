//! A line as a record: its key (a field of the line's JSON object, or the text before a
//! delimiter), its value checked as a consumer of the format would check it, and why a line
//! is refused. Apart from reading because it is about one line's bytes, wherever they came
//! from.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::config::LineKey;
use crate::payload::{BadValue, Decoder, Format};

/// Why a line is not sent; its kind counts it in the report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineRejection {
    #[error("{len} bytes, above message.max.bytes = {limit}")]
    TooLarge { len: u64, limit: usize },
    #[error("no key: {0}")]
    MissingKey(String),
    #[error(transparent)]
    Bad(#[from] BadValue),
}

impl LineRejection {
    pub fn kind(&self) -> &'static str {
        match self {
            LineRejection::TooLarge { .. } => "too_large",
            LineRejection::MissingKey(_) => "missing_key",
            LineRejection::Bad(bad) => bad.kind(),
        }
    }
}

/// A line as a record: its key, if it has one, and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineRecord<'l> {
    pub key: Option<Cow<'l, [u8]>>,
    pub value: &'l [u8],
}

/// Turns lines into records: the key found, the value checked for the format.
pub struct LineFormat {
    decoder: Decoder,
    key: Option<LineKey>,
}

impl LineFormat {
    /// `format` is one the producer sends (configuration refuses the schema'd ones).
    pub fn new(format: Format, key: Option<LineKey>) -> Self {
        LineFormat {
            decoder: Decoder::new(format, None),
            key,
        }
    }

    pub fn record<'l>(&self, line: &'l [u8]) -> Result<LineRecord<'l>, LineRejection> {
        let (key, value) = match &self.key {
            None => (None, line),
            Some(LineKey::Delimiter(delimiter)) => {
                let delimiter = delimiter.as_bytes();
                let at = line
                    .windows(delimiter.len())
                    .position(|window| window == delimiter)
                    .ok_or_else(|| {
                        LineRejection::MissingKey(format!(
                            "the line holds no key delimiter {:?}",
                            String::from_utf8_lossy(delimiter)
                        ))
                    })?;
                (
                    Some(Cow::Borrowed(&line[..at])),
                    &line[at + delimiter.len()..],
                )
            }
            Some(LineKey::Field(field)) => (json_field_key(line, field)?, line),
        };
        match self.decoder.decode(value) {
            Ok(_) => Ok(LineRecord { key, value }),
            Err(crate::payload::Undecoded::Bad(bad)) => Err(bad.into()),
            // No registry takes part in the formats a producer sends.
            Err(crate::payload::Undecoded::RegistryUnavailable(error)) => {
                unreachable!("a producer's format asks no registry: {error}")
            }
        }
    }
}

/// The key a line's JSON object holds in `field`: a string as its text, `null` as none, any
/// other value as its JSON text. A line that is not a JSON object, or lacks the field, has no
/// key to give (a line that is not JSON at all is rejected as that, by the format check).
fn json_field_key<'l>(line: &'l [u8], field: &str) -> Result<Option<Cow<'l, [u8]>>, LineRejection> {
    let Ok(text) = std::str::from_utf8(line) else {
        return Ok(None);
    };
    let mut json = serde_json::Deserializer::from_str(text);
    let found = match (FieldSeed { field }).deserialize(&mut json) {
        Ok(found) => found,
        Err(error) if error.is_data() => {
            return Err(LineRejection::MissingKey(format!(
                "the line is not a JSON object with a field `{field}`"
            )))
        }
        // Not JSON: the format check names it.
        Err(_) => return Ok(None),
    };
    let Some(raw) = found else {
        return Err(LineRejection::MissingKey(format!(
            "the line's JSON object has no field `{field}`"
        )));
    };
    let raw = raw.get();
    Ok(match raw {
        "null" => None,
        text if text.starts_with('"') => {
            let unquoted: Cow<'l, str> =
                serde_json::from_str(text).map_err(|e| LineRejection::MissingKey(e.to_string()))?;
            Some(match unquoted {
                Cow::Borrowed(borrowed) => Cow::Borrowed(borrowed.as_bytes()),
                Cow::Owned(owned) => Cow::Owned(owned.into_bytes()),
            })
        }
        text => Some(Cow::Borrowed(text.as_bytes())),
    })
}

/// Finds one top-level field of a JSON object, skipping the others without building them.
struct FieldSeed<'f> {
    field: &'f str,
}

impl<'de> DeserializeSeed<'de> for FieldSeed<'_> {
    type Value = Option<&'de RawValue>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FieldSeed<'_> {
    type Value = Option<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if key == self.field && found.is_none() {
                found = Some(map.next_value::<&'de RawValue>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(
        format: Format,
        key: Option<LineKey>,
        line: &[u8],
    ) -> Result<(Option<Vec<u8>>, Vec<u8>), &'static str> {
        LineFormat::new(format, key)
            .record(line)
            .map(|r| (r.key.map(|k| k.into_owned()), r.value.to_vec()))
            .map_err(|rejection| rejection.kind())
    }

    #[test]
    fn each_format_checks_its_lines_as_a_consumer_would() {
        assert_eq!(
            record(Format::Json, None, br#"{"a": 1}"#),
            Ok((None, br#"{"a": 1}"#.to_vec()))
        );
        assert_eq!(record(Format::Json, None, b"{"), Err("not_json"));
        assert_eq!(record(Format::Json, None, b""), Err("empty"));
        assert_eq!(record(Format::Text, None, b"caf\xc3"), Err("not_utf8"));
        assert_eq!(
            record(Format::Bytes, None, b"\xff\x00"),
            Ok((None, b"\xff\x00".to_vec()))
        );
        assert_eq!(
            record(
                Format::KafkaMessage,
                None,
                br#"{"message_id": 1, "content": "x"}"#
            ),
            Err("missing_field")
        );
    }

    #[test]
    fn a_key_is_a_json_field_or_the_text_before_a_delimiter() {
        let field = || Some(LineKey::Field("user".into()));
        assert_eq!(
            record(
                Format::Json,
                field(),
                br#"{"n": {"user": 1}, "user": "ann\u00e9"}"#
            )
            .map(|r| r.0),
            Ok(Some("anné".as_bytes().to_vec()))
        );
        assert_eq!(
            record(Format::Json, field(), br#"{"user": 42}"#).map(|r| r.0),
            Ok(Some(b"42".to_vec()))
        );
        assert_eq!(
            record(Format::Json, field(), br#"{"user": null}"#).map(|r| r.0),
            Ok(None)
        );
        assert_eq!(
            record(Format::Json, field(), br#"{"other": 1}"#),
            Err("missing_key")
        );
        assert_eq!(record(Format::Json, field(), b"[1]"), Err("missing_key"));
        assert_eq!(record(Format::Json, field(), b"{\"user\""), Err("not_json"));

        let tab = || Some(LineKey::Delimiter("\t".into()));
        assert_eq!(
            record(Format::Text, tab(), b"k1\tvalue\twith tab"),
            Ok((Some(b"k1".to_vec()), b"value\twith tab".to_vec()))
        );
        assert_eq!(
            record(Format::Text, tab(), b"no delimiter"),
            Err("missing_key")
        );
        assert_eq!(
            record(
                Format::Json,
                Some(LineKey::Delimiter("::".into())),
                b"k::{\"a\":1}"
            ),
            Ok((Some(b"k".to_vec()), b"{\"a\":1}".to_vec()))
        );
    }
}
