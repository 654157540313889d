//! Exporters: where batches of finished spans go.

mod agent;
mod otlp;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use clew_otlp::ExportTraceServiceRequest;

use crate::Tracer;
use crate::tracer::FinishedSpan;

pub use agent::AgentExporter;
pub use otlp::{OtlpGrpcExporter, OtlpHttpExporter};

/// Why a batch was not exported.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExportError {
    #[error(
        "cannot reach the collector at {endpoint}: {reason} (is it running and listening there?)"
    )]
    Unreachable { endpoint: String, reason: String },
    #[error("the collector at {endpoint} refused the batch: {reason}")]
    Rejected { endpoint: String, reason: String },
    #[error("the export did not finish within {0:?}; the batch was abandoned")]
    Timeout(Duration),
    #[error("the span pipeline is shut down")]
    ShutDown,
    #[error("invalid exporter configuration: {0}")]
    Config(String),
    #[error("{0}")]
    Other(String),
}

/// Ended spans handed to an exporter, still in the SDK's own form: an exporter takes
/// them out in the form it sends ([`SpanBatch::take_model`] for clew's model,
/// [`SpanBatch::take_otlp`] for OTLP), so each span is converted once, straight into
/// what goes on the wire, and not at all by an exporter that discards it.
#[derive(Default)]
pub struct SpanBatch {
    spans: Vec<FinishedSpan>,
    taken: bool,
}

impl SpanBatch {
    pub(crate) fn new(spans: Vec<FinishedSpan>) -> SpanBatch {
        SpanBatch {
            spans,
            taken: false,
        }
    }

    pub(crate) fn into_inner(self) -> Vec<FinishedSpan> {
        self.spans
    }

    /// How many spans the batch holds.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The spans, for reading (before they are taken).
    pub fn spans(&self) -> &[FinishedSpan] {
        if self.taken { &[] } else { &self.spans }
    }

    /// The spans as clew's model spans. Taking moves them out: a second call, or one
    /// after [`SpanBatch::take_otlp`], returns nothing.
    pub fn take_model(&mut self) -> Vec<clew_model::Span> {
        if std::mem::replace(&mut self.taken, true) {
            return Vec::new();
        }
        self.spans
            .iter_mut()
            .map(FinishedSpan::take_model)
            .collect()
    }

    /// The spans as an OTLP export request, grouped by resource and scope (one group
    /// per tracer). Taking moves them out, as [`SpanBatch::take_model`] does.
    pub fn take_otlp(&mut self) -> ExportTraceServiceRequest {
        use clew_otlp::proto::common::v1::InstrumentationScope;
        use clew_otlp::proto::resource::v1::Resource;
        use clew_otlp::proto::trace::v1::{ResourceSpans, ScopeSpans};
        if std::mem::replace(&mut self.taken, true) {
            return ExportTraceServiceRequest::default();
        }
        let mut groups: Vec<(Tracer, Vec<clew_otlp::proto::trace::v1::Span>)> = Vec::new();
        for span in &mut self.spans {
            let tracer = span.tracer();
            let proto = span.take_otlp();
            match groups.iter_mut().find(|(t, _)| t.same(&tracer)) {
                Some((_, spans)) => spans.push(proto),
                None => groups.push((tracer, vec![proto])),
            }
        }
        ExportTraceServiceRequest {
            resource_spans: groups
                .into_iter()
                .map(|(tracer, spans)| ResourceSpans {
                    resource: Some(Resource {
                        attributes: clew_otlp::key_values(&tracer.resource().attributes),
                        dropped_attributes_count: 0,
                        entity_refs: Vec::new(),
                    }),
                    scope_spans: vec![ScopeSpans {
                        scope: Some(InstrumentationScope {
                            name: tracer.scope().name.clone(),
                            version: tracer.scope().version.clone(),
                            attributes: Vec::new(),
                            dropped_attributes_count: 0,
                        }),
                        spans,
                        schema_url: String::new(),
                    }],
                    schema_url: String::new(),
                })
                .collect(),
        }
    }
}

impl std::fmt::Debug for SpanBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpanBatch")
            .field("len", &self.spans.len())
            .field("taken", &self.taken)
            .finish()
    }
}

/// Sends batches of ended spans somewhere. The export thread owns the exporter and
/// calls it one batch at a time, so `&mut self` needs no locking.
#[async_trait::async_trait]
pub trait SpanExporter: Send + 'static {
    async fn export(&mut self, batch: &mut SpanBatch) -> Result<(), ExportError>;

    /// Called by `force_flush` after every pending batch was exported.
    async fn force_flush(&mut self) -> Result<(), ExportError> {
        Ok(())
    }

    /// Called once, after the last batch.
    async fn shutdown(&mut self) -> Result<(), ExportError> {
        Ok(())
    }
}

/// Discards every batch (for benchmarks, and for measuring the SDK alone).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoopExporter;

#[async_trait::async_trait]
impl SpanExporter for NoopExporter {
    async fn export(&mut self, _batch: &mut SpanBatch) -> Result<(), ExportError> {
        Ok(())
    }
}

/// Keeps every exported batch in memory, for tests and for printing a run's traces.
/// Clones share the same storage.
#[derive(Debug, Default, Clone)]
pub struct InMemoryExporter {
    batches: Arc<Mutex<Vec<Vec<clew_model::Span>>>>,
}

impl InMemoryExporter {
    pub fn new() -> InMemoryExporter {
        InMemoryExporter::default()
    }

    /// Every span exported so far, in export order.
    pub fn spans(&self) -> Vec<clew_model::Span> {
        self.batches().into_iter().flatten().collect()
    }

    /// Every export call's batch, in order.
    pub fn batches(&self) -> Vec<Vec<clew_model::Span>> {
        self.batches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn clear(&self) {
        self.batches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

#[async_trait::async_trait]
impl SpanExporter for InMemoryExporter {
    async fn export(&mut self, batch: &mut SpanBatch) -> Result<(), ExportError> {
        let spans = batch.take_model();
        self.batches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(spans);
        Ok(())
    }
}
