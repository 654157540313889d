//! Getting spans in: the OTLP receivers and the write pipeline behind them.
//!
//! Owns the OTLP/gRPC service (port 4317), the OTLP/HTTP endpoint (port 4318, protobuf and
//! JSON, gzip) and the [`Pipeline`]: a bounded queue in front of one writer thread that
//! commits everything waiting as one durable batch and only then acknowledges each
//! request. When the queue is full, receivers answer with OTLP's retryable errors instead
//! of buffering without bound. Imports `clew-model`, `clew-otlp` and the `SpanStore`
//! trait; never the query API or the server wiring above it.

mod grpc;
mod http;
mod pipeline;

pub use grpc::{OtlpGrpcService, grpc_service, serve_grpc};
pub use http::{HttpLimits, http_router, serve_http};
pub use pipeline::{IngestError, Pipeline, PipelineConfig, PipelineStats, StoredSpans};

pub use clew_otlp::{SpanBatch, SpanRef, ValueRef};

use clew_otlp::{ExportTracePartialSuccess, ExportTraceServiceResponse, Received};

/// Hands decoded spans to the pipeline and builds the OTLP response, shared by both
/// transports so they report partial success the same way.
async fn export(
    pipeline: &Pipeline,
    decoded: Received,
) -> Result<ExportTraceServiceResponse, IngestError> {
    let partial_success = (decoded.rejected > 0).then(|| ExportTracePartialSuccess {
        rejected_spans: decoded.rejected,
        error_message: decoded.rejection_message(),
    });
    if decoded.rejected > 0 {
        tracing::warn!(rejected = decoded.rejected, reason = %decoded.rejection_message(), "rejected invalid spans");
    }
    pipeline.submit_batch(decoded.spans).await?;
    Ok(ExportTraceServiceResponse { partial_success })
}
