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

fn open(path: &std::path::Path, clock: &Arc<ManualClock>) -> EmbeddedRegistry {
    EmbeddedRegistry::open(path, RegistryConfig::default().with_clock(clock.clone()))
        .expect("opening the registry file")
}

/// The shared behaviour holds with the journal underneath too.
#[tokio::test]
async fn a_registry_kept_in_a_file_behaves_the_same() {
    support::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let path = dir.path().join("lifecycle.journal");
    behaviour::lifecycle_rules(Arc::new(open(&path, &clock)), clock.clone()).await;
    let path = dir.path().join("sweep.journal");
    behaviour::sweeps_only_old_unfinished(Arc::new(open(&path, &clock)), clock).await;
}

#[tokio::test]
async fn a_reopened_registry_remembers_states_and_still_sweeps_what_was_running() {
    support::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lifecycle.journal");
    let clock = Arc::new(ManualClock::new(T0));
    let mut metadata = Metadata::new();
    metadata.insert("service".into(), "striker".into());
    let (done, failed, running, orphaned) = (
        TraceId::generate(),
        TraceId::generate(),
        TraceId::generate(),
        TraceId::generate(),
    );
    {
        let registry = open(&path, &clock);
        for id in [done, failed, orphaned] {
            registry
                .create_trace(id, TraceState::InProgress, &metadata)
                .await
                .unwrap();
        }
        registry
            .transition(done, TraceState::Completed)
            .await
            .unwrap();
        registry
            .mark_errored(failed, "engine failure")
            .await
            .unwrap();
        clock.advance(THRESHOLD + Duration::from_secs(1));
        registry
            .create_trace(running, TraceState::InProgress, &metadata)
            .await
            .unwrap();
        // Only `orphaned` is unfinished and old enough.
        registry
            .sweep_once(clock_now(&clock), THRESHOLD, None)
            .await
            .unwrap();
        // Dropped here, as a process exit drops it.
    }
    let registry = open(&path, &clock);
    let record = |id| {
        let registry = registry.clone();
        async move { registry.get(id).await.unwrap().expect("remembered") }
    };
    assert_eq!(record(done).await.state, TraceState::Completed);
    let failed_record = record(failed).await;
    assert_eq!(failed_record.state, TraceState::Errored);
    assert_eq!(failed_record.error.as_deref(), Some("engine failure"));
    assert_eq!(record(running).await.metadata, metadata);
    let swept = record(orphaned).await;
    assert!(swept.is_orphaned(), "{swept:?}");
    assert_eq!(
        registry.list_orphans(10).await.unwrap()[0].id,
        orphaned,
        "the orphan index is rebuilt"
    );
    // Still active after the restart, so the watchdog finds it.
    let active = registry.list_active(10, None).await.unwrap();
    assert_eq!(
        active.traces.iter().map(|t| t.id).collect::<Vec<_>>(),
        vec![running]
    );
    clock.advance(THRESHOLD + Duration::from_secs(1));
    let report = registry
        .sweep_once(clock_now(&clock), THRESHOLD, None)
        .await
        .unwrap();
    assert_eq!(
        report.orphaned.iter().map(|o| o.id).collect::<Vec<_>>(),
        vec![running]
    );
}

#[tokio::test]
async fn expired_entries_and_a_torn_last_line_are_dropped_on_open() {
    support::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lifecycle.journal");
    let clock = Arc::new(ManualClock::new(T0));
    let (finished, running) = (TraceId::generate(), TraceId::generate());
    {
        let registry = open(&path, &clock);
        for id in [finished, running] {
            registry
                .create_trace(id, TraceState::InProgress, &Metadata::new())
                .await
                .unwrap();
        }
        registry
            .transition(finished, TraceState::Completed)
            .await
            .unwrap();
    }
    // A crash in the middle of a line.
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    file.write_all(br#"{"r":{"id":"0123"#).unwrap();
    drop(file);
    // Past the terminal TTL (1 h), before the failsafe TTL (24 h).
    clock.advance(Duration::from_millis(HOUR_MS + 1));
    let registry = open(&path, &clock);
    assert_eq!(registry.get(finished).await.unwrap(), None);
    assert!(registry.get(running).await.unwrap().is_some());
    let lines = std::fs::read_to_string(&path).unwrap();
    assert_eq!(lines.lines().count(), 1, "rewritten compactly: {lines}");
}

#[tokio::test]
async fn the_file_is_compacted_as_it_grows() {
    support::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lifecycle.journal");
    let clock = Arc::new(ManualClock::new(T0));
    let registry = open(&path, &clock);
    // Two lines per trace, and each trace expires before the next is created, so the
    // live entries stay few while the file would grow without bound.
    for _ in 0..12_000 {
        let id = TraceId::generate();
        registry
            .create_trace(id, TraceState::InProgress, &Metadata::new())
            .await
            .unwrap();
        registry
            .transition(id, TraceState::Completed)
            .await
            .unwrap();
        clock.advance(Duration::from_millis(HOUR_MS + 1));
    }
    drop(registry);
    let lines = std::fs::read_to_string(&path).unwrap().lines().count();
    assert!(
        lines <= 10_010,
        "the file was never compacted: {lines} lines written for 24,000 changes"
    );
}
