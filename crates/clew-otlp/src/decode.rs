use std::sync::Arc;

use clew_model::{
    AttributeValue, Event, KeyValue, Link, Resource, Scope, Span, SpanId, SpanKind, Status,
    StatusCode, TraceId,
};
use opentelemetry_proto::tonic::common::v1 as common;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1 as trace;
use prost::Message;

use crate::ExportTraceServiceRequest;
use crate::batch::SpanBatch;
use prost::bytes::Bytes;

#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    #[error("malformed OTLP protobuf: {0}")]
    Protobuf(#[from] prost::DecodeError),
    #[error(
        "malformed OTLP/JSON: {0} (OTLP/JSON uses camelCase keys, hex trace and span ids, \
         and integers for enum values such as kind and status.code)"
    )]
    Json(#[from] serde_json::Error),
    #[error(
        "OTLP/JSON request holds no spans but has keys OTLP does not define: {keys}; \
         OTLP/JSON keys are camelCase (resourceSpans, scopeSpans, traceId, startTimeUnixNano, …)"
    )]
    UnknownKeys { keys: String },
}

/// A decoded export request: the valid spans, and what was rejected and why (reported to
/// the client as OTLP partial success).
#[derive(Debug, Default)]
pub struct Decoded {
    pub spans: Vec<Span>,
    pub rejected: i64,
    pub rejection_reasons: Vec<String>,
}

impl Decoded {
    /// One line for OTLP's `partial_success.error_message`, empty when nothing was rejected.
    pub fn rejection_message(&self) -> String {
        rejection_message(&self.rejection_reasons)
    }
}

/// A received export request ready for the write path: the valid spans, in place in the
/// request body or as model spans, and what was rejected and why.
#[derive(Debug, Default)]
pub struct Received {
    pub spans: SpanBatch,
    pub rejected: i64,
    pub rejection_reasons: Vec<String>,
}

impl Received {
    /// One line for OTLP's `partial_success.error_message`, empty when nothing was rejected.
    pub fn rejection_message(&self) -> String {
        rejection_message(&self.rejection_reasons)
    }
}

impl From<Decoded> for Received {
    fn from(decoded: Decoded) -> Received {
        Received {
            spans: SpanBatch::Model(decoded.spans),
            rejected: decoded.rejected,
            rejection_reasons: decoded.rejection_reasons,
        }
    }
}

fn rejection_message(reasons: &[String]) -> String {
    const SHOWN: usize = 3;
    let mut message = reasons
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if reasons.len() > SHOWN {
        message.push_str(&format!(" (and {} more)", reasons.len() - SHOWN));
    }
    message
}

/// Decodes a protobuf export request for the write path: the same spans and rejections
/// as `spans_from_request(decode_protobuf(&body)?)`, but indexed in place in `body`
/// ([`SpanBatch::Wire`]) at a fraction of the cost. Requests out of the ordinary (see
/// `wire.rs`) take the generic path and come back as model spans.
pub fn receive_protobuf(body: Bytes) -> Result<Received, OtlpError> {
    match crate::wire::decode(body.clone()) {
        Ok(found) => Ok(Received {
            spans: SpanBatch::Wire(found.spans),
            rejected: found.rejected,
            rejection_reasons: found.rejection_reasons,
        }),
        Err(crate::wire::Unusual) => Ok(spans_from_request(decode_protobuf(&body)?).into()),
    }
}

pub fn decode_protobuf(body: &[u8]) -> Result<ExportTraceServiceRequest, OtlpError> {
    Ok(ExportTraceServiceRequest::decode(body)?)
}

/// Stands in for a double JSON cannot hold while the request is deserialized.
const NON_FINITE_MARK: &str = "\u{0}clew-non-finite-double\u{0}";

/// Protobuf's JSON mapping writes NaN and the infinities as the strings `"NaN"`,
/// `"Infinity"` and `"-Infinity"` (the OpenTelemetry Collector does), which the generated
/// types' serde does not read. Such values are swapped for a marked string, the request
/// deserialized, and the marks turned back into doubles. `None` when the body has none
/// or still does not decode.
fn decode_json_with_named_doubles(body: &[u8]) -> Option<ExportTraceServiceRequest> {
    fn mark(value: &mut serde_json::Value) -> bool {
        match value {
            serde_json::Value::Object(map) => {
                let named = match map.get("doubleValue") {
                    Some(serde_json::Value::String(name)) => {
                        matches!(name.as_str(), "NaN" | "Infinity" | "-Infinity")
                    }
                    _ => false,
                };
                if named && let Some(serde_json::Value::String(name)) = map.remove("doubleValue") {
                    map.insert(
                        "stringValue".into(),
                        serde_json::Value::String(format!("{NON_FINITE_MARK}{name}")),
                    );
                    return true;
                }
                map.values_mut().fold(false, |found, v| mark(v) | found)
            }
            serde_json::Value::Array(items) => {
                items.iter_mut().fold(false, |found, v| mark(v) | found)
            }
            _ => false,
        }
    }
    fn unmark_value(value: &mut common::AnyValue) {
        match &mut value.value {
            Some(Value::StringValue(text)) => {
                if let Some(name) = text.strip_prefix(NON_FINITE_MARK) {
                    let double = match name {
                        "NaN" => f64::NAN,
                        "Infinity" => f64::INFINITY,
                        _ => f64::NEG_INFINITY,
                    };
                    value.value = Some(Value::DoubleValue(double));
                }
            }
            Some(Value::ArrayValue(array)) => array.values.iter_mut().for_each(unmark_value),
            Some(Value::KvlistValue(list)) => unmark(&mut list.values),
            _ => {}
        }
    }
    fn unmark(attributes: &mut [common::KeyValue]) {
        for attribute in attributes {
            if let Some(value) = attribute.value.as_mut() {
                unmark_value(value);
            }
        }
    }
    let mut value: serde_json::Value = serde_json::from_slice(body).ok()?;
    if !mark(&mut value) {
        return None;
    }
    let mut request: ExportTraceServiceRequest = serde_json::from_value(value).ok()?;
    for resource_spans in &mut request.resource_spans {
        if let Some(resource) = resource_spans.resource.as_mut() {
            unmark(&mut resource.attributes);
        }
        for scope_spans in &mut resource_spans.scope_spans {
            if let Some(scope) = scope_spans.scope.as_mut() {
                unmark(&mut scope.attributes);
            }
            for span in &mut scope_spans.spans {
                unmark(&mut span.attributes);
                span.events
                    .iter_mut()
                    .for_each(|e| unmark(&mut e.attributes));
                span.links
                    .iter_mut()
                    .for_each(|l| unmark(&mut l.attributes));
            }
        }
    }
    Some(request)
}

/// Decodes an OTLP/JSON body. serde silently ignores unknown keys, so a request written
/// with snake_case keys would parse to nothing; when no span comes out, the body is
/// checked for keys outside OTLP's vocabulary and rejected if it has any.
pub fn decode_json(body: &[u8]) -> Result<ExportTraceServiceRequest, OtlpError> {
    let request: ExportTraceServiceRequest = match serde_json::from_slice(body) {
        Ok(request) => request,
        Err(error) => decode_json_with_named_doubles(body).ok_or(error)?,
    };
    let span_count: usize = request
        .resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .map(|ss| ss.spans.len())
        .sum();
    if span_count == 0 {
        let value: serde_json::Value = serde_json::from_slice(body)?;
        let mut unknown = Vec::new();
        collect_unknown_keys(&value, &mut unknown);
        if !unknown.is_empty() {
            unknown.sort();
            unknown.dedup();
            return Err(OtlpError::UnknownKeys {
                keys: unknown.join(", "),
            });
        }
    }
    Ok(request)
}

/// Keys that may appear on the path from the request down to the span list.
const CONTAINER_KEYS: &[&str] = &[
    "resourceSpans",
    "resource",
    "attributes",
    "droppedAttributesCount",
    "entityRefs",
    "schemaUrl",
    "scopeSpans",
    "scope",
    "name",
    "version",
    "spans",
];

fn collect_unknown_keys(value: &serde_json::Value, unknown: &mut Vec<String>) {
    let serde_json::Value::Object(map) = value else {
        return;
    };
    for (key, child) in map {
        if !CONTAINER_KEYS.contains(&key.as_str()) {
            unknown.push(key.clone());
            continue;
        }
        // Attribute lists and the resource/scope bodies are free-form below this point.
        if matches!(key.as_str(), "resourceSpans" | "scopeSpans") {
            for item in child.as_array().into_iter().flatten() {
                collect_unknown_keys(item, unknown);
            }
        }
    }
}

/// Turns an export request into model spans, rejecting the spans OTLP calls invalid
/// (trace id not 16 non-zero bytes, span id not 8 non-zero bytes, parent id of a wrong
/// length) instead of failing the whole request.
pub fn spans_from_request(request: ExportTraceServiceRequest) -> Decoded {
    let mut decoded = Decoded::default();
    for resource_spans in request.resource_spans {
        let resource = Arc::new(Resource {
            attributes: resource_spans
                .resource
                .map(|r| attributes(r.attributes))
                .unwrap_or_default(),
        });
        for scope_spans in resource_spans.scope_spans {
            let scope = scope_spans
                .scope
                .map(|s| Scope {
                    name: s.name,
                    version: s.version,
                })
                .unwrap_or_default();
            for span in scope_spans.spans {
                match span_from_proto(span, &resource, &scope) {
                    Ok(span) => decoded.spans.push(span),
                    Err(reason) => {
                        decoded.rejected += 1;
                        decoded.rejection_reasons.push(reason);
                    }
                }
            }
        }
    }
    decoded
}

fn span_from_proto(
    span: trace::Span,
    resource: &Arc<Resource>,
    scope: &Scope,
) -> Result<Span, String> {
    let (trace_id, span_id, parent_span_id) = SpanCheck::ids(
        &span.trace_id,
        &span.span_id,
        &span.parent_span_id,
        &span.name,
    )?;
    let status = span
        .status
        .map(|s| Status {
            code: StatusCode::from_otlp(s.code).unwrap_or_default(),
            message: s.message,
        })
        .unwrap_or_default();
    Ok(Span {
        trace_id,
        span_id,
        parent_span_id,
        trace_state: span.trace_state,
        name: span.name,
        kind: SpanKind::from_otlp(span.kind).unwrap_or_default(),
        start_unix_nano: span.start_time_unix_nano,
        end_unix_nano: span.end_time_unix_nano.max(span.start_time_unix_nano),
        attributes: attributes(span.attributes),
        events: span
            .events
            .into_iter()
            .map(|e| Event {
                time_unix_nano: e.time_unix_nano,
                name: e.name,
                attributes: attributes(e.attributes),
            })
            .collect(),
        links: span
            .links
            .into_iter()
            .filter_map(|l| {
                Some(Link {
                    trace_id: TraceId::from_slice(&l.trace_id)?,
                    span_id: SpanId::from_slice(&l.span_id)?,
                    trace_state: l.trace_state,
                    attributes: attributes(l.attributes),
                })
            })
            .collect(),
        status,
        resource: Arc::clone(resource),
        scope: scope.clone(),
        flags: span.flags,
    })
}

/// The id checks both decoders apply to a span.
pub(crate) struct SpanCheck;

impl SpanCheck {
    /// The span's ids, or why OTLP calls the span invalid.
    pub(crate) fn ids(
        trace_id: &[u8],
        span_id: &[u8],
        parent_span_id: &[u8],
        name: &str,
    ) -> Result<(TraceId, SpanId, Option<SpanId>), String> {
        let trace_id = TraceId::from_slice(trace_id)
            .filter(TraceId::is_valid)
            .ok_or_else(|| format!("span {name:?}: trace id must be 16 bytes, not all zero"))?;
        let span_id = SpanId::from_slice(span_id)
            .filter(SpanId::is_valid)
            .ok_or_else(|| format!("span {name:?}: span id must be 8 bytes, not all zero"))?;
        let parent_span_id = match parent_span_id.len() {
            0 => None,
            _ => Some(
                SpanId::from_slice(parent_span_id)
                    .ok_or_else(|| format!("span {name:?}: parent span id must be 8 bytes"))?,
            )
            .filter(SpanId::is_valid),
        };
        Ok((trace_id, span_id, parent_span_id))
    }
}

fn attributes(kvs: Vec<common::KeyValue>) -> Vec<KeyValue> {
    kvs.into_iter()
        .filter_map(|kv| {
            Some(KeyValue {
                key: kv.key,
                value: attribute_value(kv.value?.value?)?,
            })
        })
        .collect()
}

fn attribute_value(value: Value) -> Option<AttributeValue> {
    Some(match value {
        Value::StringValue(s) => AttributeValue::String(s),
        Value::BoolValue(b) => AttributeValue::Bool(b),
        Value::IntValue(i) => AttributeValue::Int(i),
        Value::DoubleValue(d) => AttributeValue::Double(d),
        Value::BytesValue(b) => AttributeValue::Bytes(b),
        Value::ArrayValue(a) => AttributeValue::Array(
            a.values
                .into_iter()
                .filter_map(|v| attribute_value(v.value?))
                .collect(),
        ),
        Value::KvlistValue(l) => AttributeValue::Map(attributes(l.values)),
        // Only meaningful for the profiling signal; OTLP says to ignore it elsewhere.
        Value::StringValueStrindex(_) => return None,
    })
}
