//! Where a group stands and where a topic ends, read from the cluster (the mock or Apache
//! Kafka): committed offsets of a group, low and high watermarks of a topic's partitions, and
//! a wait until a group has committed what a test expects.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaResult;
use rdkafka::{Offset, TopicPartitionList};

use super::{blocking, plain_consumer, TOPIC};

/// How long one read may take by default.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The group of a reader that only reads watermarks: which group a client names does not
/// change what the brokers answer about a topic's ends.
const WATERMARK_GROUP: &str = "kafkad-test-watermarks";

/// One client that reads offsets as `group`, for as many reads as a test makes (a sampler
/// reads every 100 ms; a fresh client each time would spend most of it connecting). Cheap to
/// clone, to carry into a blocking task.
#[derive(Clone)]
pub struct OffsetReader {
    client: Arc<BaseConsumer>,
    timeout: Duration,
}

impl OffsetReader {
    /// A reader of `group`'s committed offsets (and of any topic's watermarks).
    pub fn new(bootstrap: &str, group: &str) -> Self {
        OffsetReader {
            client: Arc::new(plain_consumer(bootstrap, group)),
            timeout: READ_TIMEOUT,
        }
    }

    /// A reader of watermarks only.
    pub fn watermarks_only(bootstrap: &str) -> Self {
        Self::new(bootstrap, WATERMARK_GROUP)
    }

    /// Each read gives up after `timeout` instead of the default 10 s.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The committed offset of each partition `0..partitions` of `topic`, indexed by
    /// partition; `None` where nothing is committed.
    pub fn try_committed(&self, topic: &str, partitions: i32) -> KafkaResult<Vec<Option<i64>>> {
        let mut list = TopicPartitionList::new();
        for partition in 0..partitions {
            list.add_partition(topic, partition);
        }
        let committed = self.client.committed_offsets(list, self.timeout)?;
        let mut offsets = vec![None; partitions as usize];
        for element in committed.elements() {
            if let Offset::Offset(n) = element.offset() {
                offsets[element.partition() as usize] = Some(n);
            }
        }
        Ok(offsets)
    }

    /// As [`try_committed`](Self::try_committed); a failed read fails the test.
    pub fn committed(&self, topic: &str, partitions: i32) -> Vec<Option<i64>> {
        self.try_committed(topic, partitions)
            .expect("committed offsets")
    }

    /// The low and high watermark of partition `partition` of `topic`.
    pub fn try_watermarks(&self, topic: &str, partition: i32) -> KafkaResult<(i64, i64)> {
        self.client.fetch_watermarks(topic, partition, self.timeout)
    }

    /// The low and high watermark of each partition `0..partitions` of `topic`; a failed read
    /// fails the test.
    pub fn watermarks(&self, topic: &str, partitions: i32) -> Vec<(i64, i64)> {
        (0..partitions)
            .map(|p| self.try_watermarks(topic, p).expect("watermarks"))
            .collect()
    }

    /// The high watermark (the offset the next record will get) of each partition
    /// `0..partitions` of `topic`.
    pub fn ends(&self, topic: &str, partitions: i32) -> Vec<i64> {
        self.watermarks(topic, partitions)
            .into_iter()
            .map(|(_, high)| high)
            .collect()
    }

    /// Reads the group's committed offsets on `topic` every 200 ms until they are `expected`
    /// (one entry a partition) or `timeout` passed; the last read either way, for the caller
    /// to assert on when it suits it.
    pub async fn committed_within(
        &self,
        topic: &str,
        expected: &[Option<i64>],
        timeout: Duration,
    ) -> Vec<Option<i64>> {
        let partitions = expected.len() as i32;
        let deadline = Instant::now() + timeout;
        loop {
            let (reader, topic_owned) = (self.clone(), topic.to_owned());
            let now = blocking(move || reader.committed(&topic_owned, partitions)).await;
            if now == expected || Instant::now() > deadline {
                return now;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// `group`'s committed offset of each partition `0..partitions` of `topic` (`None` where
/// nothing is committed), read once with a client of its own.
pub fn committed(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> Vec<Option<i64>> {
    OffsetReader::new(bootstrap, group).committed(topic, partitions)
}

/// The high watermark of each partition `0..partitions` of `topic`, read once.
pub fn ends(bootstrap: &str, topic: &str, partitions: i32) -> Vec<i64> {
    OffsetReader::watermarks_only(bootstrap).ends(topic, partitions)
}

/// Waits (up to 60 s) until `group` has committed exactly `expected` on every partition of
/// the test topic (`expected.len()` partitions).
pub async fn wait_committed(bootstrap: &str, group: &str, expected: Vec<Option<i64>>) {
    let now = OffsetReader::new(bootstrap, group)
        .committed_within(TOPIC, &expected, Duration::from_secs(60))
        .await;
    assert!(
        now == expected,
        "{group}: committed {now:?}, expected {expected:?}"
    );
}
