//! The Redis backend against a real three-master Redis Cluster of private servers.

mod support;

use std::sync::Arc;
use std::time::Duration;

use clew_model::TraceId;
use clew_registry::{
    LeaderElection, LeaseConfig, ManualClock, Metadata, RedisRegistry, Registry, RegistryConfig,
    RegistryError, TraceState,
};
use support::RedisCluster;
use support::behaviour::{self, HOUR_MS, THRESHOLD};

const T0: u64 = 1_700_000_000_123;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_works_on_a_redis_cluster() {
    support::init_tracing();
    let cluster = RedisCluster::start();

    let untagged = RedisRegistry::connect(&cluster.url(), RegistryConfig::default())
        .await
        .unwrap_err();
    assert!(matches!(untagged, RegistryError::Config(_)), "{untagged}");
    assert!(untagged.to_string().contains("{clew}:"), "{untagged}");

    let connect = |clock: Arc<ManualClock>| {
        let url = cluster.url();
        async move {
            let config = RegistryConfig::default()
                .with_prefix("{clew}:")
                .with_clock(clock);
            RedisRegistry::connect(&url, config).await.unwrap()
        }
    };

    let clock = Arc::new(ManualClock::new(T0));
    let registry = connect(clock.clone()).await;
    assert_eq!(registry.backend_name(), "redis-cluster");
    behaviour::lifecycle_rules(Arc::new(registry), clock).await;

    // Fresh prefix state per scenario: a new clock, same keys (the earlier scenario left
    // nothing active).
    let clock = Arc::new(ManualClock::new(T0 + 10 * HOUR_MS));
    behaviour::sweeps_only_old_unfinished(Arc::new(connect(clock.clone()).await), clock).await;

    let clock = Arc::new(ManualClock::new(T0 + 20 * HOUR_MS));
    let registry = connect(clock.clone()).await;
    let a = registry.leader_election(LeaseConfig {
        holder: "a".into(),
        ttl: Duration::from_millis(300),
    });
    let b = registry.leader_election(LeaseConfig {
        holder: "b".into(),
        ttl: Duration::from_millis(300),
    });
    let term_a = a.try_acquire().await.unwrap().unwrap();
    let term_b = support::acquire_within(&b, Duration::from_secs(5)).await;
    assert!(term_b.token > term_a.token);
    let id = TraceId::generate();
    registry
        .create_trace(id, TraceState::Received, &Metadata::new())
        .await
        .unwrap();
    let now = T0 + 22 * HOUR_MS;
    let err = registry
        .sweep_once(now, THRESHOLD, Some(term_a.token))
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Fenced { .. }), "{err}");
    let report = registry
        .sweep_once(now, THRESHOLD, Some(term_b.token))
        .await
        .unwrap();
    // The previous scenario's young trace is old by now too.
    assert!(report.orphaned.iter().any(|o| o.id == id), "{report:?}");
}
