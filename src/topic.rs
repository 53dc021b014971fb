//! `kafkad topic ensure`: the topic exists with the configured shape, or a clear error says why
//! not. Replaces the seed's manual `kafka-topics.sh --create` step.
//!
//! Safe to run from six containers at once: a "topic already exists" answer from a concurrent
//! creator is treated as success and the topic is then verified like any existing one. An
//! existing topic is never altered: a partition count or replication factor that differs from
//! the configuration is an error naming both numbers, for an operator to decide.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::error::KafkaError;
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};

use crate::client::ClientLog;
use crate::config::{Scope, Settings};

/// How long one metadata or create request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// What `topic ensure` found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Created,
    AlreadyCorrect,
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
    #[error("cannot create topic {topic}: {reason}")]
    Create { topic: String, reason: String },
    #[error("cannot create the admin client: {0}")]
    Client(KafkaError),
}

/// Ensures the configured topic (and its dead-letter topic, when enabled) exists; verifies the
/// main topic's shape. Retries while the brokers are unreachable, for at most `wait`.
pub async fn ensure(
    settings: &Settings,
    wait: Duration,
) -> Result<Vec<(String, Outcome)>, TopicError> {
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
    let topic = &settings.topic;
    let expected = Shape {
        partitions: topic.partitions,
        replication_factor: Some(topic.replication_factor),
    };

    let mut results = vec![(
        topic.name.clone(),
        ensure_one(&admin, &topic.name, expected, true, &bootstrap, wait).await?,
    )];
    if let Some(dlq) = settings.dlq_topic() {
        results.push((
            dlq.clone(),
            ensure_one(&admin, &dlq, expected, false, &bootstrap, wait).await?,
        ));
    }
    Ok(results)
}

/// A failed step: worth retrying (the broker may come up), or not.
enum Failure {
    Transient(String),
    Permanent(TopicError),
}

async fn ensure_one(
    admin: &Arc<AdminClient<ClientLog>>,
    name: &str,
    expected: Shape,
    verify: bool,
    bootstrap: &str,
    wait: Duration,
) -> Result<Outcome, TopicError> {
    let started = Instant::now();
    let mut attempts = 0;
    let mut created = false;
    let mut backoff = Duration::from_millis(250);
    loop {
        attempts += 1;
        let step = match describe(admin, name).await {
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
            Ok(None) => create(admin, name, expected).await.map(|()| created = true),
            Err(error) => Err(Failure::Transient(error)),
        };
        // Here the topic was just created (verify it next round) or a step failed.
        if let Err(failure) = step {
            let error = match failure {
                Failure::Permanent(error) => return Err(error),
                Failure::Transient(error) => error,
            };
            if started.elapsed() >= wait {
                return Err(TopicError::Unreachable {
                    bootstrap: bootstrap.to_owned(),
                    attempts,
                    waited: started.elapsed(),
                    last_error: error,
                });
            }
            let pause = backoff.min(wait.saturating_sub(started.elapsed()));
            tracing::warn!(topic = name, attempt = attempts, %error, retry_in = ?pause, "broker not ready; retrying");
            tokio::time::sleep(pause).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
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

/// The topic's shape, `None` if it does not exist, or a transient error's text.
async fn describe(
    admin: &Arc<AdminClient<ClientLog>>,
    name: &str,
) -> Result<Option<Shape>, String> {
    let metadata = {
        // A blocking librdkafka call: off the async workers.
        let (admin, topic) = (Arc::clone(admin), name.to_owned());
        tokio::task::spawn_blocking(move || {
            admin.inner().fetch_metadata(Some(&topic), REQUEST_TIMEOUT)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?
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
        Some(error) => Err(format!(
            "metadata for {name}: {}",
            RDKafkaErrorCode::from(error)
        )),
    }
}

/// Creates the topic; "already exists" (another creator won the race) is success.
async fn create(admin: &AdminClient<ClientLog>, name: &str, shape: Shape) -> Result<(), Failure> {
    let new_topic = NewTopic::new(
        name,
        shape.partitions,
        TopicReplication::Fixed(shape.replication_factor.unwrap_or(1)),
    );
    let options = AdminOptions::new()
        .request_timeout(Some(REQUEST_TIMEOUT))
        .operation_timeout(Some(REQUEST_TIMEOUT));
    let results = admin
        .create_topics([&new_topic], &options)
        .await
        .map_err(|e| Failure::Transient(e.to_string()))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
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
    tracing::info!(topic = name, partitions = shape.partitions, replication_factor = ?shape.replication_factor, "topic created");
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
}
