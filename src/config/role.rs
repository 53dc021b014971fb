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

impl ConsumerRole {
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
