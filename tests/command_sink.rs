//! The command sink leaves nothing behind: when a run ends, by its timeout or by the program
//! exiting, no process of the run is left (not even a zombie) and no thread of this process
//! is still blocked on its pipes.
//!
//! The test makes this process the subreaper of its descendants, as init is for kafkad in its
//! container: the processes the program started, orphaned when it is killed, come to this
//! process, which can then tell whether they were killed and reap them. It counts this
//! process's threads, so it is the only test of this binary.
#![cfg(target_os = "linux")]

use std::time::{Duration, Instant};

use kafkad::message::KafkaMessage;
use kafkad::sink::command::CommandSink;
use kafkad::sink::{Record, Sink, SinkError};

/// How long the processes of an ended run may take to die and be reaped.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(5);

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .count()
}

/// Every descendant of this process, zombies included: (pid, state, name).
fn descendants() -> Vec<(i32, char, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let processes: Vec<(i32, i32, char, String)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // "pid (name) state ppid ...": the name may hold spaces and parentheses.
            let (head, rest) = stat.rsplit_once(')')?;
            let name = head.split_once('(')?.1.to_owned();
            let mut fields = rest.split_whitespace();
            let state = fields.next()?.chars().next()?;
            let parent: i32 = fields.next()?.parse().ok()?;
            Some((pid, parent, state, name))
        })
        .collect();
    let mut found = Vec::new();
    let mut parents = vec![std::process::id() as i32];
    while let Some(parent) = parents.pop() {
        for (pid, _, state, name) in processes.iter().filter(|p| p.1 == parent) {
            parents.push(*pid);
            found.push((*pid, *state, name.clone()));
        }
    }
    found
}

/// Reaps the adopted processes until none is left or [`CLEANUP_TIMEOUT`] passed; what is
/// left then.
fn reap() -> Vec<(i32, char, String)> {
    let deadline = Instant::now() + CLEANUP_TIMEOUT;
    loop {
        let mut status = 0;
        // SAFETY: `status` outlives the call; WNOHANG never blocks.
        while unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) } > 0 {}
        let left = descendants();
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kills whatever a case left and reaps it, so a failing case leaves nothing either.
struct KillOnDrop;

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for (pid, _, _) in descendants() {
            // SAFETY: a plain syscall on a process of this test's own.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        reap();
    }
}

/// Runs `sh -c script` on a batch of about 1 MiB, which nothing in these scripts reads;
/// checks the run left nothing behind.
fn run_and_check(script: &str, timeout: Duration) -> Result<(), SinkError> {
    let command = ["sh".to_owned(), "-c".to_owned(), script.to_owned()];
    let sink = CommandSink::new(&command, timeout);
    let batch: Vec<Record<'static>> = (0..8_000)
        .map(|id| Record {
            topic: "t",
            partition: 0,
            offset: id,
            payload: kafkad::payload::Payload::Message(KafkaMessage::new(id, "x".repeat(64), "p")),
            key: None,
            headers: None,
        })
        .collect();

    let threads_before = threads();
    let started = Instant::now();
    let outcome = sink.another().expect("a sink").process_batch(&batch);
    let took = started.elapsed();
    let _cleanup = KillOnDrop;
    assert!(
        took < timeout + Duration::from_secs(2),
        "{script}: took {took:?}"
    );
    let left = reap();
    let threads_after = threads();
    assert!(
        left.is_empty() && threads_after == threads_before,
        "{script} ({outcome:?}): processes left {left:?}; threads {threads_before} before, \
         {threads_after} after"
    );
    outcome
}

#[test]
fn a_run_leaves_no_process_and_no_thread_behind() {
    // SAFETY: a plain prctl on this process.
    let adopted = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(adopted, 0, "{}", std::io::Error::last_os_error());

    // A pipeline past its timeout: both sides killed, though neither is the program itself;
    // the input nobody reads does not block the run either.
    let error =
        run_and_check("sleep 600 | cat", Duration::from_secs(1)).expect_err("past its timeout");
    assert!(matches!(error, SinkError::CommandTimeout { .. }), "{error}");
    assert!(error.is_retryable());

    // A program that leaves a process running and exits 0: processed, and what it left
    // does not outlive the run (it would be working on input already counted as done).
    run_and_check("sleep 600 & exit 0", Duration::from_secs(30)).expect("exit 0 is processed");
}
