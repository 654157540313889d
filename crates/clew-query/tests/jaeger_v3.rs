//! Jaeger's v3 API: OTLP JSON traces, trace summaries, services and operations.

mod common;

use std::sync::Arc;

use axum::http::StatusCode;
use common::*;
use serde_json::{Value, json};

/// Every span of a v3 `result`, flattened out of its resources and scopes.
fn spans(body: &Value) -> Vec<&Value> {
    body["result"]["resourceSpans"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|rs| rs["scopeSpans"].as_array().unwrap())
        .flat_map(|ss| ss["spans"].as_array().unwrap())
        .collect()
}

fn window(w: &World) -> String {
    format!(
        "query.start_time_min={}&query.start_time_max={}",
        enc(&rfc3339(w.t_a - 2 * HOUR)),
        enc(&rfc3339(w.t_a + HOUR)),
    )
}

#[tokio::test]
async fn a_trace_as_otlp_json() {
    let w = world();
    let a = hex_trace(b'a');
    let (status, body) = get(&w.router, &format!("/api/v3/traces/{a}")).await;
    assert_eq!(status, StatusCode::OK);
    let resources = body["result"]["resourceSpans"].as_array().unwrap();
    assert_eq!(resources.len(), 2, "frontend and customer");
    assert_eq!(
        resources[0]["resource"]["attributes"][0],
        json!({"key": "service.name", "value": {"stringValue": "frontend"}})
    );
    let all = spans(&body);
    assert_eq!(all.len(), 3);
    let server = all
        .iter()
        .find(|s| s["spanId"] == hex_span(b'a', 3))
        .unwrap();
    assert_eq!(server["traceId"], a);
    assert_eq!(server["parentSpanId"], hex_span(b'a', 2));
    assert_eq!(server["name"], "GET /customer");
    assert_eq!(server["kind"], 2, "SPAN_KIND_SERVER as an integer");
    assert_eq!(
        server["status"]["code"], 2,
        "STATUS_CODE_ERROR as an integer"
    );
    assert_eq!(server["status"]["message"], "db timeout");
    assert_eq!(server["startTimeUnixNano"], (w.t_a + 12 * MS).to_string());
    assert_eq!(server["endTimeUnixNano"], (w.t_a + 57 * MS).to_string());
    assert_eq!(server["events"][0]["name"], "exception");
    let client = all
        .iter()
        .find(|s| s["spanId"] == hex_span(b'a', 2))
        .unwrap();
    assert_eq!(client["kind"], 3, "SPAN_KIND_CLIENT");

    let (status, body) = get(&w.router, "/api/v3/traces/0123456789abcdef0123456789abcdef").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        json!({"error": {"httpCode": 404, "message": "trace not found"}})
    );
    let (status, body) = get(&w.router, "/api/v3/traces/what").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["httpCode"], 400);
    let (status, body) = get(&w.router, &format!("/api/v3/traces/{a}?startTime=noon")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("'startTime'")
    );
}

#[tokio::test]
async fn find_traces_returns_every_span_of_every_match() {
    let w = world();
    let q = window(&w);
    let (status, body) = get(
        &w.router,
        &format!("/api/v3/traces?{q}&query.service_name=worker-b"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let all = spans(&body);
    assert_eq!(all.len(), 3, "producer and both consumers");
    let kinds: Vec<i64> = all.iter().map(|s| s["kind"].as_i64().unwrap()).collect();
    assert_eq!(kinds, [4, 5, 5], "PRODUCER then two CONSUMERs, by start");
    assert!(all.iter().all(|s| s["traceId"] == hex_trace(b'b')));

    // camelCase spellings, durations and attributes.
    let (_, body) = get(
        &w.router,
        &format!(
            "/api/v3/traces?{q}&query.serviceName=frontend&query.durationMin=60ms&query.attributes={}",
            enc(r#"{"http.method":"GET"}"#)
        ),
    )
    .await;
    let all = spans(&body);
    assert_eq!(all.len(), 3);
    assert!(all.iter().all(|s| s["traceId"] == hex_trace(b'a')));
    let (_, body) = get(
        &w.router,
        &format!("/api/v3/traces?{q}&query.service_name=frontend&query.attributes=http.method:GET"),
    )
    .await;
    let traces: std::collections::BTreeSet<&str> = spans(&body)
        .iter()
        .map(|s| s["traceId"].as_str().unwrap())
        .collect();
    assert_eq!(traces.len(), 2, "A and C");

    let (status, body) = get(
        &w.router,
        &format!("/api/v3/traces?{q}&query.service_name=nobody"),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        json!({"error": {"httpCode": 404, "message": "No traces found"}})
    );
}

#[tokio::test]
async fn find_traces_needs_a_time_window() {
    let w = world();
    let min = enc(&rfc3339(w.t_a - HOUR));
    let (status, body) = get(
        &w.router,
        &format!("/api/v3/traces?query.service_name=frontend&query.start_time_min={min}"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        json!({"error": {"httpCode": 400,
            "message": "query.startTimeMin and query.startTimeMax are required"}})
    );
    let (status, body) = get(
        &w.router,
        &format!(
            "/api/v3/trace-summaries?query.start_time_min={min}&query.start_time_max=1700000000"
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("'query.start_time_max'"), "{message}");
    let (status, body) = get(
        &w.router,
        &format!("/api/v3/traces?{}&query.duration_min=quick", window(&w)),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("'query.duration_min'"), "{message}");
}

#[tokio::test]
async fn trace_summaries() {
    let w = world();
    let q = window(&w);
    let (status, body) = get(
        &w.router,
        &format!("/api/v3/trace-summaries?{q}&query.service_name=frontend"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let summaries = body["summaries"].as_array().unwrap();
    assert_eq!(summaries.len(), 2);
    assert_eq!(
        summaries[0],
        json!({
            "traceId": hex_trace(b'a'),
            "rootServiceName": "frontend",
            "rootOperationName": "GET /dispatch",
            "minStartTimeUnixNano": w.t_a.to_string(),
            "maxEndTimeUnixNano": (w.t_a + 100 * MS).to_string(),
            "spanCount": 3,
            "errorSpanCount": 1,
            "orphanSpanCount": 0,
            "services": [
                {"name": "customer", "spanCount": 1, "errorSpanCount": 1},
                {"name": "frontend", "spanCount": 2, "errorSpanCount": 0},
            ]
        })
    );
    assert_eq!(summaries[1]["traceId"], hex_trace(b'c'));
    assert_eq!(summaries[1]["rootOperationName"], "GET /health");

    let (_, body) = get(
        &w.router,
        &format!("/api/v3/trace-summaries?{q}&query.search_depth=1"),
    )
    .await;
    assert_eq!(body["summaries"].as_array().unwrap().len(), 1);
    assert_eq!(
        body["summaries"][0]["traceId"],
        hex_trace(b'a'),
        "newest first"
    );

    let (status, body) = get(
        &w.router,
        &format!("/api/v3/trace-summaries?{q}&query.service_name=nobody"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"summaries": []}));
}

#[tokio::test]
async fn services_and_operations() {
    let w = world();
    let (status, body) = get(&w.router, "/api/v3/services").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"services": ["customer", "dispatcher", "frontend", "worker-a", "worker-b"]})
    );
    let (_, body) = get(&w.router, "/api/v3/operations?service=dispatcher").await;
    assert_eq!(
        body,
        json!({"operations": [
            {"name": "publish audit", "spanKind": "producer"},
            {"name": "publish orders", "spanKind": "producer"},
        ]})
    );
    let (_, body) = get(
        &w.router,
        "/api/v3/operations?service=frontend&spanKind=client",
    )
    .await;
    assert_eq!(
        body,
        json!({"operations": [{"name": "HTTP GET /customer", "spanKind": "client"}]})
    );
    let (status, body) = get(&w.router, "/api/v3/operations").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["httpCode"], 400);
}

#[tokio::test]
async fn store_failures_are_500s_in_v3_shape() {
    let router = clew_query::router(Arc::new(BrokenStore));
    let (status, body) = get(&router, "/api/v3/services").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body["error"]["httpCode"], 500);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("disk on fire")
    );
}
