//! `clew serve`: every part of clew in one process.
//!
//! Owns the configuration (TOML file, then `CLEW_*` environment, then flags; the CLI
//! resolves the last two and hands over a [`ConfigOverrides`]) and the wiring of store,
//! ingest pipeline, OTLP receivers, query API and retention into one running server.
//! It sits at the top of the library crates: it may import all of them, and none of them
//! may import it.

mod config;
pub mod lifecycle;

pub use config::{Config, ConfigError, ConfigOverrides};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clew_ingest::{HttpLimits, Pipeline, PipelineConfig};
use clew_registry::{
    EmbeddedRegistry, LeaseConfig, RedisRegistry, Registry, RegistryConfig, Watchdog,
    WatchdogConfig, WatchdogHandle,
};
use clew_store::{FjallStore, SpanStore};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "cannot listen on {addr} for {what}: {source} (is another clew or collector running? choose another address with {flag})"
    )]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        flag: &'static str,
        source: std::io::Error,
    },
    #[error("cannot open the store in {path}: {source}")]
    Store {
        path: String,
        source: clew_store::StoreError,
    },
    #[error("lifecycle registry: {0}")]
    Registry(#[from] clew_registry::RegistryError),
    #[error(
        "an agent (pid {pid}) already serves this data directory's socket; stop it with `clew agent stop`, or give clew serve another --agent-socket"
    )]
    AgentRunning { pid: u32 },
    #[error("agent: {0}")]
    Agent(#[from] clew_agent::AgentError),
    #[error("agent lock: {0}")]
    AgentLock(#[from] clew_agent::DaemonError),
}

/// Where a started server actually listens (ports chosen by the OS when configured as 0).
#[derive(Debug, Clone)]
pub struct Addresses {
    pub otlp_grpc: SocketAddr,
    pub otlp_http: SocketAddr,
    /// The agent wire protocol: the unix socket, then TCP.
    pub agent: Vec<clew_agent::AgentAddress>,
    pub http: SocketAddr,
}

pub struct Server {
    pub addresses: Addresses,
    pub store: Arc<dyn SpanStore>,
    pub registry: Arc<dyn Registry>,
    pipeline: Pipeline,
    watchdog: WatchdogHandle,
    lifecycle_task: tokio::task::JoinHandle<()>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

async fn bind(
    addr: SocketAddr,
    what: &'static str,
    flag: &'static str,
) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind {
            what,
            addr,
            flag,
            source,
        })
}

impl Server {
    /// Opens the store and binds every listener before serving anything, so a port in use
    /// or an unusable data directory is reported at once.
    pub async fn start(config: &Config) -> Result<Server, ServeError> {
        let grpc = bind(config.otlp_grpc_addr, "OTLP/gRPC", "--otlp-grpc-addr").await?;
        let otlp_http = bind(config.otlp_http_addr, "OTLP/HTTP", "--otlp-http-addr").await?;
        let http = bind(config.http_addr, "the query API and UI", "--http-addr").await?;
        let addresses = Addresses {
            otlp_grpc: grpc.local_addr().expect("bound"),
            otlp_http: otlp_http.local_addr().expect("bound"),
            http: http.local_addr().expect("bound"),
            agent: Vec::new(),
        };

        let path = config.data_dir.join("spans");
        let store: Arc<dyn SpanStore> =
            Arc::new(FjallStore::open(&path).map_err(|source| ServeError::Store {
                path: path.display().to_string(),
                source,
            })?);
        let registry = open_registry(config).await?;
        let watchdog = Watchdog::new(
            Arc::clone(&registry),
            registry.election(LeaseConfig::default()),
            WatchdogConfig {
                sweep_interval: config.sweep_interval,
                orphan_threshold: config.orphan_threshold,
                ..WatchdogConfig::default()
            },
        )
        .spawn();

        let (stop, stopped) = watch::channel(false);
        let (lifecycle_feed, _lifecycle_stats, lifecycle_task) = lifecycle::start(
            Arc::clone(&registry),
            lifecycle::LifecycleConfig {
                quiet_period: config.trace_quiet_period,
                ..Default::default()
            },
        );
        let pipeline = Pipeline::start_observed(
            Arc::clone(&store),
            PipelineConfig {
                max_queued_spans: config.max_queued_spans,
                ..PipelineConfig::default()
            },
            Some(lifecycle_feed),
        );

        let (agent, agent_lock) = start_agent(config, &pipeline).await?;
        let mut addresses = addresses;
        addresses.agent = agent.addresses().to_vec();

        let until_stopped = move || {
            let mut stopped = stopped.clone();
            async move {
                let _ = stopped.wait_for(|s| *s).await;
            }
        };
        let mut tasks = JoinSet::new();
        // OTLP batches compress well (5-10x); a body may expand to a few times the limit
        // but not without bound.
        let limits = HttpLimits {
            max_body_bytes: config.max_request_bytes,
            max_decoded_bytes: config.max_request_bytes.saturating_mul(4),
        };
        {
            let pipeline = pipeline.clone();
            let max = config.max_request_bytes;
            let stop = until_stopped();
            tasks.spawn(async move {
                if let Err(error) = clew_ingest::serve_grpc(grpc, pipeline, max, stop).await {
                    tracing::error!(%error, "OTLP/gRPC receiver stopped");
                }
            });
        }
        {
            let router = clew_ingest::http_router(pipeline.clone(), limits);
            let stop = until_stopped();
            tasks.spawn(async move {
                if let Err(error) = clew_ingest::serve_http(otlp_http, router, stop).await {
                    tracing::error!(%error, "OTLP/HTTP receiver stopped");
                }
            });
        }
        {
            let router = clew_query::QueryApi::new(Arc::clone(&store))
                .with_lifecycle(Arc::clone(&registry), config.orphan_threshold)
                .router()
                // The UI is the only fallback; `/api/{*rest}` stays the query API's 404.
                .merge(clew_ui::router());
            let stop = until_stopped();
            tasks.spawn(async move {
                if let Err(error) = axum::serve(http, router).with_graceful_shutdown(stop).await {
                    tracing::error!(%error, "query API stopped");
                }
            });
        }
        {
            let stop = until_stopped();
            tasks.spawn(async move {
                let report = agent.serve(stop).await;
                if report.spans_dropped > 0 {
                    tracing::error!(
                        dropped = report.spans_dropped,
                        "agent spans lost at shutdown"
                    );
                }
                drop(agent_lock);
            });
        }
        tasks.spawn(retention_loop(
            Arc::clone(&store),
            config.retention,
            until_stopped(),
        ));

        Ok(Server {
            addresses,
            store,
            registry,
            watchdog,
            lifecycle_task,
            pipeline,
            stop,
            tasks,
        })
    }

    /// Stops listening, stores everything already accepted, and returns once it is durable.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
        let pipeline = self.pipeline.clone();
        let _ = tokio::task::spawn_blocking(move || pipeline.shutdown()).await;
        // The writer is gone, so the tracker's feed is closed: it applies what is left
        // and ends.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), self.lifecycle_task).await;
        self.watchdog.shutdown().await;
        if let Err(error) = self.registry.flush().await {
            tracing::warn!(%error, "the lifecycle registry's last changes may be lost");
        }
    }
}

/// Hands what the agent assembled to the pipeline, so agent spans are stored, indexed
/// and tracked like OTLP spans.
struct PipelineSink(Pipeline);

#[async_trait::async_trait]
impl clew_agent::SpanSink for PipelineSink {
    async fn send(&self, spans: &[clew_model::Span]) -> Result<(), clew_agent::SinkError> {
        match self.0.submit(spans.to_vec()).await {
            Ok(()) => Ok(()),
            Err(e @ clew_ingest::IngestError::TooLarge { .. }) => {
                Err(clew_agent::SinkError::Rejected(e.to_string()))
            }
            Err(e) => Err(clew_agent::SinkError::Retryable(e.to_string())),
        }
    }
}

/// Binds the agent wire protocol (unix socket and TCP). The lock, without a pid file,
/// makes a standalone `clew agent start` on the same socket say "already running", and
/// means `clew agent stop` can never stop `clew serve`.
async fn start_agent(
    config: &Config,
    pipeline: &Pipeline,
) -> Result<(clew_agent::Agent, clew_agent::AgentLock), ServeError> {
    let agent_config = clew_agent::AgentConfig {
        unix_socket: Some(config.agent_socket_path()),
        tcp_addr: Some(config.agent_tcp_addr),
        max_queued_spans: config.max_queued_spans,
        sink_batch_spans: 8_192.min(config.max_queued_spans),
        ..clew_agent::AgentConfig::default()
    };
    let paths = clew_agent::DaemonPaths::for_config(&config.data_dir, &agent_config);
    let lock = match clew_agent::AgentLock::acquire(&paths)? {
        clew_agent::LockOutcome::Acquired(lock) => lock,
        clew_agent::LockOutcome::Held { pid } => {
            return Err(ServeError::AgentRunning {
                pid: pid.unwrap_or(0),
            });
        }
    };
    let sink = Arc::new(PipelineSink(pipeline.clone()));
    let agent = clew_agent::Agent::bind(agent_config, sink).await?;
    Ok((agent, lock))
}

/// Redis when configured (connected lazily, so clew starts and ingests while Redis is
/// down), the in-process registry otherwise, kept in the data directory so lifecycles
/// survive a restart.
/// The embedded registry's file in the data directory.
pub const LIFECYCLE_JOURNAL: &str = "lifecycle.journal";

async fn open_registry(config: &Config) -> Result<Arc<dyn Registry>, ServeError> {
    let registry_config = RegistryConfig {
        key_prefix: config.key_prefix.clone(),
        ..RegistryConfig::default()
    };
    Ok(match &config.redis_url {
        Some(url) => Arc::new(RedisRegistry::connect_lazy(url, registry_config).await?),
        None => Arc::new(EmbeddedRegistry::open(
            &config.data_dir.join(LIFECYCLE_JOURNAL),
            registry_config,
        )?),
    })
}

async fn retention_loop(
    store: Arc<dyn SpanStore>,
    retention: Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    const EVERY: Duration = Duration::from_secs(600);
    tokio::pin!(stop);
    loop {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let cutoff = now.saturating_sub(retention).as_nanos() as u64;
        let store = Arc::clone(&store);
        match tokio::task::spawn_blocking(move || store.purge_older_than(cutoff)).await {
            Ok(Ok(0)) => {}
            Ok(Ok(purged)) => tracing::info!(purged, ?retention, "retention purged old spans"),
            Ok(Err(error)) => tracing::warn!(%error, "retention purge failed"),
            Err(error) => tracing::warn!(%error, "retention task panicked"),
        }
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(EVERY) => {}
        }
    }
}
