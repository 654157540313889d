//! The daemon as real processes: one agent per socket, kill -9 and restart, stop drains,
//! and a daemon that holds none of its caller's descriptors.
//!
//! These drive `clew-agent-harness`, a thin binary over the library's lifecycle functions
//! (`start_agent`, `stop_agent`, `agent_status`), with the agent on a private unix socket.

mod support;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use clew_agent::{AgentAddress, DaemonPaths, ProbeResult};
use support::{eventually, output_within, text};

const LIMIT: Duration = Duration::from_secs(60);

fn harness() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_clew-agent-harness"));
    command.env("CLEW_LOG", "debug");
    command
}

fn run(args: &[&str]) -> Output {
    output_within(harness().args(args), LIMIT)
}

struct Dir {
    _temp: tempfile::TempDir,
    path: PathBuf,
}

impl Dir {
    fn new() -> Dir {
        let temp = tempfile::tempdir().unwrap();
        let path = temp.path().to_path_buf();
        Dir { _temp: temp, path }
    }

    fn arg(&self) -> &str {
        self.path.to_str().unwrap()
    }

    fn socket(&self) -> PathBuf {
        self.path.join("agent.sock")
    }

    fn address(&self) -> AgentAddress {
        AgentAddress::Unix(self.socket())
    }

    fn paths(&self) -> DaemonPaths {
        DaemonPaths {
            lock_file: self.path.join("agent.sock.lock"),
            pid_file: self.path.join("agent.sock.pid"),
            log_file: self.path.join("agent.log"),
        }
    }

    fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.paths().pid_file)
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    fn answering(&self) -> bool {
        matches!(
            self.address().probe(Duration::from_secs(2)),
            ProbeResult::Answering { .. }
        )
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.paths().log_file).unwrap_or_default()
    }

    fn spans_file(&self) -> PathBuf {
        self.path.join("spans.jsonl")
    }
}

impl Drop for Dir {
    /// A failed assertion must not leave a daemon behind.
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            // SAFETY: signalling the test's own daemon.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn lock_held(dir: &Dir) -> bool {
    clew_agent::daemon::lock_is_held(&dir.paths()).unwrap()
}

fn started_pid(output: &Output) -> u32 {
    stdout(output)
        .trim()
        .strip_prefix("started agent ")
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("expected `started agent PID`\n{}", text(output)))
}

#[test]
fn two_agents_started_at_once_leave_exactly_one_running() {
    let dir = Dir::new();
    let starts: Vec<_> = (0..2)
        .map(|_| {
            let arg = dir.arg().to_string();
            std::thread::spawn(move || run(&["start", &arg, "--daemonize"]))
        })
        .collect();
    let outputs: Vec<Output> = starts.into_iter().map(|t| t.join().unwrap()).collect();
    for output in &outputs {
        assert!(output.status.success(), "{}", text(output));
    }
    let started: Vec<_> = outputs
        .iter()
        .filter(|o| stdout(o).starts_with("started agent"))
        .collect();
    let already: Vec<_> = outputs
        .iter()
        .filter(|o| stdout(o).starts_with("agent already running"))
        .collect();
    assert_eq!(
        (started.len(), already.len()),
        (1, 1),
        "{}\n---\n{}",
        text(&outputs[0]),
        text(&outputs[1])
    );
    let pid = started_pid(started[0]);
    // The parent returned only once the daemon accepts: no retry needed here.
    assert!(dir.answering());
    assert_eq!(dir.pid(), Some(pid));

    // A third start, now that it runs: still the same one.
    let again = run(&["start", dir.arg(), "--daemonize"]);
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(
        stdout(&again).trim(),
        format!("agent already running (pid Some({pid}))")
    );
    // Scout's command line says "already running" with exit status 3.
    let socket = dir.socket();
    let scout = run(&[
        "core-agent",
        dir.arg(),
        "start",
        "--daemonize",
        "true",
        "--log-level",
        "info",
        "--socket",
        socket.to_str().unwrap(),
    ]);
    assert_eq!(scout.status.code(), Some(3), "{}", text(&scout));

    let status = run(&["status", dir.arg()]);
    assert_eq!(
        stdout(&status).trim(),
        format!("running=true pid=Some({pid}) answering=1")
    );
    let stop = run(&["stop", dir.arg()]);
    assert_eq!(
        stdout(&stop).trim(),
        format!("stopped agent {pid}"),
        "{}",
        text(&stop)
    );
    assert!(!dir.socket().exists(), "the socket goes with the agent");
    assert_eq!(dir.pid(), None, "so does the pid file");
    let status = run(&["status", dir.arg()]);
    assert_eq!(status.status.code(), Some(1));
    assert!(dir.log().contains("agent ready"), "{}", dir.log());
}

#[test]
fn an_agent_killed_with_sigkill_is_replaced_by_the_next_start() {
    let dir = Dir::new();
    let first = run(&["start", dir.arg(), "--daemonize"]);
    let killed = started_pid(&first);
    // SAFETY: signalling the test's own daemon.
    assert_eq!(
        unsafe { libc::kill(killed as libc::pid_t, libc::SIGKILL) },
        0
    );
    assert!(
        eventually(LIMIT, || !lock_held(&dir)),
        "the kernel releases the lock of a dead agent"
    );
    assert!(dir.socket().exists(), "a stale socket file is left behind");
    assert_eq!(dir.pid(), Some(killed), "and a stale pid file");
    assert!(!dir.answering());

    let second = run(&["start", dir.arg(), "--daemonize"]);
    let replacement = started_pid(&second);
    assert_ne!(replacement, killed);
    assert!(dir.answering());
    assert_eq!(dir.pid(), Some(replacement));
    assert!(
        dir.log().contains("replacing a stale socket"),
        "{}",
        dir.log()
    );
    assert!(
        dir.log().contains("replacing the pid file"),
        "{}",
        dir.log()
    );
    let stop = run(&["stop", dir.arg()]);
    assert!(stop.status.success(), "{}", text(&stop));
}

#[test]
fn stop_waits_until_everything_received_is_flushed() {
    let dir = Dir::new();
    let started = run(&["start", dir.arg(), "--daemonize"]);
    started_pid(&started);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut client = clew_agent::AgentClient::connect(&dir.address())
            .await
            .unwrap();
        client.register("drain", None, "rust").await.unwrap();
        for n in 0..200 {
            let t = clew_agent::Timestamp::now();
            let mut request = clew_agent::RequestCommands::start(format!("req-{n}"), t);
            request.span("span-a", None, "Job/work", t, t, []);
            client.send_batch(request.finish(t)).await.unwrap();
        }
        // A request still open on a live connection when the stop comes.
        let mut open = support::Raw::connect(&dir.address()).await;
        open.request(serde_json::json!({"StartRequest": {"request_id": "req-open"}}))
            .await;
        let stop = tokio::task::spawn_blocking({
            let arg = dir.arg().to_string();
            move || run(&["stop", &arg])
        });
        let stop = stop.await.unwrap();
        assert!(stop.status.success(), "{}", text(&stop));
        assert!(open.closed_by_agent().await);
    });
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(dir.spans_file())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines.len(),
        200 * 2 + 1,
        "every span, and the open request's root"
    );
    assert!(dir.log().contains("agent stopped"), "{}", dir.log());
}

#[test]
fn the_daemon_holds_none_of_its_callers_descriptors() {
    let dir = Dir::new();
    let (extra_read, extra_write) = pipe();
    let inherited = extra_write;
    let mut command = harness();
    command.args(["start", dir.arg(), "--daemonize"]);
    // SAFETY: pre_exec runs dup2 only, which is async-signal-safe.
    unsafe {
        command.pre_exec(move || {
            // Like a build tool's pipe or a listening socket: inherited without CLOEXEC.
            if libc::dup2(inherited, 9) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    // `output` returns only once every holder of the stdout/stderr pipes has closed them:
    // a daemon that kept them would make this time out.
    let output = output_within(&mut command, LIMIT);
    started_pid(&output);
    // SAFETY: closing our copy of the write end.
    unsafe { libc::close(extra_write) };
    assert!(
        hung_up(extra_read, Duration::from_secs(10)),
        "the daemon still holds an inherited descriptor"
    );
    assert!(dir.answering(), "and it is running");
    let daemon_cwd = std::fs::read_link(format!("/proc/{}/cwd", dir.pid().unwrap())).unwrap();
    assert_eq!(daemon_cwd, Path::new("/"));
    let stop = run(&["stop", dir.arg()]);
    assert!(stop.status.success(), "{}", text(&stop));
}

fn pipe() -> (libc::c_int, libc::c_int) {
    let mut fds = [0; 2];
    // SAFETY: pipe fills the array.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    (fds[0], fds[1])
}

/// True once every write end of the pipe is closed.
fn hung_up(read_end: libc::c_int, limit: Duration) -> bool {
    let mut poll = libc::pollfd {
        fd: read_end,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let ready = unsafe { libc::poll(&mut poll, 1, limit.as_millis() as libc::c_int) };
    ready == 1 && poll.revents & libc::POLLHUP != 0
}

#[test]
fn a_daemon_that_cannot_listen_says_why_and_leaves_nothing_behind() {
    let dir = Dir::new();
    // Something that is not an agent holds the port.
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = squatter.local_addr().unwrap().to_string();
    let output = run(&["start", dir.arg(), "--daemonize", "--tcp", &port]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on tcp://{port}")),
        "{}",
        text(&output)
    );
    assert!(!dir.socket().exists());
    assert!(!lock_held(&dir));
    assert_eq!(dir.pid(), None);
}
