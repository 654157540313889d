//! The agent's life as a per-host daemon: one per socket, surviving its clients.
//!
//! Exactly one agent serves a socket. The proof is an exclusive `flock` on a lock file
//! next to the socket, held for the agent's whole life; the kernel releases it when the
//! agent dies, however it dies, so a lock can never be stale. Pid files and socket files
//! can be: a pid file is only a pointer to the lock holder, rewritten by every new
//! holder, and a socket file nobody answers on is replaced when the next agent binds.
//!
//! A second `start` therefore finds the lock held, waits until the holder answers on its
//! socket (it may be starting up), says so and succeeds without starting anything.
//!
//! `--daemonize` forks twice with `setsid` in between, so the agent belongs to no terminal
//! and no client's process group: nothing a client does (exiting, crashing, being killed
//! with its group) reaches it. The daemon closes every inherited descriptor and points
//! stdio at `/dev/null` and the log file, so it holds none of the caller's pipes or
//! listening sockets (the trap that hung builds with the original core-agent). The
//! caller returns only when the daemon reports, through a pipe, that it accepts
//! connections, that another agent already runs, or why it could not start.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::address::{AgentAddress, ProbeResult};
use crate::server::{Agent, AgentConfig, AgentError, DrainReport};
use crate::sink::{LifecycleHook, SpanSink};

/// Files that make an agent findable and unique.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonPaths {
    pub lock_file: PathBuf,
    pub pid_file: PathBuf,
    pub log_file: PathBuf,
}

impl DaemonPaths {
    /// Lock and pid files sit next to the unix socket (`agent.sock.lock`,
    /// `agent.sock.pid`), or, for a TCP-only agent, in `data_dir` named after the address;
    /// the log is `data_dir/agent.log`.
    pub fn for_config(data_dir: &Path, config: &AgentConfig) -> DaemonPaths {
        let base = match (&config.unix_socket, config.tcp_addr) {
            (Some(socket), _) => socket.clone(),
            (None, Some(addr)) => data_dir.join(format!(
                "agent-tcp-{}-{}",
                addr.ip().to_string().replace(':', "_"),
                addr.port()
            )),
            (None, None) => data_dir.join("agent"),
        };
        let with_suffix = |suffix: &str| {
            let mut name = base.as_os_str().to_owned();
            name.push(suffix);
            PathBuf::from(name)
        };
        DaemonPaths {
            lock_file: with_suffix(".lock"),
            pid_file: with_suffix(".pid"),
            log_file: data_dir.join("agent.log"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot use {path}: {source}")]
    File { path: PathBuf, source: io::Error },
    #[error("cannot daemonize: {0}")]
    Fork(io::Error),
    #[error("the agent did not start: {0}")]
    StartFailed(String),
    #[error(
        "an agent (pid {pid}) holds {lock} but does not answer on {addresses}; it may be stuck: stop it (kill {pid}) and start again"
    )]
    HeldButSilent {
        pid: String,
        lock: PathBuf,
        addresses: String,
    },
    #[error(
        "the agent (pid {pid}) did not stop within {waited:?}; it may still be delivering queued spans"
    )]
    StillRunning { pid: u32, waited: Duration },
    #[error(transparent)]
    Agent(#[from] AgentError),
    #[error("cannot start the agent's runtime: {0}")]
    Runtime(io::Error),
}

fn file_error(path: &Path) -> impl FnOnce(io::Error) -> DaemonError + '_ {
    move |source| DaemonError::File {
        path: path.to_path_buf(),
        source,
    }
}

/// The exclusive right to serve a socket, held until dropped (or the process dies).
pub struct AgentLock {
    file: File,
    paths: DaemonPaths,
    wrote_pid_file: bool,
}

pub enum LockOutcome {
    Acquired(AgentLock),
    /// Another live process holds the lock; `pid` is what its pid file says.
    Held {
        pid: Option<u32>,
    },
}

impl AgentLock {
    pub fn acquire(paths: &DaemonPaths) -> Result<LockOutcome, DaemonError> {
        if let Some(dir) = paths.lock_file.parent() {
            std::fs::create_dir_all(dir).map_err(file_error(dir))?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&paths.lock_file)
            .map_err(file_error(&paths.lock_file))?;
        // SAFETY: flock on a descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let error = io::Error::last_os_error();
            if error.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Ok(LockOutcome::Held {
                    pid: read_pid(&paths.pid_file),
                });
            }
            return Err(file_error(&paths.lock_file)(error));
        }
        Ok(LockOutcome::Acquired(AgentLock {
            file,
            paths: paths.clone(),
            wrote_pid_file: false,
        }))
    }

    /// Records this process as the holder. Called once the pid is final (after forking).
    pub fn write_pid(&mut self) -> Result<(), DaemonError> {
        let path = &self.paths.pid_file;
        if let Some(stale) = read_pid(path).filter(|pid| *pid != std::process::id()) {
            tracing::info!(
                pid = stale,
                path = %path.display(),
                "replacing the pid file of an agent that is gone"
            );
        }
        self.wrote_pid_file = true;
        let partial = path.with_extension("pid.partial");
        std::fs::write(&partial, format!("{}\n", std::process::id()))
            .and_then(|()| std::fs::rename(&partial, path))
            .map_err(file_error(path))
    }
}

impl Drop for AgentLock {
    fn drop(&mut self) {
        // Only the pid file goes: unlinking a lock file would let a waiter lock the
        // old inode while a newcomer locks a new one.
        if self.wrote_pid_file && read_pid(&self.paths.pid_file) == Some(std::process::id()) {
            let _ = std::fs::remove_file(&self.paths.pid_file);
        }
        // The lock itself goes with the descriptor, closed after this.
        let _ = &self.file;
    }
}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Whether some process holds the lock right now (taken and released at once if not).
pub fn lock_is_held(paths: &DaemonPaths) -> Result<bool, DaemonError> {
    match AgentLock::acquire(paths)? {
        LockOutcome::Held { .. } => Ok(true),
        LockOutcome::Acquired(_released_at_once) => Ok(false),
    }
}

/// What a daemonized start tells the process that asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaemonReport {
    Ready { pid: u32 },
    AlreadyRunning { pid: Option<u32> },
    Failed(String),
}

impl DaemonReport {
    fn to_line(&self) -> String {
        match self {
            DaemonReport::Ready { pid } => format!("ready {pid}\n"),
            DaemonReport::AlreadyRunning { pid: Some(pid) } => format!("running {pid}\n"),
            DaemonReport::AlreadyRunning { pid: None } => "running -\n".into(),
            DaemonReport::Failed(message) => format!("failed {}\n", message.replace('\n', " ")),
        }
    }

    fn from_line(line: &str) -> Option<DaemonReport> {
        let (word, rest) = line.trim_end().split_once(' ')?;
        match word {
            "ready" => Some(DaemonReport::Ready {
                pid: rest.parse().ok()?,
            }),
            "running" => Some(DaemonReport::AlreadyRunning {
                pid: rest.parse().ok(),
            }),
            "failed" => Some(DaemonReport::Failed(rest.to_string())),
            _ => None,
        }
    }
}

/// The daemon's end of the start-up pipe. Dropping it without a report tells the
/// waiting parent the daemon failed to start.
pub struct Readiness {
    pipe: std::sync::Mutex<Option<OwnedFd>>,
}

impl Readiness {
    /// For an agent running in the foreground: reports go nowhere.
    pub fn foreground() -> Readiness {
        Readiness {
            pipe: std::sync::Mutex::new(None),
        }
    }

    fn daemon(pipe: OwnedFd) -> Readiness {
        Readiness {
            pipe: std::sync::Mutex::new(Some(pipe)),
        }
    }

    /// Sends the one report the parent waits for; later reports are ignored.
    pub fn report(&self, report: &DaemonReport) {
        let pipe = self.pipe.lock().map(|mut p| p.take()).unwrap_or_default();
        if let Some(pipe) = pipe {
            let _ = File::from(pipe).write_all(report.to_line().as_bytes());
        }
    }
}

pub enum Forked {
    /// The calling process: the daemon's report, once it came (or why it did not).
    Parent(DaemonReport),
    /// The daemon: carry on starting the agent, then report through this.
    Daemon(Readiness),
}

/// Turns the calling process into a daemon, returning in both processes.
///
/// Must be called before any other thread exists (in particular before a tokio runtime
/// is built): only the calling thread survives a fork. The daemon closes every
/// descriptor but stdio, so the caller must not hold open files (`File`, sockets) across
/// this call. Relative paths stop working in the daemon, which changes directory to `/`;
/// pass absolute ones.
pub fn daemonize(log_file: &Path, startup_timeout: Duration) -> Result<Forked, DaemonError> {
    if let Some(dir) = log_file.parent() {
        std::fs::create_dir_all(dir).map_err(file_error(dir))?;
    }
    let log = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(log_file)
        .map_err(file_error(log_file))?;
    let dev_null = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open("/dev/null")
        .map_err(file_error(Path::new("/dev/null")))?;
    let (read_end, write_end) = pipe().map_err(DaemonError::Fork)?;

    // SAFETY: fork in a process the caller guarantees to be single-threaded.
    match unsafe { libc::fork() } {
        -1 => Err(DaemonError::Fork(io::Error::last_os_error())),
        0 => {
            // The intermediate child: only async-signal-safe calls until it exits.
            // SAFETY: setsid/fork/_exit are async-signal-safe.
            unsafe {
                if libc::setsid() == -1 {
                    libc::_exit(1);
                }
                match libc::fork() {
                    -1 => libc::_exit(1),
                    0 => {}
                    _ => libc::_exit(0),
                }
            }
            drop(read_end);
            become_daemon(log, dev_null, write_end).map_err(DaemonError::Fork)?;
            // SAFETY: become_daemon left the pipe's write end at this descriptor.
            let pipe = unsafe { OwnedFd::from_raw_fd(READINESS_FD) };
            Ok(Forked::Daemon(Readiness::daemon(pipe)))
        }
        intermediate => {
            drop(write_end);
            let mut status = 0;
            // SAFETY: reaping our own child so it does not linger as a zombie.
            unsafe { libc::waitpid(intermediate, &mut status, 0) };
            Ok(Forked::Parent(wait_for_report(
                read_end,
                startup_timeout,
                log_file,
            )))
        }
    }
}

/// Where the daemon keeps the readiness pipe: the first descriptor after stdio.
const READINESS_FD: RawFd = 3;

fn become_daemon(log: File, dev_null: File, readiness: OwnedFd) -> io::Result<()> {
    // Move everything needed above the range being rearranged, so no dup2 below closes
    // a descriptor still to be copied (any of them may have landed on 0-3).
    let high = |fd: RawFd| -> io::Result<RawFd> {
        // SAFETY: duplicating descriptors this function borrows.
        let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 64) };
        if new == -1 {
            Err(io::Error::last_os_error())
        } else {
            Ok(new)
        }
    };
    let log_high = high(log.as_raw_fd())?;
    let dev_null_high = high(dev_null.as_raw_fd())?;
    let readiness_high = high(readiness.as_raw_fd())?;
    // Closed through their owners now, so nothing owned is left for the sweep below.
    drop((log, dev_null, readiness));
    // SAFETY: plain descriptor and process-attribute calls on descriptors owned here.
    unsafe {
        for (from, to) in [
            (dev_null_high, 0),
            (log_high, 1),
            (log_high, 2),
            (readiness_high, READINESS_FD),
        ] {
            if libc::dup2(from, to) == -1 {
                return Err(io::Error::last_os_error());
            }
        }
        libc::fcntl(READINESS_FD, libc::F_SETFD, libc::FD_CLOEXEC);
        close_descriptors_from(READINESS_FD + 1);
        libc::umask(0o022);
        if libc::chdir(c"/".as_ptr()) == -1 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Closes every descriptor from `first` up: what the caller's process had open (pipes
/// of a build tool, listening sockets) must not be held by a daemon that outlives it.
fn close_descriptors_from(first: RawFd) {
    // SAFETY: close_range only closes descriptors.
    let closed = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            0,
        )
    };
    if closed == 0 {
        return;
    }
    let open: Vec<RawFd> = match std::fs::read_dir("/proc/self/fd") {
        Ok(entries) => entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .filter(|fd| *fd >= first)
            .collect(),
        Err(_) => {
            // SAFETY: sysconf has no preconditions.
            let max = unsafe { libc::sysconf(libc::_SC_OPEN_MAX) };
            (first..RawFd::try_from(max.clamp(1024, 65_536)).unwrap_or(65_536)).collect()
        }
    };
    for fd in open {
        // SAFETY: closing; a descriptor that is not open yields EBADF, which is fine.
        unsafe { libc::close(fd) };
    }
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the array on success.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by nobody else.
    unsafe { Ok((OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]))) }
}

fn wait_for_report(read_end: OwnedFd, timeout: Duration, log_file: &Path) -> DaemonReport {
    let deadline = Instant::now() + timeout;
    let mut pipe = File::from(read_end);
    let mut received = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return DaemonReport::Failed(format!(
                "the agent did not report ready within {timeout:?}; see {}",
                log_file.display()
            ));
        }
        let mut poll = libc::pollfd {
            fd: pipe.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let millis = libc::c_int::try_from(left.as_millis().max(1)).unwrap_or(libc::c_int::MAX);
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut poll, 1, millis) } <= 0 {
            continue;
        }
        let mut chunk = [0u8; 512];
        match pipe.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                received.extend_from_slice(&chunk[..n]);
                if received.contains(&b'\n') {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&received);
    DaemonReport::from_line(text.lines().next().unwrap_or_default()).unwrap_or_else(|| {
        DaemonReport::Failed(format!(
            "the agent exited during start-up; see {}",
            log_file.display()
        ))
    })
}

/// Everything `clew agent start` needs.
pub struct StartOptions {
    pub config: AgentConfig,
    pub paths: DaemonPaths,
    pub daemonize: bool,
    /// How long to wait for the daemon to be ready, or for a running agent to answer.
    pub startup_timeout: Duration,
    pub hook: Option<Arc<dyn LifecycleHook>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartOutcome {
    /// (In the process that asked for a daemon) the daemon accepts connections.
    Started { pid: u32 },
    /// Another agent already serves these addresses; nothing was started.
    AlreadyRunning { pid: Option<u32> },
    /// (In the foreground, or in the daemon itself) the agent ran and has stopped.
    Stopped(DrainReport),
}

/// Starts an agent, in the foreground or as a daemon, unless one already runs.
///
/// `make_sink` runs inside the agent's runtime (after forking), so it may spawn tasks.
/// Call this before any thread exists when `daemonize` is set (see [`daemonize`]).
pub fn start_agent<F>(options: StartOptions, make_sink: F) -> Result<StartOutcome, DaemonError>
where
    F: FnOnce() -> Result<Arc<dyn SpanSink>, String>,
{
    let readiness = if options.daemonize {
        match daemonize(&options.paths.log_file, options.startup_timeout)? {
            Forked::Parent(DaemonReport::Ready { pid }) => {
                return Ok(StartOutcome::Started { pid });
            }
            Forked::Parent(DaemonReport::AlreadyRunning { pid }) => {
                return Ok(StartOutcome::AlreadyRunning { pid });
            }
            Forked::Parent(DaemonReport::Failed(message)) => {
                return Err(DaemonError::StartFailed(message));
            }
            Forked::Daemon(readiness) => readiness,
        }
    } else {
        Readiness::foreground()
    };
    match run_locked(options, make_sink, &readiness) {
        Ok(outcome) => Ok(outcome),
        Err(error) => {
            tracing::error!(%error, "the agent did not start");
            readiness.report(&DaemonReport::Failed(error.to_string()));
            Err(error)
        }
    }
}

/// Takes the lock (or finds the agent that has it), then serves until SIGTERM/SIGINT.
fn run_locked<F>(
    options: StartOptions,
    make_sink: F,
    readiness: &Readiness,
) -> Result<StartOutcome, DaemonError>
where
    F: FnOnce() -> Result<Arc<dyn SpanSink>, String>,
{
    let StartOptions {
        config,
        paths,
        startup_timeout,
        hook,
        ..
    } = options;
    let addresses = config.addresses();
    let mut lock = match acquire_or_find(&paths, &addresses, startup_timeout)? {
        Ok(lock) => lock,
        Err(pid) => {
            tracing::info!(
                ?pid,
                "an agent already serves these addresses; not starting another"
            );
            readiness.report(&DaemonReport::AlreadyRunning { pid });
            return Ok(StartOutcome::AlreadyRunning { pid });
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("clew-agent")
        .build()
        .map_err(DaemonError::Runtime)?;
    runtime.block_on(async move {
        let sink = make_sink().map_err(DaemonError::StartFailed)?;
        let agent = match Agent::bind(config, sink).await {
            Ok(agent) => agent,
            Err(AgentError::AlreadyServed { address, version }) => {
                // Someone outside our lock (another agent implementation, or an agent
                // with other lock paths) answers there.
                tracing::info!(%address, %version, "another agent already answers; not starting");
                readiness.report(&DaemonReport::AlreadyRunning { pid: None });
                return Ok(StartOutcome::AlreadyRunning { pid: None });
            }
            Err(error) => return Err(error.into()),
        };
        let agent = match hook {
            Some(hook) => agent.with_hook(hook),
            None => agent,
        };
        lock.write_pid()?;
        let pid = std::process::id();
        let listening: Vec<String> = agent.addresses().iter().map(|a| a.to_string()).collect();
        tracing::info!(pid, addresses = ?listening, "agent ready");
        readiness.report(&DaemonReport::Ready { pid });
        let report = agent.serve(termination()).await;
        drop(lock);
        Ok(StartOutcome::Stopped(report))
    })
}

/// `Ok(lock)` if this process may serve; `Err(pid)` if a live agent already does.
fn acquire_or_find(
    paths: &DaemonPaths,
    addresses: &[AgentAddress],
    startup_timeout: Duration,
) -> Result<Result<AgentLock, Option<u32>>, DaemonError> {
    let deadline = Instant::now() + startup_timeout;
    loop {
        let pid = match AgentLock::acquire(paths)? {
            LockOutcome::Acquired(lock) => return Ok(Ok(lock)),
            LockOutcome::Held { pid } => pid,
        };
        // The holder may still be binding its listeners; give it until the deadline.
        let answering = addresses.iter().any(|address| {
            matches!(
                address.probe(Duration::from_millis(500)),
                ProbeResult::Answering { .. }
            )
        });
        if answering {
            return Ok(Err(pid));
        }
        if Instant::now() >= deadline {
            return Err(DaemonError::HeldButSilent {
                pid: pid.map_or_else(|| "unknown".to_string(), |p| p.to_string()),
                lock: paths.lock_file.clone(),
                addresses: addresses
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Completes on SIGTERM or SIGINT. SIGHUP is ignored: a daemon has no terminal to lose.
pub async fn termination() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    let mut interrupt = signal(SignalKind::interrupt()).expect("installing a SIGINT handler");
    let mut hangup = signal(SignalKind::hangup()).expect("installing a SIGHUP handler");
    loop {
        tokio::select! {
            _ = term.recv() => {
                tracing::info!("SIGTERM: stopping");
                return;
            }
            _ = interrupt.recv() => {
                tracing::info!("SIGINT: stopping");
                return;
            }
            _ = hangup.recv() => tracing::info!("SIGHUP ignored"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopOutcome {
    /// The agent drained and exited.
    Stopped { pid: u32 },
    /// No agent held the lock; a leftover pid file (if any) was removed.
    NotRunning { stale_pid: Option<u32> },
}

/// Asks the running agent to stop (SIGTERM) and waits until it has drained and exited.
pub fn stop_agent(paths: &DaemonPaths, timeout: Duration) -> Result<StopOutcome, DaemonError> {
    if !lock_is_held(paths)? {
        let stale_pid = read_pid(&paths.pid_file);
        if stale_pid.is_some() {
            let _ = std::fs::remove_file(&paths.pid_file);
        }
        return Ok(StopOutcome::NotRunning { stale_pid });
    }
    let pid = read_pid(&paths.pid_file).ok_or_else(|| {
        DaemonError::StartFailed(format!(
            "a process holds {} but wrote no {}: an agent still starting (try again in a moment) or the agent inside `clew serve` (stop that instead)",
            paths.lock_file.display(),
            paths.pid_file.display()
        ))
    })?;
    let raw_pid = libc::pid_t::try_from(pid).map_err(|_| {
        file_error(&paths.pid_file)(io::Error::other(format!("{pid} is not a valid pid")))
    })?;
    // SAFETY: sending a signal has no memory-safety preconditions.
    if unsafe { libc::kill(raw_pid, libc::SIGTERM) } == -1 {
        let error = io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::ESRCH) {
            return Err(file_error(&paths.pid_file)(error));
        }
    }
    let deadline = Instant::now() + timeout;
    while lock_is_held(paths)? {
        if Instant::now() >= deadline {
            return Err(DaemonError::StillRunning {
                pid,
                waited: timeout,
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(StopOutcome::Stopped { pid })
}

#[derive(Debug, Clone)]
pub struct AgentStatus {
    /// Some process holds the lock.
    pub running: bool,
    pub pid: Option<u32>,
    /// Each address, with the version answered there (`None`: no answer).
    pub answering: Vec<(AgentAddress, Option<String>)>,
}

pub fn agent_status(
    paths: &DaemonPaths,
    addresses: &[AgentAddress],
) -> Result<AgentStatus, DaemonError> {
    let running = lock_is_held(paths)?;
    let answering = addresses
        .iter()
        .map(|address| {
            let version = match address.probe(Duration::from_secs(1)) {
                ProbeResult::Answering { version } => Some(version),
                _ => None,
            };
            (address.clone(), version)
        })
        .collect();
    Ok(AgentStatus {
        running,
        pid: if running {
            read_pid(&paths.pid_file)
        } else {
            None
        },
        answering,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_socket_or_the_tcp_address() {
        let data = Path::new("/var/lib/clew");
        let paths = DaemonPaths::for_config(data, &AgentConfig::in_data_dir(data));
        assert_eq!(paths.lock_file, Path::new("/var/lib/clew/agent.sock.lock"));
        assert_eq!(paths.pid_file, Path::new("/var/lib/clew/agent.sock.pid"));
        assert_eq!(paths.log_file, Path::new("/var/lib/clew/agent.log"));
        let tcp_only = AgentConfig {
            tcp_addr: Some(([127, 0, 0, 1], 6590).into()),
            ..AgentConfig::default()
        };
        let paths = DaemonPaths::for_config(data, &tcp_only);
        assert_eq!(
            paths.lock_file,
            Path::new("/var/lib/clew/agent-tcp-127.0.0.1-6590.lock")
        );
    }

    #[test]
    fn reports_survive_the_pipe_format() {
        for report in [
            DaemonReport::Ready { pid: 42 },
            DaemonReport::AlreadyRunning { pid: Some(7) },
            DaemonReport::AlreadyRunning { pid: None },
            DaemonReport::Failed("cannot listen on x: in use".into()),
        ] {
            assert_eq!(DaemonReport::from_line(&report.to_line()), Some(report));
        }
    }

    #[test]
    fn the_lock_is_exclusive_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let paths = DaemonPaths {
            lock_file: dir.path().join("a.lock"),
            pid_file: dir.path().join("a.pid"),
            log_file: dir.path().join("a.log"),
        };
        let LockOutcome::Acquired(mut lock) = AgentLock::acquire(&paths).unwrap() else {
            panic!("first acquire")
        };
        lock.write_pid().unwrap();
        assert!(matches!(
            AgentLock::acquire(&paths).unwrap(),
            LockOutcome::Held { pid: Some(pid) } if pid == std::process::id()
        ));
        assert!(lock_is_held(&paths).unwrap());
        drop(lock);
        assert!(!paths.pid_file.exists());
        assert!(!lock_is_held(&paths).unwrap());
    }
}
