//! librdkafka statistics (`statistics.interval.ms`) turned into gauges: consumer lag per
//! partition and broker connection state. The callback runs inside librdkafka's poll, so it
//! only stores numbers (rdkafka's default handler would log the whole struct at INFO each time).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rdkafka::Statistics;

use super::health::Health;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct PartitionLabel {
    pub partition: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct BrokerLabel {
    pub broker: String,
}

/// Gauges fed by librdkafka statistics.
#[derive(Debug, Clone, Default)]
pub struct ClientStats {
    /// Messages between the committed offset and the end of each assigned partition.
    pub consumer_lag: Family<PartitionLabel, Gauge>,
    /// 1 while the connection to a broker is up, else 0.
    pub broker_connected: Family<BrokerLabel, Gauge>,
    /// Sum of `consumer_lag` over assigned partitions at the last statistics.
    total_lag: Arc<AtomicI64>,
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
            "Messages from the committed offset to the end of the partition (librdkafka statistics)",
            self.consumer_lag.clone(),
        );
    }

    /// Total lag over assigned partitions, as of the last statistics (0 before any).
    pub fn total_lag(&self) -> i64 {
        self.total_lag.load(Ordering::Relaxed)
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

        let mut total = 0;
        for topic in statistics.topics.values() {
            for partition in topic.partitions.values() {
                // Partition -1 is librdkafka's internal UA partition; only partitions being
                // fetched have a meaningful lag, and -1 means "unknown yet".
                if partition.partition < 0
                    || partition.fetch_state != "active"
                    || partition.consumer_lag < 0
                {
                    continue;
                }
                total += partition.consumer_lag;
                self.consumer_lag
                    .get_or_create(&PartitionLabel {
                        partition: partition.partition,
                    })
                    .set(partition.consumer_lag);
            }
        }
        self.total_lag.store(total, Ordering::Relaxed);
    }
}
