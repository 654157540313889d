use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use clew_model::Span;
use clew_otlp::SpanBatch;
use clew_store::SpanStore;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    /// Retryable: the queue in front of the store is full.
    #[error(
        "clew is overloaded: {queued} spans already wait to be stored; retry after {retry_after:?}"
    )]
    Overloaded {
        queued: usize,
        retry_after: Duration,
    },
    /// Not retryable: this one request is larger than the whole queue.
    #[error(
        "request holds {spans} spans, more than the ingest queue's capacity of {capacity}; send smaller batches"
    )]
    TooLarge { spans: usize, capacity: usize },
    /// Retryable: the store failed or clew is shutting down; nothing was acknowledged.
    #[error("spans not stored: {0}")]
    Unavailable(String),
}

#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Spans accepted but not yet durable, across all connections. Beyond this, clients
    /// get a retryable error: memory stays bounded whatever they send.
    pub max_queued_spans: usize,
    /// Upper bound of one store write (one fsync), coalesced from waiting requests.
    pub max_batch_spans: usize,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            max_queued_spans: 200_000,
            max_batch_spans: 16_384,
        }
    }
}

/// Told about spans once they are durable, on the writer thread: it must not block (hand
/// the spans on through a bounded channel, dropping when it is full).
///
/// The spans come as the batches the receivers queued, possibly still in their wire form;
/// read them through [`SpanBatch::iter`] ([`clew_otlp::SpanRef`] has the accessors).
pub trait StoredSpans: Send + Sync + 'static {
    fn stored(&self, batches: &[SpanBatch]);
}

#[derive(Debug, Default)]
pub struct PipelineStats {
    pub spans_stored: AtomicU64,
    pub batches_written: AtomicU64,
    pub requests_refused: AtomicU64,
}

enum Message {
    Write(Job),
    /// Everything queued before this is stored, then the writer exits.
    Stop,
}

struct Job {
    spans: SpanBatch,
    done: oneshot::Sender<Result<(), String>>,
    _permit: OwnedSemaphorePermit,
}

/// The write path from receivers to the store. Cloning is cheap; every clone feeds the
/// same writer.
#[derive(Clone)]
pub struct Pipeline {
    jobs: mpsc::UnboundedSender<Message>,
    capacity: Arc<Semaphore>,
    config: PipelineConfig,
    stats: Arc<PipelineStats>,
    writer: Arc<std::sync::Mutex<Option<JoinHandle<()>>>>,
}

impl Pipeline {
    pub fn start(store: Arc<dyn SpanStore>, config: PipelineConfig) -> Pipeline {
        Pipeline::start_observed(store, config, None)
    }

    /// Like [`start`](Self::start), telling `observer` about every batch after it is stored.
    pub fn start_observed(
        store: Arc<dyn SpanStore>,
        config: PipelineConfig,
        observer: Option<Arc<dyn StoredSpans>>,
    ) -> Pipeline {
        // The channel itself is unbounded, but every job holds permits for its spans from
        // `capacity`, which bounds what can be queued.
        let (jobs, receiver) = mpsc::unbounded_channel();
        let stats = Arc::new(PipelineStats::default());
        let writer = {
            let stats = Arc::clone(&stats);
            let max_batch = config.max_batch_spans;
            std::thread::Builder::new()
                .name("clew-writer".into())
                .spawn(move || write_loop(store, observer, receiver, max_batch, &stats))
                .expect("spawning the writer thread")
        };
        Pipeline {
            jobs,
            capacity: Arc::new(Semaphore::new(config.max_queued_spans)),
            config,
            stats,
            writer: Arc::new(std::sync::Mutex::new(Some(writer))),
        }
    }

    /// Queues spans and waits until they are durable. Returns an error without waiting
    /// when there is no room.
    pub async fn submit(&self, spans: Vec<Span>) -> Result<(), IngestError> {
        self.submit_batch(SpanBatch::Model(spans)).await
    }

    /// [`submit`](Self::submit) for spans in either form; receivers queue OTLP requests
    /// decoded in place ([`SpanBatch::Wire`]).
    pub async fn submit_batch(&self, spans: SpanBatch) -> Result<(), IngestError> {
        if spans.is_empty() {
            return Ok(());
        }
        let capacity = self.config.max_queued_spans;
        if spans.len() > capacity {
            return Err(IngestError::TooLarge {
                spans: spans.len(),
                capacity,
            });
        }
        let permits = u32::try_from(spans.len()).expect("bounded by capacity");
        let permit = Arc::clone(&self.capacity)
            .try_acquire_many_owned(permits)
            .map_err(|_| {
                self.stats.requests_refused.fetch_add(1, Ordering::Relaxed);
                IngestError::Overloaded {
                    queued: self.queued_spans(),
                    retry_after: Duration::from_secs(1),
                }
            })?;
        let (done, acknowledged) = oneshot::channel();
        self.jobs
            .send(Message::Write(Job {
                spans,
                done,
                _permit: permit,
            }))
            .map_err(|_| IngestError::Unavailable("clew is shutting down".into()))?;
        acknowledged
            .await
            .map_err(|_| IngestError::Unavailable("the writer stopped".into()))?
            .map_err(IngestError::Unavailable)
    }

    /// Spans accepted and not yet durable.
    pub fn queued_spans(&self) -> usize {
        self.config.max_queued_spans - self.capacity.available_permits()
    }

    pub fn stats(&self) -> &PipelineStats {
        &self.stats
    }

    /// Stores everything already queued, then stops the writer and waits for it.
    /// Requests submitted afterwards, through any clone, fail as unavailable.
    pub fn shutdown(&self) {
        let writer = self.writer.lock().expect("writer handle lock").take();
        if let Some(writer) = writer {
            let _ = self.jobs.send(Message::Stop);
            let _ = writer.join();
        }
    }
}

fn write_loop(
    store: Arc<dyn SpanStore>,
    observer: Option<Arc<dyn StoredSpans>>,
    mut receiver: mpsc::UnboundedReceiver<Message>,
    max_batch: usize,
    stats: &PipelineStats,
) {
    let mut batches: Vec<SpanBatch> = Vec::new();
    let mut waiting: Vec<Job> = Vec::new();
    let mut stopping = false;
    while !stopping {
        match receiver.blocking_recv() {
            Some(Message::Write(job)) => waiting.push(job),
            Some(Message::Stop) | None => break,
        }
        let mut queued = waiting[0].spans.len();
        // Group commit: everything that arrived while the last fsync ran shares this one.
        while queued < max_batch {
            match receiver.try_recv() {
                Ok(Message::Write(job)) => {
                    queued += job.spans.len();
                    waiting.push(job);
                }
                Ok(Message::Stop) => {
                    stopping = true;
                    break;
                }
                Err(_) => break,
            }
        }
        // The jobs' batches move as they are: no span is copied on the way to the store.
        batches.clear();
        batches.extend(waiting.iter_mut().map(|job| std::mem::take(&mut job.spans)));
        let result = store.write_batches(&batches).map_err(|e| e.to_string());
        match &result {
            Ok(()) => {
                stats
                    .spans_stored
                    .fetch_add(queued as u64, Ordering::Relaxed);
                stats.batches_written.fetch_add(1, Ordering::Relaxed);
                if let Some(observer) = &observer {
                    observer.stored(&batches);
                }
            }
            Err(error) => tracing::error!(%error, spans = queued, "store write failed"),
        }
        for job in waiting.drain(..) {
            // The queue's room comes back before the answer goes out, so a client that
            // sends again as soon as it is acknowledged finds it.
            let Job { done, _permit, .. } = job;
            drop(_permit);
            let _ = done.send(result.clone());
        }
        // Freed after the answers, not while the next write waits.
        batches.clear();
    }
}
