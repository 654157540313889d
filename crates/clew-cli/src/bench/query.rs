//! `clew bench query`: read latency of a running server that holds data.
//!
//! Trace ids are sampled across the whole stored time range (found by bisecting with
//! searches), not only the newest traces, so by-id lookups are not all answered from
//! the freshest, hottest part of the store.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::Args;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::Value;

use super::stats::{Latency, micros, ms};

#[derive(Args)]
pub struct QueryArgs {
    /// The server's query API [default: 127.0.0.1:16686].
    #[arg(long, env = "CLEW_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// Timed requests per kind of query.
    #[arg(long, default_value_t = 2000)]
    pub requests: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Distinct traces to look up by id, sampled over the stored time range.
    #[arg(long, default_value_t = 500)]
    pub sample_traces: usize,
    /// Traces asked for per search.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Minimum durations to search for, one search kind each. The ingest workload's traces
    /// last 1 ms to 1 s, log-uniformly: 100ms matches about a third of them, 950ms under
    /// one in a hundred, which makes the search dig deep into the store.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "100ms,950ms",
        value_parser = humantime::parse_duration
    )]
    pub min_duration: Vec<Duration>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
pub struct QueryRow {
    pub query: String,
    pub path: String,
    pub latency: Latency,
    pub requests_per_sec: f64,
    pub errors: usize,
    pub first_error: Option<String>,
    /// Mean traces per answer, for searches: an empty answer would be too cheap to count.
    pub mean_results: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct QueryReport {
    pub server: String,
    pub services: usize,
    pub operations: usize,
    pub sampled_traces: usize,
    pub oldest_start_unix_nano: u64,
    pub newest_start_unix_nano: u64,
    pub concurrency: usize,
    pub warmup_requests: usize,
    pub rows: Vec<QueryRow>,
}

const DEFAULT_ADDR: &str = "127.0.0.1:16686";
/// How far back the time-range bisection starts: beyond the default retention.
const LOOKBACK: Duration = Duration::from_secs(8 * 24 * 3600);

pub async fn command(args: QueryArgs) -> Result<()> {
    if args.requests == 0 || args.concurrency == 0 || args.sample_traces == 0 {
        bail!("--requests, --concurrency and --sample-traces must be at least 1");
    }
    let addr = args
        .http_addr
        .unwrap_or_else(|| DEFAULT_ADDR.parse().expect("valid default"));
    let api = Api::new(addr, args.concurrency)?;
    let report = run(&api, &args).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", markdown(&report));
    }
    Ok(())
}

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    fn new(addr: SocketAddr, concurrency: usize) -> Result<Api> {
        Ok(Api {
            base: format!("http://{addr}"),
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(concurrency)
                .tcp_nodelay(true)
                .timeout(Duration::from_secs(60))
                .build()?,
        })
    }

    async fn json(&self, path_and_query: &str) -> Result<Value> {
        let url = format!("{}{path_and_query}", self.base);
        let response = self.http.get(&url).send().await.with_context(|| {
            format!(
                "cannot reach clew at {} (is `clew serve` running? point at it with --http-addr)",
                self.base
            )
        })?;
        let status = response.status();
        let body = response.bytes().await?;
        if !status.is_success() {
            bail!("GET {url}: {status}: {}", String::from_utf8_lossy(&body));
        }
        serde_json::from_slice(&body).with_context(|| format!("GET {url}: not JSON"))
    }
}

struct Service {
    name: String,
    operations: Vec<String>,
}

async fn services(api: &Api) -> Result<Vec<Service>> {
    let answer = api.json("/api/clew/services").await?;
    let services = answer["services"]
        .as_array()
        .context("/api/clew/services: no `services` list")?
        .iter()
        .filter_map(|s| {
            Some(Service {
                name: s["name"].as_str()?.to_string(),
                operations: s["operations"]
                    .as_array()
                    .map(|ops| {
                        ops.iter()
                            .filter_map(|o| o["name"].as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect();
    Ok(services)
}

/// Builds `/api/clew/search` paths; times in Unix nanoseconds.
fn search_path(
    service: &str,
    operation: Option<&str>,
    min_duration: Option<Duration>,
    start: u64,
    end: u64,
    limit: usize,
) -> String {
    let mut path = format!(
        "/api/clew/search?service={}&start={start}&end={end}&limit={limit}",
        encode(service)
    );
    if let Some(op) = operation {
        path += &format!("&operation={}", encode(op));
    }
    if let Some(d) = min_duration {
        let text = humantime::format_duration(d).to_string().replace(' ', "");
        path += &format!("&min_duration={text}");
    }
    path
}

/// Percent-encodes a query value (operation names hold spaces and slashes).
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out += &format!("%{b:02X}");
        }
    }
    out
}

/// (trace id, start) of the traces a native search returned.
async fn search(api: &Api, path: &str) -> Result<Vec<(String, u64)>> {
    let answer = api.json(path).await?;
    Ok(answer["traces"]
        .as_array()
        .map(|traces| {
            traces
                .iter()
                .filter_map(|t| {
                    Some((
                        t["trace_id"].as_str()?.to_string(),
                        t["start_unix_nano"].as_u64()?,
                    ))
                })
                .collect()
        })
        .unwrap_or_default())
}

/// The earliest end time at which `service` has a trace, to a millisecond: the stored
/// data's oldest edge, which no API reports directly.
async fn oldest_start(api: &Api, service: &str, lo: u64, newest: u64) -> Result<u64> {
    let (mut lo, mut hi) = (lo, newest);
    while hi - lo > 1_000_000 {
        let mid = lo + (hi - lo) / 2;
        if search(api, &search_path(service, None, None, lo, mid, 1))
            .await?
            .is_empty()
        {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(hi)
}

async fn run(api: &Api, args: &QueryArgs) -> Result<QueryReport> {
    let services = services(api).await?;
    if services.is_empty() {
        bail!(
            "{} stores no spans yet; fill it first, e.g.\n    clew bench ingest --endpoint grpc://127.0.0.1:4317 --total-spans 10000000",
            api.base
        );
    }
    let now = now_nanos();
    let lookback = now - LOOKBACK.as_nanos() as u64;
    let probe = &services[0].name;
    let newest = search(api, &search_path(probe, None, None, lookback, now, 1))
        .await?
        .first()
        .map(|(_, start)| *start)
        .with_context(|| {
            format!("a search for service {probe} found nothing in the last 8 days")
        })?;
    let oldest = oldest_start(api, probe, lookback, newest).await?;
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let mut ids = std::collections::BTreeSet::new();
    let mut draws = 0;
    while ids.len() < args.sample_traces && draws < args.sample_traces * 4 {
        draws += 1;
        let service = &services[rng.random_range(0..services.len())].name;
        let end = rng.random_range(oldest..=newest.max(oldest));
        for (id, _) in search(api, &search_path(service, None, None, lookback, end, 5)).await? {
            ids.insert(id);
        }
    }
    if ids.is_empty() {
        bail!("sampling found no trace ids to look up");
    }
    let ids: Vec<String> = ids.into_iter().collect();
    // The searches span everything stored: the widest, most expensive window.
    let (start, end) = (
        oldest.saturating_sub(1_000_000_000),
        now_nanos() + 1_000_000_000,
    );
    let pick_service = |rng: &mut StdRng| &services[rng.random_range(0..services.len())];
    let pick_id = |rng: &mut StdRng| ids[rng.random_range(0..ids.len())].as_str();
    let mut urls = |f: &mut dyn FnMut(&mut StdRng) -> String| {
        (0..args.requests).map(|_| f(&mut rng)).collect::<Vec<_>>()
    };
    let mut plans: Vec<(String, String, Vec<String>, Hits)> = vec![
        (
            "trace by id".to_string(),
            "/api/clew/traces/{id}".to_string(),
            urls(&mut |rng| format!("/api/clew/traces/{}", pick_id(rng))),
            Hits::None,
        ),
        (
            "trace by id (Jaeger)".to_string(),
            "/api/traces/{id}".to_string(),
            urls(&mut |rng| format!("/api/traces/{}", pick_id(rng))),
            Hits::None,
        ),
        (
            "search: service".to_string(),
            "/api/clew/search?service=S".to_string(),
            urls(&mut |rng| {
                search_path(&pick_service(rng).name, None, None, start, end, args.limit)
            }),
            Hits::Native,
        ),
        (
            "search: service + operation".to_string(),
            "/api/clew/search?service=S&operation=O".to_string(),
            urls(&mut |rng| {
                let service = pick_service(rng);
                let op = (!service.operations.is_empty()).then(|| {
                    service.operations[rng.random_range(0..service.operations.len())].as_str()
                });
                search_path(&service.name, op, None, start, end, args.limit)
            }),
            Hits::Native,
        ),
        (
            "search: service (Jaeger)".to_string(),
            "/api/traces?service=S".to_string(),
            urls(&mut |rng| {
                format!(
                    "/api/traces?service={}&start={}&end={}&limit={}",
                    encode(&pick_service(rng).name),
                    start / 1000,
                    end / 1000,
                    args.limit
                )
            }),
            Hits::Jaeger,
        ),
    ];

    for &min in &args.min_duration {
        let text = humantime::format_duration(min).to_string().replace(' ', "");
        let urls = urls(&mut |rng| {
            search_path(
                &pick_service(rng).name,
                None,
                Some(min),
                start,
                end,
                args.limit,
            )
        });
        plans.insert(
            plans.len() - 1,
            (
                format!("search: service + min duration {text}"),
                format!("/api/clew/search?service=S&min_duration={text}"),
                urls,
                Hits::Native,
            ),
        );
    }

    let warmup = (args.requests / 10).clamp(1, 50);
    let mut rows = Vec::new();
    for (query, path, urls, hits) in plans {
        eprintln!("  {query} …");
        measure(api, &urls[..warmup.min(urls.len())], args.concurrency, hits).await;
        let mut row = measure(api, &urls, args.concurrency, hits).await;
        row.query = query;
        row.path = path;
        rows.push(row);
    }
    Ok(QueryReport {
        server: api.base.clone(),
        services: services.len(),
        operations: services.iter().map(|s| s.operations.len()).sum(),
        sampled_traces: ids.len(),
        oldest_start_unix_nano: oldest,
        newest_start_unix_nano: newest,
        concurrency: args.concurrency,
        warmup_requests: warmup,
        rows,
    })
}

/// How to count the traces in an answer.
#[derive(Clone, Copy)]
enum Hits {
    None,
    Native,
    Jaeger,
}

impl Hits {
    fn count(self, body: &[u8]) -> Option<usize> {
        let key = match self {
            Hits::None => return None,
            Hits::Native => "traces",
            Hits::Jaeger => "data",
        };
        let value: Value = serde_json::from_slice(body).ok()?;
        value[key].as_array().map(Vec::len)
    }
}

async fn measure(api: &Api, urls: &[String], concurrency: usize, hits: Hits) -> QueryRow {
    let next = &AtomicUsize::new(0);
    let started = Instant::now();
    let workers = (0..concurrency).map(|_| async move {
        let mut latencies = Vec::new();
        let mut results = Vec::new();
        let mut errors = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(path) = urls.get(i) else { break };
            let url = format!("{}{path}", api.base);
            let t0 = Instant::now();
            let answer = match api.http.get(&url).send().await {
                Ok(response) => {
                    let status = response.status();
                    response.bytes().await.map(|body| (status, body))
                }
                Err(e) => Err(e),
            };
            let elapsed = t0.elapsed();
            match answer {
                Ok((status, body)) if status.is_success() => {
                    latencies.push(micros(elapsed));
                    results.extend(hits.count(&body));
                }
                Ok((status, body)) => errors.push(format!(
                    "{path}: {status}: {}",
                    String::from_utf8_lossy(&body)
                        .chars()
                        .take(200)
                        .collect::<String>()
                )),
                Err(e) => errors.push(format!("{path}: {e}")),
            }
        }
        (latencies, results, errors)
    });
    let parts = futures_join_all(workers).await;
    let elapsed = started.elapsed().as_secs_f64();
    let mut latencies = Vec::new();
    let mut results = Vec::new();
    let mut errors = Vec::new();
    for (l, r, e) in parts {
        latencies.extend(l);
        results.extend(r);
        errors.extend(e);
    }
    QueryRow {
        query: String::new(),
        path: String::new(),
        requests_per_sec: latencies.len() as f64 / elapsed,
        latency: Latency::of_micros(&mut latencies),
        errors: errors.len(),
        first_error: errors.into_iter().next(),
        mean_results: (!results.is_empty())
            .then(|| results.iter().sum::<usize>() as f64 / results.len() as f64),
    }
}

/// Polls the workers together on this task: they only wait on sockets, and one task
/// keeps the measurement free of scheduler hops between worker threads.
async fn futures_join_all<F: std::future::Future>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futures {
        set.push(Box::pin(f));
    }
    let mut outputs: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, out) in set.iter_mut().zip(outputs.iter_mut()) {
            if out.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *out = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs
        .into_iter()
        .map(|o| o.expect("every future finished"))
        .collect()
}

fn markdown(r: &QueryReport) -> String {
    let span = Duration::from_nanos(
        r.newest_start_unix_nano
            .saturating_sub(r.oldest_start_unix_nano),
    );
    let mut out = format!(
        "Server {}: {} services, {} operations, traces starting over {}; {} sampled trace ids; \
         {} requests in flight; {} warm-up requests per query\n\n",
        r.server,
        r.services,
        r.operations,
        humantime::format_duration(Duration::from_secs(span.as_secs())),
        r.sampled_traces,
        r.concurrency,
        r.warmup_requests
    );
    out += "| query | path | requests | p50 | p99 | max | requests/s | errors | mean results |\n";
    out += "|---|---|---:|---:|---:|---:|---:|---:|---:|\n";
    for row in &r.rows {
        out += &format!(
            "| {} | `{}` | {} | {} | {} | {} | {:.0} | {} | {} |\n",
            row.query,
            row.path,
            row.latency.count,
            ms(row.latency.p50_ms),
            ms(row.latency.p99_ms),
            ms(row.latency.max_ms),
            row.requests_per_sec,
            row.errors,
            row.mean_results
                .map_or("—".to_string(), |m| format!("{m:.1}"))
        );
    }
    for row in r.rows.iter().filter(|r| r.errors > 0) {
        out += &format!(
            "\n{}: first error: {}",
            row.query,
            row.first_error.as_deref().unwrap_or("?")
        );
    }
    out
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_paths_encode_names_and_units() {
        let path = search_path(
            "check out",
            Some("GET /stock"),
            Some(Duration::from_millis(100)),
            1,
            2,
            20,
        );
        assert_eq!(
            path,
            "/api/clew/search?service=check%20out&start=1&end=2&limit=20&operation=GET%20%2Fstock&min_duration=100ms"
        );
        assert_eq!(encode("a-b_c.d~e"), "a-b_c.d~e");
    }

    #[test]
    fn hits_count_the_right_list() {
        assert_eq!(Hits::Native.count(br#"{"traces":[1,2,3]}"#), Some(3));
        assert_eq!(Hits::Jaeger.count(br#"{"data":[{}],"total":1}"#), Some(1));
        assert_eq!(Hits::None.count(br#"{"traces":[1]}"#), None);
        assert_eq!(Hits::Native.count(b"not json"), None);
    }

    #[tokio::test]
    async fn join_all_keeps_order() {
        let futures = (0..5u64).map(|i| async move {
            tokio::time::sleep(Duration::from_millis(10 * (5 - i))).await;
            i
        });
        assert_eq!(futures_join_all(futures).await, vec![0, 1, 2, 3, 4]);
    }
}
