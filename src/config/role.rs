//! `--role`: which loop this process runs.

use super::*;

/// Which loop this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Sends `KafkaMessage`s with counted delivery reports.
    Producer,
    /// Consumes one message at a time; offsets stored after processing, auto-committed.
    Single,
    /// Consumes in batches; commits last+1 per partition after each batch.
    Batch,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Producer => "producer",
            Role::Single => "single",
            Role::Batch => "batch",
        }
    }

    /// The consumer loop this role runs; `None` for the producer.
    pub fn consumer(self) -> Option<ConsumerRole> {
        match self {
            Role::Producer => None,
            Role::Single => Some(ConsumerRole::Single),
            Role::Batch => Some(ConsumerRole::Batch),
        }
    }

    pub(super) fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "producer" => Some(Role::Producer),
            "single" => Some(Role::Single),
            "batch" => Some(Role::Batch),
            _ => None,
        }
    }
}

/// The two consumer loops: a [`Role`] that consumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerRole {
    Single,
    Batch,
}

/// The librdkafka properties each consumer loop's guarantee rests on. kafkad sets them on the
/// consumer itself ([`ConsumerRole::owned_properties`]) and refuses them in `[kafka]`: an
/// offset is stored only once its record is finished, and what is stored is committed by
/// auto commit (single) or after each batch (batch).
pub const OWNED_PROPERTIES: [&str; 2] = ["enable.auto.commit", "enable.auto.offset.store"];

impl ConsumerRole {
    /// [`OWNED_PROPERTIES`] with this loop's values.
    pub fn owned_properties(self) -> [(&'static str, &'static str); 2] {
        let auto_commit = match self {
            ConsumerRole::Single => "true",
            ConsumerRole::Batch => "false",
        };
        [
            (OWNED_PROPERTIES[0], auto_commit),
            (OWNED_PROPERTIES[1], "false"),
        ]
    }

    pub fn role(self) -> Role {
        match self {
            ConsumerRole::Single => Role::Single,
            ConsumerRole::Batch => Role::Batch,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
