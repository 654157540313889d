//! Traces recorded by the real OpenTelemetry JS SDK (`@opentelemetry/sdk-trace-node` from
//! npm, pinned in tests/node/package.json) and sent by each of its three OTLP exporters
//! (OTLP/HTTP JSON, OTLP/HTTP protobuf, OTLP/gRPC) come back through the query API exactly
//! as the SDK recorded them: the SDK's own ids, parents, kinds, typed attributes, events,
//! status, links, resource, scopes and nanosecond times.
//!
//! tests/node/otel_app.js records the traces and prints what it handed the exporter; this
//! test compares that with `/api/clew/traces/{id}` span by span, and also checks the
//! values the app is written to send against constants here, so an app that silently
//! sent something else fails too.
//!
//! `node` must be on the PATH (or named by `CLEW_TEST_NODE`) and the packages installed in
//! tests/node/node_modules (or the directory `CLEW_TEST_NODE_MODULES` names);
//! `scripts/test` installs both.

mod support;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clew_model::{AttributeValue, KeyValue, Span, SpanId, SpanKind, StatusCode, TraceId};
use serde_json::Value;
use support::{
    Clew, eventually, get_json, node_with_packages, output_text, output_within, repo_root,
};

/// The packages otel_app.js loads; each must be installed at its pinned version.
const PACKAGES: &[&str] = &[
    "@opentelemetry/api",
    "@opentelemetry/sdk-trace-node",
    "@opentelemetry/sdk-trace-base",
    "@opentelemetry/resources",
    "@opentelemetry/semantic-conventions",
    "@opentelemetry/exporter-trace-otlp-http",
    "@opentelemetry/exporter-trace-otlp-proto",
    "@opentelemetry/exporter-trace-otlp-grpc",
];

const ROOT: &str = "GET /orders/{id}";
const QUERY: &str = "SELECT orders";
const PRODUCER: &str = "publish order.created";
const CONSUMER: &str = "process order.created";
const TICK: &str = "scheduler.tick";

/// What otel_app.js printed: the trace ids and every span as the exporter was handed it.
struct AppRun {
    report: Value,
    service: String,
    trace_id: String,
    linked_trace_id: String,
}

/// Runs tests/node/otel_app.js's `scenario` with `exporter` (`json`, `proto` or `grpc`)
/// against `endpoint`; fails unless every export succeeded.
fn run_otel_app(
    exporter: &str,
    endpoint: &str,
    compression: Option<&str>,
    scenario: &str,
) -> AppRun {
    let (node, modules) = node_with_packages(PACKAGES);
    let script = repo_root().join("tests/node/otel_app.js");
    let mut command = Command::new(node);
    command
        .arg(&script)
        .args(["--exporter", exporter, "--endpoint", endpoint])
        .args(["--scenario", scenario]);
    if let Some(compression) = compression {
        command.args(["--compression", compression]);
    }
    // The SDK and exporters read OTEL_* variables; only the arguments given here may count.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("OTEL_") {
            command.env_remove(key);
        }
    }
    command.env("NODE_PATH", &modules);
    let output = output_within(&mut command, Duration::from_secs(60));
    assert!(
        output.status.success(),
        "otel_app.js ({exporter} to {endpoint}) failed: {}",
        output_text(&output)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: Value = stdout
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| {
            panic!(
                "otel_app.js printed no JSON report\n{}",
                output_text(&output)
            )
        });
    let results = report["results"].as_array().expect("export results");
    assert!(
        !results.is_empty() && results.iter().all(|r| r["code"] == 0),
        "the SDK reports a failed export: {results:?}"
    );
    assert_eq!(report["exporter"], exporter);
    assert_eq!(report["scenario"], scenario);
    let field = |key: &str| report[key].as_str().unwrap_or_default().to_string();
    AppRun {
        service: field("service"),
        trace_id: field("trace_id"),
        linked_trace_id: field("linked_trace_id"),
        report,
    }
}

/// `/api/clew/traces/{id}` once it holds `count` spans (at most 20 s): the spans in the
/// model's form and the whole answer.
fn wait_for_trace(clew: &Clew, trace_id: &str, count: usize) -> (Vec<Span>, Value) {
    let url = clew.api(&format!("/api/clew/traces/{trace_id}"));
    let fetch = || {
        let (status, body) = get_json(&url);
        if status != 200 {
            return None;
        }
        let spans: Vec<Span> = serde_json::from_value(body["spans"].clone())
            .unwrap_or_else(|e| panic!("spans in the model's form ({e}): {body}"));
        Some((spans, body))
    };
    let (spans, body) = eventually(Duration::from_secs(20), || {
        fetch().filter(|(spans, _)| spans.len() >= count)
    })
    .or_else(fetch)
    .unwrap_or_else(|| {
        panic!(
            "trace {trace_id} did not reach the query API within 20 s: {:?}",
            get_json(&url)
        )
    });
    assert_eq!(
        spans.len(),
        count,
        "spans of trace {trace_id}: {:?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    (spans, body)
}

/// A JSON value as the exporters type it: a JavaScript number that is an integer goes out
/// as `intValue`, any other as `doubleValue`.
fn typed(value: &Value) -> AttributeValue {
    match value {
        Value::String(s) => AttributeValue::String(s.clone()),
        Value::Bool(b) => AttributeValue::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => AttributeValue::Int(i),
            None => AttributeValue::Double(n.as_f64().expect("a finite number")),
        },
        Value::Array(items) => AttributeValue::Array(items.iter().map(typed).collect()),
        Value::Object(map) => AttributeValue::Map(
            map.iter()
                .map(|(k, v)| KeyValue {
                    key: k.clone(),
                    value: typed(v),
                })
                .collect(),
        ),
        Value::Null => panic!("null is no attribute value"),
    }
}

/// Attributes by key, for comparing lists whose order JSON objects do not keep.
fn by_key(attributes: &[KeyValue]) -> BTreeMap<&str, &AttributeValue> {
    let map: BTreeMap<_, _> = attributes
        .iter()
        .map(|kv| (kv.key.as_str(), &kv.value))
        .collect();
    assert_eq!(
        map.len(),
        attributes.len(),
        "duplicate keys in {attributes:?}"
    );
    map
}

fn reported_attributes(value: &Value) -> Vec<KeyValue> {
    value
        .as_object()
        .unwrap_or_else(|| panic!("attributes object: {value}"))
        .iter()
        .map(|(k, v)| KeyValue {
            key: k.clone(),
            value: typed(v),
        })
        .collect()
}

fn assert_same_attributes(what: &str, stored: &[KeyValue], reported: &Value) {
    let reported = reported_attributes(reported);
    assert_eq!(
        by_key(stored),
        by_key(&reported),
        "{what}: stored (left) against what the SDK recorded (right)"
    );
}

fn nanos(value: &Value) -> u64 {
    value
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("nanoseconds as a decimal string: {value}"))
}

fn span_id(value: &Value) -> SpanId {
    SpanId::from_hex(value.as_str().expect("a span id")).expect("a hex span id")
}

fn trace_id(value: &str) -> TraceId {
    TraceId::from_hex(value).expect("a hex trace id")
}

/// Each span the SDK exported, found by its own span id among `stored`, has exactly what
/// the SDK recorded.
fn assert_matches_report(stored: &[Span], run: &AppRun) {
    let reported = run.report["spans"].as_array().expect("spans in the report");
    assert_eq!(reported.len(), 5, "the app exported five spans");
    assert_eq!(stored.len(), reported.len());
    for want in reported {
        let name = want["name"].as_str().unwrap();
        let id = span_id(&want["span_id"]);
        let matching: Vec<&Span> = stored.iter().filter(|s| s.span_id == id).collect();
        assert_eq!(
            matching.len(),
            1,
            "one stored span with the SDK's id {id} ({name})"
        );
        let got = matching[0];
        let what = format!("span {name} ({id})");
        assert_eq!(got.name, name, "{what}");
        assert_eq!(
            got.trace_id,
            trace_id(want["trace_id"].as_str().unwrap()),
            "{what}"
        );
        let parent = (!want["parent_span_id"].is_null()).then(|| span_id(&want["parent_span_id"]));
        assert_eq!(got.parent_span_id, parent, "parent of {what}");
        let kind = SpanKind::from_otlp(want["kind"].as_i64().unwrap() as i32).unwrap();
        assert_eq!(got.kind, kind, "kind of {what}");
        assert_eq!(
            got.start_unix_nano,
            nanos(&want["start_unix_nano"]),
            "start of {what}"
        );
        assert_eq!(
            got.end_unix_nano,
            nanos(&want["end_unix_nano"]),
            "end of {what}"
        );
        let code = StatusCode::from_otlp(want["status"]["code"].as_i64().unwrap() as i32).unwrap();
        assert_eq!(got.status.code, code, "status of {what}");
        assert_eq!(
            got.status.message, want["status"]["message"],
            "status message of {what}"
        );
        assert_same_attributes(
            &format!("attributes of {what}"),
            &got.attributes,
            &want["attributes"],
        );

        let events = want["events"].as_array().unwrap();
        assert_eq!(
            got.events.len(),
            events.len(),
            "events of {what}: {:?}",
            got.events
        );
        for (got_event, want_event) in got.events.iter().zip(events) {
            assert_eq!(got_event.name, want_event["name"], "event of {what}");
            assert_eq!(
                got_event.time_unix_nano,
                nanos(&want_event["time_unix_nano"]),
                "time of event {} of {what}",
                got_event.name
            );
            assert_same_attributes(
                &format!("attributes of event {} of {what}", got_event.name),
                &got_event.attributes,
                &want_event["attributes"],
            );
        }

        let links = want["links"].as_array().unwrap();
        assert_eq!(
            got.links.len(),
            links.len(),
            "links of {what}: {:?}",
            got.links
        );
        for (got_link, want_link) in got.links.iter().zip(links) {
            assert_eq!(
                got_link.trace_id,
                trace_id(want_link["trace_id"].as_str().unwrap()),
                "link of {what}"
            );
            assert_eq!(
                got_link.span_id,
                span_id(&want_link["span_id"]),
                "link of {what}"
            );
            assert_eq!(
                got_link.trace_state, want_link["trace_state"],
                "link of {what}"
            );
            assert_same_attributes(
                &format!("attributes of the link of {what}"),
                &got_link.attributes,
                &want_link["attributes"],
            );
        }

        assert_eq!(got.scope.name, want["scope"]["name"], "scope of {what}");
        assert_eq!(
            got.scope.version, want["scope"]["version"],
            "scope of {what}"
        );
        assert_same_attributes(
            &format!("resource of {what}"),
            &got.resource.attributes,
            &run.report["resource"],
        );

        // OTLP's span flags: the W3C trace flags in the low byte, and bits 8 and 9 saying
        // whether the parent was remote. The low byte must be the SDK's; the two bits, if
        // clew keeps them, must be the ones the exporter set.
        let trace_flags = want["trace_flags"].as_u64().unwrap() as u32;
        assert_eq!(got.flags & 0xff, trace_flags, "trace flags of {what}");
        let remote_bits = 0x100
            | if want["parent_is_remote"] == true {
                0x200
            } else {
                0
            };
        assert!(
            got.flags & !0xff == 0 || got.flags & !0xff == remote_bits,
            "flags of {what}: {:#x}, the exporter sent {:#x}",
            got.flags,
            trace_flags | remote_bits
        );
    }
}

fn one<'a>(spans: &'a [Span], name: &str) -> &'a Span {
    let matching: Vec<&Span> = spans.iter().filter(|s| s.name == name).collect();
    assert_eq!(
        matching.len(),
        1,
        "one span named {name:?} in {:?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    matching[0]
}

fn string(value: &str) -> AttributeValue {
    AttributeValue::String(value.into())
}

fn strings(values: &[&str]) -> AttributeValue {
    AttributeValue::Array(values.iter().map(|v| string(v)).collect())
}

fn assert_attribute(attributes: &[KeyValue], what: &str, key: &str, expected: AttributeValue) {
    let found = attributes
        .iter()
        .find(|kv| kv.key == key)
        .map(|kv| &kv.value);
    assert_eq!(found, Some(&expected), "{key} of {what}: {attributes:?}");
}

/// The values otel_app.js is written to send, typed as OTLP types them.
fn assert_known_values(main: &[Span], tick: &Span, run: &AppRun) {
    let root = one(main, ROOT);
    let query = one(main, QUERY);
    let producer = one(main, PRODUCER);
    let consumer = one(main, CONSUMER);
    assert_eq!(tick.name, TICK);

    // The tree: SERVER root; CLIENT and PRODUCER under it; CONSUMER under the PRODUCER.
    assert_eq!(root.parent_span_id, None);
    assert_eq!(query.parent_span_id, Some(root.span_id));
    assert_eq!(producer.parent_span_id, Some(root.span_id));
    assert_eq!(consumer.parent_span_id, Some(producer.span_id));
    assert_eq!(tick.parent_span_id, None);
    for span in main {
        assert_eq!(span.trace_id, trace_id(&run.trace_id), "{}", span.name);
    }
    assert_eq!(tick.trace_id, trace_id(&run.linked_trace_id));
    assert_ne!(run.trace_id, run.linked_trace_id);
    let kinds: Vec<SpanKind> = [root, query, producer, consumer, tick]
        .iter()
        .map(|s| s.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            SpanKind::Server,
            SpanKind::Client,
            SpanKind::Producer,
            SpanKind::Consumer,
            SpanKind::Internal
        ]
    );

    // Every attribute type: an integer stays an Int, a fraction a Double.
    let attrs = &root.attributes;
    assert_attribute(attrs, ROOT, "http.request.method", string("GET"));
    assert_attribute(attrs, ROOT, "http.route", string("/orders/{id}"));
    assert_attribute(
        attrs,
        ROOT,
        "http.response.status_code",
        AttributeValue::Int(200),
    );
    assert_attribute(attrs, ROOT, "order.total", AttributeValue::Double(1234.5));
    assert_attribute(
        attrs,
        ROOT,
        "order.discount_ratio",
        AttributeValue::Double(0.125),
    );
    assert_attribute(attrs, ROOT, "order.gift", AttributeValue::Bool(true));
    assert_attribute(attrs, ROOT, "order.express", AttributeValue::Bool(false));
    assert_attribute(
        attrs,
        ROOT,
        "order.tags",
        strings(&["priority", "eu", "gift-wrap"]),
    );
    assert_attribute(
        attrs,
        ROOT,
        "order.line_counts",
        AttributeValue::Array(vec![
            AttributeValue::Int(1),
            AttributeValue::Int(2),
            AttributeValue::Int(40),
        ]),
    );
    assert_attribute(
        attrs,
        ROOT,
        "order.weights",
        AttributeValue::Array(vec![
            AttributeValue::Double(0.5),
            AttributeValue::Double(1.25),
        ]),
    );
    assert_attribute(
        attrs,
        ROOT,
        "order.flags",
        AttributeValue::Array(vec![
            AttributeValue::Bool(true),
            AttributeValue::Bool(false),
        ]),
    );
    // 2^53 - 1: exact only if nothing on the way went through a double.
    assert_attribute(
        attrs,
        ROOT,
        "order.big_id",
        AttributeValue::Int(9_007_199_254_740_991),
    );
    assert_attribute(attrs, ROOT, "order.adjustment", AttributeValue::Int(-42));
    assert_eq!(attrs.len(), 13, "{attrs:?}");
    assert!(root.events.is_empty(), "{:?}", root.events);
    assert_eq!(root.status.code, StatusCode::Unset);

    // The link, to the tick in the other trace, with its tracestate and attributes.
    assert_eq!(root.links.len(), 1, "{:?}", root.links);
    let link = &root.links[0];
    assert_eq!((link.trace_id, link.span_id), (tick.trace_id, tick.span_id));
    assert_eq!(link.trace_state, "clew=t61rcWkgMzE,vendor=v1");
    assert_eq!(
        link.attributes,
        [
            KeyValue::new("link.reason", "scheduled-by"),
            KeyValue::new("link.attempt", 2i64)
        ]
    );

    // The CLIENT span's event with typed attributes, then the recorded exception, and
    // the error status.
    let names: Vec<&str> = query.events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["rows.fetched", "exception"]);
    let fetched = &query.events[0];
    let what = "event rows.fetched";
    assert_attribute(&fetched.attributes, what, "db.rows", AttributeValue::Int(3));
    assert_attribute(
        &fetched.attributes,
        what,
        "db.fetch_ms",
        AttributeValue::Double(4.75),
    );
    assert_attribute(
        &fetched.attributes,
        what,
        "db.cached",
        AttributeValue::Bool(false),
    );
    assert_attribute(
        &fetched.attributes,
        what,
        "db.tables",
        strings(&["orders", "order_lines"]),
    );
    assert_attribute(&fetched.attributes, what, "db.note", string("first page"));
    assert_eq!(fetched.attributes.len(), 5);
    let exception = &query.events[1];
    let what = "the exception event";
    assert_attribute(
        &exception.attributes,
        what,
        "exception.type",
        string("TypeError"),
    );
    assert_attribute(
        &exception.attributes,
        what,
        "exception.message",
        string("connection reset by peer"),
    );
    let stack = exception
        .attributes
        .iter()
        .find(|kv| kv.key == "exception.stacktrace")
        .and_then(|kv| kv.value.as_str())
        .unwrap_or_else(|| panic!("a stack trace in {:?}", exception.attributes));
    assert!(
        stack.starts_with("TypeError: connection reset by peer\n") && stack.contains("otel_app.js"),
        "{stack}"
    );
    assert!(
        query.start_unix_nano <= fetched.time_unix_nano
            && fetched.time_unix_nano <= exception.time_unix_nano
            && exception.time_unix_nano <= query.end_unix_nano,
        "events inside their span: {query:?}"
    );
    assert_eq!(query.status.code, StatusCode::Error);
    assert_eq!(query.status.message, "query failed: connection reset");
    assert!(query.is_error());
    assert_attribute(
        &query.attributes,
        QUERY,
        "db.system.name",
        string("postgresql"),
    );

    // The PRODUCER/CONSUMER pair, on the messaging scope; the producer's explicit times
    // keep every nanosecond digit.
    for span in [producer, consumer] {
        assert_attribute(
            &span.attributes,
            &span.name,
            "messaging.system",
            string("clew-bus"),
        );
        assert_eq!(span.messaging_destination(), Some("order.created"));
        assert_eq!(span.scope.name, "clew-test-messaging");
        assert_eq!(span.scope.version, "0.3.0");
    }
    assert_attribute(
        &consumer.attributes,
        CONSUMER,
        "messaging.message.body.size",
        AttributeValue::Int(512),
    );
    assert_eq!(consumer.status.code, StatusCode::Ok);
    assert_eq!(producer.start_unix_nano % 1_000_000, 123_457);
    assert_eq!(producer.end_unix_nano % 1_000_000, 987_654);
    for span in [root, query, tick] {
        assert_eq!(span.scope.name, "clew-test-http", "{}", span.name);
        assert_eq!(span.scope.version, "1.0.0", "{}", span.name);
    }

    // Times are Unix nanoseconds of this run, not micro- or milliseconds.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    for span in main.iter().chain([tick]) {
        assert!(
            span.start_unix_nano > now - 600_000_000_000
                && span.end_unix_nano < now + 60_000_000_000,
            "{} at {}..{} ns, now is {now}",
            span.name,
            span.start_unix_nano,
            span.end_unix_nano
        );
        assert!(span.end_unix_nano >= span.start_unix_nano, "{}", span.name);
    }

    // The resource: what the app set and what the SDK adds.
    for span in main.iter().chain([tick]) {
        let resource = &span.resource.attributes;
        let what = format!("resource of {}", span.name);
        assert_eq!(span.service_name(), run.service);
        assert_attribute(resource, &what, "service.version", string("1.4.2"));
        assert_attribute(
            resource,
            &what,
            "deployment.environment.name",
            string("e2e"),
        );
        assert_attribute(resource, &what, "clew.test.shard", AttributeValue::Int(3));
        assert_attribute(resource, &what, "telemetry.sdk.language", string("nodejs"));
        assert_attribute(
            resource,
            &what,
            "telemetry.sdk.name",
            string("opentelemetry"),
        );
        assert_eq!(resource.len(), 7, "{what}: {resource:?}");
    }
}

fn check(exporter: &str, compression: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let clew = Clew::start(dir.path());
    let endpoint = match exporter {
        "grpc" => format!("http://{}", clew.otlp_grpc),
        _ => format!("http://{}/v1/traces", clew.otlp_http),
    };
    let run = run_otel_app(exporter, &endpoint, compression, "shop");

    let (main, body) = wait_for_trace(&clew, &run.trace_id, 4);
    let (linked, _) = wait_for_trace(&clew, &run.linked_trace_id, 1);
    let all: Vec<Span> = main.iter().chain(&linked).cloned().collect();
    assert_matches_report(&all, &run);
    assert_known_values(&main, &linked[0], &run);

    // The error status made the trace ERRORED, naming the failing span.
    let lifecycle = &body["lifecycle"];
    assert_eq!(lifecycle["state"], "ERRORED", "{lifecycle}");
    assert!(
        lifecycle["error"]
            .as_str()
            .is_some_and(|e| e.contains(QUERY)),
        "{lifecycle}"
    );

    // Search by the service finds both traces and nothing else.
    let url = clew.api(&format!(
        "/api/clew/search?service={}&limit=50",
        run.service
    ));
    let (status, found) = get_json(&url);
    assert_eq!(status, 200, "{url}: {found}");
    let mut ids: Vec<(String, u64)> = found["traces"]
        .as_array()
        .unwrap_or_else(|| panic!("traces in {found}"))
        .iter()
        .map(|t| {
            (
                t["trace_id"].as_str().unwrap().to_string(),
                t["span_count"].as_u64().unwrap(),
            )
        })
        .collect();
    ids.sort();
    let mut expected = vec![(run.trace_id.clone(), 4), (run.linked_trace_id.clone(), 1)];
    expected.sort();
    assert_eq!(ids, expected, "{found}");
}

#[test]
fn node_sdk_over_otlp_http_json_round_trips() {
    check("json", None);
}

#[test]
fn node_sdk_over_otlp_http_json_gzip_round_trips() {
    check("json", Some("gzip"));
}

#[test]
fn node_sdk_over_otlp_http_protobuf_round_trips() {
    check("proto", None);
}

#[test]
fn node_sdk_over_otlp_grpc_round_trips() {
    check("grpc", None);
}

/// NaN and the infinities are valid double attribute values: the SDK exports them as they
/// are over protobuf. clew accepts them; the trace must then read back through the query
/// API in the model's form, as the CLI reads it, with the values kept.
#[test]
fn node_sdk_non_finite_doubles_over_protobuf_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let clew = Clew::start(dir.path());
    let endpoint = format!("http://{}/v1/traces", clew.otlp_http);
    let run = run_otel_app("proto", &endpoint, None, "non-finite");

    let url = clew.api(&format!("/api/clew/traces/{}", run.trace_id));
    let body = eventually(Duration::from_secs(20), || {
        let (status, body) = get_json(&url);
        let arrived = body["spans"]
            .as_array()
            .is_some_and(|spans| spans.len() == 1);
        (status == 200 && arrived).then_some(body)
    })
    .unwrap_or_else(|| panic!("the span did not reach the query API: {:?}", get_json(&url)));
    let spans: Vec<Span> = serde_json::from_value(body["spans"].clone()).unwrap_or_else(|e| {
        panic!(
            "{url} does not read back as clew's model ({e}); its attributes: {}",
            body["spans"][0]["attributes"]
        )
    });
    let span = &spans[0];
    assert_eq!(span.name, "calibrate sensor");
    let double = |key: &str| match span.attribute(key) {
        Some(AttributeValue::Double(d)) => *d,
        other => panic!("{key} is not a double: {other:?} in {:?}", span.attributes),
    };
    assert!(double("sensor.reading").is_nan());
    assert_eq!(double("sensor.max"), f64::INFINITY);
    assert_eq!(double("sensor.min"), f64::NEG_INFINITY);
    assert_eq!(double("sensor.gain"), 1.5);
    assert_eq!(span.attribute("sensor.id"), Some(&string("s-7")));

    let shown = clew.cli(&["trace", "show", &run.trace_id]);
    assert!(
        shown.status.success(),
        "clew trace show {}: {}",
        run.trace_id,
        output_text(&shown)
    );
    assert!(String::from_utf8_lossy(&shown.stdout).contains("calibrate sensor"));
}
