//! clew's data model: ids, spans and the trace tree.
//!
//! Owns the vocabulary every other crate speaks (trace and span ids, span kinds,
//! typed attributes, events, links, resources) and the assembly of flat spans into a
//! tree. It imports no other clew crate and no I/O: everything here is pure data.

mod ids;
mod span;
pub mod tree;

pub use ids::{IdError, SpanId, TraceId};
pub use span::{
    AttributeValue, Event, KeyValue, Link, Resource, SERVICE_NAME, Scope, Span, SpanKind, Status,
    StatusCode, UNKNOWN_SERVICE, find_attribute,
};
