use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a string is not a valid trace or span id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("expected {expected} hex characters, got {got}")]
    Length { expected: usize, got: usize },
    #[error("not a hexadecimal id: {0:?}")]
    NotHex(String),
    #[error("an all-zero id is invalid")]
    Zero,
}

/// A 128-bit trace id.
///
/// Ids that clew generates are UUIDv7 (a millisecond timestamp prefix, so they sort in
/// creation order) and, because they are never all zero and print as 32 lowercase hex
/// digits, they are valid W3C trace-ids as well. Ids that arrive from elsewhere may be
/// any non-zero 128-bit value.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct TraceId(pub [u8; 16]);

/// A 64-bit span id; never all zero when valid.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct SpanId(pub [u8; 8]);

impl TraceId {
    pub const INVALID: TraceId = TraceId([0; 16]);

    /// A new UUIDv7 trace id for the current time.
    pub fn generate() -> TraceId {
        TraceId(*uuid::Uuid::now_v7().as_bytes())
    }

    /// A UUIDv7 trace id whose timestamp is `unix_ms` and whose random bits come from `rng`,
    /// for seeded, reproducible scenarios.
    pub fn v7_from(unix_ms: u64, rng: &mut impl rand::Rng) -> TraceId {
        let mut bytes: [u8; 16] = rng.random();
        bytes[..6].copy_from_slice(&unix_ms.to_be_bytes()[2..]);
        bytes[6] = 0x70 | (bytes[6] & 0x0f);
        bytes[8] = 0x80 | (bytes[8] & 0x3f);
        TraceId(bytes)
    }

    pub fn is_valid(&self) -> bool {
        self.0 != [0; 16]
    }

    /// The creation time in Unix milliseconds if this id is a UUIDv7.
    pub fn v7_unix_ms(&self) -> Option<u64> {
        if self.0[6] >> 4 != 7 || self.0[8] >> 6 != 0b10 {
            return None;
        }
        let mut ms = [0u8; 8];
        ms[2..].copy_from_slice(&self.0[..6]);
        Some(u64::from_be_bytes(ms))
    }

    pub fn from_slice(bytes: &[u8]) -> Option<TraceId> {
        bytes.try_into().ok().map(TraceId)
    }

    /// Parses 32 hex digits (either case). Shorter ids, as some Jaeger clients send
    /// (16 digits, or with leading zeros dropped), are left-padded with zeros.
    pub fn from_hex(s: &str) -> Result<TraceId, IdError> {
        let mut out = [0u8; 16];
        parse_hex_padded(s, &mut out)?;
        let id = TraceId(out);
        if id.is_valid() {
            Ok(id)
        } else {
            Err(IdError::Zero)
        }
    }
}

impl SpanId {
    pub const INVALID: SpanId = SpanId([0; 8]);

    pub fn generate() -> SpanId {
        loop {
            let bytes: [u8; 8] = rand::random();
            if bytes != [0; 8] {
                return SpanId(bytes);
            }
        }
    }

    pub fn is_valid(&self) -> bool {
        self.0 != [0; 8]
    }

    pub fn from_slice(bytes: &[u8]) -> Option<SpanId> {
        bytes.try_into().ok().map(SpanId)
    }

    pub fn from_hex(s: &str) -> Result<SpanId, IdError> {
        let mut out = [0u8; 8];
        parse_hex_padded(s, &mut out)?;
        let id = SpanId(out);
        if id.is_valid() {
            Ok(id)
        } else {
            Err(IdError::Zero)
        }
    }

    pub fn to_u64(self) -> u64 {
        u64::from_be_bytes(self.0)
    }
}

fn parse_hex_padded(s: &str, out: &mut [u8]) -> Result<(), IdError> {
    let expected = out.len() * 2;
    if s.is_empty() || s.len() > expected {
        return Err(IdError::Length {
            expected,
            got: s.len(),
        });
    }
    let pad = expected - s.len();
    for (i, c) in s.bytes().enumerate() {
        let nibble = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => return Err(IdError::NotHex(s.to_string())),
        };
        let pos = pad + i;
        out[pos / 2] |= if pos.is_multiple_of(2) {
            nibble << 4
        } else {
            nibble
        };
    }
    Ok(())
}

/// Lowercase hex of up to 16 bytes, in a stack buffer: ids are printed for every span
/// that is serialized (the query API, the lifecycle journal), so not one `write!` per
/// byte.
struct Hex {
    digits: [u8; 32],
    len: usize,
}

impl Hex {
    fn of(bytes: &[u8]) -> Hex {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut digits = [0u8; 32];
        for (i, b) in bytes.iter().take(16).enumerate() {
            digits[2 * i] = DIGITS[usize::from(b >> 4)];
            digits[2 * i + 1] = DIGITS[usize::from(b & 0x0f)];
        }
        Hex {
            digits,
            len: bytes.len().min(16) * 2,
        }
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.digits[..self.len]).expect("hex digits are ASCII")
    }
}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    f.write_str(Hex::of(bytes).as_str())
}

macro_rules! id_traits {
    ($t:ty) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write_hex(f, &self.0)
            }
        }
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({self})", stringify!($t))
            }
        }
        impl FromStr for $t {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                <$t>::from_hex(s)
            }
        }
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                if s.is_human_readable() {
                    s.serialize_str(Hex::of(&self.0).as_str())
                } else {
                    self.0.serialize(s)
                }
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                if d.is_human_readable() {
                    let s = String::deserialize(d)?;
                    s.parse().map_err(serde::de::Error::custom)
                } else {
                    Deserialize::deserialize(d).map(Self)
                }
            }
        }
    };
}
id_traits!(TraceId);
id_traits!(SpanId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_print_and_serialize_as_lowercase_hex() {
        let trace = TraceId::from_hex("4BF92F3577B34DA6A3CE929D0E0E4736").unwrap();
        assert_eq!(trace.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            serde_json::to_string(&trace).unwrap(),
            r#""4bf92f3577b34da6a3ce929d0e0e4736""#
        );
        let span = SpanId([0, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]);
        assert_eq!(span.to_string(), "00f067aa0ba902b7");
        assert_eq!(format!("{span:?}"), "SpanId(00f067aa0ba902b7)");
        assert_eq!(
            serde_json::to_string(&span).unwrap(),
            r#""00f067aa0ba902b7""#
        );
        let back: SpanId = serde_json::from_str(r#""00f067aa0ba902b7""#).unwrap();
        assert_eq!(back, span);
    }

    #[test]
    fn generated_trace_ids_are_uuidv7_and_w3c_valid() {
        let before = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let id = TraceId::generate();
        let text = id.to_string();
        assert_eq!(text.len(), 32);
        assert!(
            text.bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
        );
        assert!(id.is_valid());
        let ms = id.v7_unix_ms().expect("a UUIDv7");
        assert!(ms >= before && ms < before + 5_000);
        assert_eq!(uuid::Uuid::from_bytes(id.0).get_version_num(), 7);
    }

    #[test]
    fn generated_trace_ids_sort_by_creation_time() {
        let a = TraceId::generate();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = TraceId::generate();
        assert!(a < b);
        assert!(a.to_string() < b.to_string());
    }

    #[test]
    fn seeded_v7_ids_carry_the_given_time() {
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let id = TraceId::v7_from(1_700_000_000_123, &mut rng);
        assert_eq!(id.v7_unix_ms(), Some(1_700_000_000_123));
    }

    #[test]
    fn hex_round_trip_and_errors() {
        let id: TraceId = "4bf92f3577b34da6a3ce929d0e0e4736".parse().unwrap();
        assert_eq!(id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        let upper: TraceId = "4BF92F3577B34DA6A3CE929D0E0E4736".parse().unwrap();
        assert_eq!(upper, id);
        let short: TraceId = "a3ce929d0e0e4736".parse().unwrap();
        assert_eq!(short.to_string(), "0000000000000000a3ce929d0e0e4736");
        assert_eq!("0".repeat(32).parse::<TraceId>(), Err(IdError::Zero));
        assert!(matches!("zz".parse::<TraceId>(), Err(IdError::NotHex(_))));
        assert!(matches!(
            "1".repeat(33).parse::<TraceId>(),
            Err(IdError::Length { .. })
        ));
        let span: SpanId = "00f067aa0ba902b7".parse().unwrap();
        assert_eq!(span.to_string(), "00f067aa0ba902b7");
    }
}
