//! The `command` sink: runs a program per message (single consumer) or per batch (batch
//! consumer), writing the records to its standard input as JSON lines; exit status 0 means
//! processed. A line is what [`payload::line::write_command_line`](crate::payload::line)
//! makes of a record: for `kafka_message` the message itself, for every other format the
//! line the `jsonl` sink writes (the value with its topic, partition, offset, key and
//! headers).
//!
//! One process per call, not one long-lived process: the exit status is then an unambiguous
//! verdict on exactly the messages given, a timeout can kill the run without leaving a
//! half-read stream behind, and a program that crashes or leaks affects one call only. The
//! price is a fork and exec per call; for throughput, use the batch consumer, which runs the
//! program once per batch.
//!
//! Exit status [`super::COMMAND_REJECTS`] (65, `EX_DATAERR`) says the input is bad: a permanent
//! failure, dead-lettered at once. Any other failing status, a program that cannot start, or
//! one killed by `timeout` is retryable. Its standard output is discarded; its standard error
//! is read to the end (a program whose pipe closed early would die of SIGPIPE on its next
//! write) and the end of it goes into the error.
//!
//! A run is a process group: the program starts in a group of its own, and when the run ends
//! (the program exited, or `timeout` passed) whatever is left of the group is killed, so
//! nothing started for one attempt (the two sides of `a | b`, a forgotten `&`) can still be
//! working when the next attempt starts, or hold the pipes open. The program itself is reaped
//! here; the processes it started are orphans once it is killed, reaped by whoever adopts
//! orphans: init, which in the container image is tini, not kafkad. A process that leaves the group (`setsid`) is beyond reach. Every run is
//! driven from the calling thread alone, without blocking reads or writes: writing the input
//! to a program that does not read it, or reading the standard error of one that floods it,
//! never keeps the call past `timeout`, and no thread is left behind.
//!
//! The sink and the verdict on a run are here; the run's process group is in `process`, and
//! the pipes driven without blocking (the input written, standard error's end kept) in `pipes`.

mod pipes;
mod process;

use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::{Record, Sink, SinkError};
use crate::payload::line::write_command_line;
use pipes::{Pipes, STDERR_GRACE};
use process::{Run, EXIT_CHECK};

/// Runs a program per call.
#[derive(Debug, Clone)]
pub struct CommandSink {
    program: String,
    args: Vec<String>,
    /// The command as one line, for errors.
    shown: String,
    timeout: Duration,
}

impl CommandSink {
    /// `command` is the program and its arguments (checked when the configuration was loaded).
    pub fn new(command: &[String], timeout: Duration) -> Self {
        let (program, args) = command.split_first().map_or_else(
            || (String::new(), Vec::new()),
            |(p, a)| (p.clone(), a.to_vec()),
        );
        CommandSink {
            program,
            args,
            shown: command.join(" "),
            timeout,
        }
    }

    /// Runs the program on `input`: its exit status is the verdict, unless `timeout` passed
    /// first.
    fn run(&self, input: &[u8]) -> Result<(), SinkError> {
        let deadline = Instant::now() + self.timeout;
        let mut run = self.spawn()?;
        let mut pipes = Pipes::take(&mut run.child).map_err(|e| self.run_failed(e))?;
        let exited = self.feed_until_exit(&run, &mut pipes, input, deadline)?;
        pipes.close_input();
        let status = run.finish().map_err(|e| self.run_failed(e))?;
        self.verdict(exited, status, pipes)
    }

    /// Starts the program alone in a new process group, its input and standard error piped,
    /// its output discarded.
    fn spawn(&self) -> Result<Run, SinkError> {
        Run::start(
            Command::new(&self.program)
                .args(&self.args)
                .process_group(0)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped()),
        )
        .map_err(|source| SinkError::CommandSpawn {
            command: self.shown.clone(),
            source,
        })
    }

    /// Writes `input` and reads standard error as far as the pipes take them, until the
    /// program exits (`true`) or `deadline` passes (`false`).
    fn feed_until_exit(
        &self,
        run: &Run,
        pipes: &mut Pipes,
        input: &[u8],
        deadline: Instant,
    ) -> Result<bool, SinkError> {
        loop {
            pipes.write_input(input);
            pipes.read_stderr();
            if run.exited().map_err(|e| self.run_failed(e))? {
                return Ok(true);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            let wait = match &run.exit {
                Some(_) => deadline - now,
                None => (deadline - now).min(EXIT_CHECK),
            };
            pipes
                .wait(run.exit.as_ref(), wait)
                .map_err(|e| self.run_failed(e))?;
        }
    }

    /// What the ended run says: it timed out, succeeded, or failed with the end of its
    /// standard error.
    fn verdict(&self, exited: bool, status: ExitStatus, pipes: Pipes) -> Result<(), SinkError> {
        if !exited {
            return Err(SinkError::CommandTimeout {
                command: self.shown.clone(),
                timeout: self.timeout,
            });
        }
        if status.success() {
            return Ok(());
        }
        Err(SinkError::CommandExit {
            command: self.shown.clone(),
            code: status.code(),
            stderr: pipes.stderr_tail(STDERR_GRACE),
        })
    }

    /// Watching the run failed (a failing `poll` or `waitid`).
    fn run_failed(&self, source: std::io::Error) -> SinkError {
        SinkError::CommandRun {
            command: self.shown.clone(),
            source,
        }
    }
}

impl Sink for CommandSink {
    /// Every run is a process of its own: workers can run them side by side.
    fn another(&self) -> Option<Box<dyn Sink>> {
        Some(Box::new(self.clone()))
    }

    fn process(&mut self, record: &Record<'_>) -> Result<(), SinkError> {
        let mut input = Vec::with_capacity(160);
        write_command_line(&mut input, &record.origin(), &record.payload);
        input.push(b'\n');
        self.run(&input)
    }

    fn process_batch(&mut self, batch: &[Record<'_>]) -> Result<(), SinkError> {
        let mut input = Vec::with_capacity(batch.len() * 160);
        for record in batch {
            write_command_line(&mut input, &record.origin(), &record.payload);
            input.push(b'\n');
        }
        self.run(&input)
    }
}

#[cfg(test)]
mod tests {
    use super::pipes::STDERR_KEPT;
    use super::*;
    use crate::message::KafkaMessage;

    fn record(id: i64) -> Record<'static> {
        Record::test_message(id, "p", 0, id)
    }

    fn sh(script: &str, timeout: Duration) -> CommandSink {
        CommandSink::new(
            &["sh".to_owned(), "-c".to_owned(), script.to_owned()],
            timeout,
        )
    }

    #[test]
    fn writes_json_lines_and_exit_zero_is_processed() {
        let dir = tempfile::tempdir().expect("dir");
        let out = dir.path().join("out");
        let mut sink = sh(
            &format!("cat >> {}", out.display()),
            Duration::from_secs(10),
        );
        sink.process(&record(1)).expect("processed");
        sink.process_batch(&[record(2), record(3)])
            .expect("processed");
        let text = std::fs::read_to_string(&out).expect("read");
        let ids: Vec<i64> = text
            .lines()
            .map(|l| {
                KafkaMessage::decode(l.as_bytes())
                    .expect("a message")
                    .message_id
            })
            .collect();
        assert_eq!(ids, [1, 2, 3]);
    }

    #[test]
    fn failing_status_is_retryable_but_65_is_not() {
        let error = sh("echo boom >&2; exit 1", Duration::from_secs(10))
            .process(&record(1))
            .expect_err("fails");
        assert!(error.is_retryable());
        assert!(error.to_string().contains("boom"), "{error}");
        let error = sh("exit 65", Duration::from_secs(10))
            .process(&record(1))
            .expect_err("rejects");
        assert!(!error.is_retryable(), "{error}");
    }

    /// 1 MiB to standard error in lines of 1 KiB, then `last`.
    fn flood_stderr_then(last: &str) -> String {
        format!(
            "i=0; while [ $i -lt 1024 ]; do printf '%01023d\\n' 0 >&2; i=$((i+1)); done; \
             echo {last} >&2"
        )
    }

    #[test]
    fn a_program_that_floods_its_stderr_and_exits_0_is_processed() {
        sh(
            &(flood_stderr_then("done") + "; exit 0"),
            Duration::from_secs(60),
        )
        .process(&record(1))
        .expect("read to the end, the run is a success");
    }

    #[test]
    fn a_failing_program_reports_the_end_of_its_stderr() {
        let error = sh(
            &(flood_stderr_then("the-last-words") + "; exit 3"),
            Duration::from_secs(60),
        )
        .process(&record(1))
        .expect_err("exit 3");
        match &error {
            SinkError::CommandExit { code, stderr, .. } => {
                assert_eq!(*code, Some(3), "{error}");
                assert!(stderr.ends_with("the-last-words"), "{stderr}");
                assert_eq!(stderr.chars().count(), STDERR_KEPT, "{stderr}");
            }
            other => panic!("{other}"),
        }
    }

    /// A program that exits at once without reading its input, however large: its exit
    /// status is the verdict, and the write that found no reader is not an error.
    #[test]
    fn a_program_that_ignores_its_input_is_judged_by_its_exit_status() {
        let batch: Vec<Record<'static>> = (0..20_000).map(record).collect();
        sh("exit 0", Duration::from_secs(60))
            .process_batch(&batch)
            .expect("exit 0");
        let error = sh("exit 65", Duration::from_secs(60))
            .process_batch(&batch)
            .expect_err("exit 65");
        assert!(!error.is_retryable(), "{error}");
    }

    /// A program that sleeps, and one that writes standard error without end: neither ends by
    /// itself, and each is killed at its timeout.
    #[test]
    fn a_run_past_its_timeout_is_killed_and_retryable() {
        for script in ["exec sleep 30", "yes to-stderr >&2"] {
            let started = Instant::now();
            let error = sh(script, Duration::from_millis(300))
                .process(&record(1))
                .expect_err("times out");
            assert!(matches!(error, SinkError::CommandTimeout { .. }), "{error}");
            assert!(error.is_retryable());
            assert!(started.elapsed() < Duration::from_secs(5), "{script}");
        }
    }
}
