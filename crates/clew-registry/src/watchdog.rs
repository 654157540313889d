//! The orphan watchdog: a lease keeper and a sweeper running side by side in one task.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, sleep_until};

use crate::Registry;
use crate::error::RegistryError;
use crate::leader::{LeaderElection, Lease};

/// Watchdog timing.
#[derive(Debug, Clone)]
pub struct WatchdogConfig {
    /// Time between sweeps while leader. Default 300 s.
    pub sweep_interval: Duration,
    /// Age after which a trace that is neither COMPLETED nor ERRORED counts as
    /// abandoned. Default 1800 s.
    pub orphan_threshold: Duration,
    /// First retry delay after a failed sweep; doubles per failure. Default 1 s.
    pub backoff_min: Duration,
    /// Cap of the retry delay. Default 60 s.
    pub backoff_max: Duration,
}

impl Default for WatchdogConfig {
    fn default() -> Self {
        WatchdogConfig {
            sweep_interval: Duration::from_secs(300),
            orphan_threshold: Duration::from_secs(1800),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
        }
    }
}

impl WatchdogConfig {
    /// The delay before retry number `failures` (1-based).
    pub fn backoff(&self, failures: u32) -> Duration {
        let factor = 1u32 << failures.saturating_sub(1).min(20);
        self.backoff_min
            .saturating_mul(factor)
            .min(self.backoff_max)
    }
}

/// Counters a running watchdog keeps, for tests, logs and `/metrics`-style reporting.
#[derive(Debug, Default)]
pub struct WatchdogStats {
    sweeps: AtomicU64,
    orphaned: AtomicU64,
    expired: AtomicU64,
    sweep_errors: AtomicU64,
    lease_errors: AtomicU64,
    fenced: AtomicU64,
    terms: AtomicU64,
    leader_token: AtomicU64,
}

/// A point-in-time copy of [`WatchdogStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct WatchdogSnapshot {
    /// Completed sweeps.
    pub sweeps: u64,
    /// Traces marked ERRORED.
    pub orphaned: u64,
    /// Index entries dropped because their hash had expired.
    pub expired: u64,
    pub sweep_errors: u64,
    pub lease_errors: u64,
    /// Sweeps refused because the lease had moved on.
    pub fenced: u64,
    /// Leadership terms won.
    pub terms: u64,
    /// Fencing token of the current term, if leader.
    pub leader_token: Option<u64>,
}

impl WatchdogStats {
    pub fn snapshot(&self) -> WatchdogSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::SeqCst);
        WatchdogSnapshot {
            sweeps: get(&self.sweeps),
            orphaned: get(&self.orphaned),
            expired: get(&self.expired),
            sweep_errors: get(&self.sweep_errors),
            lease_errors: get(&self.lease_errors),
            fenced: get(&self.fenced),
            terms: get(&self.terms),
            leader_token: Some(get(&self.leader_token)).filter(|t| *t != 0),
        }
    }
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::SeqCst);
}

/// Sweeps abandoned traces, as leader only.
///
/// ```no_run
/// # async fn demo(registry: std::sync::Arc<dyn clew_registry::Registry>) {
/// use clew_registry::{LeaseConfig, Watchdog, WatchdogConfig};
/// let election = registry.election(LeaseConfig::default());
/// let handle = Watchdog::new(registry, election, WatchdogConfig::default()).spawn();
/// // … on shutdown, give the lease back so another instance takes over at once:
/// handle.shutdown().await;
/// # }
/// ```
#[derive(Debug)]
pub struct Watchdog {
    registry: Arc<dyn Registry>,
    election: Arc<dyn LeaderElection>,
    config: WatchdogConfig,
    stats: Arc<WatchdogStats>,
}

impl Watchdog {
    pub fn new(
        registry: Arc<dyn Registry>,
        election: Arc<dyn LeaderElection>,
        config: WatchdogConfig,
    ) -> Watchdog {
        Watchdog {
            registry,
            election,
            config,
            stats: Arc::default(),
        }
    }

    /// Starts the watchdog on the current Tokio runtime. Keep the handle: dropping it
    /// stops the watchdog (releasing the lease), like [`WatchdogHandle::shutdown`].
    #[must_use = "dropping the handle stops the watchdog"]
    pub fn spawn(self) -> WatchdogHandle {
        let (stop_tx, stop_rx) = watch::channel(false);
        let stats = self.stats.clone();
        let task = tokio::spawn(self.run(stop_rx));
        WatchdogHandle {
            stats,
            stop: stop_tx,
            task,
        }
    }

    /// Runs until `stop` turns true (or its sender is dropped), then releases the lease.
    pub async fn run(self, stop: watch::Receiver<bool>) {
        let (lease_tx, lease_rx) = watch::channel::<Option<Lease>>(None);
        // Renewal runs beside the sweep, not after it, so a long sweep cannot let the
        // lease lapse; if it lapses anyway the fence stops the sweep's next batch.
        let keeper = keep_lease(
            self.election.clone(),
            lease_tx,
            stop.clone(),
            self.stats.clone(),
        );
        let sweeper = sweep_while_leader(
            self.registry.clone(),
            self.config.clone(),
            lease_rx,
            stop,
            self.stats.clone(),
        );
        tokio::join!(keeper, sweeper);
    }
}

/// Controls a spawned [`Watchdog`]; dropping it stops the watchdog.
#[derive(Debug)]
#[must_use = "dropping the handle stops the watchdog"]
pub struct WatchdogHandle {
    stats: Arc<WatchdogStats>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl WatchdogHandle {
    pub fn stats(&self) -> WatchdogSnapshot {
        self.stats.snapshot()
    }

    pub fn is_leader(&self) -> bool {
        self.stats.snapshot().leader_token.is_some()
    }

    /// Stops after the current step and releases the lease.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }

    /// Stops at once without releasing the lease, as a crash would: another watchdog
    /// takes over only when the lease expires.
    pub fn abort(self) {
        self.task.abort();
    }
}

fn stopped(stop: &watch::Receiver<bool>) -> bool {
    *stop.borrow() || stop.has_changed().is_err()
}

/// Waits for a stop request; never returns if the sender stays quiet.
async fn stop_requested(stop: &mut watch::Receiver<bool>) {
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        if stop.changed().await.is_err() {
            return;
        }
    }
}

async fn keep_lease(
    election: Arc<dyn LeaderElection>,
    lease_tx: watch::Sender<Option<Lease>>,
    mut stop: watch::Receiver<bool>,
    stats: Arc<WatchdogStats>,
) {
    // Renewing at a third of the lease leaves two more tries before it lapses.
    let period = (election.lease_ttl() / 3).max(Duration::from_millis(10));
    let mut lease: Option<Lease> = None;
    let mut failing = false;
    while !stopped(&stop) {
        let result = match &lease {
            None => election.try_acquire().await.inspect(|won| {
                if let Some(l) = won {
                    bump(&stats.terms, 1);
                    tracing::info!(token = l.token, holder = %l.holder, "watchdog_leader_acquired");
                }
            }),
            Some(held) => election.renew(held).await.inspect(|renewed| {
                if renewed.is_none() {
                    tracing::warn!(token = held.token, "watchdog_leadership_lost");
                }
            }),
        };
        lease = match result {
            Ok(next) => {
                if failing {
                    tracing::info!("watchdog_lease_recovered");
                    failing = false;
                }
                next
            }
            Err(e) => {
                bump(&stats.lease_errors, 1);
                // One warning per outage, not one per attempt.
                if !failing {
                    tracing::warn!(error = %e, "watchdog_lease_error");
                    failing = true;
                } else {
                    tracing::debug!(error = %e, "watchdog_lease_error");
                }
                // Without an answer, leadership holds only until the lease surely lapsed.
                lease.take().filter(Lease::is_valid)
            }
        };
        let token = lease.as_ref().map_or(0, |l| l.token);
        stats.leader_token.store(token, Ordering::SeqCst);
        lease_tx.send_replace(lease.clone());
        tokio::select! {
            _ = sleep(period) => {}
            _ = stop_requested(&mut stop) => break,
        }
    }
    stats.leader_token.store(0, Ordering::SeqCst);
    lease_tx.send_replace(None);
    if let Some(held) = lease
        && let Err(e) = election.release(&held).await
    {
        tracing::warn!(error = %e, "watchdog_lease_release_failed");
    }
}

async fn sweep_while_leader(
    registry: Arc<dyn Registry>,
    config: WatchdogConfig,
    mut lease_rx: watch::Receiver<Option<Lease>>,
    mut stop: watch::Receiver<bool>,
    stats: Arc<WatchdogStats>,
) {
    let mut term: Option<u64> = None;
    let mut next_sweep = Instant::now();
    let mut failures = 0u32;
    while !stopped(&stop) {
        let lease = lease_rx.borrow_and_update().clone();
        let wake_at = match lease.filter(Lease::is_valid) {
            None => None,
            Some(lease) => {
                if term != Some(lease.token) {
                    // A new term sweeps at once: the previous leader may have died long
                    // before its lease ran out.
                    term = Some(lease.token);
                    next_sweep = Instant::now();
                }
                if Instant::now() >= next_sweep {
                    let now_ms = registry.now_ms();
                    let result = registry
                        .sweep_once(now_ms, config.orphan_threshold, Some(lease.token))
                        .await;
                    next_sweep = Instant::now()
                        + match result {
                            Ok(report) => {
                                bump(&stats.sweeps, 1);
                                bump(&stats.orphaned, report.orphaned.len() as u64);
                                bump(&stats.expired, report.expired);
                                if failures > 0 {
                                    tracing::info!(failures, "watchdog_sweep_recovered");
                                    failures = 0;
                                }
                                tracing::debug!(
                                    orphaned = report.orphaned.len(),
                                    expired = report.expired,
                                    examined = report.examined(),
                                    elapsed_ms = report.elapsed.as_millis() as u64,
                                    "watchdog_swept"
                                );
                                config.sweep_interval
                            }
                            Err(RegistryError::Fenced { presented, current }) => {
                                bump(&stats.fenced, 1);
                                tracing::warn!(presented, current, "watchdog_sweep_fenced");
                                // The keeper's next renewal will notice the lost lease.
                                config.backoff(1)
                            }
                            Err(e) => {
                                bump(&stats.sweep_errors, 1);
                                failures += 1;
                                let delay = config.backoff(failures);
                                tracing::warn!(
                                    error = %e,
                                    failures,
                                    retry_in_ms = delay.as_millis() as u64,
                                    "watchdog_sweep_failed"
                                );
                                delay
                            }
                        };
                }
                Some(next_sweep)
            }
        };
        tokio::select! {
            _ = async {
                match wake_at {
                    Some(at) => sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {}
            changed = lease_rx.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            _ = stop_requested(&mut stop) => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let config = WatchdogConfig {
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(1),
            ..WatchdogConfig::default()
        };
        let delays: Vec<u64> = (1..=6)
            .map(|n| config.backoff(n).as_millis() as u64)
            .collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(config.backoff(500), Duration::from_secs(1));
    }
}
