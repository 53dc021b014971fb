//! The demo's live progress line.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use super::{Consumer, BATCH_GROUP, SINGLE_GROUP};

/// The live progress line on stderr: redrawn in place on a terminal, a line every few
/// seconds otherwise (CI logs).
pub(super) struct Progress {
    enabled: bool,
    terminal: bool,
    last_line: Instant,
    /// Messages the producers were asked for.
    target: u64,
}

impl Progress {
    pub(super) fn new(enabled: bool, target: u64) -> Self {
        Progress {
            enabled,
            terminal: std::io::stderr().is_terminal(),
            last_line: Instant::now(),
            target,
        }
    }

    pub(super) fn show(&mut self, delivered: u64, consumers: &[Consumer]) {
        if !self.enabled {
            return;
        }
        let by_group = |group: &str| -> u64 {
            consumers
                .iter()
                .filter(|c| c.group == group)
                .map(|c| c.metrics.processed.get())
                .sum()
        };
        let dead_lettered: u64 = consumers
            .iter()
            .map(|c| c.metrics.dead_lettered.get())
            .sum();
        let line = format!(
            "produced {delivered}/{} | processed: {SINGLE_GROUP} {}, {BATCH_GROUP} {} | dead-lettered {dead_lettered}",
            self.target,
            by_group(SINGLE_GROUP),
            by_group(BATCH_GROUP)
        );
        let mut err = std::io::stderr().lock();
        if self.terminal {
            let _ = write!(err, "\r\x1b[2K{line}");
        } else if self.last_line.elapsed() >= Duration::from_secs(2) {
            let _ = writeln!(err, "{line}");
            self.last_line = Instant::now();
        }
        let _ = err.flush();
    }

    pub(super) fn finish(&self) {
        if self.enabled && self.terminal {
            eprintln!();
        }
    }
}
