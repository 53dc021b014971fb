//! The admin requests of `topic ensure`: describe a topic, create it, read its configs; each
//! attempt judged worth retrying (brokers not up yet, a topic not yet in the metadata) or
//! not, and retried with a backoff until `wait` has passed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};

use super::{check, first_mismatch, Durability, Outcome, Shape, TopicError};
use crate::backoff::Backoff;
use crate::client::ClientLog;

/// How long one metadata or create request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a topic created a moment ago may take to report the configs it was created with
/// (each broker applies the cluster's metadata on its own, a little after the controller).
const CONFIG_SETTLE: Duration = Duration::from_secs(10);

/// The cluster `topic ensure` works on, and how long it may wait for it.
pub(super) struct Target<'a> {
    pub(super) admin: &'a Arc<AdminClient<ClientLog>>,
    pub(super) bootstrap: &'a str,
    pub(super) wait: Duration,
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
    pub(super) async fn ensure_one(
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
    /// cluster reports them. For a topic created a moment ago (`created_with` its creation
    /// configs), the broker that answers may not have applied those configs yet and report
    /// the defaults: it is asked again until it reports them, for up to [`CONFIG_SETTLE`]
    /// (what it then reports is checked and warned about as for any topic).
    pub(super) async fn durability(
        &self,
        name: &str,
        acks: &str,
        created_with: Option<&BTreeMap<String, String>>,
    ) -> Result<(Durability, HashMap<String, String>), TopicError> {
        let started = Instant::now();
        let configs = loop {
            let answer = topic_configs(self.admin, name).await;
            // A new topic may also be unknown, for a moment, to the broker that answers.
            let settled = match (&answer, created_with) {
                (_, None) => true,
                (Err(_), Some(_)) => false,
                (Ok(configs), Some(created)) => first_mismatch(created, configs).is_none(),
            };
            if settled || started.elapsed() >= CONFIG_SETTLE {
                break answer.map_err(|reason| TopicError::Describe {
                    topic: name.to_owned(),
                    reason,
                })?;
            }
            tracing::debug!(
                topic = name,
                "the new topic's configs are not reported yet; asking again"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let shape = describe(self.admin, name).await.ok().flatten();
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
