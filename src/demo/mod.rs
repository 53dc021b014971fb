//! `kafkad demo`: the seed topology in one process, on the embedded mock cluster.
//!
//! Three mock brokers, `andrew-topic` with 3 partitions and replication factor 2, two
//! producers, two single consumers in `single-message-group`, two batch consumers in
//! `batch-message-group`: the same role code the daemon runs, configured through the same
//! layered configuration (defaults < `--set`-style overrides; the process environment is not
//! read, so the demo behaves the same everywhere). It shows live progress, then reconciles
//! per group what was produced against what was processed.

mod progress;
mod telemetry;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::task::JoinHandle;

use crate::cluster::{self, EmbeddedCluster};
use crate::config::{self, LoadRequest, Role};
use crate::reconcile::{reconcile, MessageKey, Reconciliation};
use crate::roles::{
    self, producer, ConsumerConfig, ConsumerReport, ConsumerRole, ProducerConfig, ProducerReport,
    RoleError,
};
use crate::shutdown::{Shutdown, ShutdownTrigger};
use crate::sink::MemorySink;
use crate::telemetry::metrics::{ConsumerMetrics, ProducerMetrics, RoleMetrics};
use progress::Progress;
use telemetry::DemoTelemetry;

pub const TOPIC: &str = "andrew-topic";
pub const SINGLE_GROUP: &str = "single-message-group";
pub const BATCH_GROUP: &str = "batch-message-group";

/// The demo's consumers run on the defaults as they are.
const NO_OVERRIDES: [(&str, &str); 0] = [];

/// `kafkad demo` options.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Messages to produce in total, split between the two producers.
    pub messages: u64,
    /// Print live progress on stderr.
    pub progress: bool,
    /// Give up waiting for consumers after this long without progress.
    pub stall_timeout: Duration,
    /// Serve `/metrics`, `/healthz`, `/readyz` for every instance on this address.
    pub http: Option<SocketAddr>,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            messages: 10_000,
            progress: true,
            stall_timeout: Duration::from_secs(30),
            http: None,
        }
    }
}

/// The demo's result: `{"produced":N,"groups":{"single-message-group":{...},...}}`.
#[derive(Debug, Clone, Serialize)]
pub struct DemoReport {
    pub produced: u64,
    pub groups: BTreeMap<String, Reconciliation>,
    /// Per instance: what each producer and consumer did.
    #[serde(skip)]
    pub instances: Vec<(String, String)>,
}

impl DemoReport {
    /// Whether every group processed every produced message.
    pub fn nothing_lost(&self) -> bool {
        self.groups.values().all(|g| g.lost == 0)
    }

    /// The human-readable reconciliation table.
    pub fn table(&self) -> String {
        let mut out = format!(
            "reconciliation: {} messages produced\n{:<24}{:>10}{:>8}{:>12}\n",
            self.produced, "group", "consumed", "lost", "duplicates"
        );
        for (group, r) in &self.groups {
            out.push_str(&format!(
                "{group:<24}{:>10}{:>8}{:>12}\n",
                r.consumed, r.lost, r.duplicates
            ));
        }
        for (instance, summary) in &self.instances {
            out.push_str(&format!("  {instance:<12} {summary}\n"));
        }
        if self.groups.values().any(|g| g.duplicates > 0) {
            out.push_str("duplicates are records processed again after a rebalance moved their partition before its offsets were committed (the mock cluster refuses commits while a group rebalances): at-least-once, nothing lost\n");
        }
        out
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot start the embedded cluster: {0}")]
    Cluster(rdkafka::error::KafkaError),
    #[error("demo configuration: {0}")]
    Config(#[from] config::ConfigError),
    #[error("the consumer groups did not settle within {0:?}: some consumer never got partitions")]
    Unsettled(Duration),
    #[error("{instance}: {source}")]
    Role {
        instance: String,
        source: Box<RoleError>,
    },
    #[error("cannot serve HTTP on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

struct Producer {
    name: String,
    metrics: ProducerMetrics,
    task: JoinHandle<Result<ProducerReport, RoleError>>,
}

struct Consumer {
    name: String,
    group: &'static str,
    metrics: ConsumerMetrics,
    /// Each consumer stops on its own signal, so the demo can stop them one at a time.
    stop: ShutdownTrigger,
    task: JoinHandle<Result<ConsumerReport, RoleError>>,
}

/// What each group processed, shared by its two members.
type GroupSinks = [(&'static str, MemorySink); 2];

/// Runs the demo until every group processed every produced message (or progress stalls, or
/// `stop` fires), then stops the consumers and reconciles.
pub async fn run(options: DemoOptions, stop: Shutdown) -> Result<DemoReport, DemoError> {
    let cluster = start_cluster()?;
    let bootstrap = cluster.bootstrap_servers().to_owned();

    let mut telemetry = DemoTelemetry::new();
    let sinks: GroupSinks = [
        (SINGLE_GROUP, MemorySink::default()),
        (BATCH_GROUP, MemorySink::default()),
    ];
    // The consumers stop when the demo is done, or at once on `stop`.
    let consumers = spawn_consumers(&bootstrap, &sinks, &stop, &mut telemetry)?;
    let stop_consumers = || consumers.iter().for_each(|c| c.stop.fire());
    // Produce only once both groups settled: a rebalance while records flow makes a member
    // give up partitions whose offsets it could not commit (the mock refuses commits while
    // its group rebalances), and their next owner processes them again.
    if !groups_settled(&consumers, &stop, options.stall_timeout).await {
        stop_consumers();
        return Err(DemoError::Unsettled(options.stall_timeout));
    }
    let producers = spawn_producers(&bootstrap, options.messages, &stop, &mut telemetry)?;
    let _endpoint = telemetry.serve(options.http).await?;

    let mut progress = Progress::new(options.progress, options.messages);
    let producer_reports = match wait_for_producers(producers, &consumers, &mut progress).await {
        Ok(reports) => reports,
        Err(error) => {
            stop_consumers();
            return Err(error);
        }
    };
    let produced: HashSet<MessageKey> = producer_reports
        .iter()
        .flat_map(|r| r.delivered_ids().map(|id| (r.producer_id.clone(), id)))
        .collect();
    wait_for_groups(
        &produced,
        &sinks,
        &consumers,
        &stop,
        &options,
        &mut progress,
    )
    .await;

    let mut instances = producer_summaries(&producer_reports);
    instances.extend(stop_one_at_a_time(consumers).await?);
    let groups = sinks
        .iter()
        .map(|(group, sink)| (group.to_string(), reconcile(&produced, processed(sink))))
        .collect();
    drop(cluster);
    Ok(DemoReport {
        produced: produced.len() as u64,
        groups,
        instances,
    })
}

/// Three mock brokers with the seed's topic and its dead-letter topic.
fn start_cluster() -> Result<EmbeddedCluster, DemoError> {
    let cluster = EmbeddedCluster::start(3).map_err(DemoError::Cluster)?;
    cluster
        .create_topic(TOPIC, 3, 2)
        .map_err(DemoError::Cluster)?;
    cluster
        .create_topic(&format!("{TOPIC}.dlq"), 3, 2)
        .map_err(DemoError::Cluster)?;
    // Both members of each group start together; no need for the 3 s wait for stragglers.
    cluster.set_initial_rebalance_delay(Duration::from_millis(500));
    Ok(cluster)
}

/// Two single consumers and two batch consumers, each pair sharing its group's sink.
fn spawn_consumers(
    bootstrap: &str,
    sinks: &GroupSinks,
    stop: &Shutdown,
    telemetry: &mut DemoTelemetry,
) -> Result<Vec<Consumer>, DemoError> {
    let mut consumers = Vec::new();
    for (consumer_role, (group, sink)) in [ConsumerRole::Single, ConsumerRole::Batch]
        .into_iter()
        .zip(sinks)
    {
        let role = consumer_role.role();
        for n in 1..=2 {
            let settings =
                cluster::mock_settings(bootstrap, role, &LoadRequest::default(), NO_OVERRIDES)?;
            let config = ConsumerConfig::new(&settings, consumer_role);
            let metrics = ConsumerMetrics::default();
            let name = format!("{role}-{n}");
            telemetry.register(
                Some(group),
                &name,
                RoleMetrics::Consumer(config.role(), metrics.clone()),
            );
            // Its own stop, for the demo to stop the consumers one by one; `stop` stops all.
            let (stop, shutdown) = stop.child();
            let task = tokio::spawn(roles::run_consumer(
                config,
                Box::new(sink.clone()),
                metrics.clone(),
                shutdown,
            ));
            consumers.push(Consumer {
                name,
                group,
                metrics,
                stop,
                task,
            });
        }
    }
    Ok(consumers)
}

/// Two producers, splitting `messages` between them (the first takes the odd one out).
fn spawn_producers(
    bootstrap: &str,
    messages: u64,
    stop: &Shutdown,
    telemetry: &mut DemoTelemetry,
) -> Result<Vec<Producer>, DemoError> {
    let mut producers = Vec::new();
    for n in 1..=2u64 {
        let count = messages / 2 + if n == 1 { messages % 2 } else { 0 };
        let name = format!("producer-{n}");
        let settings = cluster::mock_settings(
            bootstrap,
            Role::Producer,
            &LoadRequest::default(),
            [
                ("producer.count", count.to_string()),
                ("producer.producer_id", name.clone()),
            ],
        )?;
        let metrics = ProducerMetrics::default();
        telemetry.register(None, &name, RoleMetrics::Producer(metrics.clone()));
        let task = tokio::spawn(producer::run(
            ProducerConfig::new(&settings),
            metrics.clone(),
            stop.clone(),
        ));
        producers.push(Producer {
            name,
            metrics,
            task,
        });
    }
    Ok(producers)
}

/// Waits for every producer to finish its count, showing progress.
async fn wait_for_producers(
    producers: Vec<Producer>,
    consumers: &[Consumer],
    progress: &mut Progress,
) -> Result<Vec<ProducerReport>, DemoError> {
    let producer_metrics: Vec<ProducerMetrics> =
        producers.iter().map(|p| p.metrics.clone()).collect();
    let delivered = || {
        producer_metrics
            .iter()
            .map(|m| m.delivered.get())
            .sum::<u64>()
    };
    let mut reports = Vec::new();
    for p in producers {
        let mut task = p.task;
        let joined = loop {
            tokio::select! {
                joined = &mut task => break joined,
                _ = tokio::time::sleep(Duration::from_millis(250)) => {
                    progress.show(delivered(), consumers);
                }
            }
        };
        reports.push(outcome(p.name, joined)?);
    }
    Ok(reports)
}

/// Waits until every group has processed every produced message, or progress stalls for
/// `stall_timeout`, or `stop` fires.
async fn wait_for_groups(
    produced: &HashSet<MessageKey>,
    sinks: &GroupSinks,
    consumers: &[Consumer],
    stop: &Shutdown,
    options: &DemoOptions,
    progress: &mut Progress,
) {
    let mut last_change = Instant::now();
    let mut last_processed = 0;
    loop {
        let processed_now: u64 = consumers.iter().map(|c| c.metrics.processed.get()).sum();
        if processed_now != last_processed {
            last_processed = processed_now;
            last_change = Instant::now();
        }
        let complete = sinks.iter().all(|(_, sink)| {
            sink.len() >= produced.len() && reconcile(produced, processed(sink)).lost == 0
        });
        if complete || stop.is_triggered() || last_change.elapsed() > options.stall_timeout {
            break;
        }
        progress.show(produced.len() as u64, consumers);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    progress.show(produced.len() as u64, consumers);
    progress.finish();
}

/// Whether every consumer holds partitions and no assignment changed for a second (each
/// group finished the rebalances of its members joining), before `timeout` or `stop`.
async fn groups_settled(consumers: &[Consumer], stop: &Shutdown, timeout: Duration) -> bool {
    let started = Instant::now();
    let rebalances = || -> u64 { consumers.iter().map(|c| c.metrics.rebalances.get()).sum() };
    let mut seen = (rebalances(), Instant::now());
    while started.elapsed() < timeout && !stop.is_triggered() {
        let now = rebalances();
        if now != seen.0 {
            seen = (now, Instant::now());
        }
        let all_assigned = consumers.iter().all(|c| c.metrics.health.is_ready());
        if all_assigned && seen.1.elapsed() >= Duration::from_secs(1) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Stops the consumers one at a time and sums each one up. One at a time, because members of
/// a group leaving at the same instant commit while their group rebalances, which the mock
/// refuses: one of them would exit with its last offsets uncommitted.
async fn stop_one_at_a_time(consumers: Vec<Consumer>) -> Result<Vec<(String, String)>, DemoError> {
    let mut instances = Vec::new();
    for c in consumers {
        c.stop.fire();
        let report = outcome(c.name.clone(), c.task.await)?;
        instances.push((
            c.name,
            format!(
                "{}: processed {} dead-lettered {} commits {}",
                c.group, report.processed, report.dead_lettered, report.commits
            ),
        ));
    }
    Ok(instances)
}

fn producer_summaries(reports: &[ProducerReport]) -> Vec<(String, String)> {
    reports
        .iter()
        .map(|r| {
            (
                r.producer_id.clone(),
                format!(
                    "accepted {} delivered {} failed {}",
                    r.accepted, r.delivered, r.failed
                ),
            )
        })
        .collect()
}

/// An instance's task outcome, its failure named after it.
fn outcome<T>(
    instance: String,
    joined: Result<Result<T, RoleError>, tokio::task::JoinError>,
) -> Result<T, DemoError> {
    match joined {
        Ok(Ok(report)) => Ok(report),
        Ok(Err(source)) => Err(DemoError::Role {
            instance,
            source: Box::new(source),
        }),
        Err(join) => Err(DemoError::Role {
            instance,
            source: Box::new(RoleError::Thread(join.to_string())),
        }),
    }
}

/// The (producer_id, message_id) of everything a group's sink holds, duplicates included.
fn processed(sink: &MemorySink) -> impl Iterator<Item = MessageKey> {
    sink.lines()
        .into_iter()
        .map(|line| (line.producer_id, line.message_id))
}
