//! clew spans as Jaeger's UI model (`internal/uimodel` in Jaeger), converted the way
//! Jaeger converts OpenTelemetry spans: the parent and links become references, events
//! become logs, the resource becomes a deduplicated process, and kind, status and scope
//! become conventional tags.

use std::collections::BTreeMap;
use std::sync::Arc;

use clew_model::{AttributeValue, KeyValue, Resource, SERVICE_NAME, Span};
use serde::Serialize;
use serde_json::Value;

use crate::params::base64_encode;
use crate::search::{derived_tag, status_code_name};

/// Integers beyond this lose precision in JavaScript, so Jaeger sends them as strings.
const JS_MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

#[derive(Debug, Serialize)]
pub(crate) struct Trace {
    #[serde(rename = "traceID")]
    trace_id: String,
    spans: Vec<UiSpan>,
    processes: BTreeMap<String, Process>,
    warnings: Option<Vec<String>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct UiSpan {
    #[serde(rename = "traceID")]
    trace_id: String,
    #[serde(rename = "spanID")]
    span_id: String,
    flags: u32,
    operation_name: String,
    references: Vec<Reference>,
    start_time: u64,
    duration: u64,
    tags: Vec<Tag>,
    logs: Vec<Log>,
    #[serde(rename = "processID")]
    process_id: String,
    warnings: Option<Vec<String>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Reference {
    ref_type: &'static str,
    #[serde(rename = "traceID")]
    trace_id: String,
    #[serde(rename = "spanID")]
    span_id: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Process {
    service_name: String,
    tags: Vec<Tag>,
}

#[derive(Debug, Serialize)]
struct Log {
    timestamp: u64,
    fields: Vec<Tag>,
}

#[derive(Debug, Serialize)]
struct Tag {
    key: String,
    #[serde(rename = "type")]
    kind: &'static str,
    value: Value,
}

impl Tag {
    fn string(key: &str, value: impl Into<String>) -> Tag {
        Tag {
            key: key.to_string(),
            kind: "string",
            value: Value::String(value.into()),
        }
    }

    fn of(kv: &KeyValue) -> Tag {
        let (kind, value) = match &kv.value {
            AttributeValue::String(s) => ("string", Value::String(s.clone())),
            AttributeValue::Bool(b) => ("bool", Value::Bool(*b)),
            AttributeValue::Int(i) if (-JS_MAX_SAFE_INTEGER..=JS_MAX_SAFE_INTEGER).contains(i) => {
                ("int64", Value::from(*i))
            }
            AttributeValue::Int(i) => ("int64", Value::String(i.to_string())),
            AttributeValue::Double(d) => match serde_json::Number::from_f64(*d) {
                Some(n) => ("float64", Value::Number(n)),
                // JSON has no NaN or infinity; Jaeger would fail the whole response.
                None => ("string", Value::String(d.to_string())),
            },
            AttributeValue::Bytes(b) => ("binary", Value::String(base64_encode(b))),
            // Jaeger has no composite tag type; it shows arrays and maps as JSON text.
            composite => (
                "string",
                Value::String(attribute_json(composite).to_string()),
            ),
        };
        Tag {
            key: kv.key.clone(),
            kind,
            value,
        }
    }
}

/// An attribute value as plain JSON, the form Jaeger prints arrays and maps in.
fn attribute_json(value: &AttributeValue) -> Value {
    match value {
        AttributeValue::String(s) => Value::String(s.clone()),
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::Int(i) => Value::from(*i),
        AttributeValue::Double(d) => {
            serde_json::Number::from_f64(*d).map_or(Value::String(d.to_string()), Value::Number)
        }
        AttributeValue::Bytes(b) => Value::String(base64_encode(b)),
        AttributeValue::Array(items) => Value::Array(items.iter().map(attribute_json).collect()),
        AttributeValue::Map(items) => Value::Object(
            items
                .iter()
                .map(|kv| (kv.key.clone(), attribute_json(&kv.value)))
                .collect(),
        ),
    }
}

/// Converts the spans of one trace. Spans come out ordered by start time (then id) so
/// that a response does not depend on storage order.
pub(crate) fn trace(mut spans: Vec<Span>) -> Trace {
    spans.sort_by_key(|s| (s.start_unix_nano, s.span_id.0));
    let mut processes = Processes::default();
    let ui_spans = spans
        .iter()
        .map(|span| {
            let process_id = processes.id_of(&span.resource);
            ui_span(span, process_id)
        })
        .collect();
    Trace {
        trace_id: spans
            .first()
            .map(|s| s.trace_id.to_string())
            .unwrap_or_default(),
        spans: ui_spans,
        processes: processes.into_map(),
        warnings: None,
    }
}

/// Jaeger's process table: one entry per distinct resource, named `p1`, `p2`, … in order
/// of first use.
#[derive(Default)]
struct Processes<'a> {
    seen: Vec<&'a Arc<Resource>>,
}

impl<'a> Processes<'a> {
    fn id_of(&mut self, resource: &'a Arc<Resource>) -> String {
        let index = match self
            .seen
            .iter()
            .position(|r| Arc::ptr_eq(r, resource) || ***r == **resource)
        {
            Some(i) => i,
            None => {
                self.seen.push(resource);
                self.seen.len() - 1
            }
        };
        format!("p{}", index + 1)
    }

    fn into_map(self) -> BTreeMap<String, Process> {
        self.seen
            .into_iter()
            .enumerate()
            .map(|(i, resource)| {
                let process = Process {
                    service_name: resource.service_name().to_string(),
                    tags: resource
                        .attributes
                        .iter()
                        .filter(|kv| kv.key != SERVICE_NAME)
                        .map(Tag::of)
                        .collect(),
                };
                (format!("p{}", i + 1), process)
            })
            .collect()
    }
}

fn ui_span(span: &Span, process_id: String) -> UiSpan {
    let trace_id = span.trace_id.to_string();
    let mut references = Vec::with_capacity(span.links.len() + 1);
    if let Some(parent) = span.parent_span_id {
        references.push(Reference {
            ref_type: "CHILD_OF",
            trace_id: trace_id.clone(),
            span_id: parent.to_string(),
        });
    }
    references.extend(span.links.iter().map(|link| Reference {
        ref_type: "FOLLOWS_FROM",
        trace_id: link.trace_id.to_string(),
        span_id: link.span_id.to_string(),
    }));
    let logs = span
        .events
        .iter()
        .map(|event| {
            let mut fields = Vec::with_capacity(event.attributes.len() + 1);
            if !event.name.is_empty() {
                fields.push(Tag::string("event", event.name.clone()));
            }
            fields.extend(event.attributes.iter().map(Tag::of));
            Log {
                timestamp: event.time_unix_nano / 1_000,
                fields,
            }
        })
        .collect();
    UiSpan {
        trace_id,
        span_id: span.span_id.to_string(),
        // Only the W3C trace flags: OTLP's higher bits (parent is remote) mean nothing to
        // Jaeger, whose flags are sampled and debug bits.
        flags: span.flags & 0xff,
        operation_name: span.name.clone(),
        references,
        start_time: span.start_unix_nano / 1_000,
        duration: span.duration_nanos() / 1_000,
        tags: tags(span),
        logs,
        process_id,
        warnings: None,
    }
}

/// The span's attributes followed by the tags Jaeger derives from its fields.
fn tags(span: &Span) -> Vec<Tag> {
    let mut tags: Vec<Tag> = span.attributes.iter().map(Tag::of).collect();
    for key in ["otel.scope.name", "otel.scope.version", "span.kind"] {
        if let Some(value) = derived_tag(span, key) {
            tags.push(Tag::string(key, value));
        }
    }
    if let Some(code) = status_code_name(span.status.code) {
        tags.push(Tag::string("otel.status_code", code));
    }
    if span.is_error() {
        tags.push(Tag {
            key: "error".to_string(),
            kind: "bool",
            value: Value::Bool(true),
        });
    }
    for key in ["otel.status_description", "w3c.tracestate"] {
        if let Some(value) = derived_tag(span, key) {
            tags.push(Tag::string(key, value));
        }
    }
    tags
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_types_follow_jaeger() {
        let tag =
            |v: AttributeValue| serde_json::to_value(Tag::of(&KeyValue::new("k", v))).unwrap();
        assert_eq!(
            tag(AttributeValue::Int(42)),
            serde_json::json!({"key": "k", "type": "int64", "value": 42})
        );
        assert_eq!(
            tag(AttributeValue::Int(i64::MAX)),
            serde_json::json!({"key": "k", "type": "int64", "value": i64::MAX.to_string()})
        );
        assert_eq!(
            tag(AttributeValue::Double(1.5)),
            serde_json::json!({"key": "k", "type": "float64", "value": 1.5})
        );
        assert_eq!(
            tag(AttributeValue::Double(f64::NAN)),
            serde_json::json!({"key": "k", "type": "string", "value": "NaN"})
        );
        assert_eq!(
            tag(AttributeValue::Bytes(b"foo".to_vec())),
            serde_json::json!({"key": "k", "type": "binary", "value": "Zm9v"})
        );
        assert_eq!(
            tag(AttributeValue::Array(vec![
                "a".into(),
                AttributeValue::Int(1)
            ])),
            serde_json::json!({"key": "k", "type": "string", "value": "[\"a\",1]"})
        );
        assert_eq!(
            tag(AttributeValue::Map(vec![KeyValue::new("x", true)])),
            serde_json::json!({"key": "k", "type": "string", "value": "{\"x\":true}"})
        );
    }
}
