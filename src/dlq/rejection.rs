//! Why a record is rejected before it reaches the sink (no value, too large, not decodable in
//! the consumer's format), and the one inspection that decides it: size first, then the
//! format, so that a huge record is never parsed.

use crate::message::{DecodeError, KafkaMessage};
use crate::payload::{BadValue, Decoder, Payload, PayloadError, RegistryError, Undecoded};

/// Why a record is rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("record has no value (tombstone)")]
    Tombstone,
    #[error("record value is {size} bytes, above max_record_bytes = {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A value that is not a record of the consumer's `format` (other than the seed's).
    #[error(transparent)]
    Payload(#[from] PayloadError),
    /// A valid message the sink could not process: a permanent failure, or retryable ones
    /// until the attempts ran out.
    #[error("processing failed after {attempts} attempt(s): {error}")]
    ProcessingFailed { error: String, attempts: u32 },
}

/// Every value [`Rejection::kind`] gives, the `kafkad.error.kind` header of a copy.
pub fn kinds() -> &'static [&'static str] {
    static KINDS: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    KINDS.get_or_init(|| Rejection::kinds().collect())
}

impl Rejection {
    /// The `kafkad.error.kind` header and the metrics label.
    pub fn kind(&self) -> &'static str {
        match self {
            Rejection::Tombstone => "tombstone",
            Rejection::TooLarge { .. } => "too_large",
            Rejection::Decode(error) => error.kind(),
            Rejection::Payload(error) => error.kind(),
            Rejection::ProcessingFailed { .. } => "processing_failed",
        }
    }

    /// The kinds of a record that is not a usable message (every rejection but
    /// `processing_failed`): the reasons `kafkad_decode_errors_total` counts.
    pub fn unusable_record_kinds() -> impl Iterator<Item = &'static str> {
        ["tombstone", "too_large"]
            .into_iter()
            .chain(DecodeError::KINDS)
            // The formats share `empty`, `not_utf8` and `not_json` with the seed's codec.
            .chain(
                PayloadError::KINDS
                    .into_iter()
                    .filter(|kind| !DecodeError::KINDS.contains(kind)),
            )
    }

    /// Every [`kind`](Self::kind): the reasons `kafkad_records_dead_lettered_by_reason_total`
    /// counts.
    pub fn kinds() -> impl Iterator<Item = &'static str> {
        Self::unusable_record_kinds().chain(["processing_failed"])
    }
}

/// Decodes a record value, or says why it is rejected. The size limit is checked before any
/// parsing, so a huge record costs nothing but its copy to the dead-letter topic.
pub fn inspect(
    payload: Option<&[u8]>,
    max_record_bytes: usize,
) -> Result<KafkaMessage<'_>, Rejection> {
    Ok(KafkaMessage::decode(within_limit(
        payload,
        max_record_bytes,
    )?)?)
}

/// The value, unless the record is a tombstone or its value is above `max_record_bytes`.
#[inline]
fn within_limit(payload: Option<&[u8]>, max_record_bytes: usize) -> Result<&[u8], Rejection> {
    let bytes = payload.ok_or(Rejection::Tombstone)?;
    if bytes.len() > max_record_bytes {
        return Err(Rejection::TooLarge {
            size: bytes.len(),
            limit: max_record_bytes,
        });
    }
    Ok(bytes)
}

impl From<BadValue> for Rejection {
    fn from(bad: BadValue) -> Self {
        match bad {
            BadValue::Message(error) => Rejection::Decode(error),
            BadValue::Payload(error) => Rejection::Payload(error),
        }
    }
}

/// Why [`inspect_with`] gave no payload.
#[derive(Debug, thiserror::Error)]
pub enum NotDecoded {
    /// A bad record: dead-letter it with its kind.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// The schema registry could not be asked: the record is not at fault; try it again
    /// later, as for a sink that is down.
    #[error(transparent)]
    RegistryUnavailable(RegistryError),
}

/// [`inspect`] for a consumer of any `format`: the size limit first, then `decoder`.
pub fn inspect_with<'a>(
    decoder: &Decoder,
    payload: Option<&'a [u8]>,
    max_record_bytes: usize,
) -> Result<Payload<'a>, NotDecoded> {
    let bytes = within_limit(payload, max_record_bytes)?;
    decoder.decode(bytes).map_err(|undecoded| match undecoded {
        Undecoded::Bad(bad) => NotDecoded::Rejected(bad.into()),
        Undecoded::RegistryUnavailable(error) => NotDecoded::RegistryUnavailable(error),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::payload::Format;

    #[test]
    fn kinds_lists_the_kind_of_every_rejection_and_nothing_else() {
        let one_of_each = [
            Rejection::Tombstone,
            Rejection::TooLarge { size: 2, limit: 1 },
            Rejection::Decode(DecodeError::TooDeep),
            Rejection::Payload(PayloadError::Empty),
            Rejection::ProcessingFailed {
                error: String::new(),
                attempts: 1,
            },
        ];
        // Without a wildcard arm, a new variant does not compile here until it is covered.
        let possible_kinds = |rejection: &Rejection| match rejection {
            Rejection::Tombstone
            | Rejection::TooLarge { .. }
            | Rejection::ProcessingFailed { .. } => vec![rejection.kind()],
            // The decode error's own kind: any of DecodeError::KINDS (checked in message.rs).
            Rejection::Decode(error) => {
                assert_eq!(rejection.kind(), error.kind());
                DecodeError::KINDS.to_vec()
            }
            // The other formats' kinds: any of PayloadError::KINDS (checked in payload).
            Rejection::Payload(error) => {
                assert_eq!(rejection.kind(), error.kind());
                PayloadError::KINDS.to_vec()
            }
        };
        let all: BTreeSet<&str> = one_of_each.iter().flat_map(possible_kinds).collect();
        assert_eq!(all, Rejection::kinds().collect());
        let unusable: BTreeSet<&str> = one_of_each
            .iter()
            .filter(|r| !matches!(r, Rejection::ProcessingFailed { .. }))
            .flat_map(possible_kinds)
            .collect();
        assert_eq!(unusable, Rejection::unusable_record_kinds().collect());
    }

    #[test]
    fn inspect_checks_size_before_parsing() {
        assert_eq!(
            inspect(None, 10).expect_err("tombstone"),
            Rejection::Tombstone
        );
        let big = vec![b'x'; 11];
        assert_eq!(
            inspect(Some(&big), 10).expect_err("too large"),
            Rejection::TooLarge {
                size: 11,
                limit: 10
            }
        );
        assert_eq!(inspect(Some(b""), 10).expect_err("empty").kind(), "empty");
        assert_eq!(inspect(Some(b"{"), 10).expect_err("bad").kind(), "not_json");
        let good = KafkaMessage::new(1, "c", "p").encode();
        assert_eq!(inspect(Some(&good), 1 << 20).expect("good").message_id, 1);
    }

    #[test]
    fn inspect_with_checks_size_before_any_format() {
        let json = Decoder::new(Format::Json, None);
        assert!(matches!(
            inspect_with(&json, None, 10),
            Err(NotDecoded::Rejected(Rejection::Tombstone))
        ));
        assert!(matches!(
            inspect_with(&json, Some(b"[1,2,3,4,5,6]"), 10),
            Err(NotDecoded::Rejected(Rejection::TooLarge {
                size: 13,
                limit: 10
            }))
        ));
        assert!(matches!(
            inspect_with(&json, Some(br#"{"message_id": 1, "content": "x"}"#), 100),
            Ok(Payload::Json(_))
        ));
        let text = Decoder::new(Format::Text, None);
        match inspect_with(&text, Some(b"\xff"), 10) {
            Err(NotDecoded::Rejected(rejection)) => assert_eq!(rejection.kind(), "not_utf8"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn kinds_lists_every_rejection() {
        let deep = format!(
            r#"{{"message_id":1,"content":"c","producer_id":"p","timestamp":"2026-01-01T00:00:00Z","metadata":{{"x":{}{}}}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        let rejections = [
            Some(&b"\xff"[..]),
            Some(b"{"),
            Some(b""),
            None,
            Some(b"{}"),
            Some(br#"{"message_id":"one"}"#),
            Some(br#"{"message_id":1,"message_id":2}"#),
            Some(&[b' '; 10_001][..]),
            Some(deep.as_bytes()),
        ]
        .map(|payload| inspect(payload, 10_000).expect_err("rejected"));
        let mut kinds: Vec<&str> = rejections.iter().map(Rejection::kind).collect();
        // The other formats' own kinds, each from a value of its format.
        let registry_less = |format| Decoder::new(format, None);
        let schema_id_less = [0x7b_u8];
        let unknown_schema = [0u8, 0, 0, 0, 1];
        for (decoder, value) in [
            (registry_less(Format::Avro), &schema_id_less[..]),
            (registry_less(Format::Avro), &unknown_schema[..]),
        ] {
            match inspect_with(&decoder, Some(value), 10_000) {
                Err(NotDecoded::Rejected(rejection)) => kinds.push(rejection.kind()),
                other => panic!("{other:?}"),
            }
        }
        // Those a registry's answer or a body decides (payload::registry's, avro's and
        // protobuf's tests make each from a value).
        kinds.extend([
            "wrong_schema_type",
            "invalid_schema",
            "undecodable_avro",
            "undecodable_protobuf",
        ]);
        kinds.push(
            Rejection::ProcessingFailed {
                error: String::new(),
                attempts: 1,
            }
            .kind(),
        );
        let mut listed = super::kinds().to_vec();
        listed.sort_unstable();
        kinds.sort_unstable();
        assert_eq!(kinds, listed);
    }
}
