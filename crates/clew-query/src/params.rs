//! Query-string access and the value syntaxes the APIs accept: Go durations, RFC 3339
//! times, Unix times in several units, hex and base64 trace ids.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::{FromRequestParts, Query};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use clew_model::{SpanKind, TraceId};

use crate::Failure;

/// Every `key=value` pair of the query string, in order, repeated keys kept.
///
/// A plain map would drop repeated `tag=`, `traceID=` and `attr=` parameters.
pub(crate) struct Params(Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Params, Response> {
        match Query::<Vec<(String, String)>>::try_from_uri(&parts.uri) {
            Ok(Query(pairs)) => Ok(Params(pairs)),
            Err(rejection) => Err((
                StatusCode::BAD_REQUEST,
                Json(serde_json::json!({ "error": rejection.body_text() })),
            )
                .into_response()),
        }
    }
}

impl Params {
    #[cfg(test)]
    pub(crate) fn from_pairs(pairs: &[(&str, &str)]) -> Params {
        Params(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    /// The first non-empty value of `name`; an empty value counts as absent, as in Jaeger.
    pub(crate) fn get<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        self.all(name).find(|v| !v.is_empty())
    }

    /// The first of several spellings that is present, with the spelling found (so that
    /// an error can name the parameter the caller actually sent).
    pub(crate) fn first_of<'a>(&'a self, names: &[&'a str]) -> Option<(&'a str, &'a str)> {
        names
            .iter()
            .find_map(|name| self.get(name).map(|value| (*name, value)))
    }

    pub(crate) fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Jaeger's wording for a parameter it could not parse.
pub(crate) fn bad_param(name: &str, reason: impl std::fmt::Display) -> Failure {
    Failure::bad_request(format!("unable to parse param '{name}': {reason}"))
}

pub(crate) fn now_unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

pub(crate) fn parse_u64(name: &str, value: &str) -> Result<u64, Failure> {
    value.parse::<u64>().map_err(|_| {
        bad_param(
            name,
            format!("expected a non-negative integer, got {value:?}"),
        )
    })
}

/// A count such as `limit`; `0` means "the default" to the store.
pub(crate) fn parse_limit(
    name: &str,
    value: Option<&str>,
    default: usize,
) -> Result<usize, Failure> {
    match value {
        None => Ok(default),
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| bad_param(name, format!("expected a non-negative integer, got {v:?}"))),
    }
}

/// An integer count of `unit_nanos` since the Unix epoch, as nanoseconds.
pub(crate) fn parse_unix(name: &str, value: &str, unit_nanos: u64) -> Result<u64, Failure> {
    parse_u64(name, value).map(|v| v.saturating_mul(unit_nanos))
}

/// A duration in Go's syntax (`1.5ms`, `100us`, `1m30s`), which Jaeger's clients send,
/// or in humantime's (`2days`, `1h 30m`), which clew's CLI and people type.
pub(crate) fn parse_duration(name: &str, value: &str) -> Result<u64, Failure> {
    go_duration_nanos(value)
        .or_else(|go_error| {
            humantime::parse_duration(value)
                .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
                .map_err(|_| go_error)
        })
        .map_err(|reason| bad_param(name, reason))
}

/// A time as RFC 3339 (with any fraction of a second and any offset) or, when it is a
/// bare integer, as Unix nanoseconds.
pub(crate) fn parse_time_rfc3339_or_nanos(name: &str, value: &str) -> Result<u64, Failure> {
    if value.bytes().all(|b| b.is_ascii_digit()) {
        return parse_u64(name, value);
    }
    rfc3339_nanos(value).map_err(|reason| bad_param(name, reason))
}

/// A tag criterion `key<sep>value`; the value may itself contain `sep`.
pub(crate) fn parse_tag(name: &str, value: &str, sep: char) -> Result<(String, String), Failure> {
    match value.split_once(sep) {
        Some((key, v)) if !key.is_empty() => Ok((key.to_string(), v.to_string())),
        _ => Err(bad_param(
            name,
            format!("expected key{sep}value, got {value:?}"),
        )),
    }
}

/// Tag criteria as a JSON object (`{"http.status_code":"200"}`). Jaeger wants string
/// values; numbers and booleans are taken as their text, which is what they match.
pub(crate) fn parse_tag_map(name: &str, value: &str) -> Result<Vec<(String, String)>, Failure> {
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(value)
        .map_err(|e| bad_param(name, format!("expected a JSON object of strings: {e}")))?;
    map.into_iter()
        .map(|(key, v)| match v {
            serde_json::Value::String(s) => Ok((key, s)),
            serde_json::Value::Number(n) => Ok((key, n.to_string())),
            serde_json::Value::Bool(b) => Ok((key, b.to_string())),
            other => Err(bad_param(
                name,
                format!("the value of {key:?} must be a string, got {other}"),
            )),
        })
        .collect()
}

/// Refuses a span-duration range that no span can fall in.
pub(crate) fn check_duration_range(
    min: Option<u64>,
    max: Option<u64>,
    min_name: &str,
    max_name: &str,
) -> Result<(), Failure> {
    match (min, max) {
        (Some(min), Some(max)) if max < min => Err(Failure::bad_request(format!(
            "'{max_name}' should be greater than '{min_name}'"
        ))),
        _ => Ok(()),
    }
}

/// A span kind by Jaeger's lower-case name or OpenTelemetry's (`server`, `SPAN_KIND_SERVER`).
pub(crate) fn parse_span_kind(name: &str, value: &str) -> Result<SpanKind, Failure> {
    SpanKind::parse(value)
        .ok_or_else(|| bad_param(name, format!("unsupported span kind: '{value}'")))
}

/// Parses Go's `time.ParseDuration` syntax into nanoseconds. Negative durations are
/// refused: every duration the APIs take bounds a span's length.
pub(crate) fn go_duration_nanos(s: &str) -> Result<u64, String> {
    let invalid = || format!("invalid duration {s:?} (expected e.g. 1.5ms, 100us, 2s, 1m30s)");
    let rest = s.strip_prefix('+').unwrap_or(s);
    if rest.starts_with('-') {
        return Err(format!("negative duration {s:?}"));
    }
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: u128 = 0;
    let mut rest = rest;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_part, after) = rest.split_at(int_len);
        let (frac_part, after) = match after.strip_prefix('.') {
            Some(a) => {
                let n = a.bytes().take_while(u8::is_ascii_digit).count();
                a.split_at(n)
            }
            None => ("", after),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(invalid());
        }
        let unit_len = after
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit() || *c == '.')
            .map_or(after.len(), |(i, _)| i);
        let (unit, after) = after.split_at(unit_len);
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(format!("missing unit in duration {s:?}")),
            other => return Err(format!("unknown unit {other:?} in duration {s:?}")),
        };
        let int: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| invalid())?
        };
        // Digits beyond nanosecond precision cannot change the result; dropping them
        // keeps the arithmetic inside u128.
        let frac_digits = &frac_part[..frac_part.len().min(18)];
        let frac: u128 = if frac_digits.is_empty() {
            0
        } else {
            frac_digits.parse().map_err(|_| invalid())?
        };
        let scale = 10u128.pow(frac_digits.len() as u32);
        total = int
            .checked_mul(unit_nanos)
            .and_then(|v| v.checked_add(frac * unit_nanos / scale))
            .and_then(|v| v.checked_add(total))
            .ok_or_else(|| format!("duration {s:?} is too long"))?;
        rest = after;
    }
    u64::try_from(total).map_err(|_| format!("duration {s:?} is too long"))
}

/// Parses an RFC 3339 timestamp (`2026-11-02T10:00:00.123456789Z`, `…+02:00`) into Unix
/// nanoseconds. Written out because the time crates the workspace has only take UTC `Z`.
pub(crate) fn rfc3339_nanos(s: &str) -> Result<u64, String> {
    let invalid = || format!("{s:?} is not an RFC 3339 time (e.g. 2026-11-02T10:00:00.5Z)");
    let b = s.as_bytes();
    // ASCII only, so that the byte offsets below are character boundaries.
    if b.len() < 20 || !s.is_ascii() {
        return Err(invalid());
    }
    let num = |range: std::ops::Range<usize>| -> Result<i64, String> {
        let part = &s[range];
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().map_err(|_| invalid())
        } else {
            Err(invalid())
        }
    };
    if b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(invalid());
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return Err(invalid());
    }
    let mut i = 19;
    let mut nanos: i64 = 0;
    if b[i] == b'.' {
        let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return Err(invalid());
        }
        for (n, c) in b[i + 1..i + 1 + digits].iter().enumerate() {
            if n < 9 {
                nanos = nanos * 10 + i64::from(c - b'0');
            }
        }
        nanos *= 10i64.pow(9u32.saturating_sub(digits as u32));
        i += 1 + digits;
    }
    let offset_secs = match &b[i..] {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if oh > 23 || om > 59 {
                return Err(invalid());
            }
            let off = oh * 3600 + om * 60;
            if *sign == b'+' { off } else { -off }
        }
        _ => return Err(invalid()),
    };
    let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second
        - offset_secs;
    if secs < 0 {
        return Err(format!("{s:?} is before 1970"));
    }
    Ok(secs as u64 * 1_000_000_000 + nanos as u64)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A trace id as hex (32 digits, or fewer as some Jaeger clients send) or, as Jaeger's
/// v3 API also accepts, base64 of its 16 bytes.
pub(crate) fn parse_trace_id(name: &str, value: &str) -> Result<TraceId, Failure> {
    match TraceId::from_hex(value) {
        Ok(id) => Ok(id),
        Err(hex_error) => base64_decode(value)
            .and_then(|bytes| TraceId::from_slice(&bytes))
            .filter(TraceId::is_valid)
            .ok_or_else(|| bad_param(name, hex_error)),
    }
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    if s.len() > 24 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// Standard base64 with padding, which is how Jaeger's JSON carries `binary` values.
pub(crate) fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(go_duration_nanos("1.5ms"), Ok(1_500_000));
        assert_eq!(go_duration_nanos("100us"), Ok(100_000));
        assert_eq!(go_duration_nanos("100µs"), Ok(100_000));
        assert_eq!(go_duration_nanos("100μs"), Ok(100_000));
        assert_eq!(go_duration_nanos("2s"), Ok(2_000_000_000));
        assert_eq!(go_duration_nanos("1m30s"), Ok(90_000_000_000));
        assert_eq!(go_duration_nanos("1h"), Ok(3_600_000_000_000));
        assert_eq!(go_duration_nanos(".5s"), Ok(500_000_000));
        assert_eq!(go_duration_nanos("0"), Ok(0));
        assert_eq!(go_duration_nanos("0.001500s"), Ok(1_500_000));
        assert_eq!(go_duration_nanos("1.0000000001s"), Ok(1_000_000_000));
        assert!(go_duration_nanos("").is_err());
        assert!(go_duration_nanos("5").unwrap_err().contains("missing unit"));
        assert!(
            go_duration_nanos("5d")
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(go_duration_nanos("-1s").unwrap_err().contains("negative"));
        assert!(go_duration_nanos("ms").is_err());
        assert!(
            go_duration_nanos("99999999999h")
                .unwrap_err()
                .contains("too long")
        );
    }

    #[test]
    fn durations_fall_back_to_humantime() {
        assert_eq!(
            parse_duration("d", "2days").unwrap(),
            2 * 86_400 * 1_000_000_000
        );
        assert_eq!(parse_duration("d", "1s500ms").unwrap(), 1_500_000_000);
        let e = parse_duration("minDuration", "fast").unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(
            e.message
                .starts_with("unable to parse param 'minDuration': ")
        );
    }

    #[test]
    fn rfc3339_times() {
        assert_eq!(rfc3339_nanos("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(
            rfc3339_nanos("2023-11-14T22:13:20Z"),
            Ok(1_700_000_000_000_000_000)
        );
        assert_eq!(
            rfc3339_nanos("2023-11-14T22:13:20.123456789Z"),
            Ok(1_700_000_000_123_456_789)
        );
        assert_eq!(
            rfc3339_nanos("2023-11-14T22:13:20.5Z"),
            Ok(1_700_000_000_500_000_000)
        );
        assert_eq!(
            rfc3339_nanos("2023-11-15T00:13:20+02:00"),
            Ok(1_700_000_000_000_000_000)
        );
        assert_eq!(
            rfc3339_nanos("2023-11-14T21:13:20-01:00"),
            Ok(1_700_000_000_000_000_000)
        );
        assert_eq!(
            rfc3339_nanos("2024-02-29T00:00:00Z"),
            Ok(1_709_164_800_000_000_000)
        );
        for bad in [
            "2023-02-29T00:00:00Z",
            "2023-11-14 22:13:20",
            "2023-11-14T22:13:20",
            "2023-11-14T24:00:00Z",
            "yesterday",
            "2023-11-14T22:13:20.Z",
            "1969-12-31T23:59:59Z",
        ] {
            assert!(rfc3339_nanos(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn times_as_integers_are_nanoseconds() {
        assert_eq!(parse_time_rfc3339_or_nanos("start", "42").unwrap(), 42);
        assert!(
            parse_time_rfc3339_or_nanos("start", "soon")
                .unwrap_err()
                .message
                .contains("'start'")
        );
    }

    #[test]
    fn trace_ids_in_hex_or_base64() {
        let hex = "4bf92f3577b34da6a3ce929d0e0e4736";
        let id = parse_trace_id("traceID", hex).unwrap();
        assert_eq!(id.to_string(), hex);
        let b64 = base64_encode(&id.0);
        assert_eq!(b64, "S/kvNXezTaajzpKdDg5HNg==");
        assert_eq!(parse_trace_id("traceID", &b64).unwrap(), id);
        assert_eq!(
            parse_trace_id("traceID", b64.trim_end_matches('=')).unwrap(),
            id
        );
        let e = parse_trace_id("traceID", "not-an-id!").unwrap_err();
        assert!(e.message.contains("'traceID'"), "{}", e.message);
    }

    #[test]
    fn base64_matches_the_standard_alphabet() {
        assert_eq!(base64_encode(b""), "");
        assert_eq!(base64_encode(b"f"), "Zg==");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_encode(b"foo"), "Zm9v");
        assert_eq!(base64_encode(&[0xff, 0xfe]), "//4=");
    }

    #[test]
    fn params_keep_repeats_and_skip_empty_values() {
        let p = Params::from_pairs(&[("tag", "a:1"), ("tag", "b:2"), ("x", ""), ("x", "y")]);
        assert_eq!(p.all("tag").collect::<Vec<_>>(), ["a:1", "b:2"]);
        assert_eq!(p.get("x"), Some("y"));
        assert_eq!(p.get("missing"), None);
        assert_eq!(p.first_of(&["nope", "tag"]), Some(("tag", "a:1")));
    }
}
