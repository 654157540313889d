//! The in-process backend for the nothing-installed setup: the same semantics as Redis,
//! kept in memory and, when opened on a file ([`EmbeddedRegistry::open`]), in a journal
//! there, so a restart keeps every trace's lifecycle and the watchdog still finds the
//! traces that were running when the process stopped.

use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use clew_model::TraceId;

use crate::config::RegistryConfig;
use crate::error::{RegistryError, Result};
use crate::journal::{FLUSH_EVERY, Journal, Line};
use crate::leader::{LeaderElection, Lease, LeaseConfig};
use crate::model::{
    ActiveCursor, ActivePage, ActiveTrace, CreateOutcome, Metadata, ORPHANED_ERROR, Orphan,
    SweepReport, TraceRecord, TraceState, Transition,
};
use crate::{Registry, check_metadata, log_orphans};

/// The lifecycle registry in process memory.
#[derive(Debug, Clone)]
pub struct EmbeddedRegistry {
    inner: Arc<Mutex<Inner>>,
    config: RegistryConfig,
}

#[derive(Debug, Default)]
struct Inner {
    traces: HashMap<TraceId, Entry>,
    /// (created_at, id) of non-terminal traces: the sweep reads only its old end.
    active: BTreeSet<(u64, TraceId)>,
    /// (orphaned_at, id), newest last.
    orphans: BTreeSet<(u64, TraceId)>,
    /// (expires_at, id), so expiry costs O(expired) like Redis' own.
    expiry: BTreeSet<(u64, TraceId)>,
    lease: LeaseSlot,
    journal: Option<Journal>,
}

#[derive(Debug)]
struct Entry {
    record: TraceRecord,
    expires_at_ms: u64,
}

#[derive(Debug, Default)]
struct LeaseSlot {
    held: Option<HeldLease>,
    epoch: u64,
    fence: Option<u64>,
}

#[derive(Debug)]
struct HeldLease {
    holder: String,
    token: u64,
    until: Instant,
}

impl Inner {
    /// Drops hashes whose TTL ran out; their index entries stay until the sweep, exactly
    /// as with Redis key expiry.
    fn purge(&mut self, now_ms: u64) {
        while let Some(&(at, id)) = self.expiry.first() {
            if at > now_ms {
                break;
            }
            self.expiry.pop_first();
            if self.traces.get(&id).is_some_and(|e| e.expires_at_ms == at) {
                self.traces.remove(&id);
            }
        }
    }

    fn set_expiry(&mut self, id: TraceId, at_ms: u64) {
        if let Some(entry) = self.traces.get_mut(&id) {
            self.expiry.remove(&(entry.expires_at_ms, id));
            entry.expires_at_ms = at_ms;
            self.expiry.insert((at_ms, id));
        }
    }

    /// Writes the entry's new form to the journal, if there is one. A failed write is
    /// logged, not returned: the registry keeps working in memory.
    fn record_change(&mut self, id: TraceId) {
        let (Some(journal), Some(entry)) = (self.journal.as_mut(), self.traces.get(&id)) else {
            return;
        };
        let line = Line {
            record: entry.record.clone(),
            expires_at_ms: entry.expires_at_ms,
        };
        if let Err(error) = journal.append(&line) {
            tracing::warn!(%error, path = %journal.path().display(), "cannot write the lifecycle registry file; this change is kept in memory only");
        }
        if journal.wants_compaction(self.traces.len()) {
            let path = journal.path().to_path_buf();
            let lines: Vec<Line> = self
                .traces
                .values()
                .map(|e| Line {
                    record: e.record.clone(),
                    expires_at_ms: e.expires_at_ms,
                })
                .collect();
            match Journal::rewrite(&path, lines.iter()) {
                Ok(compacted) => self.journal = Some(compacted),
                Err(error) => {
                    tracing::warn!(%error, path = %path.display(), "cannot compact the lifecycle registry file")
                }
            }
        }
    }

    fn check_fence(&self, fence: Option<u64>) -> Result<()> {
        match fence {
            Some(token) if self.lease.fence != Some(token) => Err(RegistryError::Fenced {
                presented: token,
                current: self
                    .lease
                    .fence
                    .map_or_else(|| "none".to_string(), |t| t.to_string()),
            }),
            _ => Ok(()),
        }
    }
}

impl EmbeddedRegistry {
    /// A registry in memory only: a restart forgets it.
    pub fn new(config: RegistryConfig) -> EmbeddedRegistry {
        EmbeddedRegistry {
            inner: Arc::default(),
            config,
        }
    }

    /// A registry kept in the journal file at `path` (created if missing): entries that
    /// have not expired are read back, the file is rewritten compactly, and from then on
    /// every change is appended (buffered, written out every 200 ms).
    pub fn open(path: &Path, config: RegistryConfig) -> Result<EmbeddedRegistry> {
        let now = config.clock.now_ms();
        let replayed = Journal::open(path, |line| line.expires_at_ms > now).map_err(|e| {
            RegistryError::Journal {
                path: path.display().to_string(),
                detail: e.to_string(),
            }
        })?;
        if replayed.skipped > 0 {
            tracing::warn!(
                skipped = replayed.skipped,
                path = %path.display(),
                "unreadable lines in the lifecycle registry file were skipped (a crash mid-write leaves one)"
            );
        }
        let mut inner = Inner::default();
        for line in replayed.lines {
            let record = line.record;
            let id = record.id;
            if !record.state.is_terminal() {
                inner.active.insert((record.created_at_ms, id));
            }
            if let Some(at) = record.orphaned_at_ms {
                inner.orphans.insert((at, id));
            }
            inner.expiry.insert((line.expires_at_ms, id));
            inner.traces.insert(
                id,
                Entry {
                    record,
                    expires_at_ms: line.expires_at_ms,
                },
            );
        }
        tracing::info!(
            traces = inner.traces.len(),
            active = inner.active.len(),
            path = %path.display(),
            "lifecycle registry loaded"
        );
        inner.journal = Some(replayed.journal);
        let inner = Arc::new(Mutex::new(inner));
        start_flusher(Arc::downgrade(&inner));
        Ok(EmbeddedRegistry { inner, config })
    }

    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    pub fn leader_election(&self, config: LeaseConfig) -> EmbeddedLeaderElection {
        EmbeddedLeaderElection {
            inner: self.inner.clone(),
            config,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere cannot leave the maps half-updated in a way that matters more
        // than losing the registry, so keep serving.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now(&self) -> u64 {
        self.config.clock.now_ms()
    }

    fn set_state(&self, id: TraceId, to: TraceState, error: Option<&str>) -> Transition {
        let now = self.now();
        let terminal_ms = self.config.terminal_ttl.as_millis() as u64;
        let mut inner = self.lock();
        inner.purge(now);
        let Some(entry) = inner.traces.get_mut(&id) else {
            return Transition::NotFound;
        };
        let current = entry.record.state;
        if current == to {
            return Transition::Unchanged;
        }
        if current.is_terminal()
            || (current == TraceState::InProgress && to == TraceState::Received)
        {
            return Transition::Refused { current };
        }
        entry.record.state = to;
        if to.is_terminal() {
            entry.record.finished_at_ms = Some(now);
            if let Some(error) = error {
                entry.record.error = Some(error.to_string());
            }
            let created = entry.record.created_at_ms;
            inner.active.remove(&(created, id));
            inner.set_expiry(id, now + terminal_ms);
        }
        inner.record_change(id);
        Transition::Applied { from: current }
    }
}

#[async_trait]
impl Registry for EmbeddedRegistry {
    async fn create_trace(
        &self,
        id: TraceId,
        initial: TraceState,
        metadata: &Metadata,
    ) -> Result<CreateOutcome> {
        check_metadata(metadata)?;
        let now = self.now();
        let mut inner = self.lock();
        inner.purge(now);
        if inner.traces.contains_key(&id) {
            return Ok(CreateOutcome::AlreadyExists);
        }
        let terminal = initial.is_terminal();
        let ttl = if terminal {
            self.config.terminal_ttl
        } else {
            self.config.failsafe_ttl
        };
        let expires_at_ms = now + ttl.as_millis() as u64;
        inner.traces.insert(
            id,
            Entry {
                record: TraceRecord {
                    id,
                    state: initial,
                    created_at_ms: now,
                    finished_at_ms: terminal.then_some(now),
                    orphaned_at_ms: None,
                    error: None,
                    metadata: metadata.clone(),
                },
                expires_at_ms,
            },
        );
        inner.expiry.insert((expires_at_ms, id));
        if !terminal {
            inner.active.insert((now, id));
        }
        inner.record_change(id);
        Ok(CreateOutcome::Created)
    }

    async fn transition(&self, id: TraceId, to: TraceState) -> Result<Transition> {
        Ok(self.set_state(id, to, None))
    }

    async fn mark_errored(&self, id: TraceId, reason: &str) -> Result<Transition> {
        Ok(self.set_state(id, TraceState::Errored, Some(reason)))
    }

    async fn get(&self, id: TraceId) -> Result<Option<TraceRecord>> {
        let now = self.now();
        let mut inner = self.lock();
        inner.purge(now);
        Ok(inner.traces.get(&id).map(|e| e.record.clone()))
    }

    async fn list_active(&self, limit: usize, after: Option<ActiveCursor>) -> Result<ActivePage> {
        let inner = self.lock();
        let start = match after {
            Some(c) => Bound::Excluded((c.created_at_ms, c.id)),
            None => Bound::Unbounded,
        };
        let mut traces: Vec<ActiveTrace> = inner
            .active
            .range((start, Bound::Unbounded))
            .take(limit.saturating_add(1))
            .map(|&(created_at_ms, id)| ActiveTrace { id, created_at_ms })
            .collect();
        let next = if traces.len() > limit {
            traces.truncate(limit);
            traces.last().map(|t| ActiveCursor::from(*t))
        } else {
            None
        };
        Ok(ActivePage { traces, next })
    }

    async fn active_count(&self) -> Result<u64> {
        Ok(self.lock().active.len() as u64)
    }

    async fn list_orphans(&self, limit: usize) -> Result<Vec<TraceRecord>> {
        let now = self.now();
        let mut inner = self.lock();
        inner.purge(now);
        let oldest = now.saturating_sub(self.config.terminal_ttl.as_millis() as u64);
        Ok(inner
            .orphans
            .iter()
            .rev()
            .take_while(|(at, _)| *at >= oldest)
            .filter_map(|(_, id)| inner.traces.get(id))
            .filter(|e| e.record.is_orphaned())
            .take(limit)
            .map(|e| e.record.clone())
            .collect())
    }

    async fn sweep_once(
        &self,
        now_ms: u64,
        threshold: Duration,
        fence: Option<u64>,
    ) -> Result<SweepReport> {
        let started = Instant::now();
        let cutoff = now_ms.saturating_sub(threshold.as_millis() as u64);
        let terminal_ms = self.config.terminal_ttl.as_millis() as u64;
        let mut report = SweepReport::default();
        loop {
            // Batches release the lock in between so creations and completions are not
            // held up behind a large sweep.
            let mut inner = self.lock();
            inner.check_fence(fence)?;
            // Expiry follows the registry clock, not the sweep's `now` (which may be a
            // what-if time), just as Redis expires keys by its own clock.
            inner.purge(self.now());
            let trim = (now_ms.saturating_sub(terminal_ms), TraceId::INVALID);
            inner.orphans = inner.orphans.split_off(&trim);
            let batch: Vec<(u64, TraceId)> = inner
                .active
                .range(..=(cutoff, TraceId([0xff; 16])))
                .take(self.config.sweep_batch.max(1))
                .copied()
                .collect();
            if batch.is_empty() {
                break;
            }
            report.batches += 1;
            let first_new = report.orphaned.len();
            for &(created_at_ms, id) in &batch {
                inner.active.remove(&(created_at_ms, id));
                let Some(entry) = inner.traces.get_mut(&id) else {
                    report.expired += 1;
                    continue;
                };
                if entry.record.state.is_terminal() {
                    report.finished += 1;
                    continue;
                }
                entry.record.state = TraceState::Errored;
                entry.record.orphaned_at_ms = Some(now_ms);
                entry.record.error = Some(ORPHANED_ERROR.to_string());
                inner.set_expiry(id, now_ms + terminal_ms);
                inner.orphans.insert((now_ms, id));
                inner.record_change(id);
                report.orphaned.push(Orphan {
                    id,
                    created_at_ms,
                    age: Duration::from_millis(now_ms.saturating_sub(created_at_ms)),
                });
            }
            drop(inner);
            log_orphans(&report.orphaned[first_new..]);
            if batch.len() < self.config.sweep_batch.max(1) {
                break;
            }
        }
        report.elapsed = started.elapsed();
        Ok(report)
    }

    fn election(&self, config: LeaseConfig) -> Arc<dyn LeaderElection> {
        Arc::new(self.leader_election(config))
    }

    fn now_ms(&self) -> u64 {
        self.now()
    }

    fn backend_name(&self) -> &'static str {
        "embedded"
    }

    async fn flush(&self) -> Result<()> {
        let mut inner = self.lock();
        let Some(journal) = inner.journal.as_mut() else {
            return Ok(());
        };
        journal.flush().map_err(|e| RegistryError::Journal {
            path: journal.path().display().to_string(),
            detail: e.to_string(),
        })
    }
}

/// Writes buffered journal lines out every [`FLUSH_EVERY`] until the registry is dropped.
fn start_flusher(inner: Weak<Mutex<Inner>>) {
    let spawned = std::thread::Builder::new()
        .name("clew-registry-flush".into())
        .spawn(move || {
            loop {
                std::thread::sleep(FLUSH_EVERY);
                let Some(inner) = inner.upgrade() else { break };
                let mut inner = inner.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(journal) = inner.journal.as_mut()
                    && let Err(error) = journal.flush()
                {
                    tracing::warn!(%error, path = %journal.path().display(), "cannot write the lifecycle registry file");
                }
            }
        });
    if let Err(error) = spawned {
        tracing::warn!(%error, "cannot start the lifecycle registry's flusher; changes are written when its buffer fills and on shutdown");
    }
}

/// Leader election among watchdogs sharing one [`EmbeddedRegistry`] (normally just one:
/// the process is trivially the leader). Same lease, renewal and fencing rules as Redis.
#[derive(Debug, Clone)]
pub struct EmbeddedLeaderElection {
    inner: Arc<Mutex<Inner>>,
    config: LeaseConfig,
}

impl EmbeddedLeaderElection {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl LeaderElection for EmbeddedLeaderElection {
    async fn try_acquire(&self) -> Result<Option<Lease>> {
        let now = Instant::now();
        let mut inner = self.lock();
        let slot = &mut inner.lease;
        if slot.held.as_ref().is_some_and(|h| h.until > now) {
            return Ok(None);
        }
        slot.epoch += 1;
        let token = slot.epoch;
        let until = now + self.config.ttl;
        slot.held = Some(HeldLease {
            holder: self.config.holder.clone(),
            token,
            until,
        });
        slot.fence = Some(token);
        Ok(Some(Lease {
            token,
            holder: self.config.holder.clone(),
            valid_until: until,
        }))
    }

    async fn renew(&self, lease: &Lease) -> Result<Option<Lease>> {
        let now = Instant::now();
        let mut inner = self.lock();
        let Some(held) = inner.lease.held.as_mut() else {
            return Ok(None);
        };
        if held.token != lease.token || held.holder != lease.holder || held.until <= now {
            return Ok(None);
        }
        held.until = now + self.config.ttl;
        Ok(Some(Lease {
            valid_until: held.until,
            ..lease.clone()
        }))
    }

    async fn release(&self, lease: &Lease) -> Result<()> {
        let mut inner = self.lock();
        let slot = &mut inner.lease;
        if slot
            .held
            .as_ref()
            .is_some_and(|h| h.token == lease.token && h.holder == lease.holder)
        {
            slot.held = None;
            if slot.fence == Some(lease.token) {
                slot.fence = None;
            }
        }
        Ok(())
    }

    fn lease_ttl(&self) -> Duration {
        self.config.ttl
    }

    fn holder(&self) -> &str {
        &self.config.holder
    }
}
