//! A tansu broker on a free loopback port, started per test and always stopped: on drop, and
//! by the kernel if the test process dies first (`PR_SET_PDEATHSIG`).

use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct TansuBroker {
    child: Child,
    /// What clients bootstrap from (the advertised address).
    pub bootstrap: String,
    /// Where tansu itself listens (plain TCP).
    pub listener: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl TansuBroker {
    /// Starts tansu with in-memory storage; waits until it accepts connections.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// As [`start`](Self::start), with extra `tansu broker` arguments (e.g. `--authentication`).
    pub fn start_with(extra: &[&str]) -> Self {
        Self::start_behind(None, extra)
    }

    /// A broker that advertises `advertised` (e.g. a TLS terminator in front of it) instead of
    /// its own listener; `bootstrap` is then the advertised address.
    pub fn start_behind(advertised: Option<&str>, extra: &[&str]) -> Self {
        let binary = std::env::var("TANSU_BIN").unwrap_or_else(|_| "tansu".to_owned());
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let advertised_url = advertised.map_or_else(|| url.clone(), |a| format!("tcp://{a}"));
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("tansu.log");
        let log_file = std::fs::File::create(&log).expect("log file");
        let mut command = Command::new(&binary);
        command
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &advertised_url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log file"))
            .stderr(log_file);
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command.spawn().unwrap_or_else(|e| {
            panic!("cannot start `{binary}` ({e}); install it with: scripts/test-broker.sh install")
        });
        let broker = TansuBroker {
            child,
            bootstrap: advertised.map_or_else(|| format!("127.0.0.1:{port}"), str::to_owned),
            listener: format!("127.0.0.1:{port}"),
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                panic!(
                    "tansu did not listen on {port} within 20 s; log:\n{}",
                    broker.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        broker
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for TansuBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
