//! Trace and span ids from a per-thread generator.
//!
//! `rand`'s thread-local generator is cryptographically strong and periodically
//! reseeds; ids only need to be unique and unpredictable enough to sample on, so each
//! thread runs wyrand (a 64-bit state, one multiplication per number; it passes
//! BigCrush and PractRand) seeded once from the operating system. A forked child that
//! does not exec would share its parent's state, which is why nothing here is used
//! before `main` forks.

use std::cell::Cell;

use clew_model::{SpanId, TraceId};
use rand::TryRngCore;

thread_local! {
    /// The generator's state; 0 until the thread's first id.
    static STATE: Cell<u64> = const { Cell::new(0) };
}

#[inline]
fn next_u64() -> u64 {
    // `Cell<u64>` needs no destructor, so this works even while the thread exits.
    STATE.with(|state| {
        let mut s = state.get();
        if s == 0 {
            s = seed();
        }
        s = s.wrapping_add(0xa076_1d64_78bd_642f);
        state.set(s);
        let t = u128::from(s) * u128::from(s ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) as u64) ^ (t as u64)
    })
}

#[cold]
fn seed() -> u64 {
    let seed = rand::rngs::OsRng.try_next_u64().unwrap_or_else(|_| {
        // No OS randomness (a sandbox without getrandom): mix the time and this
        // thread's address space so threads and processes still differ.
        let local = 0u8;
        let time = crate::clock::now_unix_nanos();
        time ^ (std::ptr::addr_of!(local) as u64).rotate_left(32) ^ u64::from(std::process::id())
    });
    seed | 1
}

/// A new UUIDv7 trace id whose timestamp is `unix_ms`: 48 bits of milliseconds, the
/// version and variant bits, and 74 random bits (the rightmost 56 of which W3C's
/// "random" trace flag promises, and the ratio sampler reads).
#[inline]
pub fn new_trace_id(unix_ms: u64) -> TraceId {
    let high = next_u64();
    let low = next_u64();
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&high.to_be_bytes());
    bytes[8..].copy_from_slice(&low.to_be_bytes());
    bytes[..6].copy_from_slice(&unix_ms.to_be_bytes()[2..]);
    bytes[6] = 0x70 | (bytes[6] & 0x0f);
    bytes[8] = 0x80 | (bytes[8] & 0x3f);
    TraceId(bytes)
}

/// A new non-zero span id.
#[inline]
pub fn new_span_id() -> SpanId {
    loop {
        let id = next_u64();
        if id != 0 {
            return SpanId(id.to_be_bytes());
        }
    }
}

/// 16 random hex digits, for message ids.
pub fn random_hex64() -> String {
    format!("{:016x}", next_u64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_are_uuidv7_with_the_given_time() {
        let id = new_trace_id(1_700_000_000_123);
        assert_eq!(id.v7_unix_ms(), Some(1_700_000_000_123));
        assert!(id.is_valid());
        assert_ne!(new_trace_id(1), new_trace_id(1));
    }

    #[test]
    fn span_ids_are_valid_and_distinct() {
        let a = new_span_id();
        let b = new_span_id();
        assert!(a.is_valid() && b.is_valid());
        assert_ne!(a, b);
    }
}
