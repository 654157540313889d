use std::fmt;
use std::str::FromStr;

use clew_model::{SpanId, TraceId};

use crate::trim_ows;

/// The caller may have recorded trace data.
pub const FLAG_SAMPLED: u8 = 0x01;
/// At least the right-most 7 bytes of the trace-id are random (Trace Context Level 2).
pub const FLAG_RANDOM: u8 = 0x02;
/// Every flag this implementation understands. The spec requires the other bits to be
/// zero on outgoing headers, so parsing and formatting both clear them.
pub const KNOWN_FLAGS: u8 = FLAG_SAMPLED | FLAG_RANDOM;

/// The only version this implementation emits.
const VERSION_00: u8 = 0x00;
const FORBIDDEN_VERSION: u8 = 0xff;
/// `vv-<32 hex>-<16 hex>-ff`: the exact length of a version 00 header, and the minimum
/// length of any future version.
const VERSION_00_LEN: usize = 55;
const TRACE_ID_START: usize = 3;
const PARENT_ID_START: usize = 36;
const FLAGS_START: usize = 53;

/// Why a `traceparent` value was rejected. Any of these means: start a new trace, and
/// ignore `tracestate`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceParentError {
    #[error("the version must be two lowercase hex digits followed by '-'")]
    Version,
    #[error("version ff is forbidden")]
    ForbiddenVersion,
    #[error("traceparent version {version:02x} must be {expected} characters, got {got}")]
    Length {
        version: u8,
        expected: &'static str,
        got: usize,
    },
    #[error("the trace-id must be 32 lowercase hex digits")]
    TraceIdFormat,
    #[error("the trace-id must not be all zeros")]
    ZeroTraceId,
    #[error("the parent-id must be 16 lowercase hex digits")]
    ParentIdFormat,
    #[error("the parent-id must not be all zeros")]
    ZeroParentId,
    #[error("the trace-flags must be two lowercase hex digits")]
    FlagsFormat,
    #[error("expected '-' at offset {0}")]
    Delimiter(usize),
}

/// The W3C `traceparent` header: which trace this request belongs to and which span
/// (the parent) sent it.
///
/// `version` records the version the header arrived with; formatting always emits
/// version `00`, which is the "downgrade" mutation the spec prescribes for headers of a
/// higher version. `flags` only ever holds [`KNOWN_FLAGS`] bits once parsed or
/// formatted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    pub version: u8,
    pub trace_id: TraceId,
    pub parent_id: SpanId,
    pub flags: u8,
}

impl TraceParent {
    /// A version 00 traceparent. Unknown flag bits are cleared.
    pub fn new(trace_id: TraceId, parent_id: SpanId, flags: u8) -> TraceParent {
        TraceParent {
            version: VERSION_00,
            trace_id,
            parent_id,
            flags: flags & KNOWN_FLAGS,
        }
    }

    /// Parses a `traceparent` header value.
    ///
    /// Surrounding spaces and tabs (HTTP optional whitespace) are ignored. Version 00
    /// must be exactly 55 characters. A higher version is parsed by its first four
    /// fields, provided the header is at least 55 characters and anything after the
    /// flags starts with `-`, because future versions may only append fields.
    pub fn parse(header: &str) -> Result<TraceParent, TraceParentError> {
        let bytes = trim_ows(header).as_bytes();

        let version = match bytes {
            [hi, lo, b'-', ..] => decode_hex_byte(*hi, *lo).ok_or(TraceParentError::Version)?,
            _ => return Err(TraceParentError::Version),
        };
        if version == FORBIDDEN_VERSION {
            return Err(TraceParentError::ForbiddenVersion);
        }
        if version == VERSION_00 && bytes.len() != VERSION_00_LEN {
            return Err(TraceParentError::Length {
                version,
                expected: "exactly 55",
                got: bytes.len(),
            });
        }
        if bytes.len() < VERSION_00_LEN {
            return Err(TraceParentError::Length {
                version,
                expected: "at least 55",
                got: bytes.len(),
            });
        }

        let mut trace_id = [0u8; 16];
        if !decode_lower_hex(&bytes[TRACE_ID_START..PARENT_ID_START - 1], &mut trace_id) {
            return Err(TraceParentError::TraceIdFormat);
        }
        expect_dash(bytes, PARENT_ID_START - 1)?;

        let mut parent_id = [0u8; 8];
        if !decode_lower_hex(&bytes[PARENT_ID_START..FLAGS_START - 1], &mut parent_id) {
            return Err(TraceParentError::ParentIdFormat);
        }
        expect_dash(bytes, FLAGS_START - 1)?;

        let flags = decode_hex_byte(bytes[FLAGS_START], bytes[FLAGS_START + 1])
            .ok_or(TraceParentError::FlagsFormat)?;
        if bytes.len() > VERSION_00_LEN {
            expect_dash(bytes, VERSION_00_LEN)?;
        }

        let trace_id = TraceId(trace_id);
        if !trace_id.is_valid() {
            return Err(TraceParentError::ZeroTraceId);
        }
        let parent_id = SpanId(parent_id);
        if !parent_id.is_valid() {
            return Err(TraceParentError::ZeroParentId);
        }
        Ok(TraceParent {
            version,
            trace_id,
            parent_id,
            flags: flags & KNOWN_FLAGS,
        })
    }

    pub fn is_sampled(&self) -> bool {
        self.flags & FLAG_SAMPLED != 0
    }

    pub fn is_random(&self) -> bool {
        self.flags & FLAG_RANDOM != 0
    }

    pub fn set_sampled(&mut self, sampled: bool) {
        if sampled {
            self.flags |= FLAG_SAMPLED;
        } else {
            self.flags &= !FLAG_SAMPLED;
        }
    }

    /// The traceparent to send downstream from span `span_id` of this trace: same
    /// trace-id and flags, new parent-id, version 00.
    pub fn with_parent_id(&self, span_id: SpanId) -> TraceParent {
        TraceParent::new(self.trace_id, span_id, self.flags)
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{VERSION_00:02x}-{}-{}-{:02x}",
            self.trace_id,
            self.parent_id,
            self.flags & KNOWN_FLAGS
        )
    }
}

impl FromStr for TraceParent {
    type Err = TraceParentError;

    fn from_str(s: &str) -> Result<TraceParent, TraceParentError> {
        TraceParent::parse(s)
    }
}

fn expect_dash(bytes: &[u8], at: usize) -> Result<(), TraceParentError> {
    if bytes[at] == b'-' {
        Ok(())
    } else {
        Err(TraceParentError::Delimiter(at))
    }
}

/// The spec's HEXDIGLC: uppercase digits are invalid in every field.
fn lower_hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

fn decode_hex_byte(hi: u8, lo: u8) -> Option<u8> {
    Some((lower_hex_value(hi)? << 4) | lower_hex_value(lo)?)
}

fn decode_lower_hex(text: &[u8], out: &mut [u8]) -> bool {
    debug_assert_eq!(text.len(), out.len() * 2);
    for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        match decode_hex_byte(pair[0], pair[1]) {
            Some(value) => *byte = value,
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC_EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn with_version(version: &str) -> String {
        format!("{version}{}", &SPEC_EXAMPLE[2..])
    }

    #[test]
    fn parses_the_spec_example() {
        let parent = TraceParent::parse(SPEC_EXAMPLE).unwrap();
        assert_eq!(parent.version, 0);
        assert_eq!(
            parent.trace_id.to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(parent.parent_id.to_string(), "00f067aa0ba902b7");
        assert_eq!(parent.flags, 0x01);
        assert!(parent.is_sampled());
        assert!(!parent.is_random());
        assert_eq!(parent.to_string(), SPEC_EXAMPLE);
    }

    #[test]
    fn unsampled_example_round_trips() {
        let text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        let parent: TraceParent = text.parse().unwrap();
        assert!(!parent.is_sampled());
        assert_eq!(parent.to_string(), text);
    }

    #[test]
    fn optional_whitespace_around_the_value_is_ignored() {
        for padded in [
            format!(" {SPEC_EXAMPLE}"),
            format!("\t{SPEC_EXAMPLE}"),
            format!("{SPEC_EXAMPLE} "),
            format!("{SPEC_EXAMPLE}\t"),
            format!("\t {SPEC_EXAMPLE} \t"),
        ] {
            let parent = TraceParent::parse(&padded).unwrap();
            assert_eq!(parent.to_string(), SPEC_EXAMPLE, "{padded:?}");
        }
        // Only SP and HTAB are optional whitespace.
        assert!(TraceParent::parse(&format!("{SPEC_EXAMPLE}\n")).is_err());
    }

    #[test]
    fn version_ff_is_forbidden() {
        assert_eq!(
            TraceParent::parse(&with_version("ff")),
            Err(TraceParentError::ForbiddenVersion)
        );
    }

    #[test]
    fn malformed_versions_are_rejected() {
        for version in [".0", "0.", "0", "000", "0000", "0A", "FF", "g0", ""] {
            let header = format!("{version}-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
            assert!(
                TraceParent::parse(&header).is_err(),
                "version {version:?} accepted"
            );
        }
        assert_eq!(TraceParent::parse(""), Err(TraceParentError::Version));
    }

    #[test]
    fn uppercase_hex_is_rejected_in_every_field() {
        for header in [
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A",
        ] {
            assert!(TraceParent::parse(header).is_err(), "{header} accepted");
        }
    }

    #[test]
    fn all_zero_ids_are_rejected() {
        assert_eq!(
            TraceParent::parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            Err(TraceParentError::ZeroTraceId)
        );
        assert_eq!(
            TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"),
            Err(TraceParentError::ZeroParentId)
        );
    }

    #[test]
    fn wrong_field_lengths_and_characters_are_rejected() {
        for header in [
            "00-123456789012345678901234567890123-1234567890123456-01",
            "00-1234567890123456789012345678901-1234567890123456-01",
            "00-12345678901234567890123456789012-12345678901234567-01",
            "00-12345678901234567890123456789012-123456789012345-01",
            "00-12345678901234567890123456789012-1234567890123456-001",
            "00-12345678901234567890123456789012-1234567890123456-1",
            "00-.2345678901234567890123456789012-1234567890123456-01",
            "00-1234567890123456789012345678901.-1234567890123456-01",
            "00-12345678901234567890123456789012-.234567890123456-01",
            "00-12345678901234567890123456789012-123456789012345.-01",
            "00-12345678901234567890123456789012-1234567890123456-.0",
            "00-12345678901234567890123456789012-1234567890123456-0.",
            "00_12345678901234567890123456789012-1234567890123456-01",
            "00-12345678901234567890123456789012_1234567890123456-01",
            "00-12345678901234567890123456789012-1234567890123456_01",
        ] {
            assert!(TraceParent::parse(header).is_err(), "{header} accepted");
        }
    }

    #[test]
    fn version_00_allows_nothing_after_the_flags() {
        for header in [
            "00-12345678901234567890123456789012-1234567890123456-01.",
            "00-12345678901234567890123456789012-1234567890123456-01-what-the-future-will-be-like",
        ] {
            assert!(matches!(
                TraceParent::parse(header),
                Err(TraceParentError::Length { version: 0, .. })
            ));
        }
    }

    #[test]
    fn future_versions_parse_their_first_four_fields() {
        let exact =
            TraceParent::parse("cc-12345678901234567890123456789012-1234567890123456-01").unwrap();
        assert_eq!(exact.version, 0xcc);
        assert_eq!(
            exact.trace_id.to_string(),
            "12345678901234567890123456789012"
        );
        assert!(exact.is_sampled());

        let extended = TraceParent::parse(
            "cc-12345678901234567890123456789012-1234567890123456-01-what-the-future-will-be-like",
        )
        .unwrap();
        assert_eq!(extended, exact);
        // Downgraded to the version this implementation knows.
        assert_eq!(
            extended.to_string(),
            "00-12345678901234567890123456789012-1234567890123456-01"
        );

        assert_eq!(
            TraceParent::parse(
                "cc-12345678901234567890123456789012-1234567890123456-01.what-the-future-will-be-like"
            ),
            Err(TraceParentError::Delimiter(55))
        );
        assert!(matches!(
            TraceParent::parse("cc-12345678901234567890123456789012-1234567890123456-0"),
            Err(TraceParentError::Length { version: 0xcc, .. })
        ));
    }

    #[test]
    fn unknown_flags_are_cleared_and_random_is_kept() {
        let parent =
            TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff").unwrap();
        assert_eq!(parent.flags, KNOWN_FLAGS);
        assert!(parent.is_sampled() && parent.is_random());
        assert!(parent.to_string().ends_with("-03"));

        let random =
            TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-02").unwrap();
        assert!(random.is_random() && !random.is_sampled());

        let hand_built = TraceParent {
            flags: 0xf4,
            ..random
        };
        assert!(hand_built.to_string().ends_with("-00"));
    }

    #[test]
    fn sampled_flag_helpers_toggle_one_bit() {
        let mut parent =
            TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-02").unwrap();
        parent.set_sampled(true);
        assert_eq!(parent.flags, 0x03);
        parent.set_sampled(false);
        assert_eq!(parent.flags, 0x02);
    }

    #[test]
    fn next_hop_keeps_the_trace_and_replaces_the_parent() {
        let incoming =
            TraceParent::parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03-extra")
                .unwrap();
        let span: SpanId = "b7ad6b7169203331".parse().unwrap();
        let outgoing = incoming.with_parent_id(span);
        assert_eq!(outgoing.version, 0);
        assert_eq!(outgoing.trace_id, incoming.trace_id);
        assert_eq!(outgoing.parent_id, span);
        assert_eq!(outgoing.flags, 0x03);
    }

    #[test]
    fn non_ascii_input_is_rejected_without_panicking() {
        let header = "00-4bf92f3577b34da6a3ce929d0e0e473é-00f067aa0ba902b7-01";
        assert!(TraceParent::parse(header).is_err());
        assert!(
            TraceParent::parse("ééééééééééééééééééééééééééééééééééééééééééééééééééééééé").is_err()
        );
    }
}
