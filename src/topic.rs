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

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::error::KafkaError;
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};

use crate::backoff::Backoff;
use crate::client::ClientLog;
use crate::config::{Scope, Settings, MIN_INSYNC_REPLICAS};

/// How long one metadata or create request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

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

/// The live topic's durability settings beside the producer's `acks`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Durability {
    /// The producer's `acks` as configured (librdkafka's default is `all`).
    pub acks: String,
    pub replication_factor: Option<i32>,
    pub min_insync_replicas: Option<i32>,
    pub unclean_leader_election: Option<bool>,
    pub max_message_bytes: Option<i64>,
}

/// Topic configs the dead-letter topic is created with when the source topic's configuration
/// names them: an acknowledged dead-letter copy must survive a broker failure like the record
/// it stands for. The others (retention, cleanup, segment sizes) describe the source's data;
/// a compacted dead-letter topic, for one, would refuse the copy of a record without a key.
const SHARED_WITH_DEAD_LETTERS: &[&str] = &[MIN_INSYNC_REPLICAS, "unclean.leader.election.enable"];

/// How to give topic config `name` the value `value`: in the configuration for the topics
/// kafkad creates, by hand on an existing one.
fn how_to_set(topic: &str, name: &str, value: &str) -> String {
    let variable = name.to_ascii_uppercase().replace('.', "_");
    format!(
        "set \"{name}\" = {value} in [topic.config], or KAFKAD_TOPIC__CONFIG__{variable}={value}, for the topics kafkad creates; kafkad does not alter an existing topic: kafka-configs.sh --alter --entity-type topics --entity-name {topic} --add-config {name}={value}"
    )
}

impl Durability {
    /// The durability settings of a topic of `shape` with `configs` (as the broker reports
    /// them), beside the producer's `acks`.
    fn of(acks: &str, shape: Option<Shape>, configs: &HashMap<String, String>) -> Self {
        let get = |key: &str| configs.get(key).map(String::as_str);
        Durability {
            acks: acks.to_owned(),
            replication_factor: shape.and_then(|s| s.replication_factor),
            min_insync_replicas: get(MIN_INSYNC_REPLICAS).and_then(|v| v.parse().ok()),
            unclean_leader_election: get("unclean.leader.election.enable")
                .and_then(|v| v.parse().ok()),
            max_message_bytes: get("max.message.bytes").and_then(|v| v.parse().ok()),
        }
    }

    /// Where these settings cannot keep the promise of an acknowledged write.
    pub fn warnings(&self, topic: &str) -> Vec<String> {
        let mut warnings = Vec::new();
        let acks_all = matches!(self.acks.as_str(), "all" | "-1");
        if !acks_all {
            warnings.push(format!(
                "producer acks={}: a message counts as delivered {}; it is lost if that leader fails before a follower copies it (set acks=all)",
                self.acks,
                if self.acks == "0" { "before any broker has it" } else { "once the partition leader alone has it" }
            ));
        }
        let rf = self.replication_factor.unwrap_or(0);
        if rf == 1 {
            warnings.push(format!(
                "topic {topic} keeps one replica per partition: a broker whose disk is lost takes every acknowledged message of its partitions with it (set replication_factor = 3 in [topic] for a topic kafkad creates; kafka-reassign-partitions.sh adds replicas to an existing one)"
            ));
        }
        if let Some(min_isr) = self.min_insync_replicas {
            if acks_all && rf > 1 && min_isr < 2 {
                warnings.push(format!(
                    "topic {topic} has min.insync.replicas={min_isr}: acks=all is then met by the leader alone whenever its followers have fallen out of sync, and a message acknowledged then is lost if that leader fails before a follower catches up ({})",
                    how_to_set(topic, MIN_INSYNC_REPLICAS, "2")
                ));
            }
            // Dead-letter copies are written with acks=all whatever the producer's acks.
            if rf > 0 && min_isr > rf {
                warnings.push(format!(
                    "topic {topic} has min.insync.replicas={min_isr} with {rf} replicas: every write with acks=all, dead-letter copies included, is refused (NOT_ENOUGH_REPLICAS) even with every broker up ({})",
                    how_to_set(topic, MIN_INSYNC_REPLICAS, &rf.min(2).to_string())
                ));
            }
        }
        if self.unclean_leader_election == Some(true) {
            warnings.push(format!(
                "topic {topic} has unclean.leader.election.enable=true: after a failure an out-of-sync replica may become leader and the acknowledged messages it lacks are discarded ({})",
                how_to_set(topic, "unclean.leader.election.enable", "false")
            ));
        }
        warnings
    }

    /// What these settings give up for their safety: nothing acknowledged is lost, but writes
    /// wait.
    pub fn notes(&self, topic: &str) -> Vec<String> {
        match (self.replication_factor, self.min_insync_replicas) {
            (Some(rf), Some(min_isr)) if rf > 1 && min_isr == rf => vec![format!(
                "topic {topic} has min.insync.replicas={min_isr} with {rf} replicas: every acknowledged write is on all of them, and while any one replica of a partition is down, writes to it are refused (NOT_ENOUGH_REPLICAS) and wait: the producer retries them until delivery.timeout.ms, a dead-letter copy until the replica is back (replication_factor = {} in [topic] with min.insync.replicas={min_isr} keeps writing through one broker's loss)",
                rf + 1
            )],
            _ => Vec::new(),
        }
    }
}

impl std::fmt::Display for Durability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |v: Option<String>| v.unwrap_or_else(|| "unknown".to_owned());
        write!(
            f,
            "replication factor {}, min.insync.replicas={}, unclean.leader.election.enable={}, max.message.bytes={}; producer acks={}",
            show(self.replication_factor.map(|v| v.to_string())),
            show(self.min_insync_replicas.map(|v| v.to_string())),
            show(self.unclean_leader_election.map(|v| v.to_string())),
            show(self.max_message_bytes.map(|v| v.to_string())),
            self.acks
        )
    }
}

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
    let mut config = kafka.client_config(Scope::Producer);
    // A metadata request for a missing topic must not create it with broker defaults.
    config.set("allow.auto.create.topics", "false");
    let admin: Arc<AdminClient<ClientLog>> = Arc::new(
        config
            .create_with_context(ClientLog::new("admin", kafka.redactor()))
            .map_err(TopicError::Client)?,
    );
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
    let mut results = Vec::new();
    // Each dead-letter topic, with the largest max.message.bytes of the topics it serves.
    let mut dead_letters: Vec<(String, Option<i64>, String)> = Vec::new();
    for name in topic.selection.names() {
        let outcome = target.ensure_one(name, expected, true, &creation).await?;
        let (source, source_configs) = target.durability(name, &acks).await?;
        check_config(name, &topic.config, &source_configs)?;
        if let Some(dlq) = settings.dead_letter_topic_of(name) {
            match dead_letters.iter_mut().find(|(topic, _, _)| *topic == dlq) {
                Some((_, max, _)) => *max = (*max).max(source.max_message_bytes),
                None => dead_letters.push((dlq, source.max_message_bytes, name.clone())),
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
    for (dlq, source_max, first_source) in dead_letters {
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
        let (durability, _) = target.durability(&dlq, &acks).await?;
        let mut warnings = durability.warnings(&dlq);
        if let (Some(source_max), Some(dlq_max)) = (source_max, durability.max_message_bytes) {
            if dlq_max < source_max {
                warnings.push(format!(
                    "dead-letter topic {dlq} has max.message.bytes={dlq_max}, less than {source_max} on {first_source}: a record the source accepted that is larger cannot be dead-lettered (raise max.message.bytes on {dlq})"
                ));
            }
        }
        results.push(Ensured {
            notes: durability.notes(&dlq),
            topic: dlq,
            outcome,
            durability,
            warnings,
        });
    }
    crate::client::serve_main_queue(admin.inner());
    for ensured in &results {
        tracing::info!(topic = %ensured.topic, durability = %ensured.durability, "durability settings");
        for warning in &ensured.warnings {
            tracing::warn!(topic = %ensured.topic, "{warning}");
        }
        for note in &ensured.notes {
            tracing::info!(topic = %ensured.topic, "{note}");
        }
    }
    Ok(results)
}

/// Every config `[topic] config` names has that value on the topic (as the broker reports
/// it, after any surrounding whitespace of the configured value).
fn check_config(
    topic: &str,
    configured: &BTreeMap<String, String>,
    live: &HashMap<String, String>,
) -> Result<(), TopicError> {
    for (name, expected) in configured {
        let expected = expected.trim();
        let actual = live.get(name);
        if actual.map(String::as_str) != Some(expected) {
            return Err(TopicError::ConfigMismatch {
                topic: topic.to_owned(),
                name: name.clone(),
                actual: actual.cloned(),
                expected: expected.to_owned(),
            });
        }
    }
    Ok(())
}

/// The cluster `topic ensure` works on, and how long it may wait for it.
struct Target<'a> {
    admin: &'a Arc<AdminClient<ClientLog>>,
    bootstrap: &'a str,
    wait: Duration,
}

/// A failed step: worth retrying (the broker may come up), or not.
enum Failure {
    Transient(String),
    Permanent(TopicError),
}

impl Target<'_> {
    /// Creates `name` (with `config`) unless it exists; verifies an existing topic's shape when
    /// `verify`. Retries transient failures (brokers not up yet, a topic created a moment ago
    /// and not yet in the metadata) until `wait` has passed.
    async fn ensure_one(
        &self,
        name: &str,
        expected: Shape,
        verify: bool,
        config: &BTreeMap<String, String>,
    ) -> Result<Outcome, TopicError> {
        let started = Instant::now();
        let mut attempts = 0;
        let mut created = false;
        // Brokers starting up: look again soon, then less often.
        let backoff = Backoff::doubling(Duration::from_millis(100), Duration::from_secs(5));
        loop {
            attempts += 1;
            let step = match describe(self.admin, name).await {
                Ok(Some(actual)) => {
                    if verify {
                        check(name, actual, expected)?;
                    }
                    tracing::info!(topic = name, partitions = actual.partitions, replication_factor = ?actual.replication_factor, created, "topic ready");
                    return Ok(if created {
                        Outcome::Created
                    } else {
                        Outcome::AlreadyCorrect
                    });
                }
                // Not in the metadata. After our own create that is propagation, not absence:
                // look again shortly rather than create it a second time.
                Ok(None) if created => Err(Failure::Transient(format!(
                    "{name} was created but is not in the metadata yet"
                ))),
                Ok(None) => create(self.admin, name, expected, config)
                    .await
                    .map(|we_created| created = we_created),
                Err(failure) => Err(failure),
            };
            crate::client::serve_main_queue(self.admin.inner());
            let Err(failure) = step else { continue };
            let error = match failure {
                Failure::Permanent(error) => return Err(error),
                Failure::Transient(error) => error,
            };
            // An untrusted certificate or refused login looks like an unreachable broker to
            // the request that failed; the client's error callback knows better.
            if let Some(reason) = self.admin.inner().context().failure() {
                return Err(TopicError::Connection {
                    bootstrap: self.bootstrap.to_owned(),
                    reason,
                });
            }
            if started.elapsed() >= self.wait {
                return Err(TopicError::Unreachable {
                    bootstrap: self.bootstrap.to_owned(),
                    attempts,
                    waited: started.elapsed(),
                    last_error: error,
                });
            }
            let pause = backoff
                .delay(attempts, 0.0)
                .min(self.wait.saturating_sub(started.elapsed()));
            tracing::debug!(topic = name, attempt = attempts, %error, retry_in = ?pause, "not ready; retrying");
            if attempts > 3 {
                tracing::warn!(topic = name, attempt = attempts, %error, retry_in = ?pause, "broker not ready; retrying");
            }
            tokio::time::sleep(pause).await;
        }
    }

    /// The topic's replication and durability settings, and its whole configuration, as the
    /// cluster reports them.
    async fn durability(
        &self,
        name: &str,
        acks: &str,
    ) -> Result<(Durability, HashMap<String, String>), TopicError> {
        let shape = describe(self.admin, name).await.ok().flatten();
        let configs =
            topic_configs(self.admin, name)
                .await
                .map_err(|reason| TopicError::Describe {
                    topic: name.to_owned(),
                    reason,
                })?;
        Ok((Durability::of(acks, shape, &configs), configs))
    }
}

/// The topic's effective configuration (its own values and the broker defaults it inherits).
async fn topic_configs(
    admin: &AdminClient<ClientLog>,
    name: &str,
) -> Result<HashMap<String, String>, String> {
    let options = AdminOptions::new().request_timeout(Some(REQUEST_TIMEOUT));
    let results = admin
        .describe_configs([&ResourceSpecifier::Topic(name)], &options)
        .await
        .map_err(|e| e.to_string())?;
    let resource = results
        .into_iter()
        .next()
        .ok_or_else(|| "no answer".to_owned())?
        .map_err(|code| code.to_string())?;
    Ok(resource
        .entries
        .into_iter()
        .filter_map(|entry| Some((entry.name, entry.value?)))
        .collect())
}

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

/// The topic's shape, `None` if it does not exist; an error worth retrying, or a refusal that
/// retrying will not change.
async fn describe(
    admin: &Arc<AdminClient<ClientLog>>,
    name: &str,
) -> Result<Option<Shape>, Failure> {
    let metadata = {
        // A blocking librdkafka call: off the async workers.
        let (admin, topic) = (Arc::clone(admin), name.to_owned());
        tokio::task::spawn_blocking(move || {
            admin.inner().fetch_metadata(Some(&topic), REQUEST_TIMEOUT)
        })
        .await
        .map_err(|e| Failure::Transient(e.to_string()))?
        .map_err(|e| Failure::Transient(e.to_string()))?
    };
    let Some(topic) = metadata.topics().iter().find(|t| t.name() == name) else {
        return Ok(None);
    };
    match topic.error() {
        None if topic.partitions().is_empty() => Ok(None),
        None => {
            let replication_factor = topic
                .partitions()
                .iter()
                .map(|p| p.replicas().len() as i32)
                .min()
                .filter(|rf| *rf > 0);
            Ok(Some(Shape {
                partitions: topic.partitions().len() as i32,
                replication_factor,
            }))
        }
        Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) => Ok(None),
        Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED) => {
            Err(Failure::Permanent(TopicError::NotAuthorized {
                topic: name.to_owned(),
                reason: RDKafkaErrorCode::TopicAuthorizationFailed.to_string(),
            }))
        }
        Some(error) => Err(Failure::Transient(format!(
            "metadata for {name}: {}",
            RDKafkaErrorCode::from(error)
        ))),
    }
}

/// Creates the topic with `config`; `Ok(false)` when it already exists (another creator won
/// the race), which is as good.
async fn create(
    admin: &AdminClient<ClientLog>,
    name: &str,
    shape: Shape,
    config: &BTreeMap<String, String>,
) -> Result<bool, Failure> {
    let mut new_topic = NewTopic::new(
        name,
        shape.partitions,
        TopicReplication::Fixed(shape.replication_factor.unwrap_or(1)),
    );
    for (key, value) in config {
        new_topic = new_topic.set(key, value);
    }
    let options = AdminOptions::new()
        .request_timeout(Some(REQUEST_TIMEOUT))
        .operation_timeout(Some(REQUEST_TIMEOUT));
    let results = admin
        .create_topics([&new_topic], &options)
        .await
        .map_err(|e| Failure::Transient(e.to_string()))?;
    for result in results {
        match result {
            Ok(_) => {}
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => return Ok(false),
            // The broker understood and refused: retrying will not change its mind.
            Err((
                _,
                code @ (RDKafkaErrorCode::InvalidReplicationFactor
                | RDKafkaErrorCode::InvalidPartitions
                | RDKafkaErrorCode::InvalidConfig
                | RDKafkaErrorCode::PolicyViolation
                | RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::ClusterAuthorizationFailed),
            )) => {
                return Err(Failure::Permanent(TopicError::Create {
                    topic: name.to_owned(),
                    reason: code.to_string(),
                }))
            }
            Err((_, code)) => return Err(Failure::Transient(code.to_string())),
        }
    }
    tracing::info!(topic = name, partitions = shape.partitions, replication_factor = ?shape.replication_factor, ?config, "topic created");
    Ok(true)
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

    fn durability(acks: &str, rf: i32, min_isr: i32, unclean: bool) -> Durability {
        Durability {
            acks: acks.to_owned(),
            replication_factor: Some(rf),
            min_insync_replicas: Some(min_isr),
            unclean_leader_election: Some(unclean),
            max_message_bytes: Some(1_048_588),
        }
    }

    #[test]
    fn acks_all_with_two_in_sync_replicas_of_three_keeps_its_promise() {
        assert_eq!(
            durability("all", 3, 2, false).warnings("t"),
            Vec::<String>::new()
        );
    }

    #[test]
    fn one_in_sync_replica_is_named_with_what_can_be_lost_and_the_key_to_set() {
        let warnings = durability("all", 2, 1, false).warnings("andrew-topic");
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("min.insync.replicas=1")
                && warnings[0].contains("is lost if that leader fails"),
            "{warnings:?}"
        );
        assert!(
            warnings[0].contains("set \"min.insync.replicas\" = 2 in [topic.config]")
                && warnings[0].contains("KAFKAD_TOPIC__CONFIG__MIN_INSYNC_REPLICAS=2")
                && warnings[0]
                    .contains("--entity-name andrew-topic --add-config min.insync.replicas=2"),
            "{warnings:?}"
        );
    }

    #[test]
    fn weak_acks_unclean_election_and_unwritable_minimums_are_each_named() {
        let warnings = durability("1", 2, 3, true).warnings("t");
        let all = warnings.join("\n");
        assert_eq!(warnings.len(), 3, "{all}");
        assert!(all.contains("acks=1"), "{all}");
        assert!(all.contains("unclean.leader.election.enable=true"), "{all}");
        assert!(
            all.contains("NOT_ENOUGH_REPLICAS) even with every broker up"),
            "{all}"
        );
        let all = durability("-1", 1, 1, false).warnings("t").join("\n");
        assert!(all.contains("one replica"), "{all}");
    }

    #[test]
    fn the_min_insync_replicas_topic_ensure_chooses_draws_no_warning() {
        for replication_factor in 2..=5 {
            let topic = crate::config::TopicSettings {
                selection: crate::config::TopicSelection::One("t".to_owned()),
                name: "t".to_owned(),
                partitions: 3,
                replication_factor,
                config: BTreeMap::new(),
            };
            let min_isr = topic.default_min_insync_replicas();
            let chosen = durability("all", replication_factor, min_isr, false);
            assert_eq!(
                chosen.warnings("t"),
                Vec::<String>::new(),
                "{replication_factor} replicas, min.insync.replicas={min_isr}"
            );
        }
    }

    #[test]
    fn all_replicas_in_sync_is_a_trade_noted_not_a_warning() {
        let two_of_two = durability("all", 2, 2, false);
        assert!(two_of_two.warnings("t").is_empty());
        let notes = two_of_two.notes("t");
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].contains("writes to it are refused (NOT_ENOUGH_REPLICAS) and wait")
                && notes[0].contains("replication_factor = 3"),
            "{notes:?}"
        );
        assert!(durability("all", 3, 2, false).notes("t").is_empty());
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
