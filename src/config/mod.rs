//! Layered configuration.
//!
//! Lowest first: built-in defaults (the seed's settings for the role) < TOML file (`--config`)
//! < environment (`KAFKAD_*`) < command-line flags. Layering and merging are the `config`
//! crate's; kafkad's sources ([`sources`]) tag every value with where it came from, so each
//! error names the key and its file or variable, and `config print` shows the source of each
//! value.
//!
//! Values are parsed into types, not checked as strings: an address is a `SocketAddr`, the
//! sink an enum whose variants carry their own keys, a size that cannot be zero a `NonZero`.
//! Validation is strict: every struct denies unknown keys (a typo must not silently fall back
//! to a default), serde's complaint is mapped back to the key and the layer it came from, and
//! the `[kafka]` table goes through librdkafka's own `rd_kafka_conf_set` before anything
//! connects.

// Each job of loading a configuration in its own module: the defaults (`defaults`), the
// layers and where each value came from (`sources`), merging and deserializing (`load`),
// serde's complaints named with their key and layer (`error`), secrets (`secrets`, `redact`),
// what the types cannot check (`validate`, `topics`), and `config print` (`render`). The
// sections a role reads are `sections`, `sinks`, `input`, `topics`, `kafka` and `role`.
mod defaults;
mod error;
pub mod input;
pub mod kafka;
mod librdkafka_properties;
mod load;
mod redact;
mod render;
mod role;
mod secrets;
mod sections;
pub mod sinks;
pub mod sources;
pub mod topics;
mod validate;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::time::Duration;

use config::{Map, Value, ValueKind};
use serde::{Deserialize, Serialize};

use crate::payload::Format;

pub use input::{InputSource, LineKey};
pub use kafka::{KafkaProperties, KafkaValue, PropertyError, Scope};
pub use librdkafka_properties::LIBRDKAFKA_VERSION;
pub use sinks::{
    Delivery, KafkaSinkSettings, OnConflict, PostgresSettings, ResolvedSecret, SinkSettings,
};
use sources::{EnvSource, FlagSource, Origin, TomlSource};
pub use topics::{TopicPattern, TopicSelection};

pub use error::ConfigError;
use error::{deserialize_error, invalid, Refusal};
pub use load::{load, LoadRequest, LoadedConfig};
use load::{lookup, origin_of};
pub use redact::{KafkaTable, ResolvedHeaders, SinkHeaders};
pub use role::{ConsumerRole, Role, OWNED_PROPERTIES};
pub use sections::*;
use validate::kafka_topic_name;

/// The effective configuration of one process.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The role to run; `None` only for sub-commands that need no role (`topic ensure`).
    pub role: Option<Role>,
    /// The topic and, for `topic ensure`, its shape.
    pub topic: TopicSettings,
    /// How long a graceful shutdown may take before kafkad gives up and exits 1.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// Dead-letter topic for records that cannot be decoded. Unset: `<topic>.dlq`.
    /// `""`: no dead-letter topic (bad records are only logged and counted, then skipped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dlq_topic: Option<String>,
    /// Records with a larger value are dead-lettered without being parsed.
    pub max_record_bytes: NonZeroUsize,
    /// How often each role logs a one-line summary (rates, totals, lag).
    #[serde(with = "humantime_serde")]
    pub summary_interval: Duration,
    /// How long a role may go without progress before `/healthz` answers 503: the producer
    /// without handing a message over; a consumer with work out (a sink call, a dead-letter
    /// copy) and none of it finished, with its poll loop not turning, or with a partition that
    /// has records waiting and delivers none. The default, 2 minutes, is longer than any one
    /// step of healthy work (a commit or a dead-letter delivery is bounded by librdkafka's
    /// 60 s `socket.timeout.ms`).
    #[serde(with = "humantime_serde")]
    pub stall_timeout: Duration,
    /// librdkafka properties, verbatim.
    pub kafka: KafkaTable,
    pub producer: ProducerSettings,
    pub consumer: ConsumerSettings,
    pub batch: BatchSettings,
    pub sink: SinkSettings,
    pub retry: RetrySettings,
    pub http: HttpSettings,
    pub log: LogSettings,
    /// The schema registry of the `avro`, `protobuf` and `json_schema` formats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_registry: Option<SchemaRegistrySettings>,
    /// `[kafka]` with secret references resolved; filled in by [`load`].
    #[serde(skip)]
    pub resolved_kafka: KafkaProperties,
    /// The http sink's `headers` with secret references resolved; filled in by [`load`].
    #[serde(skip)]
    pub resolved_sink_headers: ResolvedHeaders,
    /// The postgres sink's `password` with a secret reference resolved; filled in by [`load`].
    #[serde(skip)]
    pub resolved_sink_password: ResolvedSecret,
    /// The kafka sink's `[sink.kafka]` with secret references resolved; filled in by [`load`].
    #[serde(skip)]
    pub resolved_sink_kafka: KafkaProperties,
}

impl Settings {
    /// What every role shares and has no section struct of its own: the top-level keys, the
    /// `[kafka]` properties of every client, and the sink (`log`).
    const DEFAULTS: &'static str = r#"
shutdown_timeout = "30s"
summary_interval = "10s"
stall_timeout = "2m"
max_record_bytes = 1048576

[kafka]
"bootstrap.servers" = "localhost:9092"
# Feeds consumer lag and broker connection state into /metrics (and producer readiness).
"statistics.interval.ms" = "5000"

[sink]
kind = "log"
"#;

    /// The client configuration of `role`'s consumer: what of `[kafka]` applies to a
    /// consumer, and the properties the role's guarantee rests on ([`OWNED_PROPERTIES`]).
    pub fn consumer_client_config(&self, role: ConsumerRole) -> rdkafka::ClientConfig {
        let mut config = self.resolved_kafka.client_config(Scope::Consumer);
        for (key, value) in role.owned_properties() {
            config.set(key, value);
        }
        config
    }

    /// The consumer group, `[kafka] group.id`, if set (a consumer's always is: validation
    /// refuses a consumer without one).
    pub fn group_id(&self) -> Option<&str> {
        self.resolved_kafka
            .get("group.id")
            .filter(|group| !group.is_empty())
    }

    /// librdkafka's `client.id` unless `[kafka]` sets one: `kafkad-<role>-<instance>`, the
    /// instance being the producer id for a producer and `<host name>-<pid>` otherwise (in a
    /// pod the host name is the pod's name). librdkafka's own default, `rdkafka`, is the same
    /// for every member, so the brokers' logs, request metrics and `kafka-consumer-groups
    /// --describe` could not tell the instances apart.
    pub fn default_client_id(&self) -> String {
        let instance = match self.role {
            Some(Role::Producer) => self.producer.producer_id(),
            _ => format!("{}-{}", host_name(), std::process::id()),
        };
        match self.role {
            Some(role) => format!("kafkad-{role}-{instance}"),
            None => format!("kafkad-{instance}"),
        }
    }

    /// The dead-letter topic of the one topic `topic.name`, or `None` where the operator
    /// disabled it with `dlq_topic = ""`.
    pub fn dlq_topic(&self) -> Option<String> {
        self.dead_letter_topic_of(&self.topic.name)
    }

    /// Where a bad record of `topic` goes: `dlq_topic`, else `<topic>.dlq`; `None` where
    /// dead-lettering is off (`dlq_topic = ""`).
    pub fn dead_letter_topic_of(&self, topic: &str) -> Option<String> {
        match &self.dlq_topic {
            None => Some(format!("{topic}.dlq")),
            Some(dlq) if dlq.is_empty() => None,
            Some(dlq) => Some(dlq.clone()),
        }
    }
}

#[cfg(test)]
mod format_tests;
#[cfg(test)]
mod service_link_tests;
#[cfg(test)]
mod sink_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod topic_tests;
