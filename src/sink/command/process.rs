//! A run's program as a process group: started alone in a group of its own, watched for its
//! exit without being reaped (so its id, the group's, stays ours), then killed with whatever
//! is left of its group and reaped. The unsafe system calls of the command sink live here and
//! in `pipes`, apart from the verdict on a run.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::process::{Child, Command, ExitStatus};
use std::time::Duration;

/// How often the program is checked for its exit where the kernel cannot say (no pidfd).
pub(super) const EXIT_CHECK: Duration = Duration::from_millis(10);

/// A started program, alone in a process group of its own. However the run ends, dropping
/// it kills whatever is left of the group and reaps the program.
pub(super) struct Run {
    pub(super) child: Child,
    /// Readable once the program exited (a pidfd); `None` where the kernel has none, and
    /// the program is then checked every [`EXIT_CHECK`].
    pub(super) exit: Option<OwnedFd>,
    status: Option<ExitStatus>,
}

impl Run {
    pub(super) fn start(command: &mut Command) -> std::io::Result<Run> {
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
    pub(super) fn exited(&self) -> std::io::Result<bool> {
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
    pub(super) fn finish(&mut self) -> std::io::Result<ExitStatus> {
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
