//! Trace and span ids from a per-thread generator.
//!
//! `rand`'s thread-local generator is cryptographically strong and periodically
//! reseeds; ids only need to be unique, so each thread gets a small fast generator
//! seeded once from the operating system. A forked child that does not exec would share
//! its parent's state, which is why nothing here is used before `main` forks.

use std::cell::RefCell;

use clew_model::{SpanId, TraceId};
use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};

thread_local! {
    static RNG: RefCell<SmallRng> = RefCell::new(SmallRng::from_os_rng());
}

#[inline]
fn next_u64() -> u64 {
    RNG.with(|rng| rng.borrow_mut().next_u64())
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
