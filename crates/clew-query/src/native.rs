//! clew's native query API, which the `clew` CLI calls. Plain JSON in the model's own
//! serde form (ids as lowercase hex, times as Unix nanoseconds).
//!
//! | request | answer |
//! |---|---|
//! | `GET /api/clew/traces/{id}` | `{"spans":[Span…]}`, ordered by start |
//! | `GET /api/clew/search?…` | `{"traces":[TraceSummary…]}`, newest first |
//! | `GET /api/clew/services` | `{"services":[{"name","operations":[{"name","kind"}…]}…]}` |
//! | `GET /api/clew/dependencies?start=&end=` | `{"dependencies":[{"parent","child","channel","call_count","error_count"}…]}` |
//! | `GET /api/clew/lifecycle/active?limit=&after=` | `{"traces":[{"id","created_at_ms"}…],"next"}`, oldest first |
//! | `GET /api/clew/lifecycle/orphans?limit=` | `{"traces":[TraceRecord…]}`, newest first |
//! | `POST /api/clew/lifecycle/sweep?threshold=` | the sweep's report (`orphaned`, `expired`, …) |
//! | `GET /api/clew/replay/{id}?offset=&limit=` (also `…/{id}/timeline`) | `TimelinePage`: `{"summary","offset","events":[TimelineEvent…]}`, 500 events unless `limit` says (at most 10 000) |
//! | `GET /api/clew/replay/{id}/snapshot?at=N` | `Snapshot` just after event N; 400 past the end |
//! | `GET /api/clew/replay/{id}/snapshot?at=first_fault` | `FirstFault` (`fault`, `snapshot`, `span_path`, `causal_chain`); 404 when the trace has no fault |
//! | `GET /api/clew/replay/{id}/snapshot?at=latest` | `Snapshot` after the last event (also without `at`) |
//! | `GET /api/clew/replay/{id}/signature` | `{"trace_id","trace_signature","timeline_signature","summary"}` |
//! | `GET /api/clew/replay/diff?a=&b=` | `TraceDiff` of `b` (actual) against `a` (expected) |
//! | `GET /api/clew/replay/{id}/select?q=&at=` | `{"selector","at","spans":[SpanRef…]}`: matching spans (open just after event `at`, when given); 400 with the selector error |
//! | `GET /api/clew/replay/{id}/bundle?workflow=fault\|etl&param=k=v…` | the investigation `Bundle`, completeness from the lifecycle registry |
//!
//! With a lifecycle registry, `traces/{id}` also answers `"lifecycle"` (the registry's
//! `TraceRecord`: `state`, `created_at_ms`, `finished_at_ms`, `orphaned_at_ms`, `error`,
//! `metadata`, or `null` when the registry does not know the trace), every search result
//! carries the same `lifecycle` field, and search takes `state=` (`active`,
//! `in_progress`, `completed`, `errored`, `orphaned`).
//!
//! `Span`, `TraceSummary`, `Operation` and `Dependency` are `clew_model::Span` and
//! `clew_store::{TraceSummary, Operation, Dependency}` as serde writes them, so a client
//! deserializes them into the same types.
//!
//! Search parameters, all optional and combined (one span must meet them all):
//! `service`, `operation`, `kind` (`server`, `CLIENT`, `SPAN_KIND_PRODUCER`, …),
//! `attr=key=value` (repeatable; also matches the derived tags `error=true`,
//! `otel.status_code=ERROR`, …), `min_duration` / `max_duration` (`1.5ms`, `2s`,
//! `1m30s`, `2days`), `start` / `end` (RFC 3339, or an integer of Unix nanoseconds;
//! default the last two days) and `limit` (default 20).
//!
//! Dependencies cover spans that started between `start` and `end` (same syntax;
//! default the last 24 hours), with PRODUCER→CONSUMER edges kept per channel.
//!
//! The replay types are `clew_replay`'s (`TimelinePage`, `Snapshot`, `FirstFault`,
//! `TraceDiff`, `SpanRef`, `bundle::Bundle`) as serde writes them.
//!
//! Errors are `{"error":"message"}` with status 400 (a bad parameter, named in the
//! message), 404 (no such trace, or no such endpoint) or 500 (the store failed).

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use clew_store::{TraceQuery, TraceSummary};
use serde::Serialize;

use crate::params::{
    Params, bad_param, check_duration_range, now_unix_nanos, parse_duration, parse_limit,
    parse_span_kind, parse_tag, parse_time_rfc3339_or_nanos, parse_trace_id,
};
use crate::search::Search;
use crate::{AppState, Failure};

/// How many traces a search returns when the caller does not say.
pub const DEFAULT_SEARCH_LIMIT: usize = 20;
const DEFAULT_SEARCH_WINDOW_NANOS: u64 = 2 * 24 * 3600 * 1_000_000_000;
const DEFAULT_DEPENDENCY_WINDOW_NANOS: u64 = 24 * 3600 * 1_000_000_000;

/// A failure as `{"error":"message"}`.
pub(crate) struct NativeError(Failure);

impl From<Failure> for NativeError {
    fn from(f: Failure) -> NativeError {
        NativeError(f)
    }
}

impl IntoResponse for NativeError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.0.message });
        (self.0.status, Json(body)).into_response()
    }
}

type NativeResult<T> = Result<T, NativeError>;

pub(crate) async fn get_trace(
    State(state): State<AppState>,
    trace_id: Result<Path<String>, PathRejection>,
) -> NativeResult<impl IntoResponse> {
    let Path(raw) = trace_id.map_err(|e| bad_param("trace id", e.body_text()))?;
    let id = parse_trace_id("trace id", &raw)?;
    match state.run(move |store| store.trace(id)).await? {
        Some(mut spans) if !spans.is_empty() => {
            spans.sort_by_key(|s| (s.start_unix_nano, s.span_id.0));
            let lifecycle = state.lifecycle_of(id).await;
            Ok(Json(
                serde_json::json!({ "spans": spans, "lifecycle": lifecycle }),
            ))
        }
        _ => Err(Failure::not_found(format!("trace {id} not found")).into()),
    }
}

pub(crate) async fn search(
    State(state): State<AppState>,
    params: Params,
) -> NativeResult<impl IntoResponse> {
    let search = search_from(&params, now_unix_nanos())?;
    let wanted_state = params
        .get("state")
        .map(|s| crate::lifecycle::StateFilter::parse("state", s))
        .transpose()?;
    let traces = state.run(move |store| search.run(store)).await?;
    let mut summaries = Vec::with_capacity(traces.len());
    for summary in traces.iter().filter_map(|t| TraceSummary::of(t)) {
        let lifecycle = state.lifecycle_of(summary.trace_id).await;
        if wanted_state.is_some_and(|w| !w.matches(lifecycle.as_ref())) {
            continue;
        }
        summaries.push(SummaryWithLifecycle { summary, lifecycle });
    }
    Ok(Json(serde_json::json!({ "traces": summaries })))
}

fn search_from(params: &Params, now: u64) -> Result<Search, Failure> {
    let time = |name: &str| {
        params
            .get(name)
            .map(|v| parse_time_rfc3339_or_nanos(name, v))
            .transpose()
    };
    let end = time("end")?.unwrap_or(now);
    let start = time("start")?.unwrap_or(end.saturating_sub(DEFAULT_SEARCH_WINDOW_NANOS));
    let duration = |name: &str| {
        params
            .get(name)
            .map(|v| parse_duration(name, v))
            .transpose()
    };
    let min = duration("min_duration")?;
    let max = duration("max_duration")?;
    check_duration_range(min, max, "min_duration", "max_duration")?;
    let mut tags = Vec::new();
    for attr in params.all("attr").filter(|v| !v.is_empty()) {
        tags.push(parse_tag("attr", attr, '=')?);
    }
    let query = TraceQuery {
        service: params.get("service").map(str::to_string),
        operation: params.get("operation").map(str::to_string),
        span_kind: params
            .get("kind")
            .map(|k| parse_span_kind("kind", k))
            .transpose()?,
        attributes: Vec::new(),
        min_duration_nanos: min,
        max_duration_nanos: max,
        start_min_unix_nano: Some(start),
        start_max_unix_nano: Some(end),
        limit: parse_limit("limit", params.get("limit"), DEFAULT_SEARCH_LIMIT)?,
    };
    Ok(Search::new(query, tags))
}

/// A search result: the trace summary and, when the server keeps a registry, the
/// trace's lifecycle entry.
#[derive(Serialize)]
struct SummaryWithLifecycle {
    #[serde(flatten)]
    summary: TraceSummary,
    lifecycle: Option<clew_registry::TraceRecord>,
}

#[derive(Serialize)]
struct Service {
    name: String,
    operations: Vec<clew_store::Operation>,
}

pub(crate) async fn services(State(state): State<AppState>) -> NativeResult<impl IntoResponse> {
    let services = state
        .run(|store| {
            store
                .services()?
                .into_iter()
                .map(|name| {
                    let operations = store.operations(&name)?;
                    Ok(Service { name, operations })
                })
                .collect::<clew_store::Result<Vec<_>>>()
        })
        .await?;
    Ok(Json(serde_json::json!({ "services": services })))
}

pub(crate) async fn dependencies(
    State(state): State<AppState>,
    params: Params,
) -> NativeResult<impl IntoResponse> {
    let time = |name: &str| {
        params
            .get(name)
            .map(|v| parse_time_rfc3339_or_nanos(name, v))
            .transpose()
    };
    let end = time("end")?.unwrap_or_else(now_unix_nanos);
    let start = time("start")?.unwrap_or(end.saturating_sub(DEFAULT_DEPENDENCY_WINDOW_NANOS));
    if start > end {
        return Err(Failure::bad_request("'start' must not be after 'end'").into());
    }
    let dependencies = state
        .run(move |store| store.dependencies(start, end))
        .await?;
    Ok(Json(serde_json::json!({ "dependencies": dependencies })))
}

/// Any other `/api/…` path.
pub(crate) async fn no_such_endpoint(uri: Uri) -> NativeError {
    NativeError(Failure::not_found(format!(
        "no API endpoint at {}",
        uri.path()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_syntaxes() {
        let now = 1_700_000_000_000_000_000;
        let s = search_from(&Params::from_pairs(&[]), now).unwrap();
        assert_eq!(s.query.limit, DEFAULT_SEARCH_LIMIT);
        assert_eq!(
            s.query.start_min_unix_nano,
            Some(now - DEFAULT_SEARCH_WINDOW_NANOS)
        );
        let s = search_from(
            &Params::from_pairs(&[
                ("start", "2023-11-14T22:13:20Z"),
                ("end", "1700000001000000000"),
                ("kind", "producer"),
                ("attr", "peer.service=redis"),
                ("attr", "url=http://x/?a=b"),
                ("min_duration", "1s500ms"),
            ]),
            now,
        )
        .unwrap();
        assert_eq!(s.query.start_min_unix_nano, Some(now));
        assert_eq!(s.query.start_max_unix_nano, Some(now + 1_000_000_000));
        assert_eq!(s.query.span_kind, Some(clew_model::SpanKind::Producer));
        assert_eq!(s.query.min_duration_nanos, Some(1_500_000_000));
        assert_eq!(
            s.query.attributes[1],
            ("url".to_string(), "http://x/?a=b".to_string())
        );
        let e = search_from(&Params::from_pairs(&[("kind", "sideways")]), now).unwrap_err();
        assert_eq!(
            e.message,
            "unable to parse param 'kind': unsupported span kind: 'sideways'"
        );
    }
}
