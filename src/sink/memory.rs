//! The in-memory sink of the demo and the tests.

use std::sync::{Arc, Mutex};

use super::{Positions, ProcessedLine, Record, Sink, SinkError};

/// Collects processed lines in memory, shared between the consumers of one group (and the
/// workers of each): what the demo and the tests reconcile against the producers. A
/// `kafka_message` record is kept as its [`ProcessedLine`]; a record of another format as
/// the JSON line the `jsonl` sink would write ([`others`](Self::others)).
#[derive(Debug, Clone, Default)]
pub struct MemorySink {
    lines: Arc<Mutex<Vec<ProcessedLine>>>,
    others: Arc<Mutex<Vec<String>>>,
}

impl MemorySink {
    /// The lines of the records of formats other than `kafka_message`, as the `jsonl` sink
    /// writes them.
    pub fn others(&self) -> Vec<String> {
        self.others.lock().map(|l| l.clone()).unwrap_or_default()
    }

    fn keep(&self, records: &[Record<'_>]) {
        let mut others = Vec::new();
        if let Ok(mut lines) = self.lines.lock() {
            for record in records {
                match ProcessedLine::of(record) {
                    Some(line) => lines.push(line),
                    None => others.push(record),
                }
            }
        }
        if others.is_empty() {
            return;
        }
        if let Ok(mut kept) = self.others.lock() {
            for record in others {
                let mut line = Vec::new();
                crate::payload::line::write_line(&mut line, &record.origin(), &record.payload);
                kept.push(String::from_utf8_lossy(&line).into_owned());
            }
        }
    }

    /// Everything processed so far.
    pub fn lines(&self) -> Vec<ProcessedLine> {
        self.lines.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// How many messages were processed so far.
    pub fn len(&self) -> usize {
        self.lines.lock().map(|l| l.len()).unwrap_or_default()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Sink for MemorySink {
    fn process(&mut self, record: &Record<'_>) -> Result<(), SinkError> {
        self.keep(std::slice::from_ref(record));
        Ok(())
    }

    fn process_batch(&mut self, batch: &[Record<'_>]) -> Result<(), SinkError> {
        self.keep(batch);
        Ok(())
    }

    fn writes_runs(&self) -> bool {
        true
    }

    fn process_run(&mut self, records: &[Record<'_>], _: &Positions<'_>) -> Result<(), SinkError> {
        self.process_batch(records)
    }

    fn another(&self) -> Option<Box<dyn Sink>> {
        Some(Box::new(self.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_lines() {
        let record = |id| Record::test_message(id, "p", 0, id);
        let sink = MemorySink::default();
        let mut a = sink.clone();
        let mut b = sink.another().expect("shareable");
        a.process(&record(1)).expect("ok");
        b.process_batch(&[record(2), record(3)]).expect("ok");
        assert_eq!(sink.len(), 3);
    }
}
