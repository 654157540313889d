//! Head sampling: whether a new span is recorded and exported.
//!
//! The decision travels with the trace in the W3C `sampled` flag, so with
//! [`Sampler::parent_based`] every process keeps or drops a trace as a whole.

use clew_model::TraceId;

use crate::SpanContext;

/// Decides whether a new span is recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampler(Rule);

#[derive(Debug, Clone, PartialEq)]
enum Rule {
    AlwaysOn,
    AlwaysOff,
    /// Keep traces whose id's low 56 bits fall below `threshold` out of 2^56.
    Ratio {
        ratio: f64,
        threshold: u64,
    },
    ParentBased(Box<Rule>),
}

const RANDOM_BITS: u32 = 56;

impl Sampler {
    /// Record everything.
    pub fn always_on() -> Sampler {
        Sampler(Rule::AlwaysOn)
    }

    /// Record nothing (spans still get ids and propagate, marked not sampled).
    pub fn always_off() -> Sampler {
        Sampler(Rule::AlwaysOff)
    }

    /// Record a fraction of traces, decided from the trace id alone: every process that
    /// uses the same ratio makes the same decision for the same trace, with no need to
    /// agree on anything but the ratio. `ratio` is clamped to `0.0..=1.0`.
    ///
    /// The decision reads the rightmost 56 bits of the trace id, which W3C's random
    /// flag and clew's UUIDv7 ids both guarantee are random.
    pub fn ratio(ratio: f64) -> Sampler {
        let ratio = if ratio.is_nan() {
            0.0
        } else {
            ratio.clamp(0.0, 1.0)
        };
        let threshold = if ratio >= 1.0 {
            1u64 << RANDOM_BITS
        } else {
            (ratio * (1u64 << RANDOM_BITS) as f64) as u64
        };
        Sampler(Rule::Ratio { ratio, threshold })
    }

    /// Follow the parent's sampled flag when there is a parent (local or remote), and
    /// `root` for new traces.
    pub fn parent_based(root: Sampler) -> Sampler {
        let root = match root.0 {
            Rule::ParentBased(inner) => *inner,
            other => other,
        };
        Sampler(Rule::ParentBased(Box::new(root)))
    }

    /// Whether a span with this parent in this trace is recorded.
    #[inline]
    pub fn should_sample(&self, parent: Option<&SpanContext>, trace_id: TraceId) -> bool {
        self.0.decide(parent, trace_id)
    }
}

/// Parent-based, always on for roots: what OpenTelemetry SDKs default to.
impl Default for Sampler {
    fn default() -> Self {
        Sampler::parent_based(Sampler::always_on())
    }
}

impl Rule {
    #[inline]
    fn decide(&self, parent: Option<&SpanContext>, trace_id: TraceId) -> bool {
        match self {
            Rule::AlwaysOn => true,
            Rule::AlwaysOff => false,
            Rule::Ratio { threshold, .. } => random_bits(trace_id) < *threshold,
            Rule::ParentBased(root) => match parent {
                Some(parent) => parent.is_sampled(),
                None => root.decide(None, trace_id),
            },
        }
    }
}

fn random_bits(trace_id: TraceId) -> u64 {
    let mut low = [0u8; 8];
    low[1..].copy_from_slice(&trace_id.0[9..]);
    u64::from_be_bytes(low)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::new_trace_id;
    use clew_model::SpanId;

    fn trace_with_random_bits(bits: u64) -> TraceId {
        let mut id = [0x11u8; 16];
        id[9..].copy_from_slice(&bits.to_be_bytes()[1..]);
        TraceId(id)
    }

    #[test]
    fn always_on_and_off() {
        let id = new_trace_id(1);
        assert!(Sampler::always_on().should_sample(None, id));
        assert!(!Sampler::always_off().should_sample(None, id));
    }

    #[test]
    fn ratio_is_decided_by_the_trace_id_alone() {
        let half = Sampler::ratio(0.5);
        assert!(half.should_sample(None, trace_with_random_bits(0)));
        assert!(half.should_sample(None, trace_with_random_bits((1 << 55) - 1)));
        assert!(!half.should_sample(None, trace_with_random_bits(1 << 55)));
        assert!(!half.should_sample(None, trace_with_random_bits((1 << 56) - 1)));
        // The high bits (the UUIDv7 timestamp) do not matter.
        let mut id = trace_with_random_bits(1);
        id.0[0] = 0xff;
        assert!(half.should_sample(None, id));

        assert!(Sampler::ratio(1.0).should_sample(None, trace_with_random_bits((1 << 56) - 1)));
        assert!(!Sampler::ratio(0.0).should_sample(None, trace_with_random_bits(0)));
        assert!(!Sampler::ratio(f64::NAN).should_sample(None, trace_with_random_bits(0)));
        assert!(Sampler::ratio(7.0).should_sample(None, trace_with_random_bits(123)));
    }

    #[test]
    fn ratio_keeps_about_the_requested_fraction() {
        let sampler = Sampler::ratio(0.25);
        let kept = (0..20_000)
            .filter(|_| sampler.should_sample(None, new_trace_id(1)))
            .count();
        assert!((4_000..6_000).contains(&kept), "kept {kept} of 20000");
    }

    #[test]
    fn parent_based_follows_the_parent_and_uses_the_root_sampler_otherwise() {
        let sampler = Sampler::parent_based(Sampler::always_off());
        let id = new_trace_id(1);
        let sampled = SpanContext::remote(id, SpanId([1; 8]), 1, None);
        let unsampled = SpanContext::remote(id, SpanId([1; 8]), 0, None);
        assert!(sampler.should_sample(Some(&sampled), id));
        assert!(!sampler.should_sample(Some(&unsampled), id));
        assert!(!sampler.should_sample(None, id));
        assert!(Sampler::default().should_sample(None, id));
        assert!(!Sampler::default().should_sample(Some(&unsampled), id));
        // A ratio without parent-based ignores the parent.
        assert!(Sampler::ratio(1.0).should_sample(Some(&unsampled), id));
        assert_eq!(
            Sampler::parent_based(Sampler::parent_based(Sampler::always_on())),
            Sampler::default()
        );
    }
}
