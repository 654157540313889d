//! Where spans live once they are acknowledged.
//!
//! Owns the [`SpanStore`] trait (the contract every backend meets: durable writes, trace
//! by id, search, services and operations, dependencies, retention) and the embedded
//! backend that needs nothing installed. Imports `clew-model`, and `clew-otlp` for the
//! form spans arrive in ([`SpanBatch`]: model spans, or OTLP requests decoded in place,
//! which the embedded backend encodes without making model spans first); never the
//! ingest, query or server crates, which sit above it.
//!
//! The embedded backend, [`FjallStore`], keeps everything in a [fjall] database in one
//! directory: spans grouped per trace and service in a compact binary encoding, ordered
//! by service and time so the same records serve trace search; resources stored once
//! and referred to by id; the service map counted as spans arrive. Each `write` is one
//! atomic batch, fsynced before it returns.
//!
//! [fjall]: https://docs.rs/fjall

mod embedded;
mod query;

pub use embedded::FjallStore;
pub use query::{Dependency, Operation, TraceQuery, TraceSummary};

use clew_model::{Span, TraceId};
pub use clew_otlp::{SpanBatch, SpanRef};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage engine: {0}")]
    Engine(String),
    #[error("corrupt record under key {key}: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The contract between clew and a span backend.
///
/// Methods block (the embedded engine is synchronous); async callers run them on a
/// blocking thread. `write` returns only once the spans are durable: a span whose write
/// returned `Ok` survives `kill -9` of the process.
pub trait SpanStore: Send + Sync + 'static {
    /// Stores spans durably. Writing the same (trace id, span id) twice keeps the last.
    fn write(&self, spans: &[Span]) -> Result<()>;

    /// Stores the spans of several batches as one durable write, as [`write`](Self::write)
    /// would store them in this order. The ingest pipeline calls this, so that spans still
    /// in their wire form ([`SpanBatch::Wire`]) reach the store without becoming model
    /// spans first; the default does make model spans and calls `write`.
    fn write_batches(&self, batches: &[SpanBatch]) -> Result<()> {
        let spans: Vec<Span> = batches
            .iter()
            .flat_map(SpanBatch::iter)
            .map(SpanRef::to_span)
            .collect();
        self.write(&spans)
    }

    /// Every stored span of a trace, in no particular order; `None` if none is stored.
    fn trace(&self, trace_id: TraceId) -> Result<Option<Vec<Span>>>;

    /// Traces matching the query, newest first (by the start of the matching span),
    /// at most `query.limit` of them.
    fn find_traces(&self, query: &TraceQuery) -> Result<Vec<TraceId>>;

    /// Service names, sorted.
    fn services(&self) -> Result<Vec<String>>;

    /// Operations of a service with their span kinds, sorted by name then kind.
    fn operations(&self, service: &str) -> Result<Vec<Operation>>;

    /// Service-to-service edges for spans that started in `[start_unix_nano, end_unix_nano]`,
    /// CLIENT→SERVER calls and PRODUCER→CONSUMER hops alike.
    fn dependencies(&self, start_unix_nano: u64, end_unix_nano: u64) -> Result<Vec<Dependency>>;

    /// Deletes every trace whose newest span started before `cutoff_unix_nano`; returns how
    /// many spans went.
    fn purge_older_than(&self, cutoff_unix_nano: u64) -> Result<u64>;
}
