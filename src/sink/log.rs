//! The `log` sink: logs each message (single consumer) or one line per batch, as the seed
//! application prints them.

use super::{Record, Sink, SinkError};
use crate::config::Role;

/// Logs each message (single) or one line per batch with each message at debug level.
#[derive(Debug, Clone)]
pub struct LogSink {
    role: Role,
}

impl LogSink {
    pub fn new(role: Role) -> Self {
        LogSink { role }
    }
}

impl Sink for LogSink {
    fn process(&mut self, record: &Record<'_>) -> Result<(), SinkError> {
        let m = &record.message;
        tracing::info!(
            role = %self.role,
            partition = record.partition,
            offset = record.offset,
            producer_id = %m.producer_id,
            message_id = m.message_id,
            timestamp = %m.timestamp,
            content = %m.content,
            "processed message"
        );
        Ok(())
    }

    fn process_batch(&mut self, batch: &[Record<'_>]) -> Result<(), SinkError> {
        for record in batch {
            let m = &record.message;
            tracing::debug!(
                partition = record.partition,
                offset = record.offset,
                producer_id = %m.producer_id,
                message_id = m.message_id,
                "batch message"
            );
        }
        let first = batch.first().map(|r| r.message.message_id);
        let last = batch.last().map(|r| r.message.message_id);
        tracing::info!(role = %self.role, size = batch.len(), ?first, ?last, "processed batch");
        Ok(())
    }

    fn another(&self) -> Option<Box<dyn Sink>> {
        Some(Box::new(self.clone()))
    }
}
