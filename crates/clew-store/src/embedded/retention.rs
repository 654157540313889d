//! Retention: deleting whole traces once their newest span is older than a cutoff.

use std::collections::HashSet;

use clew_model::{SpanId, TraceId};

use super::keys::{self, GroupKey};
use super::{FjallStore, codec, corrupt, deps};
use crate::Result;

/// Traces deleted per committed batch, so a large purge neither holds everything in
/// memory nor builds one huge batch.
const TRACES_PER_BATCH: usize = 256;

pub(super) fn purge(store: &FjallStore, cutoff: u64) -> Result<u64> {
    let services = store.service_count();
    // Traces already examined: deleted, or kept because a newer span exists.
    let mut decided: HashSet<TraceId> = HashSet::new();
    let mut spans_deleted = 0u64;
    let mut traces_deleted = 0u64;

    for svc in 0..services {
        let end = keys::service_time(svc, cutoff).to_vec();
        let mut from = keys::service_time(svc, 0).to_vec();
        loop {
            let mut candidates = Vec::new();
            let mut exhausted = true;
            for guard in store.ks.spans.range(from.clone()..end.clone()) {
                let key = guard.key()?;
                let group = GroupKey::from_span_key(&key).map_err(|e| corrupt(&key, e))?;
                from = key.to_vec();
                from.push(0);
                if decided.insert(group.trace) {
                    candidates.push(group.trace);
                    if candidates.len() >= TRACES_PER_BATCH {
                        exhausted = false;
                        break;
                    }
                }
            }
            // The writer's lock is held per batch, not for the whole purge, so ingestion
            // keeps flowing while a large backlog is deleted.
            let _writer = store.lock_writer();
            let mut batch = store.db.batch();
            for trace in candidates {
                let entries = store.trace_entries(trace)?;
                // A trace goes only when all of it is old: its newest span decides.
                if entries
                    .iter()
                    .flat_map(|e| &e.groups)
                    .any(|g| g.latest >= cutoff)
                {
                    continue;
                }
                let mut ids: HashSet<SpanId> = HashSet::new();
                for entry in &entries {
                    for group in &entry.groups {
                        let span_key = group.span_key();
                        if let Some(bytes) = store.ks.spans.get(&span_key)? {
                            let dict = store.read_dict();
                            let view = codec::decode_headers(&bytes, group.latest, &dict)
                                .map_err(|e| corrupt(&span_key, e))?;
                            ids.extend(view.headers.iter().map(|h| h.span_id));
                        }
                        batch.remove(&store.ks.spans, span_key);
                    }
                    batch.remove(&store.ks.traces, entry.key());
                }
                for guard in store.ks.pending.prefix(trace.0) {
                    batch.remove(&store.ks.pending, guard.key()?);
                }
                spans_deleted += ids.len() as u64;
                traces_deleted += 1;
            }
            batch.commit()?;
            if exhausted {
                break;
            }
        }
    }
    {
        let mut writer = store.lock_writer();
        // Counters of the purged hours go; the writer must read what remains afresh.
        writer.forget_counters();
        deps::purge(store, cutoff)?;
    }
    // The server logs what a purge removed; an empty purge is routine.
    tracing::debug!(
        cutoff_unix_nano = cutoff,
        traces = traces_deleted,
        spans = spans_deleted,
        "purged old traces"
    );
    Ok(spans_deleted)
}
