//! The kafkad side: the real role code (`producer::run`, `roles::run_consumer`) with a sink
//! that only counts.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafkad::config::Settings;
use kafkad::roles::{self, producer, ConsumerConfig, ConsumerRole, ProducerConfig};
use kafkad::shutdown::{self, ShutdownTrigger};
use kafkad::sink::{Record, Sink, SinkError};
use kafkad::telemetry::metrics::{ConsumerMetrics, ProducerMetrics};

use crate::cli::Phase;
use crate::measure::{
    after_warmup, run_deadline, unix_micros, window, DeliveryWatch, Mark, PhaseResult,
};
use crate::BenchError;

/// The sink of the kafkad side: counts, marks the window, records latencies (roundtrip), and
/// stops its role once `target` messages were processed. Its state is local while it runs (no
/// lock per message) and published once, when done.
pub struct CountingSink {
    target: u64,
    seen: u64,
    first: Option<Mark>,
    /// (sent, latency) in µs per message, roundtrip only.
    latencies: Option<Vec<(u64, u64)>>,
    done: Arc<Mutex<SinkState>>,
    stop: ShutdownTrigger,
}

#[derive(Default)]
pub struct SinkState {
    first: Option<Mark>,
    done: Option<Mark>,
    latencies_us: Vec<(u64, u64)>,
}

impl CountingSink {
    pub fn new(
        target: u64,
        stop: ShutdownTrigger,
        latencies: bool,
    ) -> (Self, Arc<Mutex<SinkState>>) {
        let done = Arc::new(Mutex::new(SinkState::default()));
        let sink = CountingSink {
            target,
            seen: 0,
            first: None,
            latencies: latencies.then(|| Vec::with_capacity(target as usize)),
            done: Arc::clone(&done),
            stop,
        };
        (sink, done)
    }

    pub fn note<'r>(&mut self, records: impl ExactSizeIterator<Item = &'r Record<'r>>) {
        if self.first.is_none() {
            self.first = Some(Mark::now());
        }
        self.seen += records.len() as u64;
        if let Some(latencies) = &mut self.latencies {
            let now = unix_micros();
            for record in records.filter_map(Record::message) {
                let sent = record.timestamp.to_utc().timestamp_micros().max(0) as u64;
                latencies.push((sent, now.saturating_sub(sent)));
            }
        }
        if self.seen >= self.target {
            let mut state = self.done.lock().unwrap_or_else(|p| p.into_inner());
            if state.done.is_none() {
                state.done = Some(Mark::now());
                state.first = self.first;
                state.latencies_us = self.latencies.take().unwrap_or_default();
                self.stop.fire();
            }
        }
    }
}

impl Sink for CountingSink {
    fn process(&mut self, record: &Record<'_>) -> Result<(), SinkError> {
        self.note(std::iter::once(record));
        Ok(())
    }

    fn process_batch(&mut self, batch: &[Record<'_>]) -> Result<(), SinkError> {
        self.note(batch.iter());
        Ok(())
    }
}

pub async fn kafkad_produce(settings: Settings, messages: u64) -> Result<PhaseResult, BenchError> {
    let created = Instant::now();
    let metrics = ProducerMetrics::default();
    let delivered = metrics.delivered.clone();
    let watch = DeliveryWatch::start(move || delivered.get(), messages);
    let report = producer::run(
        ProducerConfig::new(&settings),
        metrics,
        shutdown::Shutdown::never(),
    )
    .await
    .map_err(|source| BenchError::Role {
        phase: "produce-kafkad",
        source,
    });
    let marks = watch.finish();
    let report = report?;
    if report.delivered != messages {
        return Err(BenchError::Reference(format!(
            "produce-kafkad: {} of {messages} delivered",
            report.delivered
        )));
    }
    marks.window(created, messages, "produce-kafkad")
}

pub async fn kafkad_consume(
    phase: Phase,
    settings: Settings,
    messages: u64,
) -> Result<PhaseResult, BenchError> {
    let (stop, shutdown) = shutdown::channel();
    let (sink, state) = CountingSink::new(messages, stop.clone(), false);
    let created = Instant::now();
    let metrics = ConsumerMetrics::default();
    let role = match phase {
        Phase::BatchKafkad => ConsumerRole::Batch,
        _ => ConsumerRole::Single,
    };
    let task = tokio::spawn(roles::run_consumer(
        ConsumerConfig::new(&settings, role),
        Box::new(sink),
        metrics,
        shutdown,
    ));
    let outcome = tokio::time::timeout(run_deadline(messages), task).await;
    let outcome = match outcome {
        Ok(joined) => joined.map_err(|e| BenchError::Reference(e.to_string()))?,
        Err(_) => {
            stop.fire();
            return Err(BenchError::Child {
                phase: phase.as_str(),
                detail: format!("did not process {messages} messages in time"),
            });
        }
    };
    outcome.map_err(|source| BenchError::Role {
        phase: phase.as_str(),
        source,
    })?;
    let state = state.lock().unwrap_or_else(|p| p.into_inner());
    match (state.first, state.done) {
        (Some(first), Some(done)) => Ok(window(created, first, done, messages)),
        _ => Err(BenchError::Child {
            phase: phase.as_str(),
            detail: "stopped before processing every message".to_owned(),
        }),
    }
}

pub async fn kafkad_roundtrip(
    consumer_settings: Settings,
    producer_settings: Settings,
    messages: u64,
) -> Result<PhaseResult, BenchError> {
    let phase = "roundtrip-kafkad";
    let (stop, shutdown) = shutdown::channel();
    let (sink, state) = CountingSink::new(messages, stop.clone(), true);
    let created = Instant::now();
    let metrics = ConsumerMetrics::default();
    let consumer = tokio::spawn(roles::run_consumer(
        ConsumerConfig::new(&consumer_settings, ConsumerRole::Single),
        Box::new(sink),
        metrics.clone(),
        shutdown,
    ));
    // Ready: the consumer holds its partitions. Never a fixed sleep.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !metrics.health.is_ready() {
        if Instant::now() > deadline || consumer.is_finished() {
            stop.fire();
            return Err(BenchError::Child {
                phase,
                detail: "the consumer was not assigned its partitions within 60 s".to_owned(),
            });
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let start = Mark::now();
    let producer_metrics = ProducerMetrics::default();
    let delivered = producer_metrics.delivered.clone();
    let watch = DeliveryWatch::start(move || delivered.get(), messages);
    let producer = producer::run(
        ProducerConfig::new(&producer_settings),
        producer_metrics,
        shutdown::Shutdown::never(),
    )
    .await
    .map_err(|source| BenchError::Role { phase, source });
    let warm = watch.finish().first.map(|(mark, _)| mark.unix_us);
    let producer = producer?;
    let joined = tokio::time::timeout(run_deadline(messages), consumer).await;
    let end = Mark::now();
    match joined {
        Ok(Ok(outcome)) => {
            outcome.map_err(|source| BenchError::Role { phase, source })?;
        }
        Ok(Err(join)) => return Err(BenchError::Reference(join.to_string())),
        Err(_) => {
            stop.fire();
            return Err(BenchError::Child {
                phase,
                detail: format!(
                    "did not receive {messages} messages in time ({} delivered)",
                    producer.delivered
                ),
            });
        }
    }
    let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
    let done = state.done.unwrap_or(end);
    let mut result = window(created, start, done, messages);
    result.latencies_us = after_warmup(std::mem::take(&mut state.latencies_us), warm);
    Ok(result)
}
