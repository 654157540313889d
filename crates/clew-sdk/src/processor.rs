//! Span processors: what happens to a span when it ends.
//!
//! The [`BatchProcessor`] appends each ended span to a queue of the thread that ended it
//! and returns; a dedicated thread collects the queues, converts spans to the model,
//! groups them and exports them. The application thread never waits for the exporter:
//! when its queue is full the span is dropped and counted.
//!
//! Why one queue per thread: a queue shared by every thread and the export thread keeps
//! its head and tail bouncing between CPU caches, which costs more than the rest of a
//! span. A thread's own queue has one writer (its thread) and one reader (the export
//! thread), so it needs no lock: ending a span copies its record into the next slot of
//! a segment and publishes it with a plain store, and the export thread copies whole
//! runs of slots out (see [`Shard`]). Unlike a thread-local buffer, the export thread
//! can reach it, so `force_flush` and `shutdown` miss nothing.

use std::cell::{RefCell, UnsafeCell};
use std::collections::HashMap;
use std::mem::MaybeUninit;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering, fence};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use clew_model::{SpanId, TraceId};

use crate::export::{ExportError, SpanBatch, SpanExporter};
use crate::suppress;
use crate::tracer::{FinishedSpan, SpanData};

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

/// Spans per segment of a thread's queue.
const SEGMENT_LEN: usize = 32;
/// Emptied segments a queue keeps for reuse (a default batch's worth); the export
/// thread frees the rest, and halves what an idle thread keeps every scheduled delay.
const SPARE_SEGMENTS: usize = 16;

/// A fixed run of span records, filled in order by the thread that owns the queue and
/// read in order by the export thread.
struct Segment {
    /// How many slots are filled. The owner writes a slot, then publishes it by storing
    /// the new count (release); the export thread reads the count (acquire), then the
    /// slots below it.
    filled: AtomicUsize,
    /// The segment the owner moved on to when this one filled up (null until then).
    next: AtomicPtr<Segment>,
    slots: [UnsafeCell<MaybeUninit<SpanData>>; SEGMENT_LEN],
}

impl Segment {
    fn new() -> Box<Segment> {
        let mut segment = Box::<Segment>::new_uninit();
        let ptr = segment.as_mut_ptr();
        // SAFETY: `ptr` points to the new allocation; the two atomics are initialised
        // here, and the slots are `MaybeUninit`, for which no initialisation is valid.
        unsafe {
            std::ptr::addr_of_mut!((*ptr).filled).write(AtomicUsize::new(0));
            std::ptr::addr_of_mut!((*ptr).next).write(AtomicPtr::new(std::ptr::null_mut()));
            segment.assume_init()
        }
    }
}

/// A cache line of its own, so the owner's and the export thread's bookkeeping do
/// not share one.
#[repr(align(128))]
struct Aligned<T>(T);

/// The owner's end of a queue.
struct Producer {
    /// The segment being filled.
    tail: *mut Segment,
    /// How many slots of `tail` are filled (the owner's copy of `tail.filled`).
    filled: usize,
    /// Spans queued so far.
    produced: u64,
}

/// The export thread's end of a queue.
struct Consumer {
    /// The oldest segment not fully read.
    head: *mut Segment,
    /// How many slots of `head` are read.
    taken: usize,
}

/// One application thread's ended spans, on their way to the export thread: a
/// single-producer single-consumer queue of segments, so that queueing a span is a
/// copy and a plain store, with no lock and no atomic read-modify-write.
///
/// Only the thread that created the shard (through its thread-local `SHARDS`) touches
/// `producer`, and only the export thread touches `consumer`; that discipline is what
/// makes the `unsafe impl Sync` below sound.
pub(crate) struct Shard {
    producer: Aligned<UnsafeCell<Producer>>,
    consumer: Aligned<UnsafeCell<Consumer>>,
    /// Spans the export thread has taken so far; the owner compares it with
    /// `produced` to bound the queue.
    consumed: Aligned<AtomicU64>,
    /// Emptied segments, from the export thread back to the owner.
    spare: Mutex<Vec<Box<Segment>>>,
}

// SAFETY: the raw segment pointers are owned by the shard; `producer` is only used by
// the owning thread and `consumer` only by the export thread (see the type's docs),
// and everything they share is published through `Segment::filled`/`Segment::next`
// (release/acquire) or the `spare` mutex.
unsafe impl Send for Shard {}
unsafe impl Sync for Shard {}

enum Pushed {
    Queued,
    /// Queued, and the queue just reached a batch: wake the export thread.
    Wake,
    Full,
}

impl Shard {
    fn new() -> Shard {
        let first = Box::into_raw(Segment::new());
        Shard {
            producer: Aligned(UnsafeCell::new(Producer {
                tail: first,
                filled: 0,
                produced: 0,
            })),
            consumer: Aligned(UnsafeCell::new(Consumer {
                head: first,
                taken: 0,
            })),
            consumed: Aligned(AtomicU64::new(0)),
            spare: Mutex::new(Vec::new()),
        }
    }

    /// Moves `data` into the queue (leaving it empty), or leaves it untouched when
    /// the queue holds `max` spans.
    ///
    /// # Safety
    /// Only the thread that owns this shard may call it.
    #[inline]
    unsafe fn push(&self, data: &mut SpanData, max: usize, wake_at: usize) -> Pushed {
        // SAFETY: only the owning thread gets here (the caller's promise).
        let producer = unsafe { &mut *self.producer.0.get() };
        let waiting = producer.produced - self.consumed.0.load(Ordering::Relaxed);
        if waiting >= max as u64 {
            return Pushed::Full;
        }
        if producer.filled == SEGMENT_LEN {
            self.next_segment(producer);
        }
        // SAFETY: `tail` is a live segment owned by this queue, and its slot number
        // `filled` is not published yet, so the export thread does not read it.
        unsafe {
            let segment = &*producer.tail;
            data.move_to(segment.slots[producer.filled].get().cast::<SpanData>());
            producer.filled += 1;
            segment.filled.store(producer.filled, Ordering::Release);
        }
        producer.produced += 1;
        if waiting + 1 == wake_at as u64 {
            Pushed::Wake
        } else {
            Pushed::Queued
        }
    }

    #[cold]
    fn next_segment(&self, producer: &mut Producer) {
        let segment = self
            .spare
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .unwrap_or_else(Segment::new);
        // A reused segment was fully read and unlinked; start it afresh before the
        // export thread can reach it through `next`.
        segment.filled.store(0, Ordering::Relaxed);
        segment.next.store(std::ptr::null_mut(), Ordering::Relaxed);
        let segment = Box::into_raw(segment);
        // SAFETY: `tail` is live; publishing the link (release) also publishes the
        // new segment's reset counters.
        unsafe { (*producer.tail).next.store(segment, Ordering::Release) };
        producer.tail = segment;
        producer.filled = 0;
    }

    /// Moves up to `limit` queued spans to `out`, oldest first; returns how many.
    ///
    /// # Safety
    /// Only the export thread may call it.
    unsafe fn drain(&self, out: &mut Vec<FinishedSpan>, limit: usize) -> usize {
        // SAFETY: only the export thread gets here (the caller's promise).
        let consumer = unsafe { &mut *self.consumer.0.get() };
        let mut moved = 0;
        while moved < limit {
            // SAFETY: `head` is live until this thread retires it below.
            let segment = unsafe { &*consumer.head };
            let filled = segment.filled.load(Ordering::Acquire);
            let take = (filled - consumer.taken).min(limit - moved);
            out.reserve(take);
            // SAFETY: slots below `filled` were written and published by the owner and
            // are read exactly once (`taken` moves past them); `FinishedSpan` is a
            // transparent `SpanData`, and `out` has room for `take` more.
            unsafe {
                let from = segment.slots.as_ptr().add(consumer.taken);
                let from = UnsafeCell::raw_get(from).cast::<FinishedSpan>();
                let to = out.as_mut_ptr().add(out.len());
                std::ptr::copy_nonoverlapping(from, to, take);
                out.set_len(out.len() + take);
            }
            consumer.taken += take;
            moved += take;
            if consumer.taken < SEGMENT_LEN {
                break;
            }
            let next = segment.next.load(Ordering::Acquire);
            if next.is_null() {
                break;
            }
            // SAFETY: every slot of the old head is read and the owner has moved on
            // (it linked `next`), so nobody refers to it any more.
            let old = unsafe { Box::from_raw(std::mem::replace(&mut consumer.head, next)) };
            consumer.taken = 0;
            let mut spare = self.spare.lock().unwrap_or_else(|e| e.into_inner());
            if spare.len() < SPARE_SEGMENTS {
                spare.push(old);
            }
        }
        if moved > 0 {
            self.consumed.0.fetch_add(moved as u64, Ordering::Release);
        }
        moved
    }

    /// Frees half the spare segments, so a thread that once ended a burst of spans
    /// does not keep their memory.
    fn trim(&self) {
        let mut spare = self.spare.lock().unwrap_or_else(|e| e.into_inner());
        let keep = spare.len() / 2;
        spare.truncate(keep);
    }

    /// Whether nothing is waiting. Only the export thread may call it.
    fn is_empty(&self) -> bool {
        // SAFETY: only the export thread calls this (see `Shared::shards`), and `head`
        // is live while the shard is.
        unsafe {
            let consumer = &*self.consumer.0.get();
            let segment = &*consumer.head;
            segment.filled.load(Ordering::Acquire) == consumer.taken
                && segment.next.load(Ordering::Acquire).is_null()
        }
    }
}

impl Drop for Shard {
    fn drop(&mut self) {
        // Drop whatever was queued but never taken, then free the segments.
        let consumer = self.consumer.0.get_mut();
        let mut segment = consumer.head;
        let mut from = consumer.taken;
        while !segment.is_null() {
            // SAFETY: `&mut self` means no other thread uses the queue; each segment
            // from the head on is live, and its slots `from..filled` hold records that
            // were never read.
            let mut owned = unsafe { Box::from_raw(segment) };
            let filled = *owned.filled.get_mut();
            for slot in &mut owned.slots[from..filled] {
                // SAFETY: as above, an unread record.
                unsafe { slot.get_mut().assume_init_drop() };
            }
            segment = *owned.next.get_mut();
            from = 0;
        }
    }
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

    #[cold]
    fn new_shard(&self) -> Arc<Shard> {
        let shard = Arc::new(Shard::new());
        self.shards
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(shard.clone());
        shard
    }

    /// Moves an ended span's record into this thread's queue, leaving `data` empty;
    /// when the queue is full or the processor has shut down, drops it and counts it.
    #[inline]
    fn enqueue(&self, data: &mut SpanData) {
        if self.shut_down.load(Ordering::Relaxed) {
            return self.drop_span(data);
        }
        let pushed = SHARDS.try_with(|shards| {
            let mut shards = shards.borrow_mut();
            let shard = match shards.iter().find(|(id, _)| *id == self.id) {
                Some((_, shard)) => shard,
                None => {
                    shards.push((self.id, self.new_shard()));
                    &shards.last().expect("just pushed").1
                }
            };
            // SAFETY: this thread's `SHARDS` holds this thread's own shards only.
            unsafe { shard.push(data, self.max_queue_size, self.wake_at) }
        });
        match pushed {
            Ok(Pushed::Queued) => {}
            // Wake the export thread once per full batch; between wakes it sleeps until
            // the scheduled delay, so ending a span costs no system call.
            Ok(Pushed::Wake) => self.wake(),
            // Queue full, or the thread is being torn down.
            Ok(Pushed::Full) | Err(_) => self.drop_span(data),
        }
    }

    #[cold]
    fn drop_span(&self, data: &mut SpanData) {
        drop(FinishedSpan::from_data(data.take()));
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// The shards to collect from, forgetting those of threads that have exited once
    /// they are empty (a thread may queue spans right up to its exit). Only the export
    /// thread calls it.
    fn shards(&self) -> Vec<Arc<Shard>> {
        let mut shards = self.shards.lock().unwrap_or_else(|e| e.into_inner());
        shards.retain(|shard| {
            if Arc::strong_count(shard) > 1 {
                return true;
            }
            // The owner has exited: see everything it queued before dropping its
            // reference (which it did with release ordering).
            fence(Ordering::Acquire);
            !shard.is_empty()
        });
        shards.clone()
    }
}

/// A [`BatchProcessor`]'s queues, which tracers hold to queue ended spans without
/// going through [`SpanProcessor::on_end`].
#[derive(Clone)]
pub(crate) struct BatchQueue(Arc<Shared>);

impl BatchQueue {
    /// Moves an ended span's record into the queue, leaving `data` empty.
    #[inline]
    pub(crate) fn push(&self, data: &mut SpanData) {
        self.0.enqueue(data);
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

    pub(crate) fn queue(&self) -> BatchQueue {
        BatchQueue(self.shared.clone())
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
    fn on_end(&self, mut span: FinishedSpan) {
        self.shared.enqueue(span.data_mut());
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
    /// An emptied batch, to become the next `pending`.
    spare: Vec<FinishedSpan>,
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
        spare: Vec::new(),
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
        // Keeps the span clock's calibration fresh while the process is idle.
        crate::clock::now_unix_nanos();
        let now = Instant::now();
        if now >= next_tick {
            worker.tick(now);
            for shard in shared.shards() {
                shard.trim();
            }
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
            if self.config.batching == Batching::BySize {
                // Straight into the batch being filled: each span is copied once.
                loop {
                    self.export_full_batches();
                    let room = batch - self.pending.len();
                    // SAFETY: this is the export thread.
                    if unsafe { shard.drain(&mut self.pending, room) } < room {
                        break;
                    }
                }
                self.export_full_batches();
                continue;
            }
            let mut inbox = std::mem::take(&mut self.inbox);
            // SAFETY: this is the export thread.
            while unsafe { shard.drain(&mut inbox, batch) } > 0 {
                for span in inbox.drain(..) {
                    self.route(span);
                }
                self.export_full_batches();
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
            self.export_first_batch();
        }
    }

    fn export_pending(&mut self) {
        while !self.pending.is_empty() {
            self.export_first_batch();
        }
    }

    /// Exports up to a batch of the oldest pending spans.
    fn export_first_batch(&mut self) {
        let n = self
            .pending
            .len()
            .min(self.config.max_export_batch_size.max(1));
        let batch = if n == self.pending.len() {
            // The whole of `pending`: hand over its allocation rather than copying.
            let spare = std::mem::take(&mut self.spare);
            std::mem::replace(&mut self.pending, spare)
        } else {
            self.pending.drain(..n).collect()
        };
        self.export(batch);
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

    /// Drops what the exporter left of the spans and keeps the allocation for the
    /// next batch.
    fn recycle(&mut self, mut spans: Vec<FinishedSpan>) {
        FinishedSpan::discard_all(&mut spans);
        if spans.capacity() > self.spare.capacity() {
            self.spare = spans;
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

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::{InMemoryExporter, Sampler, TracerProvider, kv};

    fn pipeline(config: BatchConfig) -> (TracerProvider, InMemoryExporter) {
        let exporter = InMemoryExporter::new();
        let provider = TracerProvider::builder()
            .with_processor(BatchProcessor::new(exporter.clone(), config))
            .with_sampler(Sampler::always_on())
            .build();
        (provider, exporter)
    }

    /// Threads that end spans while the export thread drains them, across many
    /// segments (reused ones included), with batches that do not divide a segment,
    /// flushes in the middle, and threads that exit: every span arrives exactly once,
    /// in its thread's order, with what was recorded on it.
    #[test]
    fn every_span_of_every_thread_arrives_once_and_in_order() {
        const THREADS: usize = 4;
        const SPANS: usize = 3_000;
        let (provider, exporter) = pipeline(BatchConfig {
            max_queue_size: usize::MAX,
            max_export_batch_size: 7,
            scheduled_delay: Duration::from_millis(1),
            ..BatchConfig::default()
        });
        let tracer = provider.tracer("stress");
        std::thread::scope(|scope| {
            for thread in 0..THREADS {
                let provider = provider.clone();
                scope.spawn(move || {
                    for i in 0..SPANS {
                        let mut span = tracer
                            .span(format!("{thread}/{i}"))
                            .attribute("thread", thread)
                            .attribute("i", i)
                            .attribute("owned", format!("value {i}"))
                            .start();
                        if i % 5 == 0 {
                            for extra in 0..3 {
                                span.set_attribute(format!("extra.{extra}"), "x");
                            }
                            span.add_event("event", [kv("n", i)]);
                        }
                        drop(span);
                        if i % 1_000 == 999 {
                            provider.force_flush().unwrap();
                        }
                    }
                });
            }
        });
        provider.force_flush().unwrap();
        assert_eq!(provider.dropped_spans(), 0);
        let spans = exporter.spans();
        assert_eq!(spans.len(), THREADS * SPANS);
        let names: HashSet<&str> = spans.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names.len(), THREADS * SPANS, "no span twice");
        let mut next = [0usize; THREADS];
        for span in &spans {
            let (thread, i) = span.name.split_once('/').unwrap();
            let (thread, i): (usize, usize) = (thread.parse().unwrap(), i.parse().unwrap());
            assert_eq!(i, next[thread], "thread {thread}'s spans in order");
            next[thread] += 1;
            let value = |key: &str| {
                span.attributes
                    .iter()
                    .find(|kv| kv.key == key)
                    .map(|kv| kv.value.clone())
            };
            assert_eq!(value("i"), Some(clew_model::AttributeValue::Int(i as i64)));
            assert_eq!(value("owned"), Some(format!("value {i}").into()));
            let expected = if i % 5 == 0 { 6 } else { 3 };
            assert_eq!(span.attributes.len(), expected, "{}", span.name);
            assert_eq!(span.events.len(), usize::from(i % 5 == 0));
        }
        provider.shutdown().unwrap();
    }

    /// With a queue smaller than what a thread ends before the export thread runs,
    /// some spans are dropped; each is either exported or counted, never both or
    /// neither.
    #[test]
    fn a_full_queue_drops_and_counts_but_loses_nothing_else() {
        let (provider, exporter) = pipeline(BatchConfig {
            max_queue_size: 40,
            max_export_batch_size: 1_000,
            scheduled_delay: Duration::from_secs(3_600),
            ..BatchConfig::default()
        });
        let tracer = provider.tracer("full");
        for round in 0..3 {
            for i in 0..100 {
                tracer.span(format!("{round}/{i}")).start().end();
            }
            provider.force_flush().unwrap();
        }
        // The export thread may run during a round (it drains once when it starts,
        // and parking can end early), so how many fit is not exact.
        let exported = exporter.spans().len() as u64;
        let dropped = provider.dropped_spans();
        assert_eq!(
            exported + dropped,
            300,
            "{exported} exported, {dropped} dropped"
        );
        assert!(exported >= 3 * 40 && dropped > 0, "{exported} exported");
        provider.shutdown().unwrap();
        // After the shutdown, spans are dropped and counted.
        tracer.span("late").start().end();
        assert_eq!(provider.dropped_spans(), dropped + 1);
    }

    /// A thread's queue outlives the thread until it is drained, and is then
    /// forgotten; spans still queued when a shard is dropped are dropped with it.
    #[test]
    fn queues_of_exited_threads_are_drained_then_forgotten() {
        let (provider, exporter) = pipeline(BatchConfig {
            scheduled_delay: Duration::from_secs(3_600),
            ..BatchConfig::default()
        });
        let tracer = provider.tracer("exit");
        for thread in 0..8 {
            std::thread::spawn(move || {
                for i in 0..50 {
                    tracer
                        .span(format!("{thread}/{i}"))
                        .attribute("k", format!("{i}"))
                        .start();
                }
            })
            .join()
            .unwrap();
        }
        provider.force_flush().unwrap();
        assert_eq!(exporter.spans().len(), 8 * 50);
        provider.force_flush().unwrap();
        let queue = provider.batch_queue().expect("a batch processor");
        let shards = queue.0.shards.lock().unwrap().len();
        assert_eq!(shards, 0, "exited threads' queues are forgotten");
        provider.shutdown().unwrap();
    }

    /// A queue dropped with spans in it (its thread gone, the export thread too) drops
    /// them, across segments and after a partial drain.
    #[test]
    fn a_dropped_queue_drops_what_it_still_holds() {
        let tracer = crate::Tracer::noop();
        let shard = Shard::new();
        for i in 0..(SEGMENT_LEN * 2 + 3) {
            let mut data = SpanData::for_test(tracer, format!("span {i}"));
            // SAFETY: this thread is the only one using `shard`.
            let pushed = unsafe { shard.push(&mut data, usize::MAX, 0) };
            assert!(matches!(pushed, Pushed::Queued));
            assert!(data.is_empty_for_test());
        }
        let mut out = Vec::new();
        // SAFETY: as above.
        assert_eq!(unsafe { shard.drain(&mut out, 5) }, 5);
        assert_eq!(out[4].name(), "span 4");
        assert!(!shard.is_empty());
        drop(shard);
        drop(out);
    }

    /// One thread pushing into a bounded queue while another drains it in runs of
    /// varying length: every record arrives once, in order, through reused segments.
    #[test]
    fn a_queue_passes_records_between_two_threads_in_order() {
        const RECORDS: usize = 20_000;
        let tracer = crate::Tracer::noop();
        let shard = Shard::new();
        std::thread::scope(|scope| {
            scope.spawn(|| {
                for i in 0..RECORDS {
                    let mut data = SpanData::for_test(tracer, i.to_string());
                    // SAFETY: this thread is the only producer.
                    while let Pushed::Full = unsafe { shard.push(&mut data, 100, 50) } {
                        std::thread::yield_now();
                    }
                }
            });
            let mut out = Vec::new();
            let mut received = 0;
            let mut limit = 1;
            while received < RECORDS {
                // SAFETY: this thread is the only consumer.
                let moved = unsafe { shard.drain(&mut out, limit) };
                assert!(moved <= limit);
                for span in out.drain(..) {
                    assert_eq!(span.name(), received.to_string());
                    received += 1;
                }
                limit = limit % 97 + 1;
                if moved == 0 {
                    std::thread::yield_now();
                }
            }
        });
        assert!(shard.is_empty());
    }
}
