//! Span timestamps.
//!
//! Every timestamp is the wall clock read once at startup plus the monotonic time
//! elapsed since. Reading the monotonic clock costs the same as reading the wall clock,
//! but a span's end can then never come before its start when NTP steps the clock
//! during a span, and two spans of one process keep their true order.

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

struct Anchor {
    instant: Instant,
    unix_nanos: u64,
}

static ANCHOR: OnceLock<Anchor> = OnceLock::new();

fn anchor() -> &'static Anchor {
    ANCHOR.get_or_init(|| Anchor {
        instant: Instant::now(),
        unix_nanos: system_time_nanos(SystemTime::now()),
    })
}

/// Now, in Unix nanoseconds.
#[inline]
pub fn now_unix_nanos() -> u64 {
    let anchor = anchor();
    anchor.unix_nanos + anchor.instant.elapsed().as_nanos() as u64
}

/// A [`SystemTime`] in Unix nanoseconds (0 before the epoch).
pub fn system_time_nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_follows_the_wall_clock_and_never_goes_back() {
        let wall = system_time_nanos(SystemTime::now());
        let a = now_unix_nanos();
        let b = now_unix_nanos();
        assert!(b >= a);
        assert!(a.abs_diff(wall) < 5_000_000_000, "{a} vs {wall}");
    }
}
