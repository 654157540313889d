use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::error::Result;

/// A held leadership term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The fencing token of this term: strictly greater than every earlier term's, and
    /// checked by the sweep so that a leader that lost its lease cannot write.
    pub token: u64,
    pub holder: String,
    /// Until when this process may consider itself leader. Measured from *before* the
    /// request that acquired or renewed the lease was sent, so it never outlives the
    /// lease as the server sees it (clock drift aside).
    pub valid_until: Instant,
}

impl Lease {
    pub fn is_valid(&self) -> bool {
        Instant::now() < self.valid_until
    }
}

/// Exactly-one-sweeper election: a lease with renewal and a fencing token.
#[async_trait]
pub trait LeaderElection: Send + Sync + std::fmt::Debug {
    /// Becomes leader if nobody holds the lease. `Ok(None)` when another holder has it.
    async fn try_acquire(&self) -> Result<Option<Lease>>;
    /// Extends the lease if it is still ours (same holder and token). `Ok(None)` when it
    /// expired or was taken over: the caller is no longer leader.
    async fn renew(&self, lease: &Lease) -> Result<Option<Lease>>;
    /// Gives the lease up so another instance can take over at once (on clean shutdown).
    async fn release(&self, lease: &Lease) -> Result<()>;
    fn lease_ttl(&self) -> Duration;
    fn holder(&self) -> &str;
}

/// Settings for one election participant.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// Identifies this instance in the lease value (for operators reading Redis).
    pub holder: String,
    /// How long a lease lasts without renewal: the longest a dead leader blocks a
    /// takeover. Default 30 s. The watchdog renews every third of it.
    pub ttl: Duration,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        LeaseConfig {
            holder: default_holder(),
            ttl: Duration::from_secs(30),
        }
    }
}

impl LeaseConfig {
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }
}

/// `host:pid:random`, unique even for two watchdogs in one process.
pub fn default_holder() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "clew".to_string());
    format!(
        "{host}:{}:{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}
