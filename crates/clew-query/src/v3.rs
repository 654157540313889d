//! Jaeger's v3 HTTP API (`jaeger-idl/proto/api_v3/query_service.proto`, served by
//! Jaeger's `apiv3/http_gateway.go`): traces as OTLP JSON, in proto3 JSON's camelCase
//! with 64-bit integers as strings, as Jaeger's gateway marshals them.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use clew_model::Span;
use clew_otlp::proto::trace::v1::ResourceSpans;
use clew_store::{TraceQuery, TraceSummary};
use serde::Serialize;

use crate::params::{
    Params, bad_param, check_duration_range, parse_duration, parse_limit, parse_span_kind,
    parse_tag, parse_tag_map, parse_trace_id, rfc3339_nanos,
};
use crate::search::{DEFAULT_LIMIT, Search};
use crate::{AppState, Failure};

/// A failure as Jaeger's gRPC gateway reports it: `{"error":{"httpCode","message"}}`.
pub(crate) struct V3Error(Failure);

impl From<Failure> for V3Error {
    fn from(f: Failure) -> V3Error {
        V3Error(f)
    }
}

impl IntoResponse for V3Error {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": { "httpCode": self.0.status.as_u16(), "message": self.0.message }
        });
        (self.0.status, Json(body)).into_response()
    }
}

type V3Result<T> = Result<T, V3Error>;

#[derive(Serialize)]
struct TracesResponse {
    result: TracesData,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TracesData {
    resource_spans: Vec<ResourceSpans>,
}

fn traces_response(traces: Vec<Vec<Span>>) -> Json<TracesResponse> {
    let resource_spans = traces
        .into_iter()
        .flat_map(|mut spans| {
            spans.sort_by_key(|s| (s.start_unix_nano, s.span_id.0));
            clew_otlp::resource_spans(&spans)
        })
        .collect();
    Json(TracesResponse {
        result: TracesData { resource_spans },
    })
}

/// `GET /api/v3/traces/{trace_id}[?startTime=&endTime=]` → `{"result":{"resourceSpans":[…]}}`
pub(crate) async fn get_trace(
    State(state): State<AppState>,
    trace_id: Result<Path<String>, PathRejection>,
    params: Params,
) -> V3Result<impl IntoResponse> {
    let Path(raw) = trace_id.map_err(|e| bad_param("trace_id", e.body_text()))?;
    let id = parse_trace_id("trace_id", &raw)?;
    // The time hints only narrow Jaeger's storage scans; a trace here is one lookup, but
    // a malformed hint is still the caller's mistake to hear about.
    for names in [["startTime", "start_time"], ["endTime", "end_time"]] {
        if let Some((name, value)) = params.first_of(&names) {
            rfc3339_nanos(value).map_err(|e| bad_param(name, e))?;
        }
    }
    match state.run(move |store| store.trace(id)).await? {
        Some(spans) if !spans.is_empty() => Ok(traces_response(vec![spans])),
        _ => Err(Failure::not_found("trace not found").into()),
    }
}

/// `GET /api/v3/traces?query.…` → every span of every matching trace, 404 when none match.
pub(crate) async fn find_traces(
    State(state): State<AppState>,
    params: Params,
) -> V3Result<impl IntoResponse> {
    let search = search_from(&params)?;
    let traces = state.run(move |store| search.run(store)).await?;
    if traces.is_empty() {
        return Err(Failure::not_found("No traces found").into());
    }
    Ok(traces_response(traces))
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Summary {
    trace_id: String,
    root_service_name: String,
    root_operation_name: String,
    /// A string, as proto3 JSON writes 64-bit integers (JavaScript would round them).
    min_start_time_unix_nano: String,
    max_end_time_unix_nano: String,
    span_count: usize,
    error_span_count: usize,
    orphan_span_count: usize,
    services: Vec<ServiceSummary>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ServiceSummary {
    name: String,
    span_count: usize,
    error_span_count: usize,
}

fn summary(spans: &[Span]) -> Option<Summary> {
    let s = TraceSummary::of(spans)?;
    let mut services: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for span in spans {
        let entry = services.entry(span.service_name()).or_default();
        entry.0 += 1;
        entry.1 += usize::from(span.is_error());
    }
    Some(Summary {
        trace_id: s.trace_id.to_string(),
        root_service_name: s.root_service,
        root_operation_name: s.root_operation,
        min_start_time_unix_nano: s.start_unix_nano.to_string(),
        max_end_time_unix_nano: s.end_unix_nano.to_string(),
        span_count: s.span_count,
        error_span_count: s.error_count,
        orphan_span_count: s.orphan_count,
        services: services
            .into_iter()
            .map(|(name, (span_count, error_span_count))| ServiceSummary {
                name: name.to_string(),
                span_count,
                error_span_count,
            })
            .collect(),
    })
}

/// `GET /api/v3/trace-summaries?query.…` → `{"summaries":[…]}`, newest first; an empty
/// list (not a 404) when nothing matches, so a result page can say so.
pub(crate) async fn trace_summaries(
    State(state): State<AppState>,
    params: Params,
) -> V3Result<impl IntoResponse> {
    let search = search_from(&params)?;
    let traces = state.run(move |store| search.run(store)).await?;
    let summaries: Vec<Summary> = traces.iter().filter_map(|t| summary(t)).collect();
    Ok(Json(serde_json::json!({ "summaries": summaries })))
}

/// `GET /api/v3/services` → `{"services":[…]}`
pub(crate) async fn services(State(state): State<AppState>) -> V3Result<impl IntoResponse> {
    let services = state.run(|store| store.services()).await?;
    Ok(Json(serde_json::json!({ "services": services })))
}

/// `GET /api/v3/operations?service=&spanKind=` → `{"operations":[{name, spanKind}]}`
pub(crate) async fn operations(
    State(state): State<AppState>,
    params: Params,
) -> V3Result<impl IntoResponse> {
    let service = params
        .get("service")
        .ok_or_else(|| Failure::bad_request("parameter 'service' is required"))?
        .to_string();
    let kind = params
        .first_of(&["spanKind", "span_kind"])
        .map(|(name, value)| parse_span_kind(name, value))
        .transpose()?;
    let operations = state.run(move |store| store.operations(&service)).await?;
    let operations: Vec<serde_json::Value> = operations
        .into_iter()
        .filter(|op| kind.is_none_or(|k| k == op.kind))
        .map(|op| {
            // Jaeger's gateway reports a kindless operation as internal.
            let kind = match op.kind.jaeger_name() {
                "" => "internal",
                name => name,
            };
            serde_json::json!({ "name": op.name, "spanKind": kind })
        })
        .collect();
    Ok(Json(serde_json::json!({ "operations": operations })))
}

/// Reads `query.*` parameters, canonical camelCase first, then the snake_case aliases
/// (see `parseFindTracesQuery` in Jaeger).
fn search_from(params: &Params) -> Result<Search, Failure> {
    let min_names = ["query.startTimeMin", "query.start_time_min"];
    let max_names = ["query.startTimeMax", "query.start_time_max"];
    let (Some((min_name, min)), Some((max_name, max))) =
        (params.first_of(&min_names), params.first_of(&max_names))
    else {
        return Err(Failure::bad_request(
            "query.startTimeMin and query.startTimeMax are required",
        ));
    };
    let start_min = rfc3339_nanos(min).map_err(|e| bad_param(min_name, e))?;
    let start_max = rfc3339_nanos(max).map_err(|e| bad_param(max_name, e))?;
    if start_min >= start_max {
        return Err(Failure::bad_request(
            "query.startTimeMin must be before query.startTimeMax",
        ));
    }
    let duration = |names: [&str; 2]| {
        params
            .first_of(&names)
            .map(|(name, value)| parse_duration(name, value))
            .transpose()
    };
    let min_duration = duration(["query.durationMin", "query.duration_min"])?;
    let max_duration = duration(["query.durationMax", "query.duration_max"])?;
    check_duration_range(
        min_duration,
        max_duration,
        "query.durationMin",
        "query.durationMax",
    )?;
    let depth = params.first_of(&[
        "query.searchDepth",
        "query.search_depth",
        "query.num_traces",
    ]);
    let limit = match depth {
        Some((name, value)) => parse_limit(name, Some(value), DEFAULT_LIMIT)?,
        None => DEFAULT_LIMIT,
    };
    let mut tags = Vec::new();
    for value in params.all("query.attributes").filter(|v| !v.is_empty()) {
        if value.trim_start().starts_with('{') {
            tags.extend(parse_tag_map("query.attributes", value)?);
        } else {
            tags.push(parse_tag("query.attributes", value, ':')?);
        }
    }
    let name = |names: [&str; 2]| params.first_of(&names).map(|(_, v)| v.to_string());
    let query = TraceQuery {
        service: name(["query.serviceName", "query.service_name"]),
        operation: name(["query.operationName", "query.operation_name"]),
        span_kind: None,
        attributes: Vec::new(),
        min_duration_nanos: min_duration,
        max_duration_nanos: max_duration,
        start_min_unix_nano: Some(start_min),
        start_max_unix_nano: Some(start_max),
        limit,
    };
    Ok(Search::new(query, tags))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window() -> Vec<(&'static str, &'static str)> {
        vec![
            ("query.start_time_min", "2023-11-14T22:00:00Z"),
            ("query.start_time_max", "2023-11-14T23:00:00.000000001Z"),
        ]
    }

    #[test]
    fn both_time_bounds_are_required() {
        let e = search_from(&Params::from_pairs(&window()[..1])).unwrap_err();
        assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
        assert!(e.message.contains("are required"), "{}", e.message);
    }

    #[test]
    fn camel_and_snake_case_spellings() {
        let mut pairs = window();
        pairs.extend([
            ("query.serviceName", "ares"),
            ("query.operation_name", "GET /"),
            ("query.durationMin", "1.5ms"),
            ("query.search_depth", "7"),
            ("query.attributes", "peer.service:redis"),
            (
                "query.attributes",
                r#"{"http.status_code":"200","error":"true"}"#,
            ),
        ]);
        let s = search_from(&Params::from_pairs(&pairs)).unwrap();
        assert_eq!(s.query.service.as_deref(), Some("ares"));
        assert_eq!(s.query.operation.as_deref(), Some("GET /"));
        assert_eq!(s.query.min_duration_nanos, Some(1_500_000));
        assert_eq!(s.query.limit, 7);
        assert_eq!(s.query.start_max_unix_nano, Some(1_700_002_800_000_000_001));
        // `error` is derived from the status, so it stays out of the store query.
        assert_eq!(
            s.query.attributes,
            vec![
                ("peer.service".to_string(), "redis".to_string()),
                ("http.status_code".to_string(), "200".to_string()),
            ]
        );
    }

    #[test]
    fn malformed_values_name_the_parameter() {
        let mut pairs = window();
        pairs.push(("query.duration_max", "soon"));
        let e = search_from(&Params::from_pairs(&pairs)).unwrap_err();
        assert!(e.message.contains("'query.duration_max'"), "{}", e.message);
        let e = search_from(&Params::from_pairs(&[
            ("query.startTimeMin", "2023-11-14T23:00:00Z"),
            ("query.startTimeMax", "2023-11-14T22:00:00Z"),
        ]))
        .unwrap_err();
        assert!(e.message.contains("must be before"), "{}", e.message);
        let e = search_from(&Params::from_pairs(&[
            ("query.startTimeMin", "last week"),
            ("query.startTimeMax", "2023-11-14T22:00:00Z"),
        ]))
        .unwrap_err();
        assert!(e.message.contains("'query.startTimeMin'"), "{}", e.message);
    }
}
