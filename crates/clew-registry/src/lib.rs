//! The trace lifecycle registry and the orphan watchdog.
//!
//! Most tracing backends never know whether a trace is finished, still running, or
//! abandoned by a worker that died mid-request. This crate keeps that lifecycle:
//!
//! * [`Registry`]: register a trace (`RECEIVED`), move it forward (`IN_PROGRESS`,
//!   `COMPLETED`, `ERRORED`), read it back, list the active ones. Two backends with the
//!   same semantics: [`RedisRegistry`] (one server or a cluster, shared by many
//!   collectors) and [`EmbeddedRegistry`] (in-process, for the nothing-installed setup).
//! * [`Watchdog`]: every sweep interval (default 300 s) marks traces older than the orphan
//!   threshold (default 1800 s) that never reached a terminal state as ERRORED
//!   (`error = "orphaned"`), gives them a terminal TTL (default 1 h), drops them from the
//!   active index and logs a `trace_orphaned` warning with `trace_id` and `age_s`.
//! * [`LeaderElection`]: exactly one watchdog sweeps cluster-wide: a lease with renewal
//!   and a fencing token that the sweep itself checks, so a leader that lost its lease
//!   (paused, partitioned) cannot write after another took over.
//!
//! It owns the registry's keys and nothing else. It depends only on `clew-model`, and
//! must never import the store, ingest, query, server or CLI crates: they call it, not
//! the other way round.
//!
//! # Redis layout
//!
//! Keys (see [`KeyLayout`]) are the seed's, under a configurable prefix (default
//! `clew:`; the seed's `sg:` works unchanged):
//!
//! * `{prefix}trace:{id}`: a hash with `state`, `created_at`, the caller's metadata, and
//!   later `finished_at`, `orphaned_at`, `error`. Times are Unix **seconds with
//!   millisecond decimals** (`"1763000000.123"`), the shape of Python's `time.time()`
//!   that the seed wrote. Ids are 32 lowercase hex digits (the W3C form of the UUIDv7).
//!   Created with an absolute failsafe EXPIRE (default 24 h) in the same Lua script as
//!   the HSET and the index entry, so a trace is collected even if no watchdog ever runs.
//! * `{prefix}traces:active`: the active index. The seed used a SET, which forced its
//!   sweep to read every active id and make a round trip per trace. Here it is a
//!   **sorted set scored by `created_at`**, so the sweep reads only the entries older
//!   than the threshold (`ZRANGEBYSCORE -inf cutoff LIMIT 0 batch`) and costs
//!   O(orphans), not O(active): two round trips per batch of up to 1000.
//! * `{prefix}traces:orphaned`: ids the watchdog marked, scored by `orphaned_at`, trimmed
//!   to the terminal TTL; feeds `clew traces orphans`.
//! * `{prefix}watchdog:leader` / `:fence` / `:epoch`: the lease, the current fencing
//!   token, and the token counter.
//!
//! Moving a seed deployment over: the sweep handles its entries (integer seconds,
//! hyphenated UUID members), though `get` looks ids up in clew's 32-hex form; its SET
//! index must be converted to the sorted set (`ZADD` each member with its `created_at`)
//! or dropped first, since with a SET under `traces:active` every index command fails
//! with WRONGTYPE.
//!
//! Every check-then-write step (create, transition, sweep batch, lease acquire/renew/
//! release) is one Lua script, so it is atomic: a completion racing the sweep either runs
//! first (the sweep then sees COMPLETED and only de-indexes) or second (it is refused,
//! because terminal states are final). Creating a trace that already exists changes
//! nothing, so two collectors that see the same trace's first spans agree on one entry.
//!
//! # Redis Cluster
//!
//! A sweep batch touches the index, the fence and many trace hashes in one script, which
//! Redis Cluster allows only within one hash slot. So in cluster mode the prefix is used
//! verbatim and **must contain a hash tag**, e.g. `{clew}:` (keys `{clew}:trace:ID`, …);
//! [`RedisRegistry::from_conn`] refuses a cluster connection with an untagged prefix
//! rather than renaming keys behind the operator's back. The whole registry then lives
//! on one shard; at ~320 bytes per active trace (measured, with one metadata field) that
//! is ample for millions of traces.
//!
//! # Failure behaviour
//!
//! Every Redis call is bounded by `op_timeout` (default 2 s) and fails with a typed
//! [`RegistryError`] (`Unavailable`/`Timeout` are [transient](RegistryError::is_transient));
//! connections reconnect on their own. The watchdog logs, backs off exponentially (capped)
//! and keeps running; after a Redis restart it re-acquires the lease (with a larger token,
//! even if Redis lost its data) and catches up on the next sweep.
//!
//! # Embedded backend
//!
//! Same semantics in memory: a `BTreeSet` ordered by `(created_at, id)` is the active
//! index and another by expiry time plays the role of Redis TTLs (checked on every call
//! and by the sweep). [`EmbeddedRegistry::open`] keeps it in a journal file as well (one
//! JSON line per changed entry, replayed and compacted on open, written out every
//! 200 ms without fsync), so after a restart finished traces keep their state and the
//! ones that were in flight are still swept as orphans if they never finish;
//! [`EmbeddedRegistry::new`] keeps it in memory only.
//!
//! # Example
//!
//! ```no_run
//! # async fn demo() -> Result<(), clew_registry::RegistryError> {
//! use std::sync::Arc;
//! use clew_model::TraceId;
//! use clew_registry::*;
//!
//! let registry: Arc<dyn Registry> =
//!     Arc::new(RedisRegistry::connect("redis://127.0.0.1:6379", RegistryConfig::default()).await?);
//! let id = TraceId::generate();
//! registry.create_trace(id, TraceState::Received, &Metadata::new()).await?;
//! registry.transition(id, TraceState::Completed).await?;
//!
//! let election = registry.election(LeaseConfig::default());
//! let watchdog = Watchdog::new(registry, election, WatchdogConfig::default()).spawn();
//! watchdog.shutdown().await;
//! # Ok(()) }
//! ```

mod clock;
mod config;
mod embedded;
mod error;
mod journal;
mod keys;
mod leader;
mod model;
mod redis_backend;
mod watchdog;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use clew_model::TraceId;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::RegistryConfig;
pub use embedded::{EmbeddedLeaderElection, EmbeddedRegistry};
pub use error::{RegistryError, Result};
pub use keys::KeyLayout;
pub use leader::{LeaderElection, Lease, LeaseConfig, default_holder};
pub use model::{
    ActiveCursor, ActivePage, ActiveTrace, CreateOutcome, InvalidCursor, Metadata, ORPHANED_ERROR,
    Orphan, RESERVED_FIELDS, SweepReport, TraceRecord, TraceState, Transition, UnknownState,
};
pub use redis_backend::{RedisConn, RedisLeaderElection, RedisRegistry, RedisTarget};
pub use watchdog::{Watchdog, WatchdogConfig, WatchdogHandle, WatchdogSnapshot, WatchdogStats};

/// The lifecycle registry, usable as `Arc<dyn Registry>` whatever the backend.
#[async_trait]
pub trait Registry: Send + Sync + std::fmt::Debug {
    /// Registers a trace with its initial state, `created_at` = now and the caller's
    /// metadata, under the failsafe TTL; a non-terminal trace enters the active index.
    /// Does nothing if the trace is already registered.
    async fn create_trace(
        &self,
        id: TraceId,
        initial: TraceState,
        metadata: &Metadata,
    ) -> Result<CreateOutcome>;

    /// Moves a trace forward. Reaching COMPLETED or ERRORED sets `finished_at`, removes it
    /// from the active index and replaces the failsafe TTL with the terminal TTL, all at
    /// once. Terminal states are final and states never move backwards: such requests
    /// are answered with [`Transition::Refused`].
    async fn transition(&self, id: TraceId, to: TraceState) -> Result<Transition>;

    /// [`transition`](Self::transition) to ERRORED, recording `reason` in `error`.
    async fn mark_errored(&self, id: TraceId, reason: &str) -> Result<Transition>;

    async fn get(&self, id: TraceId) -> Result<Option<TraceRecord>>;

    /// Active (non-terminal) traces, oldest first, `limit` per page; pass the previous
    /// page's `next` as `after` to continue.
    async fn list_active(&self, limit: usize, after: Option<ActiveCursor>) -> Result<ActivePage>;

    /// Number of entries in the active index (it may include entries whose hash expired
    /// and that the next sweep removes).
    async fn active_count(&self) -> Result<u64>;

    /// Traces the watchdog marked ERRORED within the terminal TTL, newest first.
    async fn list_orphans(&self, limit: usize) -> Result<Vec<TraceRecord>>;

    /// One sweep as of `now_ms` (Unix ms): every active trace created before
    /// `now_ms - threshold` that is not terminal becomes ERRORED, and entries whose hash
    /// expired are dropped from the index. With `fence`, each atomic step first checks
    /// that the token is still the current lease's and fails with
    /// [`RegistryError::Fenced`] otherwise; `None` sweeps unconditionally (manual sweeps;
    /// still safe beside a watchdog, since every step is atomic and idempotent).
    async fn sweep_once(
        &self,
        now_ms: u64,
        threshold: Duration,
        fence: Option<u64>,
    ) -> Result<SweepReport>;

    /// A leader-election participant over this backend (Redis lease, or an in-process
    /// one for the embedded registry).
    fn election(&self, config: LeaseConfig) -> Arc<dyn LeaderElection>;

    /// The registry clock, Unix ms.
    fn now_ms(&self) -> u64;

    /// `"redis"`, `"redis-cluster"` or `"embedded"`.
    fn backend_name(&self) -> &'static str;

    /// Writes out what the backend still buffers (the embedded registry's file), so a
    /// clean shutdown keeps every change. Redis has nothing to flush.
    async fn flush(&self) -> Result<()> {
        Ok(())
    }
}

pub(crate) fn check_metadata(metadata: &Metadata) -> Result<()> {
    match metadata
        .keys()
        .find(|field| RESERVED_FIELDS.contains(&field.as_str()))
    {
        Some(field) => Err(RegistryError::ReservedField(field.clone())),
        None => Ok(()),
    }
}

pub(crate) fn log_orphans(orphans: &[Orphan]) {
    for orphan in orphans {
        tracing::warn!(
            trace_id = %orphan.id,
            age_s = orphan.age.as_secs(),
            "trace_orphaned"
        );
    }
}
