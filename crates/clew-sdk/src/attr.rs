//! Attribute keys and values as the hot path holds them.
//!
//! The model's `KeyValue` owns a `String` key; most keys are string literals, so here a
//! key is a `Cow<'static, str>` and costs nothing to attach. Conversion to the model's
//! types happens on the export thread, not on the thread that records the span.

use std::borrow::Cow;
use std::mem::MaybeUninit;

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

    /// Whether dropping this attribute would free nothing (a literal key with a
    /// literal or scalar value).
    #[inline]
    pub(crate) fn owns_nothing(&self) -> bool {
        matches!(self.key, Cow::Borrowed(_))
            && matches!(
                self.value,
                Value::Str(Cow::Borrowed(_)) | Value::Bool(_) | Value::I64(_) | Value::F64(_)
            )
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

/// How many attributes a span holds without a heap allocation.
const INLINE: usize = 4;

/// A span's attributes: the first four in place, the rest in a vector.
///
/// Unlike a small vector that moves everything to the heap once it outgrows its inline
/// room, the inline slots stay in use, so where an attribute goes depends on its
/// position only; adding one is a compare, a few stores and an increment.
pub(crate) struct AttributeList {
    len: usize,
    inline: [MaybeUninit<Attribute>; INLINE],
    /// Attributes after the first `INLINE`, in order.
    more: Vec<Attribute>,
}

impl AttributeList {
    pub(crate) const fn new() -> AttributeList {
        AttributeList {
            len: 0,
            inline: [const { MaybeUninit::uninit() }; INLINE],
            more: Vec::new(),
        }
    }

    /// Appends `Attribute::new(key, value)`, converting the key and value only once
    /// its slot is known, so the attribute is written straight there. (Built first
    /// and then moved, its narrow stores would be read back by wide loads, which
    /// stalls the CPU: a measurable part of a span's cost.)
    #[inline]
    pub(crate) fn push_new(&mut self, key: impl Into<Key>, value: impl Into<Value>) {
        if self.len < INLINE {
            self.inline[self.len].write(Attribute {
                key: key.into(),
                value: value.into(),
            });
            self.len += 1;
        } else {
            self.push_more(Attribute::new(key, value));
        }
    }

    #[inline]
    pub(crate) fn push(&mut self, attribute: Attribute) {
        if self.len < INLINE {
            self.inline[self.len].write(attribute);
            self.len += 1;
        } else {
            self.push_more(attribute);
        }
    }

    #[cold]
    fn push_more(&mut self, attribute: Attribute) {
        self.more.push(attribute);
        self.len += 1;
    }

    pub(crate) fn extend(&mut self, attributes: impl IntoIterator<Item = Attribute>) {
        for attribute in attributes {
            self.push(attribute);
        }
    }

    fn inline_len(&self) -> usize {
        self.len.min(INLINE)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Attribute> {
        // SAFETY: the first `inline_len` slots are initialised.
        let inline = unsafe {
            std::slice::from_raw_parts(self.inline.as_ptr().cast::<Attribute>(), self.inline_len())
        };
        inline.iter().chain(self.more.iter())
    }

    pub(crate) fn clear(&mut self) {
        let inline = self.inline_len();
        self.len = 0;
        for slot in &mut self.inline[..inline] {
            // SAFETY: slots below the old length were initialised; `len` is already
            // 0, so a panic while dropping cannot drop one twice.
            unsafe { slot.assume_init_drop() };
        }
        self.more.clear();
    }

    /// Whether dropping the list would free nothing.
    #[inline]
    pub(crate) fn owns_nothing(&self) -> bool {
        self.more.capacity() == 0 && self.iter().all(Attribute::owns_nothing)
    }
}

impl Drop for AttributeList {
    fn drop(&mut self) {
        self.clear();
    }
}

impl IntoIterator for AttributeList {
    type Item = Attribute;
    type IntoIter = IntoIter;

    fn into_iter(mut self) -> IntoIter {
        let inline_len = self.inline_len();
        self.len = 0;
        IntoIter {
            // SAFETY: `len` is 0, so the list's drop no longer drops the first
            // `inline_len` slots: they move to the iterator, which owns them now.
            inline: unsafe { std::ptr::read(&self.inline) },
            next: 0,
            inline_len,
            more: std::mem::take(&mut self.more).into_iter(),
        }
    }
}

/// The attributes of an [`AttributeList`], by value.
pub(crate) struct IntoIter {
    inline: [MaybeUninit<Attribute>; INLINE],
    next: usize,
    inline_len: usize,
    more: std::vec::IntoIter<Attribute>,
}

impl Iterator for IntoIter {
    type Item = Attribute;

    fn next(&mut self) -> Option<Attribute> {
        if self.next < self.inline_len {
            self.next += 1;
            // SAFETY: slots `next..inline_len` are initialised and each is read once.
            Some(unsafe { self.inline[self.next - 1].assume_init_read() })
        } else {
            self.more.next()
        }
    }
}

impl Drop for IntoIter {
    fn drop(&mut self) {
        let (from, to) = (self.next, self.inline_len);
        self.next = to;
        for slot in &mut self.inline[from..to] {
            // SAFETY: these slots were initialised and not read.
            unsafe { slot.assume_init_drop() };
        }
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
    fn an_attribute_list_keeps_order_past_its_inline_room() {
        let mut list = AttributeList::new();
        assert!(list.owns_nothing());
        for i in 0..7 {
            list.push_new(
                if i % 2 == 0 {
                    Cow::Borrowed("k")
                } else {
                    Cow::Owned(format!("k{i}"))
                },
                i,
            );
        }
        assert!(!list.owns_nothing());
        let keys: Vec<String> = list.iter().map(|a| a.key.to_string()).collect();
        assert_eq!(keys, ["k", "k1", "k", "k3", "k", "k5", "k"]);
        // Partly consumed: the rest is dropped with the iterator.
        let mut iter = list.into_iter();
        assert_eq!(iter.next().map(|a| a.value), Some(Value::I64(0)));
        assert_eq!(iter.next().map(|a| a.value), Some(Value::I64(1)));
        drop(iter);
        let mut list = AttributeList::new();
        list.extend([kv("a", "x"), kv("b", 2)]);
        assert!(list.owns_nothing());
        let all: Vec<Attribute> = list.into_iter().collect();
        assert_eq!(all, vec![kv("a", "x"), kv("b", 2)]);
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
