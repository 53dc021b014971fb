//! The in-memory sink of the demo and the tests.

use std::sync::{Arc, Mutex};

use super::{ProcessedLine, Record, Sink, SinkError};

/// Collects processed lines in memory, shared between the consumers of one group (and the
/// workers of each): what the demo and the tests reconcile against the producers.
#[derive(Debug, Clone, Default)]
pub struct MemorySink {
    lines: Arc<Mutex<Vec<ProcessedLine>>>,
}

impl MemorySink {
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
        if let Ok(mut lines) = self.lines.lock() {
            lines.push(record.into());
        }
        Ok(())
    }

    fn process_batch(&mut self, batch: &[Record<'_>]) -> Result<(), SinkError> {
        if let Ok(mut lines) = self.lines.lock() {
            lines.extend(batch.iter().map(ProcessedLine::from));
        }
        Ok(())
    }

    fn writes_runs(&self) -> bool {
        true
    }

    fn process_run(&mut self, records: &[Record<'_>]) -> Result<(), SinkError> {
        self.process_batch(records)
    }

    fn another(&self) -> Option<Box<dyn Sink>> {
        Some(Box::new(self.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::KafkaMessage;

    #[test]
    fn clones_share_lines() {
        let record = |id| Record {
            partition: 0,
            offset: id,
            message: KafkaMessage::new(id, "c", "p"),
            key: None,
            headers: None,
        };
        let sink = MemorySink::default();
        let mut a = sink.clone();
        let mut b = sink.another().expect("shareable");
        a.process(&record(1)).expect("ok");
        b.process_batch(&[record(2), record(3)]).expect("ok");
        assert_eq!(sink.len(), 3);
    }
}
