//! The Redis backend against a real, private redis-server.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clew_model::TraceId;
use clew_registry::{
    CreateOutcome, LeaderElection, LeaseConfig, ManualClock, Metadata, RedisConn, RedisRegistry,
    Registry, RegistryConfig, RegistryError, TraceState, Transition,
};
use support::behaviour::{self, HOUR_MS, THRESHOLD, meta};
use support::{RedisServer, eventually, query};

const T0: u64 = 1_700_000_000_123;

async fn setup(prefix: &str) -> (RedisServer, RedisRegistry, Arc<ManualClock>) {
    support::init_tracing();
    let server = RedisServer::start();
    let clock = Arc::new(ManualClock::new(T0));
    let config = RegistryConfig::default()
        .with_prefix(prefix)
        .with_clock(clock.clone());
    let registry = server.registry(config).await;
    (server, registry, clock)
}

async fn hgetall(conn: &RedisConn, key: &str) -> HashMap<String, String> {
    query(conn, redis::cmd("HGETALL").arg(key)).await
}

async fn ttl(conn: &RedisConn, key: &str) -> i64 {
    query(conn, redis::cmd("TTL").arg(key)).await
}

async fn zscore(conn: &RedisConn, key: &str, member: &str) -> Option<f64> {
    query(conn, redis::cmd("ZSCORE").arg(key).arg(member)).await
}

fn fields(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn keys_fields_and_ttls_are_exactly_as_specified() {
    let (_server, registry, clock) = setup("clew:").await;
    let conn = registry.connection();
    let id = TraceId::generate();
    let key = format!("clew:trace:{id}");
    let metadata = meta(&[("platform", "telegram"), ("channel", "dm")]);
    registry
        .create_trace(id, TraceState::Received, &metadata)
        .await
        .unwrap();

    assert_eq!(
        hgetall(&conn, &key).await,
        fields(&[
            ("state", "RECEIVED"),
            ("created_at", "1700000000.123"),
            ("platform", "telegram"),
            ("channel", "dm"),
        ])
    );
    let failsafe = ttl(&conn, &key).await;
    assert!(
        (86_399..=86_400).contains(&failsafe),
        "failsafe TTL {failsafe}"
    );
    let kind: String = query(&conn, redis::cmd("TYPE").arg("clew:traces:active")).await;
    assert_eq!(kind, "zset");
    assert_eq!(
        zscore(&conn, "clew:traces:active", &id.to_string()).await,
        Some(1_700_000_000.123)
    );

    // Moving forward keeps the absolute failsafe (it is not refreshed).
    clock.advance(Duration::from_secs(5));
    registry
        .transition(id, TraceState::InProgress)
        .await
        .unwrap();
    assert_eq!(hgetall(&conn, &key).await["state"], "IN_PROGRESS");
    assert!(ttl(&conn, &key).await > 86_000);

    registry
        .transition(id, TraceState::Completed)
        .await
        .unwrap();
    assert_eq!(
        hgetall(&conn, &key).await,
        fields(&[
            ("state", "COMPLETED"),
            ("created_at", "1700000000.123"),
            ("finished_at", "1700000005.123"),
            ("platform", "telegram"),
            ("channel", "dm"),
        ])
    );
    let terminal = ttl(&conn, &key).await;
    assert!(
        (3_599..=3_600).contains(&terminal),
        "terminal TTL {terminal}"
    );
    assert_eq!(
        zscore(&conn, "clew:traces:active", &id.to_string()).await,
        None
    );

    // Nothing else was written under the prefix.
    let mut keys: Vec<String> = query(&conn, redis::cmd("KEYS").arg("clew:*")).await;
    keys.sort();
    assert_eq!(keys, vec![key]);
}

#[tokio::test]
async fn sweep_writes_the_seed_fields_and_ttls() {
    let (_server, registry, _clock) = setup("clew:").await;
    let conn = registry.connection();
    let id = TraceId::generate();
    registry
        .create_trace(
            id,
            TraceState::InProgress,
            &meta(&[("service", "inference")]),
        )
        .await
        .unwrap();
    let now = T0 + 2 * HOUR_MS;
    let report = registry.sweep_once(now, THRESHOLD, None).await.unwrap();
    assert_eq!(report.orphaned.len(), 1);
    assert_eq!(report.round_trips, 2, "one index read, one script");

    let key = format!("clew:trace:{id}");
    assert_eq!(
        hgetall(&conn, &key).await,
        fields(&[
            ("state", "ERRORED"),
            ("created_at", "1700000000.123"),
            ("orphaned_at", "1700007200.123"),
            ("error", "orphaned"),
            ("service", "inference"),
        ])
    );
    let terminal = ttl(&conn, &key).await;
    assert!(
        (3_599..=3_600).contains(&terminal),
        "terminal TTL {terminal}"
    );
    let zcard: u64 = query(&conn, redis::cmd("ZCARD").arg("clew:traces:active")).await;
    assert_eq!(zcard, 0);
    assert_eq!(
        zscore(&conn, "clew:traces:orphaned", &id.to_string()).await,
        Some(1_700_007_200.123)
    );
}

#[tokio::test]
async fn the_seed_prefix_works() {
    let (_server, registry, _clock) = setup("sg:").await;
    let conn = registry.connection();
    let id = TraceId::generate();
    registry
        .create_trace(id, TraceState::Received, &Metadata::new())
        .await
        .unwrap();
    let mut keys: Vec<String> = query(&conn, redis::cmd("KEYS").arg("*")).await;
    keys.sort();
    assert_eq!(
        keys,
        vec![format!("sg:trace:{id}"), "sg:traces:active".to_string()]
    );

    // An entry written by seed-era code (hyphenated UUID, integer seconds) is swept too.
    let legacy = "0190163d-8f2a-7b3c-8d4e-5f6a7b8c9d0e";
    let _: () = query(
        &conn,
        redis::cmd("HSET")
            .arg(format!("sg:trace:{legacy}"))
            .arg("state")
            .arg("RECEIVED")
            .arg("created_at")
            .arg("1700000000"),
    )
    .await;
    let _: () = query(
        &conn,
        redis::cmd("ZADD")
            .arg("sg:traces:active")
            .arg("1700000000")
            .arg(legacy),
    )
    .await;
    let report = registry
        .sweep_once(T0 + 2 * HOUR_MS, THRESHOLD, None)
        .await
        .unwrap();
    assert_eq!(report.orphaned.len(), 2);
    let legacy_id: TraceId = "0190163d8f2a7b3c8d4e5f6a7b8c9d0e".parse().unwrap();
    assert!(report.orphaned.iter().any(|o| o.id == legacy_id));
    assert_eq!(
        hgetall(&conn, &format!("sg:trace:{legacy}")).await["state"],
        "ERRORED"
    );
    assert_eq!(
        registry.get(id).await.unwrap().unwrap().state,
        TraceState::Errored
    );
}

#[tokio::test]
async fn an_expired_hash_is_only_deindexed() {
    let (_server, registry, _clock) = setup("clew:").await;
    let conn = registry.connection();
    let id = TraceId::generate();
    let key = format!("clew:trace:{id}");
    registry
        .create_trace(id, TraceState::Received, &Metadata::new())
        .await
        .unwrap();
    // Stand-in for the 24 h failsafe running out.
    let _: () = query(&conn, redis::cmd("PEXPIRE").arg(&key).arg(1)).await;
    eventually("the hash to expire", Duration::from_secs(5), || async {
        !query::<bool>(&conn, redis::cmd("EXISTS").arg(&key)).await
    })
    .await;
    assert_eq!(registry.active_count().await.unwrap(), 1);

    let report = registry
        .sweep_once(T0 + 25 * HOUR_MS, THRESHOLD, None)
        .await
        .unwrap();
    assert_eq!(report.expired, 1);
    assert!(report.orphaned.is_empty());
    assert_eq!(registry.active_count().await.unwrap(), 0);
    let exists: bool = query(&conn, redis::cmd("EXISTS").arg(&key)).await;
    assert!(!exists, "the sweep must not re-create an expired hash");
    let orphaned: u64 = query(&conn, redis::cmd("ZCARD").arg("clew:traces:orphaned")).await;
    assert_eq!(orphaned, 0);
}

#[tokio::test]
async fn lifecycle_rules() {
    let (_server, registry, clock) = setup("clew:").await;
    behaviour::lifecycle_rules(Arc::new(registry), clock).await;
}

#[tokio::test]
async fn sweeps_only_old_unfinished_traces() {
    let (_server, registry, clock) = setup("clew:").await;
    behaviour::sweeps_only_old_unfinished(Arc::new(registry), clock).await;
}

#[tokio::test]
async fn a_late_completion_is_refused() {
    let (_server, registry, clock) = setup("clew:").await;
    behaviour::late_completion_is_refused(Arc::new(registry), clock).await;
}

#[tokio::test]
async fn lists_active_traces_in_pages() {
    let (_server, registry, clock) = setup("clew:").await;
    behaviour::lists_active_in_pages(Arc::new(registry), clock).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn completion_racing_the_sweep_never_ends_errored() {
    support::init_tracing();
    let server = RedisServer::start();
    let clock = Arc::new(ManualClock::new(T0));
    // Small batches split the sweep into many atomic steps for completions to land
    // between; a second connection makes the two sides truly concurrent.
    let config = RegistryConfig {
        sweep_batch: 3,
        ..RegistryConfig::default().with_clock(clock.clone())
    };
    let sweeper = server.registry(config.clone()).await;
    let completer: Arc<dyn Registry> = Arc::new(server.registry(config).await);
    let registry = Arc::new(RaceRegistry { sweeper, completer });
    behaviour::completion_races_sweep(registry, clock, 200, 12).await;
}

/// Sends sweeps over one connection and everything else over another.
#[derive(Debug)]
struct RaceRegistry {
    sweeper: RedisRegistry,
    completer: Arc<dyn Registry>,
}

#[async_trait::async_trait]
impl Registry for RaceRegistry {
    async fn create_trace(
        &self,
        id: TraceId,
        initial: TraceState,
        metadata: &Metadata,
    ) -> clew_registry::Result<CreateOutcome> {
        self.completer.create_trace(id, initial, metadata).await
    }
    async fn transition(&self, id: TraceId, to: TraceState) -> clew_registry::Result<Transition> {
        self.completer.transition(id, to).await
    }
    async fn mark_errored(&self, id: TraceId, reason: &str) -> clew_registry::Result<Transition> {
        self.completer.mark_errored(id, reason).await
    }
    async fn get(&self, id: TraceId) -> clew_registry::Result<Option<clew_registry::TraceRecord>> {
        self.completer.get(id).await
    }
    async fn list_active(
        &self,
        limit: usize,
        after: Option<clew_registry::ActiveCursor>,
    ) -> clew_registry::Result<clew_registry::ActivePage> {
        self.completer.list_active(limit, after).await
    }
    async fn active_count(&self) -> clew_registry::Result<u64> {
        self.completer.active_count().await
    }
    async fn list_orphans(
        &self,
        limit: usize,
    ) -> clew_registry::Result<Vec<clew_registry::TraceRecord>> {
        self.completer.list_orphans(limit).await
    }
    async fn sweep_once(
        &self,
        now_ms: u64,
        threshold: Duration,
        fence: Option<u64>,
    ) -> clew_registry::Result<clew_registry::SweepReport> {
        self.sweeper.sweep_once(now_ms, threshold, fence).await
    }
    fn election(&self, config: LeaseConfig) -> Arc<dyn LeaderElection> {
        self.sweeper.election(config)
    }
    fn now_ms(&self) -> u64 {
        self.sweeper.now_ms()
    }
    fn backend_name(&self) -> &'static str {
        "redis"
    }
}

#[tokio::test]
async fn a_stale_leaders_sweep_is_fenced_off() {
    let (_server, registry, _clock) = setup("clew:").await;
    let conn = registry.connection();
    let lease = Duration::from_millis(300);
    let a = registry.leader_election(LeaseConfig {
        holder: "a".into(),
        ttl: lease,
    });
    let b = registry.leader_election(LeaseConfig {
        holder: "b".into(),
        ttl: lease,
    });
    let term_a = a.try_acquire().await.unwrap().expect("a leads");
    assert_eq!(b.try_acquire().await.unwrap(), None, "one leader at a time");
    let leader: String = query(&conn, redis::cmd("GET").arg("clew:watchdog:leader")).await;
    assert_eq!(leader, format!("{} a", term_a.token));
    let pttl: i64 = query(&conn, redis::cmd("PTTL").arg("clew:watchdog:leader")).await;
    assert!(pttl > 0 && pttl <= 300, "lease PTTL {pttl}");
    let renewed = a.renew(&term_a).await.unwrap().expect("a still leads");
    assert_eq!(renewed.token, term_a.token);

    // a stops renewing (paused, partitioned); its lease runs out and b takes over.
    let term_b = support::acquire_within(&b, Duration::from_secs(5)).await;
    assert!(term_b.token > term_a.token, "fencing tokens increase");
    let fence: String = query(&conn, redis::cmd("GET").arg("clew:watchdog:fence")).await;
    assert_eq!(fence, term_b.token.to_string());

    let id = TraceId::generate();
    registry
        .create_trace(id, TraceState::Received, &Metadata::new())
        .await
        .unwrap();
    let now = T0 + 2 * HOUR_MS;
    let err = registry
        .sweep_once(now, THRESHOLD, Some(term_a.token))
        .await
        .unwrap_err();
    match &err {
        RegistryError::Fenced { presented, current } => {
            assert_eq!(*presented, term_a.token);
            assert_eq!(*current, term_b.token.to_string());
        }
        other => panic!("expected Fenced, got {other}"),
    }
    assert_eq!(
        registry.get(id).await.unwrap().unwrap().state,
        TraceState::Received,
        "the stale leader wrote nothing"
    );
    assert_eq!(a.renew(&term_a).await.unwrap(), None, "a learns it lost");

    let report = registry
        .sweep_once(now, THRESHOLD, Some(term_b.token))
        .await
        .unwrap();
    assert_eq!(report.orphaned.len(), 1);

    b.release(&term_b).await.unwrap();
    let leader: Option<String> = query(&conn, redis::cmd("GET").arg("clew:watchdog:leader")).await;
    assert_eq!(leader, None);
    let term_a2 = a.try_acquire().await.unwrap().expect("free after release");
    assert!(term_a2.token > term_b.token);
}

#[tokio::test]
async fn fencing_tokens_keep_increasing_after_redis_loses_its_data() {
    support::init_tracing();
    let mut server = RedisServer::start();
    let registry = server.registry(RegistryConfig::default()).await;
    let election = registry.leader_election(LeaseConfig::default());
    let before = election.try_acquire().await.unwrap().unwrap();
    server.restart();
    let after = support::acquire_within(&election, Duration::from_secs(10)).await;
    assert!(after.token > before.token);
}

#[tokio::test]
async fn redis_down_gives_a_typed_error_quickly_and_recovers() {
    support::init_tracing();
    let mut server = RedisServer::start();
    let config = RegistryConfig {
        op_timeout: Duration::from_millis(500),
        ..RegistryConfig::default()
    };
    let registry = server.registry(config).await;
    let id = TraceId::generate();
    registry
        .create_trace(id, TraceState::Received, &Metadata::new())
        .await
        .unwrap();

    server.kill();
    let started = Instant::now();
    let err = registry
        .create_trace(TraceId::generate(), TraceState::Received, &Metadata::new())
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(
        err.to_string()
            .contains(&format!("127.0.0.1:{}", server.port())),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a dead Redis must not hang callers ({:?})",
        started.elapsed()
    );
    assert!(registry.get(id).await.unwrap_err().is_transient());

    server.restart();
    let again = TraceId::generate();
    eventually(
        "registration to work again",
        Duration::from_secs(10),
        || async {
            registry
                .create_trace(again, TraceState::Received, &Metadata::new())
                .await
                .is_ok()
        },
    )
    .await;
    assert_eq!(
        registry.get(again).await.unwrap().unwrap().state,
        TraceState::Received
    );
}

#[tokio::test]
async fn a_lazy_registry_starts_while_redis_is_down() {
    support::init_tracing();
    let mut server = RedisServer::start();
    let url = server.url();
    server.kill();
    let config = RegistryConfig {
        op_timeout: Duration::from_millis(500),
        ..RegistryConfig::default()
    };
    assert!(
        RedisRegistry::connect(&url, config.clone())
            .await
            .unwrap_err()
            .is_transient()
    );
    let registry = RedisRegistry::connect_lazy(&url, config).await.unwrap();
    assert!(registry.active_count().await.unwrap_err().is_transient());
    server.restart();
    eventually(
        "the lazy registry to connect",
        Duration::from_secs(10),
        || async { registry.active_count().await.is_ok() },
    )
    .await;
}

#[tokio::test]
async fn bad_urls_and_cluster_prefixes_are_refused_clearly() {
    let err = RedisRegistry::connect("http://localhost", RegistryConfig::default())
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Config(_)), "{err}");
    assert!(err.to_string().contains("redis://host:port"), "{err}");
}
