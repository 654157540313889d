//! clew's tracing SDK for Rust services.
//!
//! It owns everything an instrumented process needs to produce traces:
//! - [`TracerProvider`] and [`Tracer`] (one per service, each with its own resource,
//!   so several services can share a process), [`SpanBuilder`] and [`Span`]: kinds,
//!   attributes, events, links, status, errors;
//! - the current context ([`Context`]): a thread-local guard for synchronous code and
//!   [`FutureExt`] for futures, correct across `.await` on a multi-threaded runtime;
//! - head sampling ([`Sampler`]): always, never, by trace-id ratio, parent-based;
//! - propagation of W3C `traceparent`/`tracestate`/`baggage` (through
//!   `clew-propagation`) over HTTP headers ([`propagation`]), a JSON message envelope
//!   ([`envelope`]) and a TCP frame ([`frame`]);
//! - messaging over Redis pub/sub and an in-process bus with OpenTelemetry's messaging
//!   conventions ([`messaging`]), and TCP request/response ([`tcp`]);
//! - export: a [`BatchProcessor`] (bounded, never blocks the application, flushes on
//!   [`TracerProvider::shutdown`]), OTLP/gRPC and OTLP/HTTP exporters, per-handler
//!   batching for agents ([`Batching::PerHandler`]);
//! - [`ClewLayer`], which turns `tracing` spans and events into clew spans.
//!
//! It depends on `clew-model`, `clew-propagation` and `clew-otlp` only, and must never
//! import the store, ingest, query, server or CLI crates: applications link it, and an
//! application must not pull in a tracing backend.
//!
//! # The hot path
//! Starting and ending a sampled span takes no lock, no atomic read-modify-write and no
//! allocation once a thread is warm: tracers live for the process and spans point at
//! them; ids come from a per-thread generator; timestamps from the TSC where the kernel
//! trusts it (see `clock.rs`); a span's data lives in one block from a per-thread pool
//! while it is open, so builder and handle are a few words wide; when it ends, its
//! record is copied into a lock-free queue owned by the thread that ended it and the
//! block goes back to that thread's pool. Converting to the model's owned strings,
//! grouping and encoding happen on the export thread. The `sdk` benchmark compares
//! this against `opentelemetry_sdk` and `fastrace` in the same run.
//!
//! # Using it in one process with several services
//! One [`TracerProvider`] (one export pipeline) and one [`Tracer`] per service:
//! `provider.tracer("striker")`, `provider.tracer("ares")`, … Spans carry their
//! tracer's resource, so each shows up under its own service. Services that talk over
//! [`messaging`] or [`tcp`] propagate context exactly as separate processes would.
//! A process that is about to exit calls [`TracerProvider::shutdown`] first.
//!
//! # Example
//! ```
//! use clew_sdk::{InMemoryExporter, SpanKind, TracerProvider, kv};
//!
//! let exporter = InMemoryExporter::new();
//! let provider = TracerProvider::builder()
//!     .with_batch_exporter(exporter.clone())
//!     .build();
//! let tracer = provider.tracer("fpv-ops");
//!
//! let mut root = tracer.span("publish_lock_request_striker").kind(SpanKind::Producer).start();
//! {
//!     let _current = root.enter();
//!     let mut child = tracer.span("choose_target").attribute("target", "orlan").start();
//!     child.add_event("target_chosen", [kv("distance_km", 125.3)]);
//! } // the child ends here
//! root.end();
//!
//! provider.shutdown().unwrap();
//! let spans = exporter.spans();
//! assert_eq!(spans.len(), 2);
//! assert_eq!(spans[0].parent_span_id, Some(spans[1].span_id));
//! ```

mod attr;
mod clock;
mod context;
pub mod envelope;
mod export;
pub mod frame;
mod ids;
mod layer;
pub mod messaging;
mod processor;
pub mod propagation;
mod sampling;
mod suppress;
pub mod tcp;
mod tracer;

pub use attr::{Attribute, Key, Value, kv};
pub use clew_model::{SpanKind, StatusCode};
pub use clock::now_unix_nanos;
pub use context::{Context, ContextGuard, FutureExt, InSpan, SpanContext, WithContext};
pub use envelope::{Envelope, EnvelopeError};
pub use export::{
    AgentExporter, ExportError, InMemoryExporter, NoopExporter, OtlpGrpcExporter, OtlpHttpExporter,
    SpanBatch, SpanExporter,
};
pub use frame::{Frame, FrameError};
pub use layer::ClewLayer;
pub use messaging::{Bus, InProcBus, Message, RedisBus, Subscription};
pub use processor::{BatchConfig, BatchProcessor, Batching, NoopProcessor, SpanProcessor};
pub use sampling::Sampler;
pub use tracer::{FinishedSpan, Span, SpanBuilder, Tracer, TracerProvider, TracerProviderBuilder};
