//! `clew bench agent`: spans per second through the agent protocol, and the latency of
//! one `BatchCommand` round trip.
//!
//! Each client opens its own connection, registers once, then loops: build one request's
//! commands (StartRequest, N nested spans each with a tag, FinishRequest) with fresh ids,
//! send them as one `BatchCommand`, and wait for the agent's reply. Only acknowledged
//! requests count; a request carries N spans plus the span for the request itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use clew_agent::{AgentAddress, AgentClient, Command, RequestCommands, Timestamp};
use serde::Serialize;
use tokio::task::JoinSet;

use super::stats::{Latency, micros, ms, thousands};

#[derive(Args)]
pub struct AgentArgs {
    /// The agent to load: `tcp://HOST:PORT` or a unix socket path.
    #[arg(long, default_value = "tcp://127.0.0.1:6590")]
    pub address: AgentAddress,
    /// Clients, each on its own connection with one `BatchCommand` in flight.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// How long to send, e.g. `20s`, `2m`.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Spans per request, nested one inside the other, under the request's own span.
    #[arg(long, default_value_t = 20)]
    pub spans_per_request: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct AgentReport {
    pub address: String,
    pub clients: usize,
    pub spans_per_request: usize,
    /// Spans stored per request: the nested spans plus the request's root span.
    pub spans_per_batch: usize,
    pub commands_per_batch: usize,
    pub seconds: f64,
    pub requests: u64,
    pub spans: u64,
    pub requests_per_second: f64,
    pub spans_per_second: f64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub latency: Latency,
}

impl AgentReport {
    fn human(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "agent {}: {} clients, {} spans per request ({} with the request's root, {} commands per BatchCommand), {:.1} s\n",
            self.address,
            self.clients,
            self.spans_per_request,
            self.spans_per_batch,
            self.commands_per_batch,
            self.seconds
        ));
        out.push_str(&format!(
            "  spans/s      {}\n  requests/s   {}\n  requests     {}  (spans {})\n",
            thousands(self.spans_per_second),
            thousands(self.requests_per_second),
            self.requests,
            self.spans
        ));
        out.push_str(&format!(
            "  latency      p50 {}  p99 {}  max {}  (BatchCommand round trip)\n",
            ms(self.latency.p50_ms),
            ms(self.latency.p99_ms),
            ms(self.latency.max_ms)
        ));
        out.push_str(&format!("  errors       {}\n", self.errors));
        if let Some(first) = &self.first_error {
            out.push_str(&format!("  first error  {first}\n"));
        }
        out
    }
}

pub async fn command(args: AgentArgs) -> Result<()> {
    if args.clients == 0 {
        bail!("--clients must be at least 1");
    }
    if args.spans_per_request == 0 {
        bail!("--spans-per-request must be at least 1");
    }
    let report = run(&args).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.human());
    }
    Ok(())
}

struct ClientResult {
    requests: u64,
    latencies_us: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
}

async fn run(args: &AgentArgs) -> Result<AgentReport> {
    // Connect and register every client before the clock starts.
    let mut clients = Vec::with_capacity(args.clients);
    for i in 0..args.clients {
        let mut client = AgentClient::connect(&args.address)
            .await
            .with_context(|| format!("client {i}"))?;
        client
            .register("clew-bench-agent", Some("bench-host"), "rust")
            .await
            .with_context(|| format!("client {i}: Register"))?;
        clients.push(client);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for mut client in clients {
        let stop = stop.clone();
        let spans = args.spans_per_request;
        tasks.spawn(async move {
            let mut ids = RequestIds::new(rand::random());
            let mut result = ClientResult {
                requests: 0,
                latencies_us: Vec::new(),
                errors: 0,
                first_error: None,
            };
            while !stop.load(Ordering::Relaxed) {
                let commands = build_request(&mut ids, spans, Timestamp::now());
                let sent = Instant::now();
                match client.send_batch(commands).await {
                    Ok(()) => {
                        result.latencies_us.push(micros(sent.elapsed()));
                        result.requests += 1;
                    }
                    Err(e) => {
                        result.errors += 1;
                        if result.first_error.is_none() {
                            result.first_error = Some(e.to_string());
                        }
                        // A failed exchange may leave the connection mid-frame.
                        break;
                    }
                }
            }
            result
        });
    }
    tokio::time::sleep(args.duration).await;
    stop.store(true, Ordering::Relaxed);

    let mut requests = 0;
    let mut errors = 0;
    let mut first_error = None;
    let mut latencies = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let result = joined.context("a client task panicked")?;
        requests += result.requests;
        errors += result.errors;
        if first_error.is_none() {
            first_error = result.first_error;
        }
        latencies.extend(result.latencies_us);
    }
    let seconds = started.elapsed().as_secs_f64();
    let spans_per_batch = args.spans_per_request + 1;
    let spans = requests * spans_per_batch as u64;
    Ok(AgentReport {
        address: args.address.to_string(),
        clients: args.clients,
        spans_per_request: args.spans_per_request,
        spans_per_batch,
        commands_per_batch: commands_per_request(args.spans_per_request),
        seconds,
        requests,
        spans,
        requests_per_second: requests as f64 / seconds,
        spans_per_second: spans as f64 / seconds,
        errors,
        first_error,
        latency: Latency::of_micros(&mut latencies),
    })
}

/// Fresh ids for each request of one client: a random salt per client and a counter, so
/// no two requests (and no two traces) share an id within a run or across clients.
struct RequestIds {
    salt: u64,
    next: u64,
}

impl RequestIds {
    fn new(salt: u64) -> RequestIds {
        RequestIds { salt, next: 0 }
    }

    /// A request id of 32 hex digits (the agent keeps it as the trace id) and the
    /// number that distinguishes this request's span ids.
    fn next_request(&mut self) -> (String, u64) {
        self.next += 1;
        (format!("{:016x}{:016x}", self.salt, self.next), self.next)
    }
}

/// StartRequest + (StartSpan, TagSpan, StopSpan) per span + FinishRequest.
fn commands_per_request(spans: usize) -> usize {
    2 + 3 * spans
}

/// One request's commands: `spans` spans, each nested in the one before, the first
/// directly under the request, each with one tag; timestamps 10 µs apart ending at `now`.
fn build_request(ids: &mut RequestIds, spans: usize, now: Timestamp) -> Vec<Command> {
    let (request_id, n) = ids.next_request();
    let step = 10_000u64;
    let total = step * (2 * spans as u64 + 2);
    let begin = now.unix_nanos().saturating_sub(total);
    let at = |tick: u64| Timestamp(begin + tick * step);
    let mut request = RequestCommands::start(request_id, at(0));
    let span_id = |i: usize| format!("{:08x}{:08x}", (ids.salt as u32) ^ (n as u32), i + 1);
    let mut parent: Option<String> = None;
    for i in 0..spans {
        let id = span_id(i);
        let depth = i as u64;
        request.span(
            id.clone(),
            parent.as_deref(),
            format!("bench/op{i}"),
            at(1 + depth),
            at(2 * spans as u64 + 1 - depth),
            [("bench.depth".to_string(), serde_json::Value::from(i))],
        );
        parent = Some(id);
    }
    request.finish(at(2 * spans as u64 + 2))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn request_id(commands: &[Command]) -> String {
        match &commands[0] {
            Command::StartRequest(start) => start.request_id.clone(),
            other => panic!("the first command is {}, not StartRequest", other.name()),
        }
    }

    #[test]
    fn each_request_has_fresh_ids_and_the_span_count() {
        let mut ids = RequestIds::new(0x1234_5678_9abc_def0);
        let now = Timestamp(1_800_000_000_000_000_000);
        let spans = 20;
        let mut request_ids = HashSet::new();
        for _ in 0..50 {
            let commands = build_request(&mut ids, spans, now);
            assert_eq!(commands.len(), commands_per_request(spans));
            let id = request_id(&commands);
            assert_eq!(id.len(), 32, "a request id becomes the trace id");
            assert!(request_ids.insert(id.clone()), "request id {id} reused");

            let mut span_ids = HashSet::new();
            let mut previous: Option<String> = None;
            let mut stops = 0;
            let mut tags = 0;
            for command in &commands {
                match command {
                    Command::StartSpan(start) => {
                        assert_eq!(start.request_id, id);
                        assert_eq!(start.span_id.len(), 16);
                        assert!(span_ids.insert(start.span_id.clone()));
                        assert_eq!(start.parent_id, previous, "spans nest in order");
                        previous = Some(start.span_id.clone());
                    }
                    Command::StopSpan(_) => stops += 1,
                    Command::TagSpan(_) => tags += 1,
                    _ => {}
                }
            }
            assert_eq!(span_ids.len(), spans);
            assert_eq!((stops, tags), (spans, spans));
            assert!(
                matches!(commands.last(), Some(Command::FinishRequest(f)) if f.request_id == id)
            );
        }
        // Another client (another salt) never repeats the first one's ids.
        let mut other = RequestIds::new(0x0fed_cba9_8765_4321);
        let id = request_id(&build_request(&mut other, spans, now));
        assert!(!request_ids.contains(&id));
    }
}
