//! The `log` sink: logs each message (single consumer) or one line per batch, as the seed
//! application prints them. A record of another format than `kafka_message` is logged with
//! its topic, partition, offset and key, and its value as the JSON the `http` sink would post,
//! cut to [`VALUE_SHOWN`] characters.

use super::{Record, Sink, SinkError};
use crate::config::Role;
use crate::payload::line::write_value;
use crate::payload::Payload;

/// How much of a value (of a format other than `kafka_message`) a log line shows.
const VALUE_SHOWN: usize = 200;

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

/// The value as JSON, cut at a character boundary.
fn shown(payload: &Payload<'_>) -> String {
    let mut json = Vec::new();
    write_value(&mut json, payload);
    let text = String::from_utf8_lossy(&json);
    match text.char_indices().nth(VALUE_SHOWN) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.into_owned(),
    }
}

/// The key as text where it is UTF-8.
fn key(record: &Record<'_>) -> Option<String> {
    record
        .key
        .map(|key| String::from_utf8_lossy(key).into_owned())
}

impl Sink for LogSink {
    fn process(&mut self, record: &Record<'_>) -> Result<(), SinkError> {
        match record.message() {
            Some(m) => tracing::info!(
                role = %self.role,
                topic = record.topic,
                partition = record.partition,
                offset = record.offset,
                producer_id = %m.producer_id,
                message_id = m.message_id,
                timestamp = %m.timestamp,
                content = %m.content,
                "processed message"
            ),
            None => tracing::info!(
                role = %self.role,
                topic = record.topic,
                partition = record.partition,
                offset = record.offset,
                key = key(record),
                value = %shown(&record.payload),
                "processed record"
            ),
        }
        Ok(())
    }

    fn process_batch(&mut self, batch: &[Record<'_>]) -> Result<(), SinkError> {
        for record in batch {
            // The whole value, a message's id and producer included (formatted only when
            // debug logging is on).
            tracing::debug!(
                record = %format_args!("{}/{}@{}", record.topic, record.partition, record.offset),
                key = key(record),
                value = %shown(&record.payload),
                "batch record"
            );
        }
        let first = batch
            .first()
            .and_then(|r| r.message())
            .map(|m| m.message_id);
        let last = batch.last().and_then(|r| r.message()).map(|m| m.message_id);
        match (batch.first(), batch.last()) {
            (Some(a), Some(b)) if first.is_none() => tracing::info!(
                role = %self.role,
                size = batch.len(),
                first = %format_args!("{}/{}@{}", a.topic, a.partition, a.offset),
                last = %format_args!("{}/{}@{}", b.topic, b.partition, b.offset),
                "processed batch"
            ),
            _ => {
                tracing::info!(role = %self.role, size = batch.len(), ?first, ?last, "processed batch")
            }
        }
        Ok(())
    }

    fn another(&self) -> Option<Box<dyn Sink>> {
        Some(Box::new(self.clone()))
    }
}
