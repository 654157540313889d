//! The client side of clew's protocol extension: finished spans as the commands of a
//! span batch, so an SDK that already has whole spans (clew's own) sends them over the
//! agent protocol without losing ids, kind, status, events or links. The agent turns
//! them back into the same spans ([`crate::assembly`]); the round trip is tested below.

use std::borrow::Borrow;

use clew_model::{AttributeValue, KeyValue, Resource, SERVICE_NAME, Span, SpanKind, StatusCode};
use serde_json::{Number, Value};

use crate::protocol::{
    AddSpanEvent, Attributes, Command, FinishRequest, Register, ScopeName, SpanLink, SpanStatus,
    StartRequest, StartSpan, StopSpan, TagSpan,
};
use crate::timestamp::Timestamp;

/// `Register` for spans of `resource`: its `service.name` as the app, the rest as clew's
/// `resource` extension.
pub fn register_resource(resource: &Resource, language: &str) -> Command {
    let app = resource
        .attributes
        .iter()
        .find(|a| a.key == SERVICE_NAME)
        .and_then(|a| a.value.as_str())
        .map(str::to_string);
    let extra = Attributes(
        resource
            .attributes
            .iter()
            .filter(|a| a.key != SERVICE_NAME)
            .map(|a| (a.key.clone(), attribute_to_json(&a.value)))
            .collect(),
    );
    Command::Register(Register {
        app,
        key: None,
        host: None,
        language: Some(language.to_string()),
        api_version: Some("1.0".into()),
        resource: (!extra.is_empty()).then_some(extra),
    })
}

/// The commands of one span batch: `StartRequest` with the trace id, then for each span
/// `StartSpan`, its tags, its events and `StopSpan`, then `FinishRequest`. Every span
/// must belong to `spans[0]`'s trace; the request id only has to be unique among the
/// requests open on the connection.
pub fn span_batch_commands<S: Borrow<Span>>(request_id: &str, spans: &[S]) -> Vec<Command> {
    let Some(first) = spans.first().map(Borrow::borrow) else {
        return Vec::new();
    };
    let spans = || spans.iter().map(Borrow::borrow);
    debug_assert!(spans().all(|s| s.trace_id == first.trace_id));
    let start = spans().map(|s| s.start_unix_nano).min().unwrap_or(0);
    let finish = spans().map(|s| s.end_unix_nano).max().unwrap_or(start);
    let mut commands = Vec::new();
    commands.push(Command::StartRequest(StartRequest {
        timestamp: Some(Timestamp(start)),
        request_id: request_id.to_string(),
        trace_id: Some(first.trace_id.to_string()),
    }));
    for span in spans() {
        let span_id = span.span_id.to_string();
        commands.push(Command::StartSpan(StartSpan {
            timestamp: Some(Timestamp(span.start_unix_nano)),
            request_id: request_id.to_string(),
            span_id: span_id.clone(),
            parent_id: span.parent_span_id.map(|p| p.to_string()),
            operation: span.name.clone(),
            kind: (span.kind != SpanKind::Unspecified).then(|| span.kind.as_str().to_string()),
            trace_state: (!span.trace_state.is_empty()).then(|| span.trace_state.clone()),
            flags: (span.flags != u32::from(clew_propagation::FLAG_SAMPLED)).then_some(span.flags),
            scope: (!span.scope.name.is_empty()).then(|| ScopeName {
                name: span.scope.name.clone(),
                version: span.scope.version.clone(),
            }),
            links: span
                .links
                .iter()
                .map(|link| SpanLink {
                    trace_id: link.trace_id.to_string(),
                    span_id: link.span_id.to_string(),
                    trace_state: link.trace_state.clone(),
                    attributes: to_json_map(&link.attributes),
                })
                .collect(),
        }));
        // Commands that name an open span need no request id: the agent knows its owner.
        for attribute in &span.attributes {
            commands.push(Command::TagSpan(TagSpan {
                timestamp: None,
                request_id: None,
                span_id: span_id.clone(),
                tag: attribute.key.clone(),
                value: attribute_to_json(&attribute.value),
            }));
        }
        for event in &span.events {
            commands.push(Command::AddSpanEvent(AddSpanEvent {
                timestamp: Some(Timestamp(event.time_unix_nano)),
                request_id: None,
                span_id: span_id.clone(),
                name: event.name.clone(),
                attributes: to_json_map(&event.attributes),
            }));
        }
        commands.push(Command::StopSpan(StopSpan {
            timestamp: Some(Timestamp(span.end_unix_nano)),
            request_id: None,
            span_id,
            status: (span.status.code != StatusCode::Unset || !span.status.message.is_empty())
                .then(|| SpanStatus {
                    code: match span.status.code {
                        StatusCode::Unset => "UNSET",
                        StatusCode::Ok => "OK",
                        StatusCode::Error => "ERROR",
                    }
                    .to_string(),
                    message: span.status.message.clone(),
                }),
        }));
    }
    commands.push(Command::FinishRequest(FinishRequest {
        timestamp: Some(Timestamp(finish)),
        request_id: request_id.to_string(),
    }));
    commands
}

fn to_json_map(attributes: &[KeyValue]) -> Attributes {
    Attributes(
        attributes
            .iter()
            .map(|a| (a.key.clone(), attribute_to_json(&a.value)))
            .collect(),
    )
}

/// The JSON the agent reads back as the same typed attribute (see
/// [`crate::assembly::json_to_attribute`]); doubles keep a fraction (`3.0`) so they stay
/// doubles, and byte strings become arrays of integers.
pub fn attribute_to_json(value: &AttributeValue) -> Value {
    match value {
        AttributeValue::String(s) => Value::String(s.clone()),
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::Int(i) => Value::Number((*i).into()),
        // JSON has no NaN or infinity; their names keep the information.
        AttributeValue::Double(f) => Number::from_f64(*f)
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(f.to_string())),
        AttributeValue::Bytes(bytes) => {
            Value::Array(bytes.iter().map(|b| Value::Number((*b).into())).collect())
        }
        AttributeValue::Array(items) => Value::Array(items.iter().map(attribute_to_json).collect()),
        AttributeValue::Map(entries) => Value::Object(
            entries
                .iter()
                .map(|a| (a.key.clone(), attribute_to_json(&a.value)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use clew_model::{Event, Link, Scope, SpanId, Status, TraceId};

    use super::*;
    use crate::assembly::{Session, SessionLimits};
    use crate::protocol::{Batch, Reply};

    const T0: u64 = 1_793_620_800_000_000_000;

    fn spans() -> Vec<Span> {
        let resource = Arc::new(Resource {
            attributes: vec![
                KeyValue::new(SERVICE_NAME, "striker"),
                KeyValue::new("service.version", "0.3.1"),
                KeyValue::new("telemetry.sdk.language", "rust"),
            ],
        });
        let trace_id = TraceId::from_hex("0192f3a1b2c3d4e5f60718293a4b5c6d").unwrap();
        let entry = Span {
            trace_id,
            span_id: SpanId::from_hex("a000000000000001").unwrap(),
            parent_span_id: Some(SpanId::from_hex("00f067aa0ba902b7").unwrap()),
            trace_state: "vendor=x".into(),
            name: "striker_control_channel receive".into(),
            kind: SpanKind::Consumer,
            start_unix_nano: T0 + 1,
            end_unix_nano: T0 + 9_000_123,
            attributes: vec![
                KeyValue::new("messaging.system", "redis"),
                KeyValue::new("attempt", 3i64),
                KeyValue::new("heading.deg", AttributeValue::Double(90.0)),
                KeyValue::new("armed", false),
                KeyValue::new(
                    "targets",
                    AttributeValue::Array(vec!["orlan".into(), "ares".into()]),
                ),
            ],
            events: vec![Event {
                time_unix_nano: T0 + 5_000,
                name: "lock_acquired".into(),
                // Not in key order: the wire form must keep the recorded order.
                attributes: vec![
                    KeyValue::new("target", "orlan"),
                    KeyValue::new("distance.m", AttributeValue::Double(412.5)),
                ],
            }],
            links: vec![Link {
                trace_id: TraceId::from_hex("0192f3a1b2c3d4e5f60718293a4b5c00").unwrap(),
                span_id: SpanId::from_hex("c000000000000003").unwrap(),
                trace_state: String::new(),
                attributes: vec![KeyValue::new("reason", "batch")],
            }],
            status: Status {
                code: StatusCode::Error,
                message: "target lost".into(),
            },
            resource: Arc::clone(&resource),
            scope: Scope {
                name: "clew-demo".into(),
                version: "0.1.0".into(),
            },
            flags: 1,
        };
        let child = Span {
            span_id: SpanId::from_hex("b000000000000002").unwrap(),
            parent_span_id: Some(entry.span_id),
            trace_state: String::new(),
            name: "compute_vector".into(),
            kind: SpanKind::Internal,
            start_unix_nano: T0 + 10,
            end_unix_nano: T0 + 20,
            attributes: vec![KeyValue::new(
                "payload",
                AttributeValue::Bytes(vec![0, 255]),
            )],
            events: Vec::new(),
            links: Vec::new(),
            status: Status::default(),
            ..entry.clone()
        };
        vec![child, entry]
    }

    #[test]
    fn spans_survive_the_round_trip_through_the_agent_protocol() {
        let sent = spans();
        let mut commands = vec![register_resource(&sent[0].resource, "rust")];
        commands.extend(span_batch_commands("1", &sent));
        // Through the wire form, as the agent would read it.
        let frame = Command::BatchCommand(Batch { commands }).to_json().unwrap();
        let mut session = Session::new("test", SessionLimits::default());
        let mut out = Vec::new();
        let reply = session.handle(
            Command::from_slice(&frame).unwrap(),
            Timestamp(T0),
            &mut out,
        );
        assert_eq!(reply, Reply::success("BatchCommand"));
        let received = &out[0].spans;
        assert_eq!(received.len(), 2);
        for (expected, got) in sent.iter().zip(received) {
            let mut expected = expected.clone();
            // Bytes have no JSON form of their own; they arrive as their integer values.
            for attribute in &mut expected.attributes {
                if let AttributeValue::Bytes(bytes) = &attribute.value {
                    attribute.value = AttributeValue::Array(
                        bytes
                            .iter()
                            .map(|b| AttributeValue::Int(i64::from(*b)))
                            .collect(),
                    );
                }
            }
            let sorted = |resource: &Resource| {
                let mut attributes = resource.attributes.clone();
                attributes.sort_by(|a, b| a.key.cmp(&b.key));
                attributes
            };
            assert_eq!(sorted(&got.resource), sorted(&expected.resource));
            expected.resource = Arc::clone(&got.resource);
            assert_eq!(got, &expected);
        }
    }

    #[test]
    fn unset_fields_are_left_out_of_the_wire_form() {
        let mut span = spans().remove(0);
        span.scope = Scope::default();
        let commands = span_batch_commands("7", &[span]);
        let text = String::from_utf8(Command::BatchCommand(Batch { commands }).to_json().unwrap())
            .unwrap();
        assert!(!text.contains("\"status\""), "{text}");
        assert!(!text.contains("\"scope\""), "{text}");
        assert!(!text.contains("\"flags\""), "{text}");
        assert!(!text.contains("\"links\""), "{text}");
        assert!(text.contains(r#""kind":"INTERNAL""#), "{text}");
        assert!(text.contains(r#""payload","value":[0,255]"#), "{text}");
    }
}
