//! The `jsonl` sink: appends one JSON line per processed record to a file: its value with
//! its topic, partition, offset, key and headers, as [`payload::line`](crate::payload::line)
//! defines it for every format. For the seed's `kafka_message` a line starts with
//! `{"producer_id","message_id","partition","offset"`, so that runs can be reconciled
//! ([`ProcessedLine`] reads it back).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::{Positions, Record, Sink, SinkError};
use crate::payload::line::write_line;

/// What reconciliation reads back of a `kafka_message` record's line (the line carries more:
/// its topic, key and headers, which this ignores).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ProcessedLine {
    pub producer_id: String,
    pub message_id: i64,
    pub partition: i32,
    pub offset: i64,
}

impl ProcessedLine {
    /// The line of a `kafka_message` record; `None` for a record of another format.
    pub fn of(record: &Record<'_>) -> Option<Self> {
        record.message().map(|message| ProcessedLine {
            producer_id: message.producer_id.clone().into_owned(),
            message_id: message.message_id,
            partition: record.partition,
            offset: record.offset,
        })
    }
}

/// Appends one JSON line per processed message. Each call hands its lines to the kernel in
/// one `write` before it returns, so a killed process loses nothing it reported processed.
///
/// Every worker of a consumer ([`Sink::another`]) writes to the same file under one lock:
/// lines of two calls never interleave, whatever their size.
///
/// A process killed in the middle of a write (a large one can be cut short) leaves its last
/// line incomplete. Those records were not acknowledged, so they are written again, whole,
/// after the restart; and a sink opening a file whose last line has no end first ends it, so
/// the cut line stays a line of its own rather than running into the next record's. A reader
/// skips a line that is not complete JSON.
#[derive(Clone)]
pub struct JsonlSink {
    path: PathBuf,
    file: Arc<Mutex<File>>,
}

impl JsonlSink {
    pub fn create(path: &Path) -> Result<Self, SinkError> {
        let open = |source| SinkError::Open {
            path: path.to_owned(),
            source,
        };
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .map_err(open)?;
        if !ends_a_line(&mut file).map_err(open)? {
            file.write_all(b"\n").map_err(open)?;
        }
        Ok(JsonlSink {
            path: path.to_owned(),
            file: Arc::new(Mutex::new(file)),
        })
    }

    /// Writes `records`' lines in one go, under the lock.
    fn write_all(&self, records: &[Record<'_>]) -> Result<(), SinkError> {
        let mut lines = Vec::with_capacity(records.len() * 160);
        for record in records {
            write_line(&mut lines, &record.origin(), &record.payload);
            lines.push(b'\n');
        }
        // A poisoned lock means a worker panicked while it held it, between whole writes:
        // the file is as sound as ever.
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        file.write_all(&lines).map_err(|source| SinkError::Write {
            path: self.path.clone(),
            source,
        })
    }
}

/// Whether `file` is empty or its last byte ends a line.
fn ends_a_line(file: &mut File) -> std::io::Result<bool> {
    if file.seek(SeekFrom::End(0))? == 0 {
        return Ok(true);
    }
    file.seek(SeekFrom::End(-1))?;
    let mut last = [0u8];
    file.read_exact(&mut last)?;
    Ok(last[0] == b'\n')
}

impl Sink for JsonlSink {
    fn process(&mut self, record: &Record<'_>) -> Result<(), SinkError> {
        self.write_all(std::slice::from_ref(record))
    }

    fn process_batch(&mut self, batch: &[Record<'_>]) -> Result<(), SinkError> {
        self.write_all(batch)
    }

    /// A run of records is one write and one flush: the records it covers are acknowledged
    /// once it was handed to the kernel, as one record's line is.
    fn writes_runs(&self) -> bool {
        true
    }

    fn process_run(&mut self, records: &[Record<'_>], _: &Positions<'_>) -> Result<(), SinkError> {
        self.write_all(records)
    }

    fn another(&self) -> Option<Box<dyn Sink>> {
        Some(Box::new(self.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::Payload;

    fn record(id: i64, offset: i64) -> Record<'static> {
        Record::test_message(id, "p-1", 2, offset)
    }

    #[test]
    fn lines_are_durable_after_each_call() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("out.jsonl");
        let mut sink = JsonlSink::create(&path).expect("create");
        sink.process(&record(1, 10)).expect("process");
        let mut second = sink.another().expect("shareable");
        second
            .process_batch(&[record(2, 11), record(3, 12)])
            .expect("batch");
        // Read while the sink is still open: nothing may sit in the buffer.
        let lines: Vec<ProcessedLine> = std::fs::read_to_string(&path)
            .expect("read")
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(
            lines[2],
            ProcessedLine {
                producer_id: "p-1".into(),
                message_id: 3,
                partition: 2,
                offset: 12
            }
        );
    }

    #[test]
    fn a_record_of_any_format_is_its_line() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("out.jsonl");
        let mut sink = JsonlSink::create(&path).expect("create");
        let record = Record {
            topic: "orders.eu",
            partition: 1,
            offset: 7,
            payload: Payload::Json(std::borrow::Cow::Owned(
                serde_json::value::RawValue::from_string(r#"{"a":[1]}"#.to_owned()).expect("json"),
            )),
            key: Some(b"k"),
            headers: None,
        };
        sink.process(&record).expect("write");
        let mut expected = Vec::new();
        write_line(&mut expected, &record.origin(), &record.payload);
        expected.push(b'\n');
        assert_eq!(std::fs::read(&path).expect("read"), expected);
    }

    #[test]
    fn a_line_cut_short_by_a_crash_stays_a_line_of_its_own() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("out.jsonl");
        let cut = r#"{"producer_id":"p-1","message_id":1,"par"#;
        std::fs::write(&path, cut).expect("a file a killed process left");
        let mut sink = JsonlSink::create(&path).expect("create");
        sink.process(&record(1, 10)).expect("process");
        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], cut);
        let line: ProcessedLine = serde_json::from_str(lines[1]).expect("the next line is whole");
        assert_eq!((line.message_id, line.offset), (1, 10));
        assert_eq!(lines.len(), 2);
        // A file that ends its last line is left as it is.
        drop(sink);
        JsonlSink::create(&path).expect("reopen");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), text);
    }

    #[test]
    fn an_unwritable_path_is_named() {
        let error = JsonlSink::create(Path::new("/nonexistent-dir/x.jsonl"))
            .err()
            .expect("cannot open");
        assert!(error.to_string().contains("/nonexistent-dir/x.jsonl"));
    }
}
