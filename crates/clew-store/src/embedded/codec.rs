//! The on-disk encoding of span groups and resources.
//!
//! A *group* holds the spans of one trace and one service that arrived in one `write`
//! call and started within [`super::GROUP_SPREAD_NANOS`] of each other. Grouping pays the
//! per-record costs (key, LSM entry header) once for several spans and lets the encoding
//! refer to repeated strings and to in-group parents by small indexes.
//!
//! Layout (varints are LEB128, signed ones zig-zag):
//!
//! ```text
//! group    = version:u8 strings resources count:varint header* body*
//! strings  = n:varint (len:varint utf8)*   strings the group uses that the store-wide
//!                                          dictionary lacks, once each
//! resources= n:varint resource_id:varint*
//! header   = span_id:[8] bits:u8 back:varint end:svarint name:str
//!            back = group_latest_start - start; end = end - start (wrapping)
//!            bits = kind:3 | status:2 | parent_mode:2
//! body     = parent? present:u8 [resource:varint] [scope_name:str scope_version:str]
//!            [flags:varint] [trace_state:str] [status_message:str] attrs [events] [links]
//! str      = varint: 0 is "", odd is dictionary id (v >> 1), even is the group's
//!            string (v >> 1) - 1
//! ```
//!
//! `present` says which optional parts follow; resource, scope and flags are left out
//! when equal to the previous span's (first span: resource 0, empty scope, flags 0).
//! Headers come before bodies so that a search can filter on name, kind, start and
//! duration without touching attributes.

use std::sync::Arc;

use clew_model::{
    AttributeValue, Event, KeyValue, Link, Resource, Scope, Span, SpanId, SpanKind, Status,
    StatusCode, TraceId,
};

use clew_otlp::{SpanRef, ValueRef};

use super::dict::Dict;
use super::hash::{self, FastMap};

const GROUP_VERSION: u8 = 1;
const RESOURCE_VERSION: u8 = 1;

const PARENT_NONE: u8 = 0;
const PARENT_IN_GROUP: u8 = 1;
const PARENT_EXPLICIT: u8 = 2;

const HAS_RESOURCE: u8 = 1;
const HAS_SCOPE: u8 = 1 << 1;
const HAS_FLAGS: u8 = 1 << 2;
const HAS_TRACE_STATE: u8 = 1 << 3;
const HAS_STATUS_MESSAGE: u8 = 1 << 4;
const HAS_EVENTS: u8 = 1 << 5;
const HAS_LINKS: u8 = 1 << 6;

const TAG_STRING: u8 = 0;
const TAG_BOOL: u8 = 1;
const TAG_INT: u8 = 2;
const TAG_DOUBLE: u8 = 3;
const TAG_BYTES: u8 = 4;
const TAG_ARRAY: u8 = 5;
const TAG_MAP: u8 = 6;

/// Why bytes could not be decoded; the caller adds the key.
#[derive(Debug)]
pub(crate) struct DecodeError(pub(crate) String);

pub(crate) type DecodeResult<T> = std::result::Result<T, DecodeError>;

fn err<T>(reason: impl Into<String>) -> DecodeResult<T> {
    Err(DecodeError(reason.into()))
}

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub(crate) fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

pub(crate) fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// A cursor over encoded bytes.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub(crate) fn u8(&mut self) -> DecodeResult<u8> {
        let Some(&b) = self.buf.get(self.pos) else {
            return err("truncated");
        };
        self.pos += 1;
        Ok(b)
    }

    pub(crate) fn varint(&mut self) -> DecodeResult<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        err("varint longer than 64 bits")
    }

    fn svarint(&mut self) -> DecodeResult<i64> {
        self.varint().map(unzigzag)
    }

    fn len(&mut self) -> DecodeResult<usize> {
        let n = self.varint()?;
        // A length can never exceed what is left, which also bounds allocations made
        // from corrupt input.
        match usize::try_from(n) {
            Ok(n) if n <= self.buf.len() - self.pos => Ok(n),
            _ => err(format!("length {n} exceeds the record")),
        }
    }

    pub(crate) fn bytes(&mut self, n: usize) -> DecodeResult<&'a [u8]> {
        let Some(slice) = self.buf.get(self.pos..self.pos + n) else {
            return err("truncated");
        };
        self.pos += n;
        Ok(slice)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> DecodeResult<[u8; N]> {
        let slice = self.bytes(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Ok(out)
    }

    pub(crate) fn str(&mut self) -> DecodeResult<&'a str> {
        let n = self.len()?;
        let bytes = self.bytes(n)?;
        std::str::from_utf8(bytes).or_else(|_| err("string is not UTF-8"))
    }
}

/// Where a record's strings go: the store-wide dictionary when it has them, else the
/// record's own table (each distinct string once).
pub(crate) struct Strings<'a, 'd> {
    dict: &'d dyn Fn(&str) -> Option<u32>,
    index: FastMap<&'a str, u64>,
    list: Vec<&'a str>,
}

impl<'a, 'd> Strings<'a, 'd> {
    pub(crate) fn new(dict: &'d dyn Fn(&str) -> Option<u32>) -> Strings<'a, 'd> {
        Strings {
            dict,
            index: hash::map(),
            list: Vec::new(),
        }
    }

    fn put(&mut self, out: &mut Vec<u8>, s: &'a str) {
        if s.is_empty() {
            out.push(0);
            return;
        }
        if let Some(id) = (self.dict)(s) {
            put_varint(out, (u64::from(id) << 1) | 1);
            return;
        }
        let next = self.list.len() as u64;
        let idx = *self.index.entry(s).or_insert_with(|| {
            self.list.push(s);
            next
        });
        put_varint(out, (idx + 1) << 1);
    }

    fn write_table(&self, out: &mut Vec<u8>) {
        put_varint(out, self.list.len() as u64);
        for s in &self.list {
            put_str(out, s);
        }
    }

    /// The strings that went into the record's own table.
    pub(crate) fn local(&self) -> &[&'a str] {
        &self.list
    }
}

fn no_dict(_: &str) -> Option<u32> {
    None
}

fn read_table<'a>(r: &mut Reader<'a>) -> DecodeResult<Vec<&'a str>> {
    let n = r.len()?;
    let mut list = Vec::with_capacity(n);
    for _ in 0..n {
        list.push(r.str()?);
    }
    Ok(list)
}

/// Resolves string references of one record.
#[derive(Clone, Copy)]
struct Table<'t, 'a> {
    local: &'t [&'a str],
    dict: Option<&'a Dict>,
}

impl<'a> Table<'_, 'a> {
    fn str(&self, r: &mut Reader<'_>) -> DecodeResult<&'a str> {
        let v = r.varint()?;
        let found = if v == 0 {
            Some("")
        } else if v & 1 == 1 {
            self.dict
                .and_then(|d| u32::try_from(v >> 1).ok().and_then(|id| d.get(id)))
        } else {
            usize::try_from((v >> 1) - 1)
                .ok()
                .and_then(|i| self.local.get(i).copied())
        };
        match found {
            Some(s) => Ok(s),
            None => err(format!("string reference {v} out of range")),
        }
    }
}

fn put_attrs<'a>(out: &mut Vec<u8>, strings: &mut Strings<'a, '_>, attrs: &'a [KeyValue]) {
    put_varint(out, attrs.len() as u64);
    for kv in attrs {
        strings.put(out, &kv.key);
        put_value(out, strings, &kv.value);
    }
}

fn put_value<'a>(out: &mut Vec<u8>, strings: &mut Strings<'a, '_>, value: &'a AttributeValue) {
    match value {
        AttributeValue::String(s) => {
            out.push(TAG_STRING);
            strings.put(out, s);
        }
        AttributeValue::Bool(b) => {
            out.push(TAG_BOOL);
            out.push(u8::from(*b));
        }
        AttributeValue::Int(i) => {
            out.push(TAG_INT);
            put_varint(out, zigzag(*i));
        }
        AttributeValue::Double(d) => {
            out.push(TAG_DOUBLE);
            out.extend_from_slice(&d.to_le_bytes());
        }
        AttributeValue::Bytes(b) => {
            out.push(TAG_BYTES);
            put_varint(out, b.len() as u64);
            out.extend_from_slice(b);
        }
        AttributeValue::Array(items) => {
            out.push(TAG_ARRAY);
            put_varint(out, items.len() as u64);
            for item in items {
                put_value(out, strings, item);
            }
        }
        AttributeValue::Map(items) => {
            out.push(TAG_MAP);
            put_attrs(out, strings, items);
        }
    }
}

/// [`put_attrs`] for attributes borrowed from either form of span; the bytes are the
/// same as for the model attributes they stand for.
fn put_attr_refs<'a>(
    out: &mut Vec<u8>,
    strings: &mut Strings<'a, '_>,
    attrs: impl ExactSizeIterator<Item = (&'a str, ValueRef<'a>)>,
) {
    put_varint(out, attrs.len() as u64);
    for (key, value) in attrs {
        strings.put(out, key);
        match value {
            ValueRef::String(s) => {
                out.push(TAG_STRING);
                strings.put(out, s);
            }
            ValueRef::Bool(b) => {
                out.push(TAG_BOOL);
                out.push(u8::from(b));
            }
            ValueRef::Int(i) => {
                out.push(TAG_INT);
                put_varint(out, zigzag(i));
            }
            ValueRef::Double(d) => {
                out.push(TAG_DOUBLE);
                out.extend_from_slice(&d.to_le_bytes());
            }
            ValueRef::Bytes(b) => {
                out.push(TAG_BYTES);
                put_varint(out, b.len() as u64);
                out.extend_from_slice(b);
            }
            ValueRef::Other(v) => put_value(out, strings, v),
        }
    }
}

fn read_attrs(r: &mut Reader<'_>, table: Table<'_, '_>, depth: u32) -> DecodeResult<Vec<KeyValue>> {
    let n = r.len()?;
    let mut attrs = Vec::with_capacity(n);
    for _ in 0..n {
        let key = table.str(r)?.to_string();
        let value = read_value(r, table, depth)?;
        attrs.push(KeyValue { key, value });
    }
    Ok(attrs)
}

fn read_value(
    r: &mut Reader<'_>,
    table: Table<'_, '_>,
    depth: u32,
) -> DecodeResult<AttributeValue> {
    // Nesting is bounded so that a corrupt record cannot overflow the stack.
    if depth > 64 {
        return err("attribute values nested too deeply");
    }
    Ok(match r.u8()? {
        TAG_STRING => AttributeValue::String(table.str(r)?.to_string()),
        TAG_BOOL => AttributeValue::Bool(r.u8()? != 0),
        TAG_INT => AttributeValue::Int(r.svarint()?),
        TAG_DOUBLE => AttributeValue::Double(f64::from_le_bytes(r.array()?)),
        TAG_BYTES => {
            let n = r.len()?;
            AttributeValue::Bytes(r.bytes(n)?.to_vec())
        }
        TAG_ARRAY => {
            let n = r.len()?;
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                items.push(read_value(r, table, depth + 1)?);
            }
            AttributeValue::Array(items)
        }
        TAG_MAP => AttributeValue::Map(read_attrs(r, table, depth + 1)?),
        tag => return err(format!("unknown attribute tag {tag}")),
    })
}

/// The next value's text form, borrowed for strings (the common case).
fn value_text<'a>(
    r: &mut Reader<'_>,
    table: Table<'_, 'a>,
) -> DecodeResult<std::borrow::Cow<'a, str>> {
    let mut peek = Reader {
        buf: r.buf,
        pos: r.pos,
    };
    if peek.u8()? == TAG_STRING {
        let s = table.str(&mut peek)?;
        r.pos = peek.pos;
        return Ok(std::borrow::Cow::Borrowed(s));
    }
    Ok(std::borrow::Cow::Owned(read_value(r, table, 0)?.to_text()))
}

fn skip_attrs(r: &mut Reader<'_>, depth: u32) -> DecodeResult<()> {
    for _ in 0..r.len()? {
        r.varint()?;
        skip_value(r, depth)?;
    }
    Ok(())
}

fn skip_value(r: &mut Reader<'_>, depth: u32) -> DecodeResult<()> {
    if depth > 64 {
        return err("attribute values nested too deeply");
    }
    match r.u8()? {
        TAG_STRING | TAG_INT => {
            r.varint()?;
        }
        TAG_BOOL => {
            r.u8()?;
        }
        TAG_DOUBLE => {
            r.bytes(8)?;
        }
        TAG_BYTES => {
            let n = r.len()?;
            r.bytes(n)?;
        }
        TAG_ARRAY => {
            for _ in 0..r.len()? {
                skip_value(r, depth + 1)?;
            }
        }
        TAG_MAP => skip_attrs(r, depth + 1)?,
        tag => return err(format!("unknown attribute tag {tag}")),
    }
    Ok(())
}

/// Encodes a resource on its own (it is stored once and referred to by id).
pub(crate) fn encode_resource(resource: &Resource) -> Vec<u8> {
    let mut strings = Strings::new(&no_dict);
    let mut body = Vec::new();
    put_attrs(&mut body, &mut strings, &resource.attributes);
    let mut out = vec![RESOURCE_VERSION];
    strings.write_table(&mut out);
    out.extend_from_slice(&body);
    out
}

pub(crate) fn decode_resource(bytes: &[u8]) -> DecodeResult<Resource> {
    let mut r = Reader::new(bytes);
    let version = r.u8()?;
    if version != RESOURCE_VERSION {
        return err(format!("unknown resource format {version}"));
    }
    let local = read_table(&mut r)?;
    let table = Table {
        local: &local,
        dict: None,
    };
    let attributes = read_attrs(&mut r, table, 0)?;
    if !r.is_empty() {
        return err("trailing bytes after the resource");
    }
    Ok(Resource { attributes })
}

fn kind_code(kind: SpanKind) -> u8 {
    kind.as_otlp() as u8
}

fn status_code(code: StatusCode) -> u8 {
    code.as_otlp() as u8
}

/// Encodes spans of one trace as a group. `spans` must be sorted newest first;
/// `resource_ids[i]` is the stored id of `spans[i].resource`. `strings` decides which
/// strings the dictionary covers; afterwards it lists the ones the group kept itself.
#[cfg(test)]
pub(crate) fn encode_group<'a>(
    spans: &[SpanRef<'a>],
    resource_ids: &[u32],
    strings: &mut Strings<'a, '_>,
) -> Vec<u8> {
    let mut out = Vec::new();
    encode_group_into(
        spans,
        resource_ids,
        strings,
        &mut GroupScratch::default(),
        &mut out,
    );
    out
}

/// Buffers [`encode_group_into`] reuses from one group to the next.
#[derive(Default)]
pub(crate) struct GroupScratch {
    headers: Vec<u8>,
    bodies: Vec<u8>,
    resources: Vec<u32>,
}

/// Encodes a group (see [`encode_group`]) into `out`, which is cleared first.
pub(crate) fn encode_group_into<'a>(
    spans: &[SpanRef<'a>],
    resource_ids: &[u32],
    strings: &mut Strings<'a, '_>,
    scratch: &mut GroupScratch,
    out: &mut Vec<u8>,
) {
    debug_assert_eq!(spans.len(), resource_ids.len());
    let latest = spans.first().map_or(0, |s| s.start_unix_nano());
    // Most groups hold a few spans, where a scan beats hashing.
    let positions: Option<FastMap<SpanId, usize>> = (spans.len() > 16).then(|| {
        spans
            .iter()
            .enumerate()
            .map(|(i, s)| (s.span_id(), i))
            .collect()
    });
    let position = |id: SpanId| match &positions {
        Some(map) => map.get(&id).copied(),
        None => spans.iter().position(|s| s.span_id() == id),
    };
    let GroupScratch {
        headers,
        bodies,
        resources,
    } = scratch;
    headers.clear();
    bodies.clear();
    resources.clear();
    let mut prev_resource = 0usize;
    let mut prev_scope: (&str, &str) = ("", "");
    let mut prev_flags = 0u32;

    for (&span, &resource_id) in spans.iter().zip(resource_ids) {
        let parent_span_id = span.parent_span_id();
        let start = span.start_unix_nano();
        let scope = span.scope();
        let flags = span.flags();
        let trace_state = span.trace_state();
        let status_message = span.status_message();
        let events = span.events();
        let links = span.links();
        let parent_position = parent_span_id.and_then(position);
        let parent_mode = match (parent_span_id, parent_position) {
            (None, _) => PARENT_NONE,
            (Some(_), Some(_)) => PARENT_IN_GROUP,
            (Some(_), None) => PARENT_EXPLICIT,
        };
        headers.extend_from_slice(&span.span_id().0);
        headers.push(
            kind_code(span.kind()) | (status_code(span.status_code()) << 3) | (parent_mode << 5),
        );
        put_varint(headers, latest.saturating_sub(start));
        put_varint(
            headers,
            zigzag(span.end_unix_nano().wrapping_sub(start) as i64),
        );
        strings.put(headers, span.name());

        match (parent_position, parent_span_id) {
            (Some(i), _) => put_varint(bodies, i as u64),
            (None, Some(p)) => bodies.extend_from_slice(&p.0),
            (None, None) => {}
        }
        let res_idx = match resources.iter().position(|&r| r == resource_id) {
            Some(i) => i,
            None => {
                resources.push(resource_id);
                resources.len() - 1
            }
        };
        let scope_pair = (scope.name.as_str(), scope.version.as_str());
        let mut present = 0u8;
        for (cond, bit) in [
            (res_idx != prev_resource, HAS_RESOURCE),
            (scope_pair != prev_scope, HAS_SCOPE),
            (flags != prev_flags, HAS_FLAGS),
            (!trace_state.is_empty(), HAS_TRACE_STATE),
            (!status_message.is_empty(), HAS_STATUS_MESSAGE),
            (!events.is_empty(), HAS_EVENTS),
            (!links.is_empty(), HAS_LINKS),
        ] {
            if cond {
                present |= bit;
            }
        }
        bodies.push(present);
        if present & HAS_RESOURCE != 0 {
            put_varint(bodies, res_idx as u64);
        }
        if present & HAS_SCOPE != 0 {
            strings.put(bodies, &scope.name);
            strings.put(bodies, &scope.version);
        }
        if present & HAS_FLAGS != 0 {
            put_varint(bodies, u64::from(flags));
        }
        if present & HAS_TRACE_STATE != 0 {
            strings.put(bodies, trace_state);
        }
        if present & HAS_STATUS_MESSAGE != 0 {
            strings.put(bodies, status_message);
        }
        (prev_resource, prev_scope, prev_flags) = (res_idx, scope_pair, flags);
        put_attr_refs(bodies, strings, span.attributes());
        if present & HAS_EVENTS != 0 {
            put_varint(bodies, events.len() as u64);
            for event in events {
                put_varint(
                    bodies,
                    zigzag(event.time_unix_nano.wrapping_sub(start) as i64),
                );
                strings.put(bodies, &event.name);
                put_attrs(bodies, strings, &event.attributes);
            }
        }
        if present & HAS_LINKS != 0 {
            put_varint(bodies, links.len() as u64);
            for link in links {
                if link.trace_id == span.trace_id() {
                    bodies.push(1);
                } else {
                    bodies.push(0);
                    bodies.extend_from_slice(&link.trace_id.0);
                }
                bodies.extend_from_slice(&link.span_id.0);
                strings.put(bodies, &link.trace_state);
                put_attrs(bodies, strings, &link.attributes);
            }
        }
    }

    out.clear();
    out.push(GROUP_VERSION);
    strings.write_table(out);
    put_varint(out, resources.len() as u64);
    for r in resources.iter() {
        put_varint(out, u64::from(*r));
    }
    put_varint(out, spans.len() as u64);
    out.extend_from_slice(headers);
    out.extend_from_slice(bodies);
}

/// What a search needs of a span, readable without decoding attributes.
#[derive(Debug, Clone)]
pub(crate) struct Header<'a> {
    pub(crate) span_id: SpanId,
    pub(crate) kind: SpanKind,
    pub(crate) status: StatusCode,
    parent_mode: u8,
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) name: &'a str,
}

impl Header<'_> {
    pub(crate) fn duration(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }
}

/// A group with its headers parsed and its bodies not yet.
pub(crate) struct GroupView<'a> {
    local: Vec<&'a str>,
    dict: &'a Dict,
    resources: Vec<u32>,
    pub(crate) headers: Vec<Header<'a>>,
    bodies: &'a [u8],
}

/// Parses a group's string table and headers. `latest` comes from the group's key.
pub(crate) fn decode_headers<'a>(
    bytes: &'a [u8],
    latest: u64,
    dict: &'a Dict,
) -> DecodeResult<GroupView<'a>> {
    let mut r = Reader::new(bytes);
    let version = r.u8()?;
    if version != GROUP_VERSION {
        return err(format!("unknown span group format {version}"));
    }
    let local = read_table(&mut r)?;
    let n_res = r.len()?;
    let mut resources = Vec::with_capacity(n_res);
    for _ in 0..n_res {
        let id = r.varint()?;
        resources.push(u32::try_from(id).or_else(|_| err("resource id out of range"))?);
    }
    if resources.is_empty() {
        return err("a group without resources");
    }
    let table = Table {
        local: &local,
        dict: Some(dict),
    };
    let n = r.len()?;
    let mut headers = Vec::with_capacity(n);
    for _ in 0..n {
        let span_id = SpanId(r.array()?);
        let bits = r.u8()?;
        let Some(kind) = SpanKind::from_otlp(i32::from(bits & 0b111)) else {
            return err(format!("unknown span kind {}", bits & 0b111));
        };
        let Some(status) = StatusCode::from_otlp(i32::from((bits >> 3) & 0b11)) else {
            return err("unknown status code");
        };
        let parent_mode = (bits >> 5) & 0b11;
        let start = latest
            .checked_sub(r.varint()?)
            .ok_or_else(|| DecodeError("span starts before time zero".into()))?;
        let end = start.wrapping_add(r.svarint()? as u64);
        let name = table.str(&mut r)?;
        headers.push(Header {
            span_id,
            kind,
            status,
            parent_mode,
            start,
            end,
            name,
        });
    }
    Ok(GroupView {
        local,
        dict,
        resources,
        headers,
        bodies: &bytes[r.pos..],
    })
}

impl GroupView<'_> {
    /// Stored ids of the resources the group's spans refer to.
    pub(crate) fn resource_ids(&self) -> &[u32] {
        &self.resources
    }

    /// For each span, whether its attributes satisfy every `key=value` in `wanted` the way
    /// [`crate::TraceQuery::matches`] decides it: the span's first attribute with the key,
    /// else the resource's, compared in text form. `resource(id, i)` answers for the
    /// resource with that stored id and `wanted[i]`: `None` if it lacks the key.
    ///
    /// Walks the encoded bodies without building spans, which is what makes attribute
    /// searches over many groups affordable.
    pub(crate) fn attributes_match(
        &self,
        wanted: &[(String, String)],
        resource: impl Fn(u32, usize) -> Option<bool>,
    ) -> DecodeResult<Vec<bool>> {
        let table = Table {
            local: &self.local,
            dict: Some(self.dict),
        };
        let mut r = Reader::new(self.bodies);
        let mut out = Vec::with_capacity(self.headers.len());
        let mut res_idx = 0usize;
        // Per wanted pair: None while the span has not shown the key, else the verdict.
        let mut verdicts: Vec<Option<bool>> = vec![None; wanted.len()];
        for h in &self.headers {
            match h.parent_mode {
                PARENT_IN_GROUP => {
                    r.varint()?;
                }
                PARENT_EXPLICIT => {
                    r.bytes(8)?;
                }
                _ => {}
            }
            let present = r.u8()?;
            if present & HAS_RESOURCE != 0 {
                res_idx = usize::try_from(r.varint()?).unwrap_or(usize::MAX);
            }
            let Some(&res_id) = self.resources.get(res_idx) else {
                return err("resource index out of range");
            };
            if present & HAS_SCOPE != 0 {
                r.varint()?;
                r.varint()?;
            }
            if present & HAS_FLAGS != 0 {
                r.varint()?;
            }
            if present & HAS_TRACE_STATE != 0 {
                r.varint()?;
            }
            if present & HAS_STATUS_MESSAGE != 0 {
                r.varint()?;
            }
            verdicts.fill(None);
            let n = r.len()?;
            for _ in 0..n {
                let key = table.str(&mut r)?;
                // Only the first attribute with a key counts, as in `Span::attribute`.
                let undecided = |i: usize| verdicts[i].is_none() && wanted[i].0 == key;
                if (0..wanted.len()).any(undecided) {
                    let text = value_text(&mut r, table)?;
                    for (i, (k, want)) in wanted.iter().enumerate() {
                        if verdicts[i].is_none() && k == key {
                            verdicts[i] = Some(*want == *text);
                        }
                    }
                } else {
                    skip_value(&mut r, 0)?;
                }
            }
            out.push(verdicts.iter().enumerate().all(|(i, v)| match v {
                Some(ok) => *ok,
                None => resource(res_id, i).unwrap_or(false),
            }));
            if present & HAS_EVENTS != 0 {
                for _ in 0..r.len()? {
                    r.varint()?;
                    r.varint()?;
                    skip_attrs(&mut r, 0)?;
                }
            }
            if present & HAS_LINKS != 0 {
                for _ in 0..r.len()? {
                    if r.u8()? != 1 {
                        r.bytes(16)?;
                    }
                    r.bytes(8)?;
                    r.varint()?;
                    skip_attrs(&mut r, 0)?;
                }
            }
        }
        if !r.is_empty() {
            return err("trailing bytes after the last span");
        }
        Ok(out)
    }

    /// Decodes every span. `resource` maps a stored resource id to the resource.
    pub(crate) fn spans(
        &self,
        trace_id: TraceId,
        resource: impl Fn(u32) -> Option<Arc<Resource>>,
    ) -> DecodeResult<Vec<Span>> {
        let table = Table {
            local: &self.local,
            dict: Some(self.dict),
        };
        let mut resolved = Vec::with_capacity(self.resources.len());
        for &id in &self.resources {
            match resource(id) {
                Some(r) => resolved.push(r),
                None => return err(format!("resource {id} is missing")),
            }
        }
        let mut r = Reader::new(self.bodies);
        let mut spans = Vec::with_capacity(self.headers.len());
        let mut res_idx = 0usize;
        let mut scope = Scope::default();
        let mut flags = 0u32;
        for h in &self.headers {
            let parent_span_id = match h.parent_mode {
                PARENT_NONE => None,
                PARENT_IN_GROUP => {
                    let idx = r.varint()?;
                    match usize::try_from(idx).ok().and_then(|i| self.headers.get(i)) {
                        Some(p) => Some(p.span_id),
                        None => return err("parent index out of range"),
                    }
                }
                PARENT_EXPLICIT => Some(SpanId(r.array()?)),
                mode => return err(format!("unknown parent mode {mode}")),
            };
            let present = r.u8()?;
            if present & HAS_RESOURCE != 0 {
                res_idx = usize::try_from(r.varint()?).unwrap_or(usize::MAX);
            }
            let Some(res) = resolved.get(res_idx) else {
                return err("resource index out of range");
            };
            if present & HAS_SCOPE != 0 {
                scope = Scope {
                    name: table.str(&mut r)?.to_string(),
                    version: table.str(&mut r)?.to_string(),
                };
            }
            if present & HAS_FLAGS != 0 {
                flags = u32::try_from(r.varint()?).or_else(|_| err("flags out of range"))?;
            }
            let trace_state = if present & HAS_TRACE_STATE != 0 {
                table.str(&mut r)?.to_string()
            } else {
                String::new()
            };
            let message = if present & HAS_STATUS_MESSAGE != 0 {
                table.str(&mut r)?.to_string()
            } else {
                String::new()
            };
            let attributes = read_attrs(&mut r, table, 0)?;
            let mut events = Vec::new();
            if present & HAS_EVENTS != 0 {
                let n = r.len()?;
                events.reserve(n);
                for _ in 0..n {
                    let time_unix_nano = h.start.wrapping_add(r.svarint()? as u64);
                    let name = table.str(&mut r)?.to_string();
                    let attributes = read_attrs(&mut r, table, 0)?;
                    events.push(Event {
                        time_unix_nano,
                        name,
                        attributes,
                    });
                }
            }
            let mut links = Vec::new();
            if present & HAS_LINKS != 0 {
                let n = r.len()?;
                links.reserve(n);
                for _ in 0..n {
                    let link_trace = if r.u8()? == 1 {
                        trace_id
                    } else {
                        TraceId(r.array()?)
                    };
                    let span_id = SpanId(r.array()?);
                    let trace_state = table.str(&mut r)?.to_string();
                    let attributes = read_attrs(&mut r, table, 0)?;
                    links.push(Link {
                        trace_id: link_trace,
                        span_id,
                        trace_state,
                        attributes,
                    });
                }
            }
            spans.push(Span {
                trace_id,
                span_id: h.span_id,
                parent_span_id,
                trace_state,
                name: h.name.to_string(),
                kind: h.kind,
                start_unix_nano: h.start,
                end_unix_nano: h.end,
                attributes,
                events,
                links,
                status: Status {
                    code: h.status,
                    message,
                },
                resource: Arc::clone(res),
                scope: scope.clone(),
                flags,
            });
        }
        if !r.is_empty() {
            return err("trailing bytes after the last span");
        }
        Ok(spans)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_at_the_edges() {
        for v in [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            assert_eq!(Reader::new(&buf).varint().unwrap(), v);
        }
        for v in [0, -1, 1, i64::MIN, i64::MAX] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
    }

    #[test]
    fn corrupt_input_is_an_error_not_a_panic() {
        let resource = Resource::for_service("svc");
        let bytes = encode_resource(&resource);
        for cut in 0..bytes.len() {
            assert!(decode_resource(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        assert_eq!(decode_resource(&bytes).unwrap(), resource);
        let dict = Dict::default();
        assert!(decode_headers(&[GROUP_VERSION, 0xff, 0xff, 0xff], 0, &dict).is_err());
    }

    fn rich_spans() -> Vec<Span> {
        let resource = Arc::new(Resource::for_service("svc"));
        let trace_id = TraceId([3; 16]);
        let base = Span {
            trace_id,
            span_id: SpanId([1; 8]),
            parent_span_id: None,
            trace_state: "a=b".into(),
            name: "root".into(),
            kind: SpanKind::Server,
            start_unix_nano: 1_000_000,
            end_unix_nano: 2_000_000,
            attributes: vec![
                KeyValue::new("s", "v"),
                KeyValue::new("i", -5i64),
                KeyValue {
                    key: "m".into(),
                    value: AttributeValue::Map(vec![KeyValue {
                        key: "a".into(),
                        value: AttributeValue::Array(vec![AttributeValue::Bytes(vec![9])]),
                    }]),
                },
            ],
            events: vec![Event {
                time_unix_nano: 1_500_000,
                name: "e".into(),
                attributes: vec![KeyValue::new("d", 1.5f64)],
            }],
            links: vec![Link {
                trace_id: TraceId([4; 16]),
                span_id: SpanId([5; 8]),
                trace_state: String::new(),
                attributes: vec![KeyValue::new("b", true)],
            }],
            status: Status {
                code: StatusCode::Error,
                message: "m".into(),
            },
            resource,
            scope: Scope {
                name: "lib".into(),
                version: "1".into(),
            },
            flags: 1,
        };
        let mut child = base.clone();
        child.span_id = SpanId([2; 8]);
        child.parent_span_id = Some(SpanId([1; 8]));
        child.start_unix_nano = 900_000;
        let mut orphan = base.clone();
        orphan.span_id = SpanId([6; 8]);
        orphan.parent_span_id = Some(SpanId([7; 8]));
        orphan.start_unix_nano = 800_000;
        vec![base, child, orphan]
    }

    /// Every way of damaging an encoded group either decodes to something or fails
    /// cleanly; none panics.
    #[test]
    fn damaged_groups_never_panic() {
        let spans = rich_spans();
        let refs: Vec<SpanRef<'_>> = spans.iter().map(SpanRef::Model).collect();
        let mut dict = Dict::default();
        dict.insert(0, "s");
        dict.insert(1, "root");
        let lookup = |s: &str| dict.id(s);
        let mut strings = Strings::new(&lookup);
        let bytes = encode_group(&refs, &[0, 0, 0], &mut strings);
        let latest = spans[0].start_unix_nano;
        let resource = |_| Some(Arc::clone(&spans[0].resource));
        let decode = |b: &[u8]| -> DecodeResult<Vec<Span>> {
            let view = decode_headers(b, latest, &dict)?;
            view.attributes_match(&[("s".into(), "v".into())], |_, _| None)?;
            view.spans(spans[0].trace_id, resource)
        };
        assert_eq!(decode(&bytes).unwrap(), spans);
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        for i in 0..bytes.len() {
            for flip in [0x01, 0x80, 0xff] {
                let mut damaged = bytes.clone();
                damaged[i] ^= flip;
                let _ = decode(&damaged);
            }
        }
    }
}
