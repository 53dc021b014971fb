//! Consumers killed with SIGKILL over and over while they work, some kills aimed at the
//! moment between a sink's commit and the consumer's Kafka commit (the test-only pause
//! `TEST_KAFKAD_SINK_PAUSE=after_commit:...` logs a line there), with a broker killed and
//! restarted on the way: the crash half of the exactly-once tests.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::kafka::KafkaCluster;
use super::offsets::committed;
use super::process::Kafkad;
use super::scenario::*;

/// Kills of consumers per kill run.
pub const KILLS: usize = 24;
/// Every third kill lands where [`Aim`] says; the others right after a commit at the sink,
/// inside the test-only pause before the consumer's own Kafka commit.
pub const THIRD_KILL_EVERY: usize = 3;
/// The pause after each commit at the sink: the window a SIGKILL aims at.
pub const PAUSE_AFTER_COMMIT: &str = "after_commit:300ms";
/// Both pauses: after each commit, and inside each transaction once its records are written.
pub const PAUSE_AROUND_COMMIT: &str = "after_commit:300ms,before_commit:300ms";

/// What a kill run does besides killing consumers right after their commits.
#[derive(Clone, Copy)]
pub struct KillPlan {
    /// A broker killed before a third of the kills, and restarted after the next one.
    pub broker_fault: bool,
    /// Where every third kill lands.
    pub third_kills: Aim,
}

/// Where every third kill lands.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Aim {
    /// At a random moment.
    Random,
    /// Inside a transaction whose records are written, before its commit (the test-only
    /// pause `before_commit`, see [`PAUSE_AROUND_COMMIT`]): its successor aborts it.
    OpenTransaction,
}
/// The compose services of the members killed in turn.
pub const BATCH: [&str; 2] = ["batch-1", "batch-2"];

/// What a kill found when it landed inside the window: the partitions whose next offset the
/// sink had committed and Kafka had not.
pub struct Window {
    pub kill: usize,
    pub member: String,
    /// (partition, next offset at the sink, Kafka's committed offset).
    pub ahead: Vec<(i32, i64, Option<i64>)>,
}

/// The `partition@next` pairs of the last line of `log` after `from` bytes that holds
/// `text` (a test hook's), and where that line ends.
fn last_hook_line(log: &str, from: usize, text: &str) -> Option<(Vec<(i32, i64)>, usize)> {
    let tail = log.get(from..)?;
    let at = tail.rfind(text)?;
    let line_start = tail[..at].rfind('\n').map_or(0, |i| i + 1);
    let line_end = tail[at..].find('\n').map_or(tail.len(), |i| at + i);
    let line = &tail[line_start..line_end];
    let covers = line.split("covers=").nth(1)?.split(" pause=").next()?;
    let pairs = covers
        .split_whitespace()
        .filter_map(|pair| {
            let (p, next) = pair.split_once('@')?;
            Some((p.parse().ok()?, next.parse().ok()?))
        })
        .collect();
    Some((pairs, from + line_end))
}

/// Kills the members of `members` (one at a time, alternately) `KILLS` times and restarts
/// each at once, as `plan` says.
/// `positions` reads the sink's next offsets (none for a sink keeping no positions). Without
/// `broker_fault`, the brokers are left alone.
pub fn kill_loop(
    cluster: &KafkaCluster,
    plan: KillPlan,
    scenario: &Scenario,
    members: &mut [Kafkad],
    env: &[(&str, String)],
    progress: &dyn Fn() -> i64,
    positions: &dyn Fn() -> BTreeMap<i32, i64>,
) -> Vec<Window> {
    let group = scenario.batch_group.clone();
    let mut windows = Vec::new();
    let mut broker_down = None;
    let mut seed = 0x9e37_79b9_u64;
    for kill in 1..=KILLS {
        if plan.broker_fault && kill == KILLS / 3 {
            let leader = cluster.partitions(&scenario.topic)[0].leader;
            println!("kill {kill}: SIGKILL broker {leader}, leader of partition 0");
            cluster.kill(leader);
            broker_down = Some(leader);
        }
        // Down for one consumer kill only: with the topic's two replicas and
        // min.insync.replicas = 2, writes to its partitions wait while it is down, and the
        // producers' messages fail after delivery.timeout.ms.
        if kill == KILLS / 3 + 2 {
            if let Some(broker) = broker_down.take() {
                cluster.restart(broker);
                cluster.wait_fully_replicated(&scenario.topic, Duration::from_secs(180));
                println!("kill {kill}: broker {broker} back, every replica in sync");
            }
        }
        let index = kill % members.len();
        let before = progress();
        let deadline = Instant::now() + CONSUME_TIMEOUT;
        while progress() < before + 200 {
            assert!(
                Instant::now() < deadline,
                "no progress before kill {kill}\n{}",
                scenario.diagnostics()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let victim = &mut members[index];
        let in_window = kill % THIRD_KILL_EVERY != 0;
        let hook = match (in_window, plan.third_kills) {
            (true, _) => Some("test hook: committed at the sink"),
            (false, Aim::OpenTransaction) => Some("test hook: pausing inside the sink call"),
            (false, Aim::Random) => None,
        };
        let mut line = None;
        if let Some(hook) = hook {
            let from = victim.log_text().len();
            let deadline = Instant::now() + CONSUME_TIMEOUT;
            while line.is_none() {
                assert!(
                    Instant::now() < deadline,
                    "{}: no line {hook:?}",
                    victim.name
                );
                std::thread::sleep(Duration::from_millis(10));
                line = last_hook_line(&victim.log_text(), from, hook);
            }
        } else {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            std::thread::sleep(Duration::from_millis(200 + seed % 2500));
        }
        victim.signal(libc::SIGKILL);
        victim.wait(EXIT_TIMEOUT);
        let name = victim.name.clone();
        if !in_window {
            match line {
                Some((covered, _)) => {
                    println!("kill {kill}: {name} inside an open transaction covering {covered:?}")
                }
                None => println!("kill {kill}: {name} at a random moment"),
            }
        } else if let Some((covered, _)) = line {
            let kafka = committed(&cluster.bootstrap, &group, &scenario.topic, 3);
            let sink = positions();
            let ahead: Vec<(i32, i64, Option<i64>)> = covered
                .iter()
                .filter(|(p, next)| sink.get(p) >= Some(next) && kafka[*p as usize] < Some(*next))
                .map(|(p, next)| (*p, *next, kafka[*p as usize]))
                .collect();
            println!("kill {kill}: {name} right after its commit at the sink covering {covered:?}: sink ahead of Kafka on {ahead:?}");
            if !ahead.is_empty() {
                windows.push(Window {
                    kill,
                    member: name.clone(),
                    ahead,
                });
            }
        }
        let service = BATCH[index];
        let restarted = scenario.start(service, &format!("{service}-{kill}"), env);
        members[index] = restarted;
    }
    windows
}

pub fn print_windows(windows: &[Window]) {
    println!(
        "\nkills that landed between the sink's commit and Kafka's: {}",
        windows.len()
    );
    for w in windows {
        for (partition, sink, kafka) in &w.ahead {
            println!("  kill {} of {}: partition {partition}: next offset {sink} in the sink, Kafka committed {kafka:?}", w.kill, w.member);
        }
    }
}

/// Waits until `process` logged a line containing `text`; panics with `failure` and its log.
pub fn wait_for_log(process: &Kafkad, text: &str, failure: &str) {
    let deadline = Instant::now() + CONSUME_TIMEOUT;
    while !process.log_text().contains(text) {
        assert!(
            Instant::now() < deadline,
            "{failure}:\n{}",
            process.log_tail()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
