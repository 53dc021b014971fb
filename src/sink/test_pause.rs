//! TEST-ONLY: a pause inside the commit of a sink keeping positions, so that crash and zombie
//! tests can stop a process at a moment they choose rather than by luck. Nothing sets it in
//! production; with the variable unset (always, outside tests) every call here does nothing.
//!
//! `TEST_KAFKAD_SINK_PAUSE=<stage>:<duration>[:once][,<stage>:...]`, read once per process:
//! * `after_commit`: after the destination committed (with `at_least_once`: after the
//!   write), before the call returns, that is before the consumer's own Kafka commit: a
//!   SIGKILL then lands between the two commits.
//! * `before_commit`: after the records were written in the transaction (the kafka sink
//!   waits for the brokers to have them first), before the positions are and the transaction
//!   commits: a SIGKILL then leaves a transaction open, for its successor to abort; a long
//!   pause keeps the process a member while its call hangs, its partitions move on, and it
//!   resumes as a zombie.
//!
//! `once`: only the first call of the process pauses. Each pause logs a WARN line saying
//! where it stands, which the tests read to know the window was hit. The variable does not
//! start with `KAFKAD_`: those are configuration, and an unknown one is refused.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// The variable that sets the pause.
pub const VARIABLE: &str = "TEST_KAFKAD_SINK_PAUSE";

/// Where in a sink's commit the pause stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    BeforeCommit,
    AfterCommit,
}

struct Pause {
    stage: Stage,
    duration: Duration,
    once: bool,
    used: AtomicBool,
}

/// The pause the variable sets at `stage`, if any.
fn pause(stage: Stage) -> Option<&'static Pause> {
    static PAUSES: OnceLock<Vec<Pause>> = OnceLock::new();
    PAUSES
        .get_or_init(|| {
            let Ok(text) = std::env::var(VARIABLE) else {
                return Vec::new();
            };
            let parsed: Option<Vec<Pause>> = text.split(',').map(parse).collect();
            parsed.unwrap_or_else(|| {
                tracing::error!(variable = VARIABLE, value = %text, "test hook not understood; no pause");
                Vec::new()
            })
        })
        .iter()
        .find(|p| p.stage == stage)
}

/// Whether the test hook pauses at `stage` (so a sink can make that moment what the hook
/// promises, at a cost only tests pay).
pub fn armed(stage: Stage) -> bool {
    pause(stage).is_some()
}

fn parse(text: &str) -> Option<Pause> {
    let mut fields = text.split(':');
    let stage = match fields.next()? {
        "before_commit" => Stage::BeforeCommit,
        "after_commit" => Stage::AfterCommit,
        _ => return None,
    };
    let duration = humantime::parse_duration(fields.next()?).ok()?;
    let once = match fields.next() {
        None => false,
        Some("once") => true,
        Some(_) => return None,
    };
    Some(Pause {
        stage,
        duration,
        once,
        used: AtomicBool::new(false),
    })
}

/// Pauses here if the test hook asks for `stage`; `what` says what the call covers.
pub fn at(stage: Stage, what: &dyn std::fmt::Display) {
    let Some(pause) = pause(stage) else {
        return;
    };
    if pause.once && pause.used.swap(true, Ordering::SeqCst) {
        return;
    }
    match stage {
        Stage::AfterCommit => tracing::warn!(
            covers = %what,
            pause = ?pause.duration,
            "test hook: committed at the sink, pausing before the consumer's Kafka commit"
        ),
        Stage::BeforeCommit => tracing::warn!(
            covers = %what,
            pause = ?pause.duration,
            "test hook: pausing inside the sink call, before its commit"
        ),
    }
    std::thread::sleep(pause.duration);
    tracing::warn!(covers = %what, "test hook: pause over");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_variable_names_a_stage_a_duration_and_maybe_once() {
        let p = parse("after_commit:300ms").expect("parses");
        assert_eq!(
            (p.stage, p.duration, p.once),
            (Stage::AfterCommit, Duration::from_millis(300), false)
        );
        let p = parse("before_commit:20s:once").expect("parses");
        assert_eq!((p.stage, p.once), (Stage::BeforeCommit, true));
        for bad in [
            "",
            "during:1s",
            "after_commit",
            "after_commit:soon",
            "after_commit:1s:twice",
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }
}
