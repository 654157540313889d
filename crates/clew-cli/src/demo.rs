//! `clew demo`: the embedded server plus the built-in drone scenario.
//!
//! It starts the same all-in-one server as `clew serve`, runs the six services of
//! `clew-demo` against its OTLP port, waits until both traces are stored in full, prints
//! them as trees and keeps serving (the UI shows them) until Ctrl-C, or exits with
//! `--once`. The store is the normal data directory unless `--data-dir` says otherwise,
//! so the demo's traces are still there for a later `clew serve`.
//!
//! `--processes` starts each service as `clew demo service NAME …` (hidden): the same
//! binary, so nothing else needs to be installed.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use clew_demo::{
    DEFAULT_SEED, DESTROYED_EXIT_CODE, Export, ExportProtocol, Fault, ProcessLauncher, Scenario,
    ScenarioConfig, Service, ServiceExit, ServiceProcess, TraceIds, expected_span_counts,
    run_service_process,
};
use clew_model::tree::{SkewMode, TraceTree};
use clew_model::{Span, TraceId};
use clew_server::{Config, ConfigOverrides, Server};
use clew_store::SpanStore;

use crate::render::{RenderOptions, render_trace};

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DemoArgs {
    #[command(subcommand)]
    internal: Option<Internal>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Internal {
    /// One service of the scenario as its own process (what `--processes` starts).
    #[command(hide = true)]
    Service(ServiceArgs),
}

#[derive(Args)]
struct RunArgs {
    /// TOML config file, as for `clew serve`.
    #[arg(long, env = "CLEW_CONFIG")]
    config: Option<PathBuf>,
    /// Directory of the embedded store [default: the one `clew serve` uses, so the
    /// demo's traces stay browsable].
    #[arg(long, env = "CLEW_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// OTLP/gRPC listen address [default: 127.0.0.1:4317].
    #[arg(long, env = "CLEW_OTLP_GRPC_ADDR")]
    otlp_grpc_addr: Option<SocketAddr>,
    /// OTLP/HTTP listen address [default: 127.0.0.1:4318].
    #[arg(long, env = "CLEW_OTLP_HTTP_ADDR")]
    otlp_http_addr: Option<SocketAddr>,
    /// The agent wire protocol on TCP [default: 127.0.0.1:6590].
    #[arg(long, env = "CLEW_AGENT_TCP_ADDR")]
    agent_tcp_addr: Option<SocketAddr>,
    /// The agent wire protocol's unix socket [default: DATA_DIR/agent.sock].
    #[arg(long, env = "CLEW_AGENT_SOCKET")]
    agent_socket: Option<PathBuf>,
    /// Run the services' pub/sub over this Redis (`redis://127.0.0.1:6379`) instead of
    /// an in-process bus; the lifecycle registry lives there too.
    #[arg(long = "redis", env = "CLEW_REDIS_URL", value_name = "URL")]
    redis_url: Option<String>,
    /// Prefix of the registry's Redis keys [default: clew:].
    #[arg(long, env = "CLEW_KEY_PREFIX")]
    key_prefix: Option<String>,
    /// Positions, headings and distances come from this seed: the same seed, the same story.
    #[arg(long, default_value_t = DEFAULT_SEED)]
    seed: u64,
    /// Exit after printing the traces instead of serving them until Ctrl-C.
    #[arg(long)]
    once: bool,
    /// Run each service as its own OS process (needs --redis).
    #[arg(long)]
    processes: bool,
    /// Break something on purpose: `ares-down` (ares refuses the prayers) or
    /// `lost-death-notice` (orlan's death notice is never delivered). Repeatable.
    #[arg(long = "fault", value_name = "NAME")]
    faults: Vec<Fault>,
    /// How the services send their spans to the server: `grpc` or `http` (OTLP), or
    /// `agent` (the agent wire protocol on its unix socket, one BatchCommand per
    /// message handler).
    #[arg(
        long,
        alias = "otlp-protocol",
        default_value = "grpc",
        value_name = "PROTOCOL"
    )]
    export: ExportProtocol,
}

#[derive(Args)]
struct ServiceArgs {
    service: Service,
    #[arg(long)]
    seed: u64,
    #[arg(long = "fault")]
    faults: Vec<Fault>,
    #[arg(long = "redis")]
    redis_url: String,
    #[arg(long)]
    export_endpoint: String,
    #[arg(long, default_value = "grpc")]
    export: ExportProtocol,
    #[arg(long)]
    ares_addr: Option<SocketAddr>,
}

/// How long the services get to tell their story, and the store to receive it.
const STORY_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

pub async fn run(args: DemoArgs, http_addr: Option<SocketAddr>) -> Result<()> {
    match args.internal {
        Some(Internal::Service(service)) => {
            run_service_process(ServiceProcess {
                service: service.service,
                seed: service.seed,
                faults: service.faults,
                redis_url: service.redis_url,
                export: Export {
                    endpoint: service.export_endpoint,
                    protocol: service.export,
                },
                ares_addr: service.ares_addr,
            })
            .await
        }
        None => run_demo(args.run, http_addr).await,
    }
}

async fn run_demo(args: RunArgs, http_addr: Option<SocketAddr>) -> Result<()> {
    if args.processes && args.redis_url.is_none() {
        bail!(clew_demo::DemoError::ProcessesNeedRedis);
    }
    let overrides = ConfigOverrides {
        data_dir: args.data_dir.clone(),
        otlp_grpc_addr: args.otlp_grpc_addr,
        otlp_http_addr: args.otlp_http_addr,
        http_addr,
        redis_url: args.redis_url.clone(),
        key_prefix: args.key_prefix.clone(),
        agent_socket: args.agent_socket.clone(),
        agent_tcp_addr: args.agent_tcp_addr,
        ..ConfigOverrides::default()
    };
    let config = Config::load(args.config.as_deref(), &overrides)?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let server = Server::start(&config).await.context(
        "clew demo runs its own server (stop `clew serve`, or give the demo other addresses)",
    )?;
    let outcome = tell_the_story(&server, &config, &args).await;
    if let (Ok(ids), false) = (&outcome, args.once) {
        let ui = format!("http://{}", server.addresses.http);
        println!();
        println!("Browse them: {ui}/trace/{}", ids.lock_request);
        println!("             {ui}/trace/{}", ids.intercept_execution);
        println!("Serving the UI and API at {ui}/ until Ctrl-C.");
        wait_for_signal().await;
    }
    server.shutdown().await;
    outcome.map(|_| ())
}

async fn tell_the_story(server: &Server, config: &Config, args: &RunArgs) -> Result<TraceIds> {
    let addresses = &server.addresses;
    let endpoint = match args.export {
        ExportProtocol::Grpc => format!("http://{}", reachable(addresses.otlp_grpc)),
        ExportProtocol::Http => format!("http://{}", reachable(addresses.otlp_http)),
        ExportProtocol::Agent => addresses
            .agent
            .first()
            .context("--export agent needs the agent listener, and it is disabled")?
            .to_string(),
    };
    let processes = if args.processes {
        Some(ProcessLauncher {
            program: std::env::current_exe()
                .context("finding the clew binary to start the services")?,
            args: vec!["demo".into(), "service".into()],
        })
    } else {
        None
    };
    println!("clew demo: the drone-intercept scenario");
    println!("  seed        {}", args.seed);
    println!(
        "  bus         {}",
        config
            .redis_url
            .as_deref()
            .map_or("in-process".to_string(), |url| format!("redis {url}"))
    );
    println!(
        "  services    {}",
        if args.processes {
            "one OS process each"
        } else {
            "tasks in this process"
        }
    );
    if !args.faults.is_empty() {
        let faults: Vec<&str> = args.faults.iter().map(|f| f.as_str()).collect();
        println!("  faults      {}", faults.join(", "));
    }
    println!("  data dir    {}", config.data_dir.display());
    match args.export {
        ExportProtocol::Agent => println!("  export      agent protocol {endpoint}"),
        otlp => println!("  export      OTLP/{} {endpoint}", otlp.as_str()),
    }
    println!("  UI and API  http://{}/", addresses.http);

    let mut scenario = Scenario::start(ScenarioConfig {
        seed: args.seed,
        faults: args.faults.clone(),
        redis_url: config.redis_url.clone(),
        processes,
        export: Export {
            endpoint,
            protocol: args.export,
        },
    })
    .await?;
    if let Some(ares) = scenario.ares_addr() {
        println!("  ares        tcp {ares}");
    }
    let ids = scenario.trace_ids(STORY_TIMEOUT).await?;
    let expected = expected_span_counts(&args.faults);
    let targets = [
        (ids.lock_request, expected[0].1),
        (ids.intercept_execution, expected[1].1),
    ];
    let arrived = wait_for_spans(&server.store, &targets, STORY_TIMEOUT).await;
    let exits = scenario.stop(STOP_TIMEOUT).await?;

    let color = std::io::stdout().is_terminal();
    let mut missing = Vec::new();
    for ((id, want), title) in targets
        .iter()
        .zip(["Lock request trace", "Intercept execution trace"])
    {
        let spans = read_trace(&server.store, *id).await?;
        println!();
        println!("{title}: {id}");
        print_tree(spans.clone(), color);
        if spans.len() < *want {
            missing.push(format!(
                "{title} {id} has {} of its {want} spans",
                spans.len()
            ));
        }
    }
    println!();
    print_summary(&ids, &exits, &args.faults);
    if !arrived || !missing.is_empty() {
        bail!(
            "the story did not arrive in full within {} s: {}",
            STORY_TIMEOUT.as_secs(),
            missing.join("; ")
        );
    }
    Ok(ids)
}

fn print_tree(spans: Vec<Span>, color: bool) {
    let tree = TraceTree::build(spans, SkewMode::Adjust);
    let options = RenderOptions {
        color,
        ..RenderOptions::default()
    };
    print!("{}", render_trace(&tree, &options));
}

fn print_summary(ids: &TraceIds, exits: &[ServiceExit], faults: &[Fault]) {
    println!(
        "The striker's flight_mission is trace {} (execute_intercept links to it).",
        ids.flight
    );
    let mut destroyed = Vec::new();
    for exit in exits.iter().filter(|e| e.code == DESTROYED_EXIT_CODE) {
        let status = exit
            .os_status
            .map(|s| format!(" (process status {s}: exit codes keep 8 bits)"))
            .unwrap_or_default();
        println!("{} exited with code {}{status}", exit.service, exit.code);
        destroyed.push(exit.service.as_str());
    }
    let result = match destroyed.len() {
        2 => "mission success, 2 targets eliminated".to_string(),
        0 if faults.contains(&Fault::AresDown) => {
            "no strike: ares refused the prayers, both drones are still flying".to_string()
        }
        0 => "no target eliminated".to_string(),
        _ => format!(
            "{} eliminated, {} survived (its death notice was never delivered)",
            destroyed.join(", "),
            ["striker", "orlan"]
                .iter()
                .filter(|d| !destroyed.contains(d))
                .copied()
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    println!("Result: {result}");
}

/// Polls the store until each trace has at least its expected number of spans;
/// `false` if `within` ran out first.
async fn wait_for_spans(
    store: &Arc<dyn SpanStore>,
    targets: &[(TraceId, usize)],
    within: Duration,
) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let mut complete = true;
        for (id, want) in targets {
            let have = read_trace(store, *id).await.map_or(0, |spans| spans.len());
            complete &= have >= *want;
        }
        if complete {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn read_trace(store: &Arc<dyn SpanStore>, id: TraceId) -> Result<Vec<Span>> {
    let store = Arc::clone(store);
    let spans = tokio::task::spawn_blocking(move || store.trace(id))
        .await
        .context("reading the store")?
        .with_context(|| format!("reading trace {id}"))?;
    Ok(spans.unwrap_or_default())
}

/// A listener on 0.0.0.0 is reached through loopback.
fn reachable(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
