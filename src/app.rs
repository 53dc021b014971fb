//! What each command does, from parsed arguments to an exit code.
//!
//! Exit codes: 0 success; 1 runtime failure (undelivered messages, a sink or broker failure,
//! a demo that lost messages); 2 usage or configuration error.

use std::net::SocketAddr;

use crate::cli::{
    Cli, Command, ConfigAction, ConfigArgs, DemoArgs, DlqAction, ReplayArgs, TopicAction,
};
use crate::config::{self, ConfigError};
use crate::demo::{self, DemoOptions};
use crate::replay;
use crate::roles::{self, RolePlan, RoleReport};
use crate::shutdown;
use crate::telemetry::{http, logging};

/// A command's failure, with the exit code it maps to.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Role(#[from] roles::RoleError),
    #[error(transparent)]
    Demo(#[from] demo::DemoError),
    #[error("the demo lost messages")]
    DemoLost,
    #[error("did not stop within shutdown_timeout ({0:?}); exiting")]
    ShutdownTimeout(std::time::Duration),
    #[error(transparent)]
    Topic(#[from] crate::topic::TopicError),
    #[error(transparent)]
    Replay(#[from] replay::ReplayError),
    #[error("cannot serve HTTP on {addr} ([http] listen from {origin}): {source}")]
    Listen {
        addr: SocketAddr,
        origin: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl AppError {
    /// The process's exit status for this failure.
    pub fn exit_status(&self) -> u8 {
        match self {
            AppError::Config(_) => 2,
            _ => 1,
        }
    }
}

/// How long after the shutdown's deadline the process waits for a role that overran it.
const REPORT_MARGIN: std::time::Duration = std::time::Duration::from_millis(500);

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> Result<(), AppError> {
    match cli.command {
        None | Some(Command::Run) => run_role(&cli).await,
        Some(Command::Config { action }) => {
            let loaded = config::load(&cli.config.request(true))?;
            match action {
                ConfigAction::Check => {
                    let s = &loaded.settings;
                    println!(
                        "configuration OK: role {}, topic {}",
                        s.role.map(|r| r.as_str()).unwrap_or("-"),
                        s.topic.selection
                    );
                }
                ConfigAction::Print => print!("{}", loaded.render()),
            }
            Ok(())
        }
        Some(Command::Demo(args)) => run_demo(args).await,
        Some(Command::Version) => {
            print!("{}", crate::version::describe());
            Ok(())
        }
        Some(Command::Topic {
            action: TopicAction::Ensure { wait },
        }) => {
            let loaded = config::load(&cli.config.request(false))?;
            if let config::TopicSelection::Pattern(pattern) = &loaded.settings.topic.selection {
                return Err(ConfigError::Invalid {
                    key: "topic.name".to_owned(),
                    origin: loaded.origin("topic.name"),
                    message: format!(
                        "`{}` is a pattern; topic ensure creates named topics: list them (topic = [\"a\", \"b\"])",
                        pattern.as_str()
                    ),
                }
                .into());
            }
            init_logging(&loaded);
            for ensured in crate::topic::ensure(&loaded.settings, wait).await? {
                println!(
                    "topic {}: {}; {}",
                    ensured.topic,
                    match ensured.outcome {
                        crate::topic::Outcome::Created => "created",
                        crate::topic::Outcome::AlreadyCorrect => "exists with the configured shape",
                    },
                    ensured.durability
                );
                for warning in &ensured.warnings {
                    println!("  warning: {warning}");
                }
                for note in &ensured.notes {
                    println!("  note: {note}");
                }
            }
            Ok(())
        }
        Some(Command::Dlq {
            action: DlqAction::Replay(args),
        }) => run_replay(&cli.config, args).await,
    }
}

async fn run_replay(config_args: &ConfigArgs, args: ReplayArgs) -> Result<(), AppError> {
    let loaded = config::load(&config_args.request(true))?;
    init_logging(&loaded);
    let target = replay::Target::of(&loaded.settings).map_err(|unfit| ConfigError::Invalid {
        key: unfit.key.to_owned(),
        origin: loaded.origin(unfit.key),
        message: unfit.message,
    })?;
    let (trigger, shutdown) = shutdown::channel();
    shutdown::listen_for_signals(trigger)?;
    let options = replay::ReplayOptions {
        reasons: args.reasons,
        since: args.since,
    };
    let settings = loaded.settings;
    let replaying = target.clone();
    // librdkafka calls and the sink block: a thread of their own.
    let report = tokio::task::spawn_blocking(move || {
        replay::replay(&settings, &replaying, &options, &shutdown)
    })
    .await
    .unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()))?;
    println!(
        "replayed {} dead-lettered record(s) of group {} from {} (position kept in group {}); passed over: {} of other groups, {} of other kinds, {} dead-lettered before --since",
        report.replayed,
        target.group,
        target.dlq_topic,
        target.replay_group,
        report.other_groups,
        report.other_kinds,
        report.before_since
    );
    Ok(())
}

async fn run_role(cli: &Cli) -> Result<(), AppError> {
    let loaded = config::load(&cli.config.request(true))?;
    init_logging(&loaded);
    let listen_origin = loaded.origin("http.listen");
    let settings = loaded.settings;
    let plan = RolePlan::new(&settings).ok_or(ConfigError::NoRole)?;
    let (trigger, shutdown) = shutdown::channel();
    shutdown::listen_for_signals(trigger)?;

    let _endpoint = serve_endpoint(settings.http.listen, &plan, listen_origin).await?;
    let timeout = settings.shutdown_timeout;
    let mut watcher = shutdown.clone();
    let run = roles::run(plan, shutdown);
    // The role's stop ends by the shutdown's deadline, each of its steps taking what is left
    // of it; a step that overran it (a commit to brokers that are gone) is given up on a
    // little after, once the role had its chance to report.
    let deadline = async move {
        watcher.wait().await;
        if let Some(deadline) = watcher.deadline(timeout + REPORT_MARGIN) {
            tokio::time::sleep_until(deadline.into()).await;
        }
    };
    let report = tokio::select! {
        report = run => report?,
        _ = deadline => return Err(AppError::ShutdownTimeout(timeout)),
    };
    match report {
        RoleReport::Producer(r) => tracing::info!(
            accepted = r.accepted,
            delivered = r.delivered,
            failed = r.failed,
            "done"
        ),
        RoleReport::Consumer(r) => tracing::info!(
            consumed = r.consumed,
            processed = r.processed,
            dead_lettered = r.dead_lettered,
            commits = r.commits,
            commit_failures = r.commit_failures,
            "done"
        ),
    }
    Ok(())
}

/// Starts logging as `[log]` says, then names the variables the configuration set aside: an
/// operator who meant one of them as a setting sees that it was not read.
fn init_logging(loaded: &config::LoadedConfig) {
    logging::init(&loaded.settings.log);
    if !loaded.service_links.is_empty() {
        tracing::info!(
            variables = %loaded.service_links.join(","),
            "ignoring environment variables Kubernetes injects for Services named kafkad-*; they are not configuration (set enableServiceLinks: false on the pod to drop them)"
        );
    }
}

/// Serves the role's HTTP endpoint on `[http] listen`. Several kafkad processes on one host
/// (the seed's six, run by hand) cannot all have the default port 9464: when the default is
/// taken, the endpoint moves to a free port on the same interface and says where. A port the
/// operator chose is never moved: taken, it is an error naming the setting's source.
async fn serve_endpoint(
    listen: Option<SocketAddr>,
    plan: &RolePlan,
    listen_origin: String,
) -> Result<Option<http::Endpoint>, AppError> {
    let (labels, metrics) = (&plan.labels(), &plan.metrics());
    match http::serve_role(labels, metrics, listen).await {
        Err((addr, source))
            if source.kind() == std::io::ErrorKind::AddrInUse && listen_origin == "default" =>
        {
            let any_port = SocketAddr::new(addr.ip(), 0);
            let endpoint = http::serve_role(labels, metrics, Some(any_port))
                .await
                .map_err(|(addr, source)| AppError::Listen {
                    addr,
                    origin: "a free port, the default being taken".to_owned(),
                    source,
                })?;
            if let Some(endpoint) = &endpoint {
                tracing::warn!(default = %addr, serving = %endpoint.addr, "the default HTTP port is taken (another kafkad on this host?); serving /metrics, /healthz and /readyz on a free port instead; set [http] listen to choose one");
            }
            Ok(endpoint)
        }
        other => other.map_err(|(addr, source)| AppError::Listen {
            addr,
            origin: listen_origin,
            source,
        }),
    }
}

async fn run_demo(args: DemoArgs) -> Result<(), AppError> {
    // Warnings (a commit refused while both members of a group leave at once) would only
    // clutter the demo's own report; RUST_LOG shows them.
    logging::init_text("error");
    let (trigger, stop) = shutdown::channel();
    shutdown::listen_for_signals(trigger)?;
    let options = DemoOptions {
        messages: args.messages,
        http: args.http,
        ..DemoOptions::default()
    };
    let report = demo::run(options, stop).await?;
    print!("{}", report.table());
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&report).expect("report serializes")
        );
    }
    if report.nothing_lost() {
        Ok(())
    } else {
        Err(AppError::DemoLost)
    }
}
