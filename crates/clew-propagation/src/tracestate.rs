use std::fmt;
use std::str::FromStr;

use crate::trim_ows;

/// The most list-members a `tracestate` may hold.
pub const MAX_TRACESTATE_MEMBERS: usize = 32;
/// The longest `tracestate` value [`TraceState::to_header`] emits: the spec's minimum
/// that every vendor should propagate.
pub const MAX_TRACESTATE_HEADER_LEN: usize = 512;

const MAX_KEY_LEN: usize = 256;
const MAX_VALUE_LEN: usize = 256;
/// Entries longer than this are the first to go when the header must be truncated.
const LARGE_ENTRY_LEN: usize = 128;

/// Why a `tracestate` value, key or value was rejected. A rejected header is discarded
/// whole; the `traceparent` it came with stays valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceStateError {
    #[error("tracestate list-member {0:?} is not key=value")]
    MissingEquals(String),
    #[error("invalid tracestate key {0:?}")]
    InvalidKey(String),
    #[error("invalid tracestate value {0:?}")]
    InvalidValue(String),
    #[error("tracestate has {0} list-members; at most 32 are allowed")]
    TooManyMembers(usize),
}

/// The W3C `tracestate` list: vendor-specific `key=value` entries, most recently
/// modified first.
///
/// Keys follow the current (Level 2) grammar, `[a-z0-9][a-z0-9_\-*/@]{0,255}`. That
/// grammar is a superset of Level 1's separate simple (`[a-z][a-z0-9_\-*/]{0,255}`) and
/// multi-tenant (`tenant@system`) forms, so every Level 1 key is accepted too, and keys
/// such as `t@vvvvvvvvvvvvvvv` that the official test suite requires are not rejected.
///
/// Duplicate keys in a received header keep their first (left-most, most recent) entry
/// and drop the others, as the spec permits for keys a vendor does not own; the test
/// suite requires such a header to be propagated rather than discarded. The 32-member
/// limit counts every non-empty list-member received, duplicates included.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TraceState {
    /// Left-most entry first, keys unique.
    entries: Vec<(String, String)>,
}

impl TraceState {
    pub fn new() -> TraceState {
        TraceState::default()
    }

    /// Parses one `tracestate` header value.
    ///
    /// Empty and whitespace-only list-members are skipped. Any invalid list-member, or
    /// more than [`MAX_TRACESTATE_MEMBERS`], invalidates the whole value.
    pub fn parse(header: &str) -> Result<TraceState, TraceStateError> {
        let mut entries: Vec<(String, String)> = Vec::new();
        let mut members = 0;
        for member in header.split(',').map(trim_ows) {
            if member.is_empty() {
                continue;
            }
            members += 1;
            if members > MAX_TRACESTATE_MEMBERS {
                let total = header
                    .split(',')
                    .filter(|m| !trim_ows(m).is_empty())
                    .count();
                return Err(TraceStateError::TooManyMembers(total));
            }
            let (key, value) = member
                .split_once('=')
                .ok_or_else(|| TraceStateError::MissingEquals(member.to_string()))?;
            validate_key(key)?;
            validate_value(value)?;
            if !entries.iter().any(|(existing, _)| existing == key) {
                entries.push((key.to_string(), value.to_string()));
            }
        }
        Ok(TraceState { entries })
    }

    /// Parses several `tracestate` header fields received on one message, combined in
    /// order as RFC 9110 prescribes (joined with commas).
    pub fn parse_combined<'a>(
        fields: impl IntoIterator<Item = &'a str>,
    ) -> Result<TraceState, TraceStateError> {
        let combined = fields.into_iter().collect::<Vec<_>>().join(",");
        TraceState::parse(&combined)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(existing, _)| existing == key)
            .map(|(_, value)| value.as_str())
    }

    /// Adds or updates `key`, moving it to the front as the spec requires of modified
    /// entries. When that makes 33 entries, the right-most one is dropped.
    pub fn insert(&mut self, key: &str, value: &str) -> Result<(), TraceStateError> {
        validate_key(key)?;
        validate_value(value)?;
        self.entries.retain(|(existing, _)| existing != key);
        self.entries.insert(0, (key.to_string(), value.to_string()));
        self.entries.truncate(MAX_TRACESTATE_MEMBERS);
        Ok(())
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        let index = self
            .entries
            .iter()
            .position(|(existing, _)| existing == key)?;
        Some(self.entries.remove(index).1)
    }

    /// Entries from left (most recent) to right.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str()))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// A copy whose header is at most `max_len` characters, made by removing whole
    /// entries as the spec directs: entries longer than 128 characters first (right-most
    /// first), then entries from the end. The order of the kept entries is unchanged.
    pub fn truncated(&self, max_len: usize) -> TraceState {
        let mut kept: Vec<bool> = vec![true; self.entries.len()];
        let mut len = header_len(self.entries.iter().map(entry_len));
        let removal_order = self
            .entries
            .iter()
            .enumerate()
            .rev()
            .filter(|(_, entry)| entry_len(entry) > LARGE_ENTRY_LEN)
            .chain(self.entries.iter().enumerate().rev())
            .map(|(index, _)| index);
        for index in removal_order {
            if len <= max_len {
                break;
            }
            if kept[index] {
                kept[index] = false;
                len = header_len(
                    self.entries
                        .iter()
                        .zip(&kept)
                        .filter(|(_, keep)| **keep)
                        .map(|(entry, _)| entry_len(entry)),
                );
            }
        }
        TraceState {
            entries: self
                .entries
                .iter()
                .zip(kept)
                .filter(|(_, keep)| *keep)
                .map(|(entry, _)| entry.clone())
                .collect(),
        }
    }

    /// The header value to send: the whole list if it fits in
    /// [`MAX_TRACESTATE_HEADER_LEN`] characters, otherwise [`TraceState::truncated`] to
    /// fit. `Display` gives the untruncated list.
    pub fn to_header(&self) -> String {
        self.truncated(MAX_TRACESTATE_HEADER_LEN).to_string()
    }
}

impl fmt::Display for TraceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, (key, value)) in self.entries.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            write!(f, "{key}={value}")?;
        }
        Ok(())
    }
}

impl FromStr for TraceState {
    type Err = TraceStateError;

    fn from_str(s: &str) -> Result<TraceState, TraceStateError> {
        TraceState::parse(s)
    }
}

fn entry_len((key, value): &(String, String)) -> usize {
    key.len() + 1 + value.len()
}

/// The length of the entries joined with commas.
fn header_len(entry_lens: impl Iterator<Item = usize>) -> usize {
    let (count, total): (usize, usize) =
        entry_lens.fold((0, 0), |(count, total), len| (count + 1, total + len));
    total + count.saturating_sub(1)
}

fn validate_key(key: &str) -> Result<(), TraceStateError> {
    let bytes = key.as_bytes();
    let valid = matches!(bytes.first(), Some(b'a'..=b'z' | b'0'..=b'9'))
        && bytes.len() <= MAX_KEY_LEN
        && bytes
            .iter()
            .all(|c| matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'*' | b'/' | b'@'));
    if valid {
        Ok(())
    } else {
        Err(TraceStateError::InvalidKey(key.to_string()))
    }
}

/// Printable ASCII except `,` and `=`, at most 256 characters, not ending in a space.
/// Leading spaces are part of the value.
fn validate_value(value: &str) -> Result<(), TraceStateError> {
    let bytes = value.as_bytes();
    let valid = !bytes.is_empty()
        && bytes.len() <= MAX_VALUE_LEN
        && bytes.last() != Some(&b' ')
        && bytes
            .iter()
            .all(|c| matches!(c, 0x20..=0x7e) && *c != b',' && *c != b'=');
    if valid {
        Ok(())
    } else {
        Err(TraceStateError::InvalidValue(value.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(state: &TraceState) -> Vec<(&str, &str)> {
        state.iter().collect()
    }

    #[test]
    fn parses_the_spec_example() {
        let state = TraceState::parse("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE").unwrap();
        assert_eq!(
            entries(&state),
            [("rojo", "00f067aa0ba902b7"), ("congo", "t61rcWkgMzE")]
        );
        assert_eq!(state.get("congo"), Some("t61rcWkgMzE"));
        assert_eq!(state.get("absent"), None);
        assert_eq!(state.to_string(), "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
    }

    #[test]
    fn optional_whitespace_and_empty_members_are_skipped() {
        for header in [
            "foo=1 \t , \t bar=2, \t baz=3",
            "foo=1\t \t,\t \tbar=2,\t \tbaz=3",
            ",foo=1,,bar=2, ,\t,baz=3,",
        ] {
            let state = TraceState::parse(header).unwrap();
            assert_eq!(
                entries(&state),
                [("foo", "1"), ("bar", "2"), ("baz", "3")],
                "{header:?}"
            );
        }
        assert!(TraceState::parse("").unwrap().is_empty());
        assert!(TraceState::parse(" \t, ").unwrap().is_empty());
    }

    #[test]
    fn leading_value_spaces_are_kept_and_trailing_ones_dropped() {
        let state = TraceState::parse("foo=  bar  ,baz=1").unwrap();
        assert_eq!(state.get("foo"), Some("  bar"));
    }

    #[test]
    fn multi_tenant_and_level_2_keys_are_accepted() {
        let longest_tenant = format!("{}@{}", "t".repeat(241), "v".repeat(14));
        for key in [
            "fw529a3039@dt",
            "0tenant@system",
            longest_tenant.as_str(),
            "foo@",
            "foo@@bar",
            "foo@bar@baz",
            "1starts-with-digit",
            "a_-*/z",
        ] {
            let state = TraceState::parse(&format!("{key}=1,bar=2")).unwrap();
            assert_eq!(state.get(key), Some("1"), "{key}");
        }
    }

    #[test]
    fn key_length_limit_is_256() {
        let longest = "z".repeat(256);
        assert!(TraceState::parse(&format!("foo=1,{longest}=1")).is_ok());
        let too_long = "z".repeat(257);
        assert_eq!(
            TraceState::parse(&format!("foo=1,{too_long}=1")),
            Err(TraceStateError::InvalidKey(too_long))
        );
    }

    #[test]
    fn any_invalid_member_discards_the_whole_header() {
        for header in [
            "foo =1",
            "FOO=1",
            "foo.bar=1",
            "@foo=1,bar=2",
            "foo=bar=baz",
            "foo=,bar=3",
            "foo",
            "foo=1,bar",
            "foo=\tx",
            "foo=é",
        ] {
            assert!(TraceState::parse(header).is_err(), "{header:?} accepted");
        }
        let long_value = "v".repeat(257);
        assert!(TraceState::parse(&format!("foo={long_value}")).is_err());
        assert!(TraceState::parse(&format!("foo={}", "v".repeat(256))).is_ok());
    }

    #[test]
    fn all_allowed_value_characters_are_accepted() {
        let value: String = (0x20u8..=0x7e)
            .filter(|c| *c != b',' && *c != b'=')
            .map(char::from)
            .collect();
        let state = TraceState::parse(&format!("abc@vendor={value}")).unwrap();
        assert_eq!(state.get("abc@vendor"), Some(value.as_str()));
    }

    #[test]
    fn duplicate_keys_keep_the_left_most_entry() {
        let state = TraceState::parse("foo=1,bar=2,foo=3").unwrap();
        assert_eq!(entries(&state), [("foo", "1"), ("bar", "2")]);
        let combined = TraceState::parse_combined(["foo=1", "foo=2"]).unwrap();
        assert_eq!(entries(&combined), [("foo", "1")]);
    }

    fn numbered_members(count: usize) -> String {
        (1..=count)
            .map(|n| format!("bar{n:02}={n:02}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    #[test]
    fn thirty_two_members_are_accepted_and_thirty_three_are_not() {
        let state = TraceState::parse(&numbered_members(32)).unwrap();
        assert_eq!(state.len(), 32);
        assert_eq!(state.get("bar01"), Some("01"));
        assert_eq!(
            TraceState::parse(&numbered_members(33)),
            Err(TraceStateError::TooManyMembers(33))
        );
        // Empty members do not count.
        assert!(TraceState::parse(&format!("{},,,", numbered_members(32))).is_ok());
    }

    #[test]
    fn multiple_fields_combine_in_order() {
        let state =
            TraceState::parse_combined(["foo=1,bar=2", "", "rojo=1,congo=2", "baz=3"]).unwrap();
        assert_eq!(state.to_string(), "foo=1,bar=2,rojo=1,congo=2,baz=3");
        let split_limit = numbered_members(33);
        let (first, second) = split_limit.split_at(100);
        assert!(TraceState::parse_combined([first, second]).is_err());
    }

    #[test]
    fn insert_moves_the_key_to_the_front() {
        let mut state = TraceState::parse("congo=t61rcWkgMzE").unwrap();
        state.insert("rojo", "00f067aa0ba902b7").unwrap();
        assert_eq!(state.to_string(), "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
        state.insert("congo", "ucfJifl5GOE").unwrap();
        assert_eq!(state.to_string(), "congo=ucfJifl5GOE,rojo=00f067aa0ba902b7");
        assert_eq!(state.len(), 2);
    }

    #[test]
    fn insert_validates_and_leaves_the_list_unchanged_on_error() {
        let mut state = TraceState::parse("foo=1").unwrap();
        assert!(matches!(
            state.insert("Bad", "x"),
            Err(TraceStateError::InvalidKey(_))
        ));
        assert!(matches!(
            state.insert("good", "x,y"),
            Err(TraceStateError::InvalidValue(_))
        ));
        assert!(matches!(
            state.insert("good", "trailing "),
            Err(TraceStateError::InvalidValue(_))
        ));
        assert_eq!(state.to_string(), "foo=1");
    }

    #[test]
    fn inserting_a_33rd_entry_drops_the_right_most() {
        let mut state = TraceState::parse(&numbered_members(32)).unwrap();
        state.insert("new", "x").unwrap();
        assert_eq!(state.len(), 32);
        assert_eq!(state.iter().next(), Some(("new", "x")));
        assert_eq!(state.get("bar32"), None);
        assert_eq!(state.get("bar31"), Some("31"));
    }

    #[test]
    fn remove_deletes_only_that_key() {
        let mut state = TraceState::parse("a=1,b=2,c=3").unwrap();
        assert_eq!(state.remove("b"), Some("2".to_string()));
        assert_eq!(state.remove("b"), None);
        assert_eq!(state.to_string(), "a=1,c=3");
    }

    #[test]
    fn truncation_drops_large_entries_first_then_from_the_end() {
        let large = "l".repeat(150);
        let mut state = TraceState::new();
        for (key, value) in [
            ("e", "5"),
            ("big2", large.as_str()),
            ("d", "4"),
            ("c", "3"),
            ("big1", large.as_str()),
            ("b", "2"),
            ("a", "1"),
        ] {
            state.insert(key, value).unwrap();
        }
        assert_eq!(
            state.iter().map(|(key, _)| key).collect::<Vec<_>>(),
            ["a", "b", "big1", "c", "d", "big2", "e"]
        );
        let full_len = state.to_string().len();
        assert_eq!(state.truncated(full_len), state);

        // One large entry has to go: the right-most one.
        let without_big2 = state.truncated(full_len - 1);
        assert_eq!(
            without_big2.to_string(),
            format!("a=1,b=2,big1={large},c=3,d=4,e=5")
        );

        // Both large entries go before any small one.
        let small_only = state.truncated(40);
        assert_eq!(small_only.to_string(), "a=1,b=2,c=3,d=4,e=5");

        // Then small entries go from the end.
        assert_eq!(state.truncated(11).to_string(), "a=1,b=2,c=3");
        assert_eq!(state.truncated(10).to_string(), "a=1,b=2");
        assert!(state.truncated(2).is_empty());
    }

    #[test]
    fn to_header_fits_the_propagation_limit() {
        let mut state = TraceState::new();
        for n in 0..32 {
            state
                .insert(&format!("vendor{n:02}"), &"x".repeat(40))
                .unwrap();
        }
        assert!(state.to_string().len() > MAX_TRACESTATE_HEADER_LEN);
        let header = state.to_header();
        assert!(header.len() <= MAX_TRACESTATE_HEADER_LEN);
        let sent = TraceState::parse(&header).unwrap();
        // Whole entries from the left, as many as fit: each is 49 characters plus a comma.
        assert_eq!(sent.len(), 10);
        assert!(state.iter().zip(sent.iter()).all(|(a, b)| a == b));
    }
}
