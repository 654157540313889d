//! The embedded store against its contract: round trips, search, the service map,
//! retention and reopening.

use std::collections::BTreeSet;
use std::sync::Arc;

use clew_model::{
    AttributeValue, Event, KeyValue, Link, Resource, Scope, Span, SpanId, SpanKind, Status,
    StatusCode, TraceId,
};
use clew_store::{Dependency, FjallStore, Operation, SpanStore, TraceQuery};

const SEC: u64 = 1_000_000_000;
const MS: u64 = 1_000_000;
/// A fixed "now" (2023-11-14T22:13:20Z) so tests do not depend on the clock.
const T0: u64 = 1_700_000_000 * SEC;

fn tid(n: u64) -> TraceId {
    let mut b = [0u8; 16];
    b[0] = 0xaa;
    b[8..].copy_from_slice(&n.to_be_bytes());
    TraceId(b)
}

fn sid(n: u64) -> SpanId {
    SpanId((n | 0x1000_0000_0000_0000).to_be_bytes())
}

fn resource(service: &str) -> Arc<Resource> {
    Arc::new(Resource {
        attributes: vec![
            KeyValue::new("service.name", service),
            KeyValue::new("deployment.environment", "test"),
        ],
    })
}

/// A plain span; tests adjust the fields they care about.
// One positional argument per column keeps the fixtures readable as tables.
#[allow(clippy::too_many_arguments)]
fn span(
    trace: u64,
    id: u64,
    parent: Option<u64>,
    res: &Arc<Resource>,
    name: &str,
    kind: SpanKind,
    start: u64,
    duration: u64,
) -> Span {
    Span {
        trace_id: tid(trace),
        span_id: sid(id),
        parent_span_id: parent.map(sid),
        trace_state: String::new(),
        name: name.to_string(),
        kind,
        start_unix_nano: start,
        end_unix_nano: start + duration,
        attributes: Vec::new(),
        events: Vec::new(),
        links: Vec::new(),
        status: Status::default(),
        resource: Arc::clone(res),
        scope: Scope::default(),
        flags: 1,
    }
}

fn open() -> (tempfile::TempDir, FjallStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = FjallStore::open(&dir.path().join("spans")).unwrap();
    (dir, store)
}

fn sorted(mut spans: Vec<Span>) -> Vec<Span> {
    spans.sort_by_key(|s| s.span_id);
    spans
}

fn find(store: &FjallStore, q: TraceQuery) -> Vec<TraceId> {
    store.find_traces(&q).unwrap()
}

#[test]
fn the_store_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<FjallStore>();
    let (_dir, store) = open();
    let _: Arc<dyn SpanStore> = Arc::new(store);
}

#[test]
fn every_field_survives_a_round_trip() {
    let (_dir, store) = open();
    let res = Arc::new(Resource {
        attributes: vec![
            KeyValue::new("service.name", "drone"),
            KeyValue::new("host.name", "hangar-7"),
            KeyValue::new("process.pid", 4242i64),
        ],
    });
    let mut root = span(
        1,
        1,
        None,
        &res,
        "intercept",
        SpanKind::Server,
        T0,
        250 * MS,
    );
    root.trace_state = "vendor=x".into();
    root.flags = 0x101;
    root.scope = Scope {
        name: "clew-sdk".into(),
        version: "0.1.0".into(),
    };
    root.status = Status {
        code: StatusCode::Error,
        message: "target lost".into(),
    };
    root.attributes = vec![
        KeyValue::new("text", "héllo"),
        KeyValue::new("empty", ""),
        KeyValue::new("yes", true),
        KeyValue::new("no", false),
        KeyValue::new("neg", -17i64),
        KeyValue::new("big", i64::MAX),
        KeyValue::new("small", i64::MIN),
        KeyValue::new("ratio", 94.5f64),
        KeyValue::new("nan-ish", f64::NEG_INFINITY),
        KeyValue {
            key: "raw".into(),
            value: AttributeValue::Bytes(vec![0, 1, 254, 255]),
        },
        KeyValue {
            key: "list".into(),
            value: AttributeValue::Array(vec![
                AttributeValue::Int(1),
                AttributeValue::String("two".into()),
                AttributeValue::Array(vec![AttributeValue::Bool(true)]),
            ]),
        },
        KeyValue {
            key: "map".into(),
            value: AttributeValue::Map(vec![
                KeyValue::new("inner", "v"),
                KeyValue {
                    key: "deeper".into(),
                    value: AttributeValue::Map(vec![KeyValue::new("x", 1.5f64)]),
                },
            ]),
        },
        // The same key twice: order and duplicates are the sender's, kept as sent.
        KeyValue::new("text", "again"),
    ];
    root.events = vec![
        Event {
            time_unix_nano: T0 + 5 * MS,
            name: "locked".into(),
            attributes: vec![KeyValue::new("bearing", 271i64)],
        },
        Event {
            // Before the span's start: clock skew happens and must round-trip.
            time_unix_nano: T0 - 3,
            name: "early".into(),
            attributes: Vec::new(),
        },
    ];
    let mut child = span(
        1,
        2,
        Some(1),
        &res,
        "track",
        SpanKind::Internal,
        T0 + MS,
        10 * MS,
    );
    child.links = vec![
        Link {
            trace_id: tid(1),
            span_id: sid(1),
            trace_state: String::new(),
            attributes: Vec::new(),
        },
        Link {
            trace_id: tid(99),
            span_id: sid(7),
            trace_state: "k=v".into(),
            attributes: vec![KeyValue::new("why", "follows")],
        },
    ];
    // A parent that is not in the same write.
    let orphan = span(
        1,
        3,
        Some(12345),
        &res,
        "late",
        SpanKind::Client,
        T0 + 2 * MS,
        0,
    );
    // An end before the start is kept as sent, not "fixed".
    let mut skewed = span(
        1,
        4,
        Some(2),
        &res,
        "skewed",
        SpanKind::Unspecified,
        T0 + 3 * MS,
        0,
    );
    skewed.end_unix_nano = T0 + 3 * MS - 500;

    let written = vec![root, child, orphan, skewed];
    store.write(&written).unwrap();
    let read = store.trace(tid(1)).unwrap().expect("the trace is stored");
    assert_eq!(sorted(read), sorted(written));
    assert_eq!(store.trace(tid(2)).unwrap(), None);
}

#[test]
fn spans_of_one_trace_written_apart_are_read_together() {
    let (_dir, store) = open();
    let front = resource("frontend");
    let back = resource("backend");
    let a = span(1, 1, None, &front, "GET /", SpanKind::Server, T0, 100 * MS);
    let b = span(
        1,
        2,
        Some(1),
        &front,
        "call",
        SpanKind::Client,
        T0 + MS,
        50 * MS,
    );
    let c = span(
        1,
        3,
        Some(2),
        &back,
        "handle",
        SpanKind::Server,
        T0 + 2 * MS,
        40 * MS,
    );
    // Far apart in time, so the same service's spans land in different groups.
    let d = span(
        1,
        4,
        Some(1),
        &front,
        "later",
        SpanKind::Internal,
        T0 + 60 * SEC,
        MS,
    );
    store.write(&[a.clone(), b.clone()]).unwrap();
    store.write(&[c.clone(), d.clone()]).unwrap();
    let read = store.trace(tid(1)).unwrap().unwrap();
    assert_eq!(sorted(read), sorted(vec![a, b, c, d]));
}

#[test]
fn rewriting_a_span_keeps_the_last_version() {
    let (_dir, store) = open();
    let res = resource("svc");
    let v1 = span(1, 1, None, &res, "first", SpanKind::Server, T0, MS);
    let mut v2 = v1.clone();
    v2.name = "second".into();
    v2.attributes = vec![KeyValue::new("v", 2i64)];
    store.write(std::slice::from_ref(&v1)).unwrap();
    store.write(std::slice::from_ref(&v2)).unwrap();
    assert_eq!(store.trace(tid(1)).unwrap().unwrap(), vec![v2.clone()]);

    // Within one call, the last copy wins too.
    let mut v3 = v2.clone();
    v3.name = "third".into();
    store.write(&[v2, v3.clone()]).unwrap();
    assert_eq!(store.trace(tid(1)).unwrap().unwrap(), vec![v3]);
}

#[test]
fn the_last_write_wins_however_many_writes_came_between() {
    let (_dir, store) = open();
    let res = resource("svc");
    let filler = |n: u64| span(1000 + n, 1, None, &res, "filler", SpanKind::Server, T0, MS);
    let v1 = span(1, 1, None, &res, "first", SpanKind::Server, T0, MS);
    let mut v2 = v1.clone();
    v2.name = "second".into();
    // Write sequence numbers 129 and 256 are chosen because their compact encodings
    // sort the other way round.
    for n in 0..128 {
        store.write(&[filler(n)]).unwrap();
    }
    store.write(std::slice::from_ref(&v1)).unwrap();
    for n in 128..254 {
        store.write(&[filler(n)]).unwrap();
    }
    store.write(std::slice::from_ref(&v2)).unwrap();
    assert_eq!(store.trace(tid(1)).unwrap().unwrap(), vec![v2]);
}

#[test]
fn spans_of_one_service_keep_their_own_resources() {
    let (_dir, store) = open();
    let a = Arc::new(Resource {
        attributes: vec![
            KeyValue::new("service.name", "api"),
            KeyValue::new("host.name", "a"),
        ],
    });
    let b = Arc::new(Resource {
        attributes: vec![
            KeyValue::new("service.name", "api"),
            KeyValue::new("host.name", "b"),
        ],
    });
    // Equal content behind another pointer must map to the same stored resource.
    let a_again = Arc::new((*a).clone());
    let spans = vec![
        span(1, 1, None, &a, "x", SpanKind::Server, T0, MS),
        span(1, 2, Some(1), &b, "y", SpanKind::Server, T0 + 1, MS),
        span(1, 3, Some(1), &a_again, "z", SpanKind::Server, T0 + 2, MS),
    ];
    store.write(&spans).unwrap();
    let read = sorted(store.trace(tid(1)).unwrap().unwrap());
    assert_eq!(read, spans);
    assert_eq!(read[1].resource.attributes[1].value.to_text(), "b");
}

/// Three traces over two services, used by the search tests.
fn search_fixture(store: &FjallStore) {
    let front = resource("frontend");
    let back = Arc::new(Resource {
        attributes: vec![
            KeyValue::new("service.name", "backend"),
            KeyValue::new("region", "eu-north"),
        ],
    });
    // Trace 1, oldest: a slow checkout.
    let mut t1 = vec![
        span(
            1,
            1,
            None,
            &front,
            "GET /checkout",
            SpanKind::Server,
            T0,
            900 * MS,
        ),
        span(
            1,
            2,
            Some(1),
            &front,
            "POST /pay",
            SpanKind::Client,
            T0 + 10 * MS,
            800 * MS,
        ),
        span(
            1,
            3,
            Some(2),
            &back,
            "pay",
            SpanKind::Server,
            T0 + 20 * MS,
            700 * MS,
        ),
    ];
    t1[0].attributes = vec![KeyValue::new("http.status_code", 500i64)];
    t1[2].attributes = vec![KeyValue::new("customer", "alice")];
    // Trace 2: a fast checkout, 10 s later.
    let mut t2 = vec![
        span(
            2,
            1,
            None,
            &front,
            "GET /checkout",
            SpanKind::Server,
            T0 + 10 * SEC,
            30 * MS,
        ),
        span(
            2,
            2,
            Some(1),
            &front,
            "POST /pay",
            SpanKind::Client,
            T0 + 10 * SEC + MS,
            20 * MS,
        ),
        span(
            2,
            3,
            Some(2),
            &back,
            "pay",
            SpanKind::Server,
            T0 + 10 * SEC + 2 * MS,
            10 * MS,
        ),
    ];
    t2[0].attributes = vec![KeyValue::new("http.status_code", 200i64)];
    t2[2].attributes = vec![KeyValue::new("customer", "bob")];
    // Trace 3, newest: only the frontend, another operation.
    let t3 = vec![span(
        3,
        1,
        None,
        &front,
        "GET /",
        SpanKind::Server,
        T0 + 20 * SEC,
        5 * MS,
    )];
    store.write(&t1).unwrap();
    store.write(&[t2, t3].concat()).unwrap();
}

#[test]
fn search_by_service_operation_and_kind() {
    let (_dir, store) = open();
    search_fixture(&store);
    let q = |f: fn(&mut TraceQuery)| {
        let mut q = TraceQuery::default();
        f(&mut q);
        q
    };
    assert_eq!(
        find(&store, q(|q| q.service = Some("frontend".into()))),
        vec![tid(3), tid(2), tid(1)],
        "newest first"
    );
    assert_eq!(
        find(&store, q(|q| q.service = Some("backend".into()))),
        vec![tid(2), tid(1)]
    );
    assert_eq!(
        find(&store, q(|q| q.service = Some("nobody".into()))),
        Vec::<TraceId>::new()
    );
    assert_eq!(
        find(
            &store,
            q(|q| {
                q.service = Some("frontend".into());
                q.operation = Some("GET /checkout".into());
            })
        ),
        vec![tid(2), tid(1)]
    );
    assert_eq!(
        find(
            &store,
            q(|q| {
                q.service = Some("frontend".into());
                q.span_kind = Some(SpanKind::Client);
            })
        ),
        vec![tid(2), tid(1)]
    );
    // The operation exists, but in the other service: the same span must satisfy both.
    assert_eq!(
        find(
            &store,
            q(|q| {
                q.service = Some("frontend".into());
                q.operation = Some("pay".into());
            })
        ),
        Vec::<TraceId>::new()
    );
    // No service: every service is searched.
    assert_eq!(
        find(&store, q(|q| q.operation = Some("pay".into()))),
        vec![tid(2), tid(1)]
    );
    assert_eq!(
        find(&store, TraceQuery::default()),
        vec![tid(3), tid(2), tid(1)]
    );
}

#[test]
fn search_by_duration_time_and_attributes() {
    let (_dir, store) = open();
    search_fixture(&store);
    let frontend = |f: &dyn Fn(&mut TraceQuery)| {
        let mut q = TraceQuery {
            service: Some("frontend".into()),
            ..TraceQuery::default()
        };
        f(&mut q);
        find(&store, q)
    };
    assert_eq!(
        frontend(&|q| q.min_duration_nanos = Some(500 * MS)),
        vec![tid(1)]
    );
    assert_eq!(
        frontend(&|q| q.max_duration_nanos = Some(25 * MS)),
        vec![tid(3), tid(2)]
    );
    assert_eq!(
        frontend(&|q| {
            q.min_duration_nanos = Some(20 * MS);
            q.max_duration_nanos = Some(30 * MS);
        }),
        vec![tid(2)]
    );
    assert_eq!(
        frontend(&|q| {
            q.start_min_unix_nano = Some(T0 + 5 * SEC);
            q.start_max_unix_nano = Some(T0 + 15 * SEC);
        }),
        vec![tid(2)]
    );
    assert_eq!(
        frontend(&|q| q.start_max_unix_nano = Some(T0 + 10 * SEC)),
        vec![tid(2), tid(1)],
        "the range end is inclusive"
    );
    assert_eq!(
        frontend(&|q| q.start_min_unix_nano = Some(T0 + 10 * SEC + MS)),
        vec![tid(3), tid(2)],
        "trace 2 matches through its second span"
    );
    assert_eq!(
        frontend(&|q| {
            q.start_min_unix_nano = Some(T0 + 30 * SEC);
        }),
        Vec::<TraceId>::new()
    );
    assert_eq!(
        frontend(&|q| q.attributes = vec![("http.status_code".into(), "500".into())]),
        vec![tid(1)]
    );
    // Span attribute and duration on the same span; the attribute's span is fast.
    assert_eq!(
        frontend(&|q| {
            q.attributes = vec![("http.status_code".into(), "200".into())];
            q.min_duration_nanos = Some(25 * MS);
        }),
        vec![tid(2)]
    );
    assert_eq!(
        frontend(&|q| {
            q.attributes = vec![("http.status_code".into(), "200".into())];
            q.min_duration_nanos = Some(31 * MS);
        }),
        Vec::<TraceId>::new()
    );
    // Resource attributes count too, and only for the service that has them.
    let by_region = |service: &str| {
        find(
            &store,
            TraceQuery {
                service: Some(service.into()),
                attributes: vec![("region".into(), "eu-north".into())],
                ..TraceQuery::default()
            },
        )
    };
    assert_eq!(by_region("backend"), vec![tid(2), tid(1)]);
    assert_eq!(by_region("frontend"), Vec::<TraceId>::new());
    assert_eq!(
        find(
            &store,
            TraceQuery {
                attributes: vec![
                    ("region".into(), "eu-north".into()),
                    ("customer".into(), "alice".into())
                ],
                ..TraceQuery::default()
            }
        ),
        vec![tid(1)]
    );
}

#[test]
fn search_returns_distinct_traces_up_to_the_limit() {
    let (_dir, store) = open();
    let res = resource("svc");
    let mut spans = Vec::new();
    for t in 0..130u64 {
        // Several matching spans per trace: the trace must still appear once.
        for s in 0..3u64 {
            let parent = (s > 0).then_some(1);
            spans.push(span(
                t,
                s + 1,
                parent,
                &res,
                "op",
                SpanKind::Internal,
                T0 + t * SEC + s * MS,
                MS,
            ));
        }
    }
    store.write(&spans).unwrap();
    let q = |limit| TraceQuery {
        service: Some("svc".into()),
        limit,
        ..TraceQuery::default()
    };
    let five = find(&store, q(5));
    assert_eq!(five, (125..130).rev().map(tid).collect::<Vec<_>>());
    let default = find(&store, q(0));
    assert_eq!(default.len(), 100, "limit 0 means Jaeger's default of 100");
    assert_eq!(default.iter().collect::<BTreeSet<_>>().len(), 100);
    assert_eq!(default[0], tid(129));
    assert_eq!(find(&store, q(1000)).len(), 130);
}

#[test]
fn ranking_uses_the_matching_span_not_the_group() {
    let (_dir, store) = open();
    let res = resource("svc");
    // Trace 1's group is keyed at 100 s (its newest span) but its "b" span is at 95 s;
    // trace 2's "b" span at 97 s is newer, though its group is keyed earlier.
    store
        .write(&[
            span(1, 1, None, &res, "a", SpanKind::Server, T0 + 100 * SEC, MS),
            span(
                1,
                2,
                Some(1),
                &res,
                "b",
                SpanKind::Server,
                T0 + 95 * SEC,
                MS,
            ),
            span(2, 1, None, &res, "b", SpanKind::Server, T0 + 97 * SEC, MS),
        ])
        .unwrap();
    let q = TraceQuery {
        service: Some("svc".into()),
        operation: Some("b".into()),
        limit: 1,
        ..TraceQuery::default()
    };
    assert_eq!(find(&store, q), vec![tid(2)]);
}

#[test]
fn spans_far_apart_in_one_trace_are_found_by_either_end() {
    let (_dir, store) = open();
    let res = resource("batch");
    store
        .write(&[
            span(1, 1, None, &res, "job", SpanKind::Internal, T0, 120 * SEC),
            span(
                1,
                2,
                Some(1),
                &res,
                "step",
                SpanKind::Internal,
                T0 + 100 * SEC,
                SEC,
            ),
        ])
        .unwrap();
    let around = |t: u64, op: &str| {
        find(
            &store,
            TraceQuery {
                service: Some("batch".into()),
                operation: Some(op.into()),
                start_min_unix_nano: Some(t - SEC),
                start_max_unix_nano: Some(t + SEC),
                ..TraceQuery::default()
            },
        )
    };
    assert_eq!(around(T0, "job"), vec![tid(1)]);
    assert_eq!(around(T0 + 100 * SEC, "step"), vec![tid(1)]);
    assert_eq!(around(T0 + 50 * SEC, "job"), Vec::<TraceId>::new());
}

#[test]
fn services_and_operations_are_listed_sorted() {
    let (_dir, store) = open();
    search_fixture(&store);
    assert_eq!(store.services().unwrap(), vec!["backend", "frontend"]);
    let op = |name: &str, kind| Operation {
        name: name.into(),
        kind,
    };
    assert_eq!(
        store.operations("frontend").unwrap(),
        vec![
            op("GET /", SpanKind::Server),
            op("GET /checkout", SpanKind::Server),
            op("POST /pay", SpanKind::Client),
        ]
    );
    // One name with two kinds is two operations.
    let res = resource("backend");
    store
        .write(&[span(9, 1, None, &res, "pay", SpanKind::Internal, T0, 1)])
        .unwrap();
    assert_eq!(
        store.operations("backend").unwrap(),
        vec![op("pay", SpanKind::Internal), op("pay", SpanKind::Server)]
    );
    assert_eq!(store.operations("nobody").unwrap(), Vec::<Operation>::new());
}

fn dep(parent: &str, child: &str, channel: Option<&str>, calls: u64, errors: u64) -> Dependency {
    Dependency {
        parent: parent.into(),
        child: child.into(),
        channel: channel.map(str::to_string),
        call_count: calls,
        error_count: errors,
    }
}

fn all_deps(store: &FjallStore) -> Vec<Dependency> {
    store.dependencies(0, u64::MAX / 2).unwrap()
}

/// A CLIENT span in `caller` and the SERVER span it caused in `callee`.
fn call(trace: u64, caller: &Arc<Resource>, callee: &Arc<Resource>, error: bool) -> [Span; 2] {
    let client = span(
        trace,
        1,
        None,
        caller,
        "call",
        SpanKind::Client,
        T0,
        10 * MS,
    );
    let mut server = span(
        trace,
        2,
        Some(1),
        callee,
        "serve",
        SpanKind::Server,
        T0 + MS,
        8 * MS,
    );
    if error {
        server.status.code = StatusCode::Error;
    }
    [client, server]
}

#[test]
fn client_server_edges_are_counted_in_either_arrival_order() {
    let (_dir, store) = open();
    let (a, b) = (resource("a"), resource("b"));

    let [c1, s1] = call(1, &a, &b, false);
    store.write(&[c1, s1]).unwrap();
    assert_eq!(all_deps(&store), vec![dep("a", "b", None, 1, 0)]);

    // Parent first, child in a later write.
    let [c2, s2] = call(2, &a, &b, true);
    store.write(&[c2]).unwrap();
    store.write(&[s2]).unwrap();
    assert_eq!(all_deps(&store), vec![dep("a", "b", None, 2, 1)]);

    // Child first: nothing until the parent arrives.
    let [c3, s3] = call(3, &a, &b, false);
    store.write(&[s3]).unwrap();
    assert_eq!(all_deps(&store), vec![dep("a", "b", None, 2, 1)]);
    store.write(&[c3]).unwrap();
    assert_eq!(all_deps(&store), vec![dep("a", "b", None, 3, 1)]);

    // Same service: no edge.
    let [c4, s4] = call(4, &a, &a, false);
    store.write(&[c4, s4]).unwrap();
    assert_eq!(all_deps(&store), vec![dep("a", "b", None, 3, 1)]);
}

#[test]
fn rewrites_never_count_an_edge_twice() {
    let (_dir, store) = open();
    let (a, b) = (resource("a"), resource("b"));
    let [c1, s1] = call(1, &a, &b, false);
    // A client retrying a whole request.
    store.write(&[c1.clone(), s1.clone()]).unwrap();
    store.write(&[c1.clone(), s1.clone()]).unwrap();
    store.write(std::slice::from_ref(&s1)).unwrap();
    store.write(std::slice::from_ref(&c1)).unwrap();
    assert_eq!(all_deps(&store), vec![dep("a", "b", None, 1, 0)]);

    // Child first, written twice while waiting, then the parent twice.
    let [c2, s2] = call(2, &a, &b, false);
    store.write(std::slice::from_ref(&s2)).unwrap();
    store.write(std::slice::from_ref(&s2)).unwrap();
    store.write(std::slice::from_ref(&c2)).unwrap();
    store.write(&[c2, s2]).unwrap();
    assert_eq!(all_deps(&store), vec![dep("a", "b", None, 2, 0)]);
}

#[test]
fn concurrent_writers_and_readers_agree() {
    let (_dir, store) = open();
    let store = Arc::new(store);
    let (a, b) = (resource("a"), resource("b"));
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let (store, a, b) = (Arc::clone(&store), Arc::clone(&a), Arc::clone(&b));
            std::thread::spawn(move || {
                for i in 0..15u64 {
                    let trace = t * 100 + i;
                    let [client, server] = call(trace, &a, &b, false);
                    // Alternate which end arrives first.
                    let (first, second) = if i % 2 == 0 {
                        (client, server)
                    } else {
                        (server, client)
                    };
                    store.write(&[first]).unwrap();
                    store.write(&[second]).unwrap();
                    assert_eq!(store.trace(tid(trace)).unwrap().unwrap().len(), 2);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(all_deps(&store), vec![dep("a", "b", None, 60, 0)]);
    let q = TraceQuery {
        service: Some("b".into()),
        limit: 1000,
        ..TraceQuery::default()
    };
    assert_eq!(find(&store, q).len(), 60);
}

#[test]
fn producer_consumer_edges_carry_the_channel() {
    let (_dir, store) = open();
    let (radar, tracker) = (resource("radar"), resource("tracker"));
    let mut produce = span(
        1,
        1,
        None,
        &radar,
        "tracks publish",
        SpanKind::Producer,
        T0,
        MS,
    );
    produce.attributes = vec![KeyValue::new("messaging.destination.name", "tracks")];
    let mut consume = span(
        1,
        2,
        Some(1),
        &tracker,
        "tracks process",
        SpanKind::Consumer,
        T0 + 2 * MS,
        MS,
    );
    consume.attributes = vec![KeyValue::new("messaging.destination", "tracks")];
    // Consumer first, to go through the waiting path.
    store.write(std::slice::from_ref(&consume)).unwrap();
    store.write(std::slice::from_ref(&produce)).unwrap();

    // A second consumer whose span lacks the destination: the producer's is used.
    let hud = resource("hud");
    let fanout = span(
        1,
        3,
        Some(1),
        &hud,
        "tracks process",
        SpanKind::Consumer,
        T0 + 3 * MS,
        MS,
    );
    store.write(&[fanout]).unwrap();
    assert_eq!(
        all_deps(&store),
        vec![
            dep("radar", "hud", Some("tracks"), 1, 0),
            dep("radar", "tracker", Some("tracks"), 1, 0),
        ]
    );
}

#[test]
fn batch_consumers_link_to_their_producers() {
    let (_dir, store) = open();
    let (sensor, fuser) = (resource("sensor"), resource("fuser"));
    let producer = |trace| {
        let mut p = span(trace, 1, None, &sensor, "send", SpanKind::Producer, T0, MS);
        p.attributes = vec![KeyValue::new("messaging.destination.name", "readings")];
        p
    };
    let mut batch = span(
        10,
        1,
        None,
        &fuser,
        "receive",
        SpanKind::Consumer,
        T0 + SEC,
        MS,
    );
    batch.attributes = vec![KeyValue::new("messaging.destination.name", "readings")];
    batch.links = [1, 2, 3]
        .into_iter()
        .map(|t| Link {
            trace_id: tid(t),
            span_id: sid(1),
            trace_state: String::new(),
            attributes: Vec::new(),
        })
        .collect();
    // Producer 1 is stored before the consumer, producer 2 arrives with it, producer 3
    // after it.
    store.write(&[producer(1)]).unwrap();
    store.write(&[batch.clone(), producer(2)]).unwrap();
    assert_eq!(
        all_deps(&store),
        vec![dep("sensor", "fuser", Some("readings"), 2, 0)]
    );
    store.write(&[producer(3)]).unwrap();
    store.write(&[batch, producer(3)]).unwrap();
    assert_eq!(
        all_deps(&store),
        vec![dep("sensor", "fuser", Some("readings"), 3, 0)]
    );

    // Links on a span that is not a consumer are not edges.
    let mut internal = span(11, 1, None, &fuser, "merge", SpanKind::Internal, T0, MS);
    internal.links = vec![Link {
        trace_id: tid(1),
        span_id: sid(1),
        trace_state: String::new(),
        attributes: Vec::new(),
    }];
    store.write(&[internal]).unwrap();
    assert_eq!(
        all_deps(&store),
        vec![dep("sensor", "fuser", Some("readings"), 3, 0)]
    );
}

#[test]
fn dependencies_are_filtered_by_the_childs_start() {
    let (_dir, store) = open();
    let (a, b) = (resource("a"), resource("b"));
    let [c1, s1] = call(1, &a, &b, false);
    let mut c2 = c1.clone();
    let mut s2 = s1.clone();
    c2.trace_id = tid(2);
    s2.trace_id = tid(2);
    c2.start_unix_nano += 5 * 3600 * SEC;
    s2.start_unix_nano += 5 * 3600 * SEC;
    store.write(&[c1, s1.clone(), c2, s2.clone()]).unwrap();
    let early = store
        .dependencies(s1.start_unix_nano, s1.start_unix_nano + 60 * SEC)
        .unwrap();
    assert_eq!(early, vec![dep("a", "b", None, 1, 0)]);
    let both = store
        .dependencies(s1.start_unix_nano, s2.start_unix_nano)
        .unwrap();
    assert_eq!(both, vec![dep("a", "b", None, 2, 0)]);
    assert_eq!(store.dependencies(0, T0 - 3600 * SEC).unwrap(), vec![]);
}

#[test]
fn purge_deletes_whole_traces_whose_newest_span_is_old() {
    let (_dir, store) = open();
    let (a, b) = (resource("a"), resource("b"));
    let old = call(1, &a, &b, false);
    let mut recent = call(2, &a, &b, false);
    for s in &mut recent {
        s.start_unix_nano += 48 * 3600 * SEC;
        s.end_unix_nano += 48 * 3600 * SEC;
    }
    // Trace 3 began long ago but has a recent span: it stays, all of it.
    let res = resource("a");
    let long = [
        span(
            3,
            1,
            None,
            &res,
            "long",
            SpanKind::Server,
            T0,
            49 * 3600 * SEC,
        ),
        span(
            3,
            2,
            Some(1),
            &res,
            "tail",
            SpanKind::Internal,
            T0 + 48 * 3600 * SEC,
            SEC,
        ),
    ];
    store
        .write(&[old.to_vec(), recent.to_vec(), long.to_vec()].concat())
        .unwrap();
    // A child that never gets its parent, started long ago.
    let orphan = span(4, 2, Some(77), &b, "orphan", SpanKind::Server, T0, MS);
    store.write(&[orphan]).unwrap();

    let cutoff = T0 + 24 * 3600 * SEC;
    assert_eq!(
        store.purge_older_than(cutoff).unwrap(),
        3,
        "trace 1's two spans and the orphan"
    );
    assert_eq!(store.trace(tid(1)).unwrap(), None);
    assert_eq!(store.trace(tid(4)).unwrap(), None);
    assert_eq!(store.trace(tid(2)).unwrap().unwrap().len(), 2);
    assert_eq!(store.trace(tid(3)).unwrap().unwrap().len(), 2);
    let q = TraceQuery {
        service: Some("a".into()),
        ..TraceQuery::default()
    };
    assert_eq!(find(&store, q), vec![tid(3), tid(2)]);
    assert_eq!(
        all_deps(&store),
        vec![dep("a", "b", None, 1, 0)],
        "old hours' counters go with their spans"
    );
    // Nothing more to purge; the orphan's parent arriving later makes no edge.
    assert_eq!(store.purge_older_than(cutoff).unwrap(), 0);
    store
        .write(&[span(
            4,
            77,
            None,
            &a,
            "late parent",
            SpanKind::Client,
            T0 + 48 * 3600 * SEC,
            MS,
        )])
        .unwrap();
    assert_eq!(all_deps(&store), vec![dep("a", "b", None, 1, 0)]);
}

#[test]
fn data_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spans");
    let (a, b) = (resource("a"), resource("b"));
    let [client, server] = call(1, &a, &b, false);
    let [client2, server2] = call(2, &a, &b, false);
    {
        let store = FjallStore::open(&path).unwrap();
        store.write(&[client.clone(), server.clone()]).unwrap();
        // A child still waiting for its parent when the process goes away.
        store.write(std::slice::from_ref(&server2)).unwrap();
    }
    let store = FjallStore::open(&path).unwrap();
    assert_eq!(
        sorted(store.trace(tid(1)).unwrap().unwrap()),
        vec![client.clone(), server.clone()]
    );
    assert_eq!(store.services().unwrap(), vec!["a", "b"]);
    assert_eq!(store.operations("b").unwrap().len(), 1);
    store.write(std::slice::from_ref(&client2)).unwrap();
    assert_eq!(all_deps(&store), vec![dep("a", "b", None, 2, 0)]);
    // Rewrites after reopening are still recognised, and known services and resources
    // are reused rather than registered again.
    store.write(&[client, server]).unwrap();
    assert_eq!(all_deps(&store), vec![dep("a", "b", None, 2, 0)]);
    let c = resource("c");
    store
        .write(&[span(5, 1, None, &c, "x", SpanKind::Server, T0, MS)])
        .unwrap();
    assert_eq!(store.services().unwrap(), vec!["a", "b", "c"]);
    drop(store);

    let store = FjallStore::open(&path).unwrap();
    assert_eq!(store.services().unwrap(), vec!["a", "b", "c"]);
    assert_eq!(store.trace(tid(5)).unwrap().unwrap()[0].service_name(), "c");
    let q = TraceQuery {
        service: Some("b".into()),
        ..TraceQuery::default()
    };
    assert_eq!(find(&store, q), vec![tid(2), tid(1)]);
}

#[test]
fn recurring_strings_read_back_after_reopening() {
    // Strings seen in many groups move to the store-wide dictionary; groups written
    // before, during and after that must all still decode, also after a restart.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spans");
    let res = resource("svc");
    let make = |t: u64| {
        let mut s = span(
            t,
            1,
            None,
            &res,
            "GET /recurring",
            SpanKind::Server,
            T0 + t * MS,
            MS,
        );
        s.attributes = vec![
            KeyValue::new("http.route", "/recurring"),
            KeyValue::new("unique", format!("value-{t}")),
        ];
        s.scope = Scope {
            name: "lib".into(),
            version: "2.0".into(),
        };
        s
    };
    let written: Vec<Span> = (0..40).map(make).collect();
    {
        let store = FjallStore::open(&path).unwrap();
        for s in &written[..35] {
            store.write(std::slice::from_ref(s)).unwrap();
        }
    }
    let store = FjallStore::open(&path).unwrap();
    // Too few groups for any string to be admitted again: the reopened store must use
    // the dictionary it read from disk.
    store.write(&written[35..]).unwrap();
    for s in &written {
        assert_eq!(store.trace(s.trace_id).unwrap().unwrap(), vec![s.clone()]);
    }
    let q = TraceQuery {
        service: Some("svc".into()),
        operation: Some("GET /recurring".into()),
        attributes: vec![("http.route".into(), "/recurring".into())],
        limit: 100,
        ..TraceQuery::default()
    };
    assert_eq!(find(&store, q).len(), 40);
}

#[test]
fn a_second_open_of_the_same_directory_is_refused() {
    let (dir, _store) = open();
    let err = FjallStore::open(&dir.path().join("spans"))
        .err()
        .expect("locked");
    assert!(err.to_string().contains("another"), "{err}");
}

#[test]
fn an_unusable_directory_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"not a directory").unwrap();
    let err = FjallStore::open(&file.join("spans")).err().expect("fails");
    assert!(
        matches!(err, clew_store::StoreError::DataDir { .. }),
        "{err}"
    );
}
