//! Where spans live once they are acknowledged.
//!
//! Owns the [`SpanStore`] trait (the contract every backend meets: durable writes, trace
//! by id, search, services and operations, dependencies, retention) and the embedded
//! backend that needs nothing installed. Imports only `clew-model`; never the ingest,
//! query or server crates, which sit above it.
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
