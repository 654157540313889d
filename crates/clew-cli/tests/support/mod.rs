//! Runs the real `clew` binary for end-to-end tests: a private server on free loopback
//! ports with its own data directory, stopped when the handle drops.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub struct Clew {
    child: Child,
    pub otlp_grpc: SocketAddr,
    pub otlp_http: SocketAddr,
    pub http: SocketAddr,
    /// The agent's addresses as printed: the unix socket path, then `tcp://…`.
    pub agent: Vec<String>,
    pub data_dir: PathBuf,
}

pub fn clew_binary() -> &'static str {
    env!("CARGO_BIN_EXE_clew")
}

impl Clew {
    /// Starts `clew serve` on ports the OS picks and waits (at most 30 s) until it is ready.
    pub fn start(data_dir: &Path) -> Clew {
        Clew::start_with(data_dir, &[])
    }

    pub fn start_with(data_dir: &Path, extra_args: &[&str]) -> Clew {
        let mut child = Command::new(clew_binary())
            .args([
                "--http-addr",
                "127.0.0.1:0",
                "serve",
                "--otlp-grpc-addr",
                "127.0.0.1:0",
            ])
            .args([
                "--otlp-http-addr",
                "127.0.0.1:0",
                "--agent-tcp-addr",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(data_dir)
            .args(extra_args)
            .env("CLEW_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting clew serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let (lines_tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let (mut grpc, mut otlp_http, mut http) = (None, None, None);
        let mut agent = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = lines.recv_timeout(left).unwrap_or_else(|_| {
                let _ = child.kill();
                panic!("clew serve did not print `ready` within 30 s")
            });
            let field = |prefix: &str| -> Option<SocketAddr> {
                let rest = line.trim().strip_prefix(prefix)?.trim();
                let rest = rest.trim_start_matches("http://");
                rest.split('/').next()?.parse().ok()
            };
            grpc = grpc.or_else(|| field("OTLP/gRPC"));
            otlp_http = otlp_http.or_else(|| field("OTLP/HTTP"));
            http = http.or_else(|| field("query API"));
            if let Some(address) = line.trim().strip_prefix("agent") {
                agent.push(address.trim().to_string());
            }
            if line.trim() == "ready" {
                break;
            }
        }
        Clew {
            child,
            otlp_grpc: grpc.expect("gRPC address printed"),
            otlp_http: otlp_http.expect("OTLP/HTTP address printed"),
            http: http.expect("query API address printed"),
            agent,
            data_dir: data_dir.to_path_buf(),
        }
    }

    /// The agent's TCP address as printed (`tcp://127.0.0.1:PORT`).
    pub fn agent_tcp(&self) -> String {
        self.agent
            .iter()
            .find(|a| a.starts_with("tcp://"))
            .expect("agent TCP address printed")
            .clone()
    }

    pub fn api(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// `kill -9`: no chance to flush anything.
    pub fn kill_hard(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for clew") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "clew did not stop within 30 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("polling clew").is_none()
    }

    /// Sends spans over OTLP/HTTP protobuf, at most 10 000 per request; returns the
    /// status of the first request that was not a success, or 200.
    pub fn send_spans(&self, spans: &[clew_model::Span]) -> u16 {
        use prost::Message;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let client = reqwest::Client::new();
            for batch in spans.chunks(10_000) {
                let response = client
                    .post(format!("http://{}/v1/traces", self.otlp_http))
                    .header("content-type", "application/x-protobuf")
                    .body(clew_otlp::to_request(batch).encode_to_vec())
                    .send()
                    .await
                    .expect("POST /v1/traces");
                if !response.status().is_success() {
                    return response.status().as_u16();
                }
            }
            200
        })
    }

    /// Runs a `clew` verb against this server.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(clew_binary())
            .arg("--http-addr")
            .arg(self.http.to_string())
            .args(args)
            .output()
            .expect("running clew")
    }
}

impl Drop for Clew {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GETs JSON from the server; returns the status and the parsed body.
pub fn get_json(url: &str) -> (u16, serde_json::Value) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let response = client
            .get(url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let status = response.status().as_u16();
        let body = response.bytes().await.expect("body");
        let json = serde_json::from_slice(&body).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(&body).into_owned())
        });
        (status, json)
    })
}

/// Polls `check` every 100 ms until it returns `Some`, for at most `within`.
pub fn eventually<T>(within: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The Python interpreter with the OpenTelemetry SDK that `scripts/test` prepares.
pub fn python() -> PathBuf {
    let path = std::env::var_os("CLEW_TEST_PYTHON").expect(
        "CLEW_TEST_PYTHON is not set: run the tests with ./scripts/test, which prepares a \
         Python virtualenv with the OpenTelemetry SDK",
    );
    PathBuf::from(path)
}

/// Runs `command`, killing it if it has not finished within `limit`.
pub fn output_within(command: &mut Command, limit: Duration) -> Output {
    let child: Child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {command:?}: {e}. Node.js is needed: run the tests with \
                 ./scripts/test, which installs nodejs and the npm packages in tests/node"
            )
        });
    let pid = child.id();
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    match finished.recv_timeout(limit) {
        Ok(output) => output.expect("waiting for the child"),
        Err(_) => {
            // SAFETY: signalling a child this test spawned.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            panic!("{command:?} did not finish within {limit:?}");
        }
    }
}

/// A finished process's status, stdout and stderr, for assertion messages.
pub fn output_text(output: &Output) -> String {
    format!(
        "{}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The Node.js interpreter (`node` on the PATH, or `CLEW_TEST_NODE`) and the directory
/// holding tests/node's npm packages (tests/node/node_modules, or
/// `CLEW_TEST_NODE_MODULES`), checked: each of `packages` must be installed at the exact
/// version tests/node/package.json pins. A missing one fails the test with what to do
/// rather than skipping it.
pub fn node_with_packages(packages: &[&str]) -> (PathBuf, PathBuf) {
    let node = std::env::var_os("CLEW_TEST_NODE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("node"));
    let version = output_within(
        Command::new(&node).arg("--version"),
        Duration::from_secs(30),
    );
    assert!(
        version.status.success(),
        "{} --version failed: run the tests with ./scripts/test, which installs nodejs\n{}",
        node.display(),
        output_text(&version)
    );

    let root = repo_root();
    let modules = std::env::var_os("CLEW_TEST_NODE_MODULES")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("tests/node/node_modules"));
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(root.join("tests/node/package.json")).expect("tests/node/package.json"),
    )
    .expect("tests/node/package.json is JSON");
    for package in packages {
        let pinned = manifest["dependencies"][package]
            .as_str()
            .unwrap_or_else(|| panic!("tests/node/package.json pins {package}"));
        let installed = modules.join(package).join("package.json");
        let installed_version = std::fs::read(&installed)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
            .and_then(|package| package["version"].as_str().map(str::to_string));
        assert_eq!(
            installed_version.as_deref(),
            Some(pinned),
            "{package} {pinned} is not installed in {} ({} is missing or another \
             version): run the tests with ./scripts/test, or `npm --prefix tests/node ci`",
            modules.display(),
            installed.display()
        );
    }
    (node, modules)
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// A private `redis-server` on a free loopback port, stopped on drop.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let mut server = RedisServer {
            child: None,
            port,
            dir,
        };
        server.restart();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// (Re)starts the server on the same port and waits until it answers.
    pub fn restart(&mut self) {
        self.stop();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is not installed: run the tests with ./scripts/test, which installs it");
        self.child = Some(child);
        let ready = eventually(Duration::from_secs(10), || {
            (self.cli(&["PING"]) == "PONG").then_some(())
        });
        assert!(
            ready.is_some(),
            "redis-server did not start on port {}",
            self.port
        );
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Runs a command with `redis-cli` and returns its trimmed output.
    pub fn cli(&self, args: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli is not installed: run the tests with ./scripts/test");
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What a finished `clew demo --once` printed, and the trace ids it named.
pub struct DemoRun {
    pub stdout: String,
    pub lock_request: String,
    pub intercept_execution: String,
    pub flight: String,
}

/// Runs the real demo (`clew demo --once`) on free ports into `data_dir`, which may
/// already hold earlier runs.
pub fn run_demo(data_dir: &Path, extra: &[&str]) -> DemoRun {
    let output = Command::new(clew_binary())
        .args(["--http-addr", "127.0.0.1:0", "demo", "--once", "--data-dir"])
        .arg(data_dir)
        .args(["--otlp-grpc-addr", "127.0.0.1:0"])
        .args(["--otlp-http-addr", "127.0.0.1:0"])
        .args(["--agent-tcp-addr", "127.0.0.1:0"])
        .args(extra)
        .env("CLEW_LOG", "warn")
        .env_remove("CLEW_REDIS_URL")
        .env_remove("CLEW_CONFIG")
        .output()
        .expect("running clew demo");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "clew demo {extra:?} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let id_after = |prefix: &str| -> String {
        stdout
            .lines()
            .find_map(|line| line.strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no {prefix:?} line in:\n{stdout}"))
            .to_string()
    };
    DemoRun {
        lock_request: id_after("Lock request trace: "),
        intercept_execution: id_after("Intercept execution trace: "),
        flight: id_after("The striker's flight_mission is trace "),
        stdout,
    }
}
