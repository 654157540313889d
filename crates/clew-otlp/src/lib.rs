//! OTLP, the OpenTelemetry wire format, translated to and from clew's model.
//!
//! Owns decoding of OTLP trace export requests (protobuf and OTLP/JSON, with the JSON
//! traps caught: a body that parses to zero spans because its keys are snake_case is an
//! error, not an empty success) and encoding of model spans back into OTLP
//! `ResourceSpans` (for the v3 query API and for exporters). For the ingest path it also
//! decodes protobuf requests in place ([`receive_protobuf`]): spans that index the request
//! bytes instead of copying them, behind [`SpanBatch`] and [`SpanRef`], which the write
//! path and the store read either form through. Imports `clew-model` and the generated
//! OTLP types only; it knows nothing of sockets, stores or servers.

mod batch;
mod decode;
mod encode;
mod wire;

pub use batch::{Attributes, SpanBatch, SpanRef, Spans, ValueRef, WireSpan, WireSpans};
pub use decode::{
    Decoded, OtlpError, Received, decode_json, decode_protobuf, receive_protobuf,
    spans_from_request,
};
pub use encode::{any_value, key_values, resource_spans, to_request};
pub use opentelemetry_proto::tonic as proto;
pub use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
pub use prost::bytes::Bytes;
