//! The settings of each side: the user's kafkad configuration, pointed at the bench's brokers,
//! topic and group. Both sides of a comparison are built from the very same [`Settings`].

use kafkad::cluster;
use kafkad::config::{self, ConfigError, LoadRequest, ProducerSettings, Role, Settings};
use kafkad::roles::producer::MessageFactory;

/// The producer id of every bench message (the role's default, host name and pid, would
/// differ in length between runs).
pub const PRODUCER_ID: &str = "kafkad-bench";

/// Where a run goes.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub bootstrap: &'a str,
    /// The brokers are the embedded mock cluster.
    pub mock: bool,
    pub topic: &'a str,
    pub group: Option<&'a str>,
}

/// The role's settings from the user's configuration (defaults < file < env < `--set`),
/// pointed at `target`, with `extra` on top.
pub fn role_settings(
    request: &LoadRequest,
    role: Role,
    target: &Target<'_>,
    extra: &[(&str, String)],
) -> Result<Settings, ConfigError> {
    // Lowest first: the bench's own default, which the user's `--set` may change...
    let mut request = request.clone();
    request
        .overrides
        .insert(0, ("log.level".into(), "error".into()));
    // ...then what the bench must decide.
    let mut pinned: Vec<(&str, String)> = vec![
        ("topic.name", target.topic.to_owned()),
        ("producer.producer_id", PRODUCER_ID.to_owned()),
    ];
    if let Some(group) = target.group {
        pinned.push(("kafka.group.id", group.to_owned()));
    }
    pinned.extend(extra.iter().cloned());
    if target.mock {
        return cluster::mock_settings(target.bootstrap, role, &request, pinned);
    }
    request.overrides.push((
        "kafka.bootstrap.servers".into(),
        target.bootstrap.to_owned(),
    ));
    request
        .overrides
        .extend(pinned.into_iter().map(|(k, v)| (k.to_owned(), v)));
    request.role = Some(role);
    request.role_required = true;
    Ok(config::load(&request)?.settings)
}

/// `producer.payload_bytes` as `--payload-bytes` asks, if it does.
pub fn payload_override(payload_bytes: Option<usize>) -> Vec<(&'static str, String)> {
    payload_bytes
        .map(|bytes| vec![("producer.payload_bytes", bytes.to_string())])
        .unwrap_or_default()
}

/// The message factory of the producer role, making the bench's messages.
pub fn message_factory(settings: &ProducerSettings) -> MessageFactory {
    MessageFactory::new(settings, PRODUCER_ID.to_owned())
}

/// Mean value size of messages `1..=n`, as the producer role writes them.
pub fn mean_value_bytes(settings: &ProducerSettings, n: u64) -> f64 {
    let mut factory = message_factory(settings);
    let total: u64 = (1..=n.max(1) as i64)
        .map(|id| {
            factory.build(id);
            factory.value().len() as u64
        })
        .sum();
    total as f64 / n.max(1) as f64
}
