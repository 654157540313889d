//! The real Node Scout APM agent (`@scout_apm/scout-apm` from npm, pinned in
//! tests/node/package.json), pointed at `clew serve`'s agent socket (unix and TCP) with
//! Scout's own core-agent neither downloaded nor launched, instruments
//! tests/node/scout_app.js; its transactions come back through the query API.
//!
//! `node` must be on the PATH (or named by `CLEW_TEST_NODE`) and the package installed in
//! tests/node/node_modules (or the directory `CLEW_TEST_NODE_MODULES` names);
//! `scripts/test` installs both.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use clew_model::{AttributeValue, Span, SpanId, SpanKind};
use support::{
    Clew, eventually, get_json, node_with_packages, output_text, output_within, repo_root,
};

/// The Scout app name, which becomes the service name.
const APP: &str = "orders-node";
/// scout_app.js adds this as the web request's `traceparent` context tag.
const JOIN_TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const JOIN_TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const JOIN_PARENT_ID: &str = "00f067aa0ba902b7";

/// Runs tests/node/scout_app.js against the agent at `address` (a unix socket path or
/// `tcp://127.0.0.1:PORT`).
fn run_scout_app(address: &str) {
    let (node, modules) = node_with_packages(&["@scout_apm/scout-apm"]);
    let script = repo_root().join("tests/node/scout_app.js");
    let mut command = Command::new(node);
    command.arg(&script);
    // The agent reads every SCOUT_* variable; only the ones set here may count.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("SCOUT_") {
            command.env_remove(key);
        }
    }
    command
        .env("NODE_PATH", &modules)
        .env("SCOUT_MONITOR", "true")
        .env("SCOUT_CORE_AGENT_LAUNCH", "false")
        .env("SCOUT_CORE_AGENT_DOWNLOAD", "false")
        .env("SCOUT_SOCKET_PATH", address)
        .env("SCOUT_KEY", "abcdefghij0123456789")
        .env("SCOUT_NAME", APP)
        .env("SCOUT_HOSTNAME", "test-host")
        .env("SCOUT_LOG_LEVEL", "debug")
        .env("JOIN_TRACEPARENT", JOIN_TRACEPARENT);
    let output = output_within(&mut command, Duration::from_secs(60));
    assert!(
        output.status.success(),
        "the instrumented Node program failed against {address}: {}",
        output_text(&output)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("commands sent: "),
        "scout_app.js did not report its commands\n{}",
        output_text(&output)
    );
}

fn trace_spans(clew: &Clew, trace_id: &str) -> Option<Vec<Span>> {
    let (status, body) = get_json(&clew.api(&format!("/api/clew/traces/{trace_id}")));
    if status != 200 {
        return None;
    }
    Some(serde_json::from_value(body["spans"].clone()).expect("spans in the model's form"))
}

/// The ids of the traces of `APP` that have a span named `operation`.
fn search(clew: &Clew, operation: Option<&str>) -> Vec<String> {
    let mut url = clew.api(&format!("/api/clew/search?service={APP}&limit=50"));
    if let Some(operation) = operation {
        url.push_str(&format!("&operation={}", operation.replace('#', "%23")));
    }
    let (status, body) = get_json(&url);
    assert_eq!(status, 200, "{url}: {body}");
    body["traces"]
        .as_array()
        .expect("traces list")
        .iter()
        .map(|t| t["trace_id"].as_str().expect("trace_id").to_string())
        .collect()
}

/// Waits (at most 20 s) for the trace to hold `count` spans; returns what it has then.
fn wait_for_trace(clew: &Clew, trace_id: &str, count: usize) -> Vec<Span> {
    eventually(Duration::from_secs(20), || {
        trace_spans(clew, trace_id).filter(|spans| spans.len() >= count)
    })
    .or_else(|| trace_spans(clew, trace_id))
    .unwrap_or_else(|| panic!("trace {trace_id} did not reach the query API within 20 s"))
}

fn one<'a>(spans: &'a [Span], name: &str, context: &str) -> &'a Span {
    let matching: Vec<_> = spans.iter().filter(|s| s.name == name).collect();
    assert_eq!(
        matching.len(),
        1,
        "one span named {name:?} expected in {context}: {:?}",
        names(spans)
    );
    matching[0]
}

fn names(spans: &[Span]) -> Vec<(String, Option<String>)> {
    spans
        .iter()
        .map(|s| {
            (
                s.name.clone(),
                s.parent_span_id
                    .and_then(|p| spans.iter().find(|x| x.span_id == p))
                    .map(|p| p.name.clone()),
            )
        })
        .collect()
}

fn assert_child(parent: &Span, child: &Span) {
    assert_eq!(
        child.parent_span_id,
        Some(parent.span_id),
        "{} should be a child of {}",
        child.name,
        parent.name
    );
    assert_eq!(child.trace_id, parent.trace_id);
}

fn assert_attribute(span: &Span, key: &str, expected: AttributeValue) {
    assert_eq!(
        span.attribute(key),
        Some(&expected),
        "attribute {key} of {}: {:?}",
        span.name,
        span.attributes
    );
}

fn string(value: &str) -> AttributeValue {
    AttributeValue::String(value.into())
}

/// What every span of the Node agent's traces must have in common.
fn assert_common(spans: &[Span]) {
    for span in spans {
        assert_eq!(span.service_name(), APP, "service of {}", span.name);
        // The Node agent reports these only in its `scout.metadata` application event.
        let resource = &span.resource.attributes;
        for (key, value) in [
            ("host.name", "test-host"),
            ("telemetry.sdk.language", "nodejs"),
        ] {
            assert!(
                resource.contains(&clew_model::KeyValue::new(key, value)),
                "{key} of {}: {resource:?}",
                span.name
            );
        }
        assert!(
            span.end_unix_nano >= span.start_unix_nano,
            "{} ends before it starts",
            span.name
        );
        assert!(
            span.duration_nanos() < 10_000_000_000,
            "{} lasted {} ns",
            span.name,
            span.duration_nanos()
        );
        for flag in ["clew.unfinished", "clew.missing_parent"] {
            assert!(
                span.attribute(flag).is_none(),
                "{} has {flag}: {:?}",
                span.name,
                span.attributes
            );
        }
        assert!(
            !span.is_error(),
            "{} is an error: {:?}",
            span.name,
            span.status
        );
    }
}

fn check_job(clew: &Clew) {
    let found = eventually(Duration::from_secs(20), || {
        let ids = search(clew, Some("Job/nightly-report"));
        (!ids.is_empty()).then_some(ids)
    })
    .expect("the background job reached the query API");
    assert_eq!(found.len(), 1, "one job trace: {found:?}");
    let spans = wait_for_trace(clew, &found[0], 5);
    let context = format!("the job trace {:?}", names(&spans));
    assert_eq!(spans.len(), 5, "{context}");
    assert_common(&spans);

    // The request is the root, named after its Job/ span.
    let root = spans
        .iter()
        .find(|s| s.parent_span_id.is_none())
        .unwrap_or_else(|| panic!("a root in {context}"));
    assert_eq!(root.name, "Job/nightly-report", "{context}");
    assert_eq!(root.kind, SpanKind::Consumer);
    assert!(
        matches!(root.attribute("scout.request_id"), Some(AttributeValue::String(id)) if id.starts_with("req-")),
        "{:?}",
        root.attributes
    );
    // Request context, each JSON type as its attribute type.
    assert_attribute(root, "customer", string("acme"));
    assert_attribute(root, "attempt", AttributeValue::Int(2));
    assert_attribute(root, "dry_run", AttributeValue::Bool(false));
    assert_attribute(root, "ratio", AttributeValue::Double(0.25));

    let job = spans
        .iter()
        .find(|s| s.name == "Job/nightly-report" && s.parent_span_id.is_some())
        .unwrap_or_else(|| panic!("the Job/ span itself under the root in {context}"));
    assert_child(root, job);
    let load = one(&spans, "SQL/load-orders", &context);
    assert_child(job, load);
    assert_eq!(load.kind, SpanKind::Client);
    assert_attribute(load, "db.statement", string("SELECT * FROM orders"));
    assert_attribute(load, "rows", AttributeValue::Int(3));
    let decode = one(&spans, "Custom/decode", &context);
    assert_child(load, decode);
    assert_attribute(decode, "format", string("json"));
    let render = one(&spans, "Custom/render", &context);
    assert_child(job, render);
    assert_eq!(render.kind, SpanKind::Internal);
    // The span tags stay on their own spans.
    assert!(root.attribute("rows").is_none() && job.attribute("rows").is_none());
    assert!(load.attribute("customer").is_none());
}

fn check_web(clew: &Clew) {
    // The web request carried a traceparent tag, so it joined that trace.
    let spans = wait_for_trace(clew, JOIN_TRACE_ID, 4);
    let context = format!("the web trace {:?}", names(&spans));
    assert_eq!(spans.len(), 4, "{context}");
    assert_common(&spans);

    let root = spans
        .iter()
        .find(|s| s.parent_span_id == Some(SpanId::from_hex(JOIN_PARENT_ID).unwrap()))
        .unwrap_or_else(|| panic!("the request's root under the caller's span in {context}"));
    assert_eq!(root.name, "Controller/orders#index", "{context}");
    assert_eq!(root.kind, SpanKind::Server);
    assert_attribute(root, "path", string("/orders"));
    assert_attribute(root, "user_id", AttributeValue::Int(42));
    assert!(
        root.attribute("traceparent").is_none(),
        "the traceparent tag is propagation, not an attribute: {:?}",
        root.attributes
    );

    let controller = spans
        .iter()
        .find(|s| s.name == "Controller/orders#index" && s.span_id != root.span_id)
        .unwrap_or_else(|| panic!("the Controller/ span under the root in {context}"));
    assert_child(root, controller);
    let query = one(&spans, "SQL/Query", &context);
    assert_child(controller, query);
    assert_eq!(query.kind, SpanKind::Client);
    assert_attribute(
        query,
        "db.statement",
        string("SELECT id FROM orders WHERE shop = $1"),
    );
    let call = one(&spans, "HTTP/GET", &context);
    assert_child(controller, call);
    assert_eq!(call.kind, SpanKind::Client);
    assert_attribute(call, "url", string("http://inventory.internal/stock"));
}

fn check(clew: &Clew) {
    check_job(clew);
    check_web(clew);
    // Nothing else: no request split into fragments, no stray traces.
    let all = search(clew, None);
    assert_eq!(all.len(), 2, "exactly the job and the web request: {all:?}");
    assert!(all.iter().any(|id| id == JOIN_TRACE_ID), "{all:?}");
}

fn unix_socket(clew: &Clew, dir: &Path) -> String {
    let socket = dir.join("agent.sock").display().to_string();
    assert!(clew.agent.contains(&socket), "{:?}", clew.agent);
    socket
}

#[test]
fn scout_node_agent_over_the_unix_socket_reaches_the_query_api() {
    let dir = tempfile::tempdir().unwrap();
    let clew = Clew::start(dir.path());
    run_scout_app(&unix_socket(&clew, dir.path()));
    check(&clew);
}

#[test]
fn scout_node_agent_over_tcp_reaches_the_query_api() {
    let dir = tempfile::tempdir().unwrap();
    let clew = Clew::start(dir.path());
    run_scout_app(&clew.agent_tcp());
    check(&clew);
}
