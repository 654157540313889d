//! The ingest workload: OTLP export requests encoded once, then re-stamped for every send.
//!
//! Building and encoding spans costs far more than a server spends storing them, and on a
//! small machine the load generator shares the CPUs with the server it measures. So each
//! batch is encoded to protobuf bytes once, the byte offsets of its ids and timestamps are
//! found by walking the wire format, and a send only overwrites those bytes: fresh trace
//! and span ids (the server must see new traces, not rewrites of old ones) and timestamps
//! moved to the present (so retention and time-range searches behave as in production).

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{Result, bail, ensure};
use clew_model::{
    Event, KeyValue, Resource, Scope, Span, SpanId, SpanKind, Status, StatusCode, TraceId,
};
use prost::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use SpanKind::{Client, Consumer, Internal, Producer, Server};

/// Ten services with three operations each, so the store's service and operation indexes
/// see the variety of a small production system rather than one hot key.
const SERVICES: [(&str, [(&str, SpanKind); 3]); 10] = [
    (
        "frontend",
        [
            ("GET /", Server),
            ("render page", Internal),
            ("POST /checkout", Client),
        ],
    ),
    (
        "checkout",
        [
            ("POST /checkout", Server),
            ("orders publish", Producer),
            ("GET /stock", Client),
        ],
    ),
    (
        "payments",
        [
            ("POST /charge", Server),
            ("SELECT accounts", Client),
            ("score fraud", Internal),
        ],
    ),
    (
        "inventory",
        [
            ("GET /stock", Server),
            ("SELECT stock", Client),
            ("stock publish", Producer),
        ],
    ),
    (
        "shipping",
        [
            ("POST /quote", Server),
            ("orders process", Consumer),
            ("HGET rates", Client),
        ],
    ),
    (
        "notifications",
        [
            ("orders process", Consumer),
            ("POST /send", Client),
            ("render mail", Internal),
        ],
    ),
    (
        "auth",
        [
            ("POST /token", Server),
            ("verify token", Internal),
            ("GET sessions", Client),
        ],
    ),
    (
        "search",
        [
            ("GET /search", Server),
            ("query index", Internal),
            ("stock process", Consumer),
        ],
    ),
    (
        "recommendations",
        [
            ("GET /recs", Server),
            ("score items", Internal),
            ("GET /catalog", Client),
        ],
    ),
    (
        "ledger",
        [
            ("orders process", Consumer),
            ("INSERT entries", Client),
            ("POST /entries", Server),
        ],
    ),
];

/// Distinct pre-built batches cycled through, so consecutive requests differ in shape,
/// durations and attribute values, not only in ids.
pub const TEMPLATES: usize = 16;

/// Largest batch: span indexes must fit the 20 bits the id stamping reserves for them.
pub const MAX_BATCH_SPANS: usize = (1 << 20) - 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Site {
    TraceId {
        offset: usize,
        trace: u32,
    },
    /// A span id or a parent span id; both are derived from the same span index, so a
    /// child keeps pointing at its parent after stamping.
    SpanId {
        offset: usize,
        span: u32,
    },
    Time {
        offset: usize,
        template_nanos: u64,
    },
}

/// One encoded `ExportTraceServiceRequest` and where its ids and times sit in the bytes.
pub struct Template {
    bytes: Vec<u8>,
    sites: Vec<Site>,
    spans: usize,
    /// When the template's spans were (notionally) recorded; a send shifts all times by
    /// the distance from this to now.
    base_nanos: u64,
}

impl Template {
    pub fn spans(&self) -> usize {
        self.spans
    }

    pub fn encoded_len(&self) -> usize {
        self.bytes.len()
    }

    /// The request bytes for send number `send`: ids unique across all sends of one
    /// `salt`, times as if the spans had been recorded at `now_nanos`.
    ///
    /// Trace ids are `mix(salt + send) ‖ mix(send·2²⁰ + trace)`: the first half differs
    /// between any two sends, the second between any two traces of one send. Span ids are
    /// `mix(send·2²⁰ + span + 1)`. `mix` is a bijection that maps only zero to zero, so
    /// ids never collide within a run and a span id is never the invalid all-zero value.
    pub fn stamp(&self, send: u64, salt: u64, now_nanos: u64) -> Vec<u8> {
        let mut bytes = self.bytes.clone();
        let high = mix64(salt.wrapping_add(send)).to_be_bytes();
        let index_base = send << 20;
        let shift = now_nanos.wrapping_sub(self.base_nanos);
        for site in &self.sites {
            match *site {
                Site::TraceId { offset, trace } => {
                    let low = mix64(index_base | (u64::from(trace) + 1)).to_be_bytes();
                    bytes[offset..offset + 8].copy_from_slice(&high);
                    bytes[offset + 8..offset + 16].copy_from_slice(&low);
                }
                Site::SpanId { offset, span } => {
                    let id = mix64(index_base | (u64::from(span) + 1)).to_be_bytes();
                    bytes[offset..offset + 8].copy_from_slice(&id);
                }
                Site::Time {
                    offset,
                    template_nanos,
                } => {
                    let time = template_nanos.wrapping_add(shift).to_le_bytes();
                    bytes[offset..offset + 8].copy_from_slice(&time);
                }
            }
        }
        bytes
    }
}

/// The splitmix64 finalizer: cheap, and a bijection on u64 (xor-shifts and odd
/// multiplications are invertible) with `mix64(0) == 0`.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Builds `count` templates of `batch_spans` spans in traces of `spans_per_trace`.
pub fn build_templates(
    count: usize,
    batch_spans: usize,
    spans_per_trace: usize,
    seed: u64,
    base_nanos: u64,
) -> Result<Vec<Arc<Template>>> {
    ensure!(
        (1..=MAX_BATCH_SPANS).contains(&batch_spans),
        "--batch-spans must be between 1 and {MAX_BATCH_SPANS}"
    );
    ensure!(spans_per_trace >= 1, "--spans-per-trace must be at least 1");
    let mut rng = StdRng::seed_from_u64(seed);
    (0..count)
        .map(|i| {
            let spans = build_batch(&mut rng, i, batch_spans, spans_per_trace, base_nanos);
            encode(&spans, base_nanos).map(Arc::new)
        })
        .collect()
}

/// The spans of one batch. Ids are placeholders that `encode` maps back to indexes.
fn build_batch(
    rng: &mut StdRng,
    batch_no: usize,
    batch_spans: usize,
    spans_per_trace: usize,
    base_nanos: u64,
) -> Vec<Span> {
    // One resource per service and batch, shared by its spans, so the request groups
    // them into one `ResourceSpans` per service as an SDK's batch processor would.
    let resources: Vec<Arc<Resource>> = SERVICES
        .iter()
        .enumerate()
        .map(|(s, (name, _))| {
            Arc::new(Resource {
                attributes: vec![
                    KeyValue::new(clew_model::SERVICE_NAME, *name),
                    KeyValue::new("service.version", format!("1.{}.{}", s % 4, batch_no % 3)),
                    KeyValue::new("host.name", format!("node-{}", (s + batch_no) % 5)),
                    KeyValue::new("telemetry.sdk.language", ["rust", "go", "python"][s % 3]),
                    KeyValue::new("deployment.environment.name", "production"),
                ],
            })
        })
        .collect();
    let scope = Scope {
        name: "clew-bench".to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let mut spans = Vec::with_capacity(batch_spans);
    let mut trace_no = 0usize;
    while spans.len() < batch_spans {
        let len = spans_per_trace.min(batch_spans - spans.len());
        let first = spans.len();
        let root_service = (batch_no * 7 + trace_no) % SERVICES.len();
        build_trace(
            rng,
            trace_no,
            first,
            len,
            root_service,
            base_nanos,
            &resources,
            &scope,
            &mut spans,
        );
        trace_no += 1;
    }
    spans
}

#[allow(clippy::too_many_arguments)]
fn build_trace(
    rng: &mut StdRng,
    trace_no: usize,
    first: usize,
    len: usize,
    root_service: usize,
    base_nanos: u64,
    resources: &[Arc<Resource>],
    scope: &Scope,
    out: &mut Vec<Span>,
) {
    let trace_id = placeholder_trace_id(trace_no);
    let root_op = SERVICES[root_service]
        .1
        .iter()
        .position(|(_, kind)| *kind == Server)
        .unwrap_or(0);
    // Log-uniform durations from 1 ms to 1 s: most traces fast, a tail of slow ones, so
    // a minimum-duration search selects a minority.
    let root_duration = (1e6 * 1000f64.powf(rng.random::<f64>())) as u64;
    let root_start = base_nanos - rng.random_range(0..1_000_000_000);
    let mut drafts: Vec<(usize, usize, Option<usize>, u64, u64)> =
        vec![(root_service, root_op, None, root_start, root_duration)];
    for _ in 1..len {
        let parent = rng.random_range(0..drafts.len());
        let (p_service, p_op, _, p_start, p_duration) = drafts[parent];
        let p_kind = SERVICES[p_service].1[p_op].1;
        let (service, op) = child_operation(rng, p_service, p_kind);
        let offset = rng.random_range(0..=p_duration / 2);
        let duration = (p_duration - offset) / 2 + rng.random_range(10_000..50_000);
        drafts.push((service, op, Some(parent), p_start + offset, duration));
    }
    for (i, &(service, op, parent, start, duration)) in drafts.iter().enumerate() {
        let (name, kind) = SERVICES[service].1[op];
        let error = rng.random_bool(0.02);
        let events = if error {
            vec![Event {
                time_unix_nano: start + duration / 2,
                name: "exception".to_string(),
                attributes: vec![
                    KeyValue::new("exception.type", "TimeoutError"),
                    KeyValue::new("exception.message", "upstream did not answer in time"),
                ],
            }]
        } else if rng.random_bool(0.05) {
            vec![Event {
                time_unix_nano: start + duration / 3,
                name: "cache miss".to_string(),
                attributes: Vec::new(),
            }]
        } else {
            Vec::new()
        };
        out.push(Span {
            trace_id,
            span_id: placeholder_span_id(first + i),
            parent_span_id: parent.map(|p| placeholder_span_id(first + p)),
            trace_state: String::new(),
            name: name.to_string(),
            kind,
            start_unix_nano: start,
            end_unix_nano: start + duration,
            attributes: attributes(rng, kind, name, error),
            events,
            links: Vec::new(),
            status: Status {
                code: if error {
                    StatusCode::Error
                } else {
                    StatusCode::Unset
                },
                message: if error {
                    "timeout".to_string()
                } else {
                    String::new()
                },
            },
            resource: resources[service].clone(),
            scope: scope.clone(),
            flags: 1,
        });
    }
}

/// What a span of `parent_kind` leads to: a call reaches a server in another service, a
/// message reaches a consumer, anything else stays in-process.
fn child_operation(
    rng: &mut StdRng,
    parent_service: usize,
    parent_kind: SpanKind,
) -> (usize, usize) {
    let wanted: &[SpanKind] = match parent_kind {
        Client if rng.random_bool(0.7) => &[Server],
        Producer => &[Consumer],
        _ => &[Internal, Client, Producer],
    };
    let same_service = !matches!(wanted, [Server] | [Consumer]);
    let candidates: Vec<(usize, usize)> = SERVICES
        .iter()
        .enumerate()
        .filter(|(s, _)| (*s == parent_service) == same_service)
        .flat_map(|(s, (_, ops))| {
            ops.iter()
                .enumerate()
                .filter(|(_, (_, kind))| wanted.contains(kind))
                .map(move |(o, _)| (s, o))
        })
        .collect();
    candidates[rng.random_range(0..candidates.len())]
}

/// About five short attributes, as OpenTelemetry's semantic conventions name them.
fn attributes(rng: &mut StdRng, kind: SpanKind, name: &str, error: bool) -> Vec<KeyValue> {
    let status: i64 = if error {
        504
    } else {
        [200, 200, 200, 201, 204, 404][rng.random_range(0..6)]
    };
    let (method, route) = name.split_once(' ').unwrap_or(("GET", name));
    match kind {
        Server => vec![
            KeyValue::new("http.request.method", method),
            KeyValue::new("http.route", route),
            KeyValue::new("http.response.status_code", status),
            KeyValue::new(
                "client.address",
                format!(
                    "10.0.{}.{}",
                    rng.random_range(0..4),
                    rng.random_range(1..255)
                ),
            ),
            KeyValue::new("user.tier", ["free", "pro", "team"][rng.random_range(0..3)]),
        ],
        Client
            if method.starts_with(|c: char| c.is_ascii_uppercase()) && route.starts_with('/') =>
        {
            vec![
                KeyValue::new("http.request.method", method),
                KeyValue::new("url.path", route),
                KeyValue::new("http.response.status_code", status),
                KeyValue::new("server.address", "api.internal"),
                KeyValue::new("server.port", 8080i64),
            ]
        }
        Client => vec![
            KeyValue::new(
                "db.system.name",
                if method == "HGET" {
                    "redis"
                } else {
                    "postgresql"
                },
            ),
            KeyValue::new("db.operation.name", method),
            KeyValue::new("db.collection.name", route),
            KeyValue::new("server.address", "db-1.internal"),
            KeyValue::new("db.response.returned_rows", rng.random_range(0..500i64)),
        ],
        Producer | Consumer => vec![
            KeyValue::new("messaging.system", "redis"),
            KeyValue::new("messaging.destination.name", method),
            KeyValue::new(
                "messaging.operation.type",
                if kind == Producer { "send" } else { "process" },
            ),
            KeyValue::new("messaging.message.body.size", rng.random_range(80..4096i64)),
            KeyValue::new(
                "messaging.client.id",
                format!("worker-{}", rng.random_range(0..8)),
            ),
        ],
        Internal | SpanKind::Unspecified => vec![
            KeyValue::new("code.function.name", name.replace(' ', "_")),
            KeyValue::new("items", rng.random_range(1..100i64)),
            KeyValue::new("cache.hit", rng.random_bool(0.8)),
            KeyValue::new("thread.name", format!("worker-{}", rng.random_range(0..4))),
            KeyValue::new("retry", 0i64),
        ],
    }
}

// Placeholders carry the index in a fixed tag so `encode` can map bytes back to indexes.
const TRACE_TAG: u64 = 0x7ace_7ace_7ace_7ace;
const SPAN_TAG: u64 = 0x5a4e_0000_0000_0000;

fn placeholder_trace_id(trace: usize) -> TraceId {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&TRACE_TAG.to_be_bytes());
    id[8..].copy_from_slice(&(trace as u64).to_be_bytes());
    TraceId(id)
}

fn placeholder_span_id(span: usize) -> SpanId {
    SpanId((SPAN_TAG | span as u64).to_be_bytes())
}

fn encode(spans: &[Span], base_nanos: u64) -> Result<Template> {
    let bytes = clew_otlp::to_request(spans).encode_to_vec();
    let trace_index: HashMap<[u8; 16], u32> = spans
        .iter()
        .map(|s| {
            (
                s.trace_id.0,
                u64::from_be_bytes(s.trace_id.0[8..].try_into().expect("8 bytes")) as u32,
            )
        })
        .collect();
    let span_index: HashMap<[u8; 8], u32> = spans
        .iter()
        .enumerate()
        .map(|(i, s)| (s.span_id.0, i as u32))
        .collect();
    let mut sites = Vec::new();
    for field in find_fields(&bytes)? {
        let site = match field {
            RawField::TraceId(offset) => {
                let id: [u8; 16] = bytes[offset..offset + 16].try_into().expect("16 bytes");
                let Some(&trace) = trace_index.get(&id) else {
                    bail!("encoded request holds a trace id the workload did not make");
                };
                Site::TraceId { offset, trace }
            }
            RawField::SpanId(offset) => {
                let id: [u8; 8] = bytes[offset..offset + 8].try_into().expect("8 bytes");
                let Some(&span) = span_index.get(&id) else {
                    bail!("encoded request holds a span id the workload did not make");
                };
                Site::SpanId { offset, span }
            }
            RawField::Time(offset) => Site::Time {
                offset,
                template_nanos: u64::from_le_bytes(
                    bytes[offset..offset + 8].try_into().expect("8 bytes"),
                ),
            },
        };
        sites.push(site);
    }
    let parents = spans.iter().filter(|s| s.parent_span_id.is_some()).count();
    let events: usize = spans.iter().map(|s| s.events.len()).sum();
    let expected = spans.len() * 4 + parents + events;
    ensure!(
        sites.len() == expected,
        "found {} id and time fields in the encoded request, expected {expected}",
        sites.len()
    );
    Ok(Template {
        bytes,
        sites,
        spans: spans.len(),
        base_nanos,
    })
}

#[derive(Debug, PartialEq, Eq)]
enum RawField {
    TraceId(usize),
    SpanId(usize),
    Time(usize),
}

/// Offsets of the ids and timestamps inside an encoded `ExportTraceServiceRequest`
/// (field numbers from opentelemetry/proto/trace/v1/trace.proto).
fn find_fields(request: &[u8]) -> Result<Vec<RawField>> {
    let mut found = Vec::new();
    for (field, value) in fields(request, 0)? {
        let (1, Value::Bytes(rs)) = (field, value) else {
            continue;
        };
        for (field, value) in fields(&request[rs.clone()], rs.start)? {
            let (2, Value::Bytes(ss)) = (field, value) else {
                continue;
            };
            for (field, value) in fields(&request[ss.clone()], ss.start)? {
                let (2, Value::Bytes(span)) = (field, value) else {
                    continue;
                };
                for (field, value) in fields(&request[span.clone()], span.start)? {
                    match (field, value) {
                        (1, Value::Bytes(r)) if r.len() == 16 => {
                            found.push(RawField::TraceId(r.start))
                        }
                        (2 | 4, Value::Bytes(r)) if r.len() == 8 => {
                            found.push(RawField::SpanId(r.start))
                        }
                        (7 | 8, Value::Fixed64(at)) => found.push(RawField::Time(at)),
                        (11, Value::Bytes(event)) => {
                            for (field, value) in fields(&request[event.clone()], event.start)? {
                                if let (1, Value::Fixed64(at)) = (field, value) {
                                    found.push(RawField::Time(at));
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    Ok(found)
}

enum Value {
    Varint,
    Fixed64(usize),
    Fixed32,
    Bytes(std::ops::Range<usize>),
}

/// The top-level fields of one protobuf message, with offsets relative to `base`.
fn fields(message: &[u8], base: usize) -> Result<Vec<(u64, Value)>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < message.len() {
        let key = varint(message, &mut pos)?;
        let value = match key & 7 {
            0 => {
                varint(message, &mut pos)?;
                Value::Varint
            }
            1 => {
                pos += 8;
                Value::Fixed64(base + pos - 8)
            }
            2 => {
                let len = usize::try_from(varint(message, &mut pos)?)?;
                pos += len;
                Value::Bytes(base + pos - len..base + pos)
            }
            5 => {
                pos += 4;
                Value::Fixed32
            }
            wire => bail!("unexpected protobuf wire type {wire}"),
        };
        ensure!(pos <= message.len(), "truncated protobuf field");
        out.push((key >> 3, value));
    }
    Ok(out)
}

fn varint(buf: &[u8], pos: &mut usize) -> Result<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let Some(&byte) = buf.get(*pos) else {
            bail!("truncated varint")
        };
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    bail!("varint longer than 10 bytes")
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use clew_otlp::ExportTraceServiceRequest;

    use super::*;

    const BASE: u64 = 1_700_000_000_000_000_000;

    fn decode(bytes: &[u8]) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest::decode(bytes).expect("stamped bytes decode")
    }

    fn spans_of(request: &ExportTraceServiceRequest) -> Vec<&clew_otlp::proto::trace::v1::Span> {
        request
            .resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| &ss.spans)
            .collect()
    }

    #[test]
    fn mix64_is_zero_only_at_zero_and_spreads_neighbours() {
        assert_eq!(mix64(0), 0);
        let outputs: HashSet<u64> = (1..10_000u64).map(mix64).collect();
        assert_eq!(outputs.len(), 9_999);
        assert!(!outputs.contains(&0));
        // Neighbouring inputs must not give neighbouring keys, or the store would see
        // sequential writes that no real SDK produces.
        assert!((mix64(1) ^ mix64(2)).count_ones() > 16);
    }

    #[test]
    fn every_send_gets_fresh_distinct_ids_and_keeps_the_tree() {
        let templates = build_templates(2, 120, 10, 7, BASE).unwrap();
        let mut trace_ids = HashSet::new();
        let mut span_keys = HashSet::new();
        for send in 0..6u64 {
            let template = &templates[send as usize % 2];
            let request = decode(&template.stamp(send, 42, BASE));
            let spans = spans_of(&request);
            assert_eq!(spans.len(), 120);
            let per_send: HashSet<&[u8]> = spans.iter().map(|s| s.trace_id.as_slice()).collect();
            assert_eq!(per_send.len(), 12, "ten spans per trace, twelve traces");
            trace_ids.extend(per_send.iter().map(|t| t.to_vec()));
            for span in &spans {
                assert_ne!(span.span_id, vec![0; 8]);
                assert_ne!(span.trace_id, vec![0; 16]);
                assert!(span_keys.insert((span.trace_id.clone(), span.span_id.clone())));
                if !span.parent_span_id.is_empty() {
                    let parent = spans
                        .iter()
                        .find(|p| p.span_id == span.parent_span_id)
                        .expect("parent stays in the batch");
                    assert_eq!(parent.trace_id, span.trace_id);
                }
            }
            let roots = spans.iter().filter(|s| s.parent_span_id.is_empty()).count();
            assert_eq!(roots, 12);
        }
        assert_eq!(trace_ids.len(), 6 * 12, "no trace id repeats across sends");
        assert_eq!(span_keys.len(), 6 * 120);
    }

    #[test]
    fn another_salt_gives_other_trace_ids() {
        let template = &build_templates(1, 20, 10, 1, BASE).unwrap()[0];
        let a = decode(&template.stamp(0, 1, BASE));
        let b = decode(&template.stamp(0, 2, BASE));
        assert_ne!(spans_of(&a)[0].trace_id, spans_of(&b)[0].trace_id);
    }

    #[test]
    fn stamping_changes_only_ids_and_shifts_times() {
        let template = &build_templates(1, 50, 5, 3, BASE).unwrap()[0];
        let original = decode(&template.bytes);
        let shift = 3_600_000_000_000;
        let stamped = decode(&template.stamp(9, 5, BASE + shift));
        for (a, b) in spans_of(&original).into_iter().zip(spans_of(&stamped)) {
            assert_eq!(a.name, b.name);
            assert_eq!(a.kind, b.kind);
            assert_eq!(a.attributes, b.attributes);
            assert_eq!(a.start_time_unix_nano + shift, b.start_time_unix_nano);
            assert_eq!(a.end_time_unix_nano + shift, b.end_time_unix_nano);
            for (ea, eb) in a.events.iter().zip(&b.events) {
                assert_eq!(ea.time_unix_nano + shift, eb.time_unix_nano);
            }
            assert_ne!(a.trace_id, b.trace_id);
            assert_ne!(a.span_id, b.span_id);
        }
        assert_eq!(original.resource_spans.len(), stamped.resource_spans.len());
    }

    #[test]
    fn the_workload_covers_services_operations_and_kinds() {
        let templates = build_templates(TEMPLATES, 500, 10, 11, BASE).unwrap();
        let mut services = HashSet::new();
        let mut operations = HashSet::new();
        let mut kinds = HashSet::new();
        let mut errors = 0;
        let mut total = 0;
        for template in &templates {
            let request = decode(&template.bytes);
            for rs in &request.resource_spans {
                let attrs = &rs.resource.as_ref().unwrap().attributes;
                assert!(
                    attrs.len() >= 4,
                    "a resource carries more than service.name"
                );
                let service = format!("{:?}", attrs[0].value);
                for span in rs.scope_spans.iter().flat_map(|ss| &ss.spans) {
                    services.insert(service.clone());
                    operations.insert((service.clone(), span.name.clone()));
                    kinds.insert(span.kind);
                    assert!((4..=6).contains(&span.attributes.len()));
                    assert!(span.end_time_unix_nano > span.start_time_unix_nano);
                    errors += usize::from(span.status.as_ref().is_some_and(|s| s.code == 2));
                    total += 1;
                }
            }
        }
        assert_eq!(services.len(), 10);
        assert!(
            operations.len() >= 25,
            "only {} operations",
            operations.len()
        );
        assert_eq!(kinds.len(), 5, "every kind but UNSPECIFIED");
        assert!(
            errors > 0 && errors < total / 10,
            "{errors} errors in {total} spans"
        );
    }

    #[test]
    fn a_batch_smaller_than_a_trace_still_encodes() {
        let template = &build_templates(1, 3, 10, 1, BASE).unwrap()[0];
        assert_eq!(template.spans(), 3);
        assert_eq!(spans_of(&decode(&template.stamp(1, 1, BASE))).len(), 3);
        assert!(build_templates(1, 0, 10, 1, BASE).is_err());
        assert!(build_templates(1, 10, 0, 1, BASE).is_err());
    }

    #[test]
    fn truncated_protobuf_is_an_error_not_a_panic() {
        let template = &build_templates(1, 10, 5, 1, BASE).unwrap()[0];
        let cut = &template.bytes[..template.bytes.len() - 3];
        assert!(find_fields(cut).is_err());
        assert!(varint(&[0xff; 11], &mut 0).is_err());
    }
}
