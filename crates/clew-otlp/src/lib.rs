//! OTLP, the OpenTelemetry wire format, translated to and from clew's model.
//!
//! Owns decoding of OTLP trace export requests (protobuf and OTLP/JSON, with the JSON
//! traps caught: a body that parses to zero spans because its keys are snake_case is an
//! error, not an empty success) and encoding of model spans back into OTLP
//! `ResourceSpans` (for the v3 query API and for exporters). Imports `clew-model` and the
//! generated OTLP types only; it knows nothing of sockets, stores or servers.

mod decode;
mod encode;

pub use decode::{Decoded, OtlpError, decode_json, decode_protobuf, spans_from_request};
pub use encode::{any_value, key_values, resource_spans, to_request};
pub use opentelemetry_proto::tonic as proto;
pub use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
