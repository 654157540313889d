//! Watchdogs under leader election, on Redis (real, private server) and embedded.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use clew_model::TraceId;
use clew_registry::{
    EmbeddedRegistry, LeaseConfig, Metadata, Registry, RegistryConfig, TraceState, Watchdog,
    WatchdogConfig, WatchdogHandle,
};
use support::{RedisServer, eventually};

const LEASE: Duration = Duration::from_millis(500);

fn fast(threshold: Duration) -> WatchdogConfig {
    WatchdogConfig {
        sweep_interval: Duration::from_millis(50),
        orphan_threshold: threshold,
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_millis(400),
    }
}

fn start(registry: Arc<dyn Registry>, holder: &str, config: WatchdogConfig) -> WatchdogHandle {
    let election = registry.election(LeaseConfig {
        holder: holder.to_string(),
        ttl: LEASE,
    });
    Watchdog::new(registry, election, config).spawn()
}

type PendingRegistry = std::pin::Pin<Box<dyn std::future::Future<Output = Arc<dyn Registry>>>>;

/// Each participant gets its own registry handle, as separate processes would.
type Connect = Box<dyn Fn() -> PendingRegistry>;

fn redis_connector(server: &RedisServer) -> Connect {
    let url = server.url();
    Box::new(move || {
        let url = url.clone();
        Box::pin(async move {
            let registry = clew_registry::RedisRegistry::connect(&url, quick_config())
                .await
                .expect("connect");
            Arc::new(registry) as Arc<dyn Registry>
        })
    })
}

fn embedded_connector() -> Connect {
    let shared = EmbeddedRegistry::new(quick_config());
    Box::new(move || {
        let registry = shared.clone();
        Box::pin(async move { Arc::new(registry) as Arc<dyn Registry> })
    })
}

fn quick_config() -> RegistryConfig {
    RegistryConfig {
        op_timeout: Duration::from_millis(500),
        ..RegistryConfig::default()
    }
}

async fn only_one_of_two_sweeps(connect: Connect) {
    support::init_tracing();
    let a = start(connect().await, "a", fast(Duration::from_secs(3600)));
    let b = start(connect().await, "b", fast(Duration::from_secs(3600)));
    eventually("some sweeps", Duration::from_secs(5), || async {
        a.stats().sweeps + b.stats().sweeps >= 10
    })
    .await;
    // Several lease renewals later, still only one of them has ever swept.
    tokio::time::sleep(LEASE * 2).await;
    let (sa, sb) = (a.stats(), b.stats());
    assert!(
        (sa.sweeps > 0) != (sb.sweeps > 0),
        "exactly one watchdog may sweep: a={sa:?} b={sb:?}"
    );
    assert_eq!(sa.terms + sb.terms, 1, "a={sa:?} b={sb:?}");
    assert!(a.is_leader() != b.is_leader());
    a.shutdown().await;
    b.shutdown().await;
}

async fn takeover_when_the_leader_dies(connect: Connect) {
    support::init_tracing();
    let a = start(connect().await, "a", fast(Duration::from_secs(3600)));
    let b = start(connect().await, "b", fast(Duration::from_secs(3600)));
    eventually("a leader", Duration::from_secs(5), || async {
        a.is_leader() || b.is_leader()
    })
    .await;
    let (leader, follower) = if a.is_leader() { (a, b) } else { (b, a) };
    let old_token = leader.stats().leader_token.unwrap();
    let follower_sweeps = follower.stats().sweeps;
    assert_eq!(follower_sweeps, 0);

    // A crash: no release, the lease must run out.
    leader.abort();
    let killed = Instant::now();
    eventually(
        "the follower to take over",
        Duration::from_secs(5),
        || async { follower.stats().sweeps > 0 },
    )
    .await;
    let took = killed.elapsed();
    // The lease, plus at most one acquisition period (a third of it), plus scheduling.
    assert!(
        took <= LEASE * 3,
        "takeover took {took:?} with a {LEASE:?} lease"
    );
    let stats = follower.stats();
    assert!(stats.leader_token.unwrap() > old_token, "{stats:?}");
    follower.shutdown().await;
}

async fn a_clean_shutdown_hands_over_at_once(connect: Connect) {
    support::init_tracing();
    let a = start(connect().await, "a", fast(Duration::from_secs(3600)));
    eventually("a to lead", Duration::from_secs(5), || async {
        a.is_leader()
    })
    .await;
    let b = start(connect().await, "b", fast(Duration::from_secs(3600)));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!b.is_leader());
    a.shutdown().await;
    eventually("b to lead", Duration::from_secs(5), || async {
        b.is_leader()
    })
    .await;
    b.shutdown().await;
}

async fn marks_orphans_and_leaves_completed_traces(connect: Connect) {
    support::init_tracing();
    let registry = connect().await;
    let abandoned = TraceId::generate();
    let finished = TraceId::generate();
    for id in [abandoned, finished] {
        registry
            .create_trace(id, TraceState::Received, &Metadata::new())
            .await
            .unwrap();
    }
    registry
        .transition(finished, TraceState::Completed)
        .await
        .unwrap();
    let watchdog = start(registry.clone(), "w", fast(Duration::from_millis(300)));
    eventually(
        "the abandoned trace to be orphaned",
        Duration::from_secs(5),
        || async { registry.get(abandoned).await.unwrap().unwrap().state == TraceState::Errored },
    )
    .await;
    assert!(
        registry
            .get(abandoned)
            .await
            .unwrap()
            .unwrap()
            .is_orphaned()
    );
    assert_eq!(
        registry.get(finished).await.unwrap().unwrap().state,
        TraceState::Completed
    );
    assert_eq!(watchdog.stats().orphaned, 1);
    watchdog.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_only_one_of_two_watchdogs_sweeps() {
    let server = RedisServer::start();
    only_one_of_two_sweeps(redis_connector(&server)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_the_follower_takes_over_when_the_leader_dies() {
    let server = RedisServer::start();
    takeover_when_the_leader_dies(redis_connector(&server)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_a_clean_shutdown_hands_over_at_once() {
    let server = RedisServer::start();
    a_clean_shutdown_hands_over_at_once(redis_connector(&server)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_watchdog_marks_orphans() {
    let server = RedisServer::start();
    marks_orphans_and_leaves_completed_traces(redis_connector(&server)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_only_one_of_two_watchdogs_sweeps() {
    only_one_of_two_sweeps(embedded_connector()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_the_follower_takes_over_when_the_leader_dies() {
    takeover_when_the_leader_dies(embedded_connector()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_a_clean_shutdown_hands_over_at_once() {
    a_clean_shutdown_hands_over_at_once(embedded_connector()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_watchdog_marks_orphans() {
    marks_orphans_and_leaves_completed_traces(embedded_connector()).await;
}

/// Redis killed and restarted (empty) under a running watchdog and a writer: both carry
/// on once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_mid_run_recovers() {
    support::init_tracing();
    let mut server = RedisServer::start();
    let registry: Arc<dyn Registry> = Arc::new(
        clew_registry::RedisRegistry::connect(&server.url(), quick_config())
            .await
            .unwrap(),
    );
    let watchdog = start(registry.clone(), "w", fast(Duration::from_millis(300)));
    let before = TraceId::generate();
    registry
        .create_trace(before, TraceState::Received, &Metadata::new())
        .await
        .unwrap();
    eventually(
        "an orphan before the restart",
        Duration::from_secs(5),
        || async { watchdog.stats().orphaned >= 1 },
    )
    .await;
    let token_before = watchdog.stats().leader_token.unwrap();

    server.kill();
    eventually("the watchdog to notice", Duration::from_secs(5), || async {
        let s = watchdog.stats();
        s.sweep_errors + s.lease_errors > 0
    })
    .await;
    // Writes fail with a transient error meanwhile; the caller (ingestion) carries on.
    let err = registry
        .create_trace(TraceId::generate(), TraceState::Received, &Metadata::new())
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err}");
    tokio::time::sleep(Duration::from_millis(300)).await;

    server.restart();
    let after = TraceId::generate();
    eventually(
        "registration after the restart",
        Duration::from_secs(10),
        || async {
            registry
                .create_trace(after, TraceState::Received, &Metadata::new())
                .await
                .is_ok()
        },
    )
    .await;
    eventually(
        "the watchdog to sweep again",
        Duration::from_secs(10),
        || async {
            registry
                .get(after)
                .await
                .ok()
                .flatten()
                .is_some_and(|r| r.state == TraceState::Errored)
        },
    )
    .await;
    let stats = watchdog.stats();
    assert!(stats.orphaned >= 2, "{stats:?}");
    assert!(
        stats.leader_token.unwrap() > token_before,
        "a new term after Redis lost its data: {stats:?}"
    );
    watchdog.shutdown().await;
}
