//! librdkafka's embedded mock cluster, for the demo, the benchmarks and the tests.
//!
//! The mock cluster speaks the Kafka protocol on loopback ports from inside this process:
//! several brokers, replication, consumer groups, and fault injection, with no broker to
//! install. It is created through the `test.mock.num.brokers` client property, which keeps
//! the cluster's handle reachable (`rd_kafka_handle_mock_cluster`): the raw librdkafka mock
//! API then offers what rust-rdkafka does not wrap, such as the consumer group's initial
//! rebalance delay. Holding no raw pointer, this type is `Send` and `Sync`.

use std::time::Duration;

use rdkafka::bindings as rdsys;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, DefaultProducerContext, Producer};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

use crate::config::{self, ConfigError, LoadRequest, Role, Settings};

/// Consumer group timing for the mock cluster. Its coordinator waits `session.timeout.ms`
/// minus one second for members to rejoin after a rebalance (a real broker stops waiting once
/// all members rejoined), and the seed's default of 45 s would make any rebalance, such as the
/// one two members joining at the same instant can cause, stall for that long.
const MOCK_GROUP_TIMING: [(&str, &str); 2] = [
    ("kafka.session.timeout.ms", "6000"),
    ("kafka.heartbeat.interval.ms", "500"),
];

/// The settings of `role` pointed at the mock cluster at `bootstrap`, through the real
/// configuration loader. Lowest first: the mock's group timing, then `request` (its file,
/// environment and `--set` overrides, which may change that timing), then the bootstrap
/// servers, then `extra` (`key`, `value`) overrides as `--set` would give them.
pub fn mock_settings<K, V>(
    bootstrap: &str,
    role: Role,
    request: &LoadRequest,
    extra: impl IntoIterator<Item = (K, V)>,
) -> Result<Settings, ConfigError>
where
    K: Into<String>,
    V: Into<String>,
{
    let mut overrides: Vec<(String, String)> = MOCK_GROUP_TIMING
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect();
    overrides.extend(request.overrides.iter().cloned());
    overrides.push(("kafka.bootstrap.servers".to_owned(), bootstrap.to_owned()));
    overrides.extend(extra.into_iter().map(|(k, v)| (k.into(), v.into())));
    let request = LoadRequest {
        role: Some(role),
        overrides,
        role_required: true,
        ..request.clone()
    };
    Ok(config::load(&request)?.settings)
}

/// A running mock cluster; it stops when dropped.
pub struct EmbeddedCluster {
    /// The client that owns the cluster (the cluster lives as long as this handle).
    owner: BaseProducer<DefaultProducerContext>,
    bootstrap_servers: String,
}

impl EmbeddedCluster {
    /// Starts `brokers` mock brokers on loopback.
    pub fn start(brokers: u32) -> KafkaResult<Self> {
        let owner: BaseProducer<DefaultProducerContext> = ClientConfig::new()
            .set("test.mock.num.brokers", brokers.to_string())
            // The owning client is never used to produce; keep it quiet.
            .set("log_level", "3")
            .create()?;
        let bootstrap_servers = owner
            .client()
            .mock_cluster()
            .ok_or(KafkaError::MockCluster(
                rdkafka::types::RDKafkaErrorCode::Fail,
            ))?
            .bootstrap_servers();
        Ok(EmbeddedCluster {
            owner,
            bootstrap_servers,
        })
    }

    /// The brokers' addresses, for `bootstrap.servers`.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap_servers
    }

    /// The rust-rdkafka view of the cluster, for its fault-injection helpers.
    pub fn mock(&self) -> MockCluster<'_, DefaultProducerContext> {
        self.owner
            .client()
            .mock_cluster()
            .expect("the owning client was created with test.mock.num.brokers")
    }

    fn raw(&self) -> *mut rdsys::rd_kafka_mock_cluster_t {
        // SAFETY: the native handle is alive as long as `owner`, which `self` holds.
        unsafe { rdsys::rd_kafka_handle_mock_cluster(self.owner.client().native_ptr()) }
    }

    /// Creates a topic (the mock does not implement the CreateTopics API).
    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i32,
    ) -> KafkaResult<()> {
        self.mock()
            .create_topic(name, partitions, replication_factor)
    }

    /// How long the group coordinator waits for more members before the first rebalance.
    /// The mock's default is 3 s, as a real broker's `group.initial.rebalance.delay.ms`.
    pub fn set_initial_rebalance_delay(&self, delay: Duration) {
        // SAFETY: `raw()` is a live cluster handle.
        unsafe {
            rdsys::rd_kafka_mock_group_initial_rebalance_delay_ms(
                self.raw(),
                delay.as_millis() as i32,
            );
        }
    }

    /// Makes the next `errors.len()` requests of `api` fail with these errors, in order.
    pub fn fail_requests(&self, api: RDKafkaApiKey, errors: &[RDKafkaRespErr]) {
        self.mock().request_errors(api, errors);
    }

    /// Takes a broker off the network (connections drop, new ones are refused).
    pub fn broker_down(&self, broker_id: i32) -> KafkaResult<()> {
        self.mock().broker_down(broker_id)
    }

    pub fn broker_up(&self, broker_id: i32) -> KafkaResult<()> {
        self.mock().broker_up(broker_id)
    }

    /// Moves a partition's leadership (the mock does not elect a leader by itself).
    pub fn partition_leader(&self, topic: &str, partition: i32, broker_id: i32) -> KafkaResult<()> {
        self.mock()
            .partition_leader(topic, partition, Some(broker_id))
    }
}
