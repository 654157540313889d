//! A small world of traces in a real embedded store, and a way to ask the router about it.
//!
//! - trace A, two services over HTTP: `frontend` SERVER `GET /dispatch` (100 ms, status
//!   OK, scope `frontend-lib` 1.2) → `frontend` CLIENT `HTTP GET /customer` → `customer`
//!   SERVER `GET /customer` (45 ms, ERROR "db timeout", an `exception` event);
//! - trace B, messaging fan-out: `dispatcher` PRODUCER `publish orders` → CONSUMERs in
//!   `worker-a` and `worker-b`;
//! - trace C, `frontend` `GET /health`, 1 ms, an hour ago, linked to A's root span;
//! - trace D, `frontend` `GET /old`, three days ago (outside default search windows);
//! - trace E, `dispatcher` PRODUCER on channel `audit` → `worker-a` CONSUMER.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use clew_model::{
    AttributeValue, Event, KeyValue, Link, Resource, Scope, Span, SpanId, SpanKind, Status,
    StatusCode as SpanStatus, TraceId,
};
use clew_store::{FjallStore, SpanStore};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

pub const MS: u64 = 1_000_000;
pub const HOUR: u64 = 3_600_000 * MS;

pub struct World {
    _dir: tempfile::TempDir,
    pub router: Router,
    /// Every span written, as written.
    pub written: Vec<Span>,
    /// Start of trace A's root span, Unix ns (whole milliseconds, ten minutes ago).
    pub t_a: u64,
    pub t_b: u64,
    pub t_c: u64,
    pub t_d: u64,
    pub t_e: u64,
}

pub fn tid(letter: u8) -> TraceId {
    let mut b = [0u8; 16];
    b[0] = 0x0c;
    b[15] = letter;
    TraceId(b)
}

pub fn sid(letter: u8, n: u8) -> SpanId {
    SpanId([0xab, 0, 0, 0, 0, 0, letter, n])
}

pub fn hex_trace(letter: u8) -> String {
    tid(letter).to_string()
}

pub fn hex_span(letter: u8, n: u8) -> String {
    sid(letter, n).to_string()
}

fn resource(service: &str, extra: &[(&str, &str)]) -> Arc<Resource> {
    let mut attributes = vec![KeyValue::new("service.name", service)];
    attributes.extend(extra.iter().map(|(k, v)| KeyValue::new(*k, *v)));
    Arc::new(Resource { attributes })
}

#[allow(clippy::too_many_arguments)]
fn span(
    trace: u8,
    n: u8,
    parent: Option<u8>,
    resource: &Arc<Resource>,
    name: &str,
    kind: SpanKind,
    start: u64,
    duration: u64,
) -> Span {
    Span {
        trace_id: tid(trace),
        span_id: sid(trace, n),
        parent_span_id: parent.map(|p| sid(trace, p)),
        trace_state: String::new(),
        name: name.to_string(),
        kind,
        start_unix_nano: start,
        end_unix_nano: start + duration,
        attributes: Vec::new(),
        events: Vec::new(),
        links: Vec::new(),
        status: Status::default(),
        resource: Arc::clone(resource),
        scope: Scope::default(),
        flags: 1,
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

pub fn rfc3339(unix_nanos: u64) -> String {
    humantime::format_rfc3339_nanos(UNIX_EPOCH + Duration::from_nanos(unix_nanos)).to_string()
}

pub fn spans(now_ms: u64) -> (Vec<Span>, [u64; 5]) {
    let t_a = (now_ms - 10 * 60 * 1000) * MS;
    let t_b = t_a - 60_000 * MS;
    let t_c = t_a - HOUR + 10 * 60_000 * MS - 1_000 * MS;
    let t_d = t_a - 72 * HOUR;
    let t_e = t_a - 5 * 60_000 * MS;

    let frontend = resource("frontend", &[("telemetry.sdk.language", "rust")]);
    let customer = resource("customer", &[("host.name", "db-host-1")]);
    let dispatcher = resource("dispatcher", &[]);
    let worker_a = resource("worker-a", &[]);
    let worker_b = resource("worker-b", &[]);

    let mut a1 = span(
        b'a',
        1,
        None,
        &frontend,
        "GET /dispatch",
        SpanKind::Server,
        t_a,
        100 * MS,
    );
    a1.attributes = vec![
        KeyValue::new("http.method", "GET"),
        KeyValue::new("http.status_code", 200i64),
    ];
    a1.status = Status {
        code: SpanStatus::Ok,
        message: String::new(),
    };
    a1.scope = Scope {
        name: "frontend-lib".to_string(),
        version: "1.2".to_string(),
    };
    let mut a2 = span(
        b'a',
        2,
        Some(1),
        &frontend,
        "HTTP GET /customer",
        SpanKind::Client,
        t_a + 10 * MS,
        50 * MS,
    );
    a2.attributes = vec![KeyValue::new("peer.service", "customer")];
    a2.scope = a1.scope.clone();
    let mut a3 = span(
        b'a',
        3,
        Some(2),
        &customer,
        "GET /customer",
        SpanKind::Server,
        t_a + 12 * MS,
        45 * MS,
    );
    a3.status = Status {
        code: SpanStatus::Error,
        message: "db timeout".to_string(),
    };
    a3.attributes = vec![
        KeyValue::new(
            "db.rows",
            AttributeValue::Array(vec![1i64.into(), 2i64.into()]),
        ),
        KeyValue::new("ratio", 0.25),
    ];
    a3.events = vec![Event {
        time_unix_nano: t_a + 30 * MS + 1_500,
        name: "exception".to_string(),
        attributes: vec![KeyValue::new("exception.message", "timeout after 30ms")],
    }];

    let mut b1 = span(
        b'b',
        1,
        None,
        &dispatcher,
        "publish orders",
        SpanKind::Producer,
        t_b,
        2 * MS,
    );
    b1.attributes = vec![
        KeyValue::new("messaging.system", "redis"),
        KeyValue::new("messaging.destination.name", "orders"),
    ];
    let mut b2 = span(
        b'b',
        2,
        Some(1),
        &worker_a,
        "process orders",
        SpanKind::Consumer,
        t_b + 5 * MS,
        20 * MS,
    );
    b2.attributes = vec![KeyValue::new("messaging.destination.name", "orders")];
    let mut b3 = span(
        b'b',
        3,
        Some(1),
        &worker_b,
        "process orders",
        SpanKind::Consumer,
        t_b + 6 * MS,
        30 * MS,
    );
    b3.attributes = vec![KeyValue::new("messaging.destination.name", "orders")];

    let mut c1 = span(
        b'c',
        1,
        None,
        &frontend,
        "GET /health",
        SpanKind::Server,
        t_c,
        MS,
    );
    c1.attributes = vec![KeyValue::new("http.method", "GET")];
    c1.links = vec![Link {
        trace_id: tid(b'a'),
        span_id: sid(b'a', 1),
        trace_state: String::new(),
        attributes: Vec::new(),
    }];
    let d1 = span(
        b'd',
        1,
        None,
        &frontend,
        "GET /old",
        SpanKind::Server,
        t_d,
        3 * MS,
    );

    let mut e1 = span(
        b'e',
        1,
        None,
        &dispatcher,
        "publish audit",
        SpanKind::Producer,
        t_e,
        MS,
    );
    e1.attributes = vec![KeyValue::new("messaging.destination.name", "audit")];
    let mut e2 = span(
        b'e',
        2,
        Some(1),
        &worker_a,
        "process audit",
        SpanKind::Consumer,
        t_e + 2 * MS,
        4 * MS,
    );
    e2.attributes = vec![KeyValue::new("messaging.destination.name", "audit")];

    (
        vec![a1, a2, a3, b1, b2, b3, c1, d1, e1, e2],
        [t_a, t_b, t_c, t_d, t_e],
    )
}

pub fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let store = FjallStore::open(&dir.path().join("spans")).unwrap();
    let (all, [t_a, t_b, t_c, t_d, t_e]) = spans(now_ms());
    // Two writes, children first, as spans of one trace often arrive.
    let (first, second) = all.split_at(5);
    store.write(second).unwrap();
    store.write(first).unwrap();
    let store: Arc<dyn SpanStore> = Arc::new(store);
    World {
        _dir: dir,
        router: clew_query::router(store),
        written: all,
        t_a,
        t_b,
        t_c,
        t_d,
        t_e,
    }
}

/// GETs `uri` and returns the status and the JSON body (which every answer must have).
pub async fn get(router: &Router, uri: &str) -> (StatusCode, Value) {
    let response = router
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        content_type.as_deref(),
        Some("application/json"),
        "{uri}: {}",
        String::from_utf8_lossy(&body)
    );
    let json = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{uri}: not JSON ({e}): {}", String::from_utf8_lossy(&body)));
    (status, json)
}

/// Percent-encodes a query-string value.
pub fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A store whose every call fails, for the 500 paths.
pub struct BrokenStore;

impl SpanStore for BrokenStore {
    fn write(&self, _: &[Span]) -> clew_store::Result<()> {
        Err(broken())
    }
    fn trace(&self, _: TraceId) -> clew_store::Result<Option<Vec<Span>>> {
        Err(broken())
    }
    fn find_traces(&self, _: &clew_store::TraceQuery) -> clew_store::Result<Vec<TraceId>> {
        Err(broken())
    }
    fn services(&self) -> clew_store::Result<Vec<String>> {
        Err(broken())
    }
    fn operations(&self, _: &str) -> clew_store::Result<Vec<clew_store::Operation>> {
        Err(broken())
    }
    fn dependencies(&self, _: u64, _: u64) -> clew_store::Result<Vec<clew_store::Dependency>> {
        Err(broken())
    }
    fn purge_older_than(&self, _: u64) -> clew_store::Result<u64> {
        Err(broken())
    }
}

fn broken() -> clew_store::StoreError {
    clew_store::StoreError::Engine("disk on fire".to_string())
}

/// Finds the span with `id` in a Jaeger v1 trace.
pub fn v1_span<'a>(trace: &'a Value, id: &str) -> &'a Value {
    trace["spans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["spanID"] == id)
        .unwrap_or_else(|| panic!("no span {id} in {trace}"))
}

/// The value of tag `key` in a Jaeger tag list, with its type.
pub fn tag<'a>(tags: &'a Value, key: &str) -> Option<(&'a str, &'a Value)> {
    tags.as_array()
        .unwrap()
        .iter()
        .find(|t| t["key"] == key)
        .map(|t| (t["type"].as_str().unwrap(), &t["value"]))
}
