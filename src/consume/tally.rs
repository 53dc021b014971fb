//! Per-message figures gathered on a worker and published in bulk.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::payload::Payload;
use crate::telemetry::clock::Tick;
use crate::telemetry::histogram::LocalHistogram;
use crate::telemetry::metrics::ConsumerMetrics;

/// The wall clock in microseconds since the Unix epoch.
pub(crate) fn unix_micros_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_micros() as i64)
}

/// The end-to-end latency in seconds of a message processed at `now` ([`unix_micros_now`]):
/// `now` minus the message's own timestamp; none for a timestamp in the future, and none for
/// a record of another format than `kafka_message`, which carries no timestamp of its own.
#[inline]
pub(crate) fn latency(payload: &Payload<'_>, now: i64) -> Option<f64> {
    let Payload::Message(message) = payload else {
        return None;
    };
    let age = now - message.timestamp.unix_micros();
    (age >= 0).then(|| age as f64 / 1e6)
}

/// Publish what a [`Tally`] gathered at least this often...
const PUBLISH_EVERY: u64 = 256;
/// ...and at least this often while messages keep coming.
const PUBLISH_INTERVAL: Duration = Duration::from_millis(100);

/// The per-message figures of one worker (processed count, processing time and end-to-end
/// latency), gathered with no lock and no atomic, and published together every
/// [`PUBLISH_EVERY`] messages, every [`PUBLISH_INTERVAL`], and at the end of every job: so
/// `/metrics` and the summaries lag by at most that. Publishing one message at a time (two
/// histogram locks, a counter, a wall-clock read) cost more than anything but decoding.
pub(crate) struct Tally {
    metrics: ConsumerMetrics,
    processed: u64,
    latency: LocalHistogram,
    processing: LocalHistogram,
    /// The last publish, on both clocks: a message's processing end (a [`Tick`], read anyway
    /// for the processing time) gives its wall-clock time without another clock read. Taken
    /// again at every publish, so it is never more than [`PUBLISH_INTERVAL`] old when used.
    published: Tick,
    published_unix_micros: i64,
}

impl Tally {
    pub fn new(metrics: ConsumerMetrics) -> Self {
        Tally {
            processed: 0,
            latency: metrics.end_to_end_latency.local(),
            processing: metrics.processing_time.local(),
            metrics,
            published: Tick::now(),
            published_unix_micros: unix_micros_now(),
        }
    }

    /// One message processed from `started` to `ended`.
    pub fn processed(&mut self, message: &Payload<'_>, started: Tick, ended: Tick) {
        self.processed_together(std::iter::once(message), started, ended);
    }

    /// Messages processed in one sink call from `started` to `ended`: one processing time
    /// (the call's), a latency each.
    pub fn processed_together<'m>(
        &mut self,
        messages: impl Iterator<Item = &'m Payload<'m>>,
        started: Tick,
        ended: Tick,
    ) {
        let mut since = ended.nanos_since(self.published);
        if u128::from(since) >= PUBLISH_INTERVAL.as_nanos() {
            self.publish_now();
            since = 0;
        }
        self.processing.observe(ended.seconds_since(started));
        let now = self.published_unix_micros + i64::try_from(since / 1000).unwrap_or(i64::MAX);
        for message in messages {
            if let Some(latency) = latency(message, now) {
                self.latency.observe(latency);
            }
            self.processed += 1;
        }
        if self.processed >= PUBLISH_EVERY {
            self.publish_now();
        }
    }

    /// Publishes what was gathered, if anything.
    pub fn publish(&mut self) {
        if self.processed > 0 {
            self.publish_now();
        }
    }

    /// Histograms first, then the count: whoever sees `processed` reach N also finds N
    /// observations.
    fn publish_now(&mut self) {
        self.metrics.end_to_end_latency.add(&mut self.latency);
        self.metrics.processing_time.add(&mut self.processing);
        self.metrics.processed.inc_by(self.processed);
        self.processed = 0;
        self.published = Tick::now();
        self.published_unix_micros = unix_micros_now();
    }
}

impl Drop for Tally {
    fn drop(&mut self) {
        self.publish();
    }
}
