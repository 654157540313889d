//! The OTLP load generator behind `clew bench ingest` and `clew bench compare`.
//!
//! Several connections, each with one request in flight, send pre-encoded batches as fast
//! as the receiver acknowledges them. Receivers that push back (gRPC UNAVAILABLE or
//! RESOURCE_EXHAUSTED, HTTP 429/503) get what the OTLP spec asks of an exporter: the same
//! request again after a short back-off. Only acknowledged spans count.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use bytes::{BufMut, Bytes};
use clap::Args;
use clew_otlp::ExportTraceServiceResponse;
use prost::Message;
use serde::Serialize;
use tokio::task::JoinSet;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;

use super::stats::{Latency, micros, ms, thousands};
use super::workload::{self, Template};

/// Where the load goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// OTLP/gRPC; holds the `http://host:port` URI tonic connects to.
    Grpc(String),
    /// OTLP/HTTP with protobuf bodies; holds the full URL.
    Http(String),
}

impl Endpoint {
    pub fn parse(text: &str) -> Result<Endpoint> {
        if let Some(authority) = text.strip_prefix("grpc://") {
            let authority = authority.trim_end_matches('/');
            if authority.is_empty() || authority.contains('/') {
                bail!("{text:?}: a gRPC endpoint is grpc://HOST:PORT, without a path");
            }
            return Ok(Endpoint::Grpc(format!("http://{authority}")));
        }
        if let Some(rest) = text.strip_prefix("http://") {
            // A bare host:port means the standard OTLP/HTTP traces path.
            return Ok(match rest.split_once('/') {
                Some((_, path)) if !path.is_empty() => Endpoint::Http(text.to_string()),
                _ => Endpoint::Http(format!("http://{}/v1/traces", rest.trim_end_matches('/'))),
            });
        }
        if text.starts_with("https://") {
            bail!(
                "{text:?}: the load generator speaks plain HTTP only (TLS would measure the cipher)"
            );
        }
        bail!(
            "{text:?} is not an endpoint: use grpc://HOST:PORT for OTLP/gRPC or \
             http://HOST:PORT/v1/traces for OTLP/HTTP"
        )
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Grpc(uri) => write!(f, "grpc://{}", uri.trim_start_matches("http://")),
            Endpoint::Http(url) => f.write_str(url),
        }
    }
}

/// The shape of the load, shared by `ingest` and `compare`.
#[derive(Args, Clone, Debug)]
pub struct LoadArgs {
    /// Connections, each with one request in flight.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// How long to send, e.g. `20s`, `2m`.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Spans per export request.
    #[arg(long, default_value_t = 500)]
    pub batch_spans: usize,
    /// Spans per trace (traces span several services, with parent/child links).
    #[arg(long, default_value_t = 10)]
    pub spans_per_trace: usize,
}

#[derive(Args)]
pub struct IngestArgs {
    /// `grpc://HOST:PORT` (OTLP/gRPC) or `http://HOST:PORT/v1/traces` (OTLP/HTTP, protobuf).
    #[arg(long, value_parser = Endpoint::parse)]
    pub endpoint: Endpoint,
    #[command(flatten)]
    pub load: LoadArgs,
    /// Stop after this many spans (rounded up to whole batches) instead of after
    /// `--duration`; use it to fill a server for `clew bench query`.
    #[arg(long)]
    pub total_spans: Option<u64>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub async fn command(args: IngestArgs) -> Result<()> {
    let stop = match args.total_spans {
        Some(0) => bail!("--total-spans must be at least 1"),
        Some(n) => Stop::Spans(n),
        None => Stop::After(args.load.duration),
    };
    let report = run(&args.endpoint, &args.load, stop, args.total_spans.is_some()).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.human());
    }
    Ok(())
}

#[derive(Debug, Clone, Copy)]
pub enum Stop {
    After(Duration),
    Spans(u64),
}

#[derive(Debug, Clone, Serialize)]
pub struct ErrorCount {
    pub count: u64,
    /// The first message of this kind, so the report says what went wrong.
    pub first: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct IngestReport {
    pub endpoint: String,
    pub connections: usize,
    pub batch_spans: usize,
    pub spans_per_trace: usize,
    pub request_bytes: usize,
    pub elapsed_secs: f64,
    pub spans_acknowledged: u64,
    pub spans_per_sec: f64,
    /// Requests the receiver accepted.
    pub requests: u64,
    pub requests_per_sec: f64,
    /// Latency of accepted requests (the attempt that succeeded).
    pub latency: Latency,
    /// Spans the receiver reported as rejected in an OTLP partial success.
    pub rejected_spans: u64,
    /// Attempts answered with a retryable error, then sent again after a back-off.
    pub retried: BTreeMap<String, ErrorCount>,
    /// Requests answered with an error that must not be retried; their spans are lost.
    pub failed: BTreeMap<String, ErrorCount>,
    /// Requests still being retried when the run's time was up.
    pub abandoned_requests: u64,
}

impl IngestReport {
    pub fn human(&self) -> String {
        let errors = |map: &BTreeMap<String, ErrorCount>| {
            if map.is_empty() {
                return "none".to_string();
            }
            map.iter()
                .map(|(kind, e)| format!("{kind} ×{} (first: {})", e.count, e.first))
                .collect::<Vec<_>>()
                .join("; ")
        };
        let mut out = format!(
            "ingest → {} ({} connections, {} spans/request ≈ {} bytes, {} spans/trace)\n",
            self.endpoint,
            self.connections,
            self.batch_spans,
            thousands(self.request_bytes as f64),
            self.spans_per_trace
        );
        out += &format!("  elapsed             {:.2} s\n", self.elapsed_secs);
        out += &format!(
            "  spans acknowledged  {:<12} {} spans/s\n",
            thousands(self.spans_acknowledged as f64),
            thousands(self.spans_per_sec)
        );
        out += &format!(
            "  requests            {:<12} {:.1} requests/s\n",
            thousands(self.requests as f64),
            self.requests_per_sec
        );
        out += &format!(
            "  request latency     p50 {}   p99 {}   max {}\n",
            ms(self.latency.p50_ms),
            ms(self.latency.p99_ms),
            ms(self.latency.max_ms)
        );
        out += &format!("  retried (retryable) {}\n", errors(&self.retried));
        out += &format!("  failed (dropped)    {}\n", errors(&self.failed));
        if self.rejected_spans > 0 {
            out += &format!(
                "  rejected spans      {} (OTLP partial success)\n",
                self.rejected_spans
            );
        }
        if self.abandoned_requests > 0 {
            out += &format!(
                "  abandoned at end    {} requests still retrying\n",
                self.abandoned_requests
            );
        }
        out
    }
}

/// No request accepted for this long means the receiver is down, not busy.
const GIVE_UP_AFTER: Duration = Duration::from_secs(15);
/// Non-retryable failures before any success mean the endpoint is wrong.
const FAILURES_BEFORE_GIVING_UP: u64 = 10;
const FIRST_BACKOFF: Duration = Duration::from_millis(25);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
const PROGRESS_EVERY: Duration = Duration::from_secs(10);
const WORKLOAD_SEED: u64 = 0xc1e3;

struct Shared {
    templates: Vec<Arc<Template>>,
    salt: u64,
    stop: Stop,
    next_send: AtomicU64,
    claimed_spans: AtomicU64,
    acked_spans: AtomicU64,
    accepted_any: AtomicBool,
    failures: AtomicU64,
}

#[derive(Default)]
struct ConnectionStats {
    acked: u64,
    rejected: u64,
    requests: u64,
    latencies: Vec<u64>,
    retried: BTreeMap<String, ErrorCount>,
    failed: BTreeMap<String, ErrorCount>,
    abandoned: u64,
}

/// Runs the load and reports what the receiver acknowledged.
pub async fn run(
    endpoint: &Endpoint,
    load: &LoadArgs,
    stop: Stop,
    progress: bool,
) -> Result<IngestReport> {
    if load.connections == 0 {
        bail!("--connections must be at least 1");
    }
    // A fixed seed: every run, and every receiver in a comparison, gets the same
    // batches; only ids (random salt) and times differ.
    let templates = workload::build_templates(
        workload::TEMPLATES,
        load.batch_spans,
        load.spans_per_trace,
        WORKLOAD_SEED,
        now_nanos(),
    )?;
    let request_bytes = templates.iter().map(|t| t.encoded_len()).sum::<usize>() / templates.len();
    let shared = Arc::new(Shared {
        templates,
        salt: rand::random(),
        stop,
        next_send: AtomicU64::new(0),
        claimed_spans: AtomicU64::new(0),
        acked_spans: AtomicU64::new(0),
        accepted_any: AtomicBool::new(false),
        failures: AtomicU64::new(0),
    });
    let mut senders = Vec::with_capacity(load.connections);
    for _ in 0..load.connections {
        senders.push(Sender::connect(endpoint).await?);
    }
    let started = Instant::now();
    let deadline = match stop {
        Stop::After(d) => Some(started + d),
        Stop::Spans(_) => None,
    };
    let mut tasks = JoinSet::new();
    for (i, sender) in senders.into_iter().enumerate() {
        tasks.spawn(connection(i, sender, shared.clone(), deadline));
    }
    let reporter = progress.then(|| tokio::spawn(report_progress(shared.clone(), started)));
    let mut total = ConnectionStats::default();
    let outcome = async {
        while let Some(joined) = tasks.join_next().await {
            let stats = joined.context("load generator task panicked")??;
            merge(&mut total, stats);
        }
        anyhow::Ok(())
    }
    .await;
    let elapsed = started.elapsed().as_secs_f64();
    if let Some(reporter) = reporter {
        reporter.abort();
    }
    if let Err(e) = outcome {
        tasks.abort_all();
        return Err(e.context(format!("sending to {endpoint}")));
    }
    Ok(IngestReport {
        endpoint: endpoint.to_string(),
        connections: load.connections,
        batch_spans: load.batch_spans,
        spans_per_trace: load.spans_per_trace,
        request_bytes,
        elapsed_secs: elapsed,
        spans_acknowledged: total.acked,
        spans_per_sec: total.acked as f64 / elapsed,
        requests: total.requests,
        requests_per_sec: total.requests as f64 / elapsed,
        latency: Latency::of_micros(&mut total.latencies),
        rejected_spans: total.rejected,
        retried: total.retried,
        failed: total.failed,
        abandoned_requests: total.abandoned,
    })
}

fn merge(total: &mut ConnectionStats, part: ConnectionStats) {
    total.acked += part.acked;
    total.rejected += part.rejected;
    total.requests += part.requests;
    total.abandoned += part.abandoned;
    total.latencies.extend(part.latencies);
    for (into, from) in [
        (&mut total.retried, part.retried),
        (&mut total.failed, part.failed),
    ] {
        for (kind, e) in from {
            into.entry(kind)
                .and_modify(|t| t.count += e.count)
                .or_insert(e);
        }
    }
}

fn count(map: &mut BTreeMap<String, ErrorCount>, kind: String, message: String) {
    map.entry(kind)
        .and_modify(|e| e.count += 1)
        .or_insert(ErrorCount {
            count: 1,
            first: message,
        });
}

async fn connection(
    index: usize,
    mut sender: Sender,
    shared: Arc<Shared>,
    deadline: Option<Instant>,
) -> Result<ConnectionStats> {
    let mut stats = ConnectionStats::default();
    let mut last_success = Instant::now();
    // Connections start at different templates so they do not send the same shape in step.
    let mut next_template = index;
    loop {
        let template = &shared.templates[next_template % shared.templates.len()];
        next_template += 1;
        let spans = template.spans() as u64;
        match shared.stop {
            Stop::After(_) if deadline.is_some_and(|d| Instant::now() >= d) => break,
            Stop::Spans(total)
                if shared.claimed_spans.fetch_add(spans, Ordering::Relaxed) >= total =>
            {
                break;
            }
            _ => {}
        }
        let send = shared.next_send.fetch_add(1, Ordering::Relaxed);
        let body = Bytes::from(template.stamp(send, shared.salt, now_nanos()));
        let mut backoff = FIRST_BACKOFF;
        loop {
            let started = Instant::now();
            match sender.send(body.clone()).await {
                Outcome::Accepted { rejected } => {
                    stats.latencies.push(micros(started.elapsed()));
                    stats.requests += 1;
                    stats.rejected += rejected;
                    let acked = spans.saturating_sub(rejected);
                    stats.acked += acked;
                    shared.acked_spans.fetch_add(acked, Ordering::Relaxed);
                    shared.accepted_any.store(true, Ordering::Relaxed);
                    last_success = Instant::now();
                    break;
                }
                Outcome::Retry {
                    kind,
                    message,
                    after,
                } => {
                    let described = format!("{kind}: {message}");
                    count(&mut stats.retried, kind, message);
                    if last_success.elapsed() > GIVE_UP_AFTER {
                        bail!(
                            "no request accepted for {GIVE_UP_AFTER:?}; last answer: {described}"
                        );
                    }
                    let pause = after.unwrap_or(backoff).min(MAX_BACKOFF * 2);
                    if deadline.is_some_and(|d| Instant::now() + pause >= d) {
                        stats.abandoned += 1;
                        break;
                    }
                    tokio::time::sleep(pause).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Outcome::Fail { kind, message } => {
                    let described = format!("{kind}: {message}");
                    count(&mut stats.failed, kind, message);
                    let failures = shared.failures.fetch_add(1, Ordering::Relaxed) + 1;
                    if failures >= FAILURES_BEFORE_GIVING_UP
                        && !shared.accepted_any.load(Ordering::Relaxed)
                    {
                        bail!(
                            "the endpoint rejected all of the first {failures} requests: {described}"
                        );
                    }
                    break;
                }
            }
        }
    }
    Ok(stats)
}

async fn report_progress(shared: Arc<Shared>, started: Instant) {
    let mut ticker = tokio::time::interval(PROGRESS_EVERY);
    ticker.tick().await;
    let (mut last_acked, mut last_secs) = (0u64, 0f64);
    loop {
        ticker.tick().await;
        let acked = shared.acked_spans.load(Ordering::Relaxed);
        let secs = started.elapsed().as_secs_f64();
        let rate = acked as f64 / secs;
        // The recent rate shows a store slowing down as it grows; the average hides it.
        let recent = (acked - last_acked) as f64 / (secs - last_secs);
        (last_acked, last_secs) = (acked, secs);
        let remaining = match shared.stop {
            Stop::Spans(total) if recent > 0.0 => {
                format!(
                    ", about {:.0} s to go",
                    total.saturating_sub(acked) as f64 / recent
                )
            }
            _ => String::new(),
        };
        eprintln!(
            "  {:>6.0} s  {} spans acknowledged, {} spans/s (last {} s: {} spans/s){remaining}",
            secs,
            thousands(acked as f64),
            thousands(rate),
            PROGRESS_EVERY.as_secs(),
            thousands(recent)
        );
    }
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

enum Outcome {
    Accepted {
        rejected: u64,
    },
    Retry {
        kind: String,
        message: String,
        after: Option<Duration>,
    },
    Fail {
        kind: String,
        message: String,
    },
}

/// One connection to the receiver.
enum Sender {
    Grpc(tonic::client::Grpc<Channel>),
    Http {
        client: reqwest::Client,
        url: String,
    },
}

const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

impl Sender {
    async fn connect(endpoint: &Endpoint) -> Result<Sender> {
        Ok(match endpoint {
            Endpoint::Grpc(uri) => {
                // One channel per connection: a tonic channel is one HTTP/2 connection, and
                // the point is to spread the load over several.
                let channel = tonic::transport::Endpoint::from_shared(uri.clone())?
                    .tcp_nodelay(true)
                    .timeout(REQUEST_TIMEOUT)
                    .connect()
                    .await
                    .with_context(|| {
                        format!("cannot connect to {endpoint}: is the receiver running?")
                    })?;
                Sender::Grpc(tonic::client::Grpc::new(channel))
            }
            Endpoint::Http(url) => Sender::Http {
                client: reqwest::Client::builder()
                    .pool_max_idle_per_host(1)
                    .tcp_nodelay(true)
                    .timeout(REQUEST_TIMEOUT)
                    .build()?,
                url: url.clone(),
            },
        })
    }

    async fn send(&mut self, body: Bytes) -> Outcome {
        match self {
            Sender::Grpc(grpc) => {
                if let Err(e) = grpc.ready().await {
                    return Outcome::Retry {
                        kind: "gRPC connection".to_string(),
                        message: e.to_string(),
                        after: None,
                    };
                }
                let request = tonic::Request::new(body);
                match grpc
                    .unary(
                        request,
                        PathAndQuery::from_static(EXPORT_PATH),
                        RawExportCodec,
                    )
                    .await
                {
                    Ok(response) => Outcome::Accepted {
                        rejected: rejected_spans(response.get_ref()),
                    },
                    Err(status) => grpc_outcome(&status),
                }
            }
            Sender::Http { client, url } => {
                let response = client
                    .post(url.as_str())
                    .header(reqwest::header::CONTENT_TYPE, "application/x-protobuf")
                    .body(body)
                    .send()
                    .await;
                let response = match response {
                    Ok(r) => r,
                    Err(e) => {
                        let kind = if e.is_timeout() {
                            "HTTP timeout"
                        } else {
                            "HTTP connection"
                        };
                        return Outcome::Retry {
                            kind: kind.to_string(),
                            message: e.to_string(),
                            after: None,
                        };
                    }
                };
                let status = response.status();
                let after = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_retry_after);
                let body = response.bytes().await.unwrap_or_default();
                http_outcome(status.as_u16(), after, &body)
            }
        }
    }
}

fn rejected_spans(response: &ExportTraceServiceResponse) -> u64 {
    response
        .partial_success
        .as_ref()
        .map_or(0, |p| u64::try_from(p.rejected_spans).unwrap_or(0))
}

/// The OTLP spec's retryable gRPC codes; anything else means the data was refused.
fn grpc_outcome(status: &tonic::Status) -> Outcome {
    use tonic::Code;
    let kind = format!("gRPC {:?}", status.code());
    let message = status.message().to_string();
    match status.code() {
        Code::Unavailable
        | Code::ResourceExhausted
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::Cancelled
        | Code::OutOfRange
        | Code::DataLoss => Outcome::Retry {
            kind,
            message,
            after: None,
        },
        _ => Outcome::Fail { kind, message },
    }
}

fn http_outcome(status: u16, retry_after: Option<Duration>, body: &[u8]) -> Outcome {
    match status {
        200..=299 => Outcome::Accepted {
            rejected: ExportTraceServiceResponse::decode(body)
                .map(|r| rejected_spans(&r))
                .unwrap_or(0),
        },
        429 | 502 | 503 | 504 => Outcome::Retry {
            kind: format!("HTTP {status}"),
            message: snippet(body),
            after: retry_after,
        },
        _ => Outcome::Fail {
            kind: format!("HTTP {status}"),
            message: snippet(body),
        },
    }
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "(empty body)".to_string();
    }
    text.chars().take(200).collect()
}

/// `Retry-After` in seconds (the HTTP-date form is not worth a date parser here: the
/// back-off is capped at two seconds anyway).
fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// Sends already-encoded request bytes as they are, so a send costs a copy, not an encode.
#[derive(Clone, Copy)]
struct RawExportCodec;

struct RawEncoder;
struct ResponseDecoder;

impl Codec for RawExportCodec {
    type Encode = Bytes;
    type Decode = ExportTraceServiceResponse;
    type Encoder = RawEncoder;
    type Decoder = ResponseDecoder;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> ResponseDecoder {
        ResponseDecoder
    }
}

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for ResponseDecoder {
    type Item = ExportTraceServiceResponse;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, tonic::Status> {
        ExportTraceServiceResponse::decode(src)
            .map(Some)
            .map_err(|e| tonic::Status::internal(format!("undecodable export response: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_with_clear_errors() {
        assert_eq!(
            Endpoint::parse("grpc://127.0.0.1:4317").unwrap(),
            Endpoint::Grpc("http://127.0.0.1:4317".to_string())
        );
        assert_eq!(
            Endpoint::parse("http://127.0.0.1:4318").unwrap(),
            Endpoint::Http("http://127.0.0.1:4318/v1/traces".to_string())
        );
        assert_eq!(
            Endpoint::parse("http://127.0.0.1:4318/custom/traces").unwrap(),
            Endpoint::Http("http://127.0.0.1:4318/custom/traces".to_string())
        );
        assert_eq!(
            Endpoint::parse("grpc://localhost:4317")
                .unwrap()
                .to_string(),
            "grpc://localhost:4317"
        );
        assert!(Endpoint::parse("grpc://host:1/v1/traces").is_err());
        let err = Endpoint::parse("127.0.0.1:4317").unwrap_err().to_string();
        assert!(err.contains("grpc://HOST:PORT"), "{err}");
        assert!(Endpoint::parse("https://collector:4318").is_err());
    }

    #[test]
    fn otlp_retryable_answers_are_retried_others_dropped() {
        let retry = |o: Outcome| matches!(o, Outcome::Retry { .. });
        assert!(retry(grpc_outcome(&tonic::Status::unavailable("busy"))));
        assert!(retry(grpc_outcome(&tonic::Status::resource_exhausted(
            "full"
        ))));
        assert!(!retry(grpc_outcome(&tonic::Status::invalid_argument(
            "bad"
        ))));
        assert!(retry(http_outcome(429, None, b"")));
        assert!(retry(http_outcome(503, Some(Duration::from_secs(1)), b"")));
        assert!(matches!(
            http_outcome(400, None, b"no spans"),
            Outcome::Fail { ref message, .. } if message == "no spans"
        ));
        assert!(matches!(
            http_outcome(200, None, b""),
            Outcome::Accepted { rejected: 0 }
        ));
    }

    #[test]
    fn partial_success_counts_rejected_spans() {
        let response = ExportTraceServiceResponse {
            partial_success: Some(clew_otlp::ExportTracePartialSuccess {
                rejected_spans: 7,
                error_message: "too old".to_string(),
            }),
        };
        let body = response.encode_to_vec();
        assert!(matches!(
            http_outcome(200, None, &body),
            Outcome::Accepted { rejected: 7 }
        ));
    }

    #[test]
    fn retry_after_takes_seconds() {
        assert_eq!(parse_retry_after(" 3 "), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }

    #[test]
    fn merged_stats_add_up() {
        let mut total = ConnectionStats::default();
        for _ in 0..2 {
            let mut part = ConnectionStats {
                acked: 10,
                requests: 1,
                latencies: vec![5],
                ..ConnectionStats::default()
            };
            count(&mut part.retried, "HTTP 503".into(), "busy".into());
            merge(&mut total, part);
        }
        assert_eq!(total.acked, 20);
        assert_eq!(total.latencies, vec![5, 5]);
        assert_eq!(total.retried["HTTP 503"].count, 2);
        assert_eq!(total.retried["HTTP 503"].first, "busy");
    }
}
