//! librdkafka statistics (`statistics.interval.ms`) turned into gauges: broker connection
//! state, and for a consumer whether it joined its group; and the consumer lag its engine
//! computes. The callback runs inside librdkafka's poll, so it only stores numbers (rdkafka's
//! default handler would log the whole struct at INFO each time).
//!
//! Lag is not taken from statistics: their end offsets come from fetch responses only, so a
//! partition that is not fetched (paused while a record waits for a retry) would show a lag
//! frozen at its last value. The consumer engine measures it instead (see `consume::watch`).

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rdkafka::Statistics;

use super::health::Health;

/// A partition of a topic the consumer reads. The topic is `source_topic`: every series of a
/// role carries `topic` already, the topics it was configured with (one name, a list or a
/// pattern), and two partitions 0 of two topics must not be one series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct PartitionLabel {
    pub source_topic: String,
    pub partition: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct BrokerLabel {
    pub broker: String,
}

/// Gauges fed by librdkafka statistics.
#[derive(Debug, Clone, Default)]
pub struct ClientStats {
    /// Records not yet processed in each assigned partition: from the next one to process to
    /// the end of the partition.
    pub consumer_lag: Family<PartitionLabel, Gauge>,
    /// 1 while the connection to a broker is up, else 0.
    pub broker_connected: Family<BrokerLabel, Gauge>,
    /// Sum of `consumer_lag` over assigned partitions when last measured, and when that was
    /// (a loop that stopped measuring must not have its last figure pass for a current one).
    total_lag: Arc<AtomicI64>,
    lag_at: Arc<Mutex<Option<Instant>>>,
    /// The consumer's group membership is up (statistics say the group is joined).
    joined: Arc<AtomicBool>,
    /// When set, readiness follows "connected to at least one broker" (the producer's
    /// readiness; a consumer's follows its assignment instead).
    readiness: Option<Arc<Health>>,
}

impl ClientStats {
    /// Stats whose broker connection state also drives `health`'s readiness.
    pub fn with_readiness(health: Arc<Health>) -> Self {
        ClientStats {
            readiness: Some(health),
            ..ClientStats::default()
        }
    }

    pub fn register_broker_state(&self, registry: &mut Registry) {
        registry.register(
            "broker_connected",
            "1 while the connection to the broker is up (librdkafka statistics)",
            self.broker_connected.clone(),
        );
    }

    pub fn register_lag(&self, registry: &mut Registry) {
        registry.register(
            "consumer_lag",
            "Records not yet processed: from the next record to process (the commit point) to the end of the partition",
            self.consumer_lag.clone(),
        );
    }

    /// Drops the lag series of partitions (topic, partition) this consumer no longer holds.
    pub fn forget_partitions(&self, partitions: &[(&str, i32)]) {
        for &(topic, partition) in partitions {
            self.consumer_lag.remove(&PartitionLabel {
                source_topic: topic.to_owned(),
                partition,
            });
        }
    }

    /// The lag of `partition` of `topic`.
    pub fn set_lag(&self, topic: &str, partition: i32, lag: i64) {
        self.consumer_lag
            .get_or_create(&PartitionLabel {
                source_topic: topic.to_owned(),
                partition,
            })
            .set(lag);
    }

    /// The total lag over assigned partitions, measured now; `None` when some partition's
    /// could not be (brokers unreachable, nothing known yet).
    pub fn set_total_lag(&self, total: Option<i64>) {
        let mut at = self.lag_at.lock().unwrap_or_else(|p| p.into_inner());
        match total {
            Some(total) => {
                self.total_lag.store(total, Ordering::Relaxed);
                *at = Some(Instant::now());
            }
            None => *at = None,
        }
    }

    /// Whether the consumer has joined its group, by statistics.
    pub fn joined(&self) -> bool {
        self.joined.load(Ordering::Relaxed)
    }

    /// Total lag over assigned partitions, if measured within `fresh`; `None` before the
    /// first measure or once measuring stopped.
    pub fn total_lag(&self, fresh: Duration) -> Option<i64> {
        let at = *self.lag_at.lock().unwrap_or_else(|p| p.into_inner());
        at.filter(|at| at.elapsed() <= fresh)
            .map(|_| self.total_lag.load(Ordering::Relaxed))
    }

    /// Takes one statistics report.
    pub fn observe(&self, statistics: &Statistics) {
        let mut any_up = false;
        for broker in statistics.brokers.values() {
            // Bootstrap entries (nodeid -1) are not brokers of the cluster.
            if broker.nodeid < 0 {
                continue;
            }
            let up = broker.state == "UP";
            any_up |= up;
            self.broker_connected
                .get_or_create(&BrokerLabel {
                    broker: broker.nodename.clone(),
                })
                .set(i64::from(up));
        }
        if let Some(health) = &self.readiness {
            health.set_ready(any_up);
        }

        if let Some(group) = &statistics.cgrp {
            if group.state == "up" && group.join_state == "steady" {
                self.joined.store(true, Ordering::Relaxed);
            }
        }
    }
}
