//! The `KafkaMessage` codec: the one place where kafkad's wire format lives.
//!
//! Every record value is one JSON object with the seed's five fields:
//!
//! ```json
//! {"message_id": 7, "content": "hello", "producer_id": "producer-1",
//!  "timestamp": "2026-11-25T18:08:06.906824", "metadata": {"source": "kafkad"}}
//! ```
//!
//! Decoding is strict about the five fields (missing or mistyped ones are a [`DecodeError`]
//! naming the field) and lenient about everything else (unknown extra fields are skipped), so
//! producers can add fields without breaking consumers.
//!
//! [`KafkaMessage`] borrows from the record it was decoded from (`Cow` strings, raw `metadata`),
//! so the consumer hot path decodes without copying the payload. [`KafkaMessage::into_owned`]
//! detaches it from the buffer, for a message kept after its record is gone (the single
//! consumer's message waiting for a retry).
//!
//! This file holds the message and its encoding; `decode` holds the strict reading of a value
//! and the errors it names, `timestamp` the timestamp with its fast and general text forms.

mod decode;
#[cfg(test)]
mod tests;
mod timestamp;

use std::borrow::Cow;
use std::cell::Cell;

use serde::de::DeserializeSeed;
use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;

pub use decode::DecodeError;
use decode::MessageSeed;
pub use timestamp::{Timestamp, TimestampError};

/// The field names, in wire order.
const FIELDS: [&str; 5] = [
    "message_id",
    "content",
    "producer_id",
    "timestamp",
    "metadata",
];

/// One message as it travels through Kafka.
#[derive(Debug, Clone)]
pub struct KafkaMessage<'a> {
    /// Sequence number, unique per `producer_id`.
    pub message_id: i64,
    /// The payload text.
    pub content: Cow<'a, str>,
    /// Who sent it; `(producer_id, message_id)` identifies a message across the system.
    pub producer_id: Cow<'a, str>,
    /// When the producer created it.
    pub timestamp: Timestamp,
    /// Free-form JSON object, kept as raw JSON text: consumers that do not look inside it
    /// never pay for parsing it.
    pub metadata: Cow<'a, RawValue>,
}

impl<'a> KafkaMessage<'a> {
    /// A message stamped with the current time and empty metadata.
    pub fn new(
        message_id: i64,
        content: impl Into<Cow<'a, str>>,
        producer_id: impl Into<Cow<'a, str>>,
    ) -> Self {
        KafkaMessage {
            message_id,
            content: content.into(),
            producer_id: producer_id.into(),
            timestamp: Timestamp::now(),
            metadata: Cow::Borrowed(empty_object()),
        }
    }

    /// Replaces the metadata with a JSON object.
    pub fn with_metadata(mut self, metadata: &serde_json::Map<String, serde_json::Value>) -> Self {
        let text = serde_json::to_string(metadata).expect("a JSON map always serializes");
        self.metadata =
            Cow::Owned(RawValue::from_string(text).expect("serde_json wrote valid JSON"));
        self
    }

    /// The metadata parsed into a JSON map.
    pub fn metadata_map(&self) -> serde_json::Map<String, serde_json::Value> {
        // Decoding checked that metadata is a JSON object, so this cannot fail for a
        // decoded message; a hand-built one falls back to an empty map.
        serde_json::from_str(self.metadata.get()).unwrap_or_default()
    }

    /// Decodes one record value.
    ///
    /// The value must be UTF-8 JSON holding the five fields with the right types; extra fields
    /// are ignored. `metadata` nested deeper than 128 levels (serde_json's recursion limit) is
    /// rejected, so `metadata_map` can always parse it; unknown fields are skipped by an
    /// iterative scanner at any depth. A hostile record can neither overflow the stack nor
    /// make us allocate a deep tree.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        if bytes.is_empty() {
            return Err(DecodeError::Empty);
        }
        let text = std::str::from_utf8(bytes).map_err(|e| DecodeError::NotUtf8 {
            valid_up_to: e.valid_up_to(),
        })?;
        let current_field = Cell::new(None);
        let mut json = serde_json::Deserializer::from_str(text);
        let seed = MessageSeed {
            current_field: &current_field,
        };
        let message = seed
            .deserialize(&mut json)
            .and_then(|message| json.end().map(|()| message))
            .map_err(|error| DecodeError::from_json(error, current_field.get()))?;
        message
    }

    /// Copies every borrowed part so the message outlives the record buffer.
    pub fn into_owned(self) -> KafkaMessage<'static> {
        KafkaMessage {
            message_id: self.message_id,
            content: Cow::Owned(self.content.into_owned()),
            producer_id: Cow::Owned(self.producer_id.into_owned()),
            timestamp: self.timestamp,
            metadata: Cow::Owned(self.metadata.into_owned()),
        }
    }

    /// Appends the JSON encoding to `buf` (which the producer reuses between messages).
    pub fn encode_into(&self, buf: &mut Vec<u8>) {
        serde_json::to_writer(buf, self).expect("writing JSON into a Vec cannot fail");
    }

    /// The JSON encoding as a new buffer.
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(192);
        self.encode_into(&mut buf);
        buf
    }
}

/// Two messages are equal when their fields are; metadata compares as JSON text.
impl PartialEq for KafkaMessage<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.message_id == other.message_id
            && self.content == other.content
            && self.producer_id == other.producer_id
            && self.timestamp == other.timestamp
            && self.metadata.get() == other.metadata.get()
    }
}

fn empty_object() -> &'static RawValue {
    static EMPTY: std::sync::OnceLock<Box<RawValue>> = std::sync::OnceLock::new();
    EMPTY.get_or_init(|| RawValue::from_string("{}".to_owned()).expect("`{}` is valid JSON"))
}

impl Serialize for KafkaMessage<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("KafkaMessage", FIELDS.len())?;
        s.serialize_field("message_id", &self.message_id)?;
        s.serialize_field("content", &self.content)?;
        s.serialize_field("producer_id", &self.producer_id)?;
        s.serialize_field("timestamp", &self.timestamp)?;
        s.serialize_field("metadata", &self.metadata)?;
        s.end()
    }
}

/// The first few characters of a value, for error messages about hostile input.
fn preview(text: &str) -> String {
    const MAX: usize = 32;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_owned(),
    }
}
