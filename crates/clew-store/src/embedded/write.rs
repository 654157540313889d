//! The write path: one atomic, fsynced batch per call.

use std::sync::{Arc, PoisonError};

use clew_model::{Resource, SpanId, TraceId};
use clew_otlp::SpanRef;
use fjall::{OwnedWriteBatch, PersistMode};

use super::codec::{self, DecodeError, GroupScratch, Strings};
use super::dict::Admission;
use super::hash::{self, FastMap, FastSet};
use super::keys::{self, GroupKey, ServiceId, TraceEntry};
use super::{FjallStore, GROUP_SPREAD_NANOS, META_SEQ, corrupt, deps};
use crate::Result;

/// Operations remembered as already stored, so writes skip the point read; the set is
/// dropped when it grows past this (it is only a cache).
const OPERATION_CACHE_LIMIT: usize = 100_000;

/// State only the writer touches; held for the whole of a write (or purge) so the
/// read-modify-write steps (dependency counters, edge bookkeeping, id allocation) never
/// interleave.
pub(super) struct Writer {
    seq: u64,
    next_resource: u32,
    /// Encoded resource → id, for resources already stored.
    resource_ids: FastMap<Vec<u8>, u32>,
    /// `operations` keys known to be stored.
    operations: FastSet<Vec<u8>>,
    admission: Admission,
    /// Dependency counters as last stored.
    counters: deps::CounterCache,
}

impl Writer {
    pub(super) fn new(seq: u64, next_resource: u32) -> Writer {
        Writer {
            seq,
            next_resource,
            resource_ids: hash::map(),
            operations: hash::set(),
            admission: Admission::default(),
            counters: hash::map(),
        }
    }

    /// Forgets cached dependency counters; a purge deleting counters calls it.
    pub(super) fn forget_counters(&mut self) {
        self.counters.clear();
    }
}

/// In-memory changes a write makes, applied only once its batch is committed.
#[derive(Default)]
struct Staged {
    services: Vec<(String, ServiceId)>,
    /// Resources this write resolved (new or found on disk), to cache.
    resources: Vec<(Vec<u8>, u32, Arc<Resource>)>,
    /// How many resource ids this write allocates.
    new_resources: u32,
    operations: Vec<Vec<u8>>,
    strings: Vec<(String, u32)>,
}

/// One planned group of a write: `members.spans[range]`.
struct Plan {
    key: GroupKey,
    range: std::ops::Range<usize>,
}

/// The spans of all groups, each group's newest first, and their stored resource ids.
struct Members<'a> {
    spans: Vec<SpanRef<'a>>,
    resource_ids: Vec<u32>,
}

pub(super) fn write(store: &FjallStore, w: &mut Writer, input: &[SpanRef<'_>]) -> Result<()> {
    // The contract keeps the last of several copies of one span, even within a call.
    // `index` maps each (trace, span) to its last copy, and serves the service map's
    // lookups of spans in this write afterwards.
    let mut index: SpanIndex = hash::map_with_capacity(input.len());
    let mut repeated = false;
    for (i, s) in input.iter().enumerate() {
        repeated |= index.insert((s.trace_id(), s.span_id()), i).is_some();
    }
    let spans: Vec<SpanRef<'_>> = if repeated {
        let spans: Vec<SpanRef<'_>> = input
            .iter()
            .enumerate()
            .filter(|(i, s)| index[&(s.trace_id(), s.span_id())] == *i)
            .map(|(_, s)| *s)
            .collect();
        index.clear();
        index.extend(
            spans
                .iter()
                .enumerate()
                .map(|(i, s)| ((s.trace_id(), s.span_id()), i)),
        );
        spans
    } else {
        input.to_vec()
    };

    let seq = w.seq + 1;
    let mut batch = store.db.batch().durability(Some(PersistMode::SyncAll));
    let mut staged = Staged::default();

    let service_ids = plan_services(store, &spans, &mut batch, &mut staged);
    let resource_ids = plan_resources(store, w, &spans, &mut batch, &mut staged)?;
    plan_operations(store, w, &spans, &service_ids, &mut batch, &mut staged)?;
    let (members, plans, traces) = plan_groups(&spans, &service_ids, &resource_ids, seq);

    let processed = deps::process(store, &w.counters, &spans, &index, &traces, &mut batch)?;
    let mut entries: FastMap<TraceId, TraceEntry> = hash::map();
    for (trace, span) in processed.handled {
        entry(&mut entries, trace, seq).marks.push(span);
    }

    {
        let dict = store.read_dict();
        let mut admitted: FastMap<&str, u32> = hash::map();
        let next_string = dict.len() as u32;
        let mut scratch = GroupScratch::default();
        let mut value = Vec::new();
        let mut key = Vec::new();
        for plan in &plans {
            let lookup = |s: &str| dict.id(s).or_else(|| admitted.get(s).copied());
            let mut strings = Strings::new(&lookup);
            codec::encode_group_into(
                &members.spans[plan.range.clone()],
                &members.resource_ids[plan.range.clone()],
                &mut strings,
                &mut scratch,
                &mut value,
            );
            let local = strings.local().to_vec();
            // Strings this group had to carry itself may earn a dictionary id for the
            // groups after it.
            for s in w.admission.observe(local, dict.len() + admitted.len()) {
                let id = next_string + admitted.len() as u32;
                batch.insert(&store.ks.strings, id.to_be_bytes(), s);
                admitted.insert(s, id);
                staged.strings.push((s.to_string(), id));
            }
            plan.key.span_key_into(&mut key);
            batch.insert(&store.ks.spans, key.as_slice(), value.as_slice());
            entry(&mut entries, plan.key.trace, seq)
                .groups
                .push(plan.key);
        }
    }
    for e in entries.values_mut() {
        // The trace's first write takes the head key.
        e.head = match processed.stored.get(&e.trace) {
            Some(&stored) => !stored,
            None => !store.ks.traces.contains_key(e.trace.0)?,
        };
        batch.insert(&store.ks.traces, e.key(), e.value());
    }
    batch.insert(&store.ks.meta, META_SEQ, seq.to_be_bytes());

    batch.commit()?;

    w.seq = seq;
    w.next_resource += staged.new_resources;
    deps::remember(&mut w.counters, processed.counters);
    apply(store, w, staged);
    tracing::trace!(
        spans = spans.len(),
        groups = plans.len(),
        seq,
        "wrote spans"
    );
    Ok(())
}

fn entry(entries: &mut FastMap<TraceId, TraceEntry>, trace: TraceId, seq: u64) -> &mut TraceEntry {
    entries.entry(trace).or_insert_with(|| TraceEntry {
        trace,
        seq,
        head: false,
        groups: Vec::new(),
        marks: Vec::new(),
    })
}

/// Makes a committed write's new ids visible to readers and later writes.
fn apply(store: &FjallStore, w: &mut Writer, staged: Staged) {
    if !staged.services.is_empty() {
        let mut services = store
            .services
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        for (name, id) in staged.services {
            let idx = id as usize;
            if services.names.len() <= idx {
                services.names.resize(idx + 1, String::new());
            }
            services.names[idx] = name.clone();
            services.by_name.insert(name, id);
        }
    }
    if !staged.strings.is_empty() {
        let mut dict = store.dict.write().unwrap_or_else(PoisonError::into_inner);
        for (s, id) in staged.strings {
            dict.insert(id, &s);
        }
    }
    if !staged.resources.is_empty() {
        let mut cache = store
            .resources
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        for (bytes, id, resource) in staged.resources {
            cache.insert(id, resource);
            w.resource_ids.insert(bytes, id);
        }
    }
    if w.operations.len() + staged.operations.len() > OPERATION_CACHE_LIMIT {
        w.operations.clear();
    }
    w.operations.extend(staged.operations);
}

/// The service id of each span, registering new services.
fn plan_services(
    store: &FjallStore,
    spans: &[SpanRef<'_>],
    batch: &mut OwnedWriteBatch,
    staged: &mut Staged,
) -> Vec<ServiceId> {
    let services = store
        .services
        .read()
        .unwrap_or_else(PoisonError::into_inner);
    let mut next = services.names.len() as ServiceId;
    let mut new: FastMap<&str, ServiceId> = hash::map();
    // Spans of one OTLP `ResourceSpans` share their resource and come in a run.
    let mut previous: Option<(*const Resource, ServiceId)> = None;
    spans
        .iter()
        .map(|s| {
            let ptr = Arc::as_ptr(s.resource());
            if let Some((p, id)) = previous
                && p == ptr
            {
                return id;
            }
            let name = s.service_name();
            let id = match services.by_name.get(name).or_else(|| new.get(name)) {
                Some(&id) => id,
                None => {
                    let id = next;
                    next += 1;
                    new.insert(name, id);
                    batch.insert(&store.ks.services, name, id.to_be_bytes());
                    staged.services.push((name.to_string(), id));
                    id
                }
            };
            previous = Some((ptr, id));
            id
        })
        .collect()
}

/// The stored resource id of each span's resource, storing new resources.
fn plan_resources(
    store: &FjallStore,
    w: &Writer,
    spans: &[SpanRef<'_>],
    batch: &mut OwnedWriteBatch,
    staged: &mut Staged,
) -> Result<Vec<u32>> {
    // Spans of one OTLP request share their resource by pointer; encoding each
    // distinct pointer once keeps this cheap.
    let mut by_ptr: FastMap<*const Resource, u32> = hash::map();
    let mut new: FastMap<Vec<u8>, u32> = hash::map();
    let mut out = Vec::with_capacity(spans.len());
    let mut previous: Option<(*const Resource, u32)> = None;
    for s in spans {
        let ptr = Arc::as_ptr(s.resource());
        if let Some((p, id)) = previous
            && p == ptr
        {
            out.push(id);
            continue;
        }
        if let Some(&id) = by_ptr.get(&ptr) {
            previous = Some((ptr, id));
            out.push(id);
            continue;
        }
        let bytes = codec::encode_resource(s.resource());
        let id = match w.resource_ids.get(&bytes).or_else(|| new.get(&bytes)) {
            Some(&id) => id,
            None => {
                let id = match find_resource(store, &bytes)? {
                    // Stored by an earlier process: remember it, write nothing.
                    Some(id) => id,
                    None => {
                        let id = w.next_resource + staged.new_resources;
                        staged.new_resources += 1;
                        let hash_key =
                            [&fnv1a(&bytes).to_be_bytes()[..], &id.to_be_bytes()].concat();
                        batch.insert(&store.ks.resources, id.to_be_bytes(), bytes.clone());
                        batch.insert(&store.ks.resource_hashes, hash_key, []);
                        id
                    }
                };
                new.insert(bytes.clone(), id);
                staged.resources.push((bytes, id, Arc::clone(s.resource())));
                id
            }
        };
        by_ptr.insert(ptr, id);
        previous = Some((ptr, id));
        out.push(id);
    }
    Ok(out)
}

/// A stored resource with exactly these encoded bytes.
fn find_resource(store: &FjallStore, bytes: &[u8]) -> Result<Option<u32>> {
    for guard in store.ks.resource_hashes.prefix(fnv1a(bytes).to_be_bytes()) {
        let key = guard.key()?;
        let Some(id) = key.get(8..12).and_then(|b| b.try_into().ok()) else {
            return Err(corrupt(&key, DecodeError("short resource hash key".into())));
        };
        let id = u32::from_be_bytes(id);
        if store.ks.resources.get(id.to_be_bytes())?.as_deref() == Some(bytes) {
            return Ok(Some(id));
        }
    }
    Ok(None)
}

/// FNV-1a: stable across processes and Rust versions, which `std`'s hasher is not.
/// Collisions are harmless (the bytes are compared), so a simple hash will do.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn plan_operations(
    store: &FjallStore,
    w: &Writer,
    spans: &[SpanRef<'_>],
    service_ids: &[ServiceId],
    batch: &mut OwnedWriteBatch,
    staged: &mut Staged,
) -> Result<()> {
    let mut seen: FastSet<Vec<u8>> = hash::set();
    let mut key = Vec::new();
    for (s, &svc) in spans.iter().zip(service_ids) {
        keys::operation_into(&mut key, svc, s.kind().as_otlp() as u8, s.name());
        if w.operations.contains(key.as_slice()) || seen.contains(key.as_slice()) {
            continue;
        }
        if !store.ks.operations.contains_key(&key)? {
            batch.insert(&store.ks.operations, key.clone(), []);
        }
        seen.insert(key.clone());
        staged.operations.push(key.clone());
    }
    Ok(())
}

/// Where each (trace, span) of a write is in its span list.
pub(super) type SpanIndex = FastMap<(TraceId, SpanId), usize>;

/// Splits spans into groups: per trace and service, newest first, cut wherever a span
/// starts more than [`GROUP_SPREAD_NANOS`] before its group's newest span. Also returns
/// the write's distinct traces.
fn plan_groups<'a>(
    spans: &[SpanRef<'a>],
    service_ids: &[ServiceId],
    resource_ids: &[u32],
    seq: u64,
) -> (Members<'a>, Vec<Plan>, Vec<TraceId>) {
    // Number each (trace, service) in order of appearance, count its spans, and lay the
    // spans out by that number in one array (a counting sort), instead of a vector each.
    let mut numbers: FastMap<(TraceId, ServiceId), u32> = hash::map_with_capacity(spans.len());
    let mut counts: Vec<u32> = Vec::new();
    let mut traces: FastSet<TraceId> = hash::set();
    let of: Vec<u32> = spans
        .iter()
        .zip(service_ids)
        .map(|(s, &svc)| {
            let next = counts.len() as u32;
            let n = *numbers.entry((s.trace_id(), svc)).or_insert(next);
            if n == next {
                counts.push(0);
                traces.insert(s.trace_id());
            }
            counts[n as usize] += 1;
            n
        })
        .collect();
    let mut starts = Vec::with_capacity(counts.len() + 1);
    let mut total = 0u32;
    for &c in &counts {
        starts.push(total);
        total += c;
    }
    starts.push(total);
    let mut fill = starts.clone();
    let mut order = vec![0u32; spans.len()];
    for (i, &n) in of.iter().enumerate() {
        order[fill[n as usize] as usize] = i as u32;
        fill[n as usize] += 1;
    }
    let mut plans = Vec::with_capacity(counts.len());
    for n in 0..counts.len() {
        let (from, to) = (starts[n] as usize, starts[n + 1] as usize);
        let group = &mut order[from..to];
        group.sort_unstable_by_key(|&i| {
            let s = spans[i as usize];
            std::cmp::Reverse((s.start_unix_nano(), s.span_id()))
        });
        let first = spans[group[0] as usize];
        let (trace, service) = (first.trace_id(), service_ids[group[0] as usize]);
        let mut current = from;
        let mut latest = first.start_unix_nano();
        for (k, &i) in group.iter().enumerate().skip(1) {
            let start = spans[i as usize].start_unix_nano();
            if latest - start > GROUP_SPREAD_NANOS {
                plans.push(Plan {
                    key: GroupKey {
                        service,
                        latest,
                        trace,
                        seq,
                    },
                    range: current..from + k,
                });
                current = from + k;
                latest = start;
            }
        }
        plans.push(Plan {
            key: GroupKey {
                service,
                latest,
                trace,
                seq,
            },
            range: current..to,
        });
    }
    let members = Members {
        spans: order.iter().map(|&i| spans[i as usize]).collect(),
        resource_ids: order.iter().map(|&i| resource_ids[i as usize]).collect(),
    };
    (members, plans, traces.into_iter().collect())
}
