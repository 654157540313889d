//! Shared by the agent's integration tests: an agent in process with a collecting sink,
//! raw frame I/O for sending what well-behaved clients never would, and bounded waits.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clew_agent::{
    AbandonedTrace, Agent, AgentAddress, AgentConfig, AgentStats, DrainReport, LifecycleHook,
    MemorySink,
};
use clew_model::Span;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const WAIT: Duration = Duration::from_secs(20);

#[derive(Default)]
pub struct RecordingHook {
    pub abandoned: Mutex<Vec<AbandonedTrace>>,
}

impl LifecycleHook for RecordingHook {
    fn abandoned(&self, trace: &AbandonedTrace) {
        self.abandoned.lock().unwrap().push(trace.clone());
    }
}

/// An agent serving in this process on a free TCP port and a private unix socket.
pub struct TestAgent {
    pub tcp: SocketAddr,
    pub socket: PathBuf,
    pub sink: Arc<MemorySink>,
    pub hook: Arc<RecordingHook>,
    pub stats: Arc<AgentStats>,
    stop: Option<oneshot::Sender<()>>,
    serving: Option<JoinHandle<DrainReport>>,
    pub dir: tempfile::TempDir,
}

impl TestAgent {
    pub async fn start() -> TestAgent {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut AgentConfig)) -> TestAgent {
        let dir = tempfile::tempdir().unwrap();
        let mut config = AgentConfig::in_data_dir(dir.path());
        config.tcp_addr = Some(([127, 0, 0, 1], 0).into());
        adjust(&mut config);
        let socket = config.unix_socket.clone().unwrap_or_default();
        let sink = Arc::new(MemorySink::new());
        let hook = Arc::new(RecordingHook::default());
        let agent = Agent::bind(config, sink.clone())
            .await
            .expect("binding the test agent")
            .with_hook(hook.clone());
        let tcp = agent.tcp_addr().expect("a TCP listener");
        let stats = agent.stats();
        let (stop, stopped) = oneshot::channel::<()>();
        let serving = tokio::spawn(agent.serve(async {
            let _ = stopped.await;
        }));
        TestAgent {
            tcp,
            socket,
            sink,
            hook,
            stats,
            stop: Some(stop),
            serving: Some(serving),
            dir,
        }
    }

    pub fn tcp_address(&self) -> AgentAddress {
        AgentAddress::Tcp(self.tcp)
    }

    pub fn unix_address(&self) -> AgentAddress {
        AgentAddress::Unix(self.socket.clone())
    }

    /// Stops the agent and returns what its drain reported.
    pub async fn stop(mut self) -> DrainReport {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(WAIT, self.serving.take().unwrap())
            .await
            .expect("the agent stops in time")
            .expect("the agent task")
    }

    /// Waits until the sink holds at least `count` spans.
    pub async fn spans(&self, count: usize) -> Vec<Span> {
        let spans = self.sink.wait_for(WAIT, |s| s.len() >= count).await;
        assert!(
            spans.len() >= count,
            "expected {count} spans, got {}: {spans:#?}",
            spans.len()
        );
        spans
    }
}

/// A raw connection for sending arbitrary bytes.
pub enum Raw {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

impl Raw {
    pub async fn connect(address: &AgentAddress) -> Raw {
        match address {
            AgentAddress::Tcp(addr) => {
                Raw::Tcp(tokio::net::TcpStream::connect(addr).await.unwrap())
            }
            AgentAddress::Unix(path) => {
                Raw::Unix(tokio::net::UnixStream::connect(path).await.unwrap())
            }
        }
    }

    pub async fn write(&mut self, bytes: &[u8]) {
        match self {
            Raw::Tcp(s) => s.write_all(bytes).await.unwrap(),
            Raw::Unix(s) => s.write_all(bytes).await.unwrap(),
        }
    }

    pub async fn send_frame(&mut self, payload: &[u8]) {
        let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(payload);
        self.write(&frame).await;
    }

    /// The next reply frame as JSON, or `None` if the agent closed the connection.
    pub async fn read_reply(&mut self) -> Option<serde_json::Value> {
        let mut length = [0u8; 4];
        let read = tokio::time::timeout(WAIT, async {
            match self {
                Raw::Tcp(s) => s.read_exact(&mut length).await,
                Raw::Unix(s) => s.read_exact(&mut length).await,
            }
        })
        .await
        .expect("a reply or a close in time");
        if read.is_err() {
            return None;
        }
        let mut body = vec![0u8; u32::from_be_bytes(length) as usize];
        match self {
            Raw::Tcp(s) => s.read_exact(&mut body).await.unwrap(),
            Raw::Unix(s) => s.read_exact(&mut body).await.unwrap(),
        };
        Some(serde_json::from_slice(&body).expect("replies are JSON"))
    }

    pub async fn request(&mut self, message: serde_json::Value) -> serde_json::Value {
        self.send_frame(&serde_json::to_vec(&message).unwrap())
            .await;
        self.read_reply().await.expect("a reply")
    }

    /// True once the agent has closed its side (EOF), within the wait limit.
    pub async fn closed_by_agent(&mut self) -> bool {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(WAIT, async {
            match self {
                Raw::Tcp(s) => s.read(&mut byte).await,
                Raw::Unix(s) => s.read(&mut byte).await,
            }
        })
        .await
        .expect("the agent closes in time");
        matches!(read, Ok(0) | Err(_))
    }

    pub async fn shutdown_write(&mut self) {
        match self {
            Raw::Tcp(s) => s.shutdown().await.unwrap(),
            Raw::Unix(s) => s.shutdown().await.unwrap(),
        }
    }
}

/// Runs a command to completion, killing it if it outlives `limit`.
pub fn output_within(command: &mut Command, limit: Duration) -> Output {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {command:?}: {e}"));
    wait_within(child, limit, &format!("{command:?}"))
}

pub fn wait_within(child: Child, limit: Duration, what: &str) -> Output {
    let pid = child.id();
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    match finished.recv_timeout(limit) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            // SAFETY: signalling a child we spawned.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            panic!("{what} did not finish within {limit:?} (its output pipes may be held open)");
        }
    }
}

/// Polls `check` until it holds or `limit` passes.
pub fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

pub fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a clew_model::AttributeValue> {
    span.attribute(key)
}

pub fn text(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
