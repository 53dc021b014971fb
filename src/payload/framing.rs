//! The schema registry's wire format (Confluent's, which Apicurio's compatible API and every
//! Confluent serializer use): byte 0, the schema id as 4 big-endian bytes, then the body. A
//! Protobuf body starts with the path of its message type in the schema (see
//! [`crate::payload::protobuf`]).

use super::PayloadError;

/// The first byte of every framed value.
const MAGIC: u8 = 0;
/// Magic byte and schema id.
const HEADER: usize = 5;

/// The schema'd formats, by the schema type the registry reports for their ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchemaFraming {
    Avro,
    Protobuf,
    JsonSchema,
}

impl SchemaFraming {
    /// The registry's `schemaType` of this format's schemas (absent means `AVRO`).
    pub fn schema_type(self) -> &'static str {
        match self {
            SchemaFraming::Avro => "AVRO",
            SchemaFraming::Protobuf => "PROTOBUF",
            SchemaFraming::JsonSchema => "JSON",
        }
    }
}

/// A framed value taken apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framed<'a> {
    pub id: u32,
    pub body: &'a [u8],
}

/// Splits the schema id from the body.
pub fn split(value: &[u8]) -> Result<Framed<'_>, PayloadError> {
    match value {
        [MAGIC, a, b, c, d, body @ ..] => Ok(Framed {
            id: u32::from_be_bytes([*a, *b, *c, *d]),
            body,
        }),
        [MAGIC, ..] => Err(PayloadError::NoSchemaId {
            detail: format!("{} bytes, shorter than the {HEADER} it takes", value.len()),
        }),
        [first, ..] => Err(PayloadError::NoSchemaId {
            detail: format!("the first byte is {first}, not {MAGIC}"),
        }),
        [] => Err(PayloadError::NoSchemaId {
            detail: "the value is empty".to_owned(),
        }),
    }
}

/// `id` and `body` framed: what a registry-aware producer writes.
pub fn frame(id: u32, body: &[u8]) -> Vec<u8> {
    let mut value = Vec::with_capacity(HEADER + body.len());
    value.push(MAGIC);
    value.extend_from_slice(&id.to_be_bytes());
    value.extend_from_slice(body);
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_id_is_four_big_endian_bytes_after_byte_zero() {
        let value = frame(0x0102_0304, b"body");
        assert_eq!(value[..5], [0, 1, 2, 3, 4]);
        assert_eq!(
            split(&value),
            Ok(Framed {
                id: 0x0102_0304,
                body: b"body"
            })
        );
        assert_eq!(split(&[0, 0, 0, 0, 9]), Ok(Framed { id: 9, body: b"" }));
    }

    #[test]
    fn an_unframed_value_says_why() {
        for (value, detail) in [
            (&b""[..], "the value is empty"),
            (b"{\"a\":1}", "the first byte is 123, not 0"),
            (b"\x00\x00\x01", "3 bytes, shorter than the 5 it takes"),
        ] {
            assert_eq!(
                split(value),
                Err(PayloadError::NoSchemaId {
                    detail: detail.to_owned()
                })
            );
        }
    }
}
