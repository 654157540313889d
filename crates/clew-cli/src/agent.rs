//! `clew agent …`: the per-host daemon that APM agents and clew's SDK send batches to,
//! and the `core-agent start …` command line that lets clew stand in for Scout's binary.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use clew_agent::{
    AgentAddress, AgentConfig, DaemonPaths, ForwarderConfig, OtlpForwarder, SpanSink, StartOptions,
    StartOutcome, StopOutcome,
};
use clew_server::Config;

#[derive(Subcommand)]
pub enum AgentCommand {
    /// Start the agent (in the foreground, or with --daemonize in the background); exits 0
    /// if one already runs.
    Start(AgentStartArgs),
    /// Stop the running agent; waits until everything it received is delivered.
    Stop(AgentWhere),
    /// Whether an agent runs, its pid, and which addresses answer.
    Status(AgentWhere),
    /// Send protocol messages (one JSON object per line, from FILE or stdin) and print
    /// each reply.
    Send(AgentSendArgs),
}

#[derive(Args, Clone)]
pub struct AgentWhere {
    /// Data directory: the agent's socket, lock, pid and log files live here.
    #[arg(long, env = "CLEW_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Agent unix socket [default: DATA_DIR/agent.sock].
    #[arg(long, env = "CLEW_AGENT_SOCKET")]
    agent_socket: Option<PathBuf>,
    /// Agent TCP address [default: 127.0.0.1:6590].
    #[arg(long, env = "CLEW_AGENT_TCP_ADDR")]
    agent_tcp_addr: Option<SocketAddr>,
}

#[derive(Args)]
pub struct AgentStartArgs {
    #[command(flatten)]
    at: AgentWhere,
    /// Fork into the background; returns once the daemon accepts connections.
    #[arg(long)]
    pub daemonize: bool,
    /// Unix socket permissions, octal: 600 or 660.
    #[arg(long, default_value = "600", value_parser = parse_octal)]
    socket_mode: u32,
    /// Where the agent forwards spans (OTLP/HTTP) when it runs on its own.
    #[arg(
        long,
        env = "CLEW_AGENT_OTLP_ENDPOINT",
        default_value = "http://127.0.0.1:4318/v1/traces"
    )]
    otlp_endpoint: String,
    /// Spans waiting for the collector are spooled to disk up to this many bytes.
    #[arg(long, default_value_t = 256 << 20)]
    spool_bytes: u64,
    /// Largest frame a client may send.
    #[arg(long, default_value_t = clew_agent::frame::DEFAULT_MAX_FRAME_BYTES)]
    max_frame_bytes: usize,
}

#[derive(Args)]
pub struct AgentSendArgs {
    #[command(flatten)]
    at: AgentWhere,
    /// `tcp://HOST:PORT` or a socket path [default: the agent's unix socket].
    #[arg(long)]
    address: Option<String>,
    /// Messages, one JSON object per line [default: stdin].
    file: Option<PathBuf>,
}

fn parse_octal(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s, 8).map_err(|e| format!("{s:?} is not an octal mode: {e}"))
}

/// Paths are made absolute because the daemon changes its directory to `/`.
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

fn agent_setup(at: &AgentWhere) -> (PathBuf, AgentConfig, DaemonPaths) {
    let data_dir = absolute(
        &at.data_dir
            .clone()
            .unwrap_or_else(|| Config::default().data_dir),
    );
    let mut config = AgentConfig::in_data_dir(&data_dir);
    if let Some(socket) = &at.agent_socket {
        config.unix_socket = Some(absolute(socket));
    }
    if let Some(addr) = at.agent_tcp_addr {
        config.tcp_addr = Some(addr);
    }
    let paths = DaemonPaths::for_config(&data_dir, &config);
    (data_dir, config, paths)
}

fn forwarder(
    endpoint: String,
    data_dir: &Path,
    spool_bytes: u64,
) -> impl FnOnce() -> Result<Arc<dyn SpanSink>, String> {
    let mut forward = ForwarderConfig::new(endpoint, data_dir.join("agent-spool"));
    forward.max_spool_bytes = spool_bytes;
    move || {
        Ok(
            Arc::new(OtlpForwarder::start(forward).map_err(|e| e.to_string())?)
                as Arc<dyn SpanSink>,
        )
    }
}

fn report_start(outcome: StartOutcome) -> Result<()> {
    match outcome {
        StartOutcome::Started { pid } => println!("clew agent started (pid {pid})"),
        StartOutcome::AlreadyRunning { pid } => match pid {
            Some(pid) => println!("clew agent already running (pid {pid})"),
            None => println!("clew agent already running"),
        },
        StartOutcome::Stopped(report) => {
            if report.spans_dropped > 0 {
                bail!(
                    "the agent stopped and lost {} spans it could not deliver",
                    report.spans_dropped
                );
            }
        }
    }
    Ok(())
}

/// `clew agent start`, run before any tokio runtime exists: daemonizing forks, which is
/// only safe while the process has one thread.
pub fn start(args: AgentStartArgs) -> Result<()> {
    let (data_dir, mut config, paths) = agent_setup(&args.at);
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    config.unix_socket_mode = args.socket_mode;
    config.max_frame_bytes = args.max_frame_bytes;
    let options = StartOptions {
        config,
        paths,
        daemonize: args.daemonize,
        startup_timeout: Duration::from_secs(30),
        hook: None,
    };
    report_start(clew_agent::start_agent(
        options,
        forwarder(args.otlp_endpoint, &data_dir, args.spool_bytes),
    )?)
}

/// Scout's `core-agent start --daemonize true --socket PATH|--tcp ADDR …` command line,
/// so a language agent configured to launch its core agent launches clew instead.
/// Exit code 3 means "already running", as the original's.
pub fn core_agent_main(args: Vec<String>) -> ExitCode {
    let start = match clew_agent::compat::CoreAgentStart::parse(args) {
        Ok(start) => start,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    let data_dir = absolute(
        &std::env::var_os("CLEW_DATA_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Config::default().data_dir),
    );
    if let Err(error) = std::fs::create_dir_all(&data_dir) {
        eprintln!("error: creating {}: {error}", data_dir.display());
        return ExitCode::FAILURE;
    }
    let endpoint = std::env::var("CLEW_AGENT_OTLP_ENDPOINT")
        .unwrap_or_else(|_| "http://127.0.0.1:4318/v1/traces".into());
    let options = StartOptions {
        config: start.agent_config(),
        paths: start.daemon_paths(&data_dir),
        daemonize: start.daemonize,
        startup_timeout: Duration::from_secs(30),
        hook: None,
    };
    match clew_agent::start_agent(options, forwarder(endpoint, &data_dir, 256 << 20)) {
        Ok(StartOutcome::AlreadyRunning { .. }) => {
            ExitCode::from(clew_agent::compat::EXIT_ALREADY_RUNNING)
        }
        Ok(outcome) => match report_start(outcome) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: {error}");
                ExitCode::FAILURE
            }
        },
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

pub async fn run(command: AgentCommand) -> Result<()> {
    match command {
        AgentCommand::Start(_) => unreachable!("started before the runtime exists"),
        AgentCommand::Stop(at) => {
            let (_, _, paths) = agent_setup(&at);
            let outcome = tokio::task::spawn_blocking(move || {
                clew_agent::stop_agent(&paths, Duration::from_secs(60))
            })
            .await??;
            match outcome {
                StopOutcome::Stopped { pid } => {
                    println!("clew agent stopped (pid {pid}); everything it received was delivered")
                }
                StopOutcome::NotRunning {
                    stale_pid: Some(pid),
                } => {
                    println!("clew agent is not running (removed a stale pid file for pid {pid})")
                }
                StopOutcome::NotRunning { stale_pid: None } => {
                    println!("clew agent is not running")
                }
            }
            Ok(())
        }
        AgentCommand::Status(at) => {
            let (_, config, paths) = agent_setup(&at);
            let addresses = config.addresses();
            let status =
                tokio::task::spawn_blocking(move || clew_agent::agent_status(&paths, &addresses))
                    .await??;
            match (status.running, status.pid) {
                (true, Some(pid)) => println!("clew agent running (pid {pid})"),
                (true, None) => {
                    println!("clew agent running (inside clew serve, or still starting)")
                }
                (false, _) => println!("clew agent not running"),
            }
            for (address, version) in &status.answering {
                match version {
                    Some(version) => println!("  {address}  answers (version {version})"),
                    None => println!("  {address}  no answer"),
                }
            }
            if !status.running {
                bail!("no agent is running");
            }
            Ok(())
        }
        AgentCommand::Send(args) => {
            let (_, config, _) = agent_setup(&args.at);
            let address: AgentAddress = match &args.address {
                Some(address) => address
                    .parse()
                    .with_context(|| format!("bad agent address {address:?}"))?,
                None => config
                    .addresses()
                    .into_iter()
                    .next()
                    .context("no agent address configured")?,
            };
            let text = match &args.file {
                Some(path) => std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?,
                None => std::io::read_to_string(std::io::stdin())?,
            };
            let mut messages = Vec::new();
            for (number, line) in text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
            {
                messages.push(
                    serde_json::from_str::<serde_json::Value>(line)
                        .with_context(|| format!("line {}: not JSON", number + 1))?,
                );
            }
            let replies = clew_agent::send_messages(&address, messages).await?;
            let mut failed = false;
            for reply in &replies {
                failed |= reply.get("Failure").is_some();
                println!("{reply}");
            }
            if failed {
                bail!("the agent refused at least one message");
            }
            Ok(())
        }
    }
}
