//! Attribute keys and values as the hot path holds them.
//!
//! The model's `KeyValue` owns a `String` key; most keys are string literals, so here a
//! key is a `Cow<'static, str>` and costs nothing to attach. Conversion to the model's
//! types happens on the export thread, not on the thread that records the span.

use std::borrow::Cow;

use clew_model::{AttributeValue, KeyValue};

/// An attribute key: usually a string literal, borrowed for free.
pub type Key = Cow<'static, str>;

/// An attribute value. The common scalar types are stored as they are; anything else
/// (arrays, bytes, maps) is carried as the model's [`AttributeValue`].
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(Cow<'static, str>),
    Bool(bool),
    I64(i64),
    F64(f64),
    Other(AttributeValue),
}

impl Value {
    pub fn into_model(self) -> AttributeValue {
        match self {
            Value::Str(s) => AttributeValue::String(s.into_owned()),
            Value::Bool(b) => AttributeValue::Bool(b),
            Value::I64(i) => AttributeValue::Int(i),
            Value::F64(f) => AttributeValue::Double(f),
            Value::Other(v) => v,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            Value::Other(AttributeValue::String(s)) => Some(s),
            _ => None,
        }
    }
}

impl From<&'static str> for Value {
    fn from(v: &'static str) -> Self {
        Value::Str(Cow::Borrowed(v))
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Str(Cow::Owned(v))
    }
}
impl From<Cow<'static, str>> for Value {
    fn from(v: Cow<'static, str>) -> Self {
        Value::Str(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}
impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::I64(v)
    }
}
impl From<i32> for Value {
    fn from(v: i32) -> Self {
        Value::I64(v.into())
    }
}
impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Value::I64(v.into())
    }
}
/// Values above `i64::MAX` saturate: OTLP has no unsigned integer type.
impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Value::I64(i64::try_from(v).unwrap_or(i64::MAX))
    }
}
impl From<usize> for Value {
    fn from(v: usize) -> Self {
        Value::I64(i64::try_from(v).unwrap_or(i64::MAX))
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::F64(v)
    }
}
impl From<f32> for Value {
    fn from(v: f32) -> Self {
        Value::F64(v.into())
    }
}
impl From<AttributeValue> for Value {
    fn from(v: AttributeValue) -> Self {
        match v {
            AttributeValue::String(s) => Value::Str(Cow::Owned(s)),
            AttributeValue::Bool(b) => Value::Bool(b),
            AttributeValue::Int(i) => Value::I64(i),
            AttributeValue::Double(d) => Value::F64(d),
            other => Value::Other(other),
        }
    }
}

/// One key and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Attribute {
    pub key: Key,
    pub value: Value,
}

impl Attribute {
    pub fn new(key: impl Into<Key>, value: impl Into<Value>) -> Attribute {
        Attribute {
            key: key.into(),
            value: value.into(),
        }
    }

    pub fn into_model(self) -> KeyValue {
        KeyValue {
            key: self.key.into_owned(),
            value: self.value.into_model(),
        }
    }
}

/// Shorthand for [`Attribute::new`], so attribute lists of mixed types read well:
/// `span.add_event("reached", [kv("target", "orlan"), kv("distance_km", 0.9)])`.
pub fn kv(key: impl Into<Key>, value: impl Into<Value>) -> Attribute {
    Attribute::new(key, value)
}

impl<K: Into<Key>, V: Into<Value>> From<(K, V)> for Attribute {
    fn from((key, value): (K, V)) -> Self {
        Attribute::new(key, value)
    }
}

impl From<KeyValue> for Attribute {
    fn from(kv: KeyValue) -> Self {
        Attribute::new(kv.key, kv.value)
    }
}

/// Converts attributes to the model's, keeping the last value of a repeated key (the
/// OpenTelemetry rule: setting a key again replaces it). Deduplication happens here, on
/// the export thread, so setting an attribute on the hot path is a plain push.
pub(crate) fn into_model_dedup(attributes: impl IntoIterator<Item = Attribute>) -> Vec<KeyValue> {
    let mut out: Vec<KeyValue> = Vec::new();
    for attribute in attributes {
        match out.iter_mut().find(|kv| kv.key == *attribute.key) {
            Some(existing) => existing.value = attribute.value.into_model(),
            None => out.push(attribute.into_model()),
        }
    }
    out
}

/// Like [`into_model_dedup`], straight to OTLP's types.
pub(crate) fn into_otlp_dedup(
    attributes: impl IntoIterator<Item = Attribute>,
) -> Vec<clew_otlp::proto::common::v1::KeyValue> {
    use clew_otlp::proto::common::v1::any_value::Value as Any;
    use clew_otlp::proto::common::v1::{AnyValue, KeyValue as ProtoKeyValue};
    let mut out: Vec<ProtoKeyValue> = Vec::new();
    for attribute in attributes {
        let value = Some(match attribute.value {
            Value::Str(s) => AnyValue {
                value: Some(Any::StringValue(s.into_owned())),
            },
            Value::Bool(b) => AnyValue {
                value: Some(Any::BoolValue(b)),
            },
            Value::I64(i) => AnyValue {
                value: Some(Any::IntValue(i)),
            },
            Value::F64(f) => AnyValue {
                value: Some(Any::DoubleValue(f)),
            },
            Value::Other(other) => clew_otlp::any_value(&other),
        });
        match out.iter_mut().find(|kv| kv.key == *attribute.key) {
            Some(existing) => existing.value = value,
            None => out.push(ProtoKeyValue {
                key: attribute.key.into_owned(),
                value,
                key_strindex: 0,
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_key_keeps_its_first_position_and_last_value() {
        let model = into_model_dedup([kv("a", 1), kv("b", "x"), kv("a", 2.5)]);
        assert_eq!(
            model,
            vec![KeyValue::new("a", 2.5), KeyValue::new("b", "x")]
        );
    }

    #[test]
    fn values_convert_to_the_model() {
        assert_eq!(
            Value::from(u64::MAX).into_model(),
            AttributeValue::Int(i64::MAX)
        );
        assert_eq!(Value::from(7u32).into_model(), AttributeValue::Int(7));
        let array = AttributeValue::Array(vec![AttributeValue::Int(1)]);
        assert_eq!(Value::from(array.clone()).into_model(), array);
        assert_eq!(
            Value::from(AttributeValue::from("s")),
            Value::Str(Cow::Owned("s".into()))
        );
    }
}
