//! The lines of real input as records (see `roles::input`): each line read, sent or counted
//! as not sent by its kind, until the input ends, fails, or shutdown.

use std::collections::BTreeMap;
use std::time::Instant;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer};

use super::super::input::{Batch, InputLine, LineFormat, LineRecord, LineRejection};
use super::{
    fatal_error, pace, send, serve, stopped_by_failure, Handed, ProducerConfig, RoleProducer,
    SERVE_EVERY,
};
use crate::config::ProducerSettings;
use crate::roles::RoleError;
use crate::shutdown::Shutdown;
use crate::telemetry::metrics::ProducerMetrics;

/// What became of the lines read.
#[derive(Default)]
pub(super) struct LineTally {
    pub read: u64,
    pub rejected: BTreeMap<&'static str, u64>,
    pub first_rejected: Vec<u64>,
}

/// Rejected lines logged one by one; after these, only counted (and summed up at the end).
const REJECTED_LOGGED: usize = 100;

impl LineTally {
    fn reject(&mut self, number: u64, rejection: &LineRejection) {
        *self.rejected.entry(rejection.kind()).or_default() += 1;
        if self.first_rejected.len() < REJECTED_LOGGED {
            self.first_rejected.push(number);
            tracing::warn!(line = number, kind = rejection.kind(), error = %rejection, "line not sent");
            if self.first_rejected.len() == REJECTED_LOGGED {
                tracing::warn!("{REJECTED_LOGGED} lines not sent; the rest are only counted");
            }
        }
    }
}

/// The input stopped being readable after `after_line` lines.
pub(super) struct InputFailure {
    pub after_line: u64,
    pub error: std::io::Error,
}

/// The `[producer] headers` every record of a line carries; `None` without any.
fn headers_of(config: &ProducerSettings) -> Option<OwnedHeaders> {
    (!config.headers.is_empty()).then(|| {
        config
            .headers
            .iter()
            .fold(OwnedHeaders::new(), |headers, (name, value)| {
                headers.insert(Header {
                    key: name,
                    value: Some(value),
                })
            })
    })
}

/// The record of input `line` with its number and bytes, or `None`: the line is not sent,
/// and `tally` counts why.
fn record_of<'l>(
    line: InputLine<'l>,
    format: &LineFormat,
    limit: usize,
    tally: &mut LineTally,
) -> Option<(u64, &'l [u8], LineRecord<'l>)> {
    let (number, bytes) = match line {
        InputLine::TooLong { number, len } => {
            tally.reject(number, &LineRejection::TooLarge { len, limit });
            return None;
        }
        InputLine::Line { number, bytes } => (number, bytes),
    };
    match format.record(bytes) {
        Ok(record) => Some((number, bytes, record)),
        Err(rejection) => {
            tally.reject(number, &rejection);
            None
        }
    }
}

/// Sends a record per line of `lines` until the input ends, fails (`Ok(Some)`), `count`
/// lines were read, or shutdown; an error when a failure stops the producer first.
pub(super) async fn send_lines(
    producer: &RoleProducer,
    role: &ProducerConfig,
    mut lines: tokio::sync::mpsc::Receiver<Batch>,
    metrics: &ProducerMetrics,
    shutdown: &mut Shutdown,
    tally: &mut LineTally,
) -> Result<Option<InputFailure>, RoleError> {
    let config = &role.producer;
    let topic = role.topic.as_str();
    let format = LineFormat::new(config.format, config.key.clone());
    let headers = headers_of(config);
    let started = Instant::now();
    let mut sent: u64 = 0;
    loop {
        let batch = tokio::select! {
            batch = lines.recv() => batch,
            _ = shutdown.wait() => None,
        };
        let lines = match batch {
            None => return Ok(None),
            Some(Batch::Failed { after_line, error }) => {
                return Ok(Some(InputFailure { after_line, error }))
            }
            Some(Batch::Lines(lines)) => lines,
        };
        for line in lines.iter() {
            if shutdown.is_triggered() || (config.count > 0 && tally.read >= config.count) {
                return Ok(None);
            }
            stopped_by_failure(producer)?;
            if !pace(producer, config.rate, started, sent, shutdown, metrics).await {
                return Ok(None);
            }
            tally.read += 1;
            let Some((number, bytes, record)) =
                record_of(line, &format, role.message_max_bytes, tally)
            else {
                continue;
            };
            let mut out = BaseRecord::with_opaque_to(topic, number as usize).payload(record.value);
            out.key = record.key.as_deref();
            out.headers = headers.clone();
            match send(producer, out, shutdown).await? {
                Handed::Taken => {}
                Handed::Shutdown => return Ok(None),
                Handed::TooLarge(_) => {
                    let len = bytes.len() as u64;
                    let limit = role.message_max_bytes;
                    tally.reject(number, &LineRejection::TooLarge { len, limit });
                    continue;
                }
            }
            metrics.accepted.inc();
            sent += 1;
            if config.rate > 0.0 || sent % SERVE_EVERY == 0 {
                serve(producer);
                metrics.health.progress();
            }
        }
        if producer.client().fatal_error().is_some() {
            return Err(fatal_error(producer));
        }
    }
}
