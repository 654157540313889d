//! Spans on their way to the store, in whichever form they arrived.
//!
//! Model spans own every string they hold, so turning an OTLP request of 500 spans into
//! them means thousands of small allocations, freed again right after the store has
//! encoded them. [`WireSpans`] keeps the request bytes instead and indexes them: a span
//! is a fixed-size record whose name, attribute keys and string values are ranges of the
//! body. Resources and scopes, shared by many spans, are decoded once per `ResourceSpans`
//! and `ScopeSpans`; events, links and nested attribute values (rare) are decoded into
//! model types.
//!
//! [`SpanBatch`] is either form, [`SpanRef`] one span of it, with the accessors the write
//! path needs; [`SpanRef::to_span`] gives the model span when something needs one.

use std::sync::Arc;

use clew_model::{
    AttributeValue, Event, KeyValue, Link, Resource, Scope, Span, SpanId, SpanKind, Status,
    StatusCode, TraceId,
};
use prost::bytes::Bytes;

/// A range of the request body holding UTF-8 (checked when it was decoded).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Text {
    pub(crate) start: u32,
    pub(crate) len: u32,
}

/// An attribute value: scalars inline, strings and bytes as ranges of the body, nested
/// lists and maps decoded into [`WireSpans::values`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum RawValue {
    Str(Text),
    Bool(bool),
    Int(i64),
    Double(f64),
    Bytes(Text),
    Decoded(u32),
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct RawAttr {
    pub(crate) key: Text,
    pub(crate) value: RawValue,
}

/// No events or links.
pub(crate) const NO_EXTRAS: u32 = u32::MAX;

#[derive(Debug, Clone)]
pub(crate) struct RawSpan {
    pub(crate) trace_id: TraceId,
    pub(crate) span_id: SpanId,
    pub(crate) parent_span_id: Option<SpanId>,
    pub(crate) kind: SpanKind,
    pub(crate) status: StatusCode,
    pub(crate) flags: u32,
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) name: Text,
    pub(crate) trace_state: Text,
    pub(crate) status_message: Text,
    /// `attrs[attrs_start..attrs_end]`.
    pub(crate) attrs_start: u32,
    pub(crate) attrs_end: u32,
    pub(crate) resource: u32,
    pub(crate) scope: u32,
    /// Index into `extras`, or [`NO_EXTRAS`].
    pub(crate) extras: u32,
}

/// The spans of one OTLP protobuf request, indexed in place (see the module docs).
///
/// Built only by the decoder in this crate, which checks that every [`Text`] lies inside
/// `body` and is valid UTF-8; `body` never changes afterwards.
#[derive(Debug, Default, Clone)]
pub struct WireSpans {
    pub(crate) body: Bytes,
    pub(crate) spans: Vec<RawSpan>,
    pub(crate) attrs: Vec<RawAttr>,
    pub(crate) values: Vec<AttributeValue>,
    pub(crate) resources: Vec<Arc<Resource>>,
    pub(crate) scopes: Vec<Scope>,
    pub(crate) extras: Vec<(Vec<Event>, Vec<Link>)>,
}

impl WireSpans {
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    #[inline]
    fn text(&self, t: Text) -> &str {
        let bytes = &self.body[t.start as usize..(t.start + t.len) as usize];
        // SAFETY: the decoder creates a `Text` only for a range of `body` it has checked
        // to be UTF-8 (see `wire::utf8`), and `body` is immutable.
        unsafe { std::str::from_utf8_unchecked(bytes) }
    }

    #[inline]
    fn bytes(&self, t: Text) -> &[u8] {
        &self.body[t.start as usize..(t.start + t.len) as usize]
    }

    #[inline]
    fn value(&self, v: RawValue) -> ValueRef<'_> {
        match v {
            RawValue::Str(t) => ValueRef::String(self.text(t)),
            RawValue::Bool(b) => ValueRef::Bool(b),
            RawValue::Int(i) => ValueRef::Int(i),
            RawValue::Double(d) => ValueRef::Double(d),
            RawValue::Bytes(t) => ValueRef::Bytes(self.bytes(t)),
            RawValue::Decoded(i) => ValueRef::Other(&self.values[i as usize]),
        }
    }
}

/// Spans queued for the store: model spans, or an OTLP request indexed in place.
#[derive(Debug, Clone)]
pub enum SpanBatch {
    Model(Vec<Span>),
    Wire(WireSpans),
}

impl Default for SpanBatch {
    fn default() -> SpanBatch {
        SpanBatch::Model(Vec::new())
    }
}

impl From<Vec<Span>> for SpanBatch {
    fn from(spans: Vec<Span>) -> SpanBatch {
        SpanBatch::Model(spans)
    }
}

impl SpanBatch {
    pub fn len(&self) -> usize {
        match self {
            SpanBatch::Model(spans) => spans.len(),
            SpanBatch::Wire(wire) => wire.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn iter(&self) -> Spans<'_> {
        Spans(match self {
            SpanBatch::Model(spans) => SpansInner::Model(spans.iter()),
            SpanBatch::Wire(wire) => SpansInner::Wire(wire, wire.spans.iter()),
        })
    }

    #[inline]
    pub fn get(&self, i: usize) -> SpanRef<'_> {
        match self {
            SpanBatch::Model(spans) => SpanRef::Model(&spans[i]),
            SpanBatch::Wire(wire) => SpanRef::Wire(WireSpan {
                batch: wire,
                raw: &wire.spans[i],
            }),
        }
    }

    /// The batch as model spans.
    pub fn into_spans(self) -> Vec<Span> {
        match self {
            SpanBatch::Model(spans) => spans,
            SpanBatch::Wire(wire) => (0..wire.len())
                .map(|i| {
                    SpanRef::Wire(WireSpan {
                        batch: &wire,
                        raw: &wire.spans[i],
                    })
                    .to_span()
                })
                .collect(),
        }
    }
}

/// The spans of a [`SpanBatch`], in order.
pub struct Spans<'a>(SpansInner<'a>);

enum SpansInner<'a> {
    Model(std::slice::Iter<'a, Span>),
    Wire(&'a WireSpans, std::slice::Iter<'a, RawSpan>),
}

impl<'a> Iterator for Spans<'a> {
    type Item = SpanRef<'a>;

    #[inline]
    fn next(&mut self) -> Option<SpanRef<'a>> {
        match &mut self.0 {
            SpansInner::Model(it) => it.next().map(SpanRef::Model),
            SpansInner::Wire(batch, it) => {
                it.next().map(|raw| SpanRef::Wire(WireSpan { batch, raw }))
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = match &self.0 {
            SpansInner::Model(it) => it.len(),
            SpansInner::Wire(_, it) => it.len(),
        };
        (n, Some(n))
    }
}

impl ExactSizeIterator for Spans<'_> {}

/// One span of a [`WireSpans`].
#[derive(Debug, Clone, Copy)]
pub struct WireSpan<'a> {
    batch: &'a WireSpans,
    raw: &'a RawSpan,
}

/// One span of a [`SpanBatch`], whatever its form.
#[derive(Debug, Clone, Copy)]
pub enum SpanRef<'a> {
    Model(&'a Span),
    Wire(WireSpan<'a>),
}

/// An attribute value borrowed from either form. Lists and maps are always model values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValueRef<'a> {
    String(&'a str),
    Bool(bool),
    Int(i64),
    Double(f64),
    Bytes(&'a [u8]),
    /// An array or a map.
    Other(&'a AttributeValue),
}

impl<'a> ValueRef<'a> {
    pub fn of(value: &'a AttributeValue) -> ValueRef<'a> {
        match value {
            AttributeValue::String(s) => ValueRef::String(s),
            AttributeValue::Bool(b) => ValueRef::Bool(*b),
            AttributeValue::Int(i) => ValueRef::Int(*i),
            AttributeValue::Double(d) => ValueRef::Double(*d),
            AttributeValue::Bytes(b) => ValueRef::Bytes(b),
            other => ValueRef::Other(other),
        }
    }

    pub fn as_str(self) -> Option<&'a str> {
        match self {
            ValueRef::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn to_value(self) -> AttributeValue {
        match self {
            ValueRef::String(s) => AttributeValue::String(s.to_string()),
            ValueRef::Bool(b) => AttributeValue::Bool(b),
            ValueRef::Int(i) => AttributeValue::Int(i),
            ValueRef::Double(d) => AttributeValue::Double(d),
            ValueRef::Bytes(b) => AttributeValue::Bytes(b.to_vec()),
            ValueRef::Other(v) => v.clone(),
        }
    }
}

/// A span's attributes, in order.
pub struct Attributes<'a>(AttributesInner<'a>);

enum AttributesInner<'a> {
    Model(std::slice::Iter<'a, KeyValue>),
    Wire(&'a WireSpans, std::slice::Iter<'a, RawAttr>),
}

impl<'a> Iterator for Attributes<'a> {
    type Item = (&'a str, ValueRef<'a>);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.0 {
            AttributesInner::Model(it) => it
                .next()
                .map(|kv| (kv.key.as_str(), ValueRef::of(&kv.value))),
            AttributesInner::Wire(batch, it) => {
                it.next().map(|a| (batch.text(a.key), batch.value(a.value)))
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = match &self.0 {
            AttributesInner::Model(it) => it.len(),
            AttributesInner::Wire(_, it) => it.len(),
        };
        (n, Some(n))
    }
}

impl ExactSizeIterator for Attributes<'_> {}

impl<'a> SpanRef<'a> {
    #[inline]
    pub fn trace_id(self) -> TraceId {
        match self {
            SpanRef::Model(s) => s.trace_id,
            SpanRef::Wire(w) => w.raw.trace_id,
        }
    }

    #[inline]
    pub fn span_id(self) -> SpanId {
        match self {
            SpanRef::Model(s) => s.span_id,
            SpanRef::Wire(w) => w.raw.span_id,
        }
    }

    #[inline]
    pub fn parent_span_id(self) -> Option<SpanId> {
        match self {
            SpanRef::Model(s) => s.parent_span_id,
            SpanRef::Wire(w) => w.raw.parent_span_id,
        }
    }

    #[inline]
    pub fn trace_state(self) -> &'a str {
        match self {
            SpanRef::Model(s) => &s.trace_state,
            SpanRef::Wire(w) => w.batch.text(w.raw.trace_state),
        }
    }

    #[inline]
    pub fn name(self) -> &'a str {
        match self {
            SpanRef::Model(s) => &s.name,
            SpanRef::Wire(w) => w.batch.text(w.raw.name),
        }
    }

    #[inline]
    pub fn kind(self) -> SpanKind {
        match self {
            SpanRef::Model(s) => s.kind,
            SpanRef::Wire(w) => w.raw.kind,
        }
    }

    #[inline]
    pub fn start_unix_nano(self) -> u64 {
        match self {
            SpanRef::Model(s) => s.start_unix_nano,
            SpanRef::Wire(w) => w.raw.start,
        }
    }

    #[inline]
    pub fn end_unix_nano(self) -> u64 {
        match self {
            SpanRef::Model(s) => s.end_unix_nano,
            SpanRef::Wire(w) => w.raw.end,
        }
    }

    #[inline]
    pub fn status_code(self) -> StatusCode {
        match self {
            SpanRef::Model(s) => s.status.code,
            SpanRef::Wire(w) => w.raw.status,
        }
    }

    #[inline]
    pub fn status_message(self) -> &'a str {
        match self {
            SpanRef::Model(s) => &s.status.message,
            SpanRef::Wire(w) => w.batch.text(w.raw.status_message),
        }
    }

    #[inline]
    pub fn is_error(self) -> bool {
        self.status_code() == StatusCode::Error
    }

    #[inline]
    pub fn flags(self) -> u32 {
        match self {
            SpanRef::Model(s) => s.flags,
            SpanRef::Wire(w) => w.raw.flags,
        }
    }

    #[inline]
    pub fn resource(self) -> &'a Arc<Resource> {
        match self {
            SpanRef::Model(s) => &s.resource,
            SpanRef::Wire(w) => &w.batch.resources[w.raw.resource as usize],
        }
    }

    #[inline]
    pub fn service_name(self) -> &'a str {
        self.resource().service_name()
    }

    #[inline]
    pub fn scope(self) -> &'a Scope {
        match self {
            SpanRef::Model(s) => &s.scope,
            SpanRef::Wire(w) => &w.batch.scopes[w.raw.scope as usize],
        }
    }

    #[inline]
    pub fn attributes(self) -> Attributes<'a> {
        match self {
            SpanRef::Model(s) => Attributes(AttributesInner::Model(s.attributes.iter())),
            SpanRef::Wire(w) => Attributes(AttributesInner::Wire(
                w.batch,
                w.batch.attrs[w.raw.attrs_start as usize..w.raw.attrs_end as usize].iter(),
            )),
        }
    }

    /// The first attribute with this key, as [`Span::attribute`] finds it.
    pub fn attribute(self, key: &str) -> Option<ValueRef<'a>> {
        match self {
            SpanRef::Model(s) => s.attribute(key).map(ValueRef::of),
            SpanRef::Wire(w) => w.batch.attrs[w.raw.attrs_start as usize..w.raw.attrs_end as usize]
                .iter()
                .find(|a| w.batch.bytes(a.key) == key.as_bytes())
                .map(|a| w.batch.value(a.value)),
        }
    }

    /// As [`Span::messaging_destination`].
    pub fn messaging_destination(self) -> Option<&'a str> {
        match self {
            SpanRef::Model(s) => s.messaging_destination(),
            SpanRef::Wire(_) => ["messaging.destination.name", "messaging.destination"]
                .iter()
                .find_map(|k| self.attribute(k).and_then(ValueRef::as_str)),
        }
    }

    pub fn events(self) -> &'a [Event] {
        match self {
            SpanRef::Model(s) => &s.events,
            SpanRef::Wire(w) => match w.raw.extras {
                NO_EXTRAS => &[],
                i => &w.batch.extras[i as usize].0,
            },
        }
    }

    pub fn links(self) -> &'a [Link] {
        match self {
            SpanRef::Model(s) => &s.links,
            SpanRef::Wire(w) => match w.raw.extras {
                NO_EXTRAS => &[],
                i => &w.batch.extras[i as usize].1,
            },
        }
    }

    /// The model span.
    pub fn to_span(self) -> Span {
        match self {
            SpanRef::Model(s) => s.clone(),
            SpanRef::Wire(_) => Span {
                trace_id: self.trace_id(),
                span_id: self.span_id(),
                parent_span_id: self.parent_span_id(),
                trace_state: self.trace_state().to_string(),
                name: self.name().to_string(),
                kind: self.kind(),
                start_unix_nano: self.start_unix_nano(),
                end_unix_nano: self.end_unix_nano(),
                attributes: self
                    .attributes()
                    .map(|(key, value)| KeyValue {
                        key: key.to_string(),
                        value: value.to_value(),
                    })
                    .collect(),
                events: self.events().to_vec(),
                links: self.links().to_vec(),
                status: Status {
                    code: self.status_code(),
                    message: self.status_message().to_string(),
                },
                resource: Arc::clone(self.resource()),
                scope: self.scope().clone(),
                flags: self.flags(),
            },
        }
    }
}
