//! Feeds the lifecycle registry from the spans the pipeline stored.
//!
//! A trace is registered (IN_PROGRESS) when its first span is stored, marked ERRORED
//! when a span ends with error status or arrives unfinished (a worker died mid-request),
//! and COMPLETED once its root span has ended and nothing more arrived for a quiet
//! period.
//!
//! Many traces have no root here: a request that joined a `traceparent` from a caller
//! that does not report to clew (a browser, another vendor's agent) starts with a SERVER
//! span whose parent lives elsewhere. Such a trace is COMPLETED too, after
//! [`REMOTE_ROOT_QUIET_FACTOR`] quiet periods, when every span whose parent is missing is
//! a SERVER span. Any other span with a missing parent means a span of this system is
//! missing (a consumer whose producer crashed before exporting, a child whose parent's
//! worker died), so that trace is left to the watchdog, which sweeps it as orphaned, as
//! it does traces whose root never came. Registry trouble never slows ingestion: the pipeline hands over facts
//! through a bounded channel (dropping, and counting, when it is full), and registry
//! calls that fail are retried in order with back-off.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clew_ingest::{SpanBatch, SpanRef, StoredSpans, ValueRef};
use clew_model::{SpanId, SpanKind, TraceId};
use clew_registry::{Metadata, Registry, TraceState};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// The attribute the agent puts on spans that were still open when their worker vanished.
pub const UNFINISHED_ATTRIBUTE: &str = "clew.unfinished";
/// How many quiet periods a trace whose root lives in another system must stay quiet
/// before it counts as complete: longer than for a rooted trace, because its upstream
/// may still be sending.
pub const REMOTE_ROOT_QUIET_FACTOR: u32 = 3;

#[derive(Debug, Clone)]
pub struct LifecycleConfig {
    /// How long after its root span ended a trace must stay quiet to count as complete.
    pub quiet_period: Duration,
    /// Traces followed in memory at once; beyond it the least recently active are left
    /// to the watchdog.
    pub max_tracked: usize,
    /// Registry operations waiting for a retry; beyond it the oldest are dropped.
    pub max_pending_ops: usize,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        LifecycleConfig {
            quiet_period: Duration::from_secs(5),
            max_tracked: 200_000,
            max_pending_ops: 200_000,
        }
    }
}

/// What the tracker needs to know of a stored span.
struct SpanFact {
    trace_id: TraceId,
    span_id: SpanId,
    parent: Option<SpanId>,
    /// A SERVER span: its caller may be outside the traced system.
    serves_a_call: bool,
    error: Option<String>,
    unfinished: bool,
    service: String,
}

impl SpanFact {
    fn of(span: SpanRef<'_>) -> SpanFact {
        let unfinished = matches!(
            span.attribute(UNFINISHED_ATTRIBUTE),
            Some(ValueRef::Bool(true))
        );
        let error = span.is_error().then(|| {
            let mut reason = format!(
                "span {:?} of {} ended with error status",
                span.name(),
                span.service_name()
            );
            if !span.status_message().is_empty() {
                reason.push_str(&format!(": {}", span.status_message()));
            }
            reason
        });
        SpanFact {
            trace_id: span.trace_id(),
            span_id: span.span_id(),
            parent: span.parent_span_id(),
            serves_a_call: span.kind() == SpanKind::Server,
            error,
            unfinished,
            service: span.service_name().to_string(),
        }
    }
}

#[derive(Debug, Default)]
pub struct LifecycleStats {
    /// Span batches the tracker never saw because its queue was full.
    pub batches_dropped: AtomicU64,
    pub registry_failures: AtomicU64,
    pub ops_dropped: AtomicU64,
}

/// The pipeline side: turns stored spans into facts without ever blocking the writer.
pub struct LifecycleFeed {
    facts: mpsc::Sender<Vec<SpanFact>>,
    stats: Arc<LifecycleStats>,
}

impl StoredSpans for LifecycleFeed {
    fn stored(&self, batches: &[SpanBatch]) {
        let facts = batches
            .iter()
            .flat_map(SpanBatch::iter)
            .map(SpanFact::of)
            .collect();
        if self.facts.try_send(facts).is_err() {
            self.stats.batches_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[derive(Debug)]
enum Op {
    Create { id: TraceId, service: String },
    Complete { id: TraceId },
    Error { id: TraceId, reason: String },
}

struct Tracked {
    root_ended: bool,
    finished: bool,
    last_activity: Instant,
    /// When the tick looks at this trace next (its entry in [`Traces::due`]), if ever.
    due: Option<Instant>,
    /// Until the root arrives: the spans seen, and for each span with a parent, that
    /// parent and whether the span serves a call.
    seen: HashSet<SpanId>,
    parents: Vec<(SpanId, bool)>,
}

impl Tracked {
    /// When this trace needs looking at, from what is known now: completion after its
    /// quiet period (three of them without a root), forgetting a finished trace after
    /// two.
    fn next_look(&self, quiet: Duration) -> Instant {
        let wait = if self.finished {
            quiet * 2
        } else if self.root_ended {
            quiet
        } else {
            quiet * REMOTE_ROOT_QUIET_FACTOR
        };
        self.last_activity + wait
    }

    /// Whether the spans that arrived form a trace entered only from outside: some
    /// parents are missing, and every span that names one serves a call.
    fn entered_from_elsewhere(&self) -> bool {
        let mut dangling = self
            .parents
            .iter()
            .filter(|(parent, _)| !self.seen.contains(parent))
            .peekable();
        dangling.peek().is_some() && dangling.all(|(_, serves)| *serves)
    }
}

/// The traces followed in memory, and when each needs looking at next: the tick reads
/// only the traces that are due, not every trace it follows.
#[derive(Default)]
struct Traces {
    tracked: HashMap<TraceId, Tracked>,
    /// (when, trace). A trace's time may have moved on since (activity pushes it later):
    /// it is checked, and put back at its real time, when it comes up.
    due: BTreeSet<(Instant, TraceId)>,
}

impl Traces {
    fn schedule(&mut self, id: TraceId, quiet: Duration) {
        if let Some(entry) = self.tracked.get_mut(&id)
            && entry.due.is_none()
        {
            let at = entry.next_look(quiet);
            entry.due = Some(at);
            self.due.insert((at, id));
        }
    }
}

/// Starts the tracker task; returns the feed to give the pipeline.
pub fn start(
    registry: Arc<dyn Registry>,
    config: LifecycleConfig,
) -> (
    Arc<LifecycleFeed>,
    Arc<LifecycleStats>,
    tokio::task::JoinHandle<()>,
) {
    let (facts, receiver) = mpsc::channel(4096);
    let stats = Arc::new(LifecycleStats::default());
    let feed = Arc::new(LifecycleFeed {
        facts,
        stats: Arc::clone(&stats),
    });
    let task = tokio::spawn(run(registry, config, receiver, Arc::clone(&stats)));
    (feed, stats, task)
}

async fn run(
    registry: Arc<dyn Registry>,
    config: LifecycleConfig,
    mut facts: mpsc::Receiver<Vec<SpanFact>>,
    stats: Arc<LifecycleStats>,
) {
    let mut traces = Traces::default();
    let mut ops: VecDeque<Op> = VecDeque::new();
    let mut failures = 0u32;
    let mut retry_at: Option<Instant> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            batch = facts.recv() => match batch {
                Some(batch) => absorb(batch, &mut traces, &mut ops, config.quiet_period),
                None => break,
            },
            _ = tick.tick() => complete_quiet_traces(&mut traces, &mut ops, &config),
        }
        if ops.len() > config.max_pending_ops {
            let excess = ops.len() - config.max_pending_ops;
            ops.drain(..excess);
            stats
                .ops_dropped
                .fetch_add(excess as u64, Ordering::Relaxed);
            tracing::warn!(
                dropped = excess,
                "lifecycle registry is behind; oldest updates dropped"
            );
        }
        if retry_at.is_some_and(|at| Instant::now() < at) {
            continue;
        }
        match apply(registry.as_ref(), &mut ops).await {
            Ok(()) => {
                if failures > 0 {
                    tracing::info!("lifecycle registry reachable again; caught up");
                }
                failures = 0;
                retry_at = None;
            }
            Err(error) => {
                failures += 1;
                stats.registry_failures.fetch_add(1, Ordering::Relaxed);
                let backoff = Duration::from_millis(250 * (1u64 << failures.min(8)))
                    .min(Duration::from_secs(30));
                tracing::warn!(%error, pending = ops.len(), retry_in = ?backoff, "lifecycle registry unavailable; will retry");
                retry_at = Some(Instant::now() + backoff);
            }
        }
    }
    // On the way out: a trace whose root has ended is complete even if its quiet period
    // has not run out yet; then one last attempt so a clean shutdown leaves the registry
    // current.
    for (id, entry) in &traces.tracked {
        if entry.root_ended && !entry.finished {
            ops.push_back(Op::Complete { id: *id });
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), apply(registry.as_ref(), &mut ops)).await;
}

fn absorb(batch: Vec<SpanFact>, traces: &mut Traces, ops: &mut VecDeque<Op>, quiet: Duration) {
    let now = Instant::now();
    for fact in batch {
        let id = fact.trace_id;
        absorb_one(fact, traces, ops, now);
        traces.schedule(id, quiet);
    }
}

/// Updates what is known of one trace from one stored span.
fn absorb_one(fact: SpanFact, traces: &mut Traces, ops: &mut VecDeque<Op>, now: Instant) {
    let entry = traces.tracked.entry(fact.trace_id).or_insert_with(|| {
        ops.push_back(Op::Create {
            id: fact.trace_id,
            service: fact.service.clone(),
        });
        Tracked {
            root_ended: false,
            finished: false,
            last_activity: now,
            due: None,
            seen: HashSet::new(),
            parents: Vec::new(),
        }
    });
    entry.last_activity = now;
    match fact.parent {
        None => {
            entry.root_ended = true;
            entry.seen = HashSet::new();
            entry.parents = Vec::new();
        }
        Some(parent) if !entry.root_ended && !entry.finished => {
            entry.seen.insert(fact.span_id);
            entry.parents.push((parent, fact.serves_a_call));
        }
        Some(_) => {}
    }
    if entry.finished {
        return;
    }
    let reason = if fact.unfinished {
        Some(format!(
            "a worker of {} disconnected with spans still open",
            fact.service
        ))
    } else {
        fact.error
    };
    if let Some(reason) = reason {
        entry.finished = true;
        ops.push_back(Op::Error {
            id: fact.trace_id,
            reason,
        });
    }
}

fn complete_quiet_traces(traces: &mut Traces, ops: &mut VecDeque<Op>, config: &LifecycleConfig) {
    let now = Instant::now();
    let quiet = config.quiet_period;
    while let Some(&(at, id)) = traces.due.first() {
        if at > now {
            break;
        }
        traces.due.pop_first();
        let Some(entry) = traces.tracked.get_mut(&id) else {
            continue;
        };
        entry.due = None;
        if entry.next_look(quiet) > now {
            // Something arrived since it was scheduled.
            traces.schedule(id, quiet);
            continue;
        }
        if entry.finished {
            // Kept one more quiet period after finishing so late spans do not
            // re-register it; now it is forgotten.
            traces.tracked.remove(&id);
            continue;
        }
        if entry.root_ended || entry.entered_from_elsewhere() {
            entry.finished = true;
            entry.seen = HashSet::new();
            entry.parents = Vec::new();
            ops.push_back(Op::Complete { id });
            traces.schedule(id, quiet);
        }
        // Otherwise a span of its own is missing: it waits for more spans (which
        // schedule it again) or for the watchdog.
    }
    let tracked = &mut traces.tracked;
    if tracked.len() > config.max_tracked {
        let mut by_age: Vec<(Instant, TraceId)> = tracked
            .iter()
            .map(|(id, e)| (e.last_activity, *id))
            .collect();
        by_age.sort_unstable();
        for (_, id) in by_age
            .into_iter()
            .take(tracked.len() - config.max_tracked * 9 / 10)
        {
            if let Some(due) = tracked.remove(&id).and_then(|e| e.due) {
                traces.due.remove(&(due, id));
            }
        }
    }
}

/// Applies queued operations in order, stopping at the first failure so nothing is
/// applied out of order; the failed operation stays at the front for the retry.
async fn apply(
    registry: &dyn Registry,
    ops: &mut VecDeque<Op>,
) -> Result<(), clew_registry::RegistryError> {
    while let Some(op) = ops.front() {
        let result = match op {
            Op::Create { id, service } => {
                let mut metadata = Metadata::new();
                metadata.insert("service".to_string(), service.clone());
                registry
                    .create_trace(*id, TraceState::InProgress, &metadata)
                    .await
                    .map(drop)
            }
            Op::Complete { id } => registry
                .transition(*id, TraceState::Completed)
                .await
                .map(drop),
            Op::Error { id, reason } => registry.mark_errored(*id, reason).await.map(drop),
        };
        match result {
            Err(error) if error.is_transient() => return Err(error),
            // Retrying cannot fix it; keep the queue moving.
            Err(error) => tracing::warn!(%error, ?op, "lifecycle update refused"),
            Ok(()) => {}
        }
        ops.pop_front();
    }
    Ok(())
}
