//! Span timestamps.
//!
//! Every timestamp is the wall clock read once at startup plus the monotonic time
//! elapsed since. A span's end can then never come before its start when NTP steps the
//! clock during a span, and two spans of one process keep their true order.
//!
//! Reading the clock is most of what starting and ending a span costs, so:
//! - on 64-bit Linux the monotonic clock is read with `clock_gettime` directly, into
//!   nanoseconds (`Instant::elapsed` reads the same clock, then normalises a pair of
//!   `timespec`s into a `Duration`); elsewhere `Instant` is used;
//! - on x86-64 Linux, when the kernel itself keeps time with the TSC (it checked at
//!   boot that the TSCs of all CPUs are invariant and in step) and the CPU reports an
//!   invariant TSC, the TSC is read directly and converted with a rate measured against
//!   `CLOCK_MONOTONIC`. The vDSO's `clock_gettime` does the same read plus a fence and
//!   its own bookkeeping, at about twice the cost. The conversion is re-measured at
//!   growing intervals (10 ms after the first timestamp, then up to once a second) and
//!   steered so that it follows `CLOCK_MONOTONIC` (to within about a microsecond) and
//!   never steps backwards. The export thread reads the clock at least once a second,
//!   which keeps the measurement fresh while the process is idle. Should the TSC
//!   disagree with `CLOCK_MONOTONIC` by more than a millisecond although the clock was
//!   read recently, it is abandoned for `clock_gettime`.
//!
//! Why not a TSC clock crate (`fastant`, `quanta`): they measure the TSC's rate once at
//! startup and keep it, so a long-running process drifts from the system clock by the
//! measurement's error (tens of ppm: a tenth of a second per hour), which shows up as
//! clock skew between the services of one trace. This one keeps following
//! `CLOCK_MONOTONIC`, NTP's rate corrections included.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

struct Anchor {
    /// The monotonic clock at startup, in nanoseconds.
    monotonic: u64,
    unix_nanos: u64,
}

static ANCHOR: OnceLock<Anchor> = OnceLock::new();

#[inline]
fn anchor() -> &'static Anchor {
    ANCHOR.get_or_init(|| Anchor {
        monotonic: monotonic_nanos(),
        unix_nanos: system_time_nanos(SystemTime::now()),
    })
}

/// Now, in Unix nanoseconds.
#[inline]
pub fn now_unix_nanos() -> u64 {
    let anchor = anchor();
    anchor.unix_nanos + monotonic_nanos().saturating_sub(anchor.monotonic)
}

/// A [`SystemTime`] in Unix nanoseconds (0 before the epoch).
pub fn system_time_nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// The monotonic clock in nanoseconds since an arbitrary point.
#[inline]
fn monotonic_nanos() -> u64 {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    {
        tsc::monotonic_nanos()
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    {
        os_monotonic_nanos()
    }
}

#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
mod sys {
    /// `struct timespec` on 64-bit Linux.
    #[repr(C)]
    pub struct Timespec {
        pub tv_sec: i64,
        pub tv_nsec: i64,
    }

    pub const CLOCK_MONOTONIC: i32 = 1;

    unsafe extern "C" {
        pub fn clock_gettime(clock: i32, time: *mut Timespec) -> i32;
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds (since boot, on Linux).
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
#[inline]
fn os_monotonic_nanos() -> u64 {
    let mut time = sys::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `time` is a valid, writable `struct timespec`; CLOCK_MONOTONIC always
    // exists on Linux, so the call cannot fail (and on failure `time` stays zero).
    unsafe { sys::clock_gettime(sys::CLOCK_MONOTONIC, &mut time) };
    (time.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(time.tv_nsec as u64)
}

/// The monotonic clock in nanoseconds since the first call.
#[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
fn os_monotonic_nanos() -> u64 {
    static START: OnceLock<std::time::Instant> = OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_nanos() as u64
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod tsc {
    //! The TSC as a monotonic clock: `ns = base_ns + (tsc - base_tsc) * mult / 2^32`,
    //! with the three parameters published through a sequence lock, so reading the
    //! clock takes no lock and writes nothing shared.

    use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering, fence};

    use super::os_monotonic_nanos;

    /// Not looked at yet.
    const UNKNOWN: u8 = 0;
    /// Usable, rate being measured: `clock_gettime` until then.
    const MEASURING: u8 = 1;
    /// In use.
    const RUNNING: u8 = 2;
    /// Not usable here: `clock_gettime` for good.
    const UNUSABLE: u8 = 3;

    /// How long the first measurement of the rate lasts, and then the interval
    /// between re-measurements, which doubles up to `MAX_INTERVAL_NS`.
    const FIRST_INTERVAL_NS: u64 = 10_000_000;
    const MAX_INTERVAL_NS: u64 = 1_000_000_000;
    /// A reading of both clocks whose `clock_gettime` calls lie further apart than
    /// this was interrupted; it is retried.
    const MAX_READ_SPREAD_NS: u64 = 2_000;
    /// Beyond this disagreement with `CLOCK_MONOTONIC` the TSC is not trusted, unless
    /// the clock was last read more than `LONG_GAP_NS` ago.
    const MAX_ERROR_NS: u64 = 1_000_000;
    const LONG_GAP_NS: u64 = 10_000_000_000;

    static STATE: AtomicU8 = AtomicU8::new(UNKNOWN);
    /// Even while the parameters below are stable, odd while they change.
    static SEQ: AtomicU64 = AtomicU64::new(0);
    static BASE_TSC: AtomicU64 = AtomicU64::new(0);
    static BASE_NS: AtomicU64 = AtomicU64::new(0);
    /// Nanoseconds per tick, times 2^32.
    static MULT: AtomicU64 = AtomicU64::new(0);
    /// The TSC after which the rate is re-measured; 0 sends every read to the slow
    /// path (while measuring, and when the TSC is not used).
    static NEXT_TSC: AtomicU64 = AtomicU64::new(0);
    /// Held by the one thread that updates the parameters.
    static UPDATING: AtomicBool = AtomicBool::new(false);
    // The last measurement point and interval; only the updating thread uses them.
    static REF_TSC: AtomicU64 = AtomicU64::new(0);
    static REF_NS: AtomicU64 = AtomicU64::new(0);
    static INTERVAL_NS: AtomicU64 = AtomicU64::new(FIRST_INTERVAL_NS);

    #[inline]
    fn rdtsc() -> u64 {
        // SAFETY: RDTSC exists on every x86-64 CPU and has no side effects.
        unsafe { core::arch::x86_64::_rdtsc() }
    }

    struct Params {
        base_tsc: u64,
        base_ns: u64,
        mult: u64,
        next_tsc: u64,
    }

    impl Params {
        /// The time at `tsc`, which may lie a little before `base_tsc` (another CPU's
        /// TSC, or an older reading).
        #[inline]
        fn at(&self, tsc: u64) -> u64 {
            if tsc >= self.base_tsc {
                self.base_ns
                    + ((u128::from(tsc - self.base_tsc) * u128::from(self.mult)) >> 32) as u64
            } else {
                self.base_ns.saturating_sub(
                    ((u128::from(self.base_tsc - tsc) * u128::from(self.mult)) >> 32) as u64,
                )
            }
        }
    }

    /// A consistent copy of the parameters, or `None` while they are being changed.
    #[inline]
    fn params() -> Option<Params> {
        let seq = SEQ.load(Ordering::Acquire);
        let params = Params {
            base_tsc: BASE_TSC.load(Ordering::Relaxed),
            base_ns: BASE_NS.load(Ordering::Relaxed),
            mult: MULT.load(Ordering::Relaxed),
            next_tsc: NEXT_TSC.load(Ordering::Relaxed),
        };
        fence(Ordering::Acquire);
        (seq & 1 == 0 && SEQ.load(Ordering::Relaxed) == seq).then_some(params)
    }

    fn publish(params: &Params) {
        let seq = SEQ.load(Ordering::Relaxed);
        SEQ.store(seq + 1, Ordering::Relaxed);
        fence(Ordering::Release);
        BASE_TSC.store(params.base_tsc, Ordering::Relaxed);
        BASE_NS.store(params.base_ns, Ordering::Relaxed);
        MULT.store(params.mult, Ordering::Relaxed);
        NEXT_TSC.store(params.next_tsc, Ordering::Relaxed);
        SEQ.store(seq + 2, Ordering::Release);
    }

    #[inline]
    pub(super) fn monotonic_nanos() -> u64 {
        let tsc = rdtsc();
        if let Some(params) = params()
            && tsc < params.next_tsc
            && tsc >= params.base_tsc
        {
            return params.base_ns
                + ((u128::from(tsc - params.base_tsc) * u128::from(params.mult)) >> 32) as u64;
        }
        slow(tsc)
    }

    #[cold]
    #[inline(never)]
    fn slow(tsc: u64) -> u64 {
        match STATE.load(Ordering::Acquire) {
            UNUSABLE => os_monotonic_nanos(),
            MEASURING => {
                let now = os_monotonic_nanos();
                if now < REF_NS.load(Ordering::Relaxed) + FIRST_INTERVAL_NS {
                    return now;
                }
                try_update().unwrap_or(now)
            }
            RUNNING => try_update().unwrap_or_else(|| published(tsc)),
            _ => try_update().unwrap_or_else(os_monotonic_nanos),
        }
    }

    /// The time at `tsc` from the published parameters, waiting out an update in
    /// progress (a few stores by another thread).
    fn published(tsc: u64) -> u64 {
        for _ in 0..1_000 {
            if let Some(params) = params() {
                return params.at(tsc);
            }
            std::hint::spin_loop();
        }
        os_monotonic_nanos()
    }

    /// Runs `update` unless another thread is doing so.
    fn try_update() -> Option<u64> {
        UPDATING
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .ok()?;
        let now = update(STATE.load(Ordering::Relaxed));
        UPDATING.store(false, Ordering::Release);
        now
    }

    /// Both clocks at (nearly) the same moment: the TSC and the latest possible
    /// `CLOCK_MONOTONIC` for it, or `None` if the reading was interrupted.
    fn read_both() -> Option<(u64, u64)> {
        let before = os_monotonic_nanos();
        let tsc = rdtsc();
        let after = os_monotonic_nanos();
        (after.saturating_sub(before) <= MAX_READ_SPREAD_NS).then_some((tsc, after))
    }

    /// Moves the state machine on; returns the time now, if it read it.
    fn update(state: u8) -> Option<u64> {
        match state {
            UNKNOWN => {
                if !tsc_usable() {
                    STATE.store(UNUSABLE, Ordering::Release);
                    return None;
                }
                let (tsc, ns) = read_both()?;
                REF_TSC.store(tsc, Ordering::Relaxed);
                REF_NS.store(ns, Ordering::Relaxed);
                STATE.store(MEASURING, Ordering::Release);
                Some(ns)
            }
            MEASURING => {
                let (tsc, ns) = read_both()?;
                let ref_tsc = REF_TSC.load(Ordering::Relaxed);
                let ref_ns = REF_NS.load(Ordering::Relaxed);
                let Some(mult) = rate(ref_tsc, ref_ns, tsc, ns) else {
                    STATE.store(UNUSABLE, Ordering::Release);
                    return Some(ns);
                };
                // `ns` is no earlier than any `CLOCK_MONOTONIC` read before `tsc`, so
                // the switch does not step back.
                schedule(tsc, ns, ns, mult, FIRST_INTERVAL_NS * 2);
                STATE.store(RUNNING, Ordering::Release);
                Some(ns)
            }
            RUNNING => {
                let current = params()?;
                let (tsc, ns) = read_both()?;
                let predicted = current.at(tsc);
                if tsc < current.next_tsc {
                    // Another thread just did it.
                    return Some(predicted);
                }
                let ref_tsc = REF_TSC.load(Ordering::Relaxed);
                let ref_ns = REF_NS.load(Ordering::Relaxed);
                let measured = rate(ref_tsc, ref_ns, tsc, ns);
                let error = ns as i128 - predicted as i128;
                let Some(measured) =
                    measured.filter(|_| error.unsigned_abs() <= MAX_ERROR_NS as u128)
                else {
                    if let Some(measured) = measured
                        && ns.saturating_sub(ref_ns) >= LONG_GAP_NS
                    {
                        // Nobody read the clock for a long while, during which the OS
                        // clock's pace (NTP's correction) may have changed: restart
                        // from it, which may step the clock this once.
                        schedule(tsc, ns, ns, measured, FIRST_INTERVAL_NS * 2);
                        return Some(ns);
                    }
                    // The TSC jumped or changed pace: go back to the OS clock, which
                    // may step the clock this once.
                    STATE.store(UNUSABLE, Ordering::Release);
                    publish(&Params {
                        next_tsc: 0,
                        ..current
                    });
                    return Some(ns.max(predicted));
                };
                // Continue from the predicted time (so the clock never steps), at the
                // measured pace corrected to absorb the error over the next interval
                // (by at most 5% of it).
                let interval = (INTERVAL_NS.load(Ordering::Relaxed) * 2).min(MAX_INTERVAL_NS);
                let bound = (interval / 20) as i128;
                let corrected = (interval as i128 + error.clamp(-bound, bound)) as u128;
                let mult = (u128::from(measured) * corrected / u128::from(interval)) as u64;
                schedule(tsc, predicted, ns, mult.max(1), interval);
                Some(predicted)
            }
            _ => None,
        }
    }

    /// Nanoseconds per tick times 2^32 between two readings, if the TSC advanced.
    fn rate(tsc0: u64, ns0: u64, tsc1: u64, ns1: u64) -> Option<u64> {
        let ticks = tsc1.checked_sub(tsc0).filter(|&t| t > 0)?;
        let nanos = ns1.checked_sub(ns0).filter(|&n| n > 0)?;
        let mult = (u128::from(nanos) << 32) / u128::from(ticks);
        u64::try_from(mult).ok().filter(|&m| m > 0)
    }

    /// Publishes new parameters from the reading (`tsc`, `true_ns`), continuing at
    /// `base_ns`, and the next re-measurement `interval` later.
    fn schedule(tsc: u64, base_ns: u64, true_ns: u64, mult: u64, interval: u64) {
        let interval_ticks =
            ((u128::from(interval) << 32) / u128::from(mult)).min(u128::from(u64::MAX / 2)) as u64;
        REF_TSC.store(tsc, Ordering::Relaxed);
        REF_NS.store(true_ns, Ordering::Relaxed);
        INTERVAL_NS.store(interval, Ordering::Relaxed);
        publish(&Params {
            base_tsc: tsc,
            base_ns,
            mult,
            next_tsc: tsc.saturating_add(interval_ticks),
        });
    }

    /// Whether the TSC can serve as a clock here: the CPU says it is invariant (it
    /// ticks at a constant rate in every power state) and the kernel keeps time with
    /// it (which it only does after checking that all CPUs' TSCs agree).
    fn tsc_usable() -> bool {
        use core::arch::x86_64::__cpuid;
        // SAFETY: CPUID exists on every x86-64 CPU; leaf 0x80000007 is only read when
        // the maximum extended leaf says it exists. (`__cpuid` is safe to call since
        // Rust 1.94, unsafe before.)
        #[allow(unused_unsafe)]
        let invariant = unsafe {
            __cpuid(0x8000_0000).eax >= 0x8000_0007 && __cpuid(0x8000_0007).edx & (1 << 8) != 0
        };
        let kernel_uses_tsc = std::fs::read_to_string(
            "/sys/devices/system/clocksource/clocksource0/current_clocksource",
        )
        .is_ok_and(|source| source.trim() == "tsc");
        invariant && kernel_uses_tsc
    }

    #[cfg(test)]
    pub(super) fn running() -> bool {
        STATE.load(Ordering::Acquire) == RUNNING
    }
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
        let mut last = b;
        let started = std::time::Instant::now();
        // Long enough for the TSC's rate to be measured and re-measured.
        while started.elapsed() < std::time::Duration::from_millis(100) {
            let now = now_unix_nanos();
            assert!(now >= last, "went back from {last} to {now}");
            last = now;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        let slept = now_unix_nanos() - last;
        assert!(
            (20_000_000..2_000_000_000).contains(&slept),
            "slept 20 ms, measured {slept} ns"
        );
    }

    #[test]
    fn the_clock_agrees_with_the_os_monotonic_clock() {
        let started = std::time::Instant::now();
        while started.elapsed() < std::time::Duration::from_millis(50) {
            let _ = monotonic_nanos();
        }
        for _ in 0..5 {
            std::thread::sleep(std::time::Duration::from_millis(10));
            let before = os_monotonic_nanos();
            let ours = monotonic_nanos();
            let after = os_monotonic_nanos();
            // Within a reading's spread plus the TSC's steering error (a few µs at
            // most right after the first measurement, under load).
            assert!(
                ours + 200_000 >= before && ours <= after + 200_000,
                "{before} <= {ours} <= {after}"
            );
        }
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        eprintln!("TSC clock in use: {}", tsc::running());
    }
}
