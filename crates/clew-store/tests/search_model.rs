//! Search checked against a brute-force model: for many generated queries, the store
//! must return exactly what evaluating `TraceQuery::matches` over every stored span
//! gives (distinct traces ranked by their newest matching span, newest first, ties by
//! trace id, up to the limit).

use std::collections::HashMap;
use std::sync::Arc;

use clew_model::{AttributeValue, KeyValue, Resource, Span, SpanId, SpanKind, Status, TraceId};
use clew_store::{FjallStore, SpanStore, TraceQuery};

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
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

const SEC: u64 = 1_000_000_000;
const BASE: u64 = 1_700_000_000 * SEC;
const SERVICES: [&str; 3] = ["edge", "core", "store"];
const OPS: [&str; 4] = ["read", "write", "scan", "sync"];
const KEYS: [&str; 3] = ["color", "size", "zone"];
const VALUES: [&str; 3] = ["red", "7", "true"];

fn value(rng: &mut Rng) -> AttributeValue {
    match rng.below(4) {
        0 => AttributeValue::String(rng.pick(&VALUES).to_string()),
        1 => AttributeValue::Int(7),
        2 => AttributeValue::Bool(true),
        _ => AttributeValue::String("blue".into()),
    }
}

fn generate(rng: &mut Rng) -> Vec<Span> {
    let resources: Vec<Arc<Resource>> = SERVICES
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut attributes = vec![KeyValue::new("service.name", *s)];
            if i == 1 {
                // A resource attribute that span attributes of the same key override.
                attributes.push(KeyValue::new("zone", "eu"));
            }
            Arc::new(Resource { attributes })
        })
        .collect();
    let mut spans = Vec::new();
    for t in 0..200u64 {
        let trace = TraceId([(t as u8) | 1; 16]);
        let trace = TraceId({
            let mut b = trace.0;
            b[8..].copy_from_slice(&t.to_be_bytes());
            b
        });
        let start = BASE + rng.below(600) * SEC;
        for s in 0..1 + rng.below(6) {
            // Some spans far from the trace's first, to split groups.
            let offset = if rng.below(5) == 0 {
                rng.below(40) * SEC
            } else {
                rng.below(SEC)
            };
            let span_start = start + offset;
            let duration = rng.below(100) * 1_000_000;
            let attributes = (0..rng.below(4))
                .map(|_| KeyValue {
                    key: rng.pick(&KEYS).to_string(),
                    value: value(rng),
                })
                .collect();
            spans.push(Span {
                trace_id: trace,
                span_id: SpanId((s + 1).to_be_bytes()),
                parent_span_id: (s > 0).then(|| SpanId(1u64.to_be_bytes())),
                trace_state: String::new(),
                name: rng.pick(&OPS).to_string(),
                kind: *rng.pick(&[SpanKind::Server, SpanKind::Client, SpanKind::Internal]),
                start_unix_nano: span_start,
                end_unix_nano: span_start + duration,
                attributes,
                events: Vec::new(),
                links: Vec::new(),
                status: Status::default(),
                resource: Arc::clone(rng.pick(&resources)),
                scope: Default::default(),
                flags: 1,
            });
        }
    }
    spans
}

fn query(rng: &mut Rng) -> TraceQuery {
    let mut q = TraceQuery::default();
    if rng.below(4) != 0 {
        q.service = Some(rng.pick(&SERVICES).to_string());
    }
    if rng.below(3) == 0 {
        q.operation = Some(rng.pick(&OPS).to_string());
    }
    if rng.below(5) == 0 {
        q.span_kind = Some(*rng.pick(&[SpanKind::Server, SpanKind::Client]));
    }
    for _ in 0..rng.below(3) {
        let key = rng.pick(&KEYS).to_string();
        let want = if key == "zone" && rng.below(2) == 0 {
            "eu".to_string()
        } else {
            rng.pick(&VALUES).to_string()
        };
        q.attributes.push((key, want));
    }
    if rng.below(3) == 0 {
        q.min_duration_nanos = Some(rng.below(100) * 1_000_000);
    }
    if rng.below(3) == 0 {
        q.max_duration_nanos = Some(rng.below(100) * 1_000_000);
    }
    if rng.below(2) == 0 {
        let a = BASE + rng.below(700) * SEC;
        q.start_min_unix_nano = Some(a);
        if rng.below(2) == 0 {
            q.start_max_unix_nano = Some(a + rng.below(120) * SEC);
        }
    } else if rng.below(2) == 0 {
        q.start_max_unix_nano = Some(BASE + rng.below(700) * SEC);
    }
    q.limit = *rng.pick(&[0, 1, 3, 10, 1000]);
    q
}

fn model(spans: &[Span], q: &TraceQuery) -> Vec<TraceId> {
    let mut best: HashMap<TraceId, u64> = HashMap::new();
    for s in spans.iter().filter(|s| q.matches(s)) {
        let e = best.entry(s.trace_id).or_insert(s.start_unix_nano);
        *e = (*e).max(s.start_unix_nano);
    }
    let mut ranked: Vec<(TraceId, u64)> = best.into_iter().collect();
    ranked.sort_by_key(|&(trace, start)| std::cmp::Reverse((start, trace)));
    let limit = if q.limit == 0 { 100 } else { q.limit };
    ranked.into_iter().take(limit).map(|(t, _)| t).collect()
}

#[test]
fn search_agrees_with_brute_force() {
    let mut rng = Rng(0x5eed);
    let spans = generate(&mut rng);
    let dir = tempfile::tempdir().unwrap();
    let store = FjallStore::open(&dir.path().join("spans")).unwrap();
    // Written in uneven batches, some spans twice (as a retrying client would).
    let mut i = 0;
    while i < spans.len() {
        let n = (1 + rng.below(60) as usize).min(spans.len() - i);
        store.write(&spans[i..i + n]).unwrap();
        if rng.below(4) == 0 {
            let back = i.saturating_sub(rng.below(30) as usize);
            store.write(&spans[back..i + n]).unwrap();
        }
        i += n;
    }
    let mut nonempty = 0;
    for round in 0..400 {
        let q = query(&mut rng);
        let want = model(&spans, &q);
        nonempty += usize::from(!want.is_empty());
        assert_eq!(store.find_traces(&q).unwrap(), want, "query {round}: {q:?}");
    }
    assert!(
        nonempty > 100,
        "the generated queries should mostly find something"
    );
}
