//! What the consumer engine reads of the configuration.
//!
//! Taken out of [`Settings`] once, as the role starts: the engine, its workers and its
//! dead-letter routing see only their typed pieces, so what a consumer depends on is what
//! this struct holds.

use std::num::NonZeroUsize;

use rdkafka::ClientConfig;

use super::Strategy;
use crate::config::kafka::Redactor;
use crate::config::{
    ConsumerRole, ConsumerSettings, RetrySettings, SchemaRegistrySettings, Settings, TopicSelection,
};
use crate::dlq::DeadLetterConfig;
use crate::roles::RoleTiming;

/// One consumer role's configuration.
#[derive(Clone)]
pub struct ConsumerConfig {
    /// How jobs are formed: the single role's one record per call, or the batch role's
    /// `[batch]` sizes.
    pub(crate) strategy: Strategy,
    /// The consumer's librdkafka configuration: `[kafka]`'s consumer properties and the ones
    /// the strategy's guarantee rests on ([`ConsumerRole::owned_properties`]).
    pub(crate) client: ClientConfig,
    /// Masks `[kafka]`'s secrets in librdkafka's log lines.
    pub(crate) redactor: Redactor,
    /// `[kafka] group.id` (validation made sure a consumer has one).
    pub(crate) group: String,
    /// The topics subscribed to: one, a list, or a pattern.
    pub(crate) topics: TopicSelection,
    /// `[consumer]`: format, concurrency, ordering, drain timeout.
    pub(crate) consumer: ConsumerSettings,
    /// `[retry]`: what a failed sink call gets.
    pub(crate) retry: RetrySettings,
    /// Records with a larger value are dead-lettered without being parsed.
    pub(crate) max_record_bytes: NonZeroUsize,
    /// The registry of the schema'd formats.
    pub(crate) schema_registry: Option<SchemaRegistrySettings>,
    /// `auto.offset.reset` reads a new group from the beginning: a partition with records
    /// and no committed offset then owes deliveries (the stall watch counts it).
    pub(crate) from_earliest: bool,
    pub(crate) timing: RoleTiming,
    pub(crate) dead_letters: DeadLetterConfig,
}

impl ConsumerConfig {
    /// `role`'s configuration out of `settings`.
    pub fn new(settings: &Settings, role: ConsumerRole) -> Self {
        let kafka = &settings.resolved_kafka;
        ConsumerConfig {
            strategy: match role {
                ConsumerRole::Single => Strategy::Single,
                ConsumerRole::Batch => Strategy::Batch(settings.batch.clone()),
            },
            client: settings.consumer_client_config(role),
            redactor: kafka.redactor(),
            group: settings.group_id().unwrap_or_default().to_owned(),
            topics: settings.topic.selection.clone(),
            consumer: settings.consumer.clone(),
            retry: settings.retry.clone(),
            max_record_bytes: settings.max_record_bytes,
            schema_registry: settings.schema_registry.clone(),
            from_earliest: matches!(
                kafka.get("auto.offset.reset"),
                Some("earliest" | "smallest" | "beginning")
            ),
            timing: RoleTiming::of(settings),
            dead_letters: DeadLetterConfig::new(settings),
        }
    }

    /// The consumer loop this configuration is for.
    pub fn role(&self) -> ConsumerRole {
        self.strategy.role()
    }

    /// The consumer group.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The topics subscribed to.
    pub fn topics(&self) -> &TopicSelection {
        &self.topics
    }
}
