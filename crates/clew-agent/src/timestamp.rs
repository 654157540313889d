//! RFC 3339 timestamps as the language agents write them.
//!
//! Python writes `2026-11-02T10:11:12.123456+00:00` (and drops the fraction when the
//! microseconds are zero), Node writes `2026-11-02T10:11:12.123Z`, and older agents write
//! naive times without an offset, which the core-agent always took as UTC. All of them
//! become Unix nanoseconds without rounding: up to nine fraction digits are kept exactly,
//! further digits (finer than the model can hold) are dropped.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An instant in Unix nanoseconds, read from and written as RFC 3339 text.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct Timestamp(pub u64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid timestamp {text:?}: {reason} (expected RFC 3339, e.g. 2026-11-02T10:11:12.5+00:00)"
)]
pub struct TimestampError {
    text: String,
    reason: &'static str,
}

const NANOS_PER_SECOND: i128 = 1_000_000_000;

impl Timestamp {
    pub fn now() -> Timestamp {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(u64::try_from(since_epoch.as_nanos()).unwrap_or(u64::MAX))
    }

    pub fn unix_nanos(self) -> u64 {
        self.0
    }

    /// Parses `YYYY-MM-DD(T|t| )hh:mm:ss[.fraction][Z|z|±hh:mm|±hhmm|±hh]`; no offset means UTC.
    pub fn parse(text: &str) -> Result<Timestamp, TimestampError> {
        let fail = |reason| TimestampError {
            text: text.to_string(),
            reason,
        };
        let mut cursor = Cursor {
            bytes: text.trim().as_bytes(),
            at: 0,
        };
        let year = cursor
            .digits(4)
            .ok_or_else(|| fail("the year must be 4 digits"))?;
        cursor
            .expect(b'-')
            .ok_or_else(|| fail("expected '-' after the year"))?;
        let month = cursor
            .digits(2)
            .ok_or_else(|| fail("the month must be 2 digits"))?;
        cursor
            .expect(b'-')
            .ok_or_else(|| fail("expected '-' after the month"))?;
        let day = cursor
            .digits(2)
            .ok_or_else(|| fail("the day must be 2 digits"))?;
        match cursor.next() {
            Some(b'T' | b't' | b' ') => {}
            _ => return Err(fail("expected 'T' between date and time")),
        }
        let hour = cursor
            .digits(2)
            .ok_or_else(|| fail("the hour must be 2 digits"))?;
        cursor
            .expect(b':')
            .ok_or_else(|| fail("expected ':' after the hour"))?;
        let minute = cursor
            .digits(2)
            .ok_or_else(|| fail("the minute must be 2 digits"))?;
        cursor
            .expect(b':')
            .ok_or_else(|| fail("expected ':' after the minute"))?;
        let second = cursor
            .digits(2)
            .ok_or_else(|| fail("the second must be 2 digits"))?;

        let mut fraction_nanos: i128 = 0;
        if cursor.peek() == Some(b'.') || cursor.peek() == Some(b',') {
            cursor.at += 1;
            let mut digits = 0;
            while let Some(c @ b'0'..=b'9') = cursor.peek() {
                if digits < 9 {
                    fraction_nanos = fraction_nanos * 10 + i128::from(c - b'0');
                }
                digits += 1;
                cursor.at += 1;
            }
            if digits == 0 {
                return Err(fail("expected digits after the decimal point"));
            }
            for _ in digits..9 {
                fraction_nanos *= 10;
            }
        }

        let offset_seconds: i128 = match cursor.next() {
            None | Some(b'Z' | b'z') => 0,
            Some(sign @ (b'+' | b'-')) => {
                let hours = cursor
                    .digits(2)
                    .ok_or_else(|| fail("the offset hours must be 2 digits"))?;
                if cursor.peek() == Some(b':') {
                    cursor.at += 1;
                }
                let minutes = if cursor.peek().is_some() {
                    cursor
                        .digits(2)
                        .ok_or_else(|| fail("the offset minutes must be 2 digits"))?
                } else {
                    0
                };
                if hours > 23 || minutes > 59 {
                    return Err(fail("offset out of range"));
                }
                let magnitude = i128::from(hours * 3600 + minutes * 60);
                if sign == b'+' { magnitude } else { -magnitude }
            }
            Some(_) => return Err(fail("unexpected characters after the time")),
        };
        if cursor.peek().is_some() {
            return Err(fail("unexpected characters after the offset"));
        }

        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return Err(fail("no such date"));
        }
        // 60 is a leap second; it folds into the next second as every Unix clock does.
        if hour > 23 || minute > 59 || second > 60 {
            return Err(fail("no such time of day"));
        }
        let days = days_from_civil(i64::from(year), month, day);
        let seconds = i128::from(days) * 86_400 + i128::from(hour * 3600 + minute * 60 + second)
            - offset_seconds;
        let nanos = seconds * NANOS_PER_SECOND + fraction_nanos;
        u64::try_from(nanos)
            .map(Timestamp)
            .map_err(|_| fail("before 1970 or after 2554"))
    }
}

impl fmt::Display for Timestamp {
    /// Always UTC with nine fraction digits, so a round trip is exact.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seconds = self.0 / 1_000_000_000;
        let nanos = self.0 % 1_000_000_000;
        let days = i64::try_from(seconds / 86_400).expect("u64 seconds / 86400 fits i64");
        let (year, month, day) = civil_from_days(days);
        let in_day = seconds % 86_400;
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
            in_day / 3600,
            in_day / 60 % 60,
            in_day % 60
        )
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Timestamp::parse(&text).map_err(serde::de::Error::custom)
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.at += 1;
        Some(c)
    }

    fn expect(&mut self, wanted: u8) -> Option<()> {
        (self.next()? == wanted).then_some(())
    }

    fn digits(&mut self, count: usize) -> Option<u32> {
        let mut value = 0u32;
        for _ in 0..count {
            let c = self.next()?;
            if !c.is_ascii_digit() {
                return None;
            }
            value = value * 10 + u32::from(c - b'0');
        }
        Some(value)
    }
}

fn is_leap(year: u32) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = i64::from((month + 9) % 12);
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = u32::try_from(day_of_year - (153 * month_from_march + 2) / 5 + 1).expect("1..=31");
    let month = u32::try_from(if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    })
    .expect("1..=12");
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOON_2026_11_02: u64 = 1_793_620_800;

    fn nanos(text: &str) -> u64 {
        Timestamp::parse(text)
            .unwrap_or_else(|e| panic!("{e}"))
            .unix_nanos()
    }

    #[test]
    fn every_shape_the_agents_send_is_the_same_instant() {
        let expected = NOON_2026_11_02 * 1_000_000_000 + 123_456_000;
        for text in [
            "2026-11-02T12:00:00.123456+00:00",
            "2026-11-02T12:00:00.123456Z",
            "2026-11-02T12:00:00.123456z",
            "2026-11-02T12:00:00.123456",
            "2026-11-02 12:00:00.123456",
            "2026-11-02T13:30:00.123456+01:30",
            "2026-11-02T13:30:00.123456+0130",
            "2026-11-02T07:00:00.123456-05:00",
            "2026-11-02T07:00:00.123456-05",
            "2026-11-02T12:00:00.123456000Z",
        ] {
            assert_eq!(nanos(text), expected, "{text}");
        }
    }

    #[test]
    fn fractions_keep_exact_nanoseconds() {
        let base = NOON_2026_11_02 * 1_000_000_000;
        assert_eq!(nanos("2026-11-02T12:00:00+00:00"), base);
        assert_eq!(nanos("2026-11-02T12:00:00.5Z"), base + 500_000_000);
        assert_eq!(nanos("2026-11-02T12:00:00.123Z"), base + 123_000_000);
        assert_eq!(nanos("2026-11-02T12:00:00.000000001Z"), base + 1);
        assert_eq!(nanos("2026-11-02T12:00:00.9999999999Z"), base + 999_999_999);
    }

    #[test]
    fn display_round_trips_exactly() {
        for value in [0, 1, 1_793_620_800_123_456_789, 951_782_400_000_000_007] {
            let text = Timestamp(value).to_string();
            assert_eq!(nanos(&text), value, "{text}");
        }
        assert_eq!(Timestamp(0).to_string(), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            Timestamp(951_782_400_000_000_007).to_string(),
            "2000-02-29T00:00:00.000000007Z"
        );
    }

    #[test]
    fn impossible_or_garbled_times_are_rejected() {
        for text in [
            "",
            "yesterday",
            "2026-13-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-11-02T24:00:00Z",
            "2026-11-02T12:00:00.Z",
            "2026-11-02T12:00:00+25:00",
            "2026-11-02T12:00:00Zjunk",
            "1969-12-31T23:59:59Z",
        ] {
            assert!(
                Timestamp::parse(text).is_err(),
                "{text:?} should be rejected"
            );
        }
        assert!(Timestamp::parse("2024-02-29T00:00:00Z").is_ok());
    }

    #[test]
    fn serde_uses_the_text_form() {
        let t: Timestamp = serde_json::from_str("\"2026-11-02T12:00:00Z\"").unwrap();
        assert_eq!(t.unix_nanos(), NOON_2026_11_02 * 1_000_000_000);
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            "\"2026-11-02T12:00:00.000000000Z\""
        );
    }
}
