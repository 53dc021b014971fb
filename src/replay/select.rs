//! Which dead-letter copies a replay sends: the group's own (kafkad's headers come last, after
//! any the record carried), of the kinds `--reason` names, dead-lettered since `--since`; and
//! the record each stands for. Pure functions of a copy's headers and timestamp, apart from
//! the consumer that reads the copies.

use chrono::{DateTime, Utc};
use rdkafka::message::Headers;
use rdkafka::Message;

use crate::dlq::{self, header};

/// One value of the `kafkad.error.kind` header, as `--reason` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorKind(&'static str);

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        self.0
    }
}

impl std::str::FromStr for ErrorKind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        dlq::kinds()
            .iter()
            .copied()
            .find(|kind| *kind == text)
            .map(ErrorKind)
            .ok_or_else(|| {
                format!(
                    "`{text}` is not a dead-letter kind; one of: {}",
                    dlq::kinds().join(", ")
                )
            })
    }
}

/// Which copies to replay, beyond the group's.
#[derive(Debug, Clone, Default)]
pub struct ReplayOptions {
    /// Only copies whose `kafkad.error.kind` is one of these; empty: every kind.
    pub reasons: Vec<ErrorKind>,
    /// Only copies dead-lettered at or after this time (the copy's own timestamp, set when it
    /// was written to the dead-letter topic).
    pub since: Option<DateTime<Utc>>,
}

/// What to do with one copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Decision {
    OtherGroup,
    OtherKind,
    BeforeSince,
    /// Replay it as the record at this source partition and offset.
    Replay {
        partition: i32,
        offset: i64,
    },
}

/// The last value of header `key`: kafkad's headers follow the record's own, so a record that
/// carried a `kafkad.*` header of its own is not mistaken for kafkad's.
fn last_header<'m, M: Message>(copy: &'m M, key: &str) -> Option<&'m [u8]> {
    let headers = copy.headers()?;
    headers
        .iter()
        .filter(|h| h.key == key)
        .last()
        .and_then(|h| h.value)
}

fn header_number<M: Message, N: std::str::FromStr>(copy: &M, key: &str) -> Option<N> {
    std::str::from_utf8(last_header(copy, key)?)
        .ok()?
        .parse()
        .ok()
}

/// The original record's `topic/partition@offset`, as far as the copy's headers say.
pub(super) fn source_of<M: Message>(copy: &M) -> String {
    let text = |key| {
        last_header(copy, key).map_or_else(
            || "?".to_owned(),
            |v| String::from_utf8_lossy(v).into_owned(),
        )
    };
    format!(
        "{}/{}@{}",
        text(header::SOURCE_TOPIC),
        text(header::SOURCE_PARTITION),
        text(header::SOURCE_OFFSET)
    )
}

/// Whether `copy` is one of `group`'s to replay under `options`, and as which record; the
/// name of a header that is missing or unreadable on a copy that should be replayed.
pub(super) fn decide<M: Message>(
    copy: &M,
    group: &str,
    options: &ReplayOptions,
) -> Result<Decision, &'static str> {
    if last_header(copy, header::CONSUMER_GROUP) != Some(group.as_bytes()) {
        return Ok(Decision::OtherGroup);
    }
    let kind = last_header(copy, header::ERROR_KIND);
    if !options.reasons.is_empty()
        && !options
            .reasons
            .iter()
            .any(|reason| kind == Some(reason.as_str().as_bytes()))
    {
        return Ok(Decision::OtherKind);
    }
    // A copy without a timestamp cannot be dated: it is replayed rather than passed over.
    let dead_lettered = copy.timestamp().to_millis();
    if let (Some(since), Some(at)) = (options.since, dead_lettered) {
        if at < since.timestamp_millis() {
            return Ok(Decision::BeforeSince);
        }
    }
    let partition =
        header_number(copy, header::SOURCE_PARTITION).ok_or(header::SOURCE_PARTITION)?;
    let offset = header_number(copy, header::SOURCE_OFFSET).ok_or(header::SOURCE_OFFSET)?;
    Ok(Decision::Replay { partition, offset })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::{Header, OwnedHeaders, OwnedMessage, Timestamp};

    fn copy(headers: &[(&str, &str)], dead_lettered_ms: i64) -> OwnedMessage {
        let mut owned = OwnedHeaders::new();
        for (key, value) in headers {
            owned = owned.insert(Header {
                key,
                value: Some(*value),
            });
        }
        OwnedMessage::new(
            Some(b"{}".to_vec()),
            None,
            "t.dlq".to_owned(),
            Timestamp::CreateTime(dead_lettered_ms),
            0,
            7,
            Some(owned),
        )
    }

    fn kafkad_copy(group: &str, kind: &str, dead_lettered_ms: i64) -> OwnedMessage {
        copy(
            &[
                ("trace", "abc"),
                (header::ERROR_KIND, kind),
                (header::SOURCE_TOPIC, "t"),
                (header::SOURCE_PARTITION, "2"),
                (header::SOURCE_OFFSET, "41"),
                (header::CONSUMER_GROUP, group),
            ],
            dead_lettered_ms,
        )
    }

    fn options(reasons: &[&str], since_ms: Option<i64>) -> ReplayOptions {
        ReplayOptions {
            reasons: reasons.iter().map(|r| r.parse().expect("a kind")).collect(),
            since: since_ms.and_then(DateTime::from_timestamp_millis),
        }
    }

    #[test]
    fn only_the_groups_own_copies_are_replayed_as_their_source_record() {
        let replay = Decision::Replay {
            partition: 2,
            offset: 41,
        };
        let mine = kafkad_copy("g", "processing_failed", 1000);
        assert_eq!(decide(&mine, "g", &options(&[], None)), Ok(replay));
        assert_eq!(
            decide(&mine, "other", &options(&[], None)),
            Ok(Decision::OtherGroup)
        );
        let unmarked = copy(&[("trace", "abc")], 1000);
        assert_eq!(
            decide(&unmarked, "g", &options(&[], None)),
            Ok(Decision::OtherGroup)
        );
    }

    #[test]
    fn kafkads_own_headers_are_the_last_ones() {
        // The original record carried a group header of its own; kafkad's comes after it.
        let copy = copy(
            &[
                (header::CONSUMER_GROUP, "someone-else"),
                (header::SOURCE_PARTITION, "0"),
                (header::SOURCE_OFFSET, "3"),
                (header::CONSUMER_GROUP, "g"),
            ],
            1000,
        );
        assert_eq!(
            decide(&copy, "g", &options(&[], None)),
            Ok(Decision::Replay {
                partition: 0,
                offset: 3
            })
        );
    }

    #[test]
    fn reason_and_since_pass_copies_over() {
        let copy = kafkad_copy("g", "not_json", 5_000);
        assert_eq!(
            decide(&copy, "g", &options(&["processing_failed"], None)),
            Ok(Decision::OtherKind)
        );
        assert!(matches!(
            decide(
                &copy,
                "g",
                &options(&["processing_failed", "not_json"], None)
            ),
            Ok(Decision::Replay { .. })
        ));
        assert_eq!(
            decide(&copy, "g", &options(&[], Some(5_001))),
            Ok(Decision::BeforeSince)
        );
        assert!(matches!(
            decide(&copy, "g", &options(&[], Some(5_000))),
            Ok(Decision::Replay { .. })
        ));
    }

    #[test]
    fn a_copy_of_the_group_without_its_source_position_is_named() {
        let copy = copy(&[(header::CONSUMER_GROUP, "g")], 1000);
        assert_eq!(
            decide(&copy, "g", &options(&[], None)),
            Err(header::SOURCE_PARTITION)
        );
    }

    #[test]
    fn reasons_are_the_dead_letter_kinds() {
        assert_eq!(
            "too_large".parse::<ErrorKind>().map(ErrorKind::as_str),
            Ok("too_large")
        );
        let error = "nonsense".parse::<ErrorKind>().expect_err("unknown");
        assert!(error.contains("processing_failed"), "{error}");
    }
}
