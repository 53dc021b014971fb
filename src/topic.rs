//! `kafkad topic ensure`: the topic exists with the configured shape, or a clear error says why
//! not. Replaces the seed's manual `kafka-topics.sh --create` step.
//!
//! Safe to run from six containers at once: a "topic already exists" answer from a concurrent
//! creator is treated as success and the topic is then verified like any existing one. An
//! existing topic is never altered: a partition count or replication factor that differs from
//! the configuration is an error naming both numbers, for an operator to decide.
//!
//! A topic is created with `[topic] config` (any topic config, passed verbatim), with
//! `min.insync.replicas` defaulting to 2 (1 for a single replica). On an existing topic every
//! config named in `[topic] config` is checked, and a different value is an error naming both,
//! like a different shape; the default is only used when creating.
//!
//! It also reads the live topic's durability settings (`min.insync.replicas`,
//! `unclean.leader.election.enable`) and reports them beside the producer's `acks`, with a
//! warning wherever together they cannot keep the `acks=all` promise, saying what can be lost
//! and which setting changes it, and a note where they trade availability for it.
//! The dead-letter topic is created beside the source topic with the durability settings the
//! configuration gives the source (`min.insync.replicas`, its default included,
//! `unclean.leader.election.enable`) and a `max.message.bytes` no smaller than the live
//! source's, so whatever the source accepted can be dead-lettered, and an acknowledged copy
//! survives like the record it stands for.
//!
//! Here: what `topic ensure` does for each topic, and its errors. What the live durability
//! settings mean (the warnings and notes) is in `durability`; the admin requests, retried
//! while the brokers come up, are in `admin`.

mod admin;
mod durability;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::AdminClient;
use rdkafka::error::KafkaError;

use crate::client::ClientLog;
use crate::config::{Scope, Settings, MIN_INSYNC_REPLICAS};
use admin::Target;
pub use durability::Durability;

/// What `topic ensure` found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Created,
    AlreadyCorrect,
}

/// One topic after `topic ensure`: what was done, and the settings that decide whether an
/// acknowledged write survives a broker failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ensured {
    pub topic: String,
    pub outcome: Outcome,
    pub durability: Durability,
    /// Where this topic's settings fall short, each saying what can be lost or refused.
    pub warnings: Vec<String>,
    /// What these settings trade for their safety, each saying what to change for the other.
    pub notes: Vec<String>,
}

/// Topic configs the dead-letter topic is created with when the source topic's configuration
/// names them: an acknowledged dead-letter copy must survive a broker failure like the record
/// it stands for. The others (retention, cleanup, segment sizes) describe the source's data;
/// a compacted dead-letter topic, for one, would refuse the copy of a record without a key.
const SHARED_WITH_DEAD_LETTERS: &[&str] = &[MIN_INSYNC_REPLICAS, "unclean.leader.election.enable"];

/// A topic as the broker describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub partitions: i32,
    /// Replicas per partition (the smallest over partitions); `None` where the broker does
    /// not report replicas.
    pub replication_factor: Option<i32>,
}

#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    #[error("topic {topic} has {actual} {what}, but the configuration says {expected} ({key}); kafkad does not alter existing topics: change the configuration or the topic")]
    Mismatch {
        topic: String,
        what: &'static str,
        key: &'static str,
        actual: i32,
        expected: i32,
    },
    #[error("cannot reach the Kafka brokers at {bootstrap} after {attempts} attempts over {waited:?}: {last_error}")]
    Unreachable {
        bootstrap: String,
        attempts: u32,
        waited: Duration,
        last_error: String,
    },
    #[error("topic {topic} has {name}={}, but the configuration says {expected} (topic.config.{name}); kafkad does not alter existing topics: change the configuration, or the topic (kafka-configs.sh --alter --entity-type topics --entity-name {topic} --add-config {name}={expected})", .actual.as_deref().unwrap_or("(no such config)"))]
    ConfigMismatch {
        topic: String,
        name: String,
        /// The topic's value; `None` where the broker reports no config of that name.
        actual: Option<String>,
        expected: String,
    },
    #[error("cannot create topic {topic}: {reason}")]
    Create { topic: String, reason: String },
    #[error("not authorized to describe topic {topic}: {reason}; the principal needs Describe on it (and Create to create it)")]
    NotAuthorized { topic: String, reason: String },
    #[error(
        "cannot connect to the Kafka brokers at {bootstrap}, and retrying will not help: {reason}"
    )]
    Connection { bootstrap: String, reason: String },
    #[error("cannot read the configuration of topic {topic}: {reason}")]
    Describe { topic: String, reason: String },
    #[error("cannot create the admin client: {0}")]
    Client(KafkaError),
}

/// Ensures the configured topics (one, or each of a list) and their dead-letter topics, when
/// enabled, exist; verifies each topic's shape and reports every topic's durability
/// settings. Retries while the brokers are unreachable, for at most `wait`. A pattern names
/// no topic to create: configuration refuses it before this runs.
pub async fn ensure(settings: &Settings, wait: Duration) -> Result<Vec<Ensured>, TopicError> {
    let kafka = &settings.resolved_kafka;
    let admin = admin_client(settings)?;
    let bootstrap = kafka
        .get("bootstrap.servers")
        .unwrap_or("(unset)")
        .to_owned();
    let acks = kafka.get("acks").unwrap_or("all").to_owned();
    let topic = &settings.topic;
    let expected = Shape {
        partitions: topic.partitions,
        replication_factor: Some(topic.replication_factor),
    };
    let target = Target {
        admin: &admin,
        bootstrap: &bootstrap,
        wait,
    };

    let creation = topic.creation_config();
    let (mut results, dead_letters) =
        ensure_sources(&target, settings, expected, &creation, &acks).await?;
    for dlq in dead_letters {
        results.push(ensure_dead_letters(&target, dlq, expected, &creation, &acks).await?);
    }
    crate::client::serve_main_queue(admin.inner());
    log_ensured(&results);
    Ok(results)
}

/// The admin client of the configured cluster.
fn admin_client(settings: &Settings) -> Result<Arc<AdminClient<ClientLog>>, TopicError> {
    let kafka = &settings.resolved_kafka;
    let mut config = kafka.client_config(Scope::Producer);
    // A metadata request for a missing topic must not create it with broker defaults.
    config.set("allow.auto.create.topics", "false");
    Ok(Arc::new(
        config
            .create_with_context(ClientLog::new("admin", kafka.redactor()))
            .map_err(TopicError::Client)?,
    ))
}

/// A dead-letter topic to ensure, and what the topics it serves ask of it.
struct DeadLetters {
    topic: String,
    /// The largest max.message.bytes of the topics it serves.
    source_max: Option<i64>,
    /// The first of those topics, named where the dead-letter topic is smaller than they are.
    first_source: String,
}

/// Each configured topic, created or verified, its configs checked and its durability read;
/// and the dead-letter topics they need.
async fn ensure_sources(
    target: &Target<'_>,
    settings: &Settings,
    expected: Shape,
    creation: &BTreeMap<String, String>,
    acks: &str,
) -> Result<(Vec<Ensured>, Vec<DeadLetters>), TopicError> {
    let topic = &settings.topic;
    let mut results = Vec::new();
    // Each dead-letter topic, with the largest max.message.bytes of the topics it serves.
    let mut dead_letters: Vec<DeadLetters> = Vec::new();
    for name in topic.selection.names() {
        let outcome = target.ensure_one(name, expected, true, creation).await?;
        let created_with = (outcome == Outcome::Created).then_some(creation);
        let (source, source_configs) = target.durability(name, acks, created_with).await?;
        check_config(name, &topic.config, &source_configs)?;
        if let Some(dlq) = settings.dead_letter_topic_of(name) {
            match dead_letters.iter_mut().find(|known| known.topic == dlq) {
                Some(known) => known.source_max = known.source_max.max(source.max_message_bytes),
                None => dead_letters.push(DeadLetters {
                    topic: dlq,
                    source_max: source.max_message_bytes,
                    first_source: name.clone(),
                }),
            }
        }
        results.push(Ensured {
            warnings: source.warnings(name),
            notes: source.notes(name),
            topic: name.clone(),
            outcome,
            durability: source,
        });
    }
    Ok((results, dead_letters))
}

/// A dead-letter topic, created with the durability configs its sources are given and a
/// `max.message.bytes` that fits what they accepted; a warning where the live one is smaller.
async fn ensure_dead_letters(
    target: &Target<'_>,
    dead_letters: DeadLetters,
    expected: Shape,
    creation: &BTreeMap<String, String>,
    acks: &str,
) -> Result<Ensured, TopicError> {
    let DeadLetters {
        topic: dlq,
        source_max,
        first_source,
    } = dead_letters;
    let mut config: BTreeMap<String, String> = creation
        .iter()
        .filter(|(name, _)| SHARED_WITH_DEAD_LETTERS.contains(&name.as_str()))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    // Whatever the source topics accepted must fit in the dead-letter topic.
    if let Some(bytes) = source_max {
        config.insert("max.message.bytes".to_owned(), bytes.to_string());
    }
    let outcome = target.ensure_one(&dlq, expected, false, &config).await?;
    let created_with = (outcome == Outcome::Created).then_some(&config);
    let (durability, _) = target.durability(&dlq, acks, created_with).await?;
    let mut warnings = durability.warnings(&dlq);
    if let (Some(source_max), Some(dlq_max)) = (source_max, durability.max_message_bytes) {
        if dlq_max < source_max {
            warnings.push(format!(
                "dead-letter topic {dlq} has max.message.bytes={dlq_max}, less than {source_max} on {first_source}: a record the source accepted that is larger cannot be dead-lettered (raise max.message.bytes on {dlq})"
            ));
        }
    }
    Ok(Ensured {
        notes: durability.notes(&dlq),
        topic: dlq,
        outcome,
        durability,
        warnings,
    })
}

/// Each topic's durability settings in the log, with its warnings and notes.
fn log_ensured(results: &[Ensured]) {
    for ensured in results {
        tracing::info!(topic = %ensured.topic, durability = %ensured.durability, "durability settings");
        for warning in &ensured.warnings {
            tracing::warn!(topic = %ensured.topic, "{warning}");
        }
        for note in &ensured.notes {
            tracing::info!(topic = %ensured.topic, "{note}");
        }
    }
}

/// Every config `[topic] config` names has that value on the topic (as the broker reports
/// it, after any surrounding whitespace of the configured value).
fn check_config(
    topic: &str,
    configured: &BTreeMap<String, String>,
    live: &HashMap<String, String>,
) -> Result<(), TopicError> {
    match first_mismatch(configured, live) {
        None => Ok(()),
        Some((name, expected)) => Err(TopicError::ConfigMismatch {
            topic: topic.to_owned(),
            name: name.to_owned(),
            actual: live.get(name).cloned(),
            expected: expected.to_owned(),
        }),
    }
}

/// The first of `configured` that `live` does not hold with its value (after any surrounding
/// whitespace of the configured value), with that value.
fn first_mismatch<'c>(
    configured: &'c BTreeMap<String, String>,
    live: &HashMap<String, String>,
) -> Option<(&'c str, &'c str)> {
    configured
        .iter()
        .map(|(name, expected)| (name.as_str(), expected.trim()))
        .find(|(name, expected)| live.get(*name).map(String::as_str) != Some(*expected))
}

/// An existing topic has the configured shape: the same partitions, and the same replicas
/// where the broker reports them.
fn check(name: &str, actual: Shape, expected: Shape) -> Result<(), TopicError> {
    if actual.partitions != expected.partitions {
        return Err(TopicError::Mismatch {
            topic: name.to_owned(),
            what: "partitions",
            key: "topic.partitions",
            actual: actual.partitions,
            expected: expected.partitions,
        });
    }
    if let (Some(actual_rf), Some(expected_rf)) =
        (actual.replication_factor, expected.replication_factor)
    {
        if actual_rf != expected_rf {
            return Err(TopicError::Mismatch {
                topic: name.to_owned(),
                what: "replicas per partition",
                key: "topic.replication_factor",
                actual: actual_rf,
                expected: expected_rf,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mismatch_names_both_numbers() {
        let error = check(
            "andrew-topic",
            Shape {
                partitions: 1,
                replication_factor: Some(1),
            },
            Shape {
                partitions: 3,
                replication_factor: Some(1),
            },
        )
        .expect_err("mismatch");
        let text = error.to_string();
        assert!(
            text.contains("has 1 partitions") && text.contains("says 3"),
            "{text}"
        );
    }

    #[test]
    fn unknown_replication_is_not_a_mismatch() {
        let shape = Shape {
            partitions: 3,
            replication_factor: None,
        };
        check(
            "t",
            shape,
            Shape {
                replication_factor: Some(2),
                ..shape
            },
        )
        .expect("accepted");
    }

    #[test]
    fn a_new_topic_has_settled_once_it_reports_every_config_it_was_created_with() {
        let created = BTreeMap::from([
            ("retention.ms".to_owned(), " 3600000".to_owned()),
            ("min.insync.replicas".to_owned(), "2".to_owned()),
        ]);
        let live = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        // The broker's defaults, before it applied the new topic's configs.
        let defaults = live(&[("retention.ms", "604800000"), ("min.insync.replicas", "1")]);
        assert!(first_mismatch(&created, &defaults).is_some());
        assert!(first_mismatch(&created, &live(&[("min.insync.replicas", "2")])).is_some());
        let applied = live(&[
            ("retention.ms", "3600000"),
            ("min.insync.replicas", "2"),
            ("cleanup.policy", "delete"),
        ]);
        assert!(first_mismatch(&created, &applied).is_none());
    }

    #[test]
    fn a_configured_topic_config_the_topic_lacks_is_named_with_both_values() {
        let live = HashMap::from([
            ("min.insync.replicas".to_owned(), "1".to_owned()),
            ("retention.ms".to_owned(), "604800000".to_owned()),
        ]);
        let configured = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        check_config("t", &configured(&[("retention.ms", " 604800000")]), &live)
            .expect("the same value");
        let error = check_config("t", &configured(&[("min.insync.replicas", "2")]), &live)
            .expect_err("differs")
            .to_string();
        assert!(
            error.contains("topic t has min.insync.replicas=1, but the configuration says 2 (topic.config.min.insync.replicas)"),
            "{error}"
        );
        let error = check_config("t", &configured(&[("retention.msec", "1")]), &live)
            .expect_err("unknown")
            .to_string();
        assert!(error.contains("retention.msec=(no such config)"), "{error}");
    }
}
