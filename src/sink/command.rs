//! The `command` sink: runs a program per message (single consumer) or per batch (batch
//! consumer), writing the messages to its standard input as JSON lines; exit status 0 means
//! processed.
//!
//! One process per call, not one long-lived process: the exit status is then an unambiguous
//! verdict on exactly the messages given, a timeout can kill the run without leaving a
//! half-read stream behind, and a program that crashes or leaks affects one call only. The
//! price is a fork and exec per call; for throughput, use the batch consumer, which runs the
//! program once per batch.
//!
//! Exit status [`super::COMMAND_REJECTS`] (65, `EX_DATAERR`) says the input is bad: a permanent
//! failure, dead-lettered at once. Any other failing status, a program that cannot start, or
//! one killed by `timeout` is retryable. Its standard output is discarded; the end of its
//! standard error goes into the error.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{Record, Sink, SinkError};

/// How much of the standard error of a failed run the error keeps.
const STDERR_KEPT: usize = 512;

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

    fn run(&self, input: Vec<u8>) -> Result<(), SinkError> {
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| SinkError::CommandSpawn {
                command: self.shown.clone(),
                source,
            })?;
        // Written from a thread: a program that does not read its input must not block us
        // past the timeout. A program that exits early makes the write fail; its exit status
        // is the verdict.
        let stdin = child.stdin.take();
        let writer = std::thread::spawn(move || {
            if let Some(mut stdin) = stdin {
                let _ = stdin.write_all(&input);
            }
        });
        let stderr = child.stderr.take();
        let (tail_tx, tail_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(stderr) = stderr {
                let _ = stderr.take(64 * 1024).read_to_end(&mut text);
            }
            let _ = tail_tx.send(text);
        });
        let status = self.wait(&mut child)?;
        let _ = writer.join();
        if status.success() {
            return Ok(());
        }
        // A grandchild may hold standard error open: wait for it briefly only.
        let text = tail_rx
            .recv_timeout(Duration::from_millis(200))
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        let text = text.trim();
        let start = text
            .char_indices()
            .rev()
            .nth(STDERR_KEPT)
            .map_or(0, |(i, _)| i);
        Err(SinkError::CommandExit {
            command: self.shown.clone(),
            code: status.code(),
            stderr: text[start..].to_owned(),
        })
    }

    /// Waits for the run to end, or kills it once `timeout` has passed.
    fn wait(&self, child: &mut Child) -> Result<std::process::ExitStatus, SinkError> {
        let deadline = Instant::now() + self.timeout;
        let mut pause = Duration::from_millis(1);
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Ok(status),
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(SinkError::CommandTimeout {
                        command: self.shown.clone(),
                        timeout: self.timeout,
                    });
                }
                Ok(None) => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(20));
                }
                Err(source) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(SinkError::CommandSpawn {
                        command: self.shown.clone(),
                        source,
                    });
                }
            }
        }
    }
}

impl Sink for CommandSink {
    /// Every run is a process of its own: workers can run them side by side.
    fn another(&self) -> Option<Box<dyn Sink>> {
        Some(Box::new(self.clone()))
    }

    fn process(&mut self, record: &Record<'_>) -> Result<(), SinkError> {
        let mut input = record.message.encode();
        input.push(b'\n');
        self.run(input)
    }

    fn process_batch(&mut self, batch: &[Record<'_>]) -> Result<(), SinkError> {
        let mut input = Vec::with_capacity(batch.len() * 160);
        for record in batch {
            record.message.encode_into(&mut input);
            input.push(b'\n');
        }
        self.run(input)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::KafkaMessage;

    fn record(id: i64) -> Record<'static> {
        Record {
            partition: 0,
            offset: id,
            message: KafkaMessage::new(id, "c", "p"),
        }
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

    #[test]
    fn a_run_past_its_timeout_is_killed_and_retryable() {
        let started = Instant::now();
        let error = sh("exec sleep 30", Duration::from_millis(200))
            .process(&record(1))
            .expect_err("times out");
        assert!(matches!(error, SinkError::CommandTimeout { .. }), "{error}");
        assert!(error.is_retryable());
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
