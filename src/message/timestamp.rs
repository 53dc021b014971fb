//! The message's `timestamp`: the ISO-8601 forms producers write, kept as they came. A
//! module of its own because it is read and written for every message: the canonical shape
//! has a hand-written parser and formatter beside chrono's general ones, which they must match.

use std::borrow::Cow;
use std::fmt;

use chrono::{
    DateTime, Datelike, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, SecondsFormat, Timelike,
    Utc,
};
use serde::de;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::preview;

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
    pub(super) fn parse_general(text: &str) -> Result<Self, TimestampError> {
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
    pub(super) fn parse_canonical(b: &[u8]) -> Option<Self> {
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
    pub(super) fn fmt_general(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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
