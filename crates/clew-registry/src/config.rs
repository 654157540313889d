use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Clock, SystemClock};

/// Settings shared by both backends.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Prepended verbatim to every key (`{prefix}trace:{id}`, …). Default `clew:`; the seed
    /// used `sg:`. In Redis Cluster it must contain a hash tag such as `{clew}:` (see the
    /// crate docs).
    pub key_prefix: String,
    /// Absolute lifetime of a trace hash from its creation, so nothing leaks even if no
    /// watchdog ever runs. Default 24 h.
    pub failsafe_ttl: Duration,
    /// Lifetime of a trace hash once it is COMPLETED or ERRORED. Default 1 h.
    pub terminal_ttl: Duration,
    /// Index entries checked per atomic sweep step. Default 1000.
    pub sweep_batch: usize,
    /// Upper bound on one Redis call, so a dead server costs callers this much at most.
    /// Default 2 s.
    pub op_timeout: Duration,
    pub clock: Arc<dyn Clock>,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            key_prefix: "clew:".to_string(),
            failsafe_ttl: Duration::from_secs(24 * 3600),
            terminal_ttl: Duration::from_secs(3600),
            sweep_batch: 1000,
            op_timeout: Duration::from_secs(2),
            clock: Arc::new(SystemClock),
        }
    }
}

impl RegistryConfig {
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Whole seconds for EXPIRE; never 0, which Redis would treat as "delete now".
    pub(crate) fn failsafe_secs(&self) -> u64 {
        self.failsafe_ttl.as_secs().max(1)
    }

    pub(crate) fn terminal_secs(&self) -> u64 {
        self.terminal_ttl.as_secs().max(1)
    }
}
