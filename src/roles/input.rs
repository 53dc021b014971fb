//! The producer's real input: lines of standard input or a file, each one record.
//!
//! A line ends at `\n`, which is not part of it; everything else is, a `\r` before the `\n`
//! included (a `text` or `bytes` record is the line byte for byte). The last line needs no
//! `\n`. `format` says what a line must be: a `json` line one JSON value, a `text` line UTF-8,
//! a `kafka_message` line one of the seed's messages, a `bytes` line anything; the check is
//! the one a consumer of that format makes ([`crate::payload::Decoder`]), so what is sent in a
//! format is read back in it. The key comes from `[producer] key`: a field of the line's JSON
//! object, or the text before a delimiter (the value is then what follows it).
//!
//! A line that cannot be a record is not sent: it is counted by its kind and reported
//! ([`LineRejection`]); one longer than librdkafka's `message.max.bytes` is skipped while it
//! is read, never held whole in memory. Reading runs on a thread of its own, handing lines
//! over in batches, so a slow disk or an idle terminal never blocks the runtime.

use std::borrow::Cow;
use std::fmt;
use std::io::{BufRead, ErrorKind};
use std::path::PathBuf;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;
use tokio::sync::mpsc;

use crate::config::{InputSource, LineKey};
use crate::payload::{BadValue, Decoder, Format};

/// Lines handed from the reading thread to the producer at once, at most...
const BATCH_LINES: usize = 512;
/// ...and about this many bytes of them.
const BATCH_BYTES: usize = 256 * 1024;
/// Batches the reading thread may be ahead of the producer.
const BATCHES_AHEAD: usize = 8;

/// One line of input, numbered from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputLine<'b> {
    Line {
        number: u64,
        bytes: &'b [u8],
    },
    /// A line longer than the limit, skipped while read: its number and length.
    TooLong {
        number: u64,
        len: u64,
    },
}

/// Lines read one after another into one buffer: no allocation per line.
#[derive(Debug, Default)]
pub struct LineBatch {
    data: Vec<u8>,
    /// Each line's number, and where it ends in `data` (`None`: too long, with its length).
    lines: Vec<(u64, Result<usize, u64>)>,
}

impl LineBatch {
    fn with_capacity() -> Self {
        LineBatch {
            data: Vec::with_capacity(BATCH_BYTES + 4096),
            lines: Vec::with_capacity(BATCH_LINES),
        }
    }

    fn is_full(&self) -> bool {
        self.lines.len() >= BATCH_LINES || self.data.len() >= BATCH_BYTES
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// The lines, in order.
    pub fn iter(&self) -> impl Iterator<Item = InputLine<'_>> {
        let mut start = 0;
        self.lines.iter().map(move |&(number, end)| match end {
            Ok(end) => {
                let bytes = &self.data[start..end];
                start = end;
                InputLine::Line { number, bytes }
            }
            Err(len) => InputLine::TooLong { number, len },
        })
    }
}

/// What the reading thread hands over: lines, then the end, or the error that ended reading.
pub enum Batch {
    Lines(LineBatch),
    Failed {
        /// The lines read before it.
        after_line: u64,
        error: std::io::Error,
    },
}

/// Reads lines of at most `limit` bytes from a buffered reader.
pub struct LineReader<R> {
    reader: R,
    limit: usize,
    number: u64,
}

impl<R: BufRead> LineReader<R> {
    pub fn new(reader: R, limit: usize) -> Self {
        LineReader {
            reader,
            limit,
            number: 0,
        }
    }

    /// The lines read so far.
    pub fn lines_read(&self) -> u64 {
        self.number
    }

    /// Reads the next line into `batch`; `false` at the end of the input.
    pub fn read_into(&mut self, batch: &mut LineBatch) -> std::io::Result<bool> {
        let start = batch.data.len();
        let mut len: u64 = 0;
        let mut any = false;
        loop {
            let available = match self.reader.fill_buf() {
                Ok(available) => available,
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                Err(error) => {
                    batch.data.truncate(start);
                    return Err(error);
                }
            };
            if available.is_empty() {
                break;
            }
            any = true;
            let (taken, ended) = match newline(available) {
                Some(at) => (at, true),
                None => (available.len(), false),
            };
            len += taken as u64;
            if len <= self.limit as u64 {
                batch.data.extend_from_slice(&available[..taken]);
            } else {
                // Too long: what was kept is dropped, the rest only counted.
                batch.data.truncate(start);
            }
            self.reader.consume(taken + usize::from(ended));
            if ended {
                break;
            }
        }
        if !any {
            return Ok(false);
        }
        self.number += 1;
        let end = match len > self.limit as u64 {
            true => Err(len),
            false => Ok(batch.data.len()),
        };
        batch.lines.push((self.number, end));
        Ok(true)
    }
}

fn newline(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'\n')
}

/// Opens the configured input and reads it on a thread of its own; `None` for `generate`.
/// The receiver gets batches of lines, then is closed at the end of the input, or gets one
/// [`Batch::Failed`] first.
pub fn start(
    source: &InputSource,
    limit: usize,
) -> Result<Option<mpsc::Receiver<Batch>>, InputError> {
    let reader: Box<dyn BufRead + Send> = match source {
        InputSource::Generate => return Ok(None),
        InputSource::Stdin => Box::new(std::io::BufReader::with_capacity(
            256 * 1024,
            std::io::stdin(),
        )),
        InputSource::File(path) => {
            let file = std::fs::File::open(path).map_err(|source| InputError::Open {
                path: path.clone(),
                source,
            })?;
            Box::new(std::io::BufReader::with_capacity(256 * 1024, file))
        }
    };
    let (sender, receiver) = mpsc::channel(BATCHES_AHEAD);
    std::thread::Builder::new()
        .name("kafkad-input".to_owned())
        .spawn(move || read_all(LineReader::new(reader, limit), &sender))
        .map_err(InputError::Thread)?;
    Ok(Some(receiver))
}

/// Reads every line into batches until the end, an error, or the producer no longer listens.
fn read_all<R: BufRead>(mut reader: LineReader<R>, sender: &mpsc::Sender<Batch>) {
    let mut batch = LineBatch::with_capacity();
    loop {
        match reader.read_into(&mut batch) {
            Ok(true) => {
                if batch.is_full() {
                    let full = std::mem::replace(&mut batch, LineBatch::with_capacity());
                    if sender.blocking_send(Batch::Lines(full)).is_err() {
                        return;
                    }
                }
            }
            Ok(false) => {
                if !batch.is_empty() {
                    let _ = sender.blocking_send(Batch::Lines(batch));
                }
                return;
            }
            Err(error) => {
                if !batch.is_empty() && sender.blocking_send(Batch::Lines(batch)).is_err() {
                    return;
                }
                let _ = sender.blocking_send(Batch::Failed {
                    after_line: reader.lines_read(),
                    error,
                });
                return;
            }
        }
    }
}

/// The input could not be opened or read.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("cannot open {}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start the thread reading the input: {0}")]
    Thread(std::io::Error),
}

/// Why a line is not sent; its kind counts it in the report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineRejection {
    #[error("{len} bytes, above message.max.bytes = {limit}")]
    TooLarge { len: u64, limit: usize },
    #[error("no key: {0}")]
    MissingKey(String),
    #[error(transparent)]
    Bad(#[from] BadValue),
}

impl LineRejection {
    pub fn kind(&self) -> &'static str {
        match self {
            LineRejection::TooLarge { .. } => "too_large",
            LineRejection::MissingKey(_) => "missing_key",
            LineRejection::Bad(bad) => bad.kind(),
        }
    }
}

/// A line as a record: its key, if it has one, and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineRecord<'l> {
    pub key: Option<Cow<'l, [u8]>>,
    pub value: &'l [u8],
}

/// Turns lines into records: the key found, the value checked for the format.
pub struct LineFormat {
    decoder: Decoder,
    key: Option<LineKey>,
}

impl LineFormat {
    /// `format` is one the producer sends (configuration refuses the schema'd ones).
    pub fn new(format: Format, key: Option<LineKey>) -> Self {
        LineFormat {
            decoder: Decoder::new(format, None),
            key,
        }
    }

    pub fn record<'l>(&self, line: &'l [u8]) -> Result<LineRecord<'l>, LineRejection> {
        let (key, value) = match &self.key {
            None => (None, line),
            Some(LineKey::Delimiter(delimiter)) => {
                let delimiter = delimiter.as_bytes();
                let at = line
                    .windows(delimiter.len())
                    .position(|window| window == delimiter)
                    .ok_or_else(|| {
                        LineRejection::MissingKey(format!(
                            "the line holds no key delimiter {:?}",
                            String::from_utf8_lossy(delimiter)
                        ))
                    })?;
                (
                    Some(Cow::Borrowed(&line[..at])),
                    &line[at + delimiter.len()..],
                )
            }
            Some(LineKey::Field(field)) => (json_field_key(line, field)?, line),
        };
        match self.decoder.decode(value) {
            Ok(_) => Ok(LineRecord { key, value }),
            Err(crate::payload::Undecoded::Bad(bad)) => Err(bad.into()),
            // No registry takes part in the formats a producer sends.
            Err(crate::payload::Undecoded::RegistryUnavailable(error)) => {
                unreachable!("a producer's format asks no registry: {error}")
            }
        }
    }
}

/// The key a line's JSON object holds in `field`: a string as its text, `null` as none, any
/// other value as its JSON text. A line that is not a JSON object, or lacks the field, has no
/// key to give (a line that is not JSON at all is rejected as that, by the format check).
fn json_field_key<'l>(line: &'l [u8], field: &str) -> Result<Option<Cow<'l, [u8]>>, LineRejection> {
    let Ok(text) = std::str::from_utf8(line) else {
        return Ok(None);
    };
    let mut json = serde_json::Deserializer::from_str(text);
    let found = match (FieldSeed { field }).deserialize(&mut json) {
        Ok(found) => found,
        Err(error) if error.is_data() => {
            return Err(LineRejection::MissingKey(format!(
                "the line is not a JSON object with a field `{field}`"
            )))
        }
        // Not JSON: the format check names it.
        Err(_) => return Ok(None),
    };
    let Some(raw) = found else {
        return Err(LineRejection::MissingKey(format!(
            "the line's JSON object has no field `{field}`"
        )));
    };
    let raw = raw.get();
    Ok(match raw {
        "null" => None,
        text if text.starts_with('"') => {
            let unquoted: Cow<'l, str> =
                serde_json::from_str(text).map_err(|e| LineRejection::MissingKey(e.to_string()))?;
            Some(match unquoted {
                Cow::Borrowed(borrowed) => Cow::Borrowed(borrowed.as_bytes()),
                Cow::Owned(owned) => Cow::Owned(owned.into_bytes()),
            })
        }
        text => Some(Cow::Borrowed(text.as_bytes())),
    })
}

/// Finds one top-level field of a JSON object, skipping the others without building them.
struct FieldSeed<'f> {
    field: &'f str,
}

impl<'de> DeserializeSeed<'de> for FieldSeed<'_> {
    type Value = Option<&'de RawValue>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FieldSeed<'_> {
    type Value = Option<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if key == self.field && found.is_none() {
                found = Some(map.next_value::<&'de RawValue>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lines of `input` as (number, bytes), `None` for one too long (with its length).
    fn lines(input: &[u8], limit: usize) -> Vec<(u64, Result<Vec<u8>, u64>)> {
        let mut reader = LineReader::new(std::io::BufReader::with_capacity(4, input), limit);
        let mut batch = LineBatch::default();
        while reader.read_into(&mut batch).expect("reads") {}
        collect(&batch)
    }

    fn collect(batch: &LineBatch) -> Vec<(u64, Result<Vec<u8>, u64>)> {
        batch
            .iter()
            .map(|line| match line {
                InputLine::Line { number, bytes } => (number, Ok(bytes.to_vec())),
                InputLine::TooLong { number, len } => (number, Err(len)),
            })
            .collect()
    }

    fn line(number: u64, bytes: &[u8]) -> (u64, Result<Vec<u8>, u64>) {
        (number, Ok(bytes.to_vec()))
    }

    #[test]
    fn a_line_is_everything_before_its_newline() {
        assert_eq!(
            lines(b"one\r\n\ntwo\xff\nlast", 100),
            [
                line(1, b"one\r"),
                line(2, b""),
                line(3, b"two\xff"),
                line(4, b"last")
            ]
        );
        assert_eq!(
            lines(b"a\n", 100),
            [line(1, b"a")],
            "no line after the last newline"
        );
        assert!(lines(b"", 100).is_empty());
    }

    #[test]
    fn a_line_above_the_limit_is_skipped_and_measured() {
        let input = [b"short\n".as_slice(), &[b'x'; 50], b"\nafter"].concat();
        assert_eq!(
            lines(&input, 10),
            [line(1, b"short"), (2, Err(50)), line(3, b"after")]
        );
        assert_eq!(lines(b"exactly10!\n", 10), [line(1, b"exactly10!")]);
    }

    #[test]
    fn a_read_error_ends_the_input_with_the_lines_before_it() {
        struct Failing(Vec<u8>);
        impl std::io::Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                if self.0.is_empty() {
                    return Err(std::io::Error::other("disk gone"));
                }
                let n = buf.len().min(self.0.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0.drain(..n);
                Ok(n)
            }
        }
        let (sender, mut receiver) = mpsc::channel(BATCHES_AHEAD);
        let reader = LineReader::new(std::io::BufReader::new(Failing(b"a\nb\nc".to_vec())), 10);
        read_all(reader, &sender);
        match receiver.blocking_recv() {
            Some(Batch::Lines(lines)) => {
                assert_eq!(collect(&lines), [line(1, b"a"), line(2, b"b")])
            }
            _ => panic!("the lines read first"),
        }
        match receiver.blocking_recv() {
            Some(Batch::Failed { after_line, error }) => {
                assert_eq!((after_line, error.to_string()), (2, "disk gone".to_owned()))
            }
            _ => panic!("then the failure"),
        }
    }

    fn record(
        format: Format,
        key: Option<LineKey>,
        line: &[u8],
    ) -> Result<(Option<Vec<u8>>, Vec<u8>), &'static str> {
        LineFormat::new(format, key)
            .record(line)
            .map(|r| (r.key.map(|k| k.into_owned()), r.value.to_vec()))
            .map_err(|rejection| rejection.kind())
    }

    #[test]
    fn each_format_checks_its_lines_as_a_consumer_would() {
        assert_eq!(
            record(Format::Json, None, br#"{"a": 1}"#),
            Ok((None, br#"{"a": 1}"#.to_vec()))
        );
        assert_eq!(record(Format::Json, None, b"{"), Err("not_json"));
        assert_eq!(record(Format::Json, None, b""), Err("empty"));
        assert_eq!(record(Format::Text, None, b"caf\xc3"), Err("not_utf8"));
        assert_eq!(
            record(Format::Bytes, None, b"\xff\x00"),
            Ok((None, b"\xff\x00".to_vec()))
        );
        assert_eq!(
            record(
                Format::KafkaMessage,
                None,
                br#"{"message_id": 1, "content": "x"}"#
            ),
            Err("missing_field")
        );
    }

    #[test]
    fn a_key_is_a_json_field_or_the_text_before_a_delimiter() {
        let field = || Some(LineKey::Field("user".into()));
        assert_eq!(
            record(
                Format::Json,
                field(),
                br#"{"n": {"user": 1}, "user": "ann\u00e9"}"#
            )
            .map(|r| r.0),
            Ok(Some("anné".as_bytes().to_vec()))
        );
        assert_eq!(
            record(Format::Json, field(), br#"{"user": 42}"#).map(|r| r.0),
            Ok(Some(b"42".to_vec()))
        );
        assert_eq!(
            record(Format::Json, field(), br#"{"user": null}"#).map(|r| r.0),
            Ok(None)
        );
        assert_eq!(
            record(Format::Json, field(), br#"{"other": 1}"#),
            Err("missing_key")
        );
        assert_eq!(record(Format::Json, field(), b"[1]"), Err("missing_key"));
        assert_eq!(record(Format::Json, field(), b"{\"user\""), Err("not_json"));

        let tab = || Some(LineKey::Delimiter("\t".into()));
        assert_eq!(
            record(Format::Text, tab(), b"k1\tvalue\twith tab"),
            Ok((Some(b"k1".to_vec()), b"value\twith tab".to_vec()))
        );
        assert_eq!(
            record(Format::Text, tab(), b"no delimiter"),
            Err("missing_key")
        );
        assert_eq!(
            record(
                Format::Json,
                Some(LineKey::Delimiter("::".into())),
                b"k::{\"a\":1}"
            ),
            Ok((Some(b"k".to_vec()), b"{\"a\":1}".to_vec()))
        );
    }
}
