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

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::{Record, Sink, SinkError};
use crate::payload::line::write_command_line;

/// How much of the standard error of a failed run the error keeps, in characters.
const STDERR_KEPT: usize = 512;
/// How many bytes of the end of standard error are held while it is read: enough for
/// [`STDERR_KEPT`] characters of up to 4 bytes each.
const STDERR_TAIL_BYTES: usize = 4 * STDERR_KEPT;
/// How much standard error one turn of the loop reads at most, so a program that writes it
/// without end cannot keep the loop from its deadline.
const STDERR_READ_PER_TURN: usize = 256 * 1024;
/// How long standard error is still read after a failed run ended, for a process outside the
/// run's group that holds it open.
const STDERR_GRACE: Duration = Duration::from_millis(200);
/// How often the program is checked for its exit where the kernel cannot say (no pidfd).
const EXIT_CHECK: Duration = Duration::from_millis(10);

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

    fn run(&self, input: &[u8]) -> Result<(), SinkError> {
        let deadline = Instant::now() + self.timeout;
        let run_failed = |source: std::io::Error| SinkError::CommandRun {
            command: self.shown.clone(),
            source,
        };
        let mut run = Run::start(
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
        })?;
        let mut stdin = run
            .child
            .stdin
            .take()
            .map(|pipe| File::from(OwnedFd::from(pipe)));
        let mut stderr = run
            .child
            .stderr
            .take()
            .map(|pipe| File::from(OwnedFd::from(pipe)));
        for pipe in stdin.iter().chain(&stderr) {
            set_nonblocking(pipe.as_raw_fd()).map_err(run_failed)?;
        }
        let mut tail = Tail::default();
        let mut written = 0;
        let exited = loop {
            if let Some(pipe) = &mut stdin {
                match write_some(pipe, &input[written..]) {
                    Ok(n) => written += n,
                    Err(e) if is_not_ready(&e) => {}
                    // The program closed its input or exited: its exit status is the verdict.
                    Err(_) => stdin = None,
                }
                if written == input.len() {
                    // Closing our end is the end of its input.
                    stdin = None;
                }
            }
            if let Some(pipe) = &mut stderr {
                if tail.read_available(pipe, STDERR_READ_PER_TURN) == Pipe::Closed {
                    stderr = None;
                }
            }
            if run.exited().map_err(run_failed)? {
                break true;
            }
            let now = Instant::now();
            if now >= deadline {
                break false;
            }
            let mut waiting_for = Vec::with_capacity(3);
            if let Some(pipe) = &stdin {
                waiting_for.push((pipe.as_raw_fd(), libc::POLLOUT));
            }
            if let Some(pipe) = &stderr {
                waiting_for.push((pipe.as_raw_fd(), libc::POLLIN));
            }
            let mut wait = deadline - now;
            match &run.exit {
                Some(exit) => waiting_for.push((exit.as_raw_fd(), libc::POLLIN)),
                None => wait = wait.min(EXIT_CHECK),
            }
            wait_for_any(&waiting_for, wait).map_err(run_failed)?;
        };
        drop(stdin);
        let status = run.finish().map_err(run_failed)?;
        if !exited {
            return Err(SinkError::CommandTimeout {
                command: self.shown.clone(),
                timeout: self.timeout,
            });
        }
        if status.success() {
            return Ok(());
        }
        if let Some(mut pipe) = stderr {
            tail.read_to_end(&mut pipe, Instant::now() + STDERR_GRACE);
        }
        Err(SinkError::CommandExit {
            command: self.shown.clone(),
            code: status.code(),
            stderr: tail.text(),
        })
    }
}

/// A started program, alone in a process group of its own. However the run ends, dropping
/// it kills whatever is left of the group and reaps the program.
struct Run {
    child: Child,
    /// Readable once the program exited (a pidfd); `None` where the kernel has none, and
    /// the program is then checked every [`EXIT_CHECK`].
    exit: Option<OwnedFd>,
    status: Option<ExitStatus>,
}

impl Run {
    fn start(command: &mut Command) -> std::io::Result<Run> {
        let child = command.spawn()?;
        let exit = pidfd(child.id());
        Ok(Run {
            child,
            exit,
            status: None,
        })
    }

    /// Whether the program exited, without reaping it: while it is unreaped its process id,
    /// which is its group's id too, cannot be given to another process, so killing the
    /// group afterwards cannot hit anyone else's.
    fn exited(&self) -> std::io::Result<bool> {
        if self.status.is_some() {
            return Ok(true);
        }
        // SAFETY: an all-zero siginfo_t is a valid value; waitid writes into it only.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let options = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
        // SAFETY: `info` outlives the call; the id is our own child's.
        let done = unsafe { libc::waitid(libc::P_PID, self.child.id(), &mut info, options) };
        if done == -1 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: waitid filled `info` for a child that changed state, else left it zeroed.
        Ok(unsafe { info.si_pid() } != 0)
    }

    /// Kills every process left in the program's group, the program too if it still runs,
    /// then reaps the program and returns its exit status (once the group is killed, a
    /// signal for a program that had not exited).
    fn finish(&mut self) -> std::io::Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        let group = self.child.id() as libc::pid_t;
        // SAFETY: a plain syscall. The group is the program's own (`process_group(0)`), and
        // its id stays ours until the program is reaped below.
        unsafe { libc::kill(-group, libc::SIGKILL) };
        // The program may have moved to another group: it is killed all the same.
        let _ = self.child.kill();
        let status = self.child.wait()?;
        self.status = Some(status);
        Ok(status)
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

/// A pidfd of process `pid`: readable once it exited. `None` on kernels without pidfd_open
/// (before Linux 5.3) and elsewhere than Linux.
fn pidfd(pid: u32) -> Option<OwnedFd> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: a plain syscall with no pointers.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        // SAFETY: a descriptor pidfd_open just opened, owned by nobody else.
        (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = pid;
        None
    }
}

fn set_nonblocking(fd: RawFd) -> std::io::Result<()> {
    // SAFETY: fcntl on a descriptor we own, no pointers.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above.
    if flags == -1 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } == -1 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Whether a read or write on a non-blocking pipe only has to be tried again later.
fn is_not_ready(error: &std::io::Error) -> bool {
    matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted)
}

/// Writes what the pipe takes now of `bytes`.
fn write_some(pipe: &mut File, bytes: &[u8]) -> std::io::Result<usize> {
    if bytes.is_empty() {
        return Ok(0);
    }
    pipe.write(bytes)
}

/// Sleeps until one of `fds` is ready for its `events` (or failed), or `timeout` passed.
fn wait_for_any(fds: &[(RawFd, libc::c_short)], timeout: Duration) -> std::io::Result<()> {
    let mut polled: Vec<libc::pollfd> = fds
        .iter()
        .map(|&(fd, events)| libc::pollfd {
            fd,
            events,
            revents: 0,
        })
        .collect();
    // Rounded up: a timeout rounded down to 0 ms would spin until the deadline.
    let millis = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int;
    // SAFETY: `polled` is a live array of `polled.len()` pollfd structures.
    let ready = unsafe { libc::poll(polled.as_mut_ptr(), polled.len() as libc::nfds_t, millis) };
    if ready == -1 {
        let error = std::io::Error::last_os_error();
        if error.kind() != ErrorKind::Interrupted {
            return Err(error);
        }
    }
    Ok(())
}

/// Whether a pipe may still deliver more.
#[derive(Debug, PartialEq, Eq)]
enum Pipe {
    Open,
    Closed,
}

/// The end of a program's standard error, read to its end.
#[derive(Default)]
struct Tail {
    bytes: Vec<u8>,
}

impl Tail {
    /// Reads what `pipe` holds now, up to `limit` bytes, keeping the end.
    fn read_available(&mut self, pipe: &mut File, limit: usize) -> Pipe {
        let mut chunk = [0u8; 8192];
        let mut read = 0;
        while read < limit {
            match pipe.read(&mut chunk) {
                Ok(0) => return Pipe::Closed,
                Ok(n) => {
                    read += n;
                    self.bytes.extend_from_slice(&chunk[..n]);
                    if self.bytes.len() > 2 * STDERR_TAIL_BYTES {
                        self.bytes.drain(..self.bytes.len() - STDERR_TAIL_BYTES);
                    }
                }
                Err(e) if is_not_ready(&e) => return Pipe::Open,
                Err(_) => return Pipe::Closed,
            }
        }
        Pipe::Open
    }

    /// Reads `pipe` until it closes or `deadline` passes.
    fn read_to_end(&mut self, pipe: &mut File, deadline: Instant) {
        while self.read_available(pipe, STDERR_READ_PER_TURN) == Pipe::Open {
            let now = Instant::now();
            if now >= deadline
                || wait_for_any(&[(pipe.as_raw_fd(), libc::POLLIN)], deadline - now).is_err()
            {
                return;
            }
        }
    }

    /// The last [`STDERR_KEPT`] characters, trimmed.
    fn text(&self) -> String {
        let start = self.bytes.len().saturating_sub(STDERR_TAIL_BYTES);
        let text = String::from_utf8_lossy(&self.bytes[start..]);
        let text = text.trim();
        let start = text
            .char_indices()
            .rev()
            .nth(STDERR_KEPT - 1)
            .map_or(0, |(i, _)| i);
        text[start..].to_owned()
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
    use super::*;
    use crate::message::KafkaMessage;
    use crate::payload::Payload;

    fn record(id: i64) -> Record<'static> {
        Record {
            topic: "t",
            partition: 0,
            offset: id,
            payload: Payload::Message(KafkaMessage::new(id, "c", "p")),
            key: None,
            headers: None,
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
