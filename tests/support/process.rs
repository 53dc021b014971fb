//! The real `kafkad` binary as OS processes, the way operators run it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use kafkad::sink::ProcessedLine;

/// One running `kafkad` process; killed on drop if still running.
pub struct Kafkad {
    pub name: String,
    child: Child,
    pub log: PathBuf,
}

impl Kafkad {
    /// Starts `kafkad <args>` with exactly `env` as its KAFKAD_* environment; stderr goes to
    /// `<dir>/<name>.log` (appended, so a restarted process keeps one log).
    pub fn spawn(name: &str, dir: &Path, args: &[&str], env: &[(&str, String)]) -> Self {
        Self::spawn_with_log_filter(name, dir, args, env, "info,librdkafka=warn")
    }

    /// As [`spawn`](Self::spawn), with `RUST_LOG` set to `filter`.
    pub fn spawn_with_log_filter(
        name: &str,
        dir: &Path,
        args: &[&str],
        env: &[(&str, String)],
        filter: &str,
    ) -> Self {
        let log = dir.join(format!("{name}.log"));
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log file");
        let mut command = kafkad_command(args);
        command
            .envs(env.iter().map(|(k, v)| (k.to_string(), v.clone())))
            .env("RUST_LOG", filter)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log"))
            .stderr(log_file);
        let child = command.spawn().expect("kafkad starts");
        Kafkad {
            name: name.to_owned(),
            child,
            log,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends a signal (SIGTERM for a graceful stop, SIGKILL for a crash).
    pub fn signal(&self, signal: i32) {
        // SAFETY: plain kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.pid(), signal) };
        assert_eq!(rc, 0, "kill({}, {signal}) failed", self.pid());
    }

    /// Waits for the process to exit, at most `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() > deadline {
                panic!(
                    "{} did not exit within {timeout:?}; log tail:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn log_tail(&self) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// The value of `field=` on the last log line containing `message`.
    pub fn logged_field(&self, message: &str, field: &str) -> Option<u64> {
        let text = self.log_text();
        let line = text.lines().rev().find(|l| l.contains(message))?;
        let start = line.find(&format!("{field}="))? + field.len() + 1;
        line[start..]
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    }
}

impl Drop for Kafkad {
    fn drop(&mut self) {
        if self.running() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// How many records a jsonl sink file holds so far (its complete lines), without parsing them.
pub fn count_jsonl(path: &Path) -> usize {
    std::fs::read(path)
        .map(|bytes| bytes.iter().filter(|b| **b == b'\n').count())
        .unwrap_or(0)
}

/// `kafkad <args>` from the repository root, without the `KAFKAD_*` settings and `RUST_LOG` of
/// the shell running the tests: a test states every setting its process gets.
pub fn kafkad_command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kafkad"));
    command.args(args).current_dir(env!("CARGO_MANIFEST_DIR"));
    for (var, _) in std::env::vars() {
        if var.starts_with("KAFKAD_") || var == "RUST_LOG" {
            command.env_remove(var);
        }
    }
    command
}

/// Runs `kafkad <args>` with `env` (see [`kafkad_command`]) to completion.
pub fn run_kafkad(args: &[&str], env: &[(&str, &str)]) -> Output {
    kafkad_command(args)
        .envs(env.iter().copied())
        .output()
        .expect("kafkad runs")
}

/// Every line of a jsonl sink file (empty if it does not exist yet), skipping a line cut short
/// by a process killed in the middle of a write (its records were not acknowledged, and are
/// written again whole); any other line that is not a record fails the test.
pub fn read_jsonl(path: &Path) -> Vec<ProcessedLine> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| match serde_json::from_str(l) {
            Ok(line) => Some(line),
            Err(e) if e.is_eof() => {
                println!("{}: a line cut short by a kill: {l}", path.display());
                None
            }
            Err(e) => panic!("bad line in {}: {e}: {l}", path.display()),
        })
        .collect()
}
