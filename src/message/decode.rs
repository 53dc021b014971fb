//! Reading a record value as a `KafkaMessage`, strictly: the five fields with their types,
//! each at most once, and `metadata` an object no deeper than serde_json can parse again.
//! Separate from the message itself because this is where hostile input is met: every way a
//! value can be refused is a [`DecodeError`] naming the field, found without recursion or
//! allocation that the input controls.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use super::{preview, KafkaMessage, Timestamp, FIELDS};

/// Why a record value is not a valid `KafkaMessage`. The variant is also the machine-readable
/// reason written into the dead-letter headers (see [`DecodeError::kind`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record value is empty")]
    Empty,
    #[error("record value is not UTF-8 (invalid byte after {valid_up_to} valid bytes)")]
    NotUtf8 { valid_up_to: usize },
    #[error("record value is not a JSON object: {detail}")]
    NotJson { detail: String },
    #[error("record value nests JSON deeper than 128 levels")]
    TooDeep,
    #[error("field `{field}` is missing")]
    MissingField { field: &'static str },
    #[error("field `{field}` has the wrong type: {detail}")]
    WrongType { field: &'static str, detail: String },
    #[error("field `{field}` appears twice")]
    DuplicateField { field: &'static str },
}

impl DecodeError {
    /// Every [`kind`](Self::kind), so that metrics can show each one at 0 before the first
    /// record fails that way.
    pub const KINDS: [&'static str; 7] = [
        "empty",
        "not_utf8",
        "not_json",
        "too_deep",
        "missing_field",
        "wrong_type",
        "duplicate_field",
    ];

    /// A stable, snake_case name for metrics labels and dead-letter headers.
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::Empty => "empty",
            DecodeError::NotUtf8 { .. } => "not_utf8",
            DecodeError::NotJson { .. } => "not_json",
            DecodeError::TooDeep => "too_deep",
            DecodeError::MissingField { .. } => "missing_field",
            DecodeError::WrongType { .. } => "wrong_type",
            DecodeError::DuplicateField { .. } => "duplicate_field",
        }
    }

    pub(super) fn from_json(error: serde_json::Error, field: Option<&'static str>) -> Self {
        let text = error.to_string();
        if text.starts_with("recursion limit exceeded") || text.starts_with(TOO_DEEP) {
            return DecodeError::TooDeep;
        }
        // Our visitor reports these two through `de::Error::custom` with a fixed prefix.
        if let Some(name) = text.strip_prefix(MISSING_PREFIX) {
            return DecodeError::MissingField {
                field: field_name(name),
            };
        }
        if let Some(name) = text.strip_prefix(DUPLICATE_PREFIX) {
            return DecodeError::DuplicateField {
                field: field_name(name),
            };
        }
        match (error.classify(), field) {
            (serde_json::error::Category::Data, Some(field)) => DecodeError::WrongType {
                field,
                detail: strip_position(&text),
            },
            _ => DecodeError::NotJson {
                detail: strip_position(&text),
            },
        }
    }
}

/// serde_json's own recursion limit; metadata nested deeper could not be parsed into a map.
const MAX_DEPTH: usize = 128;
const TOO_DEEP: &str = "kafkad-too-deep";

/// Whether JSON `text` nests arrays/objects more than `limit` levels deep. A byte scan that
/// skips string contents: no recursion, no allocation.
fn nesting_exceeds(text: &str, limit: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in text.as_bytes() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

const MISSING_PREFIX: &str = "kafkad-missing-field:";
const DUPLICATE_PREFIX: &str = "kafkad-duplicate-field:";

fn field_name(text: &str) -> &'static str {
    let name = text.split_whitespace().next().unwrap_or_default();
    FIELDS.iter().copied().find(|f| *f == name).unwrap_or("?")
}

/// serde_json appends " at line 1 column 17"; useful for humans on a file, noise for a record.
fn strip_position(text: &str) -> String {
    match text.rfind(" at line ") {
        Some(at) => text[..at].to_owned(),
        None => text.to_owned(),
    }
}

/// Deserializes a message while remembering which field is being read, so that a type error
/// from serde_json (which knows the position, not the field) can name the field.
pub(super) struct MessageSeed<'c> {
    pub(super) current_field: &'c Cell<Option<&'static str>>,
}

impl<'de> DeserializeSeed<'de> for MessageSeed<'_> {
    type Value = Result<KafkaMessage<'de>, DecodeError>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for MessageSeed<'_> {
    type Value = Result<KafkaMessage<'de>, DecodeError>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object with message_id, content, producer_id, timestamp, metadata")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut message_id = None;
        let mut content = None;
        let mut producer_id = None;
        let mut timestamp: Option<Result<Timestamp, DecodeError>> = None;
        let mut metadata: Option<&'de RawValue> = None;

        fn once<T, E: de::Error>(slot: &Option<T>, field: &'static str) -> Result<(), E> {
            match slot {
                Some(_) => Err(E::custom(format_args!("{DUPLICATE_PREFIX}{field}"))),
                None => Ok(()),
            }
        }

        while let Some(BorrowedStr(key)) = map.next_key()? {
            let field = FIELDS.iter().copied().find(|f| *f == key);
            self.current_field.set(field);
            match field {
                Some("message_id") => {
                    once::<_, A::Error>(&message_id, "message_id")?;
                    message_id = Some(map.next_value::<i64>()?);
                }
                Some("content") => {
                    once::<_, A::Error>(&content, "content")?;
                    content = Some(map.next_value::<BorrowedStr>()?.0);
                }
                Some("producer_id") => {
                    once::<_, A::Error>(&producer_id, "producer_id")?;
                    producer_id = Some(map.next_value::<BorrowedStr>()?.0);
                }
                Some("timestamp") => {
                    once::<_, A::Error>(&timestamp, "timestamp")?;
                    let BorrowedStr(text) = map.next_value()?;
                    timestamp = Some(Timestamp::parse(&text).map_err(|e| DecodeError::WrongType {
                        field: "timestamp",
                        detail: e.to_string(),
                    }));
                }
                Some("metadata") => {
                    once::<_, A::Error>(&metadata, "metadata")?;
                    let raw = map.next_value::<&'de RawValue>()?;
                    if !raw.get().starts_with('{') {
                        return Err(de::Error::custom(format_args!(
                            "expected a JSON object, found `{}`",
                            preview(raw.get())
                        )));
                    }
                    // serde_json skips a raw value without recursing, so any depth is read
                    // safely here; but `metadata_map` would later hit the recursion limit.
                    // Reject it now, as the record's problem, not a later surprise.
                    if nesting_exceeds(raw.get(), MAX_DEPTH) {
                        return Err(de::Error::custom(TOO_DEEP));
                    }
                    metadata = Some(raw);
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            self.current_field.set(None);
        }

        fn require<T, E: de::Error>(slot: Option<T>, field: &'static str) -> Result<T, E> {
            slot.ok_or_else(|| E::custom(format_args!("{MISSING_PREFIX}{field}")))
        }
        let message_id = require::<_, A::Error>(message_id, "message_id")?;
        let content = require::<_, A::Error>(content, "content")?;
        let producer_id = require::<_, A::Error>(producer_id, "producer_id")?;
        let timestamp = require::<_, A::Error>(timestamp, "timestamp")?;
        let metadata = require::<_, A::Error>(metadata, "metadata")?;
        Ok(timestamp.map(|timestamp| KafkaMessage {
            message_id,
            content,
            producer_id,
            timestamp,
            metadata: Cow::Borrowed(metadata),
        }))
    }
}

/// A string that borrows from the input when it holds no escapes. (serde's own `Cow<str>`
/// impl always allocates unless the field carries `#[serde(borrow)]`, which a hand-written
/// visitor cannot use.)
struct BorrowedStr<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for BorrowedStr<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StrVisitor;
        impl<'de> Visitor<'de> for StrVisitor {
            type Value = BorrowedStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(BorrowedStr(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(BorrowedStr(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(BorrowedStr(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(StrVisitor)
    }
}
