//! Rough figures for the embedded store: write throughput, bytes per span on disk,
//! trace lookup and search latency. Not a benchmark suite (see `clew bench`); run with
//!
//! ```text
//! cargo test --release -p clew-store --test measure -- --ignored --nocapture
//! ```
//!
//! `CLEW_MEASURE_SPANS` sets the number of spans (default 100 000) and
//! `CLEW_MEASURE_SERVICES` the services per trace (default 1). With
//! `CLEW_MEASURE_SPLIT=1` each write holds one service's spans, as when every service
//! exports on its own, so most cross-service parents are found in earlier writes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clew_model::{KeyValue, Resource, Scope, Span, SpanId, SpanKind, Status, TraceId};
use clew_store::{FjallStore, SpanStore, TraceQuery};

/// xorshift64*: deterministic and dependency-free; quality is irrelevant here.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const SPANS_PER_TRACE: u64 = 10;
const ROUTES: [&str; 8] = [
    "/api/users/{id}",
    "/api/orders",
    "/api/orders/{id}",
    "/api/cart",
    "/api/checkout",
    "/health",
    "/api/search",
    "/api/items/{id}",
];
const OPS: [&str; 6] = [
    "SELECT users",
    "SELECT orders",
    "cache get",
    "render",
    "HTTP GET",
    "publish",
];

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Generates traces lazily, so ten million spans need not sit in memory at once.
struct Workload {
    rng: Rng,
    resources: Vec<Arc<Resource>>,
    services: u64,
    next_trace: u64,
}

impl Workload {
    fn new(services: u64) -> Workload {
        let resources = (0..services)
            .map(|i| {
                Arc::new(Resource {
                    attributes: vec![
                        KeyValue::new("service.name", format!("service-{i}")),
                        KeyValue::new("service.version", "1.4.2"),
                        KeyValue::new("host.name", "bench-host-01"),
                        KeyValue::new("telemetry.sdk.language", "rust"),
                        KeyValue::new("telemetry.sdk.name", "opentelemetry"),
                    ],
                })
            })
            .collect();
        Workload {
            rng: Rng(0x9e37_79b9_7f4a_7c15),
            resources,
            services,
            next_trace: 0,
        }
    }

    /// The next trace: ten spans, one per millisecond of wall time.
    fn trace(&mut self, out: &mut Vec<Span>) -> TraceId {
        let rng = &mut self.rng;
        let t = self.next_trace;
        self.next_trace += 1;
        let start = 1_700_000_000_000_000_000u64 + t * 1_000_000 + rng.below(1_000_000);
        let mut trace = [0u8; 16];
        trace[..6].copy_from_slice(&(start / 1_000_000).to_be_bytes()[2..]);
        trace[6..14].copy_from_slice(&rng.next().to_be_bytes());
        trace[14..].copy_from_slice(&rng.next().to_be_bytes()[..2]);
        let trace = TraceId(trace);
        let mut ids = Vec::new();
        for s in 0..SPANS_PER_TRACE {
            let id = SpanId((rng.next() | 1).to_be_bytes());
            let parent = if s == 0 {
                None
            } else {
                Some(ids[rng.below(s) as usize])
            };
            ids.push(id);
            let svc = (s * self.services / SPANS_PER_TRACE) as usize;
            let span_start = start + s * 200_000 + rng.below(100_000);
            let duration = 10_000 + rng.below(50_000_000);
            let route = ROUTES[rng.below(8) as usize];
            out.push(Span {
                trace_id: trace,
                span_id: id,
                parent_span_id: parent,
                trace_state: String::new(),
                name: if s == 0 {
                    format!("GET {route}")
                } else {
                    OPS[rng.below(6) as usize].to_string()
                },
                kind: match s {
                    0 => SpanKind::Server,
                    _ if rng.below(3) == 0 => SpanKind::Client,
                    _ => SpanKind::Internal,
                },
                start_unix_nano: span_start,
                end_unix_nano: span_start + duration,
                attributes: vec![
                    KeyValue::new(
                        "http.method",
                        if rng.below(4) == 0 { "POST" } else { "GET" },
                    ),
                    KeyValue::new("http.route", route),
                    KeyValue::new(
                        "http.status_code",
                        [200i64, 200, 200, 404, 500][rng.below(5) as usize],
                    ),
                    KeyValue::new("net.peer.name", format!("10.0.0.{}", rng.below(4))),
                    KeyValue::new("user.id", rng.below(10_000) as i64),
                ],
                events: Vec::new(),
                links: Vec::new(),
                status: Status::default(),
                resource: Arc::clone(&self.resources[svc]),
                scope: Scope {
                    name: "bench".into(),
                    version: "1.0".into(),
                },
                flags: 1,
            });
        }
        trace
    }
}

fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let at = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    (at(0.50), at(0.99))
}

#[test]
#[ignore = "prints figures; run on demand with --release"]
fn measure() {
    let n = env("CLEW_MEASURE_SPANS", 100_000);
    let services = env("CLEW_MEASURE_SERVICES", 1);
    let split = env("CLEW_MEASURE_SPLIT", 0) == 1;
    let mut workload = Workload::new(services);
    let dir = tempfile::tempdir().unwrap();
    let store = FjallStore::open(&dir.path().join("spans")).unwrap();

    let mut traces = Vec::new();
    let mut batch = Vec::with_capacity(1000);
    let mut elapsed = Duration::ZERO;
    let mut written = 0u64;
    while written < n {
        batch.clear();
        while batch.len() < 1000 {
            traces.push(workload.trace(&mut batch));
        }
        let started = Instant::now();
        if split {
            for svc in 0..services {
                let name = format!("service-{svc}");
                let part: Vec<Span> = batch
                    .iter()
                    .filter(|s| s.service_name() == name)
                    .cloned()
                    .collect();
                store.write(&part).unwrap();
            }
        } else {
            store.write(&batch).unwrap();
        }
        elapsed += started.elapsed();
        written += batch.len() as u64;
    }
    let before = store.disk_space().unwrap();
    store.compact().unwrap();
    let after = store.disk_space().unwrap();
    eprintln!(
        "{} spans, {} services/trace{}, {} build: write {:.0} spans/s ({} ms); disk {:.1} B/span before compaction, {:.1} B/span after",
        written,
        services,
        if split {
            " (one write per service)"
        } else {
            ""
        },
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        written as f64 / elapsed.as_secs_f64(),
        elapsed.as_millis(),
        before as f64 / written as f64,
        after as f64 / written as f64,
    );

    eprintln!(
        "dependencies: {:?}",
        store.dependencies(0, u64::MAX / 2).unwrap()
    );
    let tables: u64 = store.keyspace_disk_space().iter().map(|(_, b)| b).sum();
    eprintln!(
        "tables (journal excluded) {:.1} B/span: {:?}",
        tables as f64 / written as f64,
        store.keyspace_disk_space()
    );

    let mut rng = Rng(42);
    let mut lookups = Vec::new();
    for _ in 0..2000 {
        let id = traces[rng.below(traces.len() as u64) as usize];
        let t = Instant::now();
        let trace = store.trace(id).unwrap().unwrap();
        lookups.push(t.elapsed());
        assert_eq!(trace.len() as u64, SPANS_PER_TRACE);
    }
    let (p50, p99) = percentiles(lookups);
    eprintln!("trace by id: p50 {p50:?}, p99 {p99:?}");

    let searches: Vec<(&str, TraceQuery)> = vec![
        (
            "service",
            TraceQuery {
                service: Some("service-0".into()),
                limit: 20,
                ..TraceQuery::default()
            },
        ),
        (
            "service+op+minDuration",
            TraceQuery {
                service: Some("service-0".into()),
                operation: Some("GET /api/checkout".into()),
                min_duration_nanos: Some(40_000_000),
                limit: 20,
                ..TraceQuery::default()
            },
        ),
        (
            "service+rare op+minDuration",
            TraceQuery {
                service: Some("service-0".into()),
                operation: Some("GET /health".into()),
                min_duration_nanos: Some(49_000_000),
                limit: 20,
                ..TraceQuery::default()
            },
        ),
        (
            "service+attribute",
            TraceQuery {
                service: Some("service-0".into()),
                attributes: vec![("user.id".into(), "4242".into())],
                limit: 20,
                ..TraceQuery::default()
            },
        ),
        (
            "no service, limit 100",
            TraceQuery {
                limit: 100,
                ..TraceQuery::default()
            },
        ),
    ];
    for (name, q) in searches {
        let mut samples = Vec::new();
        let mut found = 0;
        for _ in 0..50 {
            let t = Instant::now();
            found = store.find_traces(&q).unwrap().len();
            samples.push(t.elapsed());
        }
        let (p50, p99) = percentiles(samples);
        eprintln!("search {name}: {found} traces, p50 {p50:?}, p99 {p99:?}");
    }
}
