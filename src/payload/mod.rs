//! Record values in the formats a team's own data comes in, decoded for the sinks.
//!
//! `format` (in `[consumer]` and `[producer]`) says what a record value is:
//!
//! | format | a value is | the sinks get | a bad value |
//! |---|---|---|---|
//! | `kafka_message` (default) | the seed's five-field JSON object ([`crate::message`]) | the message | a [`DecodeError`](crate::message::DecodeError) |
//! | `json` | any JSON value | that value | `empty`, `not_utf8`, `not_json` |
//! | `text` | UTF-8 text | the text | `not_utf8` |
//! | `bytes` | anything | the bytes, base64 where JSON carries them | none |
//! | `avro`, `protobuf`, `json_schema` | the schema registry's wire format: byte 0, a 4-byte big-endian schema id, the body | the body decoded to JSON with the registry's schema | see [`registry`] |
//!
//! [`Decoder::decode`] is the one function that turns a value into a [`Payload`]; the
//! producer checks each line of its input with it too, so what a kafkad producer sends in a
//! format, a kafkad consumer of that format accepts. What a sink writes for a payload is
//! defined once, in [`line`].
//!
//! `kafka_message` keeps the seed's zero-copy codec: the message borrows from the record.
//! `json`, `text` and `bytes` borrow too (a `json` value is validated and kept as its own
//! text); only the schema'd formats build a value.

pub mod avro;
pub mod framing;
pub mod line;
pub mod protobuf;
pub mod registry;

use std::borrow::Cow;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::message::{DecodeError, KafkaMessage};
pub use framing::SchemaFraming;
pub use registry::{RegistryError, SchemaRegistry};

/// What a record value is: `format` in `[consumer]` and `[producer]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// The seed's `KafkaMessage`: a JSON object with its five fields, strictly checked.
    #[default]
    KafkaMessage,
    /// Any JSON value.
    Json,
    /// UTF-8 text.
    Text,
    /// Any bytes.
    Bytes,
    /// Avro, in the schema registry's wire format.
    Avro,
    /// Protocol Buffers, in the schema registry's wire format.
    Protobuf,
    /// JSON checked by nothing but its framing, in the schema registry's wire format.
    JsonSchema,
}

impl Format {
    /// Every format, as configuration spells it.
    pub const ALL: [Format; 7] = [
        Format::KafkaMessage,
        Format::Json,
        Format::Text,
        Format::Bytes,
        Format::Avro,
        Format::Protobuf,
        Format::JsonSchema,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Format::KafkaMessage => "kafka_message",
            Format::Json => "json",
            Format::Text => "text",
            Format::Bytes => "bytes",
            Format::Avro => "avro",
            Format::Protobuf => "protobuf",
            Format::JsonSchema => "json_schema",
        }
    }

    /// The schema'd formats, whose values name a schema kept by a schema registry.
    pub fn schema_framing(self) -> Option<SchemaFraming> {
        match self {
            Format::Avro => Some(SchemaFraming::Avro),
            Format::Protobuf => Some(SchemaFraming::Protobuf),
            Format::JsonSchema => Some(SchemaFraming::JsonSchema),
            Format::KafkaMessage | Format::Json | Format::Text | Format::Bytes => None,
        }
    }
}

/// Read by name, naming every format when the name is none of them.
impl<'de> Deserialize<'de> for Format {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Format::ALL
            .into_iter()
            .find(|format| format.as_str() == name)
            .ok_or_else(|| {
                let allowed: Vec<&str> = Format::ALL.iter().map(|f| f.as_str()).collect();
                serde::de::Error::custom(format_args!(
                    "unknown format `{name}`; allowed: {}",
                    allowed.join(", ")
                ))
            })
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A decoded record value, borrowing from the record where its format allows.
#[derive(Debug, Clone)]
pub enum Payload<'a> {
    /// `kafka_message`.
    Message(KafkaMessage<'a>),
    /// `json` (the value's own text), and the schema'd formats decoded to JSON.
    Json(Cow<'a, RawValue>),
    /// `text`.
    Text(Cow<'a, str>),
    /// `bytes`.
    Bytes(Cow<'a, [u8]>),
}

/// Two payloads are equal when their values are; JSON compares as text.
impl PartialEq for Payload<'_> {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Payload::Message(a), Payload::Message(b)) => a == b,
            (Payload::Json(a), Payload::Json(b)) => a.get() == b.get(),
            (Payload::Text(a), Payload::Text(b)) => a == b,
            (Payload::Bytes(a), Payload::Bytes(b)) => a == b,
            _ => false,
        }
    }
}

impl Payload<'_> {
    /// Copies every borrowed part so the payload outlives the record buffer.
    pub fn into_owned(self) -> Payload<'static> {
        match self {
            Payload::Message(message) => Payload::Message(message.into_owned()),
            Payload::Json(value) => Payload::Json(Cow::Owned(value.into_owned())),
            Payload::Text(text) => Payload::Text(Cow::Owned(text.into_owned())),
            Payload::Bytes(bytes) => Payload::Bytes(Cow::Owned(bytes.into_owned())),
        }
    }
}

/// Why a value is not a record of its format: the `kafkad.error.kind` of its dead-letter
/// copy, beside the seed format's [`DecodeError`] kinds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("record value is empty, which is not JSON")]
    Empty,
    #[error("record value is not UTF-8 (invalid byte after {valid_up_to} valid bytes)")]
    NotUtf8 { valid_up_to: usize },
    #[error("record value is not JSON: {detail}")]
    NotJson { detail: String },
    /// The value does not start with the registry framing (byte 0, a 4-byte schema id).
    #[error("record value does not start with a schema id (byte 0 and 4 bytes): {detail}")]
    NoSchemaId { detail: String },
    /// The registry has no schema of that id.
    #[error("schema id {id} is unknown to the schema registry")]
    UnknownSchema { id: u32 },
    /// The registry's schema of that id is of another type than the consumer's format.
    #[error("schema id {id} is a {found} schema, not {expected}")]
    WrongSchemaType {
        id: u32,
        expected: &'static str,
        found: String,
    },
    /// The registry's schema of that id cannot be used: it does not parse, or names a type it
    /// does not define.
    #[error("schema id {id} cannot be used: {detail}")]
    InvalidSchema { id: u32, detail: String },
    #[error("record value is not Avro of schema id {id}: {detail}")]
    UndecodableAvro { id: u32, detail: String },
    #[error("record value is not Protobuf of schema id {id}: {detail}")]
    UndecodableProtobuf { id: u32, detail: String },
}

impl PayloadError {
    /// Every [`kind`](Self::kind).
    pub const KINDS: [&'static str; 9] = [
        "empty",
        "not_utf8",
        "not_json",
        "no_schema_id",
        "unknown_schema",
        "wrong_schema_type",
        "invalid_schema",
        "undecodable_avro",
        "undecodable_protobuf",
    ];

    /// A stable, snake_case name for metrics labels and dead-letter headers; the three the
    /// seed's codec has too (`empty`, `not_utf8`, `not_json`) mean the same there.
    pub fn kind(&self) -> &'static str {
        match self {
            PayloadError::Empty => "empty",
            PayloadError::NotUtf8 { .. } => "not_utf8",
            PayloadError::NotJson { .. } => "not_json",
            PayloadError::NoSchemaId { .. } => "no_schema_id",
            PayloadError::UnknownSchema { .. } => "unknown_schema",
            PayloadError::WrongSchemaType { .. } => "wrong_schema_type",
            PayloadError::InvalidSchema { .. } => "invalid_schema",
            PayloadError::UndecodableAvro { .. } => "undecodable_avro",
            PayloadError::UndecodableProtobuf { .. } => "undecodable_protobuf",
        }
    }
}

/// Why a value was not decoded: its own fault, or the schema registry's.
#[derive(Debug, thiserror::Error)]
pub enum Undecoded {
    /// The value is not a record of its format: a bad record, dead-lettered with its kind.
    #[error(transparent)]
    Bad(#[from] BadValue),
    /// The schema registry could not be asked (down, unreachable, answering 5xx): not the
    /// record's fault, so it is not dead-lettered but tried again, like a sink that is down.
    #[error(transparent)]
    RegistryUnavailable(RegistryError),
}

/// A value that is not a record of its format, in the seed's format or another.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadValue {
    #[error(transparent)]
    Message(#[from] DecodeError),
    #[error(transparent)]
    Payload(#[from] PayloadError),
}

impl BadValue {
    pub fn kind(&self) -> &'static str {
        match self {
            BadValue::Message(error) => error.kind(),
            BadValue::Payload(error) => error.kind(),
        }
    }
}

/// Decodes record values of one format; holds the schema registry client of the schema'd
/// formats, whose cache every worker of a consumer shares.
#[derive(Clone)]
pub struct Decoder {
    format: Format,
    registry: Option<Arc<SchemaRegistry>>,
}

impl Decoder {
    /// A decoder of `format`. The schema'd formats need `registry`; configuration checked
    /// that one is configured for them, and a decoder built without one rejects their
    /// values as of an unknown schema.
    pub fn new(format: Format, registry: Option<Arc<SchemaRegistry>>) -> Self {
        Decoder { format, registry }
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// Decodes one record value.
    pub fn decode<'a>(&self, value: &'a [u8]) -> Result<Payload<'a>, Undecoded> {
        match self.format {
            Format::KafkaMessage => Ok(Payload::Message(
                KafkaMessage::decode(value).map_err(BadValue::from)?,
            )),
            Format::Json => Ok(Payload::Json(Cow::Borrowed(json(value)?))),
            Format::Text => Ok(Payload::Text(Cow::Borrowed(text(value)?))),
            Format::Bytes => Ok(Payload::Bytes(Cow::Borrowed(value))),
            Format::Avro | Format::Protobuf | Format::JsonSchema => self.decode_framed(value),
        }
    }

    fn decode_framed<'a>(&self, value: &'a [u8]) -> Result<Payload<'a>, Undecoded> {
        let framing = self
            .format
            .schema_framing()
            .expect("only the schema'd formats are framed");
        let framed = framing::split(value).map_err(BadValue::from)?;
        let Some(registry) = &self.registry else {
            return Err(BadValue::from(PayloadError::UnknownSchema { id: framed.id }).into());
        };
        let schema = registry.schema(framed.id, framing)?;
        match schema.as_ref() {
            registry::Schema::Avro(schema) => Ok(Payload::Json(Cow::Owned(avro::decode(
                schema,
                framed.id,
                framed.body,
            )?))),
            registry::Schema::Protobuf(schema) => Ok(Payload::Json(Cow::Owned(protobuf::decode(
                schema,
                framed.id,
                framed.body,
            )?))),
            registry::Schema::Json => {
                let body = json(framed.body)?;
                Ok(Payload::Json(Cow::Borrowed(body)))
            }
        }
    }
}

/// `value` as UTF-8 text.
pub fn text(value: &[u8]) -> Result<&str, BadValue> {
    std::str::from_utf8(value).map_err(|error| {
        BadValue::from(PayloadError::NotUtf8 {
            valid_up_to: error.valid_up_to(),
        })
    })
}

/// `value` as one JSON value, kept as its text. serde_json reads a raw value without
/// recursing, so any depth is read safely.
pub fn json(value: &[u8]) -> Result<&RawValue, BadValue> {
    if value.is_empty() {
        return Err(PayloadError::Empty.into());
    }
    let text = text(value)?;
    serde_json::from_str::<&RawValue>(text).map_err(|error| {
        let detail = error.to_string();
        let detail = match detail.rfind(" at line ") {
            Some(at) => detail[..at].to_owned(),
            None => detail,
        };
        PayloadError::NotJson { detail }.into()
    })
}

#[cfg(test)]
mod tests;
