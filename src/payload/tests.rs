//! Each format's decoding, its errors, and the schema'd formats through a recorded registry.

use super::*;

fn decode(format: Format, value: &[u8]) -> Result<Payload<'_>, BadValue> {
    match Decoder::new(format, None).decode(value) {
        Ok(payload) => Ok(payload),
        Err(Undecoded::Bad(bad)) => Err(bad),
        Err(Undecoded::RegistryUnavailable(error)) => panic!("no registry asked: {error}"),
    }
}

fn kind(format: Format, value: &[u8]) -> &'static str {
    match decode(format, value) {
        Ok(payload) => panic!("{value:?} decoded as {format} to {payload:?}"),
        Err(bad) => bad.kind(),
    }
}

#[test]
fn kafka_message_is_the_seed_codec_and_borrows() {
    let value = KafkaMessage::new(7, "c", "p").encode();
    match decode(Format::KafkaMessage, &value).expect("valid") {
        Payload::Message(message) => {
            assert_eq!(message.message_id, 7);
            assert!(matches!(message.producer_id, Cow::Borrowed(_)));
        }
        other => panic!("{other:?}"),
    }
    // The seed's strictness stays: another team's JSON is not a KafkaMessage.
    assert_eq!(
        kind(
            Format::KafkaMessage,
            br#"{"message_id": 1, "content": "x"}"#
        ),
        "missing_field"
    );
}

#[test]
fn json_takes_any_value_as_its_own_text() {
    for value in [
        r#"{"message_id": 1, "content": "x"}"#,
        "[1, 2, {\"a\": null}]",
        "42",
        "\"just a string\"",
        "null",
        " true ",
    ] {
        match decode(Format::Json, value.as_bytes()).expect(value) {
            Payload::Json(Cow::Borrowed(raw)) => assert_eq!(raw.get(), value.trim()),
            other => panic!("{value}: {other:?}"),
        }
    }
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(
        decode(Format::Json, deep.as_bytes()).is_ok(),
        "any depth, no stack overflow"
    );
}

#[test]
fn json_names_what_is_wrong() {
    assert_eq!(kind(Format::Json, b""), "empty");
    assert_eq!(kind(Format::Json, b"\xff"), "not_utf8");
    for value in ["{", "not json", "1 2", "{\"a\": 1} trailing"] {
        assert_eq!(kind(Format::Json, value.as_bytes()), "not_json", "{value}");
    }
    let error = decode(Format::Json, b"{\"a\":")
        .expect_err("bad")
        .to_string();
    assert_eq!(
        error, "record value is not JSON: EOF while parsing a value",
        "no position noise"
    );
}

#[test]
fn text_is_utf8_and_bytes_are_anything() {
    assert_eq!(
        decode(Format::Text, "héllo\r\n".as_bytes()).expect("utf8"),
        Payload::Text(Cow::Borrowed("héllo\r\n"))
    );
    assert_eq!(
        decode(Format::Text, b"").expect("empty"),
        Payload::Text(Cow::Borrowed(""))
    );
    assert_eq!(
        decode(Format::Text, b"ok\xc3")
            .expect_err("cut")
            .to_string(),
        "record value is not UTF-8 (invalid byte after 2 valid bytes)"
    );
    for value in [&b""[..], b"\x00\xff\xfe", b"{not json"] {
        assert_eq!(
            decode(Format::Bytes, value).expect("anything"),
            Payload::Bytes(Cow::Borrowed(value))
        );
    }
}

#[test]
fn schema_framed_values_without_a_registry_are_of_an_unknown_schema() {
    assert_eq!(
        kind(Format::Avro, b"\x00\x00\x00\x00\x07\x02"),
        "unknown_schema"
    );
    assert_eq!(kind(Format::Protobuf, b"{\"a\": 1}"), "no_schema_id");
    assert_eq!(kind(Format::JsonSchema, b"\x00\x00\x01"), "no_schema_id");
}

/// A registry answering as the Confluent API documents (`GET /schemas/ids/{id}`: `schema`,
/// `schemaType`, `references`): schema 1 is Avro, 2 Protobuf, 3 JSON Schema.
fn registry_of_each_schema_type() -> registry::tests::RecordedRegistry {
    let answer = |schema_type: Option<&str>, schema: &str| {
        let mut answer = serde_json::json!({ "schema": schema });
        if let Some(schema_type) = schema_type {
            answer["schemaType"] = schema_type.into();
        }
        answer.to_string()
    };
    registry::tests::RecordedRegistry::start(vec![
        ("/schemas/ids/1", 200, answer(None, avro::tests::ORDER)),
        (
            "/schemas/ids/2",
            200,
            answer(Some("PROTOBUF"), protobuf::tests::ORDERS),
        ),
        (
            "/schemas/ids/3",
            200,
            answer(Some("JSON"), r#"{"type": "object"}"#),
        ),
    ])
}

/// Avro, Protobuf and JSON Schema values through the registry, each schema asked for once.
#[test]
fn schema_framed_values_decode_with_the_registrys_schema() {
    let proto = protobuf::tests::compiled(protobuf::tests::ORDERS);
    let registry = registry_of_each_schema_type();
    let client = Arc::new(registry.client());
    let decoder = |format| Decoder::new(format, Some(Arc::clone(&client)));
    let json = |payload: Payload<'_>| match payload {
        Payload::Json(raw) => serde_json::from_str::<serde_json::Value>(raw.get()).expect("JSON"),
        other => panic!("{other:?}"),
    };

    let value = framing::frame(1, &avro::tests::order_body(Some("ann")));
    let decoded = json(decoder(Format::Avro).decode(&value).expect("avro"));
    assert_eq!(
        (decoded["id"].clone(), decoded["customer"].clone()),
        (7.into(), "ann".into())
    );

    let value = framing::frame(2, &protobuf::tests::order_body(&proto));
    let decoded = json(decoder(Format::Protobuf).decode(&value).expect("protobuf"));
    assert_eq!(decoded["customerName"], "ann");

    let value = framing::frame(3, br#"{"any": ["json"]}"#);
    let decoded = json(
        decoder(Format::JsonSchema)
            .decode(&value)
            .expect("json schema"),
    );
    assert_eq!(decoded, serde_json::json!({"any": ["json"]}));

    // Each schema was asked for once, however many values named it.
    for _ in 0..5 {
        let value = framing::frame(1, &avro::tests::order_body(None));
        decoder(Format::Avro).decode(&value).expect("avro");
    }
    assert_eq!(
        registry.requests.load(std::sync::atomic::Ordering::SeqCst),
        3
    );
}

/// A value whose schema is of another type or unknown, or whose body its schema does not
/// read, is a bad value of that kind.
#[test]
fn schema_framed_values_their_schema_does_not_read_are_bad() {
    let registry = registry_of_each_schema_type();
    let client = Arc::new(registry.client());
    let bad = |format, value: &[u8]| match Decoder::new(format, Some(Arc::clone(&client)))
        .decode(value)
    {
        Err(Undecoded::Bad(bad)) => bad.kind(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        bad(Format::Avro, &framing::frame(2, b"")),
        "wrong_schema_type"
    );
    assert_eq!(bad(Format::Avro, &framing::frame(8, b"")), "unknown_schema");
    assert_eq!(
        bad(Format::Avro, &framing::frame(1, &[0x80])),
        "undecodable_avro"
    );
    assert_eq!(
        bad(Format::Protobuf, &framing::frame(2, &[2, 40])),
        "undecodable_protobuf"
    );
    assert_eq!(
        bad(Format::JsonSchema, &framing::frame(3, b"{")),
        "not_json"
    );
}

#[test]
fn kinds_lists_the_kind_of_every_error_and_nothing_else() {
    let id = 1;
    let detail = String::new;
    let one_of_each = [
        PayloadError::Empty,
        PayloadError::NotUtf8 { valid_up_to: 0 },
        PayloadError::NotJson { detail: detail() },
        PayloadError::NoSchemaId { detail: detail() },
        PayloadError::UnknownSchema { id },
        PayloadError::WrongSchemaType {
            id,
            expected: "avro",
            found: detail(),
        },
        PayloadError::InvalidSchema {
            id,
            detail: detail(),
        },
        PayloadError::UndecodableAvro {
            id,
            detail: detail(),
        },
        PayloadError::UndecodableProtobuf {
            id,
            detail: detail(),
        },
    ];
    // Without a wildcard arm, a new variant does not compile here until it is added above.
    for error in &one_of_each {
        match error {
            PayloadError::Empty
            | PayloadError::NotUtf8 { .. }
            | PayloadError::NotJson { .. }
            | PayloadError::NoSchemaId { .. }
            | PayloadError::UnknownSchema { .. }
            | PayloadError::WrongSchemaType { .. }
            | PayloadError::InvalidSchema { .. }
            | PayloadError::UndecodableAvro { .. }
            | PayloadError::UndecodableProtobuf { .. } => {}
        }
    }
    let kinds: Vec<&str> = one_of_each.iter().map(PayloadError::kind).collect();
    assert_eq!(kinds, PayloadError::KINDS);
}

#[test]
fn owned_payloads_outlive_the_record() {
    let value = b"hello".to_vec();
    let owned = decode(Format::Text, &value).expect("text").into_owned();
    drop(value);
    assert_eq!(owned, Payload::Text(Cow::Owned("hello".to_owned())));
}
