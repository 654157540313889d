//! Spans that reach the store still in their OTLP wire form ([`SpanBatch::Wire`], as the
//! ingest pipeline hands them over) are stored exactly as the same spans written as model
//! spans: the same traces read back, the same search results, the same service map.

use std::sync::Arc;

use clew_model::{
    AttributeValue, Event, KeyValue, Link, Resource, Scope, Span, SpanId, SpanKind, Status,
    StatusCode, TraceId,
};
use clew_otlp::{Bytes, SpanBatch, receive_protobuf, to_request};
use clew_store::{FjallStore, SpanStore, TraceQuery};
use prost::Message;

const SEC: u64 = 1_000_000_000;
const T0: u64 = 1_700_000_000 * SEC;
const SERVICES: [&str; 4] = ["gateway", "orders", "billing", "mailer"];

fn tid(n: u64) -> TraceId {
    let mut b = [0u8; 16];
    b[0] = 0xbb;
    b[8..].copy_from_slice(&n.to_be_bytes());
    TraceId(b)
}

fn sid(n: u64) -> SpanId {
    SpanId((n | 0x2000_0000_0000_0000).to_be_bytes())
}

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn value(rng: &mut Rng, depth: u32) -> AttributeValue {
    match rng.below(if depth > 1 { 5 } else { 7 }) {
        0 => AttributeValue::String(["red", "blue", "", "ünïcødé"][rng.below(4) as usize].into()),
        1 => AttributeValue::Int(rng.below(1000) as i64 - 500),
        2 => AttributeValue::Bool(rng.below(2) == 0),
        3 => AttributeValue::Double(rng.below(100) as f64 / 8.0),
        4 => AttributeValue::Bytes(vec![rng.below(256) as u8; rng.below(4) as usize]),
        5 => AttributeValue::Array((0..rng.below(3)).map(|_| value(rng, depth + 1)).collect()),
        _ => AttributeValue::Map(
            (0..rng.below(3))
                .map(|i| KeyValue {
                    key: format!("k{i}"),
                    value: value(rng, depth + 1),
                })
                .collect(),
        ),
    }
}

/// Traces across services: calls (CLIENT→SERVER), messages (PRODUCER→CONSUMER with a
/// destination, batch consumers linking to producers), events, errors, scopes, nested
/// attribute values.
fn generate(rng: &mut Rng) -> Vec<Span> {
    let resources: Vec<Arc<Resource>> = SERVICES
        .iter()
        .map(|s| {
            Arc::new(Resource {
                attributes: vec![
                    KeyValue::new("service.name", *s),
                    KeyValue::new("host.name", format!("{s}-1")),
                ],
            })
        })
        .collect();
    let scopes = [
        Scope::default(),
        Scope {
            name: "lib".into(),
            version: "1.2".into(),
        },
    ];
    let kinds = [
        SpanKind::Server,
        SpanKind::Client,
        SpanKind::Internal,
        SpanKind::Producer,
        SpanKind::Consumer,
        SpanKind::Unspecified,
    ];
    let mut spans: Vec<Span> = Vec::new();
    for t in 0..60u64 {
        let start = T0 + rng.below(600) * SEC;
        let n = 1 + rng.below(8);
        for s in 0..n {
            let kind = kinds[rng.below(kinds.len() as u64) as usize];
            let span_start = start + rng.below(20) * SEC / 4;
            let mut attributes: Vec<KeyValue> = (0..rng.below(5))
                .map(|i| KeyValue {
                    key: ["http.route", "user", "db.statement", "k"][i as usize % 4].into(),
                    value: value(rng, 0),
                })
                .collect();
            if matches!(kind, SpanKind::Producer | SpanKind::Consumer) && rng.below(2) == 0 {
                attributes.push(KeyValue::new("messaging.destination.name", "orders"));
            }
            let links = if kind == SpanKind::Consumer && s > 0 && rng.below(2) == 0 {
                vec![Link {
                    trace_id: tid(t),
                    span_id: sid(t * 100 + rng.below(s)),
                    trace_state: "ts=1".into(),
                    attributes: vec![KeyValue::new("batch", true)],
                }]
            } else {
                Vec::new()
            };
            let error = rng.below(6) == 0;
            spans.push(Span {
                trace_id: tid(t),
                span_id: sid(t * 100 + s),
                parent_span_id: (s > 0).then(|| sid(t * 100 + rng.below(s))),
                trace_state: if rng.below(5) == 0 {
                    "a=b".into()
                } else {
                    String::new()
                },
                name: ["GET /", "SELECT", "publish", "process"][rng.below(4) as usize].into(),
                kind,
                start_unix_nano: span_start,
                end_unix_nano: span_start + rng.below(SEC),
                attributes,
                events: if error {
                    vec![Event {
                        time_unix_nano: span_start + 5,
                        name: "exception".into(),
                        attributes: vec![KeyValue::new("exception.type", "Timeout")],
                    }]
                } else {
                    Vec::new()
                },
                links,
                status: Status {
                    code: if error {
                        StatusCode::Error
                    } else {
                        StatusCode::Unset
                    },
                    message: if error { "boom".into() } else { String::new() },
                },
                resource: Arc::clone(&resources[rng.below(4) as usize]),
                scope: scopes[rng.below(2) as usize].clone(),
                flags: rng.below(2) as u32,
            });
        }
    }
    spans
}

/// The spans as the OTLP receivers queue them: a protobuf request decoded in place.
fn wire(spans: &[Span]) -> SpanBatch {
    let body = Bytes::from(to_request(spans).encode_to_vec());
    let received = receive_protobuf(body).unwrap();
    assert_eq!(received.rejected, 0);
    assert!(matches!(received.spans, SpanBatch::Wire(_)));
    assert_eq!(received.spans.len(), spans.len());
    received.spans
}

fn open() -> (tempfile::TempDir, FjallStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = FjallStore::open(&dir.path().join("spans")).unwrap();
    (dir, store)
}

/// Everything a reader can see of a store, for the traces in `spans`.
fn snapshot(store: &FjallStore, spans: &[Span]) -> String {
    let mut out = String::new();
    let mut traces: Vec<TraceId> = spans.iter().map(|s| s.trace_id).collect();
    traces.sort();
    traces.dedup();
    for t in &traces {
        out.push_str(&format!("{t:?} {:?}\n", store.trace(*t).unwrap()));
    }
    let services = store.services().unwrap();
    out.push_str(&format!("{services:?}\n"));
    for s in &services {
        out.push_str(&format!("{s} {:?}\n", store.operations(s).unwrap()));
    }
    out.push_str(&format!("{:?}\n", store.dependencies(0, u64::MAX).unwrap()));
    let queries = [
        TraceQuery::default(),
        TraceQuery {
            service: Some("orders".into()),
            ..Default::default()
        },
        TraceQuery {
            service: Some("billing".into()),
            operation: Some("SELECT".into()),
            ..Default::default()
        },
        TraceQuery {
            attributes: vec![("user".into(), "red".into())],
            ..Default::default()
        },
        TraceQuery {
            attributes: vec![("host.name".into(), "mailer-1".into())],
            min_duration_nanos: Some(SEC / 2),
            ..Default::default()
        },
    ];
    for q in &queries {
        out.push_str(&format!("{:?}\n", store.find_traces(q).unwrap()));
    }
    out
}

#[test]
fn wire_batches_store_what_model_spans_store() {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let spans = generate(&mut rng);
    // Several writes, children of a trace sometimes before their parents.
    let mut chunks: Vec<Vec<Span>> = vec![Vec::new(); 5];
    for span in &spans {
        chunks[rng.below(5) as usize].push(span.clone());
    }
    let (_a, model) = open();
    let (_b, wired) = open();
    for chunk in &chunks {
        model.write(chunk).unwrap();
        wired.write_batches(&[wire(chunk)]).unwrap();
    }
    let expected = snapshot(&model, &spans);
    assert_eq!(snapshot(&wired, &spans), expected);
    assert!(expected.contains("Dependency"), "the fixture has edges");
}

#[test]
fn one_write_may_mix_forms_and_the_last_copy_wins() {
    let mut rng = Rng(0x5eed_1234_abcd_0002);
    let spans = generate(&mut rng);
    let (first, second) = spans.split_at(spans.len() / 2);
    // The second half again, changed, as the last copy of those spans.
    let rewritten: Vec<Span> = second
        .iter()
        .map(|s| {
            let mut s = s.clone();
            s.name = "rewritten".into();
            s.attributes.push(KeyValue::new("copy", 2i64));
            s
        })
        .collect();
    let (_a, model) = open();
    let mut all = first.to_vec();
    all.extend_from_slice(second);
    all.extend_from_slice(&rewritten);
    model.write(&all).unwrap();

    let (_b, mixed) = open();
    mixed
        .write_batches(&[
            SpanBatch::Model(first.to_vec()),
            wire(second),
            wire(&rewritten),
        ])
        .unwrap();
    assert_eq!(snapshot(&mixed, &spans), snapshot(&model, &spans));
    let t = rewritten[0].trace_id;
    assert!(
        mixed
            .trace(t)
            .unwrap()
            .unwrap()
            .iter()
            .any(|s| s.name == "rewritten")
    );
}

#[test]
fn the_default_write_batches_makes_model_spans() {
    /// A store that only implements `write`.
    #[derive(Default)]
    struct Recording(std::sync::Mutex<Vec<Span>>);
    impl SpanStore for Recording {
        fn write(&self, spans: &[Span]) -> clew_store::Result<()> {
            self.0.lock().unwrap().extend_from_slice(spans);
            Ok(())
        }
        fn trace(&self, _: TraceId) -> clew_store::Result<Option<Vec<Span>>> {
            Ok(None)
        }
        fn find_traces(&self, _: &TraceQuery) -> clew_store::Result<Vec<TraceId>> {
            Ok(Vec::new())
        }
        fn services(&self) -> clew_store::Result<Vec<String>> {
            Ok(Vec::new())
        }
        fn operations(&self, _: &str) -> clew_store::Result<Vec<clew_store::Operation>> {
            Ok(Vec::new())
        }
        fn dependencies(&self, _: u64, _: u64) -> clew_store::Result<Vec<clew_store::Dependency>> {
            Ok(Vec::new())
        }
        fn purge_older_than(&self, _: u64) -> clew_store::Result<u64> {
            Ok(0)
        }
    }
    let mut rng = Rng(0x5eed_1234_abcd_0003);
    let spans = generate(&mut rng);
    let store = Recording::default();
    store.write_batches(&[wire(&spans)]).unwrap();
    let mut got = store.0.into_inner().unwrap();
    let mut want = spans;
    got.sort_by_key(|s| (s.trace_id, s.span_id));
    want.sort_by_key(|s| (s.trace_id, s.span_id));
    assert_eq!(format!("{got:?}"), format!("{want:?}"));
}

#[test]
fn children_waiting_for_a_parent_are_counted_once_it_comes() {
    // Child first, alone; the parent in a later write; then both again.
    let gateway = Arc::new(Resource::for_service("gateway"));
    let orders = Arc::new(Resource::for_service("orders"));
    let parent = Span {
        trace_id: tid(900),
        span_id: sid(1),
        parent_span_id: None,
        trace_state: String::new(),
        name: "call".into(),
        kind: SpanKind::Client,
        start_unix_nano: T0,
        end_unix_nano: T0 + SEC,
        attributes: Vec::new(),
        events: Vec::new(),
        links: Vec::new(),
        status: Status::default(),
        resource: gateway,
        scope: Scope::default(),
        flags: 0,
    };
    let mut child = parent.clone();
    child.span_id = sid(2);
    child.parent_span_id = Some(sid(1));
    child.kind = SpanKind::Server;
    child.resource = orders;
    let (_d, store) = open();
    store
        .write_batches(&[wire(std::slice::from_ref(&child))])
        .unwrap();
    assert!(store.dependencies(0, u64::MAX).unwrap().is_empty());
    store
        .write_batches(&[wire(std::slice::from_ref(&parent))])
        .unwrap();
    let deps = store.dependencies(0, u64::MAX).unwrap();
    assert_eq!(deps.len(), 1);
    assert_eq!(deps[0].call_count, 1);
    // Written again, neither end is counted twice.
    store
        .write_batches(&[wire(&[parent.clone(), child.clone()])])
        .unwrap();
    assert_eq!(store.dependencies(0, u64::MAX).unwrap()[0].call_count, 1);
    // Retention takes the trace, markers included; the store is then empty.
    store.purge_older_than(T0 + 10 * SEC).unwrap();
    assert_eq!(store.trace(tid(900)).unwrap(), None);
}

#[test]
fn retention_drops_children_that_waited_too_long_for_another_trace() {
    // A batch consumer in one trace links to a producer in another that never came in
    // time; retention deletes the wait with the consumer's trace.
    let producer_res = Arc::new(Resource::for_service("producer"));
    let consumer_res = Arc::new(Resource::for_service("consumer"));
    let producer = Span {
        trace_id: tid(700),
        span_id: sid(1),
        parent_span_id: None,
        trace_state: String::new(),
        name: "publish".into(),
        kind: SpanKind::Producer,
        start_unix_nano: T0 + 3_600 * SEC,
        end_unix_nano: T0 + 3_601 * SEC,
        attributes: Vec::new(),
        events: Vec::new(),
        links: Vec::new(),
        status: Status::default(),
        resource: producer_res,
        scope: Scope::default(),
        flags: 0,
    };
    let mut consumer = producer.clone();
    consumer.trace_id = tid(701);
    consumer.span_id = sid(2);
    consumer.kind = SpanKind::Consumer;
    consumer.name = "process".into();
    consumer.start_unix_nano = T0;
    consumer.end_unix_nano = T0 + SEC;
    consumer.resource = consumer_res;
    consumer.links = vec![Link {
        trace_id: tid(700),
        span_id: sid(1),
        trace_state: String::new(),
        attributes: Vec::new(),
    }];
    let (_d, store) = open();
    store
        .write_batches(&[wire(std::slice::from_ref(&consumer))])
        .unwrap();
    store.purge_older_than(T0 + 60 * SEC).unwrap();
    assert_eq!(store.trace(tid(701)).unwrap(), None);
    // The producer comes at last: the consumer's wait is gone, so no edge is counted.
    store
        .write_batches(&[wire(std::slice::from_ref(&producer))])
        .unwrap();
    assert!(store.dependencies(0, u64::MAX).unwrap().is_empty());
    assert!(store.trace(tid(700)).unwrap().is_some());
    // The same without retention counts the edge once the producer arrives.
    let (_e, kept) = open();
    kept.write_batches(&[wire(std::slice::from_ref(&consumer))])
        .unwrap();
    kept.write_batches(&[wire(std::slice::from_ref(&producer))])
        .unwrap();
    let deps = kept.dependencies(0, u64::MAX).unwrap();
    assert_eq!(deps.len(), 1, "{deps:?}");
    assert_eq!(
        (deps[0].parent.as_str(), deps[0].child.as_str()),
        ("producer", "consumer")
    );
}
