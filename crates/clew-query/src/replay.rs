//! `/api/clew/replay/…`: the replay library's answers for one stored trace (timeline
//! pages, snapshots, signatures, diffs, selections, investigation bundles), for the
//! UI and `clew replay`. See [`crate::native`] for the table of endpoints.

use std::collections::BTreeMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::response::IntoResponse;
use clew_model::{Span, TraceId};
use clew_registry::TraceState;
use clew_replay::bundle::{BundleRequest, Completeness, Workflow, build_bundle};
use clew_replay::{Selector, Timeline, diff_timelines};

use crate::native::NativeError;
use crate::params::{Params, bad_param, parse_limit, parse_tag, parse_trace_id, parse_u64};
use crate::{AppState, Failure};

type NativeResult<T> = Result<T, NativeError>;

/// Events per timeline page when the caller does not say.
const DEFAULT_PAGE_LIMIT: usize = 500;
/// A page is copied into one JSON answer; this keeps a 50k-span trace from being sent
/// (and held in memory twice) in one response.
const MAX_PAGE_LIMIT: usize = 10_000;
/// Stepping through a trace in the UI asks for a snapshot per step; rebuilding the
/// timeline (tree, signatures, checkpoints) each time would make every step cost as
/// much as opening the trace. A handful covers a diff's two traces plus a few tabs.
const CACHED_TIMELINES: usize = 4;

struct CacheEntry {
    trace_id: TraceId,
    fingerprint: u64,
    timeline: Arc<Timeline>,
}

/// Most recently used last.
static CACHE: Mutex<Vec<CacheEntry>> = Mutex::new(Vec::new());

/// Stored spans can still arrive (or be purged) after a timeline was built, so the key
/// covers what changes then: the spans present and how each ended.
fn fingerprint(spans: &[Span]) -> u64 {
    let mut ids: Vec<(u64, u64, u64)> = spans
        .iter()
        .map(|s| {
            (
                u64::from_be_bytes(s.span_id.0),
                s.end_unix_nano,
                s.status.code as u64,
            )
        })
        .collect();
    ids.sort_unstable();
    let mut hasher = DefaultHasher::new();
    ids.hash(&mut hasher);
    hasher.finish()
}

fn cached_timeline(trace_id: TraceId, spans: Vec<Span>) -> Arc<Timeline> {
    let fingerprint = fingerprint(&spans);
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(at) = cache
        .iter()
        .position(|e| e.trace_id == trace_id && e.fingerprint == fingerprint)
    {
        let entry = cache.remove(at);
        let timeline = Arc::clone(&entry.timeline);
        cache.push(entry);
        return timeline;
    }
    // Building can take a while on a big trace; other requests must not wait for it.
    drop(cache);
    let timeline = Arc::new(Timeline::build(spans));
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    cache.retain(|e| e.trace_id != trace_id);
    if cache.len() >= CACHED_TIMELINES {
        cache.remove(0);
    }
    cache.push(CacheEntry {
        trace_id,
        fingerprint,
        timeline: Arc::clone(&timeline),
    });
    timeline
}

fn trace_id_from(path: Result<Path<String>, PathRejection>) -> Result<TraceId, Failure> {
    let Path(raw) = path.map_err(|e| bad_param("trace id", e.body_text()))?;
    parse_trace_id("trace id", &raw)
}

async fn spans_of(state: &AppState, id: TraceId) -> Result<Vec<Span>, Failure> {
    match state.run(move |store| store.trace(id)).await? {
        Some(spans) if !spans.is_empty() => Ok(spans),
        _ => Err(Failure::not_found(format!("trace {id} not found"))),
    }
}

/// Runs `work` on the trace's timeline on a blocking thread: building a timeline and
/// materializing snapshots is CPU work that would stall the async workers.
async fn with_timeline<T, F>(state: &AppState, id: TraceId, work: F) -> Result<T, Failure>
where
    T: Send + 'static,
    F: FnOnce(&Timeline) -> Result<T, Failure> + Send + 'static,
{
    let spans = spans_of(state, id).await?;
    blocking(move || work(&cached_timeline(id, spans))).await
}

async fn blocking<T, F>(work: F) -> Result<T, Failure>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, Failure> + Send + 'static,
{
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(join_error) => {
            tracing::error!(error = %join_error, "replay API: timeline task did not finish");
            Err(Failure::internal(
                "replay computation did not finish".to_string(),
            ))
        }
    }
}

fn json<T: serde::Serialize>(value: &T) -> Result<serde_json::Value, Failure> {
    serde_json::to_value(value)
        .map_err(|e| Failure::internal(format!("cannot serialize the answer: {e}")))
}

/// `GET /api/clew/replay/{id}` and `…/{id}/timeline`: a page of the timeline.
pub(crate) async fn timeline(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    params: Params,
) -> NativeResult<impl IntoResponse> {
    let id = trace_id_from(path)?;
    let offset = match params.get("offset") {
        Some(v) => parse_u64("offset", v)? as usize,
        None => 0,
    };
    let limit = parse_limit("limit", params.get("limit"), DEFAULT_PAGE_LIMIT)?.min(MAX_PAGE_LIMIT);
    let page = with_timeline(&state, id, move |t| json(&t.page(offset, limit))).await?;
    Ok(Json(page))
}

/// Where a snapshot is taken.
enum At {
    Index(usize),
    FirstFault,
    Latest,
}

fn parse_at(value: Option<&str>) -> Result<At, Failure> {
    match value {
        None | Some("latest") => Ok(At::Latest),
        Some("first_fault" | "first-fault") => Ok(At::FirstFault),
        Some(v) => v.parse::<usize>().map(At::Index).map_err(|_| {
            bad_param(
                "at",
                format!("expected an event index, first_fault or latest, got {v:?}"),
            )
        }),
    }
}

/// `GET /api/clew/replay/{id}/snapshot?at=N|first_fault|latest`.
pub(crate) async fn snapshot(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    params: Params,
) -> NativeResult<impl IntoResponse> {
    let id = trace_id_from(path)?;
    let at = parse_at(params.get("at"))?;
    let answer = with_timeline(&state, id, move |t| match at {
        At::Index(index) => t
            .snapshot_at(index)
            .map_err(|e| Failure::bad_request(e.to_string()))
            .and_then(|s| json(&s)),
        At::Latest => t
            .latest()
            .ok_or_else(|| Failure::not_found(format!("trace {id} has no events")))
            .and_then(|s| json(&s)),
        At::FirstFault => t
            .first_fault()
            .ok_or_else(|| {
                Failure::not_found(format!(
                    "trace {id} has no fault (no error status, exception or abnormal exit)"
                ))
            })
            .and_then(|f| json(&f)),
    })
    .await?;
    Ok(Json(answer))
}

/// `GET /api/clew/replay/{id}/signature`.
pub(crate) async fn signature(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> NativeResult<impl IntoResponse> {
    let id = trace_id_from(path)?;
    let answer = with_timeline(&state, id, |t| {
        Ok(serde_json::json!({
            "trace_id": t.trace_id(),
            "trace_signature": t.trace_signature(),
            "timeline_signature": t.timeline_signature(),
            "summary": json(&t.summary())?,
        }))
    })
    .await?;
    Ok(Json(answer))
}

/// `GET /api/clew/replay/diff?a=&b=`: `a` is the expected run, `b` the actual one.
pub(crate) async fn diff(
    State(state): State<AppState>,
    params: Params,
) -> NativeResult<impl IntoResponse> {
    let id = |name: &str| match params.get(name) {
        Some(v) => parse_trace_id(name, v),
        None => Err(bad_param(name, "a trace id is required")),
    };
    let (a, b) = (id("a")?, id("b")?);
    let (spans_a, spans_b) = (spans_of(&state, a).await?, spans_of(&state, b).await?);
    let answer = blocking(move || {
        let (ta, tb) = (cached_timeline(a, spans_a), cached_timeline(b, spans_b));
        json(&diff_timelines(&ta, &tb))
    })
    .await?;
    Ok(Json(answer))
}

/// `GET /api/clew/replay/{id}/select?q=SELECTOR&at=N`.
pub(crate) async fn select(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    params: Params,
) -> NativeResult<impl IntoResponse> {
    let id = trace_id_from(path)?;
    let Some(query) = params.get("q").map(str::to_string) else {
        return Err(bad_param("q", "a selector is required, e.g. span[service=\"ares\"]").into());
    };
    let selector = Selector::parse(&query).map_err(|e| Failure::bad_request(e.render(&query)))?;
    let at = params
        .get("at")
        .map(|v| parse_u64("at", v).map(|n| n as usize))
        .transpose()?;
    let answer = with_timeline(&state, id, move |t| {
        let spans = match at {
            Some(index) => t
                .select_open_at(&selector, index)
                .map_err(|e| Failure::bad_request(e.to_string()))?,
            None => t.select(&selector),
        };
        Ok(serde_json::json!({
            "selector": query,
            "at": at,
            "spans": json(&spans)?,
        }))
    })
    .await?;
    Ok(Json(answer))
}

/// `GET /api/clew/replay/{id}/bundle?workflow=fault|etl&param=key=value…`.
pub(crate) async fn bundle(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    params: Params,
) -> NativeResult<impl IntoResponse> {
    let id = trace_id_from(path)?;
    let workflow: Workflow = params
        .get("workflow")
        .unwrap_or("fault")
        .parse()
        .map_err(|e: clew_replay::bundle::BundleError| bad_param("workflow", e))?;
    let mut bundle_params = BTreeMap::new();
    for value in params.all("param").filter(|v| !v.is_empty()) {
        let (key, value) = parse_tag("param", value, '=')?;
        bundle_params.insert(key, value);
    }
    let spans = spans_of(&state, id).await?;
    // Whether more spans may come is the registry's knowledge, not the trace's.
    let completeness = match state.lifecycle_of(id).await {
        None => Completeness::Unknown,
        Some(record) => match record.state {
            TraceState::Completed => Completeness::Complete,
            TraceState::Errored => Completeness::Errored,
            TraceState::Received | TraceState::InProgress => Completeness::Active,
        },
    };
    let request = BundleRequest {
        workflow,
        params: bundle_params,
        completeness,
    };
    let answer = blocking(move || {
        build_bundle(spans, &request)
            .map_err(|e| Failure::bad_request(e.to_string()))
            .and_then(|b| json(&b))
    })
    .await?;
    Ok(Json(answer))
}
