//! Private redis-server instances for tests: each on a free loopback port, in a temp
//! dir, without persistence, killed on drop. Never touches a server on 6379.

#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clew_registry::{RedisConn, RedisRegistry, RegistryConfig};

const HOW_TO_INSTALL: &str = "redis-server was not found; these tests run a private Redis. \
     Run ./scripts/test, which installs it (apt-get install redis-server), or install it yourself";

fn redis_server_binary() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("redis-server"))
            .find(|p| p.is_file())
    });
    found
        .or_else(|| Some(PathBuf::from("/usr/bin/redis-server")).filter(|p| p.is_file()))
        .unwrap_or_else(|| panic!("{HOW_TO_INSTALL}"))
}

/// A port that was free a moment ago, whose cluster-bus port (+10000) is free too.
fn free_port() -> u16 {
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        let port = listener.local_addr().unwrap().port();
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    extra: Vec<String>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        RedisServer::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> RedisServer {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        for _attempt in 0..5 {
            let port = free_port();
            let mut server = RedisServer {
                child: None,
                port,
                dir: tempfile::tempdir().expect("temp dir for redis-server"),
                extra: extra.clone(),
            };
            if server.spawn() {
                return server;
            }
        }
        panic!("could not start a private redis-server after 5 attempts");
    }

    fn spawn(&mut self) -> bool {
        let mut args: Vec<String> = vec![
            "--port".into(),
            self.port.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--save".into(),
            "".into(),
            "--appendonly".into(),
            "no".into(),
            "--dir".into(),
            self.dir.path().display().to_string(),
            "--logfile".into(),
            "redis.log".into(),
            "--daemonize".into(),
            "no".into(),
        ];
        args.extend(self.extra.iter().cloned());
        let child = Command::new(redis_server_binary())
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{HOW_TO_INSTALL} ({e})"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                // Most likely the port was taken between probing and binding.
                eprintln!("redis-server on {} exited early: {status}", self.port);
                self.child = None;
                return false;
            }
            if ping(self.port) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        false
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills the server (SIGKILL: like a crash, nothing saved).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty (no persistence).
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.spawn() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("redis-server did not come back on port {}", self.port);
    }

    /// A registry on this server.
    pub async fn registry(&self, config: RegistryConfig) -> RedisRegistry {
        RedisRegistry::connect(&self.url(), config)
            .await
            .expect("connect to the private redis-server")
    }

    /// A plain connection for reading keys back.
    pub async fn raw(&self) -> redis::aio::MultiplexedConnection {
        // No response timeout: a benchmark may read a million-entry set in one reply.
        let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
        redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .expect("raw connection to the private redis-server")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn ping(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    stream.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

/// A three-master Redis Cluster of private servers.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| {
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                ])
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let cli = redis_server_binary().with_file_name("redis-cli");
        let output = Command::new(&cli)
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{} could not run: {e}", cli.display()));
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        let cluster = RedisCluster { nodes };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !cluster.all_ok() {
            assert!(Instant::now() < deadline, "cluster did not reach state ok");
            std::thread::sleep(Duration::from_millis(100));
        }
        cluster
    }

    fn all_ok(&self) -> bool {
        let cli = redis_server_binary().with_file_name("redis-cli");
        self.nodes.iter().all(|node| {
            Command::new(&cli)
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &node.port().to_string(),
                    "cluster",
                    "info",
                ])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("cluster_state:ok"))
        })
    }

    pub fn url(&self) -> String {
        let addrs: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        format!("redis+cluster://{}", addrs.join(","))
    }
}

/// Reads a key's fields, TTL and so on through the registry's own connection type, so
/// the same helpers serve single-node and cluster tests.
pub async fn query<T: redis::FromRedisValue>(conn: &RedisConn, cmd: &mut redis::Cmd) -> T {
    let mut conn = conn.clone();
    cmd.query_async(&mut conn).await.expect("raw Redis query")
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "clew_registry=info".into()),
        )
        .try_init();
}

pub mod behaviour;

/// Polls `check` until it holds or `timeout` passes; panics with `what` then.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Tries to acquire the lease until it succeeds (errors count as "not yet").
pub async fn acquire_within(
    election: &dyn clew_registry::LeaderElection,
    timeout: Duration,
) -> clew_registry::Lease {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(lease)) = election.try_acquire().await {
            return lease;
        }
        assert!(Instant::now() < deadline, "no lease within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
