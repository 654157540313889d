//! The reading verbs: each asks a running server's native API (`/api/clew/…`).

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::Args;
use clew_model::Span;
use clew_model::tree::{SkewMode, TraceTree};
use clew_store::{Operation, TraceSummary};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::render::{RenderOptions, render_trace};

pub struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    pub fn new(addr: SocketAddr) -> Api {
        Api {
            base: format!("http://{addr}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("building the HTTP client"),
        }
    }

    /// POSTs to a native API path and returns its JSON answer.
    async fn post(&self, path: &str, query: &[(&str, String)]) -> Result<serde_json::Value> {
        let url = format!("{}{path}", self.base);
        let response = self.http.post(&url).query(query).send().await.with_context(|| {
            format!("cannot reach clew at {} (is `clew serve` running? point at it with --http-addr)", self.base)
        })?;
        let status = response.status();
        let body: serde_json::Value = response
            .json()
            .await
            .with_context(|| format!("unexpected answer from {url}"))?;
        if !status.is_success() {
            bail!(
                "clew answered {status}: {}",
                body["error"].as_str().unwrap_or("no message")
            );
        }
        Ok(body)
    }

    /// GETs a native API path; `Ok(None)` on 404 so callers can say what was not found.
    pub(crate) async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Option<T>> {
        let url = format!("{}{path}", self.base);
        let response = self.http.get(&url).query(query).send().await.with_context(|| {
            format!("cannot reach clew at {} (is `clew serve` running? point at it with --http-addr)", self.base)
        })?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let body = response.bytes().await?;
        if !status.is_success() {
            let message = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
            bail!("clew answered {status}: {message}");
        }
        Ok(Some(serde_json::from_slice(&body).with_context(|| {
            format!("unexpected answer from {url}")
        })?))
    }
}

/// A trace's entry in the lifecycle registry, as the native API returns it.
#[derive(Deserialize, serde::Serialize, Clone)]
pub struct Lifecycle {
    pub state: String,
    pub created_at_ms: u64,
    pub finished_at_ms: Option<u64>,
    pub orphaned_at_ms: Option<u64>,
    pub error: Option<String>,
}

impl Lifecycle {
    /// `COMPLETED`, `ERRORED`, or `ORPHANED` for a trace the watchdog gave up on.
    pub fn label(&self) -> &str {
        if self.orphaned_at_ms.is_some() {
            "ORPHANED"
        } else {
            &self.state
        }
    }

    fn describe(&self) -> String {
        let at = |ms: u64| {
            humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
        };
        let mut text = format!("{} (registered {}", self.label(), at(self.created_at_ms));
        if let Some(ms) = self.orphaned_at_ms {
            text.push_str(&format!(", marked orphaned {}", at(ms)));
        } else if let Some(ms) = self.finished_at_ms {
            text.push_str(&format!(", finished {}", at(ms)));
        }
        text.push(')');
        if let Some(error) = &self.error {
            text.push_str(&format!(": {error}"));
        }
        text
    }
}

#[derive(Deserialize)]
struct TraceResponse {
    spans: Vec<Span>,
    #[serde(default)]
    lifecycle: Option<Lifecycle>,
}

pub async fn show_trace(
    api: &Api,
    id: &str,
    json: bool,
    skew_adjust: bool,
    brief: bool,
) -> Result<()> {
    let trace_id: clew_model::TraceId = id
        .parse()
        .with_context(|| format!("{id:?} is not a trace id (expected 32 hex digits)"))?;
    let Some(trace) = api
        .get::<TraceResponse>(&format!("/api/clew/traces/{trace_id}"), &[])
        .await?
    else {
        bail!("trace {trace_id} not found");
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&trace.spans)?);
        return Ok(());
    }
    let mode = if skew_adjust {
        SkewMode::Adjust
    } else {
        SkewMode::Off
    };
    let tree = TraceTree::build(trace.spans, mode);
    let options = RenderOptions {
        color: std::io::stdout().is_terminal(),
        show_attributes: !brief,
        show_events: !brief,
        ..RenderOptions::default()
    };
    print!("{}", render_trace(&tree, &options));
    match &trace.lifecycle {
        Some(lifecycle) => println!("Lifecycle: {}", lifecycle.describe()),
        None => println!("Lifecycle: not tracked by this server's registry"),
    }
    Ok(())
}

#[derive(Args)]
pub struct SearchArgs {
    #[arg(long)]
    service: Option<String>,
    #[arg(long)]
    operation: Option<String>,
    /// Span kind: server, client, producer, consumer, internal.
    #[arg(long)]
    kind: Option<String>,
    /// Attribute filter `key=value`; repeat for several (all must match one span).
    #[arg(long = "attr", value_name = "KEY=VALUE")]
    attributes: Vec<String>,
    /// Lifecycle state: active, in_progress, completed, errored, orphaned.
    #[arg(long)]
    state: Option<String>,
    /// Shortest matching span, e.g. `10ms`.
    #[arg(long, value_parser = humantime::parse_duration)]
    min_duration: Option<Duration>,
    /// Longest matching span, e.g. `2s`.
    #[arg(long, value_parser = humantime::parse_duration)]
    max_duration: Option<Duration>,
    /// Only spans that started within this much of now, e.g. `1h` [default: 2days].
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2days")]
    since: Duration,
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Deserialize, serde::Serialize)]
struct SearchResult {
    #[serde(flatten)]
    summary: TraceSummary,
    #[serde(default)]
    lifecycle: Option<Lifecycle>,
}

#[derive(Deserialize)]
struct SearchResponse {
    traces: Vec<SearchResult>,
}

pub async fn search(api: &Api, args: &SearchArgs) -> Result<()> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?;
    let mut query: Vec<(&str, String)> = vec![
        ("limit", args.limit.to_string()),
        (
            "start",
            now.saturating_sub(args.since).as_nanos().to_string(),
        ),
        ("end", now.as_nanos().to_string()),
    ];
    let optional = [
        ("service", &args.service),
        ("operation", &args.operation),
        ("kind", &args.kind),
        ("state", &args.state),
    ];
    for (key, value) in optional {
        if let Some(value) = value {
            query.push((key, value.clone()));
        }
    }
    for attribute in &args.attributes {
        if !attribute.contains('=') {
            bail!("--attr takes KEY=VALUE, got {attribute:?}");
        }
        query.push(("attr", attribute.clone()));
    }
    if let Some(d) = args.min_duration {
        query.push((
            "min_duration",
            humantime::format_duration(d).to_string().replace(' ', ""),
        ));
    }
    if let Some(d) = args.max_duration {
        query.push((
            "max_duration",
            humantime::format_duration(d).to_string().replace(' ', ""),
        ));
    }
    let response: SearchResponse = api
        .get("/api/clew/search", &query)
        .await?
        .unwrap_or(SearchResponse { traces: vec![] });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&response.traces)?);
        return Ok(());
    }
    if response.traces.is_empty() {
        println!("no traces found");
        return Ok(());
    }
    println!(
        "{:<32}  {:<23}  {:>10}  {:>5}  {:>6}  {:<11}  ROOT",
        "TRACE ID", "START (UTC)", "DURATION", "SPANS", "ERRORS", "STATE"
    );
    for result in &response.traces {
        let t = &result.summary;
        let state = result.lifecycle.as_ref().map_or("-", Lifecycle::label);
        let start =
            humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_nanos(t.start_unix_nano));
        let duration = Duration::from_nanos(t.end_unix_nano.saturating_sub(t.start_unix_nano));
        let services: Vec<&str> = t.services.iter().map(|(name, _)| name.as_str()).collect();
        println!(
            "{:<32}  {:<23}  {:>10}  {:>5}  {:>6}  {:<11}  {}: {}  [{}]",
            t.trace_id.to_string(),
            start.to_string().trim_end_matches('Z'),
            crate::render::format_duration(duration.as_nanos() as u64),
            t.span_count,
            t.error_count,
            state,
            t.root_service,
            t.root_operation,
            services.join(", ")
        );
    }
    Ok(())
}

#[derive(Deserialize, serde::Serialize)]
struct ServiceEntry {
    name: String,
    operations: Vec<Operation>,
}

#[derive(Deserialize)]
struct ServicesResponse {
    services: Vec<ServiceEntry>,
}

pub async fn services(api: &Api, json: bool) -> Result<()> {
    let response: ServicesResponse = api
        .get("/api/clew/services", &[])
        .await?
        .context("no services endpoint")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&response.services)?);
        return Ok(());
    }
    if response.services.is_empty() {
        println!("no services yet: send spans over OTLP to this server");
    }
    for service in &response.services {
        println!("{}", service.name);
        for op in &service.operations {
            println!("  {} ({})", op.name, op.kind);
        }
    }
    Ok(())
}

#[derive(clap::Subcommand)]
pub enum TracesCommand {
    /// Traces still running: registered, not yet completed or errored (oldest first).
    Active {
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Traces the watchdog marked orphaned: a worker never finished them (newest first).
    Orphans {
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Subcommand)]
pub enum RegistryCommand {
    /// Sweep for orphaned traces now, once, instead of waiting for the watchdog.
    Sweep {
        /// Required: a single sweep is the only kind this verb runs.
        #[arg(long, required = true)]
        once: bool,
        /// Age after which an unfinished trace counts as orphaned [default: the server's].
        #[arg(long, value_parser = humantime::parse_duration)]
        threshold: Option<Duration>,
        #[arg(long)]
        json: bool,
    },
}

fn print_json(value: &serde_json::Value) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn format_ms(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

pub async fn traces(api: &Api, command: TracesCommand) -> Result<()> {
    match command {
        TracesCommand::Active { limit, json } => {
            let page: serde_json::Value = api
                .get(
                    "/api/clew/lifecycle/active",
                    &[("limit", limit.to_string())],
                )
                .await?
                .context("this server keeps no lifecycle registry")?;
            if json {
                return print_json(&page["traces"]);
            }
            let traces = page["traces"].as_array().cloned().unwrap_or_default();
            if traces.is_empty() {
                println!("no active traces");
            }
            for trace in traces {
                println!(
                    "{}  registered {}",
                    trace["id"].as_str().unwrap_or("?"),
                    format_ms(trace["created_at_ms"].as_u64().unwrap_or(0))
                );
            }
            Ok(())
        }
        TracesCommand::Orphans { limit, json } => {
            let body: serde_json::Value = api
                .get(
                    "/api/clew/lifecycle/orphans",
                    &[("limit", limit.to_string())],
                )
                .await?
                .context("this server keeps no lifecycle registry")?;
            if json {
                return print_json(&body["traces"]);
            }
            let traces = body["traces"].as_array().cloned().unwrap_or_default();
            if traces.is_empty() {
                println!("no orphaned traces");
            }
            for trace in traces {
                println!(
                    "{}  registered {}  orphaned {}  ({})",
                    trace["id"].as_str().unwrap_or("?"),
                    format_ms(trace["created_at_ms"].as_u64().unwrap_or(0)),
                    format_ms(trace["orphaned_at_ms"].as_u64().unwrap_or(0)),
                    trace["metadata"]["service"]
                        .as_str()
                        .unwrap_or("unknown service"),
                );
            }
            Ok(())
        }
    }
}

pub async fn registry(api: &Api, command: RegistryCommand) -> Result<()> {
    let RegistryCommand::Sweep {
        once: _,
        threshold,
        json,
    } = command;
    let mut query = Vec::new();
    if let Some(threshold) = threshold {
        query.push(("threshold", format!("{}ms", threshold.as_millis())));
    }
    let report = api.post("/api/clew/lifecycle/sweep", &query).await?;
    if json {
        return print_json(&report);
    }
    let orphaned = report["orphaned"].as_array().cloned().unwrap_or_default();
    println!(
        "swept: {} orphaned, {} expired entries removed, {} already finished",
        orphaned.len(),
        report["expired"],
        report["finished"]
    );
    for orphan in orphaned {
        println!("  orphaned {}", orphan["id"].as_str().unwrap_or("?"));
    }
    Ok(())
}
