//! Avro bodies decoded to JSON with the writer's schema from the registry.
//!
//! The JSON is the value itself, not Avro's own JSON encoding: a union is its branch's value
//! (no `{"type": value}` wrapper), an enum its symbol, a record an object with the fields in
//! schema order, a map an object; `bytes` and `fixed` are base64 strings (as `bytes` values
//! are in sink lines), a `decimal` the base64 of its two's-complement unscaled bytes (its
//! scale is in the schema), logical dates and times their numbers (days, milli-, micro- or
//! nanoseconds), a `uuid` its text, a `duration` `{"months","days","millis"}`. A float that is
//! not a number or infinite, which JSON cannot write, is the string `NaN`, `Infinity` or
//! `-Infinity`.

use apache_avro::types::Value as AvroValue;
use serde_json::value::RawValue;
use serde_json::{Map, Number, Value as Json};

use super::line::BASE64;
use super::registry::SchemaText;
use super::{BadValue, PayloadError};
use base64::Engine as _;

/// A writer's schema, with the schemas its named types come from.
pub struct AvroSchema {
    schema: apache_avro::Schema,
    referenced: Vec<apache_avro::Schema>,
}

impl AvroSchema {
    /// Parses the registry's schema text and those it references.
    pub fn parse(text: &SchemaText) -> Result<Self, String> {
        let (schema, referenced) = apache_avro::Schema::parse_str_with_list(
            &text.text,
            text.references.iter().map(|(_, text)| text),
        )
        .map_err(|error| error.to_string())?;
        Ok(AvroSchema { schema, referenced })
    }
}

/// Decodes `body` (schema id `id`) to JSON text.
pub fn decode(schema: &AvroSchema, id: u32, body: &[u8]) -> Result<Box<RawValue>, BadValue> {
    let undecodable = |detail: String| BadValue::from(PayloadError::UndecodableAvro { id, detail });
    let mut reader = body;
    let value = apache_avro::from_avro_datum_schemata(
        &schema.schema,
        schema.referenced.iter().collect(),
        &mut reader,
        None,
    )
    .map_err(|error| undecodable(error.to_string()))?;
    if !reader.is_empty() {
        return Err(undecodable(format!(
            "{} bytes left after the value (written with another schema?)",
            reader.len()
        )));
    }
    let json = to_json(value);
    serde_json::value::to_raw_value(&json).map_err(|error| undecodable(error.to_string()))
}

fn to_json(value: AvroValue) -> Json {
    match value {
        AvroValue::Null => Json::Null,
        AvroValue::Boolean(b) => Json::Bool(b),
        AvroValue::Int(n) | AvroValue::Date(n) | AvroValue::TimeMillis(n) => Json::from(n),
        AvroValue::Long(n)
        | AvroValue::TimeMicros(n)
        | AvroValue::TimestampMillis(n)
        | AvroValue::TimestampMicros(n)
        | AvroValue::TimestampNanos(n)
        | AvroValue::LocalTimestampMillis(n)
        | AvroValue::LocalTimestampMicros(n)
        | AvroValue::LocalTimestampNanos(n) => Json::from(n),
        AvroValue::Float(x) => float(f64::from(x)),
        AvroValue::Double(x) => float(x),
        AvroValue::Bytes(bytes) | AvroValue::Fixed(_, bytes) => Json::String(BASE64.encode(bytes)),
        AvroValue::String(text) | AvroValue::Enum(_, text) => Json::String(text),
        AvroValue::Union(_, inner) => to_json(*inner),
        AvroValue::Array(items) => Json::Array(items.into_iter().map(to_json).collect()),
        AvroValue::Map(entries) => Json::Object(
            entries
                .into_iter()
                .map(|(key, value)| (key, to_json(value)))
                .collect(),
        ),
        AvroValue::Record(fields) => Json::Object(
            fields
                .into_iter()
                .map(|(name, value)| (name, to_json(value)))
                .collect::<Map<_, _>>(),
        ),
        AvroValue::Decimal(decimal) => match Vec::<u8>::try_from(decimal) {
            Ok(bytes) => Json::String(BASE64.encode(bytes)),
            Err(error) => Json::String(format!("undecodable decimal: {error}")),
        },
        AvroValue::BigDecimal(decimal) => Json::String(decimal.to_string()),
        AvroValue::Duration(duration) => serde_json::json!({
            "months": u32::from(duration.months()),
            "days": u32::from(duration.days()),
            "millis": u32::from(duration.millis()),
        }),
        AvroValue::Uuid(uuid) => Json::String(uuid.to_string()),
    }
}

fn float(x: f64) -> Json {
    match Number::from_f64(x) {
        Some(number) => Json::Number(number),
        None if x.is_nan() => Json::String("NaN".to_owned()),
        None if x > 0.0 => Json::String("Infinity".to_owned()),
        None => Json::String("-Infinity".to_owned()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use apache_avro::types::Record;

    use super::*;

    /// The schema of the examples in Confluent's Avro serializer documentation, with a union,
    /// an enum, bytes, a map and a logical type beside.
    pub(crate) const ORDER: &str = r#"{
        "type": "record", "name": "Order", "namespace": "shop",
        "fields": [
            {"name": "id", "type": "long"},
            {"name": "customer", "type": ["null", "string"], "default": null},
            {"name": "status", "type": {"type": "enum", "name": "Status", "symbols": ["NEW", "PAID"]}},
            {"name": "total", "type": "double"},
            {"name": "tags", "type": {"type": "map", "values": "int"}},
            {"name": "blob", "type": "bytes"},
            {"name": "placed", "type": {"type": "long", "logicalType": "timestamp-millis"}}
        ]
    }"#;

    fn schema(text: &str) -> AvroSchema {
        AvroSchema::parse(&SchemaText {
            text: text.to_owned(),
            references: Vec::new(),
        })
        .expect("parses")
    }

    pub(crate) fn order_body(customer: Option<&str>) -> Vec<u8> {
        let parsed = apache_avro::Schema::parse_str(ORDER).expect("schema");
        let mut record = Record::new(&parsed).expect("a record schema");
        record.put("id", 7i64);
        record.put(
            "customer",
            match customer {
                Some(name) => AvroValue::Union(1, Box::new(AvroValue::String(name.to_owned()))),
                None => AvroValue::Union(0, Box::new(AvroValue::Null)),
            },
        );
        record.put("status", AvroValue::Enum(1, "PAID".to_owned()));
        record.put("total", 12.5f64);
        record.put(
            "tags",
            AvroValue::Map([("vip".to_owned(), AvroValue::Int(1))].into()),
        );
        record.put("blob", AvroValue::Bytes(vec![0xff, 0x00]));
        record.put("placed", AvroValue::TimestampMillis(1_764_000_000_000));
        apache_avro::to_avro_datum(&parsed, record).expect("encodes")
    }

    #[test]
    fn a_record_becomes_plain_json() {
        let decoded = decode(&schema(ORDER), 1, &order_body(Some("ann"))).expect("decodes");
        let json: Json = serde_json::from_str(decoded.get()).expect("JSON");
        assert_eq!(
            json,
            serde_json::json!({
                "id": 7, "customer": "ann", "status": "PAID", "total": 12.5,
                "tags": {"vip": 1}, "blob": "/wA=", "placed": 1_764_000_000_000i64
            })
        );
        let decoded = decode(&schema(ORDER), 1, &order_body(None)).expect("decodes");
        assert!(decoded.get().contains(r#""customer":null"#), "{decoded}");
    }

    #[test]
    fn a_body_of_another_schema_is_undecodable() {
        let body = order_body(Some("ann"));
        let error = decode(&schema(ORDER), 4, &body[..body.len() - 3]).expect_err("cut short");
        assert_eq!(error.kind(), "undecodable_avro");
        assert!(error.to_string().contains("schema id 4"), "{error}");
        let error = decode(&schema(r#""long""#), 4, &body).expect_err("bytes left");
        assert_eq!(error.kind(), "undecodable_avro");
        assert!(
            error.to_string().contains("bytes left after the value"),
            "{error}"
        );
    }

    #[test]
    fn named_types_may_come_from_referenced_schemas() {
        let status = r#"{"type": "enum", "name": "Status", "namespace": "shop", "symbols": ["NEW", "PAID"]}"#;
        let text = SchemaText {
            text: r#"{"type": "record", "name": "Event", "namespace": "shop", "fields": [{"name": "s", "type": "shop.Status"}]}"#.to_owned(),
            references: vec![("shop.Status".to_owned(), status.to_owned())],
        };
        let schema = AvroSchema::parse(&text).expect("parses with its reference");
        let decoded = decode(&schema, 2, &[2]).expect("enum index 1");
        assert_eq!(decoded.get(), r#"{"s":"PAID"}"#);
    }

    #[test]
    fn floats_json_cannot_write_are_named() {
        assert_eq!(float(f64::NAN), Json::String("NaN".into()));
        assert_eq!(float(f64::NEG_INFINITY), Json::String("-Infinity".into()));
        assert_eq!(float(1.5), serde_json::json!(1.5));
    }
}
