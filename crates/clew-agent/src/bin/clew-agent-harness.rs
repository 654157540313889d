//! A stand-alone agent for clew-agent's own lifecycle tests, so they can start, kill and
//! stop real processes before the `clew` binary wires the agent in. Not installed for
//! users: `clew agent` is the command they run.
//!
//! Usage:
//!   clew-agent-harness start DATA_DIR [--daemonize] [--tcp ADDR] [--no-socket] [--otlp URL]
//!   clew-agent-harness core-agent DATA_DIR start --daemonize true --socket PATH ...
//!   clew-agent-harness stop DATA_DIR
//!   clew-agent-harness status DATA_DIR
//!   clew-agent-harness hang-mid-request ADDRESS   (a client that dies mid-request when killed)
//!
//! Without `--otlp`, spans go to `DATA_DIR/spans.jsonl`, one JSON span per line.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clew_agent::compat::{CoreAgentStart, EXIT_ALREADY_RUNNING};
use clew_agent::{
    AgentAddress, AgentConfig, DaemonPaths, ForwarderConfig, OtlpForwarder, SinkError, SpanSink,
    StartOptions, StartOutcome, StopOutcome, Timestamp,
};
use clew_model::Span;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CLEW_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<ExitCode, String> {
    let (verb, rest) = args.split_first().ok_or("missing verb")?;
    match verb.as_str() {
        "start" => {
            let (data_dir, flags) = rest.split_first().ok_or("missing DATA_DIR")?;
            let data_dir = absolute(data_dir);
            let mut config = AgentConfig::in_data_dir(&data_dir);
            config.tcp_addr = None;
            let mut daemonize = false;
            let mut otlp = None;
            let mut flags = flags.iter();
            while let Some(flag) = flags.next() {
                match flag.as_str() {
                    "--daemonize" => daemonize = true,
                    "--no-socket" => config.unix_socket = None,
                    "--tcp" => {
                        let addr = flags.next().ok_or("--tcp needs an address")?;
                        config.tcp_addr = Some(addr.parse().map_err(|e| format!("{e}"))?);
                    }
                    "--otlp" => otlp = Some(flags.next().ok_or("--otlp needs a URL")?.clone()),
                    other => return Err(format!("unknown flag {other}")),
                }
            }
            let paths = DaemonPaths::for_config(&data_dir, &config);
            start(config, paths, daemonize, &data_dir, otlp, false)
        }
        "core-agent" => {
            let (data_dir, core_args) = rest.split_first().ok_or("missing DATA_DIR")?;
            let data_dir = absolute(data_dir);
            let parsed =
                CoreAgentStart::parse(core_args.iter().cloned()).map_err(|e| e.to_string())?;
            let paths = parsed.daemon_paths(&data_dir);
            start(
                parsed.agent_config(),
                paths,
                parsed.daemonize,
                &data_dir,
                None,
                true,
            )
        }
        "stop" => {
            let data_dir = absolute(rest.first().ok_or("missing DATA_DIR")?);
            let paths = default_paths(&data_dir);
            match clew_agent::stop_agent(&paths, Duration::from_secs(30))
                .map_err(|e| e.to_string())?
            {
                StopOutcome::Stopped { pid } => println!("stopped agent {pid}"),
                StopOutcome::NotRunning { stale_pid } => {
                    println!("no agent running (stale pid file: {stale_pid:?})")
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        "status" => {
            let data_dir = absolute(rest.first().ok_or("missing DATA_DIR")?);
            let mut config = AgentConfig::in_data_dir(&data_dir);
            config.tcp_addr = None;
            let status = clew_agent::agent_status(&default_paths(&data_dir), &config.addresses())
                .map_err(|e| e.to_string())?;
            println!(
                "running={} pid={:?} answering={}",
                status.running,
                status.pid,
                status.answering.iter().filter(|(_, v)| v.is_some()).count()
            );
            Ok(if status.running {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        "hang-mid-request" => {
            let address: AgentAddress = rest
                .first()
                .ok_or("missing ADDRESS")?
                .parse()
                .map_err(|e| format!("{e}"))?;
            hang_mid_request(&address)
        }
        other => Err(format!("unknown verb {other}")),
    }
}

fn absolute(path: &str) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| PathBuf::from(path))
}

fn default_paths(data_dir: &Path) -> DaemonPaths {
    let mut config = AgentConfig::in_data_dir(data_dir);
    config.tcp_addr = None;
    DaemonPaths::for_config(data_dir, &config)
}

fn start(
    config: AgentConfig,
    paths: DaemonPaths,
    daemonize: bool,
    data_dir: &Path,
    otlp: Option<String>,
    core_agent_exit_codes: bool,
) -> Result<ExitCode, String> {
    let spans_file = data_dir.join("spans.jsonl");
    let spool_dir = data_dir.join("agent-spool");
    let options = StartOptions {
        config,
        paths,
        daemonize,
        startup_timeout: Duration::from_secs(20),
        hook: None,
    };
    let outcome = clew_agent::start_agent(options, move || {
        let sink: Arc<dyn SpanSink> = match otlp {
            Some(endpoint) => Arc::new(
                OtlpForwarder::start(ForwarderConfig::new(endpoint, spool_dir))
                    .map_err(|e| e.to_string())?,
            ),
            None => Arc::new(JsonLinesSink::open(&spans_file)?),
        };
        Ok(sink)
    })
    .map_err(|e| e.to_string())?;
    match outcome {
        StartOutcome::Started { pid } => {
            println!("started agent {pid}");
            Ok(ExitCode::SUCCESS)
        }
        StartOutcome::AlreadyRunning { pid } => {
            println!("agent already running (pid {pid:?})");
            Ok(if core_agent_exit_codes {
                ExitCode::from(EXIT_ALREADY_RUNNING)
            } else {
                ExitCode::SUCCESS
            })
        }
        StartOutcome::Stopped(report) => {
            println!(
                "agent stopped: {} spans delivered, {} dropped",
                report.spans_delivered, report.spans_dropped
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

struct JsonLinesSink {
    file: Mutex<std::fs::File>,
}

impl JsonLinesSink {
    fn open(path: &Path) -> Result<JsonLinesSink, String> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(JsonLinesSink {
            file: Mutex::new(file),
        })
    }
}

#[async_trait::async_trait]
impl SpanSink for JsonLinesSink {
    async fn send(&self, spans: &[Span]) -> Result<(), SinkError> {
        let mut text = String::new();
        for span in spans {
            text.push_str(
                &serde_json::to_string(span).map_err(|e| SinkError::Rejected(e.to_string()))?,
            );
            text.push('\n');
        }
        let mut file = self.file.lock().expect("sink file lock");
        file.write_all(text.as_bytes())
            .and_then(|()| file.flush())
            .map_err(|e| SinkError::Retryable(e.to_string()))
    }
}

/// Registers, opens a request with a finished and an unfinished span, prints `sent` once
/// the agent answered everything, then waits to be killed.
fn hang_mid_request(address: &AgentAddress) -> Result<ExitCode, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let mut client = clew_agent::AgentClient::connect(address)
            .await
            .map_err(|e| e.to_string())?;
        client
            .register("doomed-worker", Some("test-host"), "rust")
            .await
            .map_err(|e| e.to_string())?;
        let t0 = Timestamp::now().unix_nanos();
        let at = |micros: u64| Timestamp(t0 + micros * 1_000).to_string();
        for message in [
            serde_json::json!({"StartRequest": {"timestamp": at(0), "request_id": "req-doomed"}}),
            serde_json::json!({"TagRequest": {"timestamp": at(0), "request_id": "req-doomed", "tag": "path", "value": "/checkout"}}),
            serde_json::json!({"StartSpan": {"timestamp": at(10), "request_id": "req-doomed", "span_id": "span-ctrl", "parent_id": null, "operation": "Controller/checkout"}}),
            serde_json::json!({"StartSpan": {"timestamp": at(20), "request_id": "req-doomed", "span_id": "span-sql", "parent_id": "span-ctrl", "operation": "SQL/Query"}}),
            serde_json::json!({"TagSpan": {"timestamp": at(20), "request_id": "req-doomed", "span_id": "span-sql", "tag": "db.statement", "value": "SELECT * FROM carts"}}),
            serde_json::json!({"StopSpan": {"timestamp": at(30), "request_id": "req-doomed", "span_id": "span-sql"}}),
            serde_json::json!({"StartSpan": {"timestamp": at(40), "request_id": "req-doomed", "span_id": "span-pay", "parent_id": "span-ctrl", "operation": "HTTP/POST"}}),
        ] {
            let reply = client.request_json(&message).await.map_err(|e| e.to_string())?;
            if reply.get("Failure").is_some() {
                return Err(format!("agent refused {message}: {reply}"));
            }
        }
        println!("sent");
        std::io::stdout().flush().map_err(|e| e.to_string())?;
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok(ExitCode::SUCCESS)
    })
}
