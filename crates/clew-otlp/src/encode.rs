use std::sync::Arc;

use clew_model::{AttributeValue, KeyValue, Resource, Scope, Span};
use opentelemetry_proto::tonic::common::v1 as common;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::resource::v1 as resource;
use opentelemetry_proto::tonic::trace::v1 as trace;

use crate::ExportTraceServiceRequest;

pub fn any_value(value: &AttributeValue) -> common::AnyValue {
    let value = match value {
        AttributeValue::String(s) => Value::StringValue(s.clone()),
        AttributeValue::Bool(b) => Value::BoolValue(*b),
        AttributeValue::Int(i) => Value::IntValue(*i),
        AttributeValue::Double(d) => Value::DoubleValue(*d),
        AttributeValue::Bytes(b) => Value::BytesValue(b.clone()),
        AttributeValue::Array(items) => Value::ArrayValue(common::ArrayValue {
            values: items.iter().map(any_value).collect(),
        }),
        AttributeValue::Map(items) => Value::KvlistValue(common::KeyValueList {
            values: key_values(items),
        }),
    };
    common::AnyValue { value: Some(value) }
}

pub fn key_values(attributes: &[KeyValue]) -> Vec<common::KeyValue> {
    attributes
        .iter()
        .map(|kv| common::KeyValue {
            key: kv.key.clone(),
            value: Some(any_value(&kv.value)),
            key_strindex: 0,
        })
        .collect()
}

fn span_to_proto(span: &Span) -> trace::Span {
    trace::Span {
        trace_id: span.trace_id.0.to_vec(),
        span_id: span.span_id.0.to_vec(),
        trace_state: span.trace_state.clone(),
        parent_span_id: span
            .parent_span_id
            .map(|p| p.0.to_vec())
            .unwrap_or_default(),
        flags: span.flags,
        name: span.name.clone(),
        kind: span.kind.as_otlp(),
        start_time_unix_nano: span.start_unix_nano,
        end_time_unix_nano: span.end_unix_nano,
        attributes: key_values(&span.attributes),
        dropped_attributes_count: 0,
        events: span
            .events
            .iter()
            .map(|e| trace::span::Event {
                time_unix_nano: e.time_unix_nano,
                name: e.name.clone(),
                attributes: key_values(&e.attributes),
                dropped_attributes_count: 0,
            })
            .collect(),
        dropped_events_count: 0,
        links: span
            .links
            .iter()
            .map(|l| trace::span::Link {
                trace_id: l.trace_id.0.to_vec(),
                span_id: l.span_id.0.to_vec(),
                trace_state: l.trace_state.clone(),
                attributes: key_values(&l.attributes),
                dropped_attributes_count: 0,
                flags: 0,
            })
            .collect(),
        dropped_links_count: 0,
        status: Some(trace::Status {
            message: span.status.message.clone(),
            code: span.status.code.as_otlp(),
        }),
    }
}

type ScopeGroups<'a> = Vec<(&'a Scope, Vec<trace::Span>)>;

/// Groups spans into OTLP `ResourceSpans` by resource and then by scope, keeping the
/// spans' order within each group.
pub fn resource_spans(spans: &[Span]) -> Vec<trace::ResourceSpans> {
    let mut groups: Vec<(&Arc<Resource>, ScopeGroups)> = Vec::new();
    for span in spans {
        let group = match groups
            .iter_mut()
            .position(|(r, _)| Arc::ptr_eq(r, &span.resource) || ***r == *span.resource)
        {
            Some(i) => &mut groups[i].1,
            None => {
                groups.push((&span.resource, Vec::new()));
                &mut groups.last_mut().expect("just pushed").1
            }
        };
        match group.iter_mut().find(|(scope, _)| **scope == span.scope) {
            Some((_, list)) => list.push(span_to_proto(span)),
            None => group.push((&span.scope, vec![span_to_proto(span)])),
        }
    }
    groups
        .into_iter()
        .map(|(res, scopes)| trace::ResourceSpans {
            resource: Some(resource::Resource {
                attributes: key_values(&res.attributes),
                dropped_attributes_count: 0,
                entity_refs: Vec::new(),
            }),
            scope_spans: scopes
                .into_iter()
                .map(|(scope, spans)| trace::ScopeSpans {
                    scope: Some(common::InstrumentationScope {
                        name: scope.name.clone(),
                        version: scope.version.clone(),
                        attributes: Vec::new(),
                        dropped_attributes_count: 0,
                    }),
                    spans,
                    schema_url: String::new(),
                })
                .collect(),
            schema_url: String::new(),
        })
        .collect()
}

pub fn to_request(spans: &[Span]) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: resource_spans(spans),
    }
}
