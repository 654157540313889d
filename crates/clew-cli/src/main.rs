//! The `clew` command: the one binary users run.
//!
//! Owns argument parsing, the resolution of flags and `CLEW_*` variables into a server
//! configuration, the verbs that read traces (which ask a running server over its HTTP
//! API, so they behave the same against any deployment), the trace tree renderer and
//! the load generator behind `clew bench`. Everything below it is a library; nothing
//! imports this crate.

mod agent;
mod bench;
mod client;
mod demo;
mod render;
mod replay;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use clew_server::{Config, ConfigOverrides, Server};

#[derive(Parser)]
#[command(
    name = "clew",
    version,
    about = "Distributed tracing for services that talk over buses, TCP and HTTP"
)]
struct Cli {
    /// Address of the query API and UI: where `serve` listens and where the reading verbs ask.
    #[arg(long, env = "CLEW_HTTP_ADDR", global = true)]
    http_addr: Option<SocketAddr>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run everything in one process: OTLP receivers, embedded store, query API.
    Serve(ServeArgs),
    /// Run the embedded server with the built-in drone scenario and print its traces.
    Demo(demo::DemoArgs),
    /// Read one trace, or search for traces.
    #[command(subcommand)]
    Trace(TraceCommand),
    /// List services and their operations.
    Services {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Traces the lifecycle registry knows as still running or abandoned.
    #[command(subcommand)]
    Traces(client::TracesCommand),
    /// Operate the lifecycle registry.
    #[command(subcommand)]
    Registry(client::RegistryCommand),
    /// The per-host agent that APM language agents and clew's SDK send batches to.
    #[command(subcommand)]
    Agent(agent::AgentCommand),
    /// Load generators that measure a running system.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Time travel through a trace: step, snapshot, first fault, diff, signature, verify, bundle.
    Replay(replay::ReplayCommand),
}

#[derive(Args)]
struct ServeArgs {
    /// TOML config file (keys as the long flags, e.g. `data-dir = "/var/lib/clew"`).
    #[arg(long, env = "CLEW_CONFIG")]
    config: Option<PathBuf>,
    /// Directory of the embedded store.
    #[arg(long, env = "CLEW_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// OTLP/gRPC listen address [default: 127.0.0.1:4317].
    #[arg(long, env = "CLEW_OTLP_GRPC_ADDR")]
    otlp_grpc_addr: Option<SocketAddr>,
    /// OTLP/HTTP listen address [default: 127.0.0.1:4318].
    #[arg(long, env = "CLEW_OTLP_HTTP_ADDR")]
    otlp_http_addr: Option<SocketAddr>,
    /// Delete spans older than this, e.g. `7d`, `12h` [default: 7d].
    #[arg(long, env = "CLEW_RETENTION", value_parser = humantime::parse_duration)]
    retention: Option<Duration>,
    /// Spans accepted but not yet stored before clients are told to retry [default: 200000].
    #[arg(long, env = "CLEW_MAX_QUEUED_SPANS")]
    max_queued_spans: Option<usize>,
    /// Largest OTLP request in bytes [default: 16777216].
    #[arg(long, env = "CLEW_MAX_REQUEST_BYTES")]
    max_request_bytes: Option<usize>,
    /// Keep the trace lifecycle registry in Redis (`redis://host:port`, or
    /// `redis+cluster://h:p,h:p`) instead of in-process.
    #[arg(long = "redis", env = "CLEW_REDIS_URL", value_name = "URL")]
    redis_url: Option<String>,
    /// Prefix of the registry's Redis keys [default: clew:] (the seed's `sg:` works; a
    /// cluster needs a hash tag such as `{clew}:`).
    #[arg(long, env = "CLEW_KEY_PREFIX")]
    key_prefix: Option<String>,
    /// Traces unfinished after this long are marked orphaned [default: 1800s].
    #[arg(long, env = "CLEW_ORPHAN_THRESHOLD", value_parser = humantime::parse_duration)]
    orphan_threshold: Option<Duration>,
    /// Time between watchdog sweeps [default: 300s].
    #[arg(long, env = "CLEW_SWEEP_INTERVAL", value_parser = humantime::parse_duration)]
    sweep_interval: Option<Duration>,
    /// A trace is complete once its root span ended and nothing arrived for this long [default: 5s].
    #[arg(long, env = "CLEW_TRACE_QUIET_PERIOD", value_parser = humantime::parse_duration)]
    trace_quiet_period: Option<Duration>,
    /// The agent wire protocol's unix socket [default: DATA_DIR/agent.sock].
    #[arg(long, env = "CLEW_AGENT_SOCKET")]
    agent_socket: Option<PathBuf>,
    /// The agent wire protocol on TCP [default: 127.0.0.1:6590].
    #[arg(long, env = "CLEW_AGENT_TCP_ADDR")]
    agent_tcp_addr: Option<SocketAddr>,
}

#[derive(Subcommand)]
enum TraceCommand {
    /// Print a trace as a tree: numbered spans, parents, attributes, events, parallel branches.
    Show {
        /// Trace id (32 hex digits).
        id: String,
        /// Print the spans as JSON instead of a tree.
        #[arg(long)]
        json: bool,
        /// Show times as recorded, without clock-skew adjustment.
        #[arg(long)]
        no_skew_adjust: bool,
        /// Leave out attributes and events.
        #[arg(long)]
        brief: bool,
    },
    /// Find traces: newest first, filtered by service, operation, attributes, duration and time.
    Search(client::SearchArgs),
}

fn main() -> std::process::ExitCode {
    // Started as Scout's `core-agent` (a symlink or copy named so, or `clew core-agent …`).
    let mut args: Vec<String> = std::env::args().collect();
    let invoked_as = args
        .first()
        .and_then(|a| Path::new(a).file_name())
        .and_then(|n| n.to_str())
        .unwrap_or("");
    if invoked_as.starts_with("core-agent") {
        init_logging("info");
        return agent::core_agent_main(args.split_off(1));
    }
    if args.get(1).map(String::as_str) == Some("core-agent") {
        init_logging("info");
        return agent::core_agent_main(args.split_off(2));
    }
    let cli = Cli::parse();
    // Daemonizing forks, which is only safe before the runtime starts its threads.
    if let Command::Agent(agent::AgentCommand::Start(start)) = cli.command {
        init_logging_to("info", !start.daemonize);
        return match agent::start(start) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: {}", describe(&error));
                std::process::ExitCode::FAILURE
            }
        };
    }
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", describe(&error));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, leaving out causes a message already quotes
/// (library errors often include their source's text).
fn describe(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text = format!("{text}: {cause}");
        }
    }
    text
}

fn run(cli: Cli) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let http_addr = cli.http_addr;
    match cli.command {
        Command::Serve(args) => {
            init_logging("info");
            runtime.block_on(serve(args, http_addr))
        }
        command => {
            init_logging("warn");
            let api = client::Api::new(http_addr.unwrap_or_else(|| Config::default().http_addr));
            runtime.block_on(async move {
                match command {
                    Command::Trace(TraceCommand::Show {
                        id,
                        json,
                        no_skew_adjust,
                        brief,
                    }) => client::show_trace(&api, &id, json, !no_skew_adjust, brief).await,
                    Command::Trace(TraceCommand::Search(args)) => client::search(&api, &args).await,
                    Command::Services { json } => client::services(&api, json).await,
                    Command::Traces(command) => client::traces(&api, command).await,
                    Command::Registry(command) => client::registry(&api, command).await,
                    Command::Bench(bench) => bench::run(bench).await,
                    Command::Replay(command) => replay::run(&api, command).await,
                    Command::Agent(command) => agent::run(command).await,
                    Command::Demo(args) => demo::run(args, http_addr).await,
                    Command::Serve(_) => unreachable!("handled above"),
                }
            })
        }
    }
}

fn init_logging(default: &str) {
    init_logging_to(default, true);
}

/// Logs to stderr (a daemon's stderr is its log file, hence no colour codes there).
fn init_logging_to(default: &str, ansi: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CLEW_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .init();
}

async fn serve(args: ServeArgs, http_addr: Option<SocketAddr>) -> Result<()> {
    let overrides = ConfigOverrides {
        data_dir: args.data_dir,
        otlp_grpc_addr: args.otlp_grpc_addr,
        otlp_http_addr: args.otlp_http_addr,
        http_addr,
        retention: args.retention,
        max_queued_spans: args.max_queued_spans,
        max_request_bytes: args.max_request_bytes,
        redis_url: args.redis_url,
        key_prefix: args.key_prefix,
        orphan_threshold: args.orphan_threshold,
        sweep_interval: args.sweep_interval,
        trace_quiet_period: args.trace_quiet_period,
        agent_socket: args.agent_socket,
        agent_tcp_addr: args.agent_tcp_addr,
    };
    let config = Config::load(args.config.as_deref(), &overrides)?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let server = Server::start(&config).await?;
    let a = server.addresses.clone();
    // Scripts and tests read these lines to find the ports chosen for `:0`.
    println!("clew serving");
    println!("  data dir    {}", config.data_dir.display());
    println!("  OTLP/gRPC   {}", a.otlp_grpc);
    println!("  OTLP/HTTP   http://{}/v1/traces", a.otlp_http);
    println!("  query API   http://{}/api", a.http);
    for address in &a.agent {
        println!("  agent       {address}");
    }
    println!("  registry    {}", server.registry.backend_name());
    println!("ready");
    wait_for_signal().await;
    tracing::info!("stopping: storing what was accepted");
    server.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
