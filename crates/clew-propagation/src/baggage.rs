use std::collections::HashSet;
use std::fmt::{self, Write};

use crate::trim_ows;

/// The most list-members a [`Baggage`] holds: the count the spec requires every
/// platform to propagate.
pub const MAX_BAGGAGE_MEMBERS: usize = 64;
/// The longest `baggage` header, in bytes, a [`Baggage`] formats to: the size the spec
/// requires every platform to propagate.
pub const MAX_BAGGAGE_BYTES: usize = 8192;

/// Why a baggage mutation was refused. Parsing never fails; see [`Baggage::parse`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BaggageError {
    #[error("invalid baggage key {0:?}: keys are RFC 7230 tokens")]
    InvalidKey(String),
    #[error(
        "invalid baggage metadata {0:?}: expected `key` or `key=value` properties separated by ';'"
    )]
    InvalidMetadata(String),
    #[error("baggage already holds {MAX_BAGGAGE_MEMBERS} list-members")]
    TooManyMembers,
    #[error("baggage would format to {0} bytes; at most {MAX_BAGGAGE_BYTES} are allowed")]
    TooLarge(usize),
}

/// One `key=value;properties` list-member of a `baggage` header.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BaggageMember {
    key: String,
    /// Percent-decoded.
    value: String,
    /// Normalised properties without the leading `;`, or empty.
    metadata: String,
}

impl BaggageMember {
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The value, percent-decoded.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// The properties after the value, separated by `;` and without the leading `;`
    /// (for example `prop1;prop2=val`), or `""` when there are none. The spec gives
    /// properties no meaning, so they are kept as received: property values stay
    /// percent-encoded, and only the optional whitespace around them is removed.
    pub fn metadata(&self) -> &str {
        &self.metadata
    }

    /// Each property of [`BaggageMember::metadata`]: `key` or `key=value`.
    pub fn properties(&self) -> impl Iterator<Item = &str> {
        self.metadata
            .split(';')
            .filter(|property| !property.is_empty())
    }

    /// The length of this member in a formatted header.
    fn encoded_len(&self) -> usize {
        let value_len: usize = self
            .value
            .bytes()
            .map(|b| if needs_encoding(b) { 3 } else { 1 })
            .sum();
        let metadata_len = if self.metadata.is_empty() {
            0
        } else {
            1 + self.metadata.len()
        };
        self.key.len() + 1 + value_len + metadata_len
    }
}

impl fmt::Display for BaggageMember {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key)?;
        f.write_char('=')?;
        for b in self.value.bytes() {
            if needs_encoding(b) {
                write!(f, "%{b:02X}")?;
            } else {
                f.write_char(char::from(b))?;
            }
        }
        if !self.metadata.is_empty() {
            f.write_char(';')?;
            f.write_str(&self.metadata)?;
        }
        Ok(())
    }
}

/// W3C Baggage: application-defined `key=value` pairs that travel with a request.
///
/// Keys are unique and case-sensitive; members keep the order they were received or
/// added in, and updating a key keeps its position.
///
/// A `Baggage` never exceeds the spec's limits, [`MAX_BAGGAGE_MEMBERS`] members and
/// [`MAX_BAGGAGE_BYTES`] bytes once formatted, so whatever it holds can be propagated in
/// full. Mutations that would break a limit are refused; parsing drops members instead.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Baggage {
    members: Vec<BaggageMember>,
}

impl Baggage {
    pub fn new() -> Baggage {
        Baggage::default()
    }

    /// Parses one `baggage` header value. This never fails, because the spec leaves the
    /// handling of malformed input to the implementation and a bad member should not
    /// cost the good ones:
    /// - a list-member that does not follow the grammar (including an empty one) is
    ///   dropped, and the rest are kept;
    /// - when a key repeats, only its first well-formed member counts: it is kept, or
    ///   dropped for size, and later members with that key are ignored either way;
    /// - members are taken in order while they fit the limits: once 64 are kept the rest
    ///   are dropped, and a member that would take the formatted header past 8192 bytes
    ///   is dropped while later, smaller ones may still fit. Members are never cut.
    pub fn parse(header: &str) -> Baggage {
        let mut baggage = Baggage::new();
        let mut len = 0;
        // Keys of kept and of too-large members alike, so a later duplicate never
        // stands in for a first member that did not fit.
        let mut seen_keys = HashSet::new();
        for text in header.split(',') {
            let Some(member) = parse_member(trim_ows(text)) else {
                continue;
            };
            if !seen_keys.insert(member.key.clone()) {
                continue;
            }
            if baggage.members.len() == MAX_BAGGAGE_MEMBERS {
                break;
            }
            let separator = usize::from(!baggage.members.is_empty());
            let grown = len + separator + member.encoded_len();
            if grown <= MAX_BAGGAGE_BYTES {
                len = grown;
                baggage.members.push(member);
            }
        }
        baggage
    }

    /// Parses several `baggage` header fields of one message; the spec treats them as a
    /// single list, so the limits apply to the combination.
    pub fn parse_combined<'a>(fields: impl IntoIterator<Item = &'a str>) -> Baggage {
        Baggage::parse(&fields.into_iter().collect::<Vec<_>>().join(","))
    }

    /// The decoded value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.member(key).map(BaggageMember::value)
    }

    pub fn member(&self, key: &str) -> Option<&BaggageMember> {
        self.members.iter().find(|member| member.key == key)
    }

    /// Sets `key` to `value` without metadata. See [`Baggage::set_with_metadata`].
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), BaggageError> {
        self.set_with_metadata(key, value, "")
    }

    /// Sets `key` to `value` (any text; it is percent-encoded when formatted), with
    /// `metadata` in the form [`BaggageMember::metadata`] returns (`""` for none). An
    /// existing key keeps its position. Refused, leaving the baggage unchanged, when the
    /// key is not a token, the metadata is malformed or a limit would be exceeded.
    pub fn set_with_metadata(
        &mut self,
        key: &str,
        value: &str,
        metadata: &str,
    ) -> Result<(), BaggageError> {
        if !is_token(key) {
            return Err(BaggageError::InvalidKey(key.to_string()));
        }
        let metadata = if metadata.is_empty() {
            String::new()
        } else {
            normalize_metadata(metadata)
                .ok_or_else(|| BaggageError::InvalidMetadata(metadata.to_string()))?
        };
        let member = BaggageMember {
            key: key.to_string(),
            value: value.to_string(),
            metadata,
        };
        let current_len = self.encoded_len();
        let existing = self.members.iter().position(|m| m.key == key);
        let new_len = match existing {
            Some(index) => current_len - self.members[index].encoded_len() + member.encoded_len(),
            None if self.members.len() == MAX_BAGGAGE_MEMBERS => {
                return Err(BaggageError::TooManyMembers);
            }
            None => current_len + usize::from(!self.members.is_empty()) + member.encoded_len(),
        };
        if new_len > MAX_BAGGAGE_BYTES {
            return Err(BaggageError::TooLarge(new_len));
        }
        match existing {
            Some(index) => self.members[index] = member,
            None => self.members.push(member),
        }
        Ok(())
    }

    pub fn remove(&mut self, key: &str) -> Option<BaggageMember> {
        let index = self.members.iter().position(|m| m.key == key)?;
        Some(self.members.remove(index))
    }

    pub fn iter(&self) -> impl Iterator<Item = &BaggageMember> {
        self.members.iter()
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The length in bytes of the formatted header.
    pub fn encoded_len(&self) -> usize {
        let members: usize = self.members.iter().map(BaggageMember::encoded_len).sum();
        members + self.members.len().saturating_sub(1)
    }
}

/// Formats the `baggage` header value.
impl fmt::Display for Baggage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, member) in self.members.iter().enumerate() {
            if index > 0 {
                f.write_char(',')?;
            }
            write!(f, "{member}")?;
        }
        Ok(())
    }
}

/// `key OWS "=" OWS value *( OWS ";" OWS property )`, already stripped of surrounding
/// whitespace.
fn parse_member(text: &str) -> Option<BaggageMember> {
    let (key_value, metadata) = match text.split_once(';') {
        Some((key_value, properties)) => (key_value, normalize_metadata(properties)?),
        None => (text, String::new()),
    };
    let (key, value) = key_value.split_once('=')?;
    let key = trim_ows(key);
    let value = trim_ows(value);
    if !is_token(key) || !value.bytes().all(is_baggage_octet) {
        return None;
    }
    Some(BaggageMember {
        key: key.to_string(),
        value: percent_decode(value),
        metadata,
    })
}

/// Validates `property *( OWS ";" OWS property )` and drops its optional whitespace.
fn normalize_metadata(text: &str) -> Option<String> {
    let mut normalized = String::with_capacity(text.len());
    for property in text.split(';') {
        if !normalized.is_empty() {
            normalized.push(';');
        }
        match property.split_once('=') {
            Some((key, value)) => {
                let (key, value) = (trim_ows(key), trim_ows(value));
                if !is_token(key) || !value.bytes().all(is_baggage_octet) {
                    return None;
                }
                normalized.push_str(key);
                normalized.push('=');
                normalized.push_str(value);
            }
            None => {
                let key = trim_ows(property);
                if !is_token(key) {
                    return None;
                }
                normalized.push_str(key);
            }
        }
    }
    Some(normalized)
}

/// RFC 7230 `token`: one or more `tchar`.
fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text.bytes().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(
                    c,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

/// Printable ASCII except space, `"`, `,`, `;` and `\`.
fn is_baggage_octet(c: u8) -> bool {
    matches!(c, 0x21 | 0x23..=0x2b | 0x2d..=0x3a | 0x3c..=0x5b | 0x5d..=0x7e)
}

/// `%` is a baggage-octet, but must be encoded so that decoding gives it back.
fn needs_encoding(c: u8) -> bool {
    c == b'%' || !is_baggage_octet(c)
}

/// Decodes `%XX` escapes (either case). A `%` not followed by two hex digits stands for
/// itself, and byte sequences that are not UTF-8 become U+FFFD as the spec requires.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes.get(i..i + 3) {
            Some([b'%', hi, lo]) => hex_value(*hi)
                .zip(hex_value(*lo))
                .map(|(hi, lo)| (hi << 4) | lo),
            _ => None,
        };
        match escaped {
            Some(byte) => {
                decoded.push(byte);
                i += 3;
            }
            None => {
                decoded.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

fn hex_value(c: u8) -> Option<u8> {
    char::from(c).to_digit(16).map(|digit| digit as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(baggage: &Baggage) -> Vec<(&str, &str)> {
        baggage.iter().map(|m| (m.key(), m.value())).collect()
    }

    #[test]
    fn parses_the_spec_example_with_properties() {
        let baggage = Baggage::parse(
            "key1=value1;property1;property2, key2 = value2, key3=value3; propertyKey=propertyValue",
        );
        assert_eq!(
            pairs(&baggage),
            [("key1", "value1"), ("key2", "value2"), ("key3", "value3")]
        );
        let key1 = baggage.member("key1").unwrap();
        assert_eq!(key1.metadata(), "property1;property2");
        assert_eq!(
            key1.properties().collect::<Vec<_>>(),
            ["property1", "property2"]
        );
        assert_eq!(baggage.member("key2").unwrap().metadata(), "");
        assert_eq!(
            baggage.member("key3").unwrap().metadata(),
            "propertyKey=propertyValue"
        );
        assert_eq!(
            baggage.to_string(),
            "key1=value1;property1;property2,key2=value2,key3=value3;propertyKey=propertyValue"
        );
    }

    #[test]
    fn values_are_percent_decoded_and_re_encoded() {
        let header = "userId=Am%C3%A9lie,serverNode=DF%2028,isProduction=false";
        let baggage = Baggage::parse(header);
        assert_eq!(baggage.get("userId"), Some("Amélie"));
        assert_eq!(baggage.get("serverNode"), Some("DF 28"));
        assert_eq!(baggage.get("isProduction"), Some("false"));
        assert_eq!(baggage.to_string(), header);
    }

    #[test]
    fn formatting_encodes_everything_outside_baggage_octets_and_percent() {
        let mut baggage = Baggage::new();
        baggage.set("k", "a b,c;d\\e\"f%g=h~\u{1F600}\t").unwrap();
        assert_eq!(
            baggage.to_string(),
            "k=a%20b%2Cc%3Bd%5Ce%22f%25g=h~%F0%9F%98%80%09"
        );
        assert_eq!(
            Baggage::parse(&baggage.to_string()).get("k"),
            Some("a b,c;d\\e\"f%g=h~\u{1F600}\t")
        );
    }

    #[test]
    fn decoding_is_lenient_about_case_stray_percent_and_bad_utf8() {
        let baggage = Baggage::parse("lower=%c3%a9,stray=100%,short=%4,bad=%FF%C3,eq=a=b");
        assert_eq!(baggage.get("lower"), Some("é"));
        assert_eq!(baggage.get("stray"), Some("100%"));
        assert_eq!(baggage.get("short"), Some("%4"));
        assert_eq!(baggage.get("bad"), Some("\u{FFFD}\u{FFFD}"));
        assert_eq!(baggage.get("eq"), Some("a=b"));
        assert!(baggage.to_string().contains("stray=100%25"));
    }

    #[test]
    fn whitespace_around_keys_values_and_properties_is_optional() {
        let baggage = Baggage::parse_combined([
            "userId =   alice",
            "serverNode = DF%2028 ; p1 ;\tp2 = v2 , isProduction = false",
        ]);
        assert_eq!(
            pairs(&baggage),
            [
                ("userId", "alice"),
                ("serverNode", "DF 28"),
                ("isProduction", "false")
            ]
        );
        assert_eq!(baggage.member("serverNode").unwrap().metadata(), "p1;p2=v2");
    }

    #[test]
    fn empty_values_are_allowed() {
        let baggage = Baggage::parse("empty=,next=1;flag=");
        assert_eq!(pairs(&baggage), [("empty", ""), ("next", "1")]);
        assert_eq!(baggage.member("next").unwrap().metadata(), "flag=");
        assert_eq!(baggage.to_string(), "empty=,next=1;flag=");
    }

    #[test]
    fn malformed_members_are_dropped_and_the_rest_kept() {
        let baggage = Baggage::parse(
            "good=1,bad key=2,=3,noequals,,quoted=\"x\",spaced=a b,semi=v;,both=v;;p,\
             badprop=v;p q,also=fine,unicode=é,k(=1",
        );
        assert_eq!(pairs(&baggage), [("good", "1"), ("also", "fine")]);
        assert!(Baggage::parse("").is_empty());
        assert!(Baggage::parse(" , ,").is_empty());
    }

    #[test]
    fn the_first_member_of_a_repeated_key_wins() {
        let baggage = Baggage::parse("k=1,other=x,k=2");
        assert_eq!(pairs(&baggage), [("k", "1"), ("other", "x")]);
    }

    #[test]
    fn a_repeated_key_does_not_replace_a_first_member_that_was_too_large() {
        let header = format!("k={},k=small", "x".repeat(MAX_BAGGAGE_BYTES));
        assert!(Baggage::parse(&header).is_empty());
    }

    #[test]
    fn parsing_keeps_at_most_64_members() {
        let header = (0..70)
            .map(|n| format!("k{n}=v"))
            .collect::<Vec<_>>()
            .join(",");
        let baggage = Baggage::parse(&header);
        assert_eq!(baggage.len(), MAX_BAGGAGE_MEMBERS);
        assert_eq!(baggage.get("k63"), Some("v"));
        assert_eq!(baggage.get("k64"), None);
    }

    #[test]
    fn parsing_drops_whole_members_past_8192_bytes() {
        // Seven members of 1,100 bytes make 7,706 bytes with commas; the eighth would not
        // fit, but the small member after it does.
        let big = |n: usize| format!("big{n}={}", "x".repeat(1100 - 5));
        let mut fields: Vec<String> = (0..8).map(big).collect();
        fields.push("small=1".to_string());
        let baggage = Baggage::parse(&fields.join(","));
        assert_eq!(baggage.len(), 8);
        assert!(baggage.get("big6").is_some());
        assert_eq!(baggage.get("big7"), None);
        assert_eq!(baggage.get("small"), Some("1"));
        assert!(baggage.to_string().len() <= MAX_BAGGAGE_BYTES);
        assert_eq!(baggage.encoded_len(), baggage.to_string().len());
    }

    #[test]
    fn limits_count_encoded_bytes() {
        // 2,000 spaces encode to 6,000 bytes; a second such value cannot fit.
        let spaces = " ".repeat(2000);
        let mut baggage = Baggage::new();
        baggage.set("a", &spaces).unwrap();
        assert_eq!(baggage.encoded_len(), 6002);
        assert_eq!(
            baggage.set("b", &spaces),
            Err(BaggageError::TooLarge(12005))
        );
        assert_eq!(baggage.len(), 1);
    }

    #[test]
    fn set_updates_in_place_and_adds_at_the_end() {
        let mut baggage = Baggage::parse("a=1;p,b=2");
        baggage.set("c", "3").unwrap();
        baggage.set("a", "one").unwrap();
        assert_eq!(pairs(&baggage), [("a", "one"), ("b", "2"), ("c", "3")]);
        assert_eq!(baggage.member("a").unwrap().metadata(), "");
        baggage
            .set_with_metadata("b", "two", " ttl = 30 ;pinned")
            .unwrap();
        assert_eq!(baggage.to_string(), "a=one,b=two;ttl=30;pinned,c=3");
    }

    #[test]
    fn set_refuses_bad_keys_metadata_and_limits() {
        let mut baggage = Baggage::new();
        for key in ["", "has space", "semi;colon", "é", "a=b"] {
            assert_eq!(
                baggage.set(key, "v"),
                Err(BaggageError::InvalidKey(key.to_string()))
            );
        }
        for metadata in [";p", "p;", "p q", "p=\"v\"", "=v"] {
            assert!(matches!(
                baggage.set_with_metadata("k", "v", metadata),
                Err(BaggageError::InvalidMetadata(_))
            ));
        }
        for n in 0..MAX_BAGGAGE_MEMBERS {
            baggage.set(&format!("k{n}"), "v").unwrap();
        }
        assert_eq!(
            baggage.set("one-more", "v"),
            Err(BaggageError::TooManyMembers)
        );
        // Updating an existing key is still allowed at the member limit.
        baggage.set("k0", "updated").unwrap();
        assert_eq!(baggage.get("k0"), Some("updated"));
        assert!(matches!(
            baggage.set("k1", &"x".repeat(MAX_BAGGAGE_BYTES)),
            Err(BaggageError::TooLarge(_))
        ));
        assert_eq!(baggage.get("k1"), Some("v"));
    }

    #[test]
    fn remove_returns_the_member() {
        let mut baggage = Baggage::parse("a=1;p,b=2");
        let removed = baggage.remove("a").unwrap();
        assert_eq!(
            (removed.key(), removed.value(), removed.metadata()),
            ("a", "1", "p")
        );
        assert_eq!(baggage.remove("a"), None);
        assert_eq!(baggage.to_string(), "b=2");
    }
}
