//! Span processors: what happens to a span when it ends.
//!
//! The [`BatchProcessor`] appends each ended span to a queue of the thread that ended it
//! and returns; a dedicated thread collects the queues, converts spans to the model,
//! groups them and exports them. The application thread never waits for the exporter:
//! when its queue is full the span is dropped and counted.
//!
//! Why one queue per thread: a queue shared by every thread and the export thread keeps
//! its head and tail bouncing between CPU caches, which costs more than the rest of a
//! span. A thread's own queue is a mutex that only its owner takes, except when the
//! export thread swaps the whole queue out once per batch, so the lock stays in the
//! owner's cache and is never contended on the hot path. Unlike a thread-local buffer,
//! the export thread can reach it, so `force_flush` and `shutdown` miss nothing.

use std::cell::RefCell;
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use clew_model::{SpanId, TraceId};

use crate::export::{ExportError, SpanBatch, SpanExporter};
use crate::suppress;
use crate::tracer::{self, FinishedSpan, PooledSpan};

/// Receives every sampled span when it ends.
#[async_trait::async_trait]
pub trait SpanProcessor: Send + Sync + 'static {
    /// Called on the thread that ended the span: must not block.
    fn on_end(&self, span: FinishedSpan);

    /// Exports everything ended so far; blocks until done.
    fn force_flush(&self) -> Result<(), ExportError>;

    /// Flushes and shuts down; blocks until done.
    fn shutdown(&self) -> Result<(), ExportError>;

    async fn force_flush_async(&self) -> Result<(), ExportError> {
        self.force_flush()
    }

    async fn shutdown_async(&self) -> Result<(), ExportError> {
        self.shutdown()
    }

    /// Spans dropped rather than exported (queue full, or ended after shutdown).
    fn dropped_spans(&self) -> u64 {
        0
    }
}

/// Drops every span.
pub struct NoopProcessor;

impl SpanProcessor for NoopProcessor {
    fn on_end(&self, _span: FinishedSpan) {}
    fn force_flush(&self) -> Result<(), ExportError> {
        Ok(())
    }
    fn shutdown(&self) -> Result<(), ExportError> {
        Ok(())
    }
}

/// How the [`BatchProcessor`] cuts spans into export calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batching {
    /// Up to `max_export_batch_size` spans per call, whatever they belong to; sent when
    /// that many are waiting or every `scheduled_delay`.
    BySize,
    /// Everything one request or message handler produced in one call: spans wait for
    /// the handler's entry span (the first span of the trace in this process, whose
    /// parent is remote or absent) to end, then go out together. This is how APM
    /// agents talk to their per-host daemon (one `BatchCommand` per request).
    ///
    /// A handler whose spans exceed `max_export_batch_size`, or whose entry span stays
    /// open longer than `max_hold`, is sent in parts. Spans that end after their entry
    /// span go out with the next scheduled export.
    PerHandler,
}

/// Tuning of a [`BatchProcessor`].
#[derive(Debug, Clone)]
pub struct BatchConfig {
    /// Spans waiting for the export thread, per application thread; beyond this, that
    /// thread's ended spans are dropped.
    pub max_queue_size: usize,
    /// The most spans in one export call.
    pub max_export_batch_size: usize,
    /// How often waiting spans are exported even when a batch is not full.
    pub scheduled_delay: Duration,
    /// The longest one export call may take before it is abandoned.
    pub export_timeout: Duration,
    pub batching: Batching,
    /// With [`Batching::PerHandler`], how long spans may wait for their handler's
    /// entry span before they are sent without it.
    pub max_hold: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_queue_size: 4096,
            max_export_batch_size: 512,
            scheduled_delay: Duration::from_secs(1),
            export_timeout: Duration::from_secs(10),
            batching: Batching::BySize,
            max_hold: Duration::from_secs(30),
        }
    }
}

impl BatchConfig {
    /// The defaults with [`Batching::PerHandler`].
    pub fn per_handler() -> BatchConfig {
        BatchConfig {
            batching: Batching::PerHandler,
            ..BatchConfig::default()
        }
    }
}

type Outcome = Result<(), ExportError>;

enum Reply {
    Blocking(std::sync::mpsc::Sender<Outcome>),
    Async(tokio::sync::oneshot::Sender<Outcome>),
}

impl Reply {
    fn send(self, outcome: Outcome) {
        match self {
            Reply::Blocking(tx) => {
                let _ = tx.send(outcome);
            }
            Reply::Async(tx) => {
                let _ = tx.send(outcome);
            }
        }
    }
}

struct Request {
    shutdown: bool,
    reply: Reply,
}

#[derive(Default)]
struct Requests {
    /// Set when the export thread has stopped; nobody would answer a request then.
    closed: bool,
    waiting: Vec<Request>,
}

/// One application thread's ended spans, and the emptied span blocks the export
/// thread hands back for that thread to reuse.
pub(crate) struct Shard {
    queue: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    spans: Vec<FinishedSpan>,
    returned: Vec<PooledSpan>,
}

static NEXT_PROCESSOR_ID: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's shard of each batch processor it has ended spans for.
    static SHARDS: RefCell<Vec<(usize, Arc<Shard>)>> = const { RefCell::new(Vec::new()) };
}

struct Shared {
    id: usize,
    dropped: AtomicU64,
    shut_down: AtomicBool,
    max_queue_size: usize,
    wake_at: usize,
    shards: Mutex<Vec<Arc<Shard>>>,
    requests: Mutex<Requests>,
    worker: OnceLock<Thread>,
}

impl Shared {
    fn wake(&self) {
        if let Some(thread) = self.worker.get() {
            thread.unpark();
        }
    }

    fn lock_requests(&self) -> std::sync::MutexGuard<'_, Requests> {
        self.requests.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn new_shard(&self) -> Arc<Shard> {
        let shard = Arc::new(Shard {
            queue: Mutex::new(Queue {
                spans: Vec::with_capacity(self.wake_at.min(self.max_queue_size)),
                returned: Vec::new(),
            }),
        });
        self.shards
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(shard.clone());
        shard
    }

    #[inline]
    fn enqueue(&self, span: FinishedSpan) {
        let mut span = Some(span);
        let queued = SHARDS.try_with(|shards| {
            let mut shards = shards.borrow_mut();
            let shard = match shards.iter().find(|(id, _)| *id == self.id) {
                Some((_, shard)) => shard,
                None => {
                    shards.push((self.id, self.new_shard()));
                    &shards.last().expect("just pushed").1
                }
            };
            let mut queue = shard.queue.lock().unwrap_or_else(|e| e.into_inner());
            if !queue.returned.is_empty() && tracer::pool_wants_more() {
                tracer::refill_pool(&mut queue.returned);
            }
            if queue.spans.len() >= self.max_queue_size {
                return false;
            }
            queue.spans.push(span.take().expect("once"));
            queue.spans.len() == self.wake_at
        });
        match queued {
            // Wake the export thread once per full batch; between wakes it sleeps until
            // the scheduled delay, so ending a span costs no system call.
            Ok(true) => self.wake(),
            Ok(false) if span.is_none() => {}
            // Queue full, or the thread is being torn down.
            _ => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The shards to collect from, forgetting those of threads that have exited once
    /// they are empty (a thread may queue spans right up to its exit).
    fn shards(&self) -> Vec<Arc<Shard>> {
        let mut shards = self.shards.lock().unwrap_or_else(|e| e.into_inner());
        shards.retain(|shard| {
            Arc::strong_count(shard) > 1
                || !shard
                    .queue
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .spans
                    .is_empty()
        });
        shards.clone()
    }
}

impl Shard {
    /// Swaps the queued spans for `empty`, keeping both allocations in circulation.
    fn take(&self, empty: &mut Vec<FinishedSpan>) {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::swap(&mut queue.spans, empty);
    }

    /// Hands emptied blocks back to the thread that allocated them, as many as it
    /// can use; the rest are freed by the caller.
    fn give_back(&self, returned: &mut Vec<PooledSpan>) {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let room = tracer::POOL_SIZE.saturating_sub(queue.returned.len());
        let give = returned.len().min(room);
        queue.returned.extend(returned.drain(..give));
    }
}

/// Exports spans in batches from a background thread. See the module docs.
pub struct BatchProcessor {
    shared: Arc<Shared>,
    worker: Mutex<Option<JoinHandle<()>>>,
}

impl BatchProcessor {
    pub fn new(exporter: impl SpanExporter, config: BatchConfig) -> BatchProcessor {
        let shared = Arc::new(Shared {
            id: NEXT_PROCESSOR_ID.fetch_add(1, Ordering::Relaxed),
            dropped: AtomicU64::new(0),
            shut_down: AtomicBool::new(false),
            max_queue_size: config.max_queue_size.max(1),
            wake_at: config.max_export_batch_size.max(1),
            shards: Mutex::new(Vec::new()),
            requests: Mutex::new(Requests::default()),
            worker: OnceLock::new(),
        });
        let worker_shared = shared.clone();
        let worker = std::thread::Builder::new()
            .name("clew-sdk-export".into())
            .spawn(move || run_worker(worker_shared, Box::new(exporter), config));
        let worker = match worker {
            Ok(handle) => {
                let _ = shared.worker.set(handle.thread().clone());
                Some(handle)
            }
            Err(error) => {
                suppress::warn(format_args!(
                    "clew-sdk: cannot start the export thread ({error}); spans will be dropped"
                ));
                shared.shut_down.store(true, Ordering::Relaxed);
                shared.lock_requests().closed = true;
                None
            }
        };
        BatchProcessor {
            shared,
            worker: Mutex::new(worker),
        }
    }

    fn request(&self, shutdown: bool, reply: Reply) -> Result<(), Reply> {
        {
            let mut requests = self.shared.lock_requests();
            if requests.closed {
                return Err(reply);
            }
            requests.waiting.push(Request { shutdown, reply });
        }
        self.shared.wake();
        Ok(())
    }

    fn blocking(&self, shutdown: bool) -> Outcome {
        let (tx, rx) = std::sync::mpsc::channel();
        if self.request(shutdown, Reply::Blocking(tx)).is_err() {
            return if shutdown {
                Ok(())
            } else {
                Err(ExportError::ShutDown)
            };
        }
        let outcome = rx.recv().unwrap_or(Err(ExportError::ShutDown));
        if shutdown {
            self.join();
        }
        outcome
    }

    async fn asynchronous(&self, shutdown: bool) -> Outcome {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.request(shutdown, Reply::Async(tx)).is_err() {
            return if shutdown {
                Ok(())
            } else {
                Err(ExportError::ShutDown)
            };
        }
        rx.await.unwrap_or(Err(ExportError::ShutDown))
    }

    fn join(&self) {
        let handle = self.worker.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(handle) = handle
            && handle.thread().id() != std::thread::current().id()
        {
            let _ = handle.join();
        }
    }
}

#[async_trait::async_trait]
impl SpanProcessor for BatchProcessor {
    #[inline]
    fn on_end(&self, span: FinishedSpan) {
        if self.shared.shut_down.load(Ordering::Relaxed) {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.shared.enqueue(span);
    }

    fn force_flush(&self) -> Outcome {
        self.blocking(false)
    }

    fn shutdown(&self) -> Outcome {
        self.blocking(true)
    }

    async fn force_flush_async(&self) -> Outcome {
        self.asynchronous(false).await
    }

    async fn shutdown_async(&self) -> Outcome {
        self.asynchronous(true).await
    }

    fn dropped_spans(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for BatchProcessor {
    fn drop(&mut self) {
        if !self.shared.shut_down.load(Ordering::Relaxed) {
            let _ = self.blocking(true);
        }
    }
}

type HandlerKey = (TraceId, SpanId);

struct Group {
    spans: Vec<FinishedSpan>,
    since: Instant,
}

struct Worker {
    exporter: Box<dyn SpanExporter>,
    config: BatchConfig,
    runtime: tokio::runtime::Runtime,
    /// Spans ready to go out in size-cut batches.
    pending: Vec<FinishedSpan>,
    /// Per-handler mode: spans waiting for their handler's entry span.
    groups: HashMap<HandlerKey, Group>,
    /// Per-handler mode: handlers already sent, whose late spans go to `pending`.
    closed: HashMap<HandlerKey, Instant>,
    /// The first export failure since the last flush request.
    failure: Option<ExportError>,
    reported_drops: u64,
    /// Spans just collected from the shards (kept to reuse its allocation).
    inbox: Vec<FinishedSpan>,
}

/// Marks the processor closed however the export thread ends, so no request waits
/// for an answer that will not come.
struct CloseOnExit(Arc<Shared>);

impl Drop for CloseOnExit {
    fn drop(&mut self) {
        self.0.shut_down.store(true, Ordering::Relaxed);
        let waiting = {
            let mut requests = self.0.lock_requests();
            requests.closed = true;
            std::mem::take(&mut requests.waiting)
        };
        for request in waiting {
            request.reply.send(Err(ExportError::ShutDown));
        }
    }
}

fn run_worker(shared: Arc<Shared>, exporter: Box<dyn SpanExporter>, config: BatchConfig) {
    let _close = CloseOnExit(shared.clone());
    suppress::mark_sdk_thread();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_start(suppress::mark_sdk_thread)
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            suppress::warn(format_args!(
                "clew-sdk: cannot start the export runtime ({error}); spans will be dropped"
            ));
            return;
        }
    };
    let mut worker = Worker {
        exporter,
        config,
        runtime,
        pending: Vec::new(),
        groups: HashMap::new(),
        closed: HashMap::new(),
        failure: None,
        reported_drops: 0,
        inbox: Vec::new(),
    };
    let mut next_tick = Instant::now() + worker.config.scheduled_delay;
    loop {
        let requests = std::mem::take(&mut shared.lock_requests().waiting);
        if !requests.is_empty() {
            let shutdown = requests.iter().any(|r| r.shutdown);
            if shutdown {
                // Spans that end from now on are dropped; the ones already queued
                // (everything that ended before `shutdown` was called) are drained below.
                shared.shut_down.store(true, Ordering::Relaxed);
            }
            worker.drain(&shared);
            worker.export_everything();
            let mut outcome = match worker.failure.take() {
                Some(error) => Err(error),
                None => Ok(()),
            };
            let timeout = worker.config.export_timeout;
            let finish = if shutdown {
                run_bounded(&worker.runtime, timeout, worker.exporter.shutdown())
            } else {
                run_bounded(&worker.runtime, timeout, worker.exporter.force_flush())
            };
            if outcome.is_ok() {
                outcome = finish;
            }
            for request in requests {
                request.reply.send(outcome.clone());
            }
            if shutdown {
                return;
            }
        }
        worker.drain(&shared);
        let now = Instant::now();
        if now >= next_tick {
            worker.tick(now);
            worker.report_drops(&shared);
            next_tick = now + worker.config.scheduled_delay;
        } else {
            worker.export_full_batches();
        }
        std::thread::park_timeout(next_tick.saturating_duration_since(Instant::now()));
    }
}

/// Runs one exporter call to completion on the export thread's runtime, bounded by
/// `timeout`; a panicking exporter loses that call, not the export thread.
fn run_bounded(
    runtime: &tokio::runtime::Runtime,
    timeout: Duration,
    call: impl Future<Output = Outcome>,
) -> Outcome {
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
        // The timer must be created inside the runtime, hence the async block.
        runtime.block_on(async { tokio::time::timeout(timeout, call).await })
    }));
    match result {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(_elapsed)) => Err(ExportError::Timeout(timeout)),
        Err(_panic) => Err(ExportError::Other("the exporter panicked".into())),
    }
}

impl Worker {
    fn drain(&mut self, shared: &Shared) {
        let batch = self.config.max_export_batch_size.max(1);
        for shard in shared.shards() {
            let mut inbox = std::mem::take(&mut self.inbox);
            shard.take(&mut inbox);
            for (i, mut span) in inbox.drain(..).enumerate() {
                span.set_home(shard.clone());
                self.route(span);
                if (i + 1) % batch == 0 {
                    self.export_full_batches();
                }
            }
            self.inbox = inbox;
        }
    }

    fn route(&mut self, span: FinishedSpan) {
        if self.config.batching == Batching::BySize {
            self.pending.push(span);
            return;
        }
        let key = (span.span_context().trace_id(), span.local_root());
        if self.closed.contains_key(&key) {
            self.pending.push(span);
            return;
        }
        let is_root = span.is_local_root();
        let group = self.groups.entry(key).or_insert_with(|| Group {
            spans: Vec::new(),
            since: Instant::now(),
        });
        group.spans.push(span);
        if is_root {
            let group = self.groups.remove(&key).expect("just inserted");
            self.closed.insert(key, Instant::now());
            self.export(group.spans);
        } else if group.spans.len() >= self.config.max_export_batch_size {
            let spans = std::mem::take(&mut group.spans);
            self.export(spans);
        }
    }

    fn export_full_batches(&mut self) {
        while self.pending.len() >= self.config.max_export_batch_size.max(1) {
            let batch: Vec<_> = self
                .pending
                .drain(..self.config.max_export_batch_size.max(1))
                .collect();
            self.export(batch);
        }
    }

    fn export_pending(&mut self) {
        while !self.pending.is_empty() {
            let n = self
                .pending
                .len()
                .min(self.config.max_export_batch_size.max(1));
            let batch: Vec<_> = self.pending.drain(..n).collect();
            self.export(batch);
        }
    }

    fn tick(&mut self, now: Instant) {
        self.export_pending();
        let max_hold = self.config.max_hold;
        let expired: Vec<HandlerKey> = self
            .groups
            .iter()
            .filter(|(_, g)| now.duration_since(g.since) >= max_hold)
            .map(|(k, _)| *k)
            .collect();
        for key in expired {
            if let Some(group) = self.groups.remove(&key) {
                self.export(group.spans);
            }
        }
        self.closed
            .retain(|_, closed_at| now.duration_since(*closed_at) < max_hold);
    }

    fn export_everything(&mut self) {
        self.export_pending();
        let groups: Vec<Group> = self.groups.drain().map(|(_, g)| g).collect();
        for group in groups {
            self.export(group.spans);
        }
    }

    fn export(&mut self, spans: Vec<FinishedSpan>) {
        if spans.is_empty() {
            return;
        }
        let count = spans.len();
        let mut batch = SpanBatch::new(spans);
        let outcome = run_bounded(
            &self.runtime,
            self.config.export_timeout,
            self.exporter.export(&mut batch),
        );
        if let Err(error) = outcome {
            suppress::warn(format_args!(
                "clew-sdk: {count} spans were not exported: {error}"
            ));
            self.failure.get_or_insert(error);
        }
        self.recycle(batch.into_inner());
    }

    /// Sends the emptied blocks back to the threads that ended the spans.
    fn recycle(&mut self, spans: Vec<FinishedSpan>) {
        let mut homes: Vec<(Arc<Shard>, Vec<PooledSpan>)> = Vec::new();
        for span in spans {
            let (home, block) = span.recycle();
            let Some(home) = home else { continue };
            match homes.iter_mut().find(|(h, _)| Arc::ptr_eq(h, &home)) {
                Some((_, blocks)) => blocks.push(block),
                None => homes.push((home, vec![block])),
            }
        }
        for (home, mut blocks) in homes {
            home.give_back(&mut blocks);
        }
    }

    fn report_drops(&mut self, shared: &Shared) {
        let dropped = shared.dropped.load(Ordering::Relaxed);
        if dropped > self.reported_drops {
            suppress::warn(format_args!(
                "clew-sdk: {} spans dropped: the export queue (size {}) was full or the provider had shut down",
                dropped - self.reported_drops,
                self.config.max_queue_size
            ));
            self.reported_drops = dropped;
        }
    }
}
