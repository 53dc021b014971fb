//! The `jsonl` sink: appends one JSON line per processed record to a file: its value with
//! its topic, partition, offset, key and headers, as [`payload::line`](crate::payload::line)
//! defines it for every format. For the seed's `kafka_message` a line starts with
//! `{"producer_id","message_id","partition","offset"`, so that runs can be reconciled
//! ([`ProcessedLine`] reads it back).

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::{Record, Sink, SinkError};
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

/// Appends one JSON line per processed message. Each call ends with the lines handed to the
/// kernel (`flush`), so a killed process loses nothing it reported processed.
///
/// Every worker of a consumer ([`Sink::another`]) writes through the same buffered file under
/// one lock: lines of two calls never interleave, whatever their size.
#[derive(Clone)]
pub struct JsonlSink {
    path: PathBuf,
    writer: Arc<Mutex<BufWriter<File>>>,
}

impl JsonlSink {
    pub fn create(path: &Path) -> Result<Self, SinkError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| SinkError::Open {
                path: path.to_owned(),
                source,
            })?;
        Ok(JsonlSink {
            path: path.to_owned(),
            writer: Arc::new(Mutex::new(BufWriter::with_capacity(64 * 1024, file))),
        })
    }

    /// Writes `records` and flushes, under the lock.
    fn write_all(&self, records: &[Record<'_>]) -> Result<(), SinkError> {
        // A poisoned lock means a worker panicked mid-write; the buffer may hold a partial
        // line, which the flush below still hands to the file. Nothing better can be done.
        let mut lines = Vec::with_capacity(records.len() * 160);
        for record in records {
            write_line(&mut lines, &record.origin(), &record.payload);
            lines.push(b'\n');
        }
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        writer
            .write_all(&lines)
            .and_then(|()| writer.flush())
            .map_err(|source| SinkError::Write {
                path: self.path.clone(),
                source,
            })
    }
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

    fn process_run(&mut self, records: &[Record<'_>]) -> Result<(), SinkError> {
        self.write_all(records)
    }

    fn another(&self) -> Option<Box<dyn Sink>> {
        Some(Box::new(self.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::KafkaMessage;
    use crate::payload::Payload;

    fn record(id: i64, offset: i64) -> Record<'static> {
        Record {
            topic: "t",
            partition: 2,
            offset,
            payload: Payload::Message(KafkaMessage::new(id, "c", "p-1")),
            key: None,
            headers: None,
        }
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
        sink.process_run(std::slice::from_ref(&record))
            .expect("write");
        let mut expected = Vec::new();
        write_line(&mut expected, &record.origin(), &record.payload);
        expected.push(b'\n');
        assert_eq!(std::fs::read(&path).expect("read"), expected);
    }

    #[test]
    fn an_unwritable_path_is_named() {
        let error = JsonlSink::create(Path::new("/nonexistent-dir/x.jsonl"))
            .err()
            .expect("cannot open");
        assert!(error.to_string().contains("/nonexistent-dir/x.jsonl"));
    }
}
