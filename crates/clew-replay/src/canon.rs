//! Canonical JSON and hashing, the two primitives every signature is built from.
//!
//! Signatures must not depend on how a serializer happens to order map keys or print
//! whitespace (serde_json's `preserve_order` feature, switched on by any crate in a
//! build, would change its map order), so the canonical form is written here by hand:
//! object keys sorted by their UTF-8 bytes, no whitespace, strings escaped as
//! serde_json escapes them, numbers as serde_json prints them.

use std::fmt::Write as _;

use clew_model::AttributeValue;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Appends the canonical JSON text of `value` to `out`.
pub(crate) fn write_canonical(value: &Value, out: &mut String) {
    // Values here are shallow (attribute values nest at most a few levels), so plain
    // recursion is safe; traces themselves are never turned into one deep value.
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(k, out);
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
    }
}

pub(crate) fn canonical_string(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_string(s: &str, out: &mut String) {
    // serde_json's string escaping is fixed by the JSON grammar and its own tests;
    // serializing a &str cannot fail.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

/// The canonical JSON value of an attribute value: strings, booleans and integers as
/// themselves, finite doubles as JSON numbers (always with a fraction or exponent, so
/// `1.0` never equals the integer `1`), other doubles as strings, bytes as hex.
pub(crate) fn attribute_json(value: &AttributeValue) -> Value {
    match value {
        AttributeValue::String(s) => Value::String(s.clone()),
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::Int(i) => Value::from(*i),
        AttributeValue::Double(d) => serde_json::Number::from_f64(*d)
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(d.to_string())),
        AttributeValue::Bytes(b) => {
            let mut hex = String::with_capacity(b.len() * 2);
            for byte in b {
                let _ = write!(hex, "{byte:02x}");
            }
            serde_json::json!({ "bytes": hex })
        }
        AttributeValue::Array(items) => Value::Array(items.iter().map(attribute_json).collect()),
        AttributeValue::Map(items) => Value::Object(
            items
                .iter()
                .map(|kv| (kv.key.clone(), attribute_json(&kv.value)))
                .collect(),
        ),
    }
}

pub(crate) type Hash = [u8; 32];

pub(crate) fn sha256(parts: &[&[u8]]) -> Hash {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

pub(crate) fn hex(hash: &Hash) -> String {
    let mut out = String::with_capacity(64);
    for b in hash {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Streams a canonical JSON array of already-canonical items into SHA-256, so a
/// 50,000-span document is hashed without ever being held in memory whole.
pub(crate) struct ArrayHasher {
    hasher: Sha256,
    first: bool,
}

impl ArrayHasher {
    pub(crate) fn new() -> ArrayHasher {
        let mut hasher = Sha256::new();
        hasher.update(b"[");
        ArrayHasher {
            hasher,
            first: true,
        }
    }

    pub(crate) fn push(&mut self, canonical_item: &str) {
        if !self.first {
            self.hasher.update(b",");
        }
        self.first = false;
        self.hasher.update(canonical_item.as_bytes());
    }

    pub(crate) fn finish(mut self) -> Hash {
        self.hasher.update(b"]");
        self.hasher.finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_sorted_and_whitespace_dropped() {
        let v = json!({"b": 1, "a": {"d": [true, null], "c": "x\"y"}});
        assert_eq!(
            canonical_string(&v),
            r#"{"a":{"c":"x\"y","d":[true,null]},"b":1}"#
        );
    }

    #[test]
    fn doubles_never_collide_with_integers() {
        let int = canonical_string(&attribute_json(&AttributeValue::Int(1)));
        let double = canonical_string(&attribute_json(&AttributeValue::Double(1.0)));
        assert_ne!(int, double);
        assert_eq!(
            canonical_string(&attribute_json(&AttributeValue::Double(f64::NAN))),
            "\"NaN\""
        );
    }

    #[test]
    fn streamed_array_hash_equals_hash_of_the_whole_text() {
        let mut h = ArrayHasher::new();
        h.push("{\"a\":1}");
        h.push("2");
        assert_eq!(h.finish(), sha256(&[b"[{\"a\":1},2]"]));
        assert_eq!(ArrayHasher::new().finish(), sha256(&[b"[]"]));
    }
}
