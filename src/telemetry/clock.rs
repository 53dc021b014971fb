//! The monotonic clock as plain nanoseconds, for what the loops time per message.
//!
//! It is the clock `std::time::Instant` reads (`CLOCK_MONOTONIC`), but a reading here is one
//! integer and the time between two readings one subtraction. An `Instant` is seconds and
//! nanoseconds, and every difference of two goes through a normalizing subtraction that is
//! not inlined: the single consumer's three differences per message cost it more instructions
//! than its clock readings did, about a thirtieth of its whole per-message work.

use std::time::Duration;

/// A reading of the monotonic clock, in nanoseconds from an arbitrary start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Tick(u64);

impl Tick {
    /// Reads the clock.
    pub fn now() -> Self {
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `clock_gettime` only writes the timespec it is given, which lives on this
        // stack frame. CLOCK_MONOTONIC exists wherever kafkad builds (Linux, macOS), so the
        // call cannot fail; were it to, the reading would be 0 and durations would be long,
        // never negative.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
        let seconds = u64::try_from(now.tv_sec).unwrap_or(0);
        let nanos = u64::try_from(now.tv_nsec).unwrap_or(0);
        Tick(seconds.saturating_mul(1_000_000_000).saturating_add(nanos))
    }

    /// Nanoseconds from `earlier` to this reading; 0 if `earlier` is later.
    pub fn nanos_since(self, earlier: Tick) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    /// The time from `earlier` to this reading; zero if `earlier` is later.
    pub fn duration_since(self, earlier: Tick) -> Duration {
        Duration::from_nanos(self.nanos_since(earlier))
    }

    /// Seconds from `earlier` to this reading; 0 if `earlier` is later.
    pub fn seconds_since(self, earlier: Tick) -> f64 {
        self.nanos_since(earlier) as f64 * 1e-9
    }

    /// Whether `duration` has passed from `earlier` to this reading.
    pub fn passed(self, earlier: Tick, duration: Duration) -> bool {
        u128::from(self.nanos_since(earlier)) >= duration.as_nanos()
    }

    /// The reading `duration` after this one.
    pub fn after(self, duration: Duration) -> Tick {
        Tick(
            self.0
                .saturating_add(u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn follows_the_clock_instant_reads() {
        let (tick, instant) = (Tick::now(), Instant::now());
        std::thread::sleep(Duration::from_millis(20));
        let (ticked, elapsed) = (Tick::now().nanos_since(tick), instant.elapsed());
        let apart = (elapsed.as_nanos() as i128 - i128::from(ticked)).abs();
        assert!(ticked >= 20_000_000, "{ticked} ns");
        assert!(apart < 1_000_000, "tick {ticked} ns, instant {elapsed:?}");
    }

    #[test]
    fn differences_never_go_negative() {
        let earlier = Tick::now();
        let later = earlier.after(Duration::from_millis(5));
        assert_eq!(later.nanos_since(earlier), 5_000_000);
        assert_eq!(earlier.nanos_since(later), 0);
        assert!(later.passed(earlier, Duration::from_millis(5)));
        assert!(!later.passed(earlier, Duration::from_millis(6)));
        assert!((later.seconds_since(earlier) - 0.005).abs() < 1e-12);
    }
}
