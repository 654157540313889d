//! Key layouts. Integers are big-endian wherever keys must sort by them.

use clew_model::{SpanId, TraceId};

use super::codec::{DecodeError, DecodeResult, Reader, put_varint, unzigzag, zigzag};

pub(crate) type ServiceId = u32;

/// Where a span group lives: `spans` is keyed `service | latest | trace | seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct GroupKey {
    pub(crate) service: ServiceId,
    /// Start of the newest span in the group.
    pub(crate) latest: u64,
    pub(crate) trace: TraceId,
    /// The write call that stored the group; later calls win when a span is re-written.
    pub(crate) seq: u64,
}

impl GroupKey {
    pub(crate) fn span_key(&self) -> Vec<u8> {
        let mut k = Vec::with_capacity(4 + 8 + 16 + 4);
        self.span_key_into(&mut k);
        k
    }

    /// [`span_key`](Self::span_key) into a reused buffer.
    pub(crate) fn span_key_into(&self, k: &mut Vec<u8>) {
        k.clear();
        k.extend_from_slice(&self.service.to_be_bytes());
        k.extend_from_slice(&self.latest.to_be_bytes());
        k.extend_from_slice(&self.trace.0);
        // The sequence number only has to make keys unique (the fixed-width prefix
        // already orders them), so a varint keeps it short.
        put_varint(k, self.seq);
    }

    pub(crate) fn from_span_key(key: &[u8]) -> DecodeResult<GroupKey> {
        let mut r = Reader::new(key);
        let service = u32::from_be_bytes(r.array()?);
        let latest = u64::from_be_bytes(r.array()?);
        let trace = TraceId(r.array()?);
        let seq = r.varint()?;
        Ok(GroupKey {
            service,
            latest,
            trace,
            seq,
        })
    }
}

/// One write's share of a trace, under `traces`: the groups it stored and the children
/// whose dependency edge it took care of.
///
/// The first write of a trace stores its entry under the bare trace id, the *head* (with
/// the sequence number in the value); later writes under `trace | seq`. So whether a
/// trace has anything stored is a point read, which bloom filters answer without reading
/// a block for the many traces that are new, instead of a prefix scan.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TraceEntry {
    pub(crate) trace: TraceId,
    pub(crate) seq: u64,
    /// Stored under the bare trace id.
    pub(crate) head: bool,
    pub(crate) groups: Vec<GroupKey>,
    pub(crate) marks: Vec<SpanId>,
}

impl TraceEntry {
    pub(crate) fn key(&self) -> Vec<u8> {
        let mut k = Vec::with_capacity(16 + 4);
        k.extend_from_slice(&self.trace.0);
        if !self.head {
            // A varint does not sort numerically; readers order entries by `seq` themselves.
            put_varint(&mut k, self.seq);
        }
        k
    }

    pub(crate) fn value(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(20 + 12 * self.groups.len() + 8 * self.marks.len());
        if self.head {
            put_varint(&mut v, self.seq);
        }
        put_varint(&mut v, self.groups.len() as u64);
        let mut prev = None;
        for g in &self.groups {
            put_varint(&mut v, u64::from(g.service));
            // Groups of one write lie close in time: after the first, a delta is short.
            match prev {
                None => v.extend_from_slice(&g.latest.to_be_bytes()),
                Some(p) => put_varint(&mut v, zigzag(g.latest.wrapping_sub(p) as i64)),
            }
            prev = Some(g.latest);
        }
        put_varint(&mut v, self.marks.len() as u64);
        for m in &self.marks {
            v.extend_from_slice(&m.0);
        }
        v
    }

    pub(crate) fn decode(key: &[u8], value: &[u8]) -> DecodeResult<TraceEntry> {
        let mut k = Reader::new(key);
        let trace = TraceId(k.array()?);
        let mut r = Reader::new(value);
        let head = k.is_empty();
        let seq = if head { r.varint()? } else { k.varint()? };
        let n = r.varint()?;
        let mut groups = Vec::new();
        let mut prev: Option<u64> = None;
        for _ in 0..n {
            let service = u32::try_from(r.varint()?)
                .map_err(|_| DecodeError("service id out of range".into()))?;
            let latest = match prev {
                None => u64::from_be_bytes(r.array()?),
                Some(p) => p.wrapping_add(unzigzag(r.varint()?) as u64),
            };
            prev = Some(latest);
            groups.push(GroupKey {
                service,
                latest,
                trace,
                seq,
            });
        }
        let n = r.varint()?;
        let mut marks = Vec::new();
        for _ in 0..n {
            marks.push(SpanId(r.array()?));
        }
        Ok(TraceEntry {
            trace,
            seq,
            head,
            groups,
            marks,
        })
    }
}

/// First key of a service's groups whose newest span started at or after `time`.
pub(crate) fn service_time(service: ServiceId, time: u64) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..4].copy_from_slice(&service.to_be_bytes());
    k[4..].copy_from_slice(&time.to_be_bytes());
    k
}

/// `operations`: `service | kind | name`.
pub(crate) fn operation_into(k: &mut Vec<u8>, service: ServiceId, kind: u8, name: &str) {
    k.clear();
    k.extend_from_slice(&service.to_be_bytes());
    k.push(kind);
    k.extend_from_slice(name.as_bytes());
}

/// `pending`: a span waiting for `target` (its parent, or a span it links to) to arrive:
/// `target trace | target span | child trace | child span`.
pub(crate) fn pending(
    target_trace: TraceId,
    target_span: SpanId,
    child_trace: TraceId,
    child_span: SpanId,
) -> [u8; 48] {
    let mut k = [0u8; 48];
    k[..16].copy_from_slice(&target_trace.0);
    k[16..24].copy_from_slice(&target_span.0);
    k[24..40].copy_from_slice(&child_trace.0);
    k[40..].copy_from_slice(&child_span.0);
    k
}

pub(crate) fn pending_target_span(key: &[u8]) -> DecodeResult<SpanId> {
    key.get(16..24)
        .and_then(SpanId::from_slice)
        .ok_or_else(|| DecodeError("short pending key".into()))
}

pub(crate) const HOUR_NANOS: u64 = 3_600 * 1_000_000_000;

/// `dependencies`: `hour | parent | child | channel`, strings length-prefixed so any
/// byte may appear in a service name.
pub(crate) fn dependency(hour: u64, parent: &str, child: &str, channel: Option<&str>) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + parent.len() + child.len() + 8);
    k.extend_from_slice(&hour.to_be_bytes());
    super::codec::put_str(&mut k, parent);
    super::codec::put_str(&mut k, child);
    match channel {
        None => k.push(0),
        Some(c) => {
            k.push(1);
            super::codec::put_str(&mut k, c);
        }
    }
    k
}

pub(crate) struct DependencyKey {
    pub(crate) parent: String,
    pub(crate) child: String,
    pub(crate) channel: Option<String>,
}

pub(crate) fn parse_dependency(key: &[u8]) -> DecodeResult<DependencyKey> {
    let mut r = Reader::new(key);
    r.bytes(8)?;
    let parent = r.str()?.to_string();
    let child = r.str()?.to_string();
    let channel = match r.u8()? {
        0 => None,
        _ => Some(r.str()?.to_string()),
    };
    Ok(DependencyKey {
        parent,
        child,
        channel,
    })
}

pub(crate) fn hex(key: &[u8]) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_entries_round_trip() {
        let trace = TraceId([7; 16]);
        let group = |service, latest| GroupKey {
            service,
            latest,
            trace,
            seq: 300,
        };
        for head in [true, false] {
            let entry = TraceEntry {
                trace,
                seq: 300,
                head,
                groups: vec![group(2, 1_000), group(0, 999), group(70_000, u64::MAX)],
                marks: vec![SpanId([1; 8]), SpanId([2; 8])],
            };
            assert_eq!(entry.key().len(), if head { 16 } else { 18 });
            assert_eq!(
                TraceEntry::decode(&entry.key(), &entry.value()).unwrap(),
                entry
            );
        }
        let g = group(5, 1_700_000_000_000_000_000);
        assert_eq!(GroupKey::from_span_key(&g.span_key()).unwrap(), g);
    }
}
