//! Measuring a run: CPU time, peak RSS, the window, deliveries seen from outside.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::BenchError;

/// What one measured run reports (a child's last stdout line).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PhaseResult {
    pub messages: u64,
    /// Length of the measured window.
    pub seconds: f64,
    /// CPU time of the whole process over the window (every thread: librdkafka's too).
    pub cpu_user_s: f64,
    pub cpu_sys_s: f64,
    /// Highest resident set size of the process over its life (`VmHWM`).
    pub peak_rss_mb: f64,
    /// From client creation to the start of the window (joining the group, first fetch).
    pub startup_s: f64,
    /// End-to-end latencies in microseconds (roundtrip only), without the warm-up.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub latencies_us: Vec<u64>,
    /// Throughput as the program reports it itself, over its own window (Kafka's perf tools).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_msgs_per_s: Option<f64>,
}

impl PhaseResult {
    pub fn msgs_per_s(&self) -> f64 {
        if self.seconds > 0.0 {
            self.messages as f64 / self.seconds
        } else {
            0.0
        }
    }

    pub fn cpu_s(&self) -> f64 {
        self.cpu_user_s + self.cpu_sys_s
    }
}

/// CPU time of this process so far.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cpu {
    user: f64,
    sys: f64,
}

impl Cpu {
    pub fn now() -> Self {
        // SAFETY: getrusage only writes into the struct we pass.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
        if rc != 0 {
            return Cpu::default();
        }
        let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        Cpu {
            user: seconds(usage.ru_utime),
            sys: seconds(usage.ru_stime),
        }
    }
}

/// The process's peak resident set size in MiB (`VmHWM`), 0 where /proc is unavailable.
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmHWM:"))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<f64>()
                        .ok()
                })
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// A point in time with the CPU spent so far.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    pub at: Instant,
    /// The same moment on the wall clock (µs since the epoch), to compare with timestamps.
    pub unix_us: u64,
    pub cpu: Cpu,
}

impl Mark {
    pub fn now() -> Self {
        Mark {
            at: Instant::now(),
            unix_us: unix_micros(),
            cpu: Cpu::now(),
        }
    }
}

/// Latencies of the messages sent from `since_us` on (µs since the epoch); all of them when
/// none was (a run too short to get past the producer's start-up).
pub fn after_warmup(samples: Vec<(u64, u64)>, since_us: Option<u64>) -> Vec<u64> {
    let since = since_us.unwrap_or(0);
    let kept: Vec<u64> = samples
        .iter()
        .filter(|(sent, _)| *sent >= since)
        .map(|(_, latency)| *latency)
        .collect();
    if kept.is_empty() {
        samples.into_iter().map(|(_, latency)| latency).collect()
    } else {
        kept
    }
}

/// The measured window of a run: from `start` to `end`, with `created` when the clients were.
pub fn window(created: Instant, start: Mark, end: Mark, messages: u64) -> PhaseResult {
    PhaseResult {
        messages,
        seconds: end.at.duration_since(start.at).as_secs_f64(),
        cpu_user_s: end.cpu.user - start.cpu.user,
        cpu_sys_s: end.cpu.sys - start.cpu.sys,
        peak_rss_mb: 0.0,
        startup_s: start.at.duration_since(created).as_secs_f64(),
        latencies_us: Vec::new(),
        tool_msgs_per_s: None,
    }
}

/// Microseconds since the Unix epoch.
pub fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// How long a run may take before the bench gives up on it.
pub fn run_deadline(messages: u64) -> Duration {
    Duration::from_secs(60) + Duration::from_millis(messages)
}

/// Samples a delivery counter every 500 µs on its own thread, marking the first delivery and
/// the last. A producer's first delivery waits for its connections and, with idempotence, its
/// producer id (librdkafka retries that after 500 ms when no broker is up yet, so startup
/// varies from run to run); the throughput window starts there, the rest is `startup_s`.
pub struct DeliveryWatch {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<DeliveryMarks>,
}

#[derive(Debug, Default)]
pub struct DeliveryMarks {
    /// The first sample that saw a delivery, and the count it saw.
    pub first: Option<(Mark, u64)>,
    /// The first sample that saw every message delivered.
    pub last: Option<Mark>,
}

impl DeliveryWatch {
    pub fn start(counter: impl Fn() -> u64 + Send + 'static, target: u64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut marks = DeliveryMarks::default();
            loop {
                // Read before sampling: a stop that comes after the last delivery still gets
                // one sample that sees it. (Checking it first lost the last mark whenever this
                // thread was scheduled late, as on a loaded machine, and the run failed with
                // "not every message was delivered" although every message was.)
                let stop = stopped.load(Ordering::Relaxed);
                let delivered = counter();
                if delivered > 0 && marks.first.is_none() {
                    marks.first = Some((Mark::now(), delivered));
                }
                if delivered >= target {
                    marks.last = Some(Mark::now());
                    break;
                }
                if stop {
                    break;
                }
                std::thread::sleep(Duration::from_micros(500));
            }
            marks
        });
        DeliveryWatch { stop, thread }
    }

    pub fn finish(self) -> DeliveryMarks {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

impl DeliveryMarks {
    pub fn window(
        &self,
        created: Instant,
        messages: u64,
        phase: &'static str,
    ) -> Result<PhaseResult, BenchError> {
        match (self.first, self.last) {
            (Some((first, already)), Some(last)) if already < messages => {
                Ok(window(created, first, last, messages - already))
            }
            // Everything was acknowledged at once: too few messages to see a rate.
            (Some((first, _)), Some(last)) => Ok(window(created, first, last, 0)),
            _ => Err(BenchError::Child {
                phase,
                detail: "not every message was delivered".to_owned(),
            }),
        }
    }
}
