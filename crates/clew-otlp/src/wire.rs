//! A direct decoder from OTLP protobuf bytes to [`WireSpans`].
//!
//! The generic path ([`crate::decode_protobuf`] then [`crate::spans_from_request`]) builds
//! the whole generated request first (every id a `Vec`, every attribute a `KeyValue` with
//! an `AnyValue`), then converts it into model spans, allocating attribute lists a second
//! time, and drops the intermediate. This walks the wire format once and records where
//! each span's strings are in the body; it allocates one `Arc<Resource>` per
//! `ResourceSpans`, one `Scope` per `ScopeSpans`, and only for the rare parts (events,
//! links, nested attribute values) model values.
//!
//! It is a fast path, not a second definition of OTLP: whenever the input is anything but
//! plainly well formed (a decode error, a deprecated group, a singular message field sent
//! twice, which protobuf merges, deep nesting near prost's recursion limit, entity
//! references), it returns `None` and the caller decodes the same bytes with prost. So
//! every request it accepts decodes exactly as prost would decode it, and every error a
//! client sees is prost's.

use std::sync::Arc;

use clew_model::{AttributeValue, Event, KeyValue, Link, Resource, Scope, SpanId, TraceId};
use prost::bytes::Bytes;

use crate::batch::{NO_EXTRAS, RawAttr, RawSpan, RawValue, Text, WireSpans};
use crate::decode::SpanCheck;

/// Nested attribute values deeper than this go to prost, which enforces its own recursion
/// limit (100 messages; each level of a nested list costs two or three).
const MAX_VALUE_DEPTH: u32 = 16;

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

/// Why the fast path gave up; the caller falls back to prost.
pub(crate) struct Unusual;

type R<T> = Result<T, Unusual>;

#[inline(always)]
fn varint(buf: &mut &[u8]) -> R<u64> {
    match buf.first() {
        Some(&b) if b < 0x80 => {
            *buf = &buf[1..];
            Ok(u64::from(b))
        }
        _ => varint_long(buf),
    }
}

#[inline(never)]
fn varint_long(buf: &mut &[u8]) -> R<u64> {
    let mut value = 0u64;
    for i in 0..10 {
        let b = *buf.get(i).ok_or(Unusual)?;
        if i == 9 && b > 1 {
            return Err(Unusual);
        }
        value |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            *buf = &buf[i + 1..];
            return Ok(value);
        }
    }
    Err(Unusual)
}

/// A field key: (tag, wire type). Groups (3, 4) and invalid wire types are unusual.
#[inline]
fn key(buf: &mut &[u8]) -> R<(u32, u8)> {
    let key = varint(buf)?;
    let key = u32::try_from(key).map_err(|_| Unusual)?;
    let wire = (key & 7) as u8;
    let tag = key >> 3;
    if tag == 0 || !matches!(wire, VARINT | FIXED64 | LEN | FIXED32) {
        return Err(Unusual);
    }
    Ok((tag, wire))
}

#[inline]
fn take<'a>(buf: &mut &'a [u8], n: usize) -> R<&'a [u8]> {
    if n > buf.len() {
        return Err(Unusual);
    }
    let (head, tail) = buf.split_at(n);
    *buf = tail;
    Ok(head)
}

#[inline]
fn len_delimited<'a>(buf: &mut &'a [u8]) -> R<&'a [u8]> {
    let n = varint(buf)?;
    let n = usize::try_from(n).map_err(|_| Unusual)?;
    take(buf, n)
}

#[inline]
fn fixed64(buf: &mut &[u8]) -> R<u64> {
    let bytes = take(buf, 8)?;
    Ok(u64::from_le_bytes(bytes.try_into().map_err(|_| Unusual)?))
}

#[inline]
fn fixed32(buf: &mut &[u8]) -> R<u32> {
    let bytes = take(buf, 4)?;
    Ok(u32::from_le_bytes(bytes.try_into().map_err(|_| Unusual)?))
}

#[inline]
fn utf8(bytes: &[u8]) -> R<&str> {
    // Most strings are short and ASCII; `from_utf8` costs more than this check for them.
    if bytes.len() <= 32 && bytes.iter().fold(0u8, |acc, &b| acc | b) < 0x80 {
        // SAFETY: every byte is ASCII, so the bytes are UTF-8.
        return Ok(unsafe { std::str::from_utf8_unchecked(bytes) });
    }
    std::str::from_utf8(bytes).map_err(|_| Unusual)
}

/// Skips a field this decoder does not keep.
#[inline]
fn skip(buf: &mut &[u8], wire: u8) -> R<()> {
    match wire {
        VARINT => varint(buf).map(drop),
        FIXED64 => take(buf, 8).map(drop),
        LEN => len_delimited(buf).map(drop),
        FIXED32 => take(buf, 4).map(drop),
        _ => Err(Unusual),
    }
}

/// A known field must come with its declared wire type; prost refuses anything else.
#[inline]
fn expect(wire: u8, expected: u8) -> R<()> {
    if wire == expected {
        Ok(())
    } else {
        Err(Unusual)
    }
}

/// What the decoder found: the spans, and the ones OTLP calls invalid with the reason.
pub(crate) struct Found {
    pub(crate) spans: WireSpans,
    pub(crate) rejected: i64,
    pub(crate) rejection_reasons: Vec<String>,
}

struct Out<'b> {
    /// Where `body` starts, to turn slices of it into [`Text`]s.
    base: &'b [u8],
    found: Found,
}

impl Out<'_> {
    #[inline]
    fn text(&self, part: &[u8]) -> Text {
        if part.is_empty() {
            // Possibly not a slice of the body at all (a field's default).
            return Text::default();
        }
        Text {
            start: (part.as_ptr() as usize - self.base.as_ptr() as usize) as u32,
            len: part.len() as u32,
        }
    }
}

/// Decodes a protobuf `ExportTraceServiceRequest` in place, or says it is unusual.
pub(crate) fn decode(body: Bytes) -> R<Found> {
    if u32::try_from(body.len()).is_err() {
        return Err(Unusual);
    }
    let mut out = Out {
        base: &body,
        found: Found {
            spans: WireSpans::default(),
            rejected: 0,
            rejection_reasons: Vec::new(),
        },
    };
    let mut buf: &[u8] = &body;
    while !buf.is_empty() {
        let (tag, wire) = key(&mut buf)?;
        if tag == 1 {
            expect(wire, LEN)?;
            resource_spans(len_delimited(&mut buf)?, &mut out)?;
        } else {
            skip(&mut buf, wire)?;
        }
    }
    let mut found = out.found;
    found.spans.body = body.clone();
    Ok(found)
}

fn resource_spans(mut buf: &[u8], out: &mut Out<'_>) -> R<()> {
    // The resource may follow the spans on the wire; find it first.
    let body = buf;
    let mut resource: Option<&[u8]> = None;
    while !buf.is_empty() {
        let (tag, wire) = key(&mut buf)?;
        match tag {
            1 => {
                expect(wire, LEN)?;
                if resource.replace(len_delimited(&mut buf)?).is_some() {
                    return Err(Unusual);
                }
            }
            2 => {
                expect(wire, LEN)?;
                len_delimited(&mut buf)?;
            }
            3 => {
                expect(wire, LEN)?;
                utf8(len_delimited(&mut buf)?)?;
            }
            _ => skip(&mut buf, wire)?,
        }
    }
    let resource = match resource {
        Some(bytes) => decode_resource(bytes)?,
        None => Resource::default(),
    };
    let resources = &mut out.found.spans.resources;
    let resource_idx = resources.len() as u32;
    resources.push(Arc::new(resource));
    let mut buf = body;
    while !buf.is_empty() {
        let (tag, wire) = key(&mut buf)?;
        let field = if wire == LEN {
            len_delimited(&mut buf)?
        } else {
            skip(&mut buf, wire)?;
            continue;
        };
        if tag == 2 {
            scope_spans(field, resource_idx, out)?;
        }
    }
    Ok(())
}

fn decode_resource(mut buf: &[u8]) -> R<Resource> {
    let mut attributes = Vec::new();
    while !buf.is_empty() {
        let (tag, wire) = key(&mut buf)?;
        match tag {
            1 => {
                expect(wire, LEN)?;
                key_value(len_delimited(&mut buf)?, &mut attributes, 0)?;
            }
            2 => {
                expect(wire, VARINT)?;
                varint(&mut buf)?;
            }
            // Entity references are new and rare; prost validates them.
            3 => return Err(Unusual),
            _ => skip(&mut buf, wire)?,
        }
    }
    Ok(Resource { attributes })
}

fn scope_spans(mut buf: &[u8], resource: u32, out: &mut Out<'_>) -> R<()> {
    let body = buf;
    let mut scope_bytes: Option<&[u8]> = None;
    let mut count = 0usize;
    while !buf.is_empty() {
        let (tag, wire) = key(&mut buf)?;
        match tag {
            1 => {
                expect(wire, LEN)?;
                if scope_bytes.replace(len_delimited(&mut buf)?).is_some() {
                    return Err(Unusual);
                }
            }
            2 => {
                expect(wire, LEN)?;
                len_delimited(&mut buf)?;
                count += 1;
            }
            3 => {
                expect(wire, LEN)?;
                utf8(len_delimited(&mut buf)?)?;
            }
            _ => skip(&mut buf, wire)?,
        }
    }
    let scope = match scope_bytes {
        Some(bytes) => decode_scope(bytes)?,
        None => Scope::default(),
    };
    let scopes = &mut out.found.spans.scopes;
    let scope_idx = scopes.len() as u32;
    scopes.push(scope);
    out.found.spans.spans.reserve(count);
    let mut buf = body;
    while !buf.is_empty() {
        let (tag, wire) = key(&mut buf)?;
        let field = if wire == LEN {
            len_delimited(&mut buf)?
        } else {
            skip(&mut buf, wire)?;
            continue;
        };
        if tag == 2 {
            span(field, resource, scope_idx, out)?;
        }
    }
    Ok(())
}

fn decode_scope(mut buf: &[u8]) -> R<Scope> {
    let mut name = "";
    let mut version = "";
    let mut ignored = Vec::new();
    while !buf.is_empty() {
        let (tag, wire) = key(&mut buf)?;
        match tag {
            1 => {
                expect(wire, LEN)?;
                name = utf8(len_delimited(&mut buf)?)?;
            }
            2 => {
                expect(wire, LEN)?;
                version = utf8(len_delimited(&mut buf)?)?;
            }
            // Scope attributes are not kept, but prost would reject malformed ones.
            3 => {
                expect(wire, LEN)?;
                key_value(len_delimited(&mut buf)?, &mut ignored, 0)?;
                ignored.clear();
            }
            4 => {
                expect(wire, VARINT)?;
                varint(&mut buf)?;
            }
            _ => skip(&mut buf, wire)?,
        }
    }
    Ok(Scope {
        name: name.to_string(),
        version: version.to_string(),
    })
}

fn span(mut buf: &[u8], resource: u32, scope: u32, out: &mut Out<'_>) -> R<()> {
    let mut trace_id: &[u8] = &[];
    let mut span_id: &[u8] = &[];
    let mut parent_span_id: &[u8] = &[];
    let mut trace_state: &[u8] = &[];
    let mut name: &[u8] = &[];
    let mut kind = 0i32;
    let mut start = 0u64;
    let mut end = 0u64;
    let mut flags = 0u32;
    let mut status: Option<(i32, &[u8])> = None;
    let mut events: Vec<Event> = Vec::new();
    let mut links: Vec<Link> = Vec::new();
    let attrs_start = out.found.spans.attrs.len();
    while let Some(&first) = buf.first() {
        // The usual fields, by their one-byte key (tag << 3 | wire type); anything else
        // takes the general path below, which agrees with these arms.
        match first {
            0x0a => {
                buf = &buf[1..];
                trace_id = len_delimited(&mut buf)?;
                continue;
            }
            0x12 => {
                buf = &buf[1..];
                span_id = len_delimited(&mut buf)?;
                continue;
            }
            0x22 => {
                buf = &buf[1..];
                parent_span_id = len_delimited(&mut buf)?;
                continue;
            }
            0x2a => {
                buf = &buf[1..];
                name = len_delimited(&mut buf)?;
                utf8(name)?;
                continue;
            }
            0x39 => {
                buf = &buf[1..];
                start = fixed64(&mut buf)?;
                continue;
            }
            0x41 => {
                buf = &buf[1..];
                end = fixed64(&mut buf)?;
                continue;
            }
            0x4a => {
                buf = &buf[1..];
                raw_key_value(len_delimited(&mut buf)?, out)?;
                continue;
            }
            _ => {}
        }
        let (tag, wire) = key(&mut buf)?;
        match tag {
            1 => {
                expect(wire, LEN)?;
                trace_id = len_delimited(&mut buf)?;
            }
            2 => {
                expect(wire, LEN)?;
                span_id = len_delimited(&mut buf)?;
            }
            3 => {
                expect(wire, LEN)?;
                trace_state = len_delimited(&mut buf)?;
                utf8(trace_state)?;
            }
            4 => {
                expect(wire, LEN)?;
                parent_span_id = len_delimited(&mut buf)?;
            }
            5 => {
                expect(wire, LEN)?;
                name = len_delimited(&mut buf)?;
                utf8(name)?;
            }
            6 => {
                expect(wire, VARINT)?;
                kind = varint(&mut buf)? as i32;
            }
            7 => {
                expect(wire, FIXED64)?;
                start = fixed64(&mut buf)?;
            }
            8 => {
                expect(wire, FIXED64)?;
                end = fixed64(&mut buf)?;
            }
            9 => {
                expect(wire, LEN)?;
                raw_key_value(len_delimited(&mut buf)?, out)?;
            }
            10 | 12 | 14 => {
                expect(wire, VARINT)?;
                varint(&mut buf)?;
            }
            11 => {
                expect(wire, LEN)?;
                events.push(event(len_delimited(&mut buf)?)?);
            }
            13 => {
                expect(wire, LEN)?;
                // OTLP says a link without valid-length ids is dropped, as the generic path does.
                links.extend(link(len_delimited(&mut buf)?)?);
            }
            15 => {
                expect(wire, LEN)?;
                if status
                    .replace(decode_status(len_delimited(&mut buf)?)?)
                    .is_some()
                {
                    return Err(Unusual);
                }
            }
            16 => {
                expect(wire, FIXED32)?;
                flags = fixed32(&mut buf)?;
            }
            _ => skip(&mut buf, wire)?,
        }
    }
    let name_str = utf8(name)?;
    let (trace_id, span_id, parent_span_id) =
        match SpanCheck::ids(trace_id, span_id, parent_span_id, name_str) {
            Ok(ids) => ids,
            Err(reason) => {
                out.found.spans.attrs.truncate(attrs_start);
                out.found.rejected += 1;
                out.found.rejection_reasons.push(reason);
                return Ok(());
            }
        };
    let (code, message) = status.unwrap_or((0, &[]));
    let extras = if events.is_empty() && links.is_empty() {
        NO_EXTRAS
    } else {
        let extras = &mut out.found.spans.extras;
        extras.push((events, links));
        (extras.len() - 1) as u32
    };
    let raw = RawSpan {
        trace_id,
        span_id,
        parent_span_id,
        kind: clew_model::SpanKind::from_otlp(kind).unwrap_or_default(),
        status: clew_model::StatusCode::from_otlp(code).unwrap_or_default(),
        flags,
        start,
        end: end.max(start),
        name: out.text(name),
        trace_state: out.text(trace_state),
        status_message: out.text(message),
        attrs_start: attrs_start as u32,
        attrs_end: out.found.spans.attrs.len() as u32,
        resource,
        scope,
        extras,
    };
    out.found.spans.spans.push(raw);
    Ok(())
}

/// A span attribute, kept as ranges of the body where it is a string or bytes.
fn raw_key_value(mut buf: &[u8], out: &mut Out<'_>) -> R<()> {
    let mut key: &[u8] = &[];
    let mut value: Option<Option<RawValue>> = None;
    while let Some(&first) = buf.first() {
        if first == 0x0a {
            // Field 1 (the key), length-delimited: the usual first field.
            buf = &buf[1..];
            key = len_delimited(&mut buf)?;
            utf8(key)?;
            continue;
        }
        let (tag, wire) = self::key(&mut buf)?;
        match tag {
            1 => {
                expect(wire, LEN)?;
                key = len_delimited(&mut buf)?;
                utf8(key)?;
            }
            2 => {
                expect(wire, LEN)?;
                // A second value would be merged into the first by prost.
                if value
                    .replace(raw_any_value(len_delimited(&mut buf)?, out)?)
                    .is_some()
                {
                    return Err(Unusual);
                }
            }
            3 => {
                expect(wire, VARINT)?;
                varint(&mut buf)?;
            }
            _ => skip(&mut buf, wire)?,
        }
    }
    if let Some(Some(value)) = value {
        let key = out.text(key);
        out.found.spans.attrs.push(RawAttr { key, value });
    }
    Ok(())
}

fn raw_any_value(mut buf: &[u8], out: &mut Out<'_>) -> R<Option<RawValue>> {
    let mut value: Option<Option<RawValue>> = None;
    while !buf.is_empty() {
        let (tag, wire) = key(&mut buf)?;
        let v = match tag {
            1 => {
                expect(wire, LEN)?;
                let s = len_delimited(&mut buf)?;
                utf8(s)?;
                Some(RawValue::Str(out.text(s)))
            }
            2 => {
                expect(wire, VARINT)?;
                Some(RawValue::Bool(varint(&mut buf)? != 0))
            }
            3 => {
                expect(wire, VARINT)?;
                Some(RawValue::Int(varint(&mut buf)? as i64))
            }
            4 => {
                expect(wire, FIXED64)?;
                Some(RawValue::Double(f64::from_bits(fixed64(&mut buf)?)))
            }
            5 | 6 => {
                expect(wire, LEN)?;
                let field = len_delimited(&mut buf)?;
                let decoded = if tag == 5 {
                    array_value(field, 1)?
                } else {
                    kvlist_value(field, 1)?
                };
                let values = &mut out.found.spans.values;
                values.push(decoded);
                Some(RawValue::Decoded((values.len() - 1) as u32))
            }
            7 => {
                expect(wire, LEN)?;
                Some(RawValue::Bytes(out.text(len_delimited(&mut buf)?)))
            }
            8 => {
                expect(wire, VARINT)?;
                varint(&mut buf)?;
                None
            }
            _ => {
                skip(&mut buf, wire)?;
                continue;
            }
        };
        // One of the oneof's fields sent twice: prost replaces or merges; leave it to prost.
        if value.replace(v).is_some() {
            return Err(Unusual);
        }
    }
    Ok(value.flatten())
}

fn decode_status(mut buf: &[u8]) -> R<(i32, &[u8])> {
    let mut code = 0i32;
    let mut message: &[u8] = &[];
    while !buf.is_empty() {
        let (tag, wire) = key(&mut buf)?;
        match tag {
            2 => {
                expect(wire, LEN)?;
                message = len_delimited(&mut buf)?;
                utf8(message)?;
            }
            3 => {
                expect(wire, VARINT)?;
                code = varint(&mut buf)? as i32;
            }
            _ => skip(&mut buf, wire)?,
        }
    }
    Ok((code, message))
}

fn event(mut buf: &[u8]) -> R<Event> {
    let mut time = 0u64;
    let mut name = "";
    let mut attributes = Vec::new();
    while !buf.is_empty() {
        let (tag, wire) = key(&mut buf)?;
        match tag {
            1 => {
                expect(wire, FIXED64)?;
                time = fixed64(&mut buf)?;
            }
            2 => {
                expect(wire, LEN)?;
                name = utf8(len_delimited(&mut buf)?)?;
            }
            3 => {
                expect(wire, LEN)?;
                key_value(len_delimited(&mut buf)?, &mut attributes, 0)?;
            }
            4 => {
                expect(wire, VARINT)?;
                varint(&mut buf)?;
            }
            _ => skip(&mut buf, wire)?,
        }
    }
    Ok(Event {
        time_unix_nano: time,
        name: name.to_string(),
        attributes,
    })
}

fn link(mut buf: &[u8]) -> R<Option<Link>> {
    let mut trace_id: &[u8] = &[];
    let mut span_id: &[u8] = &[];
    let mut trace_state = "";
    let mut attributes = Vec::new();
    while !buf.is_empty() {
        let (tag, wire) = key(&mut buf)?;
        match tag {
            1 => {
                expect(wire, LEN)?;
                trace_id = len_delimited(&mut buf)?;
            }
            2 => {
                expect(wire, LEN)?;
                span_id = len_delimited(&mut buf)?;
            }
            3 => {
                expect(wire, LEN)?;
                trace_state = utf8(len_delimited(&mut buf)?)?;
            }
            4 => {
                expect(wire, LEN)?;
                key_value(len_delimited(&mut buf)?, &mut attributes, 0)?;
            }
            5 => {
                expect(wire, VARINT)?;
                varint(&mut buf)?;
            }
            6 => {
                expect(wire, FIXED32)?;
                fixed32(&mut buf)?;
            }
            _ => skip(&mut buf, wire)?,
        }
    }
    let (Some(trace_id), Some(span_id)) =
        (TraceId::from_slice(trace_id), SpanId::from_slice(span_id))
    else {
        return Ok(None);
    };
    Ok(Some(Link {
        trace_id,
        span_id,
        trace_state: trace_state.to_string(),
        attributes,
    }))
}

/// Decodes one `KeyValue` and appends it to `out` unless the generic path would drop it
/// (no value, or a value OTLP says to ignore outside profiles).
fn key_value(mut buf: &[u8], out: &mut Vec<KeyValue>, depth: u32) -> R<()> {
    let mut key = "";
    let mut value: Option<Option<AttributeValue>> = None;
    while !buf.is_empty() {
        let (tag, wire) = self::key(&mut buf)?;
        match tag {
            1 => {
                expect(wire, LEN)?;
                key = utf8(len_delimited(&mut buf)?)?;
            }
            2 => {
                expect(wire, LEN)?;
                // A second value would be merged into the first by prost.
                if value
                    .replace(any_value(len_delimited(&mut buf)?, depth)?)
                    .is_some()
                {
                    return Err(Unusual);
                }
            }
            3 => {
                expect(wire, VARINT)?;
                varint(&mut buf)?;
            }
            _ => skip(&mut buf, wire)?,
        }
    }
    if let Some(Some(value)) = value {
        out.push(KeyValue {
            key: key.to_string(),
            value,
        });
    }
    Ok(())
}

/// Decodes an `AnyValue`: `None` when it holds nothing the model keeps.
fn any_value(mut buf: &[u8], depth: u32) -> R<Option<AttributeValue>> {
    if depth > MAX_VALUE_DEPTH {
        return Err(Unusual);
    }
    let mut value: Option<Option<AttributeValue>> = None;
    while !buf.is_empty() {
        let (tag, wire) = key(&mut buf)?;
        let v = match tag {
            1 => {
                expect(wire, LEN)?;
                Some(AttributeValue::String(
                    utf8(len_delimited(&mut buf)?)?.to_string(),
                ))
            }
            2 => {
                expect(wire, VARINT)?;
                Some(AttributeValue::Bool(varint(&mut buf)? != 0))
            }
            3 => {
                expect(wire, VARINT)?;
                Some(AttributeValue::Int(varint(&mut buf)? as i64))
            }
            4 => {
                expect(wire, FIXED64)?;
                Some(AttributeValue::Double(f64::from_bits(fixed64(&mut buf)?)))
            }
            5 => {
                expect(wire, LEN)?;
                Some(array_value(len_delimited(&mut buf)?, depth + 1)?)
            }
            6 => {
                expect(wire, LEN)?;
                Some(kvlist_value(len_delimited(&mut buf)?, depth + 1)?)
            }
            7 => {
                expect(wire, LEN)?;
                Some(AttributeValue::Bytes(len_delimited(&mut buf)?.to_vec()))
            }
            8 => {
                expect(wire, VARINT)?;
                varint(&mut buf)?;
                None
            }
            _ => {
                skip(&mut buf, wire)?;
                continue;
            }
        };
        // One of the oneof's fields sent twice: prost replaces or merges; leave it to prost.
        if value.replace(v).is_some() {
            return Err(Unusual);
        }
    }
    Ok(value.flatten())
}

fn array_value(mut buf: &[u8], depth: u32) -> R<AttributeValue> {
    let mut items = Vec::new();
    while !buf.is_empty() {
        let (tag, wire) = key(&mut buf)?;
        if tag == 1 {
            expect(wire, LEN)?;
            items.extend(any_value(len_delimited(&mut buf)?, depth)?);
        } else {
            skip(&mut buf, wire)?;
        }
    }
    Ok(AttributeValue::Array(items))
}

fn kvlist_value(mut buf: &[u8], depth: u32) -> R<AttributeValue> {
    let mut items = Vec::new();
    while !buf.is_empty() {
        let (tag, wire) = key(&mut buf)?;
        if tag == 1 {
            expect(wire, LEN)?;
            key_value(len_delimited(&mut buf)?, &mut items, depth)?;
        } else {
            skip(&mut buf, wire)?;
        }
    }
    Ok(AttributeValue::Map(items))
}

#[cfg(test)]
mod tests;
