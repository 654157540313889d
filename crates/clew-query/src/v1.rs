//! Jaeger's v1 HTTP API (`cmd/jaeger/internal/extension/jaegerquery/internal/http_handler.go`
//! in Jaeger), which Jaeger's UI and Grafana's Jaeger data source call.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use clew_model::TraceId;
use clew_store::TraceQuery;
use serde::Serialize;

use crate::params::{
    Params, bad_param, check_duration_range, now_unix_nanos, parse_duration, parse_limit,
    parse_span_kind, parse_tag, parse_tag_map, parse_trace_id, parse_unix,
};
use crate::search::{DEFAULT_LIMIT, Search};
use crate::v1_model::{self, Trace};
use crate::{AppState, Failure};

const MICROS: u64 = 1_000;
const MILLIS: u64 = 1_000_000;
/// Jaeger's search window when the caller gives no start.
const DEFAULT_SEARCH_LOOKBACK_NANOS: u64 = 2 * 24 * 3600 * 1_000_000_000;
/// Jaeger's dependency window when the caller gives no lookback.
const DEFAULT_DEPENDENCY_LOOKBACK_NANOS: u64 = 24 * 3600 * 1_000_000_000;

/// Jaeger's response envelope. `limit` and `offset` are always 0, as Jaeger sends them.
#[derive(Debug, Serialize)]
struct Envelope<T> {
    data: T,
    total: usize,
    limit: usize,
    offset: usize,
    errors: Option<Vec<ErrorItem>>,
}

#[derive(Debug, Serialize)]
struct ErrorItem {
    code: u16,
    msg: String,
    #[serde(rename = "traceID", skip_serializing_if = "Option::is_none")]
    trace_id: Option<String>,
}

fn ok<T: Serialize>(data: Vec<T>, errors: Option<Vec<ErrorItem>>) -> Json<Envelope<Vec<T>>> {
    Json(Envelope {
        total: data.len(),
        data,
        limit: 0,
        offset: 0,
        errors,
    })
}

/// A failure in Jaeger's envelope: `data` null and the reason in `errors`.
pub(crate) struct V1Error(Failure);

impl From<Failure> for V1Error {
    fn from(f: Failure) -> V1Error {
        V1Error(f)
    }
}

impl IntoResponse for V1Error {
    fn into_response(self) -> Response {
        let body = Envelope::<Option<()>> {
            data: None,
            total: 0,
            limit: 0,
            offset: 0,
            errors: Some(vec![ErrorItem {
                code: self.0.status.as_u16(),
                msg: self.0.message,
                trace_id: None,
            }]),
        };
        (self.0.status, Json(body)).into_response()
    }
}

type V1Result<T> = Result<T, V1Error>;

/// `GET /api/services` → `data: ["svc", …]`
pub(crate) async fn services(State(state): State<AppState>) -> V1Result<impl IntoResponse> {
    let services = state.run(|store| store.services()).await?;
    Ok(ok(services, None))
}

/// `GET /api/services/{service}/operations` → `data: ["op", …]` (names of every kind).
pub(crate) async fn service_operations(
    State(state): State<AppState>,
    service: Result<Path<String>, PathRejection>,
) -> V1Result<impl IntoResponse> {
    let Path(service) = service.map_err(|e| bad_param("service", e.body_text()))?;
    let operations = state.run(move |store| store.operations(&service)).await?;
    let mut names: Vec<String> = operations.into_iter().map(|op| op.name).collect();
    names.dedup();
    Ok(ok(names, None))
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Operation {
    name: String,
    span_kind: &'static str,
}

/// `GET /api/operations?service=&spanKind=` → `data: [{name, spanKind}]`
pub(crate) async fn operations(
    State(state): State<AppState>,
    params: Params,
) -> V1Result<impl IntoResponse> {
    let service = params
        .get("service")
        .ok_or_else(|| Failure::bad_request("parameter 'service' is required"))?
        .to_string();
    let kind = params
        .get("spanKind")
        .map(|k| parse_span_kind("spanKind", k))
        .transpose()?;
    let operations = state.run(move |store| store.operations(&service)).await?;
    let data = operations
        .into_iter()
        .filter(|op| kind.is_none_or(|k| k == op.kind))
        .map(|op| Operation {
            name: op.name,
            span_kind: op.kind.jaeger_name(),
        })
        .collect();
    Ok(ok(data, None))
}

/// `GET /api/traces/{id}` → `data: [trace]`, or 404 when no span of it is stored.
pub(crate) async fn get_trace(
    State(state): State<AppState>,
    trace_id: Result<Path<String>, PathRejection>,
) -> V1Result<impl IntoResponse> {
    let Path(raw) = trace_id.map_err(|e| bad_param("traceID", e.body_text()))?;
    let id = parse_trace_id("traceID", &raw)?;
    let spans = state.run(move |store| store.trace(id)).await?;
    match spans {
        Some(spans) if !spans.is_empty() => Ok(ok(vec![v1_model::trace(spans)], None)),
        _ => Err(Failure::not_found("trace not found").into()),
    }
}

/// `GET /api/traces?…`: a search, or with `traceID=` (repeatable) a fetch of those traces
/// whose missing ones are reported in `errors`.
pub(crate) async fn find_traces(
    State(state): State<AppState>,
    params: Params,
) -> V1Result<impl IntoResponse> {
    let mut ids: Vec<TraceId> = Vec::new();
    for raw in params.all("traceID").filter(|v| !v.is_empty()) {
        let id = parse_trace_id("traceID", raw)?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    if !ids.is_empty() {
        let found = state
            .run(move |store| {
                ids.into_iter()
                    .map(|id| store.trace(id).map(|spans| (id, spans)))
                    .collect::<clew_store::Result<Vec<_>>>()
            })
            .await?;
        let mut traces = Vec::new();
        let mut missing = Vec::new();
        for (id, spans) in found {
            match spans {
                Some(spans) if !spans.is_empty() => traces.push(v1_model::trace(spans)),
                _ => missing.push(ErrorItem {
                    code: 404,
                    msg: "trace not found".to_string(),
                    trace_id: Some(id.to_string()),
                }),
            }
        }
        let errors = (!missing.is_empty()).then_some(missing);
        return Ok(ok(traces, errors));
    }
    let search = search_from(&params, now_unix_nanos())?;
    let traces = state.run(move |store| search.run(store)).await?;
    let data: Vec<Trace> = traces.into_iter().map(v1_model::trace).collect();
    Ok(ok(data, None))
}

/// Reads Jaeger's search parameters (see `parseTraceQueryParams` in Jaeger).
fn search_from(params: &Params, now: u64) -> Result<Search, Failure> {
    let end = match params.get("end") {
        Some(v) => parse_unix("end", v, MICROS)?,
        None => now,
    };
    let start = match (params.get("start"), params.get("lookback")) {
        (Some(v), _) => parse_unix("start", v, MICROS)?,
        // The UI sends `lookback=custom` alongside an explicit start.
        (None, Some(lookback)) if lookback != "custom" => {
            end.saturating_sub(parse_duration("lookback", lookback)?)
        }
        _ => now.saturating_sub(DEFAULT_SEARCH_LOOKBACK_NANOS),
    };
    let min = params
        .get("minDuration")
        .map(|v| parse_duration("minDuration", v))
        .transpose()?;
    let max = params
        .get("maxDuration")
        .map(|v| parse_duration("maxDuration", v))
        .transpose()?;
    check_duration_range(min, max, "minDuration", "maxDuration")?;
    let mut tags = Vec::new();
    for tag in params.all("tag").filter(|v| !v.is_empty()) {
        tags.push(parse_tag("tag", tag, ':')?);
    }
    for map in params.all("tags").filter(|v| !v.is_empty()) {
        tags.extend(parse_tag_map("tags", map)?);
    }
    let query = TraceQuery {
        service: params.get("service").map(str::to_string),
        operation: params.get("operation").map(str::to_string),
        span_kind: params
            .get("spanKind")
            .map(|k| parse_span_kind("spanKind", k))
            .transpose()?,
        attributes: Vec::new(),
        min_duration_nanos: min,
        max_duration_nanos: max,
        start_min_unix_nano: Some(start),
        start_max_unix_nano: Some(end),
        limit: parse_limit("limit", params.get("limit"), DEFAULT_LIMIT)?,
    };
    Ok(Search::new(query, tags))
}

#[derive(Debug, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
struct DependencyLink {
    parent: String,
    child: String,
    call_count: u64,
}

/// `GET /api/dependencies?endTs=<ms>&lookback=<ms>[&service=]` → `data: [{parent, child,
/// callCount}]`, one link per service pair (messaging channels summed; the native API
/// keeps them apart).
pub(crate) async fn dependencies(
    State(state): State<AppState>,
    params: Params,
) -> V1Result<impl IntoResponse> {
    let end = match params.get("endTs") {
        Some(v) => parse_unix("endTs", v, MILLIS)?,
        None => now_unix_nanos(),
    };
    let lookback = match params.get("lookback") {
        Some(v) => parse_unix("lookback", v, MILLIS)?,
        None => DEFAULT_DEPENDENCY_LOOKBACK_NANOS,
    };
    let service = params.get("service").map(str::to_string);
    let start = end.saturating_sub(lookback);
    let edges = state
        .run(move |store| store.dependencies(start, end))
        .await?;
    let mut links: BTreeMap<(String, String), u64> = BTreeMap::new();
    for edge in edges {
        if service
            .as_deref()
            .is_some_and(|s| s != edge.parent && s != edge.child)
        {
            continue;
        }
        *links.entry((edge.parent, edge.child)).or_default() += edge.call_count;
    }
    let data = links
        .into_iter()
        .map(|((parent, child), call_count)| DependencyLink {
            parent,
            child,
            call_count,
        })
        .collect();
    Ok(ok(data, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000_000_000_000;

    #[test]
    fn search_window_defaults_and_lookback() {
        let s = search_from(&Params::from_pairs(&[]), NOW).unwrap();
        assert_eq!(s.query.start_max_unix_nano, Some(NOW));
        assert_eq!(
            s.query.start_min_unix_nano,
            Some(NOW - DEFAULT_SEARCH_LOOKBACK_NANOS)
        );
        assert_eq!(s.query.limit, 100);

        let s = search_from(&Params::from_pairs(&[("lookback", "1h")]), NOW).unwrap();
        assert_eq!(s.query.start_min_unix_nano, Some(NOW - 3_600_000_000_000));
        let s = search_from(&Params::from_pairs(&[("lookback", "2d")]), NOW).unwrap();
        assert_eq!(
            s.query.start_min_unix_nano,
            Some(NOW - 2 * 86_400_000_000_000)
        );
        let s = search_from(
            &Params::from_pairs(&[("start", "5"), ("end", "9"), ("lookback", "custom")]),
            NOW,
        )
        .unwrap();
        assert_eq!(s.query.start_min_unix_nano, Some(5_000));
        assert_eq!(s.query.start_max_unix_nano, Some(9_000));
    }

    #[test]
    fn search_parameters_are_checked_and_named() {
        let message = |pairs: &[(&str, &str)]| {
            search_from(&Params::from_pairs(pairs), NOW)
                .unwrap_err()
                .message
        };
        assert!(message(&[("limit", "ten")]).starts_with("unable to parse param 'limit': "));
        assert!(message(&[("start", "yesterday")]).starts_with("unable to parse param 'start': "));
        assert!(
            message(&[("minDuration", "fast")])
                .starts_with("unable to parse param 'minDuration': ")
        );
        assert!(message(&[("tag", "novalue")]).starts_with("unable to parse param 'tag': "));
        assert!(message(&[("tags", "[1]")]).starts_with("unable to parse param 'tags': "));
        assert_eq!(
            message(&[("minDuration", "2s"), ("maxDuration", "1s")]),
            "'maxDuration' should be greater than 'minDuration'"
        );
    }
}
