use std::sync::Arc;

use clew_model::{
    AttributeValue, Event, KeyValue, Link, Resource, Scope, Span, SpanId, SpanKind, Status,
    StatusCode, TraceId,
};
use clew_otlp::{OtlpError, decode_json, decode_protobuf, spans_from_request, to_request};
use prost::Message;

fn sample_span() -> Span {
    Span {
        trace_id: TraceId::generate(),
        span_id: SpanId::generate(),
        parent_span_id: Some(SpanId::generate()),
        trace_state: "rojo=00f067aa0ba902b7".into(),
        name: "consume_drone_command".into(),
        kind: SpanKind::Consumer,
        start_unix_nano: 1_700_000_000_000_000_000,
        end_unix_nano: 1_700_000_000_004_000_000,
        attributes: vec![
            KeyValue::new("target", "orlan"),
            KeyValue::new("heading", 94.5),
            KeyValue::new("retries", 3i64),
            KeyValue::new("armed", true),
            KeyValue {
                key: "raw".into(),
                value: AttributeValue::Bytes(vec![0, 255]),
            },
            KeyValue {
                key: "list".into(),
                value: AttributeValue::Array(vec!["a".into(), "b".into()]),
            },
            KeyValue {
                key: "nested".into(),
                value: AttributeValue::Map(vec![KeyValue::new("k", 1i64)]),
            },
        ],
        events: vec![Event {
            time_unix_nano: 1_700_000_000_001_000_000,
            name: "lock_request_received".into(),
            attributes: vec![KeyValue::new("interceptor", "striker")],
        }],
        links: vec![Link {
            trace_id: TraceId::generate(),
            span_id: SpanId::generate(),
            trace_state: String::new(),
            attributes: vec![KeyValue::new("messaging.batch", true)],
        }],
        status: Status {
            code: StatusCode::Error,
            message: "boom".into(),
        },
        resource: Arc::new(Resource::for_service("striker")),
        scope: Scope {
            name: "clew".into(),
            version: "0.1".into(),
        },
        flags: 1,
    }
}

#[test]
fn protobuf_round_trip_keeps_every_field() {
    let span = sample_span();
    let bytes = to_request(std::slice::from_ref(&span)).encode_to_vec();
    let decoded = spans_from_request(decode_protobuf(&bytes).unwrap());
    assert_eq!(decoded.rejected, 0);
    assert_eq!(decoded.spans, vec![span]);
}

#[test]
fn json_round_trip_uses_hex_ids_and_integer_enums() {
    let span = sample_span();
    let json = serde_json::to_string(&to_request(std::slice::from_ref(&span))).unwrap();
    assert!(
        json.contains(&format!("\"traceId\":\"{}\"", span.trace_id)),
        "{json}"
    );
    assert!(json.contains("\"kind\":5"), "{json}");
    let decoded = spans_from_request(decode_json(json.as_bytes()).unwrap());
    assert_eq!(decoded.spans, vec![span]);
}

#[test]
fn snake_case_json_is_an_error_not_an_empty_success() {
    let body = br#"{"resource_spans":[{"scope_spans":[{"spans":[{"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"}]}]}]}"#;
    let err = decode_json(body).unwrap_err();
    assert!(matches!(err, OtlpError::UnknownKeys { .. }), "{err}");
    assert!(err.to_string().contains("resource_spans"), "{err}");

    let nested = br#"{"resourceSpans":[{"scope_spans":[{"spans":[{}]}]}]}"#;
    assert!(
        decode_json(nested)
            .unwrap_err()
            .to_string()
            .contains("scope_spans")
    );
}

#[test]
fn an_empty_request_is_a_legal_empty_export() {
    assert!(decode_json(b"{}").unwrap().resource_spans.is_empty());
    assert!(decode_json(br#"{"resourceSpans":[]}"#).is_ok());
}

#[test]
fn string_enums_are_rejected_with_a_hint() {
    let body = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","spanId":"00f067aa0ba902b7","name":"x","kind":"SPAN_KIND_SERVER"}]}]}]}"#;
    let err = decode_json(body).unwrap_err();
    assert!(
        err.to_string().contains("integers for enum values"),
        "{err}"
    );
}

#[test]
fn invalid_spans_are_rejected_one_by_one() {
    let body = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[
        {"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","spanId":"00f067aa0ba902b7","name":"good","kind":2},
        {"traceId":"00000000000000000000000000000000","spanId":"00f067aa0ba902b7","name":"zero-trace"},
        {"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","name":"no-span-id"}
    ]}]}]}"#;
    let decoded = spans_from_request(decode_json(body).unwrap());
    assert_eq!(decoded.spans.len(), 1);
    assert_eq!(decoded.spans[0].name, "good");
    assert_eq!(decoded.spans[0].kind, SpanKind::Server);
    assert_eq!(decoded.rejected, 2);
    assert!(decoded.rejection_message().contains("zero-trace"));
    assert!(decoded.rejection_message().contains("no-span-id"));
}

#[test]
fn garbage_protobuf_is_an_error() {
    assert!(decode_protobuf(b"\xff\xff\xff\xff\xff").is_err());
}

/// Protobuf's JSON mapping names the doubles JSON cannot hold; the OpenTelemetry
/// Collector writes them so. They decode as doubles, wherever they are.
#[test]
fn named_non_finite_doubles_decode_as_doubles() {
    let body = br#"{"resourceSpans":[{"resource":{"attributes":[
        {"key":"service.name","value":{"stringValue":"sensors"}},
        {"key":"calibration","value":{"doubleValue":"Infinity"}}]},
      "scopeSpans":[{"spans":[{"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","spanId":"00f067aa0ba902b7",
        "name":"read","kind":1,"startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000000001000",
        "attributes":[{"key":"reading","value":{"doubleValue":"NaN"}},
          {"key":"range","value":{"arrayValue":{"values":[{"doubleValue":"-Infinity"},{"doubleValue":1.5}]}}},
          {"key":"label","value":{"stringValue":"NaN"}}],
        "events":[{"timeUnixNano":"1700000000000000500","name":"spike","attributes":[{"key":"peak","value":{"doubleValue":"Infinity"}}]}]}]}]}]}"#;
    let decoded = spans_from_request(decode_json(body).unwrap());
    let span = &decoded.spans[0];
    let double = |value: Option<&AttributeValue>| match value {
        Some(AttributeValue::Double(d)) => *d,
        other => panic!("not a double: {other:?}"),
    };
    assert!(double(span.attribute("reading")).is_nan());
    assert_eq!(
        span.attribute("range"),
        Some(&AttributeValue::Array(vec![
            AttributeValue::Double(f64::NEG_INFINITY),
            AttributeValue::Double(1.5)
        ]))
    );
    // A string that happens to say NaN stays a string.
    assert_eq!(
        span.attribute("label"),
        Some(&AttributeValue::String("NaN".into()))
    );
    assert_eq!(
        double(clew_model::find_attribute(
            &span.events[0].attributes,
            "peak"
        )),
        f64::INFINITY
    );
    assert_eq!(
        double(clew_model::find_attribute(
            &span.resource.attributes,
            "calibration"
        )),
        f64::INFINITY
    );
    // Any other string is still an error.
    let wrong =
        String::from_utf8_lossy(body).replace(r#""doubleValue":"NaN""#, r#""doubleValue":"lots""#);
    assert!(decode_json(wrong.as_bytes()).is_err());
}
