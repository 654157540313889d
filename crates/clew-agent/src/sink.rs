//! Where assembled spans go, and who hears about abandoned traces.

use std::sync::Mutex;

use clew_model::{Span, SpanId, TraceId};
use tokio::sync::Notify;

use crate::assembly::AbandonReason;
use crate::timestamp::Timestamp;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// The spans may be accepted later (overload, a collector restarting); the agent
    /// keeps them and tries again with back-off.
    #[error("spans not accepted yet: {0}")]
    Retryable(String),
    /// The spans will never be accepted as they are; the agent logs and drops them.
    #[error("spans rejected: {0}")]
    Rejected(String),
}

/// The destination of the agent's spans: the ingest pipeline inside `clew serve`, an
/// OTLP collector ([`crate::OtlpForwarder`]) when the agent runs alone.
///
/// `send` is called from one task at a time, with batches in arrival order. Returning
/// `Ok` means the sink took responsibility for the spans. The spans are lent, not given,
/// so the agent can offer the same batch again after a retryable error without having
/// copied it in advance.
#[async_trait::async_trait]
pub trait SpanSink: Send + Sync {
    async fn send(&self, spans: &[Span]) -> Result<(), SinkError>;

    /// Called once when the agent stops, after the last `send`: a chance to push out
    /// what the sink still buffers. What it cannot deliver in time it should keep.
    async fn flush(&self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// A trace whose request never finished, as the agent hands it over after sending its
/// spans to the sink.
#[derive(Debug, Clone)]
pub struct AbandonedTrace {
    pub trace_id: TraceId,
    pub root_span_id: SpanId,
    pub request_id: String,
    pub service: String,
    pub reason: AbandonReason,
    /// The last instant the agent heard about the request.
    pub last_seen: Timestamp,
    pub span_count: usize,
}

/// Told about traces cut short, so they can be completed as orphaned (the lifecycle
/// registry) instead of waiting for an end that will never come.
///
/// Called on the connection's task: implementations must not block; hand the work to a
/// task or channel of their own.
pub trait LifecycleHook: Send + Sync {
    fn abandoned(&self, trace: &AbandonedTrace);
}

/// Keeps every span it is sent, in memory. For tests and for tools that read an agent's
/// output in process.
#[derive(Default)]
pub struct MemorySink {
    spans: Mutex<Vec<Span>>,
    arrived: Notify,
}

impl MemorySink {
    pub fn new() -> MemorySink {
        MemorySink::default()
    }

    /// A copy of everything received so far.
    pub fn spans(&self) -> Vec<Span> {
        self.spans.lock().expect("memory sink lock").clone()
    }

    /// Waits until `done` holds for the spans received, or the timeout passes; returns
    /// the spans either way.
    pub async fn wait_for(
        &self,
        timeout: std::time::Duration,
        mut done: impl FnMut(&[Span]) -> bool,
    ) -> Vec<Span> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let arrived = self.arrived.notified();
            {
                let spans = self.spans.lock().expect("memory sink lock");
                if done(&spans) {
                    return spans.clone();
                }
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return self.spans();
            }
        }
    }
}

#[async_trait::async_trait]
impl SpanSink for MemorySink {
    async fn send(&self, spans: &[Span]) -> Result<(), SinkError> {
        self.spans
            .lock()
            .expect("memory sink lock")
            .extend_from_slice(spans);
        self.arrived.notify_waiters();
        Ok(())
    }
}
