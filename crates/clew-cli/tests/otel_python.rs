//! Traces sent by the real OpenTelemetry Python SDK, over OTLP/HTTP and OTLP/gRPC, arrive
//! complete and come back through the Jaeger v1 and v3 query APIs and the CLI.

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::{Clew, eventually, get_json, python, repo_root};

const TRACES: usize = 3;
const SPANS_PER_TRACE: usize = 5;

fn send_with_python(protocol: &str, endpoint: &str, service: &str) -> Vec<String> {
    let script = repo_root().join("tests/python/send_traces.py");
    let output = Command::new(python())
        .arg(script)
        .args([
            "--protocol",
            protocol,
            "--endpoint",
            endpoint,
            "--service",
            service,
        ])
        .args(["--traces", &TRACES.to_string()])
        .output()
        .expect("running the Python sender");
    assert!(
        output.status.success(),
        "python sender failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).expect("sender prints JSON");
    assert_eq!(
        report["flushed"], true,
        "the SDK reports its export failed: {report}"
    );
    report["trace_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

/// Waits until clew returns the whole trace through the v1 API.
fn jaeger_trace(clew: &Clew, id: &str) -> Value {
    eventually(Duration::from_secs(15), || {
        let (status, body) = get_json(&clew.api(&format!("/api/traces/{id}")));
        let spans = body["data"][0]["spans"]
            .as_array()
            .map(Vec::len)
            .unwrap_or(0);
        (status == 200 && spans == SPANS_PER_TRACE).then_some(body)
    })
    .unwrap_or_else(|| {
        panic!(
            "trace {id} did not arrive complete: {:?}",
            get_json(&clew.api(&format!("/api/traces/{id}")))
        )
    })
}

fn check_round_trip(protocol: &str) {
    let dir = tempfile::tempdir().unwrap();
    let clew = Clew::start(dir.path());
    let endpoint = match protocol {
        "grpc" => format!("http://{}", clew.otlp_grpc),
        _ => format!("http://{}/v1/traces", clew.otlp_http),
    };
    let service = format!("shop-{protocol}");
    let ids = send_with_python(protocol, &endpoint, &service);
    assert_eq!(ids.len(), TRACES);

    for id in &ids {
        let body = jaeger_trace(&clew, id);
        let trace = &body["data"][0];
        assert_eq!(trace["traceID"], id.as_str());
        let spans = trace["spans"].as_array().unwrap();
        let by_name = |name: &str| {
            spans
                .iter()
                .find(|s| s["operationName"] == name)
                .unwrap_or_else(|| panic!("no span {name}"))
        };
        let root = by_name("GET /orders");
        assert!(root["references"].as_array().unwrap().is_empty());
        let tag = |span: &Value, key: &str| {
            span["tags"]
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["key"] == key)
                .map(|t| t["value"].clone())
        };
        assert_eq!(tag(root, "span.kind"), Some(Value::from("server")));
        assert_eq!(tag(root, "http.method"), Some(Value::from("GET")));
        let consumer = by_name("consume orders");
        let producer = by_name("publish orders");
        let refs = consumer["references"].as_array().unwrap();
        assert!(
            refs.iter()
                .any(|r| r["refType"] == "CHILD_OF" && r["spanID"] == producer["spanID"]),
            "{refs:?}"
        );
        assert!(
            refs.iter().any(|r| r["refType"] == "FOLLOWS_FROM"),
            "the link is kept: {refs:?}"
        );
        let log = &producer["logs"][0];
        assert!(
            log["fields"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["key"] == "bytes" && f["value"] == 42)
        );
        let failing = by_name("validate");
        assert_eq!(tag(failing, "error"), Some(Value::Bool(true)));
        // Jaeger times are microseconds: a span of this test lasts far less than a minute.
        assert!(root["duration"].as_u64().unwrap() < 60_000_000);
        assert!(root["startTime"].as_u64().unwrap() > 1_600_000_000_000_000);
        let services: Vec<&str> = trace["processes"]
            .as_object()
            .unwrap()
            .values()
            .map(|p| p["serviceName"].as_str().unwrap())
            .collect();
        assert!(
            services.contains(&service.as_str())
                && services.contains(&format!("{service}-worker").as_str()),
            "{services:?}"
        );

        let (status, v3) = get_json(&clew.api(&format!("/api/v3/traces/{id}")));
        assert_eq!(status, 200);
        let resource_spans = v3["result"]["resourceSpans"].as_array().unwrap();
        let v3_spans: Vec<&Value> = resource_spans
            .iter()
            .flat_map(|rs| rs["scopeSpans"].as_array().unwrap())
            .flat_map(|ss| ss["spans"].as_array().unwrap())
            .collect();
        assert_eq!(v3_spans.len(), SPANS_PER_TRACE);
        assert!(v3_spans.iter().all(|s| s["traceId"] == id.as_str()));
        assert!(
            v3_spans.iter().any(|s| s["kind"] == 5),
            "CONSUMER as the integer 5"
        );
    }

    let (_, found) = get_json(&clew.api(&format!("/api/traces?service={service}&limit=10")));
    let found: Vec<&str> = found["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["traceID"].as_str().unwrap())
        .collect();
    for id in &ids {
        assert!(found.contains(&id.as_str()), "search finds {id}: {found:?}");
    }
    let (_, services) = get_json(&clew.api("/api/services"));
    assert!(
        services["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == service.as_str())
    );
    let (_, deps) = get_json(&clew.api(&format!(
            "/api/dependencies?endTs={}&lookback=3600000",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis()
                + 60_000
        )));
    let edge = deps["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| {
            d["parent"] == service.as_str() && d["child"] == format!("{service}-worker").as_str()
        })
        .unwrap_or_else(|| panic!("PRODUCER→CONSUMER edge in {deps}"));
    assert_eq!(edge["callCount"], TRACES as u64);

    let shown = clew.cli(&["trace", "show", &ids[0]]);
    assert!(
        shown.status.success(),
        "{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    let text = String::from_utf8(shown.stdout).unwrap();
    assert!(
        text.contains(&format!("{service}: GET /orders (SERVER)")),
        "{text}"
    );
    assert!(
        text.contains(&format!("{service}-worker: consume orders (CONSUMER)")),
        "{text}"
    );
    assert!(!text.contains('\x1b'), "no colour codes when piped");
}

#[test]
fn python_sdk_over_otlp_http_round_trips() {
    check_round_trip("http");
}

#[test]
fn python_sdk_over_otlp_grpc_round_trips() {
    check_round_trip("grpc");
}
