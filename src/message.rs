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

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;

use chrono::{
    DateTime, Datelike, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, SecondsFormat, Timelike,
    Utc,
};
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

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

/// Why a record value is not a valid `KafkaMessage`. The variant is also the machine-readable
/// reason written into the dead-letter headers (see [`DecodeError::kind`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record value is empty")]
    Empty,
    #[error("record value is not UTF-8 (invalid byte after {valid_up_to} valid bytes)")]
    NotUtf8 { valid_up_to: usize },
    #[error("record value is not a JSON object: {detail}")]
    NotJson { detail: String },
    #[error("record value nests JSON deeper than 128 levels")]
    TooDeep,
    #[error("field `{field}` is missing")]
    MissingField { field: &'static str },
    #[error("field `{field}` has the wrong type: {detail}")]
    WrongType { field: &'static str, detail: String },
    #[error("field `{field}` appears twice")]
    DuplicateField { field: &'static str },
}

impl DecodeError {
    /// Every [`kind`](Self::kind), so that metrics can show each one at 0 before the first
    /// record fails that way.
    pub const KINDS: [&'static str; 7] = [
        "empty",
        "not_utf8",
        "not_json",
        "too_deep",
        "missing_field",
        "wrong_type",
        "duplicate_field",
    ];

    /// A stable, snake_case name for metrics labels and dead-letter headers.
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::Empty => "empty",
            DecodeError::NotUtf8 { .. } => "not_utf8",
            DecodeError::NotJson { .. } => "not_json",
            DecodeError::TooDeep => "too_deep",
            DecodeError::MissingField { .. } => "missing_field",
            DecodeError::WrongType { .. } => "wrong_type",
            DecodeError::DuplicateField { .. } => "duplicate_field",
        }
    }

    fn from_json(error: serde_json::Error, field: Option<&'static str>) -> Self {
        let text = error.to_string();
        if text.starts_with("recursion limit exceeded") || text.starts_with(TOO_DEEP) {
            return DecodeError::TooDeep;
        }
        // Our visitor reports these two through `de::Error::custom` with a fixed prefix.
        if let Some(name) = text.strip_prefix(MISSING_PREFIX) {
            return DecodeError::MissingField {
                field: field_name(name),
            };
        }
        if let Some(name) = text.strip_prefix(DUPLICATE_PREFIX) {
            return DecodeError::DuplicateField {
                field: field_name(name),
            };
        }
        match (error.classify(), field) {
            (serde_json::error::Category::Data, Some(field)) => DecodeError::WrongType {
                field,
                detail: strip_position(&text),
            },
            _ => DecodeError::NotJson {
                detail: strip_position(&text),
            },
        }
    }
}

/// serde_json's own recursion limit; metadata nested deeper could not be parsed into a map.
const MAX_DEPTH: usize = 128;
const TOO_DEEP: &str = "kafkad-too-deep";

/// Whether JSON `text` nests arrays/objects more than `limit` levels deep. A byte scan that
/// skips string contents: no recursion, no allocation.
fn nesting_exceeds(text: &str, limit: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in text.as_bytes() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

const MISSING_PREFIX: &str = "kafkad-missing-field:";
const DUPLICATE_PREFIX: &str = "kafkad-duplicate-field:";

fn field_name(text: &str) -> &'static str {
    let name = text.split_whitespace().next().unwrap_or_default();
    FIELDS.iter().copied().find(|f| *f == name).unwrap_or("?")
}

/// serde_json appends " at line 1 column 17"; useful for humans on a file, noise for a record.
fn strip_position(text: &str) -> String {
    match text.rfind(" at line ") {
        Some(at) => text[..at].to_owned(),
        None => text.to_owned(),
    }
}

/// Deserializes a message while remembering which field is being read, so that a type error
/// from serde_json (which knows the position, not the field) can name the field.
struct MessageSeed<'c> {
    current_field: &'c Cell<Option<&'static str>>,
}

impl<'de> DeserializeSeed<'de> for MessageSeed<'_> {
    type Value = Result<KafkaMessage<'de>, DecodeError>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for MessageSeed<'_> {
    type Value = Result<KafkaMessage<'de>, DecodeError>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object with message_id, content, producer_id, timestamp, metadata")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut message_id = None;
        let mut content = None;
        let mut producer_id = None;
        let mut timestamp: Option<Result<Timestamp, DecodeError>> = None;
        let mut metadata: Option<&'de RawValue> = None;

        fn once<T, E: de::Error>(slot: &Option<T>, field: &'static str) -> Result<(), E> {
            match slot {
                Some(_) => Err(E::custom(format_args!("{DUPLICATE_PREFIX}{field}"))),
                None => Ok(()),
            }
        }

        while let Some(BorrowedStr(key)) = map.next_key()? {
            let field = FIELDS.iter().copied().find(|f| *f == key);
            self.current_field.set(field);
            match field {
                Some("message_id") => {
                    once::<_, A::Error>(&message_id, "message_id")?;
                    message_id = Some(map.next_value::<i64>()?);
                }
                Some("content") => {
                    once::<_, A::Error>(&content, "content")?;
                    content = Some(map.next_value::<BorrowedStr>()?.0);
                }
                Some("producer_id") => {
                    once::<_, A::Error>(&producer_id, "producer_id")?;
                    producer_id = Some(map.next_value::<BorrowedStr>()?.0);
                }
                Some("timestamp") => {
                    once::<_, A::Error>(&timestamp, "timestamp")?;
                    let BorrowedStr(text) = map.next_value()?;
                    timestamp = Some(Timestamp::parse(&text).map_err(|e| DecodeError::WrongType {
                        field: "timestamp",
                        detail: e.to_string(),
                    }));
                }
                Some("metadata") => {
                    once::<_, A::Error>(&metadata, "metadata")?;
                    let raw = map.next_value::<&'de RawValue>()?;
                    if !raw.get().starts_with('{') {
                        return Err(de::Error::custom(format_args!(
                            "expected a JSON object, found `{}`",
                            preview(raw.get())
                        )));
                    }
                    // serde_json skips a raw value without recursing, so any depth is read
                    // safely here; but `metadata_map` would later hit the recursion limit.
                    // Reject it now, as the record's problem, not a later surprise.
                    if nesting_exceeds(raw.get(), MAX_DEPTH) {
                        return Err(de::Error::custom(TOO_DEEP));
                    }
                    metadata = Some(raw);
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            self.current_field.set(None);
        }

        fn require<T, E: de::Error>(slot: Option<T>, field: &'static str) -> Result<T, E> {
            slot.ok_or_else(|| E::custom(format_args!("{MISSING_PREFIX}{field}")))
        }
        let message_id = require::<_, A::Error>(message_id, "message_id")?;
        let content = require::<_, A::Error>(content, "content")?;
        let producer_id = require::<_, A::Error>(producer_id, "producer_id")?;
        let timestamp = require::<_, A::Error>(timestamp, "timestamp")?;
        let metadata = require::<_, A::Error>(metadata, "metadata")?;
        Ok(timestamp.map(|timestamp| KafkaMessage {
            message_id,
            content,
            producer_id,
            timestamp,
            metadata: Cow::Borrowed(metadata),
        }))
    }
}

/// A string that borrows from the input when it holds no escapes. (serde's own `Cow<str>`
/// impl always allocates unless the field carries `#[serde(borrow)]`, which a hand-written
/// visitor cannot use.)
struct BorrowedStr<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for BorrowedStr<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StrVisitor;
        impl<'de> Visitor<'de> for StrVisitor {
            type Value = BorrowedStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(BorrowedStr(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(BorrowedStr(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(BorrowedStr(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(StrVisitor)
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

/// An ISO-8601 date-time as the seed's producers write it: Python's `isoformat()` has no offset
/// (`2026-11-25T18:08:06.906824`), other producers write `Z` or `+03:00`. Both forms are kept as
/// they came, so re-encoding a decoded message gives the same text back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timestamp {
    /// No offset on the wire. kafkad reads it as UTC (containers run in UTC; the seed's
    /// `datetime.now()` does too there).
    Naive(NaiveDateTime),
    /// With an explicit offset (`Z` is `+00:00`).
    Zoned(DateTime<FixedOffset>),
}

/// The timestamp text is not an ISO-8601 date-time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{}` is not an ISO-8601 date-time (e.g. 2026-11-25T18:08:06.906824 or 2026-11-25T18:08:06Z)", preview(.0))]
pub struct TimestampError(String);

impl Timestamp {
    /// The current time in UTC, to the microsecond (what Python's `isoformat()` can read).
    pub fn now() -> Self {
        // One clock read and one calendar conversion: the producer stamps every message.
        let micros = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|since| since.as_micros() as i64)
            .unwrap_or_default();
        let utc = DateTime::from_timestamp_micros(micros).unwrap_or_else(Utc::now);
        Timestamp::Zoned(utc.fixed_offset())
    }

    /// Parses the forms described on [`Timestamp`]; a space instead of `T` is accepted too, as
    /// Python's `str(datetime)` writes it.
    pub fn parse(text: &str) -> Result<Self, TimestampError> {
        // Nearly every timestamp on the wire has the canonical shape; read that by hand (no
        // chrono format machinery, no allocation). Anything else, errors included, takes the
        // general path below, which decides exactly as before.
        match Self::parse_canonical(text.as_bytes()) {
            Some(stamp) => Ok(stamp),
            None => Self::parse_general(text),
        }
    }

    /// chrono's parsers: every form [`Timestamp::parse`] accepts, and the error.
    fn parse_general(text: &str) -> Result<Self, TimestampError> {
        if let Ok(zoned) = DateTime::parse_from_rfc3339(text) {
            return Ok(Timestamp::Zoned(zoned));
        }
        let normalized: Cow<str> = match text.as_bytes().get(10) {
            Some(b' ') => Cow::Owned(format!("{}T{}", &text[..10], &text[11..])),
            _ => Cow::Borrowed(text),
        };
        normalized
            .parse::<NaiveDateTime>()
            .map(Timestamp::Naive)
            .map_err(|_| TimestampError(text.to_owned()))
    }

    /// `YYYY-MM-DDTHH:MM:SS[.f{1,9}][Z|±HH:MM]`, the shape Python's `isoformat()` and kafkad
    /// write; `None` for anything else (a space separator, a lowercase `t`, leap seconds, more
    /// than nine fraction digits, invalid dates), which [`Timestamp::parse`] leaves to chrono.
    fn parse_canonical(b: &[u8]) -> Option<Self> {
        fn num(digits: &[u8]) -> Option<u32> {
            digits.iter().try_fold(0u32, |n, &d| {
                d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
            })
        }
        if b.len() < 19
            || b[4] != b'-'
            || b[7] != b'-'
            || b[10] != b'T'
            || b[13] != b':'
            || b[16] != b':'
        {
            return None;
        }
        let date = NaiveDate::from_ymd_opt(num(&b[0..4])? as i32, num(&b[5..7])?, num(&b[8..10])?)?;
        let mut rest = &b[19..];
        let mut nanos = 0;
        if let [b'.', fraction @ ..] = rest {
            let digits = fraction.iter().take_while(|d| d.is_ascii_digit()).count();
            if digits == 0 || digits > 9 {
                return None;
            }
            nanos = num(&fraction[..digits])? * 10u32.pow(9 - digits as u32);
            rest = &fraction[digits..];
        }
        let time = NaiveTime::from_hms_nano_opt(
            num(&b[11..13])?,
            num(&b[14..16])?,
            num(&b[17..19])?,
            nanos,
        )?;
        let naive = NaiveDateTime::new(date, time);
        match rest {
            [] => Some(Timestamp::Naive(naive)),
            [b'Z'] => Some(Timestamp::Zoned(naive.and_utc().fixed_offset())),
            [sign @ (b'+' | b'-'), hours @ .., b':', m1, m2] if hours.len() == 2 => {
                let (hours, minutes) = (num(hours)?, num(&[*m1, *m2])?);
                if hours > 23 || minutes > 59 {
                    return None;
                }
                let seconds = (hours * 3600 + minutes * 60) as i32;
                let offset = FixedOffset::east_opt(if *sign == b'-' { -seconds } else { seconds })?;
                naive
                    .and_local_timezone(offset)
                    .single()
                    .map(Timestamp::Zoned)
            }
            _ => None,
        }
    }

    /// Writes the text [`Display`](fmt::Display) shows into `buf`, without allocating;
    /// `None` for what only chrono writes (years outside 0..=9999, leap seconds, offsets with
    /// seconds). The same text: the fraction has 3, 6 or 9 digits as needed, none when zero;
    /// a zero offset is `Z`.
    fn format_canonical<'b>(&self, buf: &'b mut [u8; 40]) -> Option<&'b str> {
        let (local, offset) = match self {
            Timestamp::Naive(naive) => (*naive, None),
            Timestamp::Zoned(zoned) => {
                (zoned.naive_local(), Some(zoned.offset().local_minus_utc()))
            }
        };
        let (year, nanos) = (local.year(), local.nanosecond());
        if !(0..=9999).contains(&year)
            || nanos >= 1_000_000_000
            || offset.is_some_and(|seconds| seconds % 60 != 0)
        {
            return None;
        }
        let mut out = Ascii { buf, len: 0 };
        out.digits(year as u32, 4);
        out.byte(b'-');
        out.digits(local.month(), 2);
        out.byte(b'-');
        out.digits(local.day(), 2);
        out.byte(b'T');
        out.digits(local.hour(), 2);
        out.byte(b':');
        out.digits(local.minute(), 2);
        out.byte(b':');
        out.digits(local.second(), 2);
        match nanos {
            0 => {}
            n if n % 1_000_000 == 0 => out.fraction(n / 1_000_000, 3),
            n if n % 1_000 == 0 => out.fraction(n / 1_000, 6),
            n => out.fraction(n, 9),
        }
        match offset.map(|seconds| seconds / 60) {
            None => {}
            Some(0) => out.byte(b'Z'),
            Some(minutes) => {
                out.byte(if minutes < 0 { b'-' } else { b'+' });
                out.digits(minutes.unsigned_abs() / 60, 2);
                out.byte(b':');
                out.digits(minutes.unsigned_abs() % 60, 2);
            }
        }
        let len = out.len;
        std::str::from_utf8(&buf[..len]).ok()
    }

    /// Microseconds since the Unix epoch of the instant this timestamp names, reading a naive
    /// one as UTC. Integer arithmetic on the stored date and time: consumers take it for every
    /// message's end-to-end latency, where building a `DateTime<Utc>` and subtracting two of
    /// them cost several times more.
    pub fn unix_micros(&self) -> i64 {
        match self {
            Timestamp::Naive(naive) => naive.and_utc().timestamp_micros(),
            Timestamp::Zoned(zoned) => zoned.timestamp_micros(),
        }
    }

    /// The instant this timestamp names, reading a naive one as UTC.
    pub fn to_utc(&self) -> DateTime<Utc> {
        match self {
            Timestamp::Naive(naive) => naive.and_utc(),
            Timestamp::Zoned(zoned) => zoned.with_timezone(&Utc),
        }
    }
}

/// A small ASCII writer over a stack buffer, for [`Timestamp::format_canonical`].
struct Ascii<'b> {
    buf: &'b mut [u8; 40],
    len: usize,
}

impl Ascii<'_> {
    fn byte(&mut self, byte: u8) {
        self.buf[self.len] = byte;
        self.len += 1;
    }

    /// `value` zero-padded to `width` digits.
    fn digits(&mut self, value: u32, width: usize) {
        let mut rest = value;
        for slot in self.buf[self.len..self.len + width].iter_mut().rev() {
            *slot = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        self.len += width;
    }

    fn fraction(&mut self, value: u32, width: usize) {
        self.byte(b'.');
        self.digits(value, width);
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.format_canonical(&mut [0; 40]) {
            Some(text) => f.write_str(text),
            None => self.fmt_general(f),
        }
    }
}

impl Timestamp {
    /// chrono's formatting, which [`Timestamp::format_canonical`] matches where it applies.
    fn fmt_general(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // `%.f` prints the fraction only when there is one, as Python's isoformat does.
            Timestamp::Naive(naive) => write!(f, "{}", naive.format("%Y-%m-%dT%H:%M:%S%.f")),
            Timestamp::Zoned(zoned) => {
                f.write_str(&zoned.to_rfc3339_opts(SecondsFormat::AutoSi, true))
            }
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.format_canonical(&mut [0; 40]) {
            Some(text) => serializer.serialize_str(text),
            None => serializer.collect_str(self),
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Cow::<'de, str>::deserialize(deserializer)?;
        Timestamp::parse(&text).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
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
        let text = r#"{"message_id": 1, "content": "c", "timestamp": "2026-11-25T18:08:06Z", "metadata": {}}"#;
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
}
