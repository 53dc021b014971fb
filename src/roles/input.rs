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
//!
//! Reading is here; what makes a line a record (its key, the format check, the reasons a
//! line is refused) is in `record`.

mod record;

use std::io::{BufRead, ErrorKind};
use std::path::PathBuf;

use tokio::sync::mpsc;

use crate::config::InputSource;
pub use record::{LineFormat, LineRecord, LineRejection};

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
}
