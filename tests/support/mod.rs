//! Shared test harness: an embedded mock cluster with fast group timing and the roles run on
//! it, raw producers for hand-made records, readiness waits and reconciliation helpers; where a
//! group's offsets stand is in [`offsets`].
#![allow(dead_code)] // each test binary uses a different subset

pub mod deploy;
pub mod http_server;
pub mod kafka;
pub mod kills;
pub mod offsets;
pub mod postgres;
pub mod process;
pub mod scenario;
pub mod tls;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use kafkad::cluster::EmbeddedCluster;
use kafkad::config::{LoadRequest, Role, Settings};
use kafkad::reconcile::MessageKey;
use kafkad::roles::{
    self, producer, ConsumerConfig, ConsumerReport, ProducerConfig, ProducerReport, RoleError,
};
use kafkad::shutdown::{self, ShutdownTrigger};
use kafkad::sink::{MemorySink, Sink};
use kafkad::telemetry::metrics::{ConsumerMetrics, ProducerMetrics};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::OwnedMessage;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::task::JoinHandle;

pub const TOPIC: &str = "andrew-topic";

/// How long a role may take to end once it should: a producer its count, a consumer its stop.
const ROLE_END_TIMEOUT: Duration = Duration::from_secs(60);

/// A mock cluster with the seed's topic and its dead-letter topic.
pub struct MockTopology {
    pub cluster: EmbeddedCluster,
    pub bootstrap: String,
}

impl MockTopology {
    /// 3 brokers, `andrew-topic` with `partitions` partitions (RF 2), `andrew-topic.dlq`.
    pub fn start(partitions: i32) -> Self {
        let cluster = EmbeddedCluster::start(3).expect("mock cluster starts");
        cluster.create_topic(TOPIC, partitions, 2).expect("topic");
        cluster
            .create_topic(&format!("{TOPIC}.dlq"), 1, 2)
            .expect("dlq topic");
        cluster.set_initial_rebalance_delay(Duration::from_millis(100));
        let bootstrap = cluster.bootstrap_servers().to_owned();
        MockTopology { cluster, bootstrap }
    }

    /// The role's settings through the real configuration loader, pointed at the mock,
    /// with `extra` (`key`, `value`) overrides as `--set` would give them.
    pub fn settings(&self, role: Role, extra: &[(&str, &str)]) -> Settings {
        kafkad::cluster::mock_settings(
            &self.bootstrap,
            role,
            &LoadRequest::default(),
            extra.iter().copied(),
        )
        .unwrap_or_else(|e| panic!("test settings are valid: {e}"))
    }

    /// A producer role sending `count` messages (0: until stopped) as `producer_id`, as fast
    /// as it can.
    pub fn producer(&self, producer_id: &str, count: u64) -> ProducerRun {
        self.producer_with(producer_id, count, &[])
    }

    /// As [`producer`](Self::producer), `rate` messages a second.
    pub fn producer_at(&self, producer_id: &str, count: u64, rate: u32) -> ProducerRun {
        self.producer_with(producer_id, count, &[("producer.rate", &rate.to_string())])
    }

    /// As [`producer`](Self::producer), with `extra` settings on top.
    pub fn producer_with(
        &self,
        producer_id: &str,
        count: u64,
        extra: &[(&str, &str)],
    ) -> ProducerRun {
        let count = count.to_string();
        let mut all = vec![
            ("producer.count", count.as_str()),
            ("producer.producer_id", producer_id),
        ];
        all.extend_from_slice(extra);
        spawn_producer(self.settings(Role::Producer, &all))
    }

    /// A consumer role processing into `sink`, in the role's seed group unless `extra` (settings
    /// on top of the mock's) names another.
    pub fn consumer(
        &self,
        role: Role,
        sink: impl Sink + 'static,
        extra: &[(&str, &str)],
    ) -> ConsumerRun {
        spawn_consumer(role, self.settings(role, extra), Box::new(sink))
    }

    /// A single consumer (group `single-message-group`); see [`consumer`](Self::consumer).
    pub fn single(&self, sink: impl Sink + 'static, extra: &[(&str, &str)]) -> ConsumerRun {
        self.consumer(Role::Single, sink, extra)
    }

    /// A batch consumer (group `batch-message-group`); see [`consumer`](Self::consumer).
    pub fn batch(&self, sink: impl Sink + 'static, extra: &[(&str, &str)]) -> ConsumerRun {
        self.consumer(Role::Batch, sink, extra)
    }
}

/// A producer role running in the background.
pub struct ProducerRun {
    pub metrics: ProducerMetrics,
    pub stop: ShutdownTrigger,
    pub task: JoinHandle<Result<ProducerReport, RoleError>>,
}

impl ProducerRun {
    /// Waits (up to 60 s) for a producer with a count, or one told to stop, to finish; its
    /// report, every accepted message delivered.
    pub async fn delivered(self) -> ProducerReport {
        tokio::time::timeout(ROLE_END_TIMEOUT, self.task)
            .await
            .expect("the producer finishes within 60 s")
            .expect("producer task did not panic")
            .expect("every accepted message is delivered")
    }
}

pub fn spawn_producer(settings: Settings) -> ProducerRun {
    let (stop, shutdown) = shutdown::channel();
    let metrics = ProducerMetrics::default();
    let task = tokio::spawn(producer::run(
        ProducerConfig::new(&settings),
        metrics.clone(),
        shutdown,
    ));
    ProducerRun {
        metrics,
        stop,
        task,
    }
}

/// A consumer role running in the background.
pub struct ConsumerRun {
    pub metrics: ConsumerMetrics,
    pub stop: ShutdownTrigger,
    pub task: JoinHandle<Result<ConsumerReport, RoleError>>,
    /// Stops the role when the run is dropped, also when a test fails: its blocking thread
    /// would otherwise keep the test runtime from shutting down, and a failure would hang.
    _stop_on_drop: StopOnDrop,
}

/// Fires a role's shutdown when dropped.
pub struct StopOnDrop(pub ShutdownTrigger);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.fire();
    }
}

impl ConsumerRun {
    /// Stops the role gracefully and returns its outcome.
    pub async fn stop(self) -> Result<ConsumerReport, RoleError> {
        self.stop.fire();
        self.ended().await
    }

    /// Waits (up to 60 s) for the role to end, by itself when nothing stopped it (a failure
    /// does); its outcome.
    pub async fn ended(self) -> Result<ConsumerReport, RoleError> {
        tokio::time::timeout(ROLE_END_TIMEOUT, self.task)
            .await
            .expect("consumer stops within 60 s")
            .expect("consumer task did not panic")
    }
}

pub fn spawn_consumer(role: Role, settings: Settings, sink: Box<dyn Sink>) -> ConsumerRun {
    let (stop, shutdown) = shutdown::channel();
    let metrics = ConsumerMetrics::default();
    let role = role.consumer().expect("a consumer role");
    let task = tokio::spawn(roles::run_consumer(
        ConsumerConfig::new(&settings, role),
        sink,
        metrics.clone(),
        shutdown,
    ));
    ConsumerRun {
        metrics,
        _stop_on_drop: StopOnDrop(stop.clone()),
        stop,
        task,
    }
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Polls `condition` every 50 ms until it holds; panics naming `what` after `timeout`.
/// Tests wait on readiness like this, never on fixed sleeps.
pub async fn wait_until(timeout: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The (producer_id, message_id) keys a producer report says were delivered.
pub fn delivered_keys(reports: &[&ProducerReport]) -> HashSet<MessageKey> {
    reports
        .iter()
        .flat_map(|r| r.delivered_ids().map(|id| (r.producer_id.clone(), id)))
        .collect()
}

/// Keys a memory sink processed, duplicates included.
pub fn processed_keys(sink: &MemorySink) -> Vec<MessageKey> {
    sink.lines()
        .into_iter()
        .map(|l| (l.producer_id, l.message_id))
        .collect()
}

/// Keys of the messages in sink output, duplicates included: each text is one JSON message
/// (an http sink's single post, a command sink's line) or an array of them (an http sink's
/// batch post).
pub fn sent_keys(texts: &[Vec<u8>]) -> Vec<MessageKey> {
    let mut keys = Vec::new();
    for text in texts {
        let value: serde_json::Value = serde_json::from_slice(text).expect("JSON sink output");
        let messages = match value {
            serde_json::Value::Array(items) => items,
            object => vec![object],
        };
        for m in messages {
            keys.push((
                m["producer_id"].as_str().expect("producer_id").to_owned(),
                m["message_id"].as_i64().expect("message_id"),
            ));
        }
    }
    keys
}

/// One hand-made record for [`produce_raw`].
#[derive(Debug, Clone, Default)]
pub struct RawRecord {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub partition: Option<i32>,
}

impl RawRecord {
    pub fn value(value: impl Into<Vec<u8>>) -> Self {
        RawRecord {
            value: Some(value.into()),
            ..RawRecord::default()
        }
    }
}

/// Produces records exactly as given (bypassing the codec), in order, each acknowledged.
pub async fn produce_raw(bootstrap: &str, topic: &str, records: &[RawRecord]) {
    produce_raw_with(bootstrap, topic, records, &[]).await
}

/// As [`produce_raw`], with extra producer properties (e.g. `compression.type`).
pub async fn produce_raw_with(
    bootstrap: &str,
    topic: &str,
    records: &[RawRecord],
    properties: &[(&str, &str)],
) {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("message.max.bytes", "20000000");
    for (name, value) in properties {
        config.set(*name, *value);
    }
    let producer: FutureProducer = config.create().expect("raw producer");
    for record in records {
        let mut headers = OwnedHeaders::new();
        for (key, value) in &record.headers {
            headers = headers.insert(Header {
                key: key.as_str(),
                value: Some(value.as_slice()),
            });
        }
        let mut future = FutureRecord::<Vec<u8>, Vec<u8>>::to(topic).headers(headers);
        if let Some(key) = &record.key {
            future = future.key(key);
        }
        if let Some(value) = &record.value {
            future = future.payload(value);
        }
        if let Some(partition) = record.partition {
            future = future.partition(partition);
        }
        producer
            .send(future, Duration::from_secs(10))
            .await
            .unwrap_or_else(|(e, _)| panic!("raw produce failed: {e}"));
    }
}

/// The value of `record`'s header `key`, as text.
pub fn header_text(record: &OwnedMessage, key: &str) -> Option<String> {
    use rdkafka::message::Headers;
    record
        .headers()?
        .iter()
        .find(|h| h.key == key)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// An encoded, valid message.
pub fn message(producer_id: &str, id: i64) -> Vec<u8> {
    kafkad::message::KafkaMessage::new(id, format!("message {id}"), producer_id.to_owned()).encode()
}

/// `GET http://{addr}{path}`: the status code and body (a raw HTTP/1.1 request, so the tests
/// need no HTTP client crate).
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

/// The value of one Prometheus sample line `name{labels} value` whose labels include all of
/// `labels` (`key="value"` pairs).
pub fn sample(metrics: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let matches = series == name
            || (series.starts_with(&format!("{name}{{"))
                && labels
                    .iter()
                    .all(|(k, v)| series.contains(&format!("{k}=\"{v}\""))));
        if matches && (labels.is_empty() || series.contains('{')) {
            value.parse().ok()
        } else {
            None
        }
    })
}

/// Runs a blocking client call off the async workers.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("no panic")
}

pub fn plain_consumer(bootstrap: &str, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("plain consumer")
}

/// Every record of the topic up to its current high watermarks, read with a plain consumer.
pub fn read_topic(bootstrap: &str, topic: &str, partitions: i32) -> Vec<OwnedMessage> {
    let watermarks =
        offsets::OffsetReader::watermarks_only(bootstrap).watermarks(topic, partitions);
    let consumer = plain_consumer(bootstrap, "kafkad-test-readback");
    let mut list = TopicPartitionList::new();
    let mut end = HashMap::new();
    for (partition, (low, high)) in (0..).zip(watermarks) {
        if high > low {
            list.add_partition_offset(topic, partition, Offset::Beginning)
                .expect("partition");
            end.insert(partition, high);
        }
    }
    consumer.assign(&list).expect("assign");
    let mut records = Vec::new();
    let mut open: HashSet<i32> = end.keys().copied().collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !open.is_empty() {
        assert!(Instant::now() < deadline, "reading {topic} back timed out");
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(record)) => {
                let high = end[&record.partition()];
                if record.offset() < high {
                    records.push(record.detach());
                }
                if record.offset() + 1 >= high {
                    open.remove(&record.partition());
                }
            }
            Some(Err(error)) => eprintln!("read-back: {error}"),
            None => {}
        }
    }
    records
}
