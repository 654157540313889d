//! The service map, counted as spans arrive.
//!
//! An edge is a span whose parent, or (for a CONSUMER) a span it links to, belongs to
//! another service. Either end may arrive first: a child whose target is not stored yet
//! waits in `pending` until the target is written. A child is counted at most once: the
//! `traces` entry of the write that stored it marks it as taken care of (counted, or
//! waiting), and a marked child is skipped when it is written again.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::collections::hash_map::Entry;

use clew_model::{SpanId, SpanKind, TraceId};
use clew_otlp::SpanRef;
use fjall::OwnedWriteBatch;

use super::codec::{self, DecodeError, DecodeResult, Reader, put_str, put_varint};
use super::hash::{self, FastMap, FastSet};
use super::keys::{self, GroupKey, TraceEntry};
use super::write::SpanIndex;
use super::{FjallStore, corrupt};
use crate::{Dependency, Result};

/// A span's messaging destination, looked up among its attributes only if an edge needs
/// it (only messaging edges do).
#[derive(Debug, Clone)]
enum Destination<'a> {
    Of(SpanRef<'a>),
    Known(Option<Cow<'a, str>>),
}

impl<'a> Destination<'a> {
    fn get(&self) -> Option<Cow<'a, str>> {
        match self {
            Destination::Of(span) => span.messaging_destination().map(Cow::Borrowed),
            Destination::Known(d) => d.clone(),
        }
    }
}

impl PartialEq for Destination<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

/// What an edge needs of the span at its upstream end.
#[derive(Clone)]
struct Upstream<'a> {
    service: Cow<'a, str>,
    kind: SpanKind,
    destination: Destination<'a>,
}

impl<'a> Upstream<'a> {
    fn of(span: SpanRef<'a>) -> Upstream<'a> {
        Upstream {
            service: Cow::Borrowed(span.service_name()),
            kind: span.kind(),
            destination: Destination::Of(span),
        }
    }
}

/// What an edge needs of the span at its downstream end; stored in `pending`.
#[derive(Debug, PartialEq)]
struct Downstream<'a> {
    service: Cow<'a, str>,
    kind: SpanKind,
    destination: Destination<'a>,
    error: bool,
    start: u64,
}

impl<'a> Downstream<'a> {
    fn of(span: SpanRef<'a>) -> Downstream<'a> {
        Downstream {
            service: Cow::Borrowed(span.service_name()),
            kind: span.kind(),
            destination: Destination::Of(span),
            error: span.is_error(),
            start: span.start_unix_nano(),
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.service.len() + 16);
        put_str(&mut out, &self.service);
        out.push(self.kind.as_otlp() as u8);
        out.push(u8::from(self.error));
        put_varint(&mut out, self.start);
        if let Some(d) = self.destination.get() {
            put_str(&mut out, &d);
        }
        out
    }

    fn decode(bytes: &'a [u8]) -> DecodeResult<Downstream<'a>> {
        let mut r = Reader::new(bytes);
        let service = Cow::Borrowed(r.str()?);
        let kind = SpanKind::from_otlp(i32::from(r.u8()?)).unwrap_or_default();
        let error = r.u8()? != 0;
        let start = r.varint()?;
        let destination = if r.is_empty() {
            None
        } else {
            Some(Cow::Borrowed(r.str()?))
        };
        Ok(Downstream {
            service,
            kind,
            destination: Destination::Known(destination),
            error,
            start,
        })
    }
}

type EdgeKey<'a> = (u64, Cow<'a, str>, Cow<'a, str>, Option<Cow<'a, str>>);

fn edge<'a>(up: &Upstream<'a>, down: &Downstream<'a>) -> Option<EdgeKey<'a>> {
    if up.service == down.service {
        return None;
    }
    let messaging = up.kind == SpanKind::Producer || down.kind == SpanKind::Consumer;
    let channel = if messaging {
        down.destination.get().or_else(|| up.destination.get())
    } else {
        None
    };
    Some((
        down.start / keys::HOUR_NANOS,
        up.service.clone(),
        down.service.clone(),
        channel,
    ))
}

/// What is already stored of a trace, loaded when first needed.
struct Stored {
    entries: Vec<TraceEntry>,
    marked: FastSet<SpanId>,
    /// Span id → its group and kind; read from group headers only.
    spans: Option<FastMap<SpanId, (GroupKey, SpanKind)>>,
}

struct Lookup<'s> {
    store: &'s FjallStore,
    traces: FastMap<TraceId, Stored>,
}

impl Lookup<'_> {
    fn load(&mut self, trace: TraceId) -> Result<&mut Stored> {
        Ok(match self.traces.entry(trace) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(v) => {
                let entries = self.store.trace_entries(trace)?;
                let marked = entries
                    .iter()
                    .flat_map(|e| e.marks.iter().copied())
                    .collect();
                v.insert(Stored {
                    entries,
                    marked,
                    spans: None,
                })
            }
        })
    }

    fn marked(&mut self, trace: TraceId, span: SpanId) -> Result<bool> {
        Ok(self.load(trace)?.marked.contains(&span))
    }

    /// A stored span as an edge's upstream end. Its messaging destination is read (which
    /// means decoding its group's bodies) only if `wants_destination(kind)`.
    fn span(
        &mut self,
        trace: TraceId,
        span: SpanId,
        wants_destination: impl Fn(SpanKind) -> bool,
    ) -> Result<Option<Upstream<'static>>> {
        let store = self.store;
        let stored = self.load(trace)?;
        if stored.spans.is_none() {
            let mut spans = hash::map();
            let dict = store.read_dict();
            for group in stored.entries.iter().flat_map(|e| &e.groups) {
                let key = group.span_key();
                let Some(bytes) = store.ks.spans.get(&key)? else {
                    continue;
                };
                let view = codec::decode_headers(&bytes, group.latest, &dict)
                    .map_err(|e| corrupt(&key, e))?;
                // Later writes come later in `entries`, so the newest copy wins.
                for h in &view.headers {
                    spans.insert(h.span_id, (*group, h.kind));
                }
            }
            stored.spans = Some(spans);
        }
        let Some(&(group, kind)) = stored.spans.as_ref().and_then(|m| m.get(&span)) else {
            return Ok(None);
        };
        let Some(service) = store.service_name(group.service) else {
            return Err(corrupt(
                &group.span_key(),
                DecodeError("a span group of an unknown service".into()),
            ));
        };
        let destination = if wants_destination(kind) {
            store
                .group_spans(&group)?
                .iter()
                .find(|s| s.span_id == span)
                .and_then(|s| s.messaging_destination().map(str::to_string))
        } else {
            None
        };
        Ok(Some(Upstream {
            service: Cow::Owned(service),
            kind,
            destination: Destination::Known(destination.map(Cow::Owned)),
        }))
    }
}

/// Counts the edges this write completes, parks children whose upstream span is not
/// stored yet, and returns the children it took care of (to be marked).
/// Stored dependency counters the writer remembers (key → calls, errors), so that a
/// write adding to a counter of the current hour does not read it back from disk first.
/// Only the writer touches it, under its lock; it changes only after a commit.
pub(super) type CounterCache = FastMap<Vec<u8>, (u64, u64)>;

/// Counters remembered at most; the cache is dropped when it would grow past this.
const COUNTER_CACHE_LIMIT: usize = 50_000;

/// What a write did to the service map: the children it took care of (to be marked), and
/// the counters' new values (for the cache, once committed).
pub(super) struct Processed {
    pub(super) handled: Vec<(TraceId, SpanId)>,
    pub(super) counters: Vec<(Vec<u8>, (u64, u64))>,
    /// For the traces it looked up: whether anything of them was stored before.
    pub(super) stored: FastMap<TraceId, bool>,
}

/// Remembers the counters a committed write stored.
pub(super) fn remember(cache: &mut CounterCache, counters: Vec<(Vec<u8>, (u64, u64))>) {
    if cache.len() + counters.len() > COUNTER_CACHE_LIMIT {
        cache.clear();
    }
    cache.extend(counters);
}

pub(super) fn process(
    store: &FjallStore,
    cache: &CounterCache,
    spans: &[SpanRef<'_>],
    index: &SpanIndex,
    traces: &[TraceId],
    batch: &mut OwnedWriteBatch,
) -> Result<Processed> {
    let in_batch = |key: &(TraceId, SpanId)| index.get(key).map(|&i| spans[i]);
    let mut lookup = Lookup {
        store,
        traces: hash::map(),
    };
    let mut counts: BTreeMap<EdgeKey, (u64, u64)> = BTreeMap::new();
    let mut handled = Vec::new();

    // Traces this write parks children for (and marks in `pending`).
    let mut awaited: FastSet<TraceId> = hash::set();
    // Reused across children; most have one target, their parent.
    let mut targets: Vec<(TraceId, SpanId)> = Vec::new();
    let mut edges = Vec::new();
    let mut waits = Vec::new();
    for &child in spans {
        targets.clear();
        if let Some(p) = child.parent_span_id() {
            targets.push((child.trace_id(), p));
        }
        if child.kind() == SpanKind::Consumer {
            // A batch consumer links to the producers of the messages it handled.
            for link in child.links() {
                if !targets.contains(&(link.trace_id, link.span_id)) {
                    targets.push((link.trace_id, link.span_id));
                }
            }
        }
        if targets.is_empty() {
            continue;
        }
        let down = Downstream::of(child);
        edges.clear();
        waits.clear();
        for &(trace, span) in &targets {
            let up = match in_batch(&(trace, span)) {
                Some(p) => Some(Upstream::of(p)),
                None => lookup.span(trace, span, |kind| {
                    (kind == SpanKind::Producer || down.kind == SpanKind::Consumer)
                        && down.destination.get().is_none()
                })?,
            };
            match up {
                Some(up) => edges.extend(edge(&up, &down)),
                None => waits.push((trace, span)),
            }
        }
        if edges.is_empty() && waits.is_empty() {
            continue;
        }
        if lookup.marked(child.trace_id(), child.span_id())? {
            continue;
        }
        for e in edges.drain(..) {
            let c = counts.entry(e).or_default();
            c.0 += 1;
            c.1 += u64::from(down.error);
        }
        for &(trace, span) in &waits {
            batch.insert(
                &store.ks.pending,
                keys::pending(trace, span, child.trace_id(), child.span_id()),
                down.encode(),
            );
            if awaited.insert(trace) {
                // The marker: something waits for a span of `trace`.
                batch.insert(&store.ks.pending, trace.0, []);
            }
        }
        handled.push((child.trace_id(), child.span_id()));
    }

    // Children written earlier that waited for a span of this write.
    let mut pending = Vec::new();
    for &trace in traces {
        // Only traces with a marker have children waiting: a point read, which bloom
        // filters answer for most traces without reading a block.
        if !store.ks.pending.contains_key(trace.0)? {
            continue;
        }
        let mut remaining = 0usize;
        for guard in store.ks.pending.prefix(trace.0) {
            let (key, value) = guard.into_inner()?;
            if key.len() == 16 {
                continue;
            }
            let target = keys::pending_target_span(&key).map_err(|e| corrupt(&key, e))?;
            let Some(up) = in_batch(&(trace, target)) else {
                remaining += 1;
                continue;
            };
            pending.push((key, value, up));
        }
        if remaining == 0 && !awaited.contains(&trace) {
            batch.remove(&store.ks.pending, trace.0);
        }
    }
    for (key, value, up) in &pending {
        let down = Downstream::decode(value).map_err(|e| corrupt(key, e))?;
        if let Some(e) = edge(&Upstream::of(*up), &down) {
            let c = counts.entry(e).or_default();
            c.0 += 1;
            c.1 += u64::from(down.error);
        }
        batch.remove(&store.ks.pending, key.clone());
    }

    let mut counters = Vec::with_capacity(counts.len());
    for ((hour, parent, child, channel), (calls, errors)) in counts {
        let key = keys::dependency(hour, &parent, &child, channel.as_deref());
        let (old_calls, old_errors) = match cache.get(&key) {
            Some(&counts) => counts,
            None => match store.ks.dependencies.get(&key)? {
                Some(v) => decode_counts(&v).map_err(|e| corrupt(&key, e))?,
                None => (0, 0),
            },
        };
        let new = (old_calls + calls, old_errors + errors);
        batch.insert(
            &store.ks.dependencies,
            key.as_slice(),
            encode_counts(new.0, new.1),
        );
        counters.push((key, new));
    }
    let stored = lookup
        .traces
        .iter()
        .map(|(trace, s)| (*trace, !s.entries.is_empty()))
        .collect();
    Ok(Processed {
        handled,
        counters,
        stored,
    })
}

fn encode_counts(calls: u64, errors: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(4);
    put_varint(&mut out, calls);
    put_varint(&mut out, errors);
    out
}

fn decode_counts(bytes: &[u8]) -> DecodeResult<(u64, u64)> {
    let mut r = Reader::new(bytes);
    Ok((r.varint()?, r.varint()?))
}

/// Sums the hourly counters of every hour that overlaps `[start, end]`.
pub(super) fn read(store: &FjallStore, start: u64, end: u64) -> Result<Vec<Dependency>> {
    if start > end {
        return Ok(Vec::new());
    }
    let lo = (start / keys::HOUR_NANOS).to_be_bytes();
    let hi = (end / keys::HOUR_NANOS + 1).to_be_bytes();
    let mut sums: BTreeMap<(String, String, Option<String>), (u64, u64)> = BTreeMap::new();
    for guard in store.ks.dependencies.range(lo..hi) {
        let (key, value) = guard.into_inner()?;
        let k = keys::parse_dependency(&key).map_err(|e| corrupt(&key, e))?;
        let (calls, errors) = decode_counts(&value).map_err(|e| corrupt(&key, e))?;
        let sum = sums.entry((k.parent, k.child, k.channel)).or_default();
        sum.0 += calls;
        sum.1 += errors;
    }
    Ok(sums
        .into_iter()
        .map(
            |((parent, child, channel), (call_count, error_count))| Dependency {
                parent,
                child,
                channel,
                call_count,
                error_count,
            },
        )
        .collect())
}

/// Deletes counters of hours that ended at or before `cutoff`, and children that have
/// waited since before it for a span that never came.
pub(super) fn purge(store: &FjallStore, cutoff: u64) -> Result<()> {
    let mut batch = store.db.batch();
    let hi = (cutoff / keys::HOUR_NANOS).to_be_bytes();
    for guard in store.ks.dependencies.range(..hi) {
        batch.remove(&store.ks.dependencies, guard.key()?);
    }
    // Keys come in order, so a trace's marker precedes the children waiting for it; a
    // marker none of whose children is kept goes too.
    let mut marker: Option<(Vec<u8>, bool)> = None;
    let drop_unused = |batch: &mut OwnedWriteBatch, marker: Option<(Vec<u8>, bool)>| {
        if let Some((key, false)) = marker {
            batch.remove(&store.ks.pending, key);
        }
    };
    for guard in store.ks.pending.iter() {
        let (key, value) = guard.into_inner()?;
        if key.len() == 16 {
            drop_unused(&mut batch, marker.replace((key.to_vec(), false)));
            continue;
        }
        let down = Downstream::decode(&value).map_err(|e| corrupt(&key, e))?;
        if down.start < cutoff {
            batch.remove(&store.ks.pending, key);
            if batch.len() >= 10_000 {
                std::mem::replace(&mut batch, store.db.batch()).commit()?;
            }
        } else if let Some((m, used)) = &mut marker
            && key.starts_with(m)
        {
            *used = true;
        }
    }
    drop_unused(&mut batch, marker.take());
    batch.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_children_round_trip() {
        for destination in [None, Some(Cow::Borrowed("orders"))] {
            let d = Downstream {
                service: "billing".into(),
                kind: SpanKind::Consumer,
                destination: Destination::Known(destination),
                error: true,
                start: 1_700_000_000_000_000_000,
            };
            assert_eq!(Downstream::decode(&d.encode()).unwrap(), d);
        }
    }
}
