//! W3C context propagation for clew: the `traceparent`, `tracestate` and `baggage` text
//! formats, and the carrier traits that move them across process boundaries.
//!
//! This crate owns:
//! - [`TraceParent`]: parsing and formatting of the W3C Trace Context `traceparent`
//!   header, including the forward-compatible parsing of future versions.
//! - [`TraceState`]: the vendor list of the `tracestate` header, its mutation rules
//!   (modified keys move to the front) and its truncation rules.
//! - [`Baggage`]: the W3C Baggage `baggage` header with percent-encoded values,
//!   verbatim metadata and the spec's size limits.
//! - [`Injector`] / [`Extractor`]: the carrier abstraction that HTTP headers, JSON
//!   message envelopes and TCP frames implement, and [`inject`], [`extract`] and
//!   [`extract_baggage`] which read and write all three headers through it.
//!
//! It is pure text processing. It must never do I/O, and must never import the store,
//! server, ingest, query or OTLP crates: its only clew dependency is `clew-model`, for
//! [`TraceId`](clew_model::TraceId) and [`SpanId`](clew_model::SpanId). Everything that
//! speaks a wire protocol depends on this crate, not the other way round.
//!
//! Extraction never fails loudly: an absent or invalid `traceparent` yields `None`, which
//! tells the caller to start a new trace, as the spec requires.
//!
//! ```
//! use std::collections::HashMap;
//!
//! use clew_model::SpanId;
//! use clew_propagation::{TRACEPARENT, TraceContext, extract, extract_baggage, inject};
//!
//! let incoming = HashMap::from([
//!     (
//!         "TraceParent".to_string(),
//!         "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_string(),
//!     ),
//!     ("tracestate".to_string(), "congo=t61rcWkgMzE".to_string()),
//!     ("baggage".to_string(), "userId=Am%C3%A9lie".to_string()),
//! ]);
//! let received = extract(&incoming).expect("a valid traceparent");
//! let mut baggage = extract_baggage(&incoming);
//! assert_eq!(baggage.get("userId"), Some("Amélie"));
//!
//! // Continue the trace from a span of our own, and record our vendor entry.
//! let our_span: SpanId = "b7ad6b7169203331".parse().unwrap();
//! let mut outgoing = TraceContext {
//!     parent: received.parent.with_parent_id(our_span),
//!     state: received.state,
//! };
//! outgoing.state.insert("clew", "b7ad6b7169203331").unwrap();
//! baggage.set("tenant", "acme").unwrap();
//!
//! let mut headers = HashMap::new();
//! inject(&outgoing, &baggage, &mut headers);
//! assert_eq!(
//!     headers[TRACEPARENT],
//!     "00-4bf92f3577b34da6a3ce929d0e0e4736-b7ad6b7169203331-01"
//! );
//! assert_eq!(headers["tracestate"], "clew=b7ad6b7169203331,congo=t61rcWkgMzE");
//! assert_eq!(headers["baggage"], "userId=Am%C3%A9lie,tenant=acme");
//! ```

mod baggage;
mod carrier;
mod traceparent;
mod tracestate;

pub use baggage::{Baggage, BaggageError, BaggageMember, MAX_BAGGAGE_BYTES, MAX_BAGGAGE_MEMBERS};
pub use carrier::{Extractor, Injector, TraceContext, extract, extract_baggage, inject};
pub use traceparent::{FLAG_RANDOM, FLAG_SAMPLED, KNOWN_FLAGS, TraceParent, TraceParentError};
pub use tracestate::{
    MAX_TRACESTATE_HEADER_LEN, MAX_TRACESTATE_MEMBERS, TraceState, TraceStateError,
};

/// The `traceparent` header name, in the lowercase form the spec asks senders to use.
pub const TRACEPARENT: &str = "traceparent";
/// The `tracestate` header name.
pub const TRACESTATE: &str = "tracestate";
/// The `baggage` header name.
pub const BAGGAGE: &str = "baggage";

/// Optional whitespace as RFC 9110 defines it: spaces and horizontal tabs only.
fn trim_ows(s: &str) -> &str {
    s.trim_matches([' ', '\t'])
}
