//! The program's pipes, driven from the calling thread without blocking: its input written as
//! far as the pipe takes it, its standard error read as it comes with only its end kept, and a
//! wait for whichever is ready first. No read or write can then keep a run past its timeout,
//! and no thread is left behind.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::process::Child;
use std::time::{Duration, Instant};

/// How much of the standard error of a failed run the error keeps, in characters.
pub(super) const STDERR_KEPT: usize = 512;
/// How many bytes of the end of standard error are held while it is read: enough for
/// [`STDERR_KEPT`] characters of up to 4 bytes each.
const STDERR_TAIL_BYTES: usize = 4 * STDERR_KEPT;
/// How much standard error one turn of the loop reads at most, so a program that writes it
/// without end cannot keep the loop from its deadline.
const STDERR_READ_PER_TURN: usize = 256 * 1024;
/// How long standard error is still read after a failed run ended, for a process outside the
/// run's group that holds it open.
pub(super) const STDERR_GRACE: Duration = Duration::from_millis(200);

/// The pipes of one run: the program's input until it is all written (or the program stops
/// reading it), and its standard error until it closes.
pub(super) struct Pipes {
    stdin: Option<File>,
    stderr: Option<File>,
    /// How much of the input was written.
    written: usize,
    tail: Tail,
}

impl Pipes {
    /// Takes the program's input and standard error from `child`, made non-blocking.
    pub(super) fn take(child: &mut Child) -> std::io::Result<Pipes> {
        let stdin = child
            .stdin
            .take()
            .map(|pipe| File::from(OwnedFd::from(pipe)));
        let stderr = child
            .stderr
            .take()
            .map(|pipe| File::from(OwnedFd::from(pipe)));
        for pipe in stdin.iter().chain(&stderr) {
            set_nonblocking(pipe.as_raw_fd())?;
        }
        Ok(Pipes {
            stdin,
            stderr,
            written: 0,
            tail: Tail::default(),
        })
    }

    /// Writes what the input pipe takes now of the rest of `input`.
    pub(super) fn write_input(&mut self, input: &[u8]) {
        if let Some(pipe) = &mut self.stdin {
            match write_some(pipe, &input[self.written..]) {
                Ok(n) => self.written += n,
                Err(e) if is_not_ready(&e) => {}
                // The program closed its input or exited: its exit status is the verdict.
                Err(_) => self.stdin = None,
            }
            if self.written == input.len() {
                // Closing our end is the end of its input.
                self.stdin = None;
            }
        }
    }

    /// Reads what standard error holds now, keeping its end, until it closes.
    pub(super) fn read_stderr(&mut self) {
        if let Some(pipe) = &mut self.stderr {
            if self.tail.read_available(pipe, STDERR_READ_PER_TURN) == Pipe::Closed {
                self.stderr = None;
            }
        }
    }

    /// Sleeps until the input can take more, standard error has more, `exit` is readable (the
    /// program exited), or `timeout` passed.
    pub(super) fn wait(&self, exit: Option<&OwnedFd>, timeout: Duration) -> std::io::Result<()> {
        let mut waiting_for = Vec::with_capacity(3);
        if let Some(pipe) = &self.stdin {
            waiting_for.push((pipe.as_raw_fd(), libc::POLLOUT));
        }
        if let Some(pipe) = &self.stderr {
            waiting_for.push((pipe.as_raw_fd(), libc::POLLIN));
        }
        if let Some(exit) = exit {
            waiting_for.push((exit.as_raw_fd(), libc::POLLIN));
        }
        wait_for_any(&waiting_for, timeout)
    }

    /// Closes our end of the input, if it is still open.
    pub(super) fn close_input(&mut self) {
        self.stdin = None;
    }

    /// The end of standard error, read on for at most `grace` while it is still open.
    pub(super) fn stderr_tail(mut self, grace: Duration) -> String {
        if let Some(mut pipe) = self.stderr.take() {
            self.tail.read_to_end(&mut pipe, Instant::now() + grace);
        }
        self.tail.text()
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
