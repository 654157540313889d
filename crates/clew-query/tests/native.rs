//! clew's native API, as the CLI reads it: model types in their serde form.

mod common;

use std::sync::Arc;

use axum::http::StatusCode;
use clew_model::{Span, SpanKind};
use clew_store::{Dependency, Operation, TraceSummary};
use common::*;
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct TraceResponse {
    spans: Vec<Span>,
}

#[derive(Deserialize)]
struct SearchResponse {
    traces: Vec<TraceSummary>,
}

#[derive(Deserialize)]
struct ServiceEntry {
    name: String,
    operations: Vec<Operation>,
}

#[derive(Deserialize)]
struct ServicesResponse {
    services: Vec<ServiceEntry>,
}

#[derive(Deserialize)]
struct DependenciesResponse {
    dependencies: Vec<Dependency>,
}

fn ids(body: Value) -> Vec<String> {
    let response: SearchResponse = serde_json::from_value(body).unwrap();
    response
        .traces
        .iter()
        .map(|t| t.trace_id.to_string())
        .collect()
}

#[tokio::test]
async fn a_trace_round_trips_as_model_spans() {
    let w = world();
    let a = hex_trace(b'a');
    let (status, body) = get(&w.router, &format!("/api/clew/traces/{a}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["spans"][0]["trace_id"], a, "ids are hex in JSON");
    let response: TraceResponse = serde_json::from_value(body).unwrap();
    let mut expected: Vec<Span> = w
        .written
        .iter()
        .filter(|s| s.trace_id == tid(b'a'))
        .cloned()
        .collect();
    expected.sort_by_key(|s| s.start_unix_nano);
    assert_eq!(
        response.spans, expected,
        "every field kept, ordered by start"
    );

    let missing = "0123456789abcdef0123456789abcdef";
    let (status, body) = get(&w.router, &format!("/api/clew/traces/{missing}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, json!({"error": format!("trace {missing} not found")}));
    let (status, body) = get(&w.router, "/api/clew/traces/nope").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("'trace id'"));
}

#[tokio::test]
async fn search_returns_summaries_newest_first() {
    let w = world();
    let ids_ = [b'a', b'b', b'c', b'd', b'e'].map(hex_trace);
    let [a, b, c, d, e] = [0, 1, 2, 3, 4].map(|i| ids_[i].as_str());
    let (status, body) = get(&w.router, "/api/clew/search?service=frontend").await;
    assert_eq!(status, StatusCode::OK);
    let response: SearchResponse = serde_json::from_value(body).unwrap();
    assert_eq!(response.traces.len(), 2);
    let first = &response.traces[0];
    assert_eq!(first.trace_id.to_string(), a);
    assert_eq!(first.root_service, "frontend");
    assert_eq!(first.root_operation, "GET /dispatch");
    assert_eq!(first.start_unix_nano, w.t_a);
    assert_eq!(first.end_unix_nano, w.t_a + 100 * MS);
    assert_eq!(
        (first.span_count, first.error_count, first.orphan_count),
        (3, 1, 0)
    );
    assert_eq!(
        first.services,
        vec![("customer".to_string(), 1), ("frontend".to_string(), 2)]
    );
    assert_eq!(response.traces[1].trace_id.to_string(), c);

    let search = |q: &str| {
        let router = w.router.clone();
        let uri = format!("/api/clew/search?{q}");
        async move {
            let (status, body) = get(&router, &uri).await;
            assert_eq!(status, StatusCode::OK, "{uri}: {body}");
            ids(body)
        }
    };
    // Every service, newest first: B started a minute before A, E five, C fifty.
    assert_eq!(search("").await, [a, b, e, c]);
    assert_eq!(search("limit=2").await, [a, b]);
    assert_eq!(search("kind=producer").await, [b, e]);
    assert_eq!(search("kind=CONSUMER&service=worker-a").await, [b, e]);
    assert_eq!(
        search(&format!("attr={}", enc("messaging.destination.name=audit"))).await,
        [e]
    );
    assert_eq!(search("attr=error%3Dtrue").await, [a]);
    assert_eq!(
        search(&format!("operation={}", enc("process orders"))).await,
        [b]
    );
    assert_eq!(search("service=worker-b&min_duration=25ms").await, [b]);
    assert!(
        search("service=worker-b&max_duration=25ms")
            .await
            .is_empty()
    );
    assert_eq!(search("service=frontend&max_duration=1ms").await, [c]);
    // Windows as RFC 3339 or Unix nanoseconds, and the CLI's humantime durations.
    let start = enc(&rfc3339(w.t_d - HOUR));
    assert_eq!(
        search(&format!("service=frontend&start={start}&end={}", w.t_a - 1)).await,
        [c, d]
    );
    assert_eq!(
        search("service=frontend&min_duration=1s&max_duration=2days").await,
        Vec::<String>::new()
    );

    for (query, param) in [
        ("limit=many", "limit"),
        ("start=tuesday", "start"),
        ("end=-5", "end"),
        ("kind=sideways", "kind"),
        ("attr=novalue", "attr"),
        ("min_duration=quick", "min_duration"),
    ] {
        let (status, body) = get(&w.router, &format!("/api/clew/search?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        let message = body["error"].as_str().unwrap();
        assert!(
            message.starts_with(&format!("unable to parse param '{param}': ")),
            "{query}: {message}"
        );
    }
}

#[tokio::test]
async fn services_with_their_operations() {
    let w = world();
    let (status, body) = get(&w.router, "/api/clew/services").await;
    assert_eq!(status, StatusCode::OK);
    let response: ServicesResponse = serde_json::from_value(body).unwrap();
    let names: Vec<&str> = response.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["customer", "dispatcher", "frontend", "worker-a", "worker-b"]
    );
    let worker_a = &response.services[3];
    assert_eq!(
        worker_a.operations,
        vec![
            Operation {
                name: "process audit".to_string(),
                kind: SpanKind::Consumer
            },
            Operation {
                name: "process orders".to_string(),
                kind: SpanKind::Consumer
            },
        ]
    );
}

#[tokio::test]
async fn dependencies_keep_channels_and_errors() {
    let w = world();
    let (status, body) = get(&w.router, "/api/clew/dependencies").await;
    assert_eq!(status, StatusCode::OK);
    let response: DependenciesResponse = serde_json::from_value(body).unwrap();
    let dep = |parent: &str, child: &str, channel: Option<&str>, calls, errors| Dependency {
        parent: parent.to_string(),
        child: child.to_string(),
        channel: channel.map(str::to_string),
        call_count: calls,
        error_count: errors,
    };
    let mut got = response.dependencies;
    got.sort();
    assert_eq!(
        got,
        vec![
            dep("dispatcher", "worker-a", Some("audit"), 1, 0),
            dep("dispatcher", "worker-a", Some("orders"), 1, 0),
            dep("dispatcher", "worker-b", Some("orders"), 1, 0),
            dep("frontend", "customer", None, 1, 1),
        ]
    );
    let (_, body) = get(
        &w.router,
        &format!(
            "/api/clew/dependencies?start={}&end={}",
            w.t_d - HOUR,
            w.t_d + HOUR
        ),
    )
    .await;
    assert_eq!(body, json!({"dependencies": []}));
    let (status, body) = get(&w.router, "/api/clew/dependencies?start=2&end=1").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body, json!({"error": "'start' must not be after 'end'"}));
}

#[tokio::test]
async fn unknown_api_paths_are_json_404s() {
    let w = world();
    let (status, body) = get(&w.router, "/api/clew/nothing-here").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        json!({"error": "no API endpoint at /api/clew/nothing-here"})
    );
}

#[tokio::test]
async fn store_failures_are_500s() {
    let router = clew_query::router(Arc::new(BrokenStore));
    for uri in [
        "/api/clew/services",
        "/api/clew/search",
        "/api/clew/traces/0123456789abcdef0123456789abcdef",
        "/api/clew/dependencies",
    ] {
        let (status, body) = get(&router, uri).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{uri}");
        assert_eq!(
            body,
            json!({"error": "store error: storage engine: disk on fire"})
        );
    }
}
