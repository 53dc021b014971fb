//! Protobuf bodies decoded to JSON with a descriptor compiled from the registry's `.proto`.
//!
//! The registry keeps Protobuf schemas as `.proto` text; `protox` compiles it (with the texts
//! of its references as the files it imports, and Google's well-known types) in process, once
//! per schema id. In the wire format a Protobuf body starts with the path of its message type
//! in the file: a count and that many indexes, each a zigzag varint (the first the index of a
//! top-level message, the next of a message nested in it, ...), a single 0 standing for the
//! file's first message. The message is written in the canonical proto3 JSON mapping
//! (lowerCamelCase names, 64-bit integers as strings, enums by name, fields at their default
//! left out).

use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor};
use protox::file::{ChainFileResolver, File, FileResolver, GoogleFileResolver};
use serde_json::value::RawValue;

use super::registry::SchemaText;
use super::{BadValue, PayloadError};

/// The name the schema's own text is compiled under.
const MAIN_FILE: &str = "kafkad-schema.proto";
/// Message index paths longer than this are not a real schema's.
const MAX_PATH: usize = 64;

/// A compiled `.proto` and its imports.
pub struct ProtoSchema {
    pool: DescriptorPool,
}

/// The schema's text and its references as files to import, by name.
struct Texts {
    main: String,
    references: Vec<(String, String)>,
}

impl FileResolver for Texts {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        let text = match name {
            MAIN_FILE => Some(self.main.as_str()),
            name => self
                .references
                .iter()
                .find(|(reference, _)| reference == name)
                .map(|(_, text)| text.as_str()),
        };
        match text {
            Some(text) => File::from_source(name, text),
            None => Err(protox::Error::file_not_found(name)),
        }
    }
}

impl ProtoSchema {
    /// Compiles the registry's schema text and the files it imports.
    pub fn compile(text: &SchemaText) -> Result<Self, String> {
        let mut resolver = ChainFileResolver::new();
        resolver.add(Texts {
            main: text.text.clone(),
            references: text.references.clone(),
        });
        resolver.add(GoogleFileResolver::new());
        let mut compiler = protox::Compiler::with_file_resolver(resolver);
        compiler
            .include_imports(true)
            .open_file(MAIN_FILE)
            .map_err(|error| error.to_string())?;
        let pool = compiler.descriptor_pool();
        let schema = ProtoSchema { pool };
        if schema.main().messages().len() == 0 {
            return Err("the schema defines no message".to_owned());
        }
        Ok(schema)
    }

    fn main(&self) -> prost_reflect::FileDescriptor {
        self.pool
            .get_file_by_name(MAIN_FILE)
            .expect("the main file was compiled into the pool")
    }

    /// The message type at `path` (indexes of a top-level message, then of nested ones).
    fn message(&self, path: &[i64]) -> Option<MessageDescriptor> {
        let (first, nested) = path.split_first()?;
        let mut message = self.main().messages().nth(usize::try_from(*first).ok()?)?;
        for index in nested {
            let child = message
                .child_messages()
                .nth(usize::try_from(*index).ok()?)?;
            message = child;
        }
        Some(message)
    }
}

/// Decodes a framed body (schema id `id`): its message path, then the message, to JSON text.
pub fn decode(schema: &ProtoSchema, id: u32, body: &[u8]) -> Result<Box<RawValue>, BadValue> {
    let undecodable =
        |detail: String| BadValue::from(PayloadError::UndecodableProtobuf { id, detail });
    let (path, message) = message_path(body).map_err(undecodable)?;
    let descriptor = schema
        .message(&path)
        .ok_or_else(|| undecodable(format!("the schema has no message at index path {path:?}")))?;
    let decoded = DynamicMessage::decode(descriptor, message)
        .map_err(|error| undecodable(error.to_string()))?;
    serde_json::value::to_raw_value(&decoded).map_err(|error| undecodable(error.to_string()))
}

/// The message index path at the start of `body`, and the message after it.
fn message_path(body: &[u8]) -> Result<(Vec<i64>, &[u8]), String> {
    let mut rest = body;
    let count = zigzag(&mut rest)?;
    if count == 0 {
        return Ok((vec![0], rest));
    }
    let count = usize::try_from(count)
        .ok()
        .filter(|count| *count <= MAX_PATH)
        .ok_or_else(|| format!("a message index path of {count} entries"))?;
    let mut path = Vec::with_capacity(count);
    for _ in 0..count {
        path.push(zigzag(&mut rest)?);
    }
    Ok((path, rest))
}

/// Reads one zigzag varint from the front of `bytes`.
fn zigzag(bytes: &mut &[u8]) -> Result<i64, String> {
    let mut value: u64 = 0;
    for shift in (0..64).step_by(7) {
        let Some((&byte, rest)) = bytes.split_first() else {
            return Err("the message index path is cut short".to_owned());
        };
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok((value >> 1) as i64 ^ -((value & 1) as i64));
        }
    }
    Err("a message index longer than 10 bytes".to_owned())
}

#[cfg(test)]
pub(crate) mod tests {
    use prost_reflect::prost::Message as _;
    use prost_reflect::Value;

    use super::*;

    /// A `.proto` as a registry answers it for a schema of two top-level messages, one with a
    /// nested message, and an import of a well-known type.
    pub(crate) const ORDERS: &str = r#"
        syntax = "proto3";
        package shop;
        import "google/protobuf/timestamp.proto";
        message Ping { string from = 1; }
        message Order {
            int64 id = 1;
            string customer_name = 2;
            repeated Line lines = 3;
            google.protobuf.Timestamp placed = 4;
            message Line { string sku = 1; int32 quantity = 2; }
        }
    "#;

    pub(crate) fn compiled(text: &str) -> ProtoSchema {
        ProtoSchema::compile(&SchemaText {
            text: text.to_owned(),
            references: Vec::new(),
        })
        .unwrap_or_else(|e| panic!("compiles: {e}"))
    }

    /// An `Order` encoded the way a Protobuf serializer frames it: path [1], then the message.
    pub(crate) fn order_body(schema: &ProtoSchema) -> Vec<u8> {
        let descriptor = schema.message(&[1]).expect("Order");
        let line_descriptor = schema.message(&[1, 0]).expect("Order.Line");
        let mut line = DynamicMessage::new(line_descriptor);
        line.set_field_by_name("sku", Value::String("a-1".into()));
        line.set_field_by_name("quantity", Value::I32(3));
        let mut order = DynamicMessage::new(descriptor);
        order.set_field_by_name("id", Value::I64(7));
        order.set_field_by_name("customer_name", Value::String("ann".into()));
        order.set_field_by_name("lines", Value::List(vec![Value::Message(line)]));
        // Path [1]: count 1 and index 1, each a zigzag varint (n -> 2n).
        let mut body = vec![2, 2];
        body.extend(order.encode_to_vec());
        body
    }

    #[test]
    fn the_message_path_picks_the_type_and_the_json_is_canonical() {
        let schema = compiled(ORDERS);
        let decoded = decode(&schema, 3, &order_body(&schema)).expect("decodes");
        let json: serde_json::Value = serde_json::from_str(decoded.get()).expect("JSON");
        assert_eq!(
            json,
            serde_json::json!({
                "id": "7", "customerName": "ann", "lines": [{"sku": "a-1", "quantity": 3}]
            })
        );
    }

    #[test]
    fn a_single_zero_is_the_first_message() {
        let schema = compiled(ORDERS);
        let ping = schema.message(&[0]).expect("Ping");
        let mut message = DynamicMessage::new(ping);
        message.set_field_by_name("from", Value::String("x".into()));
        let mut body = vec![0];
        body.extend(message.encode_to_vec());
        assert_eq!(
            decode(&schema, 1, &body).expect("decodes").get(),
            r#"{"from":"x"}"#
        );
    }

    #[test]
    fn paths_and_bodies_that_do_not_fit_the_schema_are_undecodable() {
        let schema = compiled(ORDERS);
        for (body, says) in [
            (vec![2, 8], "no message at index path [4]"),
            (vec![2], "cut short"),
            (vec![0, 0x0a, 0x05, b'a'], "failed to decode"),
        ] {
            let error = decode(&schema, 9, &body).expect_err("undecodable");
            assert_eq!(error.kind(), "undecodable_protobuf");
            assert!(
                error.to_string().to_lowercase().contains(says),
                "{body:?}: {error}"
            );
        }
    }

    #[test]
    fn imports_come_from_the_references() {
        let text = SchemaText {
            text: r#"syntax = "proto3"; import "common/money.proto"; message Price { common.Money amount = 1; }"#.to_owned(),
            references: vec![(
                "common/money.proto".to_owned(),
                r#"syntax = "proto3"; package common; message Money { int64 cents = 1; string currency = 2; }"#.to_owned(),
            )],
        };
        let schema = ProtoSchema::compile(&text).expect("compiles with its import");
        assert!(schema.message(&[0]).is_some());
        let missing = SchemaText {
            references: Vec::new(),
            ..text
        };
        let error = ProtoSchema::compile(&missing)
            .err()
            .expect("import missing");
        assert!(error.contains("common/money.proto"), "{error}");
    }

    #[test]
    fn zigzag_varints_read_as_the_serializers_write_them() {
        for (bytes, value) in [(&[0][..], 0), (&[1], -1), (&[2], 1), (&[0xac, 0x02], 150)] {
            let mut rest = bytes;
            assert_eq!(zigzag(&mut rest), Ok(value), "{bytes:?}");
            assert!(rest.is_empty());
        }
    }
}
