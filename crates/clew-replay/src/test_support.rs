//! Span builders and random traces for the crate's tests.

use std::sync::Arc;

use clew_model::{
    Event, KeyValue, Link, Resource, Scope, Span, SpanId, SpanKind, Status, StatusCode, TraceId,
};
use proptest::prelude::*;

pub(crate) const MS: u64 = 1_000_000;
pub(crate) const BASE: u64 = 1_700_000_000_000 * MS;

pub(crate) fn trace_id() -> TraceId {
    TraceId([7; 16])
}

pub(crate) fn sid(n: u64) -> SpanId {
    SpanId(n.to_be_bytes())
}

/// An INTERNAL span `id` (never 0) starting `id` ms after [`BASE`] and lasting 1 ms.
pub(crate) fn span(id: u64, parent: Option<u64>, service: &str, name: &str) -> Span {
    Span {
        trace_id: trace_id(),
        span_id: sid(id),
        parent_span_id: parent.map(sid),
        trace_state: String::new(),
        name: name.into(),
        kind: SpanKind::Internal,
        start_unix_nano: BASE + id * MS,
        end_unix_nano: BASE + id * MS + MS,
        attributes: Vec::new(),
        events: Vec::new(),
        links: Vec::new(),
        status: Status::default(),
        resource: Arc::new(Resource::for_service(service)),
        scope: Scope::default(),
        flags: 1,
    }
}

pub(crate) fn timed(mut s: Span, kind: SpanKind, start_ms: u64, end_ms: u64) -> Span {
    s.kind = kind;
    s.start_unix_nano = BASE + start_ms * MS;
    s.end_unix_nano = BASE + end_ms * MS;
    s
}

pub(crate) fn event(s: &mut Span, at_ms: u64, name: &str, attrs: Vec<KeyValue>) {
    s.events.push(Event {
        time_unix_nano: BASE + at_ms * MS,
        name: name.into(),
        attributes: attrs,
    });
}

const SERVICES: [&str; 4] = ["api", "db", "queue", "worker"];
const NAMES: [&str; 4] = ["get", "put", "handle", "process"];
const EVENTS: [&str; 4] = ["retry", "cache.miss", "exception", "process.exit"];

#[derive(Debug, Clone)]
struct Spec {
    parent_pick: usize,
    service: usize,
    name: usize,
    kind: usize,
    offset_ms: i64,
    duration_ms: u64,
    events: Vec<(usize, u64)>,
    error: bool,
    link_pick: Option<usize>,
    destination: Option<usize>,
}

fn arb_spec() -> impl Strategy<Value = Spec> {
    (
        any::<usize>(),
        0..SERVICES.len(),
        0..NAMES.len(),
        0..SpanKind::ALL.len(),
        -5i64..20,
        0u64..30,
        prop::collection::vec((0..EVENTS.len(), 0u64..40), 0..3),
        prop::bool::weighted(0.1),
        prop::option::weighted(0.1, any::<usize>()),
        prop::option::weighted(0.3, 0usize..2),
    )
        .prop_map(
            |(
                parent_pick,
                service,
                name,
                kind,
                offset_ms,
                duration_ms,
                events,
                error,
                link_pick,
                destination,
            )| Spec {
                parent_pick,
                service,
                name,
                kind,
                offset_ms,
                duration_ms,
                events,
                error,
                link_pick,
                destination,
            },
        )
}

fn build(specs: Vec<Spec>) -> Vec<Span> {
    let mut spans: Vec<Span> = Vec::with_capacity(specs.len());
    for (i, spec) in specs.into_iter().enumerate() {
        let parent = (i > 0).then(|| spec.parent_pick % i);
        let base_start = parent.map_or(BASE, |p| spans[p].start_unix_nano);
        let start = base_start.saturating_add_signed(spec.offset_ms * MS as i64);
        let mut s = span(
            i as u64 + 1,
            parent.map(|p| p as u64 + 1),
            SERVICES[spec.service],
            NAMES[spec.name],
        );
        s.kind = SpanKind::ALL[spec.kind];
        s.start_unix_nano = start;
        s.end_unix_nano = start + spec.duration_ms * MS;
        for (name, at) in spec.events {
            s.events.push(Event {
                time_unix_nano: start + (at % (spec.duration_ms + 1)) * MS,
                name: EVENTS[name].into(),
                attributes: Vec::new(),
            });
        }
        if spec.error {
            s.status = Status {
                code: StatusCode::Error,
                message: "failed".into(),
            };
        }
        if let (Some(pick), true) = (spec.link_pick, i > 0) {
            s.links.push(Link {
                trace_id: trace_id(),
                span_id: sid((pick % i) as u64 + 1),
                trace_state: String::new(),
                attributes: Vec::new(),
            });
        }
        if let Some(d) = spec.destination {
            s.attributes.push(KeyValue::new(
                "messaging.destination.name",
                ["orders", "audit"][d],
            ));
        }
        spans.push(s);
    }
    spans
}

/// A random trace of 1..=`max` spans: one root, random parents, services, kinds,
/// events (faults included), clock offsets that put children before their parents,
/// and a few links.
pub(crate) fn arb_trace(max: usize) -> impl Strategy<Value = Vec<Span>> {
    prop::collection::vec(arb_spec(), 1..=max).prop_map(build)
}
