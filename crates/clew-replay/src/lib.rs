//! Deterministic replay and time-travel diagnostics over one trace.
//!
//! Owns: the causal timeline of a trace ([`Timeline`]: every span start and end, span
//! event, message send and receive and process exit, indexed in happens-before order),
//! snapshots of the whole system at any index and the first fault ([`Snapshot`],
//! [`FirstFault`]), canonical signatures ([`trace_signature`],
//! [`Timeline::timeline_signature`]), trace diffs ([`diff()`]), seeded deterministic
//! flows including the drone scenario ([`flows`]), span selectors ([`Selector`]),
//! replay verification and golden files ([`verify()`], [`Golden`]), and investigation
//! bundles ([`bundle`]).
//!
//! It is a pure library over `Vec<clew_model::Span>`: it imports `clew-model` and never
//! the store, ingest, query, server or CLI crates. Whoever has the spans (the CLI via
//! the HTTP API, the query service via the store) hands them in; every result is a
//! plain `serde` type ready to print as JSON.
//!
//! # Conventions read from traces
//!
//! Process exits, exceptions and abnormal exits are recognised as
//! [`conventions`] documents: an exit is a span event named `process.exit` or carrying
//! `process.exit.code`; it is a fault only with `clew.abnormal = true` or inside a span
//! that ends with status `ERROR`. Exceptions are `exception` span events.
//!
//! # Times
//!
//! `at_us` is integer microseconds since the trace's skew-corrected start. Corrected
//! times come from [`clew_model::tree::TraceTree`] with [`SkewMode::Adjust`]; the raw
//! recorded time of every event is kept beside it.
//!
//! # Canonicalisation rules
//!
//! The **trace signature** is the SHA-256 (lowercase hex) of a canonical JSON document:
//!
//! 1. The spans are assembled with [`TraceTree`] (duplicate span ids keep the last
//!    copy, parent cycles are cut, a missing parent becomes a `{"missing":true}` node).
//! 2. Each span contributes only: service name, span name, kind, status code (not the
//!    message), the values of the chosen attributes ([`SignatureOptions`]; by default
//!    only `messaging.destination.name`), its events in recorded-time order (name and
//!    chosen attributes), and its in-trace links described by the target's
//!    `service/name` (links to other traces are only counted). Span ids, trace ids,
//!    times, durations, resources other than `service.name`, scopes and the order of
//!    attributes never count.
//! 3. Each node's subtree hash is SHA-256 of its own canonical content followed by its
//!    children's subtree hashes, children sorted by (service, name, kind, subtree
//!    hash). Roots are sorted the same way.
//! 4. Nodes are renumbered breadth-first over that sorted tree, and the document is the
//!    array, in that order, of `{"i":number,"l":[linked numbers],"p":parent number or
//!    null,"s":content}`.
//! 5. Canonical JSON: object keys sorted by UTF-8 bytes, no whitespace, strings escaped
//!    as JSON requires, integers as integers, finite doubles always with a fraction or
//!    exponent (so `1.0` ≠ `1`), non-finite doubles as strings, bytes as
//!    `{"bytes":hex}`.
//!
//! So renaming ids or shifting every time keeps the signature; moving a span under
//! another parent, renaming it, changing its kind, status or a chosen attribute, or
//! reordering its events changes it.
//!
//! The **timeline signature** is the last state signature of the timeline: starting
//! from SHA-256 of `clew-replay/timeline/1`, each event's state signature is SHA-256
//! of the previous one followed by the event's canonical JSON (kind, service, span
//! name, span kind, depth, event name, chosen attributes, status at an end, fault).
//! Neither ids nor times enter it, but the order does: two runs whose concurrent
//! branches interleaved differently share a trace signature and differ here.
//!
//! The **canonical steps** that [`verify()`] and golden files compare are a time-free
//! walk of the sorted tree (start, events, children, end of each span), one line per
//! step, so they do not depend on interleaving either.
//!
//! [`TraceTree`]: clew_model::tree::TraceTree
//! [`SkewMode::Adjust`]: clew_model::tree::SkewMode::Adjust

pub mod bundle;
mod canon;
pub mod conventions;
pub mod diff;
pub mod flows;
mod selector;
mod signature;
mod snapshot;
mod timeline;
pub mod verify;

pub use conventions::FaultKind;
pub use diff::{
    DurationDelta, Edit, EditOp, FieldChange, SpanSummary, TraceDiff, diff, diff_timelines,
    diff_with,
};
pub use selector::{Combinator, Condition, Op, Selector, SelectorError, Step};
pub use signature::{
    DEFAULT_SIGNATURE_ATTRIBUTES, SignatureOptions, canonical_document, canonical_steps,
    trace_signature, trace_signature_with,
};
pub use snapshot::{
    Cursor, EventRef, FaultRef, FirstFault, InFlight, MAX_CHECKPOINTS, MAX_KEY_ATTRIBUTES,
    ReplayError, ServiceSnapshot, ServiceStatus, Snapshot, SpanRef,
};
pub use timeline::{Divergence, EventKind, Timeline, TimelineEvent, TimelinePage, TimelineSummary};
pub use verify::{
    Assertion, Golden, GoldenMode, GoldenOutcome, GoldenTrace, Side, VerifyResult,
    check_golden_file, validate, verify, verify_flow, verify_with,
};

/// The timeline signature of a trace with the default options.
pub fn timeline_signature(spans: &[clew_model::Span]) -> String {
    Timeline::build(spans.to_vec()).timeline_signature()
}

#[cfg(test)]
pub(crate) mod test_support;
#[cfg(test)]
mod tests;
