use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::Shared;
use crate::error::{RegistryError, Result};
use crate::leader::{LeaderElection, Lease, LeaseConfig};

/// Leader election over Redis: the lease is `{prefix}watchdog:leader` set with NX and a
/// PX expiry, renewed by a compare-and-set script; each term gets a fencing token from
/// INCR on `{prefix}watchdog:epoch`, recorded in `{prefix}watchdog:fence`, and the sweep
/// script refuses any other token.
#[derive(Debug, Clone)]
pub struct RedisLeaderElection {
    shared: Arc<Shared>,
    config: LeaseConfig,
}

impl RedisLeaderElection {
    pub(crate) fn new(shared: Arc<Shared>, config: LeaseConfig) -> RedisLeaderElection {
        RedisLeaderElection { shared, config }
    }

    fn ttl_ms(&self) -> u64 {
        (self.config.ttl.as_millis() as u64).max(1)
    }

    fn lease_value(lease: &Lease) -> String {
        format!("{} {}", lease.token, lease.holder)
    }
}

#[async_trait]
impl LeaderElection for RedisLeaderElection {
    async fn try_acquire(&self) -> Result<Option<Lease>> {
        let s = &self.shared;
        let sent = Instant::now();
        let mut inv = s.scripts.acquire.prepare_invoke();
        inv.key(s.keys.leader())
            .key(s.keys.epoch())
            .key(s.keys.fence())
            .arg(&self.config.holder)
            .arg(self.ttl_ms())
            .arg(s.config.clock.now_ms());
        let mut conn = s.conn();
        let (acquired, detail): (i64, String) = s.run(inv.invoke_async(&mut conn)).await?;
        if acquired != 1 {
            return Ok(None);
        }
        let token = detail.parse::<u64>().map_err(|_| RegistryError::Corrupt {
            key: s.keys.epoch(),
            detail: format!("fencing token {detail:?} is not a number"),
        })?;
        Ok(Some(Lease {
            token,
            holder: self.config.holder.clone(),
            valid_until: sent + self.config.ttl,
        }))
    }

    async fn renew(&self, lease: &Lease) -> Result<Option<Lease>> {
        let s = &self.shared;
        let sent = Instant::now();
        let mut inv = s.scripts.renew.prepare_invoke();
        inv.key(s.keys.leader())
            .key(s.keys.fence())
            .arg(Self::lease_value(lease))
            .arg(self.ttl_ms())
            .arg(lease.token.to_string());
        let mut conn = s.conn();
        let renewed: i64 = s.run(inv.invoke_async(&mut conn)).await?;
        Ok((renewed == 1).then(|| Lease {
            valid_until: sent + self.config.ttl,
            ..lease.clone()
        }))
    }

    async fn release(&self, lease: &Lease) -> Result<()> {
        let s = &self.shared;
        let mut inv = s.scripts.release.prepare_invoke();
        inv.key(s.keys.leader())
            .key(s.keys.fence())
            .arg(Self::lease_value(lease))
            .arg(lease.token.to_string());
        let mut conn = s.conn();
        let _released: i64 = s.run(inv.invoke_async(&mut conn)).await?;
        Ok(())
    }

    fn lease_ttl(&self) -> Duration {
        self.config.ttl
    }

    fn holder(&self) -> &str {
        &self.config.holder
    }
}
