//! Jaeger's v1 API, as Jaeger's UI and Grafana read it.

mod common;

use std::sync::Arc;

use axum::http::StatusCode;
use common::*;
use serde_json::{Value, json};

fn trace_ids(body: &Value) -> Vec<String> {
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["traceID"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn services_and_operations() {
    let w = world();
    let (status, body) = get(&w.router, "/api/services").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({
            "data": ["customer", "dispatcher", "frontend", "worker-a", "worker-b"],
            "total": 5, "limit": 0, "offset": 0, "errors": null
        })
    );

    let (status, body) = get(&w.router, "/api/services/frontend/operations").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["data"],
        json!([
            "GET /dispatch",
            "GET /health",
            "GET /old",
            "HTTP GET /customer"
        ])
    );
    assert_eq!(body["total"], 4);

    let (_, body) = get(&w.router, "/api/operations?service=frontend").await;
    assert_eq!(
        body["data"],
        json!([
            {"name": "GET /dispatch", "spanKind": "server"},
            {"name": "GET /health", "spanKind": "server"},
            {"name": "GET /old", "spanKind": "server"},
            {"name": "HTTP GET /customer", "spanKind": "client"},
        ])
    );
    let (_, body) = get(
        &w.router,
        "/api/operations?service=frontend&spanKind=client",
    )
    .await;
    assert_eq!(
        body["data"],
        json!([{"name": "HTTP GET /customer", "spanKind": "client"}])
    );
    let (_, body) = get(&w.router, "/api/operations?service=nobody").await;
    assert_eq!(body["data"], json!([]));

    let (status, body) = get(&w.router, "/api/operations").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        json!({
            "data": null, "total": 0, "limit": 0, "offset": 0,
            "errors": [{"code": 400, "msg": "parameter 'service' is required"}]
        })
    );
    let (status, body) = get(
        &w.router,
        "/api/operations?service=frontend&spanKind=sideways",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["errors"][0]["msg"],
        "unable to parse param 'spanKind': unsupported span kind: 'sideways'"
    );
}

#[tokio::test]
async fn a_trace_in_jaeger_shape() {
    let w = world();
    let a = hex_trace(b'a');
    let (status, body) = get(&w.router, &format!("/api/traces/{a}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["total"], 1);
    assert_eq!(body["errors"], Value::Null);
    let trace = &body["data"][0];
    assert_eq!(trace["traceID"], a);
    assert_eq!(trace["traceID"].as_str().unwrap().len(), 32);
    assert_eq!(trace["warnings"], Value::Null);
    assert_eq!(trace["spans"].as_array().unwrap().len(), 3);

    // Processes are deduplicated: two frontend spans share one.
    let processes = trace["processes"].as_object().unwrap();
    assert_eq!(processes.len(), 2);
    let root = v1_span(trace, &hex_span(b'a', 1));
    let client = v1_span(trace, &hex_span(b'a', 2));
    let server = v1_span(trace, &hex_span(b'a', 3));
    assert_eq!(root["processID"], client["processID"]);
    assert_ne!(root["processID"], server["processID"]);
    let frontend = &processes[root["processID"].as_str().unwrap()];
    assert_eq!(
        *frontend,
        json!({"serviceName": "frontend", "tags": [
            {"key": "telemetry.sdk.language", "type": "string", "value": "rust"}
        ]})
    );
    let customer = &processes[server["processID"].as_str().unwrap()];
    assert_eq!(customer["serviceName"], "customer");
    assert_eq!(
        tag(&customer["tags"], "host.name"),
        Some(("string", &json!("db-host-1")))
    );

    // Units are microseconds.
    assert_eq!(root["startTime"], w.t_a / 1_000);
    assert_eq!(root["duration"], 100_000);
    assert_eq!(server["startTime"], (w.t_a + 12 * MS) / 1_000);
    assert_eq!(server["duration"], 45_000);
    assert_eq!(root["operationName"], "GET /dispatch");
    assert_eq!(root["flags"], 1);
    assert_eq!(root["warnings"], Value::Null);

    // The parent becomes a CHILD_OF reference; a root has none.
    assert_eq!(root["references"], json!([]));
    assert_eq!(
        server["references"],
        json!([{"refType": "CHILD_OF", "traceID": a, "spanID": hex_span(b'a', 2)}])
    );

    // Attributes keep their types; kind, status and scope become Jaeger's tags.
    let tags = &root["tags"];
    assert_eq!(tag(tags, "http.status_code"), Some(("int64", &json!(200))));
    assert_eq!(tag(tags, "http.method"), Some(("string", &json!("GET"))));
    assert_eq!(tag(tags, "span.kind"), Some(("string", &json!("server"))));
    assert_eq!(
        tag(tags, "otel.status_code"),
        Some(("string", &json!("OK")))
    );
    assert_eq!(
        tag(tags, "otel.scope.name"),
        Some(("string", &json!("frontend-lib")))
    );
    assert_eq!(
        tag(tags, "otel.scope.version"),
        Some(("string", &json!("1.2")))
    );
    assert_eq!(tag(tags, "error"), None);
    assert_eq!(
        tag(&client["tags"], "span.kind"),
        Some(("string", &json!("client")))
    );
    assert_eq!(tag(&client["tags"], "otel.status_code"), None);

    let tags = &server["tags"];
    assert_eq!(tag(tags, "error"), Some(("bool", &json!(true))));
    assert_eq!(
        tag(tags, "otel.status_code"),
        Some(("string", &json!("ERROR")))
    );
    assert_eq!(
        tag(tags, "otel.status_description"),
        Some(("string", &json!("db timeout")))
    );
    assert_eq!(tag(tags, "ratio"), Some(("float64", &json!(0.25))));
    assert_eq!(tag(tags, "db.rows"), Some(("string", &json!("[1,2]"))));
    assert_eq!(tag(tags, "otel.scope.name"), None);

    // Events become logs, timestamped in microseconds, named by an `event` field.
    assert_eq!(
        server["logs"],
        json!([{
            "timestamp": (w.t_a + 30 * MS + 1_500) / 1_000,
            "fields": [
                {"key": "event", "type": "string", "value": "exception"},
                {"key": "exception.message", "type": "string", "value": "timeout after 30ms"},
            ]
        }])
    );
    assert_eq!(root["logs"], json!([]));
}

#[tokio::test]
async fn messaging_fan_out() {
    let w = world();
    let b = hex_trace(b'b');
    let (_, body) = get(&w.router, &format!("/api/traces/{b}")).await;
    let trace = &body["data"][0];
    assert_eq!(trace["processes"].as_object().unwrap().len(), 3);
    let producer = v1_span(trace, &hex_span(b'b', 1));
    assert_eq!(
        tag(&producer["tags"], "span.kind"),
        Some(("string", &json!("producer")))
    );
    for n in [2, 3] {
        let consumer = v1_span(trace, &hex_span(b'b', n));
        assert_eq!(
            tag(&consumer["tags"], "span.kind"),
            Some(("string", &json!("consumer")))
        );
        assert_eq!(consumer["references"][0]["refType"], "CHILD_OF");
        assert_eq!(consumer["references"][0]["spanID"], hex_span(b'b', 1));
    }
}

#[tokio::test]
async fn links_are_follows_from_references() {
    let w = world();
    let (_, body) = get(&w.router, &format!("/api/traces/{}", hex_trace(b'c'))).await;
    let health = v1_span(&body["data"][0], &hex_span(b'c', 1));
    // A link into another trace; a root span has no CHILD_OF before it.
    assert_eq!(
        health["references"],
        json!([{"refType": "FOLLOWS_FROM", "traceID": hex_trace(b'a'), "spanID": hex_span(b'a', 1)}])
    );
}

#[tokio::test]
async fn unknown_and_malformed_trace_ids() {
    let w = world();
    let (status, body) = get(&w.router, "/api/traces/0123456789abcdef0123456789abcdef").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        json!({
            "data": null, "total": 0, "limit": 0, "offset": 0,
            "errors": [{"code": 404, "msg": "trace not found"}]
        })
    );
    let (status, body) = get(&w.router, "/api/traces/not-a-trace-id").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["data"], Value::Null);
    assert_eq!(body["errors"][0]["code"], 400);
    let msg = body["errors"][0]["msg"].as_str().unwrap();
    assert!(
        msg.starts_with("unable to parse param 'traceID': "),
        "{msg}"
    );
}

#[tokio::test]
async fn search_filters() {
    let w = world();
    let ids = [b'a', b'b', b'c', b'd'].map(hex_trace);
    let [a, b, c, d] = [0, 1, 2, 3].map(|i| ids[i].as_str());
    let search = |q: String| {
        let router = w.router.clone();
        async move {
            let (status, body) = get(&router, &format!("/api/traces?{q}")).await;
            assert_eq!(status, StatusCode::OK, "{q}: {body}");
            trace_ids(&body)
        }
    };

    // Newest first; D is older than the default two days.
    assert_eq!(search("service=frontend".into()).await, [a, c]);
    let (_, body) = get(&w.router, "/api/traces?service=frontend").await;
    assert_eq!(body["total"], 2);
    assert_eq!(
        body["data"][0]["spans"].as_array().unwrap().len(),
        3,
        "whole traces"
    );
    assert_eq!(search("service=frontend&limit=1".into()).await, [a]);
    assert_eq!(
        search(format!("service=frontend&operation={}", enc("GET /health"))).await,
        [c]
    );
    assert_eq!(
        search("service=frontend&tag=http.method:GET".into()).await,
        [a, c]
    );
    assert_eq!(
        search(format!(
            "service=frontend&tags={}",
            enc(r#"{"http.status_code":"200"}"#)
        ))
        .await,
        [a]
    );
    // One span must meet every criterion: no frontend span has both of these.
    assert!(
        search("service=frontend&tag=http.status_code:200&tag=peer.service:customer".into())
            .await
            .is_empty()
    );
    assert_eq!(
        search("service=frontend&minDuration=50ms".into()).await,
        [a]
    );
    assert_eq!(
        search("service=frontend&maxDuration=1.5ms".into()).await,
        [c]
    );
    assert_eq!(
        search("service=frontend&minDuration=60ms&maxDuration=1s".into()).await,
        [a]
    );

    // Explicit window, in microseconds.
    let start = (w.t_d - HOUR) / 1_000;
    assert_eq!(
        search(format!("service=frontend&start={start}")).await,
        [a, c, d]
    );
    let end = (w.t_a - 1) / 1_000;
    assert_eq!(
        search(format!("service=frontend&start={start}&end={end}")).await,
        [c, d]
    );
    // The UI's lookback, honoured when no start is given.
    assert_eq!(search("service=frontend&lookback=30m".into()).await, [a]);
    assert_eq!(
        search("service=frontend&lookback=4d".into()).await,
        [a, c, d]
    );

    // Tags Jaeger derives from the span, not from attributes.
    assert_eq!(search("service=customer&tag=error:true".into()).await, [a]);
    assert!(
        search("service=frontend&tag=error:true".into())
            .await
            .is_empty()
    );
    assert_eq!(
        search("service=worker-b&tag=span.kind:consumer".into()).await,
        [b]
    );
    assert_eq!(search("tag=otel.status_code:ERROR".into()).await, [a]);
}

#[tokio::test]
async fn fetch_by_trace_ids_reports_the_missing() {
    let w = world();
    let (a, c) = (&*hex_trace(b'a'), &*hex_trace(b'c'));
    let missing = "00000000000000000000000000abcdef";
    let (status, body) = get(
        &w.router,
        &format!("/api/traces?traceID={a}&traceID={missing}&traceID={c}&service=ignored"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(trace_ids(&body), [a, c]);
    assert_eq!(
        body["errors"],
        json!([{"code": 404, "msg": "trace not found", "traceID": missing}])
    );
    let (status, body) = get(&w.router, "/api/traces?traceID=xyz").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["errors"][0]["msg"]
            .as_str()
            .unwrap()
            .starts_with("unable to parse param 'traceID'")
    );
}

#[tokio::test]
async fn bad_search_parameters_are_named() {
    let w = world();
    for (query, param) in [
        ("limit=ten", "limit"),
        ("limit=-1", "limit"),
        ("start=yesterday", "start"),
        ("end=1.5", "end"),
        ("minDuration=fast", "minDuration"),
        ("maxDuration=5", "maxDuration"),
        ("lookback=a-while", "lookback"),
        ("tag=no-colon", "tag"),
        ("tags=not-json", "tags"),
    ] {
        let (status, body) = get(&w.router, &format!("/api/traces?service=frontend&{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(body["data"], Value::Null);
        let msg = body["errors"][0]["msg"].as_str().unwrap();
        assert!(
            msg.starts_with(&format!("unable to parse param '{param}': ")),
            "{query}: {msg}"
        );
    }
    let (status, body) = get(&w.router, "/api/traces?minDuration=2s&maxDuration=1s").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["errors"][0]["msg"],
        "'maxDuration' should be greater than 'minDuration'"
    );
}

#[tokio::test]
async fn dependencies_sum_channels() {
    let w = world();
    let (status, body) = get(&w.router, "/api/dependencies").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["data"],
        json!([
            {"parent": "dispatcher", "child": "worker-a", "callCount": 2},
            {"parent": "dispatcher", "child": "worker-b", "callCount": 1},
            {"parent": "frontend", "child": "customer", "callCount": 1},
        ])
    );
    let (_, body) = get(&w.router, "/api/dependencies?service=customer").await;
    assert_eq!(
        body["data"],
        json!([{"parent": "frontend", "child": "customer", "callCount": 1}])
    );
    // A window that ends before any of it happened.
    let end_ms = (w.t_d + HOUR) / 1_000_000;
    let (_, body) = get(
        &w.router,
        &format!("/api/dependencies?endTs={end_ms}&lookback=3600000"),
    )
    .await;
    assert_eq!(body["data"], json!([]));
    let (status, body) = get(&w.router, "/api/dependencies?endTs=soon").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["errors"][0]["msg"]
            .as_str()
            .unwrap()
            .starts_with("unable to parse param 'endTs': ")
    );
}

#[tokio::test]
async fn store_failures_are_500s_in_jaeger_shape() {
    let router = clew_query::router(Arc::new(BrokenStore));
    for uri in [
        "/api/services",
        "/api/traces?service=x",
        "/api/traces/0123456789abcdef0123456789abcdef",
        "/api/dependencies",
    ] {
        let (status, body) = get(&router, uri).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{uri}");
        assert_eq!(body["data"], Value::Null);
        assert_eq!(body["errors"][0]["code"], 500);
        let msg = body["errors"][0]["msg"].as_str().unwrap();
        assert!(msg.contains("disk on fire"), "{uri}: {msg}");
    }
}

#[tokio::test]
async fn derived_tag_search_looks_past_newer_non_matching_traces() {
    use clew_model::{Resource, Scope, Span, SpanId, SpanKind, Status, StatusCode as Code};
    use clew_store::{FjallStore, SpanStore};

    let dir = tempfile::tempdir().unwrap();
    let store = FjallStore::open(dir.path()).unwrap();
    let resource = Arc::new(Resource::for_service("busy"));
    let base = (now_ms() - 60_000) * MS;
    // One failed request, then 300 newer successful ones: more than the first probe of
    // the store looks at.
    let spans: Vec<Span> = (0..=300u64)
        .map(|i| Span {
            trace_id: clew_model::TraceId(
                (0x0e00_0000_0000_0000_0000_0000_0000_0000 + u128::from(i) + 1).to_be_bytes(),
            ),
            span_id: SpanId((i + 1).to_be_bytes()),
            parent_span_id: None,
            trace_state: String::new(),
            name: "work".to_string(),
            kind: SpanKind::Server,
            start_unix_nano: base + i * MS,
            end_unix_nano: base + i * MS + 1_000,
            attributes: Vec::new(),
            events: Vec::new(),
            links: Vec::new(),
            status: Status {
                code: if i == 0 { Code::Error } else { Code::Ok },
                message: String::new(),
            },
            resource: Arc::clone(&resource),
            scope: Scope::default(),
            flags: 1,
        })
        .collect();
    store.write(&spans).unwrap();
    let router = clew_query::router(Arc::new(store));
    let (status, body) = get(&router, "/api/traces?service=busy&tag=error:true&limit=1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(trace_ids(&body), [spans[0].trace_id.to_string()]);
    let (_, body) = get(
        &router,
        "/api/traces?service=busy&tag=otel.status_code:OK&limit=3",
    )
    .await;
    assert_eq!(body["total"], 3);
}
