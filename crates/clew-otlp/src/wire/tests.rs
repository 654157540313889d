//! The fast decoder must agree with prost + `spans_from_request` on every input it
//! accepts, and accept the ordinary ones.

use opentelemetry_proto::tonic::common::v1 as common;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::resource::v1 as resource;
use opentelemetry_proto::tonic::trace::v1 as trace;
use proptest::prelude::*;
use prost::Message;

use super::{Found, Unusual};
use crate::ExportTraceServiceRequest;
use crate::batch::{SpanBatch, ValueRef};
use crate::decode::{Received, decode_protobuf, receive_protobuf, spans_from_request};
use prost::bytes::Bytes;

fn summary(spans: Vec<clew_model::Span>, rejected: i64, reasons: &[String]) -> String {
    format!("{spans:?}\n{rejected}\n{reasons:?}")
}

fn generic(bytes: &[u8]) -> Option<String> {
    decode_protobuf(bytes).ok().map(|r| {
        let d = spans_from_request(r);
        summary(d.spans, d.rejected, &d.rejection_reasons)
    })
}

fn decode(bytes: &[u8]) -> Result<Found, Unusual> {
    super::decode(Bytes::copy_from_slice(bytes))
}

fn spans_from_protobuf(bytes: &[u8]) -> Result<Received, crate::OtlpError> {
    receive_protobuf(Bytes::copy_from_slice(bytes))
}

fn found_summary(f: Found) -> String {
    let spans = SpanBatch::Wire(f.spans).into_spans();
    summary(spans, f.rejected, &f.rejection_reasons)
}

fn received_summary(r: Received) -> String {
    summary(r.spans.into_spans(), r.rejected, &r.rejection_reasons)
}

/// Whatever the fast path accepts decodes as prost decodes it; the public entry point
/// always agrees with the generic path, error or not.
fn check_agrees(bytes: &[u8]) -> Result<bool, TestCaseError> {
    let expected = generic(bytes);
    let fast = match decode(bytes) {
        Ok(f) => Some(found_summary(f)),
        Err(Unusual) => None,
    };
    if let Some(fast) = &fast {
        prop_assert_eq!(
            Some(fast),
            expected.as_ref(),
            "fast path accepted {:?}",
            bytes
        );
    }
    let public = spans_from_protobuf(bytes).ok().map(received_summary);
    prop_assert_eq!(public, expected);
    Ok(fast.is_some())
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-z.]{1,12}",
        "\\PC{0,8}",
        Just("service.name".to_string()),
        Just("messaging.destination.name".to_string()),
    ]
}

fn any_value() -> impl Strategy<Value = common::AnyValue> {
    let leaf = prop_oneof![
        Just(None),
        text().prop_map(|s| Some(Value::StringValue(s))),
        any::<bool>().prop_map(|b| Some(Value::BoolValue(b))),
        any::<i64>().prop_map(|i| Some(Value::IntValue(i))),
        any::<f64>().prop_map(|d| Some(Value::DoubleValue(d))),
        proptest::collection::vec(any::<u8>(), 0..6).prop_map(|b| Some(Value::BytesValue(b))),
        any::<i32>().prop_map(|i| Some(Value::StringValueStrindex(i))),
    ]
    .prop_map(|value| common::AnyValue { value });
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(|values| common::AnyValue {
                value: Some(Value::ArrayValue(common::ArrayValue { values })),
            }),
            proptest::collection::vec((text(), proptest::option::of(inner), any::<i32>()), 0..4)
                .prop_map(|kvs| common::AnyValue {
                    value: Some(Value::KvlistValue(common::KeyValueList {
                        values: kvs
                            .into_iter()
                            .map(|(key, value, key_strindex)| common::KeyValue {
                                key,
                                value,
                                key_strindex,
                            })
                            .collect(),
                    })),
                }),
        ]
    })
}

fn key_values(max: usize) -> impl Strategy<Value = Vec<common::KeyValue>> {
    proptest::collection::vec(
        (
            text(),
            proptest::option::weighted(0.9, any_value()),
            prop_oneof![3 => Just(0), 1 => any::<i32>()],
        ),
        0..max,
    )
    .prop_map(|kvs| {
        kvs.into_iter()
            .map(|(key, value, key_strindex)| common::KeyValue {
                key,
                value,
                key_strindex,
            })
            .collect()
    })
}

fn id(len: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => proptest::collection::vec(any::<u8>(), len),
        1 => Just(vec![0; len]),
        1 => proptest::collection::vec(any::<u8>(), 0..20),
    ]
}

fn span() -> impl Strategy<Value = trace::Span> {
    (
        (
            id(16),
            id(8),
            prop_oneof![Just(Vec::new()), id(8)],
            text(),
            text(),
        ),
        (
            -1i32..8,
            any::<u64>(),
            any::<u64>(),
            key_values(6),
            any::<u32>(),
        ),
        (
            proptest::collection::vec((any::<u64>(), text(), key_values(3)), 0..3),
            proptest::collection::vec((id(16), id(8), text(), key_values(2), any::<u32>()), 0..3),
            proptest::option::of((text(), -1i32..4)),
            any::<(u32, u32, u32)>(),
        ),
    )
        .prop_map(
            |(
                (trace_id, span_id, parent_span_id, trace_state, name),
                (kind, start, end, attributes, flags),
                (events, links, status, dropped),
            )| trace::Span {
                trace_id,
                span_id,
                trace_state,
                parent_span_id,
                flags,
                name,
                kind,
                start_time_unix_nano: start,
                end_time_unix_nano: end,
                attributes,
                dropped_attributes_count: dropped.0,
                events: events
                    .into_iter()
                    .map(|(time_unix_nano, name, attributes)| trace::span::Event {
                        time_unix_nano,
                        name,
                        attributes,
                        dropped_attributes_count: dropped.1,
                    })
                    .collect(),
                dropped_events_count: dropped.2,
                links: links
                    .into_iter()
                    .map(
                        |(trace_id, span_id, trace_state, attributes, flags)| trace::span::Link {
                            trace_id,
                            span_id,
                            trace_state,
                            attributes,
                            dropped_attributes_count: 0,
                            flags,
                        },
                    )
                    .collect(),
                dropped_links_count: 0,
                status: status.map(|(message, code)| trace::Status { message, code }),
            },
        )
}

fn request(entity_refs: bool) -> impl Strategy<Value = ExportTraceServiceRequest> {
    let scope_spans = (
        proptest::option::of((text(), text(), key_values(2))),
        proptest::collection::vec(span(), 0..5),
        text(),
    )
        .prop_map(|(scope, spans, schema_url)| trace::ScopeSpans {
            scope: scope.map(|(name, version, attributes)| common::InstrumentationScope {
                name,
                version,
                attributes,
                dropped_attributes_count: 0,
            }),
            spans,
            schema_url,
        });
    let resource_spans = (
        proptest::option::of((key_values(5), any::<bool>())),
        proptest::collection::vec(scope_spans, 0..3),
        text(),
    )
        .prop_map(
            move |(resource, scope_spans, schema_url)| trace::ResourceSpans {
                resource: resource.map(|(attributes, with_ref)| resource::Resource {
                    attributes,
                    dropped_attributes_count: 0,
                    entity_refs: if entity_refs && with_ref {
                        vec![common::EntityRef {
                            schema_url: String::new(),
                            r#type: "service".into(),
                            id_keys: vec!["service.name".into()],
                            description_keys: Vec::new(),
                        }]
                    } else {
                        Vec::new()
                    },
                }),
                scope_spans,
                schema_url,
            },
        );
    proptest::collection::vec(resource_spans, 0..3)
        .prop_map(|resource_spans| ExportTraceServiceRequest { resource_spans })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn well_formed_requests_take_the_fast_path_and_agree(req in request(false)) {
        let bytes = req.encode_to_vec();
        prop_assert!(check_agrees(&bytes)?, "the fast path refused a well-formed request");
    }

    /// The wire form's own lookups (`attribute`, `messaging_destination`) answer as the
    /// model span's do.
    #[test]
    fn wire_lookups_agree_with_model_spans(req in request(false)) {
        let bytes = req.encode_to_vec();
        let Ok(found) = decode(&bytes) else {
            return Err(TestCaseError::fail("fast path refused"));
        };
        let batch = SpanBatch::Wire(found.spans);
        for span in batch.iter() {
            let model = span.to_span();
            let mut keys: Vec<&str> = model.attributes.iter().map(|kv| kv.key.as_str()).collect();
            keys.extend(["messaging.destination.name", "messaging.destination", "absent"]);
            for key in keys {
                prop_assert_eq!(
                    format!("{:?}", span.attribute(key).map(ValueRef::to_value)),
                    format!("{:?}", model.attribute(key))
                );
            }
            prop_assert_eq!(span.messaging_destination(), model.messaging_destination());
            prop_assert_eq!(span.service_name(), model.service_name());
            prop_assert_eq!(span.attributes().len(), model.attributes.len());
        }
    }

    #[test]
    fn entity_references_agree(req in request(true)) {
        check_agrees(&req.encode_to_vec())?;
    }

    #[test]
    fn damaged_requests_agree(
        req in request(false),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..4, any::<u8>()), 1..4),
    ) {
        let mut bytes = req.encode_to_vec();
        for (at, how, byte) in edits {
            if bytes.is_empty() {
                break;
            }
            let i = at.index(bytes.len());
            match how {
                0 => bytes.truncate(i),
                1 => bytes[i] ^= byte | 1,
                2 => bytes.insert(i, byte),
                _ => {
                    let tail = bytes[i..].to_vec();
                    bytes.extend_from_slice(&tail);
                }
            }
        }
        check_agrees(&bytes)?;
    }
}

// Hand-built wire input for what prost's encoder never produces.

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn field(out: &mut Vec<u8>, tag: u32, bytes: &[u8]) {
    varint(out, u64::from(tag) << 3 | 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn unknown_fields() -> Vec<u8> {
    let mut out = Vec::new();
    varint(&mut out, 900 << 3); // varint
    varint(&mut out, 300);
    varint(&mut out, 901 << 3 | 1); // fixed64
    out.extend_from_slice(&[1; 8]);
    field(&mut out, 902, b"whatever");
    varint(&mut out, 903 << 3 | 5); // fixed32
    out.extend_from_slice(&[2; 4]);
    out
}

fn kv(key: &str, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    field(&mut out, 1, key.as_bytes());
    field(&mut out, 2, value);
    out
}

fn string_value(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    field(&mut out, 1, s.as_bytes());
    out
}

fn plain_span(extra: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    field(&mut out, 1, &[7; 16]);
    field(&mut out, 2, &[8; 8]);
    field(&mut out, 5, b"op");
    field(&mut out, 9, &kv("k", &string_value("v")));
    out.extend_from_slice(extra);
    out
}

/// A request of one span, with `resource_extra`, `scope_extra` and `span_extra` appended
/// to the resource, scope and span messages.
fn one_span(resource_extra: &[u8], scope_extra: &[u8], span_extra: &[u8]) -> Vec<u8> {
    let mut resource = Vec::new();
    field(&mut resource, 1, &kv("service.name", &string_value("svc")));
    resource.extend_from_slice(resource_extra);
    let mut scope = Vec::new();
    field(&mut scope, 1, b"lib");
    scope.extend_from_slice(scope_extra);
    let mut scope_spans = Vec::new();
    field(&mut scope_spans, 1, &scope);
    field(&mut scope_spans, 2, &plain_span(span_extra));
    let mut resource_spans = Vec::new();
    field(&mut resource_spans, 1, &resource);
    field(&mut resource_spans, 2, &scope_spans);
    let mut request = Vec::new();
    field(&mut request, 1, &resource_spans);
    request
}

fn agrees(bytes: &[u8]) -> bool {
    check_agrees(bytes).unwrap()
}

#[test]
fn unknown_fields_are_skipped_everywhere() {
    let unknown = unknown_fields();
    assert!(agrees(&one_span(&unknown, &unknown, &unknown)));
    let mut request = one_span(&[], &[], &[]);
    request.extend_from_slice(&unknown);
    assert!(agrees(&request));
    // Inside a key/value and an any-value too.
    let mut value = string_value("v");
    value.extend_from_slice(&unknown);
    let mut pair = kv("k2", &value);
    pair.extend_from_slice(&unknown);
    let mut span_extra = Vec::new();
    field(&mut span_extra, 9, &pair);
    assert!(agrees(&one_span(&[], &[], &span_extra)));
}

#[test]
fn later_scalar_fields_win_and_order_does_not_matter() {
    let mut extra = Vec::new();
    field(&mut extra, 5, b"renamed");
    field(&mut extra, 2, &[9; 8]);
    varint(&mut extra, 6 << 3);
    varint(&mut extra, 2);
    varint(&mut extra, 6 << 3);
    varint(&mut extra, 3);
    assert!(agrees(&one_span(&[], &[], &extra)));

    // Resource after the spans, scope after the spans.
    let mut scope = Vec::new();
    field(&mut scope, 1, b"lib");
    let mut scope_spans = Vec::new();
    field(&mut scope_spans, 2, &plain_span(&[]));
    field(&mut scope_spans, 1, &scope);
    let mut resource = Vec::new();
    field(&mut resource, 1, &kv("service.name", &string_value("svc")));
    let mut resource_spans = Vec::new();
    field(&mut resource_spans, 2, &scope_spans);
    field(&mut resource_spans, 1, &resource);
    let mut request = Vec::new();
    field(&mut request, 1, &resource_spans);
    let found = decode(&request).ok().expect("fast path");
    let spans = SpanBatch::Wire(found.spans).into_spans();
    assert_eq!(spans[0].service_name(), "svc");
    assert_eq!(spans[0].scope.name, "lib");
    assert!(agrees(&request));
}

#[test]
fn merged_messages_fall_back_to_prost() {
    // A second resource, scope, status, value or oneof field: prost merges them.
    let mut resource = Vec::new();
    field(&mut resource, 1, &kv("extra", &string_value("x")));
    let mut twice = Vec::new();
    field(&mut twice, 1, &resource);

    let mut status = Vec::new();
    field(&mut status, 2, b"first");
    let mut statuses = Vec::new();
    field(&mut statuses, 15, &status);
    field(&mut statuses, 15, &status);

    let mut value_twice = kv("k", &string_value("a"));
    field(&mut value_twice, 2, &string_value("b"));
    let mut value_twice_span = Vec::new();
    field(&mut value_twice_span, 9, &value_twice);

    let mut oneof_twice = string_value("a");
    varint(&mut oneof_twice, 3 << 3);
    varint(&mut oneof_twice, 5);
    let mut oneof_twice_span = Vec::new();
    field(&mut oneof_twice_span, 9, &kv("k", &oneof_twice));

    for request in [
        {
            let mut r = one_span(&[], &[], &[]);
            // A second ResourceSpans.resource: rebuild by hand.
            let mut rs = Vec::new();
            field(&mut rs, 1, &resource);
            field(&mut rs, 1, &resource);
            field(&mut r, 1, &rs);
            r
        },
        one_span(&[], &[], &statuses),
        one_span(&[], &[], &value_twice_span),
        one_span(&[], &[], &oneof_twice_span),
    ] {
        assert!(!agrees(&request), "expected the fallback");
    }
}

#[test]
fn groups_bad_wire_types_and_deep_nesting_fall_back() {
    // A group in an unknown field (prost skips it).
    let mut group = Vec::new();
    varint(&mut group, 50 << 3 | 3);
    varint(&mut group, 51 << 3);
    varint(&mut group, 1);
    varint(&mut group, 50 << 3 | 4);
    assert!(!agrees(&one_span(&[], &[], &group)));

    // The name as a varint: prost refuses the request.
    let mut bad = Vec::new();
    varint(&mut bad, 5 << 3);
    varint(&mut bad, 1);
    let request = one_span(&[], &[], &bad);
    assert!(!agrees(&request));
    assert!(spans_from_protobuf(&request).is_err());

    // Invalid UTF-8 in a schema URL nobody keeps: still an error, as with prost.
    let mut rs = Vec::new();
    field(&mut rs, 3, &[0xff, 0xfe]);
    let mut request = Vec::new();
    field(&mut request, 1, &rs);
    assert!(!agrees(&request));
    assert!(spans_from_protobuf(&request).is_err());

    // Nested lists, below and beyond prost's recursion limit.
    for depth in [3, 20, 40] {
        let mut value = string_value("leaf");
        for _ in 0..depth {
            let mut list = Vec::new();
            field(&mut list, 1, &kv("n", &value));
            value = Vec::new();
            field(&mut value, 6, &list);
        }
        let mut extra = Vec::new();
        field(&mut extra, 9, &kv("deep", &value));
        let request = one_span(&[], &[], &extra);
        assert_eq!(agrees(&request), depth == 3, "depth {depth}");
    }
}

#[test]
fn invalid_spans_are_rejected_one_by_one() {
    let mut zero = Vec::new();
    field(&mut zero, 1, &[0; 16]);
    let found = decode(&one_span(&[], &[], &zero)).ok().expect("fast path");
    assert_eq!(found.rejected, 1);
    assert!(found.spans.is_empty());
    assert!(agrees(&one_span(&[], &[], &zero)));
}
