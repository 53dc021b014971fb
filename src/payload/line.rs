//! What a sink writes for a record, defined once for every format.
//!
//! * **A line** ([`write_line`]): what the `jsonl` sink appends per record and the `command`
//!   sink writes to its program's standard input, one JSON object per record:
//!
//!   ```json
//!   {"topic":"orders.eu","partition":0,"offset":42,"key":"user-7",
//!    "headers":[{"name":"trace","value":"abc"}],"value":{"order":1}}
//!   ```
//!
//!   `value` is the record's value as JSON: the value itself for `json` and the schema'd
//!   formats, a string for `text`; a `bytes` value is `value_base64` instead. A key or a header
//!   value that is not UTF-8 is written as `key_base64` / `value_base64` (base64 with padding,
//!   RFC 4648's standard alphabet); no key is `"key":null`, a header without a value
//!   `"value":null`; headers keep their order and repeats. Bytes are never replaced or
//!   dropped: every line gives the record back byte for byte.
//!
//!   The seed's `kafka_message` keeps the line its reconciliation reads
//!   (`producer_id, message_id, partition, offset`), followed by `topic`, `key` and `headers`
//!   the same way; the `command` sink gets the message itself per line, as before.
//! * **A value** ([`write_value`]): what the `http` sink posts, one per request, or a batch's
//!   as a JSON array: the line's `value` alone (a `bytes` value as a base64 string), and the
//!   message itself for `kafka_message`.

use base64::Engine as _;
use rdkafka::message::{Headers, OwnedHeaders};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};

use super::Payload;

/// The base64 of every JSON line: the standard alphabet, padded.
pub const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Where a record came from, and what it carries besides its value.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    pub headers: Option<&'a OwnedHeaders>,
}

/// Appends the JSON line of a record (without the newline) to `out`.
pub fn write_line(out: &mut Vec<u8>, origin: &Origin<'_>, payload: &Payload<'_>) {
    serde_json::to_writer(out, &Line { origin, payload }).expect("writing JSON into a Vec");
}

/// What the `command` sink writes per record (without the newline): the message for the seed
/// format, as it always had; the line for every other.
pub fn write_command_line(out: &mut Vec<u8>, origin: &Origin<'_>, payload: &Payload<'_>) {
    match payload {
        Payload::Message(message) => message.encode_into(out),
        _ => write_line(out, origin, payload),
    }
}

/// Appends the value of a record as JSON (what the `http` sink posts) to `out`.
pub fn write_value(out: &mut Vec<u8>, payload: &Payload<'_>) {
    serde_json::to_writer(out, &Value(payload)).expect("writing JSON into a Vec");
}

struct Line<'r> {
    origin: &'r Origin<'r>,
    payload: &'r Payload<'r>,
}

impl Serialize for Line<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let origin = self.origin;
        let mut line = serializer.serialize_map(None)?;
        if let Payload::Message(message) = self.payload {
            line.serialize_entry("producer_id", &message.producer_id)?;
            line.serialize_entry("message_id", &message.message_id)?;
            line.serialize_entry("partition", &origin.partition)?;
            line.serialize_entry("offset", &origin.offset)?;
            line.serialize_entry("topic", origin.topic)?;
        } else {
            line.serialize_entry("topic", origin.topic)?;
            line.serialize_entry("partition", &origin.partition)?;
            line.serialize_entry("offset", &origin.offset)?;
        }
        bytes_entry(&mut line, "key", "key_base64", origin.key)?;
        line.serialize_entry("headers", &HeaderList(origin.headers))?;
        match self.payload {
            Payload::Message(_) => {}
            Payload::Bytes(bytes) => line.serialize_entry("value_base64", &Base64(bytes))?,
            payload => line.serialize_entry("value", &Value(payload))?,
        }
        line.end()
    }
}

/// `name: "text"` for UTF-8 bytes, `base64_name: "..."` for others, `name: null` for none.
fn bytes_entry<M: SerializeMap>(
    map: &mut M,
    name: &'static str,
    base64_name: &'static str,
    bytes: Option<&[u8]>,
) -> Result<(), M::Error> {
    match bytes.map(std::str::from_utf8) {
        None => map.serialize_entry(name, &()),
        Some(Ok(text)) => map.serialize_entry(name, text),
        Some(Err(_)) => map.serialize_entry(base64_name, &Base64(bytes.unwrap_or_default())),
    }
}

struct HeaderList<'h>(Option<&'h OwnedHeaders>);

impl Serialize for HeaderList<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let Some(headers) = self.0 else {
            return serializer.serialize_seq(Some(0))?.end();
        };
        let mut list = serializer.serialize_seq(Some(headers.count()))?;
        for header in headers.iter() {
            list.serialize_element(&HeaderEntry {
                name: header.key,
                value: header.value,
            })?;
        }
        list.end()
    }
}

struct HeaderEntry<'h> {
    name: &'h str,
    value: Option<&'h [u8]>,
}

impl Serialize for HeaderEntry<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut entry = serializer.serialize_map(Some(2))?;
        entry.serialize_entry("name", self.name)?;
        bytes_entry(&mut entry, "value", "value_base64", self.value)?;
        entry.end()
    }
}

struct Base64<'b>(&'b [u8]);

impl Serialize for Base64<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&BASE64.encode(self.0))
    }
}

struct Value<'p>(&'p Payload<'p>);

impl Serialize for Value<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Payload::Message(message) => message.serialize(serializer),
            Payload::Json(raw) => raw.serialize(serializer),
            Payload::Text(text) => serializer.serialize_str(text),
            Payload::Bytes(bytes) => Base64(bytes).serialize(serializer),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use rdkafka::message::Header;
    use serde_json::json;

    use super::*;
    use crate::message::KafkaMessage;
    use crate::payload::{Decoder, Format};

    fn headers() -> OwnedHeaders {
        OwnedHeaders::new()
            .insert(Header {
                key: "trace",
                value: Some("abc"),
            })
            .insert(Header {
                key: "raw",
                value: Some(&[0xff, 0x00][..]),
            })
            .insert(Header::<&str> {
                key: "none",
                value: None,
            })
            .insert(Header {
                key: "trace",
                value: Some("again"),
            })
    }

    fn origin<'a>(
        topic: &'a str,
        key: Option<&'a [u8]>,
        headers: Option<&'a OwnedHeaders>,
    ) -> Origin<'a> {
        Origin {
            topic,
            partition: 2,
            offset: 42,
            key,
            headers,
        }
    }

    fn line(origin: &Origin<'_>, payload: &Payload<'_>) -> serde_json::Value {
        let mut out = Vec::new();
        write_line(&mut out, origin, payload);
        assert!(!out.contains(&b'\n'), "one line");
        serde_json::from_slice(&out).expect("a JSON object")
    }

    fn decoded(format: Format, value: &[u8]) -> Payload<'_> {
        Decoder::new(format, None)
            .decode(value)
            .unwrap_or_else(|e| panic!("{format}: {e}"))
    }

    #[test]
    fn a_json_record_line_has_its_value_and_where_it_came_from() {
        let headers = headers();
        let origin = origin("orders.eu", Some(b"user-7"), Some(&headers));
        let value = br#"{"order": 1, "items": [{"sku": "a"}]}"#;
        assert_eq!(
            line(&origin, &decoded(Format::Json, value)),
            json!({
                "topic": "orders.eu", "partition": 2, "offset": 42, "key": "user-7",
                "headers": [
                    {"name": "trace", "value": "abc"},
                    {"name": "raw", "value_base64": "/wA="},
                    {"name": "none", "value": null},
                    {"name": "trace", "value": "again"},
                ],
                "value": {"order": 1, "items": [{"sku": "a"}]},
            })
        );
    }

    #[test]
    fn text_is_a_string_and_bytes_are_base64_named_so() {
        let origin = origin("t", Some(&[0x80, 0x81]), None);
        let text = "tab\there \"quoted\" \u{1F600}\r";
        let written = line(&origin, &decoded(Format::Text, text.as_bytes()));
        assert_eq!(written["value"], text, "the text back, byte for byte");
        assert_eq!(written["key_base64"], "gIE=");
        assert!(written.get("key").is_none(), "{written}");
        assert_eq!(written["headers"], json!([]));

        let bytes = [0u8, 1, 2, 0xfe, 0xff];
        let written = line(&origin, &decoded(Format::Bytes, &bytes));
        assert_eq!(written["value_base64"], "AAEC/v8=");
        assert!(written.get("value").is_none(), "{written}");
        let back = BASE64
            .decode(written["value_base64"].as_str().expect("string"))
            .expect("base64");
        assert_eq!(back, bytes);
    }

    #[test]
    fn no_key_is_null() {
        let written = line(&origin("t", None, None), &decoded(Format::Json, b"1"));
        assert_eq!(written["key"], serde_json::Value::Null);
        assert_eq!(written["value"], 1);
    }

    #[test]
    fn the_seed_format_keeps_its_reconciliation_line_and_adds_key_and_headers() {
        let headers = headers();
        let value = KafkaMessage::new(5, "c", "producer-1").encode();
        let origin = origin("andrew-topic", Some(b"5"), Some(&headers));
        let payload = decoded(Format::KafkaMessage, &value);
        let mut out = Vec::new();
        write_line(&mut out, &origin, &payload);
        let text = String::from_utf8(out).expect("utf8");
        assert!(
            text.starts_with(
                r#"{"producer_id":"producer-1","message_id":5,"partition":2,"offset":42,"topic":"andrew-topic","key":"5","headers":["#
            ),
            "{text}"
        );
        let processed: crate::sink::ProcessedLine = serde_json::from_str(&text).expect("read");
        assert_eq!((processed.message_id, processed.offset), (5, 42));

        let mut command = Vec::new();
        write_command_line(&mut command, &origin, &payload);
        assert_eq!(
            command, value,
            "the command sink gets the message as before"
        );
        let mut posted = Vec::new();
        write_value(&mut posted, &payload);
        assert_eq!(posted, value, "the http sink posts the message as before");
    }

    #[test]
    fn the_http_value_is_the_line_value_alone() {
        let posted = |payload: &Payload<'_>| {
            let mut out = Vec::new();
            write_value(&mut out, payload);
            String::from_utf8(out).expect("utf8")
        };
        assert_eq!(
            posted(&decoded(Format::Json, b" {\"a\": [1]} ")),
            r#"{"a": [1]}"#,
            "a json value is posted as it was written"
        );
        assert_eq!(posted(&decoded(Format::Text, b"a\"b")), r#""a\"b""#);
        assert_eq!(
            posted(&Payload::Bytes(Cow::Borrowed(&[0xff][..]))),
            r#""/w==""#
        );
        let origin = origin("t", None, None);
        let json = decoded(Format::Json, b"[1,2]");
        let mut command = Vec::new();
        write_command_line(&mut command, &origin, &json);
        let mut jsonl = Vec::new();
        write_line(&mut jsonl, &origin, &json);
        assert_eq!(
            command, jsonl,
            "the command sink reads the jsonl sink's lines"
        );
    }
}
