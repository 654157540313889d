//! The service map, counted as spans arrive.
//!
//! An edge is a span whose parent, or (for a CONSUMER) a span it links to, belongs to
//! another service. Either end may arrive first: a child whose target is not stored yet
//! waits in `pending` until the target is written. A child is counted at most once: the
//! `traces` entry of the write that stored it marks it as taken care of (counted, or
//! waiting), and a marked child is skipped when it is written again.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};

use clew_model::{Span, SpanId, SpanKind, TraceId};
use fjall::OwnedWriteBatch;

use super::codec::{self, DecodeError, DecodeResult, Reader, put_str, put_varint};
use super::keys::{self, GroupKey, TraceEntry};
use super::{FjallStore, corrupt};
use crate::{Dependency, Result};

/// What an edge needs of the span at its upstream end.
#[derive(Clone)]
struct Upstream {
    service: String,
    kind: SpanKind,
    destination: Option<String>,
}

impl Upstream {
    fn of(span: &Span) -> Upstream {
        Upstream {
            service: span.service_name().to_string(),
            kind: span.kind,
            destination: span.messaging_destination().map(str::to_string),
        }
    }
}

/// What an edge needs of the span at its downstream end; stored in `pending`.
#[derive(Debug, PartialEq)]
struct Downstream {
    service: String,
    kind: SpanKind,
    destination: Option<String>,
    error: bool,
    start: u64,
}

impl Downstream {
    fn of(span: &Span) -> Downstream {
        Downstream {
            service: span.service_name().to_string(),
            kind: span.kind,
            destination: span.messaging_destination().map(str::to_string),
            error: span.is_error(),
            start: span.start_unix_nano,
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.service.len() + 16);
        put_str(&mut out, &self.service);
        out.push(self.kind.as_otlp() as u8);
        out.push(u8::from(self.error));
        put_varint(&mut out, self.start);
        if let Some(d) = &self.destination {
            put_str(&mut out, d);
        }
        out
    }

    fn decode(bytes: &[u8]) -> DecodeResult<Downstream> {
        let mut r = Reader::new(bytes);
        let service = r.str()?.to_string();
        let kind = SpanKind::from_otlp(i32::from(r.u8()?)).unwrap_or_default();
        let error = r.u8()? != 0;
        let start = r.varint()?;
        let destination = if r.is_empty() {
            None
        } else {
            Some(r.str()?.to_string())
        };
        Ok(Downstream {
            service,
            kind,
            destination,
            error,
            start,
        })
    }
}

type EdgeKey = (u64, String, String, Option<String>);

fn edge(up: &Upstream, down: &Downstream) -> Option<EdgeKey> {
    if up.service == down.service {
        return None;
    }
    let messaging = up.kind == SpanKind::Producer || down.kind == SpanKind::Consumer;
    let channel = if messaging {
        down.destination.clone().or_else(|| up.destination.clone())
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
    marked: HashSet<SpanId>,
    /// Span id → its group and kind; read from group headers only.
    spans: Option<HashMap<SpanId, (GroupKey, SpanKind)>>,
}

struct Lookup<'s> {
    store: &'s FjallStore,
    traces: HashMap<TraceId, Stored>,
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
    ) -> Result<Option<Upstream>> {
        let store = self.store;
        let stored = self.load(trace)?;
        if stored.spans.is_none() {
            let mut spans = HashMap::new();
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
            service,
            kind,
            destination,
        }))
    }
}

/// Counts the edges this write completes, parks children whose upstream span is not
/// stored yet, and returns the children it took care of (to be marked).
pub(super) fn process(
    store: &FjallStore,
    spans: &[&Span],
    batch: &mut OwnedWriteBatch,
) -> Result<Vec<(TraceId, SpanId)>> {
    let in_batch: HashMap<(TraceId, SpanId), &Span> = spans
        .iter()
        .map(|s| ((s.trace_id, s.span_id), *s))
        .collect();
    let mut lookup = Lookup {
        store,
        traces: HashMap::new(),
    };
    let mut counts: BTreeMap<EdgeKey, (u64, u64)> = BTreeMap::new();
    let mut handled = Vec::new();

    for child in spans {
        let mut targets: Vec<(TraceId, SpanId)> = Vec::new();
        if let Some(p) = child.parent_span_id {
            targets.push((child.trace_id, p));
        }
        if child.kind == SpanKind::Consumer {
            // A batch consumer links to the producers of the messages it handled.
            for link in &child.links {
                if !targets.contains(&(link.trace_id, link.span_id)) {
                    targets.push((link.trace_id, link.span_id));
                }
            }
        }
        if targets.is_empty() {
            continue;
        }
        let down = Downstream::of(child);
        let mut edges = Vec::new();
        let mut waits = Vec::new();
        for (trace, span) in targets {
            let up = match in_batch.get(&(trace, span)) {
                Some(p) => Some(Upstream::of(p)),
                None => lookup.span(trace, span, |kind| {
                    down.destination.is_none()
                        && (kind == SpanKind::Producer || down.kind == SpanKind::Consumer)
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
        if lookup.marked(child.trace_id, child.span_id)? {
            continue;
        }
        for e in edges {
            let c = counts.entry(e).or_default();
            c.0 += 1;
            c.1 += u64::from(down.error);
        }
        for (trace, span) in waits {
            batch.insert(
                &store.ks.pending,
                keys::pending(trace, span, child.trace_id, child.span_id),
                down.encode(),
            );
        }
        handled.push((child.trace_id, child.span_id));
    }

    // Children written earlier that waited for a span of this write.
    let traces: HashSet<TraceId> = spans.iter().map(|s| s.trace_id).collect();
    for trace in traces {
        for guard in store.ks.pending.prefix(trace.0) {
            let (key, value) = guard.into_inner()?;
            let target = keys::pending_target_span(&key).map_err(|e| corrupt(&key, e))?;
            let Some(up) = in_batch.get(&(trace, target)) else {
                continue;
            };
            let down = Downstream::decode(&value).map_err(|e| corrupt(&key, e))?;
            if let Some(e) = edge(&Upstream::of(up), &down) {
                let c = counts.entry(e).or_default();
                c.0 += 1;
                c.1 += u64::from(down.error);
            }
            batch.remove(&store.ks.pending, key);
        }
    }

    for ((hour, parent, child, channel), (calls, errors)) in counts {
        let key = keys::dependency(hour, &parent, &child, channel.as_deref());
        let (old_calls, old_errors) = match store.ks.dependencies.get(&key)? {
            Some(v) => decode_counts(&v).map_err(|e| corrupt(&key, e))?,
            None => (0, 0),
        };
        batch.insert(
            &store.ks.dependencies,
            key,
            encode_counts(old_calls + calls, old_errors + errors),
        );
    }
    Ok(handled)
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
    for guard in store.ks.pending.iter() {
        let (key, value) = guard.into_inner()?;
        let down = Downstream::decode(&value).map_err(|e| corrupt(&key, e))?;
        if down.start < cutoff {
            batch.remove(&store.ks.pending, key);
            if batch.len() >= 10_000 {
                std::mem::replace(&mut batch, store.db.batch()).commit()?;
            }
        }
    }
    batch.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_children_round_trip() {
        for destination in [None, Some("orders".to_string())] {
            let d = Downstream {
                service: "billing".into(),
                kind: SpanKind::Consumer,
                destination,
                error: true,
                start: 1_700_000_000_000_000_000,
            };
            assert_eq!(Downstream::decode(&d.encode()).unwrap(), d);
        }
    }
}
