//! The embedded backend: the same behaviour as Redis, in process.

mod support;

use std::sync::Arc;
use std::time::Duration;

use clew_model::TraceId;
use clew_registry::{
    EmbeddedRegistry, LeaderElection, LeaseConfig, ManualClock, Metadata, Registry, RegistryConfig,
    RegistryError, TraceState,
};
use support::behaviour::{self, HOUR_MS, THRESHOLD};

const T0: u64 = 1_700_000_000_123;

fn setup() -> (EmbeddedRegistry, Arc<ManualClock>) {
    support::init_tracing();
    let clock = Arc::new(ManualClock::new(T0));
    let registry = EmbeddedRegistry::new(RegistryConfig::default().with_clock(clock.clone()));
    (registry, clock)
}

#[tokio::test]
async fn lifecycle_rules() {
    let (registry, clock) = setup();
    behaviour::lifecycle_rules(Arc::new(registry), clock).await;
}

#[tokio::test]
async fn sweeps_only_old_unfinished_traces() {
    let (registry, clock) = setup();
    behaviour::sweeps_only_old_unfinished(Arc::new(registry), clock).await;
}

#[tokio::test]
async fn a_late_completion_is_refused() {
    let (registry, clock) = setup();
    behaviour::late_completion_is_refused(Arc::new(registry), clock).await;
}

#[tokio::test]
async fn lists_active_traces_in_pages() {
    let (registry, clock) = setup();
    behaviour::lists_active_in_pages(Arc::new(registry), clock).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn completion_racing_the_sweep_never_ends_errored() {
    support::init_tracing();
    let clock = Arc::new(ManualClock::new(T0));
    let registry = EmbeddedRegistry::new(RegistryConfig {
        sweep_batch: 3,
        ..RegistryConfig::default().with_clock(clock.clone())
    });
    behaviour::completion_races_sweep(Arc::new(registry), clock, 200, 12).await;
}

#[tokio::test]
async fn the_failsafe_ttl_collects_a_trace_and_the_sweep_only_deindexes_it() {
    let (registry, clock) = setup();
    let id = TraceId::generate();
    registry
        .create_trace(id, TraceState::Received, &Metadata::new())
        .await
        .unwrap();
    clock.advance(Duration::from_millis(24 * HOUR_MS - 1));
    assert!(
        registry.get(id).await.unwrap().is_some(),
        "alive until 24 h"
    );
    clock.advance(Duration::from_millis(1));
    assert_eq!(registry.get(id).await.unwrap(), None, "gone at 24 h");
    assert_eq!(registry.active_count().await.unwrap(), 1);

    let report = registry
        .sweep_once(T0 + 25 * HOUR_MS, THRESHOLD, None)
        .await
        .unwrap();
    assert_eq!(report.expired, 1);
    assert!(report.orphaned.is_empty());
    assert_eq!(registry.active_count().await.unwrap(), 0);
    assert_eq!(registry.get(id).await.unwrap(), None);
    assert!(registry.list_orphans(10).await.unwrap().is_empty());
}

#[tokio::test]
async fn terminal_traces_expire_after_the_terminal_ttl() {
    let (registry, clock) = setup();
    let completed = TraceId::generate();
    let orphan = TraceId::generate();
    for id in [completed, orphan] {
        registry
            .create_trace(id, TraceState::Received, &Metadata::new())
            .await
            .unwrap();
    }
    registry
        .transition(completed, TraceState::Completed)
        .await
        .unwrap();
    clock.advance(Duration::from_millis(HOUR_MS));
    let report = registry
        .sweep_once(T0 + HOUR_MS, THRESHOLD, None)
        .await
        .unwrap();
    assert_eq!(report.orphaned.len(), 1);
    assert_eq!(
        registry.get(completed).await.unwrap(),
        None,
        "1 h after completion"
    );
    assert_eq!(registry.list_orphans(10).await.unwrap().len(), 1);
    clock.advance(Duration::from_millis(HOUR_MS));
    assert_eq!(
        registry.get(orphan).await.unwrap(),
        None,
        "1 h after orphaning"
    );
    assert!(registry.list_orphans(10).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_stale_leaders_sweep_is_fenced_off() {
    let (registry, clock) = setup();
    let lease = Duration::from_millis(200);
    let a = registry.leader_election(LeaseConfig {
        holder: "a".into(),
        ttl: lease,
    });
    let b = registry.leader_election(LeaseConfig {
        holder: "b".into(),
        ttl: lease,
    });
    let term_a = a.try_acquire().await.unwrap().expect("a leads");
    assert_eq!(b.try_acquire().await.unwrap(), None);
    let term_b = support::acquire_within(&b, Duration::from_secs(5)).await;
    assert!(term_b.token > term_a.token);

    let id = TraceId::generate();
    registry
        .create_trace(id, TraceState::Received, &Metadata::new())
        .await
        .unwrap();
    let now = clock_now(&clock) + 2 * HOUR_MS;
    let err = registry
        .sweep_once(now, THRESHOLD, Some(term_a.token))
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::Fenced { presented, .. } if presented == term_a.token),
        "{err}"
    );
    assert_eq!(
        registry.get(id).await.unwrap().unwrap().state,
        TraceState::Received
    );
    assert_eq!(a.renew(&term_a).await.unwrap(), None);
    let report = registry
        .sweep_once(now, THRESHOLD, Some(term_b.token))
        .await
        .unwrap();
    assert_eq!(report.orphaned.len(), 1);
    b.release(&term_b).await.unwrap();
    assert!(
        a.try_acquire().await.unwrap().is_some(),
        "free after release"
    );
}

fn clock_now(clock: &ManualClock) -> u64 {
    clew_registry::Clock::now_ms(clock)
}
