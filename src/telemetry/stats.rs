//! librdkafka statistics (`statistics.interval.ms`) turned into gauges: consumer lag per
//! partition and broker connection state. The callback runs inside librdkafka's poll, so it
//! only stores numbers (rdkafka's default handler would log the whole struct at INFO each time).

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    /// Records not yet processed in each assigned partition: from the next one to process
    /// (see [`unprocessed`]) to the end of the partition.
    pub consumer_lag: Family<PartitionLabel, Gauge>,
    /// 1 while the connection to a broker is up, else 0.
    pub broker_connected: Family<BrokerLabel, Gauge>,
    /// Sum of `consumer_lag` over assigned partitions at the last statistics, and when those
    /// came (statistics are served by the consumer's poll: a loop that stopped polling stops
    /// them, and its last figure must not pass for a current one).
    total_lag: Arc<AtomicI64>,
    lag_at: Arc<Mutex<Option<Instant>>>,
    /// The consumer starts a partition without committed offsets at its beginning
    /// (`auto.offset.reset = earliest`): then everything from the low watermark is unprocessed.
    from_earliest: Arc<AtomicBool>,
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

    /// Drops the lag series of partitions this consumer no longer holds.
    pub fn forget_partitions(&self, partitions: &[i32]) {
        for &partition in partitions {
            self.consumer_lag.remove(&PartitionLabel { partition });
        }
    }

    /// Whether a partition without committed offsets starts at its beginning.
    pub fn set_from_earliest(&self, from_earliest: bool) {
        self.from_earliest.store(from_earliest, Ordering::Relaxed);
    }

    /// Total lag over assigned partitions, if statistics came within `fresh`; `None` before
    /// the first statistics or once they stopped coming.
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

        let from_earliest = self.from_earliest.load(Ordering::Relaxed);
        let mut total = 0;
        let mut any = false;
        for topic in statistics.topics.values() {
            for partition in topic.partitions.values() {
                // Partition -1 is librdkafka's internal UA partition; only partitions being
                // fetched have a meaningful lag.
                if partition.partition < 0 || partition.fetch_state != "active" {
                    continue;
                }
                let Some(lag) = unprocessed(partition, from_earliest) else {
                    continue;
                };
                any = true;
                total += lag;
                self.consumer_lag
                    .get_or_create(&PartitionLabel {
                        partition: partition.partition,
                    })
                    .set(lag);
            }
        }
        if any || statistics.topics.is_empty() {
            self.total_lag.store(total, Ordering::Relaxed);
            *self.lag_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        }
    }
}

/// Records of a partition not yet processed: from the next one to process to the high
/// watermark. The next one to process is the offset kafkad stored after processing (both
/// roles store before they commit), else the group's committed offset, else, for a partition
/// the group never committed, its low watermark when the consumer starts from the earliest
/// record. librdkafka's own `consumer_lag` counts from the committed offset only and is -1
/// before the group's first commit, which made a consumer stuck on its first record report
/// no lag at all. `None` where the position is unknown.
fn unprocessed(partition: &rdkafka::statistics::Partition, from_earliest: bool) -> Option<i64> {
    if partition.hi_offset < 0 {
        return None;
    }
    let next = if partition.stored_offset >= 0 {
        partition.stored_offset
    } else if partition.committed_offset >= 0 {
        partition.committed_offset
    } else if from_earliest && partition.lo_offset >= 0 {
        partition.lo_offset
    } else {
        return None;
    };
    Some((partition.hi_offset - next).max(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(stored: i64, committed: i64, lo: i64, hi: i64) -> rdkafka::statistics::Partition {
        let mut p: rdkafka::statistics::Partition =
            serde_json::from_str(PARTITION_JSON).expect("statistics partition");
        p.stored_offset = stored;
        p.committed_offset = committed;
        p.lo_offset = lo;
        p.hi_offset = hi;
        p
    }

    const PARTITION_JSON: &str = r#"{"partition":0,"broker":1,"leader":1,"desired":true,
        "unknown":false,"msgq_cnt":0,"msgq_bytes":0,"xmit_msgq_cnt":0,"xmit_msgq_bytes":0,
        "fetchq_cnt":0,"fetchq_size":0,"fetch_state":"active","query_offset":-1001,
        "next_offset":0,"app_offset":-1001,"stored_offset":-1001,"committed_offset":-1001,
        "eof_offset":-1001,"lo_offset":0,"hi_offset":0,"ls_offset":0,"consumer_lag":-1,
        "consumer_lag_stored":-1,"txmsgs":0,"txbytes":0,"rxmsgs":0,"rxbytes":0,"msgs":0,
        "rx_ver_drops":0,"msgs_inflight":0,"next_ack_seq":0,"next_err_seq":0,"acked_msgid":0}"#;

    #[test]
    fn lag_counts_from_the_next_record_to_process() {
        // Stuck on the first record of a group that never committed: all six wait.
        assert_eq!(unprocessed(&partition(-1001, -1001, 0, 6), true), Some(6));
        // Stored after processing counts before the commit does.
        assert_eq!(unprocessed(&partition(4, 2, 0, 6), true), Some(2));
        assert_eq!(unprocessed(&partition(-1001, 3, 0, 6), false), Some(3));
        // Starting from the latest record with nothing committed: unknown, not zero.
        assert_eq!(unprocessed(&partition(-1001, -1001, 0, 6), false), None);
    }
}
