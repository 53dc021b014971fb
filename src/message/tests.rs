//! The codec's tests: decoding the seed's format, every way a value is refused, and
//! round trips of arbitrary messages and timestamps.

use std::borrow::Cow;
use std::fmt;

use chrono::{DateTime, FixedOffset, SecondsFormat};

use super::*;

const PYTHON: &str = r#"{"message_id": 42, "content": "Сообщение 42", "producer_id": "producer-1", "timestamp": "2026-11-25T18:08:06.906824", "metadata": {"source": "python", "n": [1, 2]}}"#;

#[test]
fn decodes_the_seed_python_format() {
    let message = KafkaMessage::decode(PYTHON.as_bytes()).expect("valid");
    assert_eq!(message.message_id, 42);
    assert_eq!(message.content, "Сообщение 42");
    assert_eq!(message.producer_id, "producer-1");
    assert_eq!(message.timestamp.to_string(), "2026-11-25T18:08:06.906824");
    assert_eq!(message.metadata_map()["source"], "python");
}

#[test]
fn borrows_strings_without_escapes() {
    let message = KafkaMessage::decode(PYTHON.as_bytes()).expect("valid");
    assert!(matches!(message.producer_id, Cow::Borrowed(_)));
    assert!(matches!(message.metadata, Cow::Borrowed(_)));
}

#[test]
fn decodes_every_timestamp_form() {
    for (text, utc) in [
        ("2026-11-25T18:08:06.906824", "2026-11-25T18:08:06.906824Z"),
        ("2026-11-25T18:08:06", "2026-11-25T18:08:06Z"),
        ("2026-11-25 18:08:06.5", "2026-11-25T18:08:06.500Z"),
        ("2026-11-25T18:08:06.906824Z", "2026-11-25T18:08:06.906824Z"),
        ("2026-11-25T18:08:06Z", "2026-11-25T18:08:06Z"),
        (
            "2026-11-25T21:08:06.906824+03:00",
            "2026-11-25T18:08:06.906824Z",
        ),
        ("2026-11-25T21:08:06+03:00", "2026-11-25T18:08:06Z"),
    ] {
        let stamp = Timestamp::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(
            stamp.to_utc().to_rfc3339_opts(SecondsFormat::AutoSi, true),
            utc,
            "{text}"
        );
    }
}

#[test]
fn unix_micros_agree_with_chrono() {
    for text in [
        "2026-11-25T18:08:06.906824",
        "2026-11-25T21:08:06.906824+03:00",
        "1969-12-31T23:59:59.5Z",
        "2026-11-25T18:08:06.123456789Z",
    ] {
        let stamp = Timestamp::parse(text).expect("valid");
        assert_eq!(
            stamp.unix_micros(),
            stamp.to_utc().timestamp_micros(),
            "{text}"
        );
    }
}

#[test]
fn timestamps_reencode_as_they_came() {
    for text in [
        "2026-11-25T18:08:06.906824",
        "2026-11-25T18:08:06",
        "2026-11-25T18:08:06.906824Z",
        "2026-11-25T21:08:06.906824+03:00",
    ] {
        assert_eq!(Timestamp::parse(text).expect("valid").to_string(), text);
    }
}

#[test]
fn tolerates_unknown_fields() {
    let text = r#"{"extra": {"deep": [1, {"x": null}]}, "message_id": 1, "content": "c", "producer_id": "p", "timestamp": "2026-11-25T18:08:06Z", "metadata": {}, "trace": "abc"}"#;
    let message = KafkaMessage::decode(text.as_bytes()).expect("valid");
    assert_eq!(message.message_id, 1);
}

#[test]
fn kinds_lists_the_kind_of_every_variant_and_nothing_else() {
    let field = "content";
    let one_of_each = [
        DecodeError::Empty,
        DecodeError::NotUtf8 { valid_up_to: 0 },
        DecodeError::NotJson {
            detail: String::new(),
        },
        DecodeError::TooDeep,
        DecodeError::MissingField { field },
        DecodeError::WrongType {
            field,
            detail: String::new(),
        },
        DecodeError::DuplicateField { field },
    ];
    // Without a wildcard arm, a new variant does not compile here until it is added above.
    for error in &one_of_each {
        match error {
            DecodeError::Empty
            | DecodeError::NotUtf8 { .. }
            | DecodeError::NotJson { .. }
            | DecodeError::TooDeep
            | DecodeError::MissingField { .. }
            | DecodeError::WrongType { .. }
            | DecodeError::DuplicateField { .. } => {}
        }
    }
    let kinds: Vec<&str> = one_of_each.iter().map(DecodeError::kind).collect();
    assert_eq!(kinds, DecodeError::KINDS);
}

fn error_of(text: &str) -> DecodeError {
    match KafkaMessage::decode(text.as_bytes()) {
        Ok(message) => panic!("`{}` decoded to {message:?}", preview(text)),
        Err(error) => error,
    }
}

#[test]
fn names_the_missing_field() {
    let text =
        r#"{"message_id": 1, "content": "c", "timestamp": "2026-11-25T18:08:06Z", "metadata": {}}"#;
    assert_eq!(
        error_of(text),
        DecodeError::MissingField {
            field: "producer_id"
        }
    );
    assert_eq!(error_of("{}").to_string(), "field `message_id` is missing");
}

#[test]
fn names_the_mistyped_field() {
    let cases = [
        (
            r#"{"message_id": "7", "content": "c", "producer_id": "p", "timestamp": "2026-11-25T18:08:06Z", "metadata": {}}"#,
            "message_id",
        ),
        (
            r#"{"message_id": 7, "content": 5, "producer_id": "p", "timestamp": "2026-11-25T18:08:06Z", "metadata": {}}"#,
            "content",
        ),
        (
            r#"{"message_id": 7, "content": "c", "producer_id": null, "timestamp": "2026-11-25T18:08:06Z", "metadata": {}}"#,
            "producer_id",
        ),
        (
            r#"{"message_id": 7, "content": "c", "producer_id": "p", "timestamp": "yesterday", "metadata": {}}"#,
            "timestamp",
        ),
        (
            r#"{"message_id": 7, "content": "c", "producer_id": "p", "timestamp": "2026-11-25T18:08:06Z", "metadata": [1]}"#,
            "metadata",
        ),
        (
            r#"{"message_id": 7.5, "content": "c", "producer_id": "p", "timestamp": "2026-11-25T18:08:06Z", "metadata": {}}"#,
            "message_id",
        ),
        (
            r#"{"message_id": 99999999999999999999, "content": "c", "producer_id": "p", "timestamp": "2026-11-25T18:08:06Z", "metadata": {}}"#,
            "message_id",
        ),
    ];
    for (text, expected) in cases {
        match error_of(text) {
            DecodeError::WrongType { field, .. } => assert_eq!(field, expected, "{text}"),
            other => panic!("{text}: expected WrongType({expected}), got {other:?}"),
        }
    }
}

#[test]
fn classifies_garbage() {
    assert_eq!(error_of(""), DecodeError::Empty);
    assert_eq!(
        KafkaMessage::decode(&[b'{', 0xff, b'}']).expect_err("not utf8"),
        DecodeError::NotUtf8 { valid_up_to: 1 }
    );
    let trailing = format!("{PYTHON} trailing");
    for text in ["not json", "[1, 2]", "42", "{\"message_id\": 1", &trailing] {
        assert_eq!(error_of(text).kind(), "not_json", "{text}");
    }
    let dup = r#"{"message_id": 1, "message_id": 2}"#;
    assert_eq!(
        error_of(dup),
        DecodeError::DuplicateField {
            field: "message_id"
        }
    );
}

#[test]
fn deep_nesting_is_rejected_without_overflowing_the_stack() {
    let depth = 10_000;
    let text = format!(
        r#"{{"message_id": 1, "content": "c", "producer_id": "p", "timestamp": "2026-11-25T18:08:06Z", "metadata": {{"a": {}{}}}}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    );
    assert_eq!(error_of(&text), DecodeError::TooDeep);
    // Brackets inside strings do not count.
    let text = format!(
        r#"{{"message_id": 1, "content": "c", "producer_id": "p", "timestamp": "2026-11-25T18:08:06Z", "metadata": {{"a": "{}\\\""}}}}"#,
        "[".repeat(depth)
    );
    assert!(KafkaMessage::decode(text.as_bytes()).is_ok());
    // An unknown field is skipped by an iterative scanner, never materialized: harmless
    // at any depth, so it is tolerated like any other unknown field.
    let text = format!(
        r#"{{"x": {}{}, "message_id": 1, "content": "c", "producer_id": "p", "timestamp": "2026-11-25T18:08:06Z", "metadata": {{}}}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    );
    assert!(KafkaMessage::decode(text.as_bytes()).is_ok());
}

#[test]
fn encoding_is_plain_json_with_the_five_fields() {
    let message = KafkaMessage::new(3, "hi \"there\"", "p-1");
    let value: serde_json::Value = serde_json::from_slice(&message.encode()).expect("JSON");
    let object = value.as_object().expect("object");
    assert_eq!(object.len(), 5);
    assert_eq!(object["message_id"], 3);
    assert_eq!(object["content"], "hi \"there\"");
    assert!(object["metadata"].is_object());
    assert!(object["timestamp"].as_str().expect("str").ends_with('Z'));
}

mod roundtrip {
    use super::*;
    use proptest::prelude::*;

    fn timestamp() -> impl Strategy<Value = Timestamp> {
        // Years 1970..2100, to the microsecond, naive or with an offset of whole minutes.
        (
            0i64..4_102_444_800_000_000,
            prop::option::of(-14 * 60..=14 * 60i32),
        )
            .prop_map(|(micros, offset)| {
                let utc = DateTime::from_timestamp_micros(micros).expect("in range");
                match offset {
                    None => Timestamp::Naive(utc.naive_utc()),
                    Some(minutes) => Timestamp::Zoned(
                        utc.with_timezone(&FixedOffset::east_opt(minutes * 60).expect("valid")),
                    ),
                }
            })
    }

    fn metadata() -> impl Strategy<Value = serde_json::Map<String, serde_json::Value>> {
        prop::collection::btree_map(
            "\\PC{0,8}",
            prop_oneof![
                any::<i64>().prop_map(serde_json::Value::from),
                "\\PC{0,16}".prop_map(serde_json::Value::from),
                any::<bool>().prop_map(serde_json::Value::from),
                Just(serde_json::Value::Null),
            ],
            0..4,
        )
        .prop_map(|m| m.into_iter().collect())
    }

    proptest! {
        #[test]
        fn decode_of_encode_is_identity(
            id in any::<i64>(),
            content in "\\PC{0,64}",
            producer in "[\\PC\"\\\\\n\t]{0,16}",
            stamp in timestamp(),
            meta in metadata(),
        ) {
            let mut original = KafkaMessage::new(id, content, producer).with_metadata(&meta);
            original.timestamp = stamp;
            let bytes = original.encode();
            let decoded = KafkaMessage::decode(&bytes).expect("own encoding decodes");
            prop_assert_eq!(&decoded, &original);
            prop_assert_eq!(decoded.metadata_map(), meta);
            // Owned copies survive the buffer and stay equal.
            let owned = decoded.into_owned();
            drop(bytes);
            prop_assert_eq!(owned, original);
        }

        #[test]
        fn hand_written_timestamp_paths_agree_with_chrono(stamp in timestamp()) {
            struct General(Timestamp);
            impl fmt::Display for General {
                fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    self.0.fmt_general(f)
                }
            }
            let text = stamp.to_string();
            prop_assert_eq!(&text, &General(stamp).to_string());
            prop_assert_eq!(Timestamp::parse_canonical(text.as_bytes()), Some(stamp));
            prop_assert_eq!(Timestamp::parse_general(&text), Ok(stamp));
            // The variants the fast parser must also read exactly as chrono does.
            for variant in [
                text.replace('Z', "+00:00"),
                text.replace('Z', "-00:00"),
                {
                    // The same instant with a one-digit fraction.
                    let offset = text.rfind(['Z', '+', '-']).filter(|&i| i >= 19);
                    format!("{}.5{}", &text[..19], &text[offset.unwrap_or(text.len())..])
                },
            ] {
                if let Some(fast) = Timestamp::parse_canonical(variant.as_bytes()) {
                    prop_assert_eq!(Ok(fast), Timestamp::parse_general(&variant), "{}", variant);
                }
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = KafkaMessage::decode(&bytes);
        }
    }
}
