//! Trace search over the service-and-time ordered `spans` keyspace.
//!
//! A service's groups are walked newest first. A group is keyed by its newest span's
//! start and its other spans started at most [`GROUP_SPREAD_NANOS`] earlier, so:
//! - a range ending at `t` starts the walk at `t + GROUP_SPREAD_NANOS`;
//! - once `limit` traces have matched, no group keyed before the `limit`-th best start
//!   can hold a better match, and the walk stops there.

use std::collections::HashMap;

use clew_model::TraceId;

use super::codec::{self, Header};
use super::keys::{self, GroupKey, ServiceId};
use super::{FjallStore, GROUP_SPREAD_NANOS, corrupt};
use crate::{Result, TraceQuery};

/// What Jaeger's API uses when the caller gives no limit.
pub(crate) const DEFAULT_LIMIT: usize = 100;

pub(super) fn find_traces(store: &FjallStore, q: &TraceQuery) -> Result<Vec<TraceId>> {
    let limit = if q.limit == 0 { DEFAULT_LIMIT } else { q.limit };
    let services: Vec<ServiceId> = match &q.service {
        Some(name) => match store.service_id(name) {
            Some(id) => vec![id],
            None => return Ok(Vec::new()),
        },
        None => (0..store.service_count()).collect(),
    };
    // The best `limit` traces of each service contain the best `limit` overall: a trace
    // ranked by its newest matching span is in the top of the service that span is in.
    let mut best: HashMap<TraceId, u64> = HashMap::new();
    for svc in services {
        for (trace, start) in search_service(store, svc, q, limit)? {
            let e = best.entry(trace).or_insert(start);
            *e = (*e).max(start);
        }
    }
    Ok(top(&best, limit)
        .into_iter()
        .map(|(trace, _)| trace)
        .collect())
}

/// The `limit` best traces, newest first (ties broken by id for a stable order).
fn top(best: &HashMap<TraceId, u64>, limit: usize) -> Vec<(TraceId, u64)> {
    let mut all: Vec<(TraceId, u64)> = best.iter().map(|(t, s)| (*t, *s)).collect();
    all.sort_by_key(|&(trace, start)| std::cmp::Reverse((start, trace)));
    all.truncate(limit);
    all
}

fn header_matches(q: &TraceQuery, h: &Header<'_>) -> bool {
    if q.operation.as_deref().is_some_and(|op| op != h.name)
        || q.span_kind.is_some_and(|k| k != h.kind)
    {
        return false;
    }
    let d = h.duration();
    if q.min_duration_nanos.is_some_and(|min| d < min)
        || q.max_duration_nanos.is_some_and(|max| d > max)
    {
        return false;
    }
    !(q.start_min_unix_nano.is_some_and(|t| h.start < t)
        || q.start_max_unix_nano.is_some_and(|t| h.start > t))
}

/// Per resource id and wanted attribute: `None` if the resource lacks the key, else
/// whether its value matches. Filled as resources turn up.
type ResourceVerdicts = HashMap<u32, Vec<Option<bool>>>;

fn resource_verdicts(
    store: &FjallStore,
    cache: &mut ResourceVerdicts,
    ids: &[u32],
    wanted: &[(String, String)],
) -> Result<()> {
    for &id in ids {
        if cache.contains_key(&id) {
            continue;
        }
        let resource = store.resource(id)?;
        let verdicts = wanted
            .iter()
            .map(|(k, want)| {
                clew_model::find_attribute(&resource.attributes, k).map(|v| v.to_text() == *want)
            })
            .collect();
        cache.insert(id, verdicts);
    }
    Ok(())
}

/// The best `limit` traces for one service, each with its newest matching start.
fn search_service(
    store: &FjallStore,
    svc: ServiceId,
    q: &TraceQuery,
    limit: usize,
) -> Result<Vec<(TraceId, u64)>> {
    let lo = q.start_min_unix_nano.unwrap_or(0);
    let hi = q
        .start_max_unix_nano
        .map_or(u64::MAX, |t| t.saturating_add(GROUP_SPREAD_NANOS));
    if q.start_min_unix_nano
        .zip(q.start_max_unix_nano)
        .is_some_and(|(min, max)| min > max)
    {
        return Ok(Vec::new());
    }
    let lower = keys::service_time(svc, lo).to_vec();
    // Every key of this service keyed at `hi` sorts before this one.
    let mut upper = keys::service_time(svc, hi).to_vec();
    upper.extend_from_slice(&[0xff; 32]);

    let mut best: HashMap<TraceId, u64> = HashMap::new();
    // The `limit`-th best start so far, recomputed only when `best` changed.
    let mut threshold: Option<u64> = None;
    let mut dirty = false;
    let mut verdicts = ResourceVerdicts::new();

    for guard in store.ks.spans.range(lower..=upper).rev() {
        let (key, value) = guard.into_inner()?;
        let group = GroupKey::from_span_key(&key).map_err(|e| corrupt(&key, e))?;
        if dirty && best.len() >= limit {
            threshold = top(&best, limit).last().map(|(_, s)| *s);
            dirty = false;
        }
        if threshold.is_some_and(|t| group.latest < t) {
            break;
        }
        let dict = store.read_dict();
        let view =
            codec::decode_headers(&value, group.latest, &dict).map_err(|e| corrupt(&key, e))?;
        let mut found: Option<u64> = None;
        let header_ok: Vec<bool> = view.headers.iter().map(|h| header_matches(q, h)).collect();
        if header_ok.iter().any(|ok| *ok) {
            let attrs_ok = if q.attributes.is_empty() {
                vec![true; header_ok.len()]
            } else {
                resource_verdicts(store, &mut verdicts, view.resource_ids(), &q.attributes)?;
                view.attributes_match(&q.attributes, |res, i| {
                    verdicts.get(&res).and_then(|v| v[i])
                })
                .map_err(|e| corrupt(&key, e))?
            };
            for ((h, ok), attrs) in view.headers.iter().zip(header_ok).zip(attrs_ok) {
                if ok && attrs {
                    found = found.max(Some(h.start));
                }
            }
        }
        if let Some(start) = found {
            let e = best.entry(group.trace).or_insert(start);
            if start >= *e {
                *e = start;
                dirty = true;
            }
        }
    }
    Ok(top(&best, limit))
}
