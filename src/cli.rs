//! The command line.

use std::path::PathBuf;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::config::{LoadRequest, Role};

/// kafkad: a Kafka worker daemon. Runs one role (producer, single or batch consumer) from
/// layered configuration: built-in defaults < TOML file < KAFKAD_* environment < flags.
#[derive(Debug, Parser)]
#[command(name = "kafkad", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub config: ConfigArgs,
}

impl Cli {
    /// Parses the process's arguments; `--version` shows librdkafka's version and features
    /// too (what `kafkad version` prints), `-V` only kafkad's.
    pub fn parse_args() -> Self {
        let command = Cli::command().long_version(crate::version::long_version());
        let matches = command.get_matches();
        Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit())
    }
}

/// Where the configuration comes from; accepted by every sub-command that reads it.
#[derive(Debug, Clone, Default, Args)]
pub struct ConfigArgs {
    /// The role to run (else `role` from the configuration or KAFKAD_ROLE).
    #[arg(long, global = true, value_enum)]
    pub role: Option<Role>,

    #[command(flatten)]
    pub layers: ConfigLayers,

    /// The topic (overrides `topic`).
    #[arg(long, global = true, value_name = "NAME")]
    pub topic: Option<String>,
}

impl ConfigArgs {
    /// The load request these flags describe, reading the process environment.
    pub fn request(&self, role_required: bool) -> LoadRequest {
        LoadRequest {
            role: self.role,
            topic: self.topic.clone(),
            role_required,
            ..self.layers.request()
        }
    }
}

/// The configuration file and the `--set` overrides: the flags of [`ConfigArgs`] that a
/// program deciding the role and topic itself (kafkad-bench) takes as they are.
#[derive(Debug, Clone, Default, Args)]
pub struct ConfigLayers {
    /// TOML configuration file.
    #[arg(
        long,
        short = 'c',
        global = true,
        env = "KAFKAD_CONFIG",
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,

    /// Overrides any key, e.g. `--set batch.min_size=20` or
    /// `--set kafka.bootstrap.servers=broker:9092`. Repeatable; beats every other layer.
    #[arg(long = "set", global = true, value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub overrides: Vec<(String, String)>,
}

impl ConfigLayers {
    /// The load request of these flags alone (no role, no topic), reading the process
    /// environment.
    pub fn request(&self) -> LoadRequest {
        LoadRequest {
            file: self.config.clone(),
            overrides: self.overrides.clone(),
            ..LoadRequest::default()
        }
        .with_process_env()
    }
}

/// Parses `KEY=VALUE` (`--set`).
pub fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_owned(), value.to_owned()))
        }
        _ => Err(format!("expected KEY=VALUE, got `{text}`")),
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs the configured role (the same as giving no sub-command).
    Run,
    /// Validates or prints the effective configuration.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// The seed topology on an embedded mock cluster, with a final reconciliation.
    Demo(DemoArgs),
    /// Prints kafkad's and librdkafka's versions and librdkafka's built-in features.
    Version,
    /// Manages the topic.
    Topic {
        #[command(subcommand)]
        action: TopicAction,
    },
    /// Works with the dead-letter topic.
    Dlq {
        #[command(subcommand)]
        action: DlqAction,
    },
}

#[derive(Debug, Subcommand)]
pub enum DlqAction {
    /// Sends the configured consumer group's dead-lettered records through its sink, once.
    /// The replay keeps its position in the group `<group.id>.replay`, so running it again
    /// resumes. A copy that fails again stops it with exit 1, uncommitted.
    Replay(ReplayArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    /// Only copies of this kind (their `kafkad.error.kind`); repeatable. Unset: every kind.
    #[arg(
        long = "reason",
        value_name = "KIND",
        value_parser = PossibleValuesParser::new(crate::dlq::kinds())
            .try_map(|kind| kind.parse::<crate::replay::ErrorKind>())
    )]
    pub reasons: Vec<crate::replay::ErrorKind>,
    /// Only copies dead-lettered at or after this time: RFC 3339 (`2026-11-25T18:00:00Z`) or a
    /// duration before now (`90m`, `2h`). Older copies of the group are passed over, and like
    /// every copy passed over they are behind the replay's position afterwards.
    #[arg(long, value_name = "TIME", value_parser = parse_since)]
    pub since: Option<chrono::DateTime<chrono::Utc>>,
}

/// `--since`: a point in time (RFC 3339), or a duration before now.
pub fn parse_since(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    if let Ok(time) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&chrono::Utc));
    }
    let ago = humantime::parse_duration(text).map_err(|_| {
        format!("`{text}` is neither a time like 2026-11-25T18:00:00Z nor a duration like 2h")
    })?;
    chrono::Duration::from_std(ago)
        .ok()
        .and_then(|ago| chrono::Utc::now().checked_sub_signed(ago))
        .ok_or_else(|| format!("`{text}` reaches back before any time kafkad can represent"))
}

#[derive(Debug, Subcommand)]
pub enum TopicAction {
    /// Creates the topic (and its dead-letter topic) when missing, with `[topic] partitions`,
    /// `replication_factor` and `config`; verifies an existing one. Idempotent.
    Ensure {
        /// How long to keep retrying while the brokers are unreachable.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        wait: std::time::Duration,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Validates the configuration (exit 0) or prints the first problem (exit 2).
    Check,
    /// Prints the effective configuration with each value's source, secrets redacted.
    Print,
}

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Messages to produce in total (split between the two producers), at most 500000: the
    /// embedded mock cluster keeps about 5 MB per partition and deletes older records once the
    /// consumers fall that far behind, which larger runs do.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=500_000))]
    pub messages: u64,
    /// Make the last line of stdout one JSON object with the reconciliation.
    #[arg(long)]
    pub json: bool,
    /// Serve /metrics, /healthz and /readyz of every instance, e.g. 127.0.0.1:9464.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<std::net::SocketAddr>,
}
