//! The write path: one atomic, fsynced batch per call.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, PoisonError};

use clew_model::{Resource, Span, SpanId, TraceId};
use fjall::{OwnedWriteBatch, PersistMode};

use super::codec::{self, DecodeError, Strings};
use super::dict::Admission;
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
    resource_ids: HashMap<Vec<u8>, u32>,
    /// `operations` keys known to be stored.
    operations: HashSet<Vec<u8>>,
    admission: Admission,
}

impl Writer {
    pub(super) fn new(seq: u64, next_resource: u32) -> Writer {
        Writer {
            seq,
            next_resource,
            resource_ids: HashMap::new(),
            operations: HashSet::new(),
            admission: Admission::default(),
        }
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

/// One planned group of a write.
struct Plan<'a> {
    key: GroupKey,
    spans: Vec<&'a Span>,
    resource_ids: Vec<u32>,
}

pub(super) fn write(store: &FjallStore, w: &mut Writer, input: &[Span]) -> Result<()> {
    // The contract keeps the last of several copies of one span, even within a call.
    let mut last: HashMap<(TraceId, SpanId), usize> = HashMap::with_capacity(input.len());
    for (i, s) in input.iter().enumerate() {
        last.insert((s.trace_id, s.span_id), i);
    }
    let spans: Vec<&Span> = input
        .iter()
        .enumerate()
        .filter(|(i, s)| last[&(s.trace_id, s.span_id)] == *i)
        .map(|(_, s)| s)
        .collect();

    let seq = w.seq + 1;
    let mut batch = store.db.batch().durability(Some(PersistMode::SyncAll));
    let mut staged = Staged::default();

    let service_ids = plan_services(store, &spans, &mut batch, &mut staged);
    let resource_ids = plan_resources(store, w, &spans, &mut batch, &mut staged)?;
    plan_operations(store, w, &spans, &service_ids, &mut batch, &mut staged)?;
    let plans = plan_groups(&spans, &service_ids, &resource_ids, seq);

    let handled = deps::process(store, &spans, &mut batch)?;
    let mut entries: HashMap<TraceId, TraceEntry> = HashMap::new();
    for (trace, span) in handled {
        entry(&mut entries, trace, seq).marks.push(span);
    }

    {
        let dict = store.read_dict();
        let mut admitted: HashMap<&str, u32> = HashMap::new();
        let next_string = dict.len() as u32;
        for plan in &plans {
            let lookup = |s: &str| dict.id(s).or_else(|| admitted.get(s).copied());
            let mut strings = Strings::new(&lookup);
            let value = codec::encode_group(&plan.spans, &plan.resource_ids, &mut strings);
            let local = strings.local().to_vec();
            // Strings this group had to carry itself may earn a dictionary id for the
            // groups after it.
            for s in w.admission.observe(local, dict.len() + admitted.len()) {
                let id = next_string + admitted.len() as u32;
                batch.insert(&store.ks.strings, id.to_be_bytes(), s);
                admitted.insert(s, id);
                staged.strings.push((s.to_string(), id));
            }
            batch.insert(&store.ks.spans, plan.key.span_key(), value);
            entry(&mut entries, plan.key.trace, seq)
                .groups
                .push(plan.key);
        }
    }
    for e in entries.values() {
        batch.insert(&store.ks.traces, e.key(), e.value());
    }
    batch.insert(&store.ks.meta, META_SEQ, seq.to_be_bytes());

    batch.commit()?;

    w.seq = seq;
    w.next_resource += staged.new_resources;
    apply(store, w, staged);
    tracing::trace!(
        spans = spans.len(),
        groups = plans.len(),
        seq,
        "wrote spans"
    );
    Ok(())
}

fn entry(entries: &mut HashMap<TraceId, TraceEntry>, trace: TraceId, seq: u64) -> &mut TraceEntry {
    entries.entry(trace).or_insert_with(|| TraceEntry {
        trace,
        seq,
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
    spans: &[&Span],
    batch: &mut OwnedWriteBatch,
    staged: &mut Staged,
) -> Vec<ServiceId> {
    let services = store
        .services
        .read()
        .unwrap_or_else(PoisonError::into_inner);
    let mut next = services.names.len() as ServiceId;
    let mut new: HashMap<&str, ServiceId> = HashMap::new();
    spans
        .iter()
        .map(|s| {
            let name = s.service_name();
            if let Some(&id) = services.by_name.get(name).or_else(|| new.get(name)) {
                return id;
            }
            let id = next;
            next += 1;
            new.insert(name, id);
            batch.insert(&store.ks.services, name, id.to_be_bytes());
            staged.services.push((name.to_string(), id));
            id
        })
        .collect()
}

/// The stored resource id of each span's resource, storing new resources.
fn plan_resources(
    store: &FjallStore,
    w: &Writer,
    spans: &[&Span],
    batch: &mut OwnedWriteBatch,
    staged: &mut Staged,
) -> Result<Vec<u32>> {
    // Spans of one OTLP request share their resource by pointer; encoding each
    // distinct pointer once keeps this cheap.
    let mut by_ptr: HashMap<*const Resource, u32> = HashMap::new();
    let mut new: HashMap<Vec<u8>, u32> = HashMap::new();
    let mut out = Vec::with_capacity(spans.len());
    for s in spans {
        let ptr = Arc::as_ptr(&s.resource);
        if let Some(&id) = by_ptr.get(&ptr) {
            out.push(id);
            continue;
        }
        let bytes = codec::encode_resource(&s.resource);
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
                staged.resources.push((bytes, id, Arc::clone(&s.resource)));
                id
            }
        };
        by_ptr.insert(ptr, id);
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
    spans: &[&Span],
    service_ids: &[ServiceId],
    batch: &mut OwnedWriteBatch,
    staged: &mut Staged,
) -> Result<()> {
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    for (s, &svc) in spans.iter().zip(service_ids) {
        let key = keys::operation(svc, s.kind.as_otlp() as u8, &s.name);
        if w.operations.contains(&key) || seen.contains(&key) {
            continue;
        }
        if !store.ks.operations.contains_key(&key)? {
            batch.insert(&store.ks.operations, key.clone(), []);
        }
        seen.insert(key.clone());
        staged.operations.push(key);
    }
    Ok(())
}

/// Splits spans into groups: per trace and service, newest first, cut wherever a span
/// starts more than [`GROUP_SPREAD_NANOS`] before its group's newest span.
fn plan_groups<'a>(
    spans: &[&'a Span],
    service_ids: &[ServiceId],
    resource_ids: &[u32],
    seq: u64,
) -> Vec<Plan<'a>> {
    let mut by_trace: HashMap<(TraceId, ServiceId), Vec<(&'a Span, u32)>> = HashMap::new();
    for ((s, &svc), &res) in spans.iter().zip(service_ids).zip(resource_ids) {
        by_trace
            .entry((s.trace_id, svc))
            .or_default()
            .push((s, res));
    }
    let mut plans = Vec::new();
    for ((trace, service), mut members) in by_trace {
        members.sort_by_key(|(s, _)| std::cmp::Reverse((s.start_unix_nano, s.span_id)));
        let mut current: Option<Plan<'a>> = None;
        for (span, res) in members {
            let fits = current
                .as_ref()
                .is_some_and(|p| p.key.latest - span.start_unix_nano <= GROUP_SPREAD_NANOS);
            if !fits {
                plans.extend(current.take());
                current = Some(Plan {
                    key: GroupKey {
                        service,
                        latest: span.start_unix_nano,
                        trace,
                        seq,
                    },
                    spans: Vec::new(),
                    resource_ids: Vec::new(),
                });
            }
            if let Some(p) = current.as_mut() {
                p.spans.push(span);
                p.resource_ids.push(res);
            }
        }
        plans.extend(current);
    }
    plans
}
