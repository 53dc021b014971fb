//! A Prometheus histogram that a consumer loop can also feed in bulk.
//!
//! It is encoded exactly as `prometheus_client`'s own histogram (same type, buckets, `+Inf`,
//! sum and count), and [`Histogram::observe`] works the same: one lock per observation. What it
//! adds: a loop that observes once per message can gather its observations in a
//! [`LocalHistogram`] (plain numbers, no lock, no atomic) and publish them with
//! [`Histogram::add`], one lock for many; and [`Histogram::observe_all`] takes a batch's values
//! under one lock. Per message, the shared histogram's lock was one of the largest costs the
//! consumers added to decoding.

use std::iter;
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// A histogram with fixed bucket upper bounds (and a last, unbounded one).
#[derive(Debug, Clone)]
pub struct Histogram {
    upper_bounds: Arc<[f64]>,
    totals: Arc<Mutex<Totals>>,
}

/// Observations gathered by one thread, not yet published.
#[derive(Debug, Clone)]
pub struct LocalHistogram {
    upper_bounds: Arc<[f64]>,
    totals: Totals,
}

#[derive(Debug, Clone, Default)]
struct Totals {
    sum: f64,
    count: u64,
    /// Observations per bucket (not cumulative), one per upper bound.
    buckets: Vec<u64>,
}

impl Totals {
    fn new(buckets: usize) -> Self {
        Totals {
            sum: 0.0,
            count: 0,
            buckets: vec![0; buckets],
        }
    }

    fn record(&mut self, bucket: usize, value: f64) {
        self.sum += value;
        self.count += 1;
        self.buckets[bucket] += 1;
    }
}

/// The bucket of `value`: the first whose upper bound is at least `value` (the last, unbounded
/// one for anything above every bound, NaN included).
fn bucket_of(upper_bounds: &[f64], value: f64) -> usize {
    // Bounds ascend: a binary search (latencies of a backlog sit in the upper buckets, where
    // a linear scan compared a dozen bounds).
    upper_bounds
        .partition_point(|bound| *bound < value)
        .min(upper_bounds.len() - 1)
}

impl Histogram {
    /// A histogram with these bucket upper bounds, plus an unbounded last bucket.
    pub fn new(upper_bounds: impl IntoIterator<Item = f64>) -> Self {
        let upper_bounds: Arc<[f64]> = upper_bounds
            .into_iter()
            .chain(iter::once(f64::MAX))
            .collect();
        Histogram {
            totals: Arc::new(Mutex::new(Totals::new(upper_bounds.len()))),
            upper_bounds,
        }
    }

    fn totals(&self) -> MutexGuard<'_, Totals> {
        // Plain numbers: a panic elsewhere while holding the lock leaves them usable.
        self.totals.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn observe(&self, value: f64) {
        let bucket = bucket_of(&self.upper_bounds, value);
        self.totals().record(bucket, value);
    }

    /// Observes every value, under one lock.
    pub fn observe_all(&self, values: impl IntoIterator<Item = f64>) {
        let mut totals = self.totals();
        for value in values {
            totals.record(bucket_of(&self.upper_bounds, value), value);
        }
    }

    /// An empty local histogram with this one's buckets.
    pub fn local(&self) -> LocalHistogram {
        LocalHistogram {
            upper_bounds: Arc::clone(&self.upper_bounds),
            totals: Totals::new(self.upper_bounds.len()),
        }
    }

    /// Publishes `local`'s observations here, under one lock, and empties it.
    pub fn add(&self, local: &mut LocalHistogram) {
        if local.totals.count == 0 {
            return;
        }
        let mut totals = self.totals();
        totals.sum += local.totals.sum;
        totals.count += local.totals.count;
        for (total, gathered) in totals.buckets.iter_mut().zip(&local.totals.buckets) {
            *total += gathered;
        }
        drop(totals);
        local.clear();
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.totals().count
    }

    /// Sum of the observations so far.
    pub fn sum(&self) -> f64 {
        self.totals().sum
    }
}

impl LocalHistogram {
    pub fn observe(&mut self, value: f64) {
        let bucket = bucket_of(&self.upper_bounds, value);
        self.totals.record(bucket, value);
    }

    /// Observations gathered since the last publish.
    pub fn count(&self) -> u64 {
        self.totals.count
    }

    fn clear(&mut self) {
        self.totals.sum = 0.0;
        self.totals.count = 0;
        self.totals.buckets.iter_mut().for_each(|b| *b = 0);
    }
}

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let (sum, count, buckets) = {
            let totals = self.totals();
            let buckets: Vec<(f64, u64)> = self
                .upper_bounds
                .iter()
                .copied()
                .zip(totals.buckets.iter().copied())
                .collect();
            (totals.sum, totals.count, buckets)
        };
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text::encode;
    use prometheus_client::metrics::histogram::Histogram as Reference;
    use prometheus_client::registry::Registry;

    use super::*;

    fn text(metric: impl prometheus_client::registry::Metric) -> String {
        let mut registry = Registry::default();
        registry.register("h", "help", metric);
        let mut out = String::new();
        encode(&mut out, &registry).expect("encodes");
        out
    }

    #[test]
    fn encodes_as_prometheus_clients_histogram() {
        let bounds = || [0.5, 1.0, 2.0];
        let ours = Histogram::new(bounds());
        let reference = Reference::new(bounds());
        let values = [0.1, 0.5, 0.7, 1.5, 2.0, 3.0, 100.0];
        for value in values {
            reference.observe(value);
        }
        // The same observations, each way in.
        ours.observe(values[0]);
        ours.observe_all(values[1..3].iter().copied());
        let mut local = ours.local();
        values[3..].iter().for_each(|v| local.observe(*v));
        assert_eq!(local.count(), 4);
        ours.add(&mut local);
        assert_eq!(local.count(), 0, "publishing empties the local histogram");
        ours.add(&mut local);
        assert_eq!(text(ours.clone()), text(reference));
        assert_eq!(ours.count(), values.len() as u64);
        assert!((ours.sum() - values.iter().sum::<f64>()).abs() < 1e-9);
    }
}
