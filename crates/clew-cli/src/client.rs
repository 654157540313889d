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

    /// GETs a native API path; `Ok(None)` on 404 so callers can say what was not found.
    async fn get<T: DeserializeOwned>(
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

#[derive(Deserialize)]
struct TraceResponse {
    spans: Vec<Span>,
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

#[derive(Deserialize)]
struct SearchResponse {
    traces: Vec<TraceSummary>,
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
        "{:<32}  {:<23}  {:>10}  {:>5}  {:>6}  ROOT",
        "TRACE ID", "START (UTC)", "DURATION", "SPANS", "ERRORS"
    );
    for t in &response.traces {
        let start =
            humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_nanos(t.start_unix_nano));
        let duration = Duration::from_nanos(t.end_unix_nano.saturating_sub(t.start_unix_nano));
        let services: Vec<&str> = t.services.iter().map(|(name, _)| name.as_str()).collect();
        println!(
            "{:<32}  {:<23}  {:>10}  {:>5}  {:>6}  {}: {}  [{}]",
            t.trace_id.to_string(),
            start.to_string().trim_end_matches('Z'),
            crate::render::format_duration(duration.as_nanos() as u64),
            t.span_count,
            t.error_count,
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
