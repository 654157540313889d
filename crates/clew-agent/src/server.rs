//! The listeners, the per-connection loop and the queue in front of the sink.

use std::future::Future;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clew_model::Span;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use crate::address::{AgentAddress, ProbeResult};
use crate::assembly::{AbandonReason, AssembledTrace, Session, SessionLimits};
use crate::frame::{self, FrameError};
use crate::protocol::{Command, Reply};
use crate::sink::{AbandonedTrace, LifecycleHook, SinkError, SpanSink};
use crate::timestamp::Timestamp;

/// The TCP address the language agents use by default.
pub const DEFAULT_TCP_ADDR: ([u8; 4], u16) = ([127, 0, 0, 1], 6590);
/// The unix socket's file name inside the data directory.
pub const DEFAULT_SOCKET_NAME: &str = "agent.sock";

#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Unix socket to listen on; `None` for TCP only.
    pub unix_socket: Option<PathBuf>,
    /// Permissions of the socket file: 0o600 keeps it to the agent's user, 0o660 opens it
    /// to the group (workers running as another user of the same group).
    pub unix_socket_mode: u32,
    /// TCP address to listen on; `None` for the unix socket only.
    pub tcp_addr: Option<std::net::SocketAddr>,
    /// Largest frame accepted; a longer length prefix gets a failure reply and the
    /// connection is closed, because the stream cannot be resynchronised.
    pub max_frame_bytes: usize,
    /// Spans received but not yet taken by the sink, across connections. When full,
    /// connections wait before replying: back-pressure instead of unbounded memory.
    pub max_queued_spans: usize,
    /// Open requests plus open spans one connection may hold.
    pub max_open_items_per_connection: usize,
    /// Most spans handed to the sink in one call.
    pub sink_batch_spans: usize,
    /// After a stop is requested, how long the sink may keep refusing before the spans
    /// still queued are given up (and logged as lost).
    pub drain_timeout: Duration,
    /// How long a client may take to send the rest of a frame it started.
    pub frame_body_timeout: Duration,
    /// What `CoreAgentVersion` answers.
    pub version: String,
}

impl AgentConfig {
    /// The defaults: a unix socket in `data_dir`, TCP on 127.0.0.1:6590.
    pub fn in_data_dir(data_dir: &Path) -> AgentConfig {
        AgentConfig {
            unix_socket: Some(data_dir.join(DEFAULT_SOCKET_NAME)),
            tcp_addr: Some(DEFAULT_TCP_ADDR.into()),
            ..AgentConfig::default()
        }
    }

    /// The addresses this configuration listens on, unix socket first.
    pub fn addresses(&self) -> Vec<AgentAddress> {
        self.unix_socket
            .iter()
            .map(|p| AgentAddress::Unix(p.clone()))
            .chain(self.tcp_addr.map(AgentAddress::Tcp))
            .collect()
    }
}

impl Default for AgentConfig {
    /// No listeners: set `unix_socket` and/or `tcp_addr`, or use [`AgentConfig::in_data_dir`].
    fn default() -> Self {
        AgentConfig {
            unix_socket: None,
            unix_socket_mode: 0o600,
            tcp_addr: None,
            max_frame_bytes: frame::DEFAULT_MAX_FRAME_BYTES,
            max_queued_spans: 200_000,
            max_open_items_per_connection: SessionLimits::default().max_open_items,
            sink_batch_spans: 8_192,
            drain_timeout: Duration::from_secs(30),
            frame_body_timeout: Duration::from_secs(30),
            version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("the agent has nothing to listen on: configure a unix socket, a TCP address, or both")]
    NoListener,
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: AgentAddress,
        source: io::Error,
    },
    #[error(
        "another agent already answers on {address} (version {version}); stop it first or choose another address"
    )]
    AlreadyServed {
        address: AgentAddress,
        version: String,
    },
    #[error(
        "{path} exists and is not a socket; refusing to replace it (remove it or choose another socket path)"
    )]
    NotASocket { path: PathBuf },
}

/// Counters of a running agent.
#[derive(Debug, Default)]
pub struct AgentStats {
    pub connections: AtomicU64,
    pub frames: AtomicU64,
    pub failure_replies: AtomicU64,
    pub traces: AtomicU64,
    pub abandoned_traces: AtomicU64,
    pub spans_delivered: AtomicU64,
    pub spans_dropped: AtomicU64,
}

/// What happened to the spans when the agent stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainReport {
    pub spans_delivered: u64,
    /// Rejected by the sink, or still refused when the drain timeout ran out.
    pub spans_dropped: u64,
}

/// A bound agent, ready to serve. Binding first lets callers report the addresses (and
/// ports chosen for `:0`) before anything is accepted.
pub struct Agent {
    config: AgentConfig,
    sink: Arc<dyn SpanSink>,
    hook: Option<Arc<dyn LifecycleHook>>,
    unix: Option<UnixListener>,
    tcp: Option<TcpListener>,
    addresses: Vec<AgentAddress>,
    stats: Arc<AgentStats>,
}

/// Binds the listeners, serves until `shutdown` completes, then drains.
pub async fn run_agent(
    config: AgentConfig,
    sink: Arc<dyn SpanSink>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<DrainReport, AgentError> {
    Ok(Agent::bind(config, sink).await?.serve(shutdown).await)
}

impl Agent {
    /// Binds every configured listener. A unix socket file left by an agent that died is
    /// replaced; one that a live agent answers on is an error.
    pub async fn bind(config: AgentConfig, sink: Arc<dyn SpanSink>) -> Result<Agent, AgentError> {
        if config.unix_socket.is_none() && config.tcp_addr.is_none() {
            return Err(AgentError::NoListener);
        }
        let unix = match &config.unix_socket {
            Some(path) => Some(bind_unix(path.clone(), config.unix_socket_mode).await?),
            None => None,
        };
        let tcp = match config.tcp_addr {
            Some(addr) => match bind_tcp(addr).await {
                Ok(listener) => Some(listener),
                Err(error) => {
                    // Leave no socket file behind for an agent that never served.
                    if let (Some(path), Some(_)) = (&config.unix_socket, &unix) {
                        let _ = std::fs::remove_file(path);
                    }
                    return Err(error);
                }
            },
            None => None,
        };
        let mut addresses = Vec::new();
        if let Some(path) = &config.unix_socket {
            addresses.push(AgentAddress::Unix(path.clone()));
        }
        if let Some(listener) = &tcp {
            addresses.push(AgentAddress::Tcp(
                listener
                    .local_addr()
                    .expect("a bound listener has an address"),
            ));
        }
        Ok(Agent {
            config,
            sink,
            hook: None,
            unix,
            tcp,
            addresses,
            stats: Arc::new(AgentStats::default()),
        })
    }

    /// Who to tell about traces whose requests never finished.
    pub fn with_hook(mut self, hook: Arc<dyn LifecycleHook>) -> Agent {
        self.hook = Some(hook);
        self
    }

    /// Where the agent listens (TCP with the actual port).
    pub fn addresses(&self) -> &[AgentAddress] {
        &self.addresses
    }

    /// The TCP listener's address (with the actual port), if there is one.
    pub fn tcp_addr(&self) -> Option<std::net::SocketAddr> {
        self.addresses.iter().find_map(|a| match a {
            AgentAddress::Tcp(addr) => Some(*addr),
            AgentAddress::Unix(_) => None,
        })
    }

    pub fn stats(&self) -> Arc<AgentStats> {
        Arc::clone(&self.stats)
    }

    /// Serves until `shutdown` completes. Then it stops accepting, lets each connection
    /// finish the frame it is reading, hands requests still open to the sink as
    /// unfinished, and delivers everything queued before returning.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send) -> DrainReport {
        let Agent {
            config,
            sink,
            hook,
            unix,
            tcp,
            addresses: _,
            stats,
        } = self;
        let (queue_tx, queue_rx) = mpsc::unbounded_channel();
        let (stopping_tx, stopping_rx) = watch::channel(false);
        let dispatcher = tokio::spawn(dispatch(
            queue_rx,
            Arc::clone(&sink),
            config.sink_batch_spans.max(1),
            config.drain_timeout,
            stopping_rx.clone(),
            Arc::clone(&stats),
        ));
        let shared = Arc::new(Shared {
            queue: queue_tx,
            capacity: Arc::new(Semaphore::new(config.max_queued_spans.max(1))),
            capacity_total: config.max_queued_spans.max(1),
            hook,
            stats: Arc::clone(&stats),
            config,
        });

        let mut connections = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = accept_unix(unix.as_ref()) => match accepted {
                    Ok(stream) => {
                        spawn_connection(&mut connections, stream, "unix".to_string(), &shared, &stopping_rx);
                    }
                    Err(error) => accept_failed(error).await,
                },
                accepted = accept_tcp(tcp.as_ref()) => match accepted {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        spawn_connection(&mut connections, stream, peer.to_string(), &shared, &stopping_rx);
                    }
                    Err(error) => accept_failed(error).await,
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }

        tracing::info!(
            connections = connections.len(),
            "agent stopping: draining connections and queued spans"
        );
        drop(unix);
        drop(tcp);
        if let Some(path) = &shared.config.unix_socket {
            let _ = std::fs::remove_file(path);
        }
        let _ = stopping_tx.send(true);
        while connections.join_next().await.is_some() {}
        let flush_sink = Arc::clone(&sink);
        drop(shared);
        let report = dispatcher.await.unwrap_or_else(|error| {
            tracing::error!(%error, "the span dispatcher failed");
            DrainReport {
                spans_delivered: stats.spans_delivered.load(Ordering::Relaxed),
                spans_dropped: stats.spans_dropped.load(Ordering::Relaxed),
            }
        });
        if let Err(error) = flush_sink.flush().await {
            tracing::error!(%error, "the sink could not flush everything it buffers");
        }
        tracing::info!(
            delivered = report.spans_delivered,
            dropped = report.spans_dropped,
            "agent stopped"
        );
        report
    }
}

async fn accept_unix(listener: Option<&UnixListener>) -> io::Result<tokio::net::UnixStream> {
    match listener {
        Some(listener) => listener.accept().await.map(|(stream, _)| stream),
        None => std::future::pending().await,
    }
}

async fn accept_tcp(
    listener: Option<&TcpListener>,
) -> io::Result<(tokio::net::TcpStream, std::net::SocketAddr)> {
    match listener {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

/// Out of file descriptors and similar: wait a moment rather than spin.
async fn accept_failed(error: io::Error) {
    tracing::warn!(%error, "accepting a connection failed");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// An address in use is only "already served" if an agent answers there; anything else
/// holding the port is reported as the bind error it is.
async fn bind_tcp(addr: std::net::SocketAddr) -> Result<TcpListener, AgentError> {
    let address = AgentAddress::Tcp(addr);
    match TcpListener::bind(addr).await {
        Ok(listener) => Ok(listener),
        Err(source) if source.kind() == io::ErrorKind::AddrInUse => {
            let probe_address = address.clone();
            let probe =
                tokio::task::spawn_blocking(move || probe_address.probe(Duration::from_secs(2)))
                    .await
                    .expect("probe task");
            match probe {
                ProbeResult::Answering { version } => {
                    Err(AgentError::AlreadyServed { address, version })
                }
                _ => Err(AgentError::Bind { address, source }),
            }
        }
        Err(source) => Err(AgentError::Bind { address, source }),
    }
}

/// Binds under a temporary name, sets the permissions, then renames into place, so the
/// socket is never reachable with looser permissions than configured.
async fn bind_unix(path: PathBuf, mode: u32) -> Result<UnixListener, AgentError> {
    let address = AgentAddress::Unix(path.clone());
    let bind_error = |source| AgentError::Bind {
        address: address.clone(),
        source,
    };
    match std::fs::symlink_metadata(&path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(AgentError::NotASocket { path });
        }
        Ok(_) => {
            let probe_address = address.clone();
            let probe =
                tokio::task::spawn_blocking(move || probe_address.probe(Duration::from_secs(2)))
                    .await
                    .expect("probe task");
            match probe {
                ProbeResult::Answering { version } => {
                    return Err(AgentError::AlreadyServed { address, version });
                }
                ProbeResult::Silent(error) => {
                    // Something accepts connections there but does not speak the protocol
                    // in time; taking its socket away could break it, so refuse.
                    return Err(bind_error(io::Error::new(
                        io::ErrorKind::AddrInUse,
                        format!(
                            "a process accepts connections on it but does not answer like an agent ({error})"
                        ),
                    )));
                }
                ProbeResult::Absent => {
                    tracing::info!(path = %path.display(), "replacing a stale socket left by an agent that is gone");
                    std::fs::remove_file(&path).map_err(bind_error)?;
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(bind_error(e)),
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(bind_error)?;
    }
    let file_name = path
        .file_name()
        .ok_or_else(|| bind_error(io::Error::other("the socket path has no file name")))?;
    let staging = path.with_file_name(format!(
        ".{}.{}.binding",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&staging);
    let listener = std::os::unix::net::UnixListener::bind(&staging).map_err(bind_error)?;
    let placed = std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(mode))
        .and_then(|()| std::fs::rename(&staging, &path))
        .and_then(|()| listener.set_nonblocking(true));
    if let Err(error) = placed {
        let _ = std::fs::remove_file(&staging);
        return Err(bind_error(error));
    }
    UnixListener::from_std(listener).map_err(bind_error)
}

struct Shared {
    config: AgentConfig,
    queue: mpsc::UnboundedSender<Queued>,
    /// One permit per queued span; bounds memory between connections and the sink.
    capacity: Arc<Semaphore>,
    capacity_total: usize,
    hook: Option<Arc<dyn LifecycleHook>>,
    stats: Arc<AgentStats>,
}

struct Queued {
    spans: Vec<Span>,
    _permit: OwnedSemaphorePermit,
}

impl Shared {
    async fn deliver(&self, trace: AssembledTrace) {
        self.stats.traces.fetch_add(1, Ordering::Relaxed);
        let abandoned = trace.abandoned.map(|reason| AbandonedTrace {
            trace_id: trace.trace_id,
            root_span_id: trace.root_span_id,
            request_id: trace.request_id.clone(),
            service: trace
                .spans
                .first()
                .map(|s| s.service_name().to_string())
                .unwrap_or_default(),
            reason,
            last_seen: trace.last_seen,
            span_count: trace.spans.len(),
        });
        // A request larger than the whole queue still goes through, alone.
        let wanted = trace.spans.len().clamp(1, self.capacity_total);
        let permit = Arc::clone(&self.capacity)
            .acquire_many_owned(u32::try_from(wanted).unwrap_or(u32::MAX))
            .await
            .expect("the queue semaphore is never closed");
        if self
            .queue
            .send(Queued {
                spans: trace.spans,
                _permit: permit,
            })
            .is_err()
        {
            tracing::error!(trace_id = %trace.trace_id, "the span dispatcher is gone; spans lost");
        }
        if let Some(abandoned) = abandoned {
            self.stats.abandoned_traces.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                trace_id = %abandoned.trace_id,
                request_id = %abandoned.request_id,
                spans = abandoned.span_count,
                reason = abandoned.reason.message(),
                "request closed unfinished"
            );
            if let Some(hook) = &self.hook {
                hook.abandoned(&abandoned);
            }
        }
    }
}

fn spawn_connection<S>(
    connections: &mut JoinSet<()>,
    stream: S,
    peer: String,
    shared: &Arc<Shared>,
    stopping: &watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    shared.stats.connections.fetch_add(1, Ordering::Relaxed);
    let shared = Arc::clone(shared);
    let stopping = stopping.clone();
    connections.spawn(async move { serve_connection(stream, &peer, &shared, stopping).await });
}

async fn serve_connection<S>(
    mut stream: S,
    peer: &str,
    shared: &Shared,
    mut stopping: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let config = &shared.config;
    let mut session = Session::new(
        config.version.clone(),
        SessionLimits {
            max_open_items: config.max_open_items_per_connection,
        },
    );
    let mut finished = Vec::new();
    tracing::debug!(peer, "connection opened");
    let reason = loop {
        let length = tokio::select! {
            biased;
            _ = stopping.wait_for(|stop| *stop) => break AbandonReason::AgentStopped,
            length = frame::read_length(&mut stream, config.max_frame_bytes) => length,
        };
        let length = match length {
            Ok(length) => length,
            Err(FrameError::Closed) => break AbandonReason::ClientDisconnected,
            Err(error @ FrameError::TooLarge { .. }) => {
                tracing::warn!(peer, %error, "closing the connection: a frame over the limit cannot be skipped safely");
                shared.stats.failure_replies.fetch_add(1, Ordering::Relaxed);
                let reply = Reply::failure(format!("{error}; closing the connection"));
                let _ = frame::write_frame(&mut stream, &reply.to_json()).await;
                break AbandonReason::ClientDisconnected;
            }
            Err(error) => {
                tracing::warn!(peer, %error, "closing the connection");
                break AbandonReason::ClientDisconnected;
            }
        };
        let body = match tokio::time::timeout(
            config.frame_body_timeout,
            frame::read_body(&mut stream, length),
        )
        .await
        {
            Ok(Ok(body)) => body,
            Ok(Err(error)) => {
                tracing::warn!(peer, %error, "closing the connection");
                break AbandonReason::ClientDisconnected;
            }
            Err(_) => {
                tracing::warn!(
                    peer,
                    length,
                    timeout = ?config.frame_body_timeout,
                    "closing the connection: the rest of a frame never came"
                );
                break AbandonReason::ClientDisconnected;
            }
        };
        shared.stats.frames.fetch_add(1, Ordering::Relaxed);
        let reply = match Command::from_slice(&body) {
            Ok(command) => session.handle(command, Timestamp::now(), &mut finished),
            Err(error) => {
                tracing::warn!(peer, %error, bytes = body.len(), "unreadable frame answered with a failure");
                Reply::failure(error.to_string())
            }
        };
        // Queued before the reply, so "Success" means the agent holds the spans.
        for trace in finished.drain(..) {
            shared.deliver(trace).await;
        }
        if matches!(reply, Reply::Failure { .. }) {
            shared.stats.failure_replies.fetch_add(1, Ordering::Relaxed);
        }
        if let Err(error) = frame::write_frame(&mut stream, &reply.to_json()).await {
            tracing::debug!(peer, %error, "the client left before reading the reply");
            break AbandonReason::ClientDisconnected;
        }
    };
    let open = session.open_requests();
    if open > 0 {
        tracing::info!(
            peer,
            open,
            reason = reason.message(),
            "connection closed with requests open"
        );
    }
    for trace in session.abandon_all(reason) {
        shared.deliver(trace).await;
    }
    tracing::debug!(peer, "connection closed");
}

/// Feeds the sink from the queue, coalescing what is waiting into one call and retrying
/// refusals with exponential back-off. Ends when every connection has let go of the queue.
async fn dispatch(
    mut queue: mpsc::UnboundedReceiver<Queued>,
    sink: Arc<dyn SpanSink>,
    batch_spans: usize,
    drain_timeout: Duration,
    stopping: watch::Receiver<bool>,
    stats: Arc<AgentStats>,
) -> DrainReport {
    const FIRST_BACKOFF: Duration = Duration::from_millis(50);
    const MAX_BACKOFF: Duration = Duration::from_secs(5);
    let mut stop_deadline: Option<tokio::time::Instant> = None;
    while let Some(first) = queue.recv().await {
        let mut spans = first.spans;
        let mut permits = vec![first._permit];
        while spans.len() < batch_spans {
            match queue.try_recv() {
                Ok(more) => {
                    spans.extend(more.spans);
                    permits.push(more._permit);
                }
                Err(_) => break,
            }
        }
        let mut backoff = FIRST_BACKOFF;
        loop {
            match sink.send(&spans).await {
                Ok(()) => {
                    stats
                        .spans_delivered
                        .fetch_add(spans.len() as u64, Ordering::Relaxed);
                    break;
                }
                Err(SinkError::Rejected(reason)) => {
                    tracing::error!(spans = spans.len(), %reason, "the sink rejected spans; dropped");
                    stats
                        .spans_dropped
                        .fetch_add(spans.len() as u64, Ordering::Relaxed);
                    break;
                }
                Err(SinkError::Retryable(reason)) => {
                    if *stopping.borrow() {
                        let deadline = *stop_deadline
                            .get_or_insert_with(|| tokio::time::Instant::now() + drain_timeout);
                        if tokio::time::Instant::now() >= deadline {
                            tracing::error!(
                                spans = spans.len(),
                                %reason,
                                "the sink still refuses spans after the drain timeout; dropped"
                            );
                            stats
                                .spans_dropped
                                .fetch_add(spans.len() as u64, Ordering::Relaxed);
                            break;
                        }
                    }
                    tracing::warn!(spans = spans.len(), %reason, retry_in = ?backoff, "the sink refused spans; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        drop(permits);
    }
    DrainReport {
        spans_delivered: stats.spans_delivered.load(Ordering::Relaxed),
        spans_dropped: stats.spans_dropped.load(Ordering::Relaxed),
    }
}
