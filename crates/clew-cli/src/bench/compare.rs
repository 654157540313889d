//! `clew bench compare`: clew and rotel under the same load, in the same run.
//!
//! Both receivers run as child processes on this machine, one after the other, with
//! the load generator in this process; a figure means little without its peer measured
//! under the same conditions. rotel with the blackhole exporter decodes and discards, so
//! it marks what the network path and OTLP decoding cost; clew additionally stores,
//! indexes and fsyncs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::ingest::{self, Endpoint, IngestReport, LoadArgs, Stop};
use super::stats::{bytes, ms, thousands};

#[derive(Args)]
pub struct CompareArgs {
    #[command(flatten)]
    pub load: LoadArgs,
    /// The rotel-agent binary [default: `rotel-agent` on PATH, or the one `pip install
    /// rotel` put into the site-packages of `python3`].
    #[arg(long, env = "ROTEL_AGENT")]
    pub rotel: Option<PathBuf>,
    /// Where to create clew's temporary data directory (the disk under test)
    /// [default: the system temp directory].
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Transports to measure, each for `--duration`.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "grpc,http")]
    pub protocols: Vec<Protocol>,
    /// Keep the data directory and logs afterwards instead of deleting them.
    #[arg(long)]
    pub keep: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub memory_bytes: u64,
    pub kernel: String,
    pub os: String,
    /// One-minute load average when the run started: other work skews the figures.
    pub load_average: String,
}

impl Machine {
    pub fn collect() -> Machine {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let meminfo = read("/proc/meminfo");
        let os_release = read("/etc/os-release");
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model: proc_value(&cpuinfo, "model name")
                .unwrap_or("unknown")
                .to_string(),
            memory_bytes: proc_value(&meminfo, "MemTotal")
                .and_then(|v| v.trim_end_matches("kB").trim().parse::<u64>().ok())
                .map_or(0, |kb| kb * 1024),
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            os: os_release
                .lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .unwrap_or("unknown")
                .trim_matches('"')
                .to_string(),
            load_average: read("/proc/loadavg")
                .split_whitespace()
                .next()
                .unwrap_or("?")
                .to_string(),
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "{} CPUs ({}), {} RAM, Linux {}, {}; load average {} at start",
            self.cpus,
            self.cpu_model,
            bytes(self.memory_bytes),
            self.kernel,
            self.os,
            self.load_average
        )
    }
}

/// The value of `key` in `key : value` lines, as /proc/cpuinfo and /proc/meminfo write them.
fn proc_value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k.trim() == key).then(|| v.trim())
    })
}

/// Which OTLP transports to measure, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
pub enum Protocol {
    Grpc,
    Http,
}

impl Protocol {
    fn label(self) -> &'static str {
        match self {
            Protocol::Grpc => "OTLP/gRPC",
            Protocol::Http => "OTLP/HTTP",
        }
    }
}

/// One load run against one receiver.
#[derive(Debug, Serialize)]
pub struct Run {
    pub protocol: Protocol,
    pub ingest: IngestReport,
    /// CPU time the receiver process spent during the load (user + system).
    pub server_cpu_secs: Option<f64>,
    /// CPU time the load generator (this process) spent meanwhile.
    pub generator_cpu_secs: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct Contender {
    pub name: String,
    pub version: String,
    pub runs: Vec<Run>,
    pub peak_rss_bytes: Option<u64>,
    /// The data directory after a clean shutdown.
    pub data_dir: Option<DiskUsage>,
    /// Allocated data directory size over all spans acknowledged in all runs.
    pub bytes_per_span: Option<f64>,
}

impl Contender {
    fn run(&self, protocol: Protocol) -> Option<&Run> {
        self.runs.iter().find(|r| r.protocol == protocol)
    }
}

#[derive(Debug, Serialize)]
pub struct CompareReport {
    pub machine: Machine,
    pub connections: usize,
    pub duration_secs: f64,
    pub batch_spans: usize,
    pub spans_per_trace: usize,
    pub clew: Contender,
    pub rotel: Contender,
    /// Per protocol, clew's acknowledged spans per second over rotel's.
    pub ingest_ratio: Vec<(Protocol, f64)>,
}

pub async fn command(args: CompareArgs) -> Result<()> {
    // Found before anything runs: a comparison without its peer is not a result.
    let rotel = find_rotel(args.rotel.as_deref())?;
    let rotel_version = version_of(&rotel, "--version").await;
    let machine = Machine::collect();
    let parent = args.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    let work = WorkDir::create(&parent, args.keep)?;
    let mut protocols = args.protocols.clone();
    protocols.dedup();

    eprintln!("clew bench compare: {}", machine.describe());
    eprintln!(
        "[1/2] clew serve (embedded store) in {}",
        work.path.display()
    );
    let clew = run_clew(&work.path, &args.load, &protocols).await?;
    eprintln!(
        "[2/2] rotel-agent --exporter blackhole ({})",
        rotel.display()
    );
    let rotel = run_rotel(&rotel, rotel_version, &work.path, &args.load, &protocols).await?;

    let ingest_ratio = protocols
        .iter()
        .filter_map(|&p| {
            let (c, r) = (clew.run(p)?, rotel.run(p)?);
            Some((
                p,
                c.ingest.spans_per_sec / r.ingest.spans_per_sec.max(f64::MIN_POSITIVE),
            ))
        })
        .collect();
    let report = CompareReport {
        machine,
        connections: args.load.connections,
        duration_secs: args.load.duration.as_secs_f64(),
        batch_spans: args.load.batch_spans,
        spans_per_trace: args.load.spans_per_trace,
        clew,
        rotel,
        ingest_ratio,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", markdown(&report));
    }
    if args.keep {
        eprintln!("kept {}", work.path.display());
    }
    Ok(())
}

fn markdown(r: &CompareReport) -> String {
    let opt = |v: Option<String>| v.unwrap_or_else(|| "—".to_string());
    let mut out = String::new();
    out += &format!("Machine: {}\n", r.machine.describe());
    out += &format!(
        "Load: {} connections × one request in flight, {} spans/request, {} spans/trace, {:.0} s per receiver and protocol\n\n",
        r.connections, r.batch_spans, r.spans_per_trace, r.duration_secs
    );
    out += &format!(
        "| | {} | {} |\n|---|---:|---:|\n",
        r.clew.name, r.rotel.name
    );
    let mut row = |label: &str, f: &dyn Fn(&Contender) -> String| {
        out += &format!("| {label} | {} | {} |\n", f(&r.clew), f(&r.rotel));
    };
    row("version", &|c| c.version.clone());
    for &(protocol, _) in &r.ingest_ratio {
        let p = protocol.label();
        let per_run = |c: &Contender, f: &dyn Fn(&Run) -> String| opt(c.run(protocol).map(f));
        let per_million = |secs: Option<f64>, spans: u64| {
            opt(secs.map(|s| format!("{:.2}", s * 1e6 / spans.max(1) as f64)))
        };
        row(&format!("**{p}** spans acknowledged / s"), &|c| {
            per_run(c, &|run| {
                format!("**{}**", thousands(run.ingest.spans_per_sec))
            })
        });
        row(&format!("{p} spans acknowledged"), &|c| {
            per_run(c, &|run| thousands(run.ingest.spans_acknowledged as f64))
        });
        row(&format!("{p} request latency p50 / p99"), &|c| {
            per_run(c, &|run| {
                format!(
                    "{} / {}",
                    ms(run.ingest.latency.p50_ms),
                    ms(run.ingest.latency.p99_ms)
                )
            })
        });
        row(&format!("{p} requests retried / failed"), &|c| {
            per_run(c, &|run| {
                let sum = |m: &std::collections::BTreeMap<String, ingest::ErrorCount>| {
                    m.values().map(|e| e.count).sum::<u64>()
                };
                format!("{} / {}", sum(&run.ingest.retried), sum(&run.ingest.failed))
            })
        });
        row(&format!("{p} receiver CPU s per million spans"), &|c| {
            per_run(c, &|run| {
                per_million(run.server_cpu_secs, run.ingest.spans_acknowledged)
            })
        });
        row(
            &format!("{p} load generator CPU s per million spans"),
            &|c| {
                per_run(c, &|run| {
                    per_million(run.generator_cpu_secs, run.ingest.spans_acknowledged)
                })
            },
        );
    }
    row("receiver peak RSS", &|c| opt(c.peak_rss_bytes.map(bytes)));
    row(
        "bytes on disk per span",
        &|c| match (c.bytes_per_span, c.data_dir) {
            (Some(per_span), Some(usage)) => format!(
                "{per_span:.1} ({} allocated, {} apparent)",
                bytes(usage.allocated),
                bytes(usage.apparent)
            ),
            _ => "— (discards spans)".to_string(),
        },
    );
    out += "\n";
    for (protocol, ratio) in &r.ingest_ratio {
        out += &format!(
            "clew / rotel ingest over {}: {ratio:.2}× (target ≥ 1.00×)\n",
            protocol.label()
        );
    }
    out += &format!(
        "clew bytes per stored span: {} (target ≤ 40)\n",
        opt(r.clew.bytes_per_span.map(|b| format!("{b:.1}")))
    );
    out
}

async fn run_clew(work: &Path, load: &LoadArgs, protocols: &[Protocol]) -> Result<Contender> {
    let data_dir = work.join("clew-data");
    let log = work.join("clew.log");
    let exe = std::env::current_exe().context("finding the clew executable")?;
    let mut command = Command::new(&exe);
    command.args(["--http-addr", "127.0.0.1:0", "serve", "--data-dir"]);
    command.arg(&data_dir);
    command.args([
        "--otlp-grpc-addr",
        "127.0.0.1:0",
        "--otlp-http-addr",
        "127.0.0.1:0",
    ]);
    // The user's CLEW_* settings (a config file, a queue limit) would make the run
    // unlike the published one.
    for (key, _) in std::env::vars() {
        if key.starts_with("CLEW_") && key != "CLEW_LOG" {
            command.env_remove(key);
        }
    }
    let mut server = Server::spawn("clew serve", command, &log, true)?;
    let stdout = server.child.stdout.take().context("clew serve stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let mut printed = Vec::new();
    let ready = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await? {
            let done = line.trim() == "ready";
            printed.push(line);
            if done {
                return anyhow::Ok(true);
            }
        }
        Ok(false)
    })
    .await;
    if !matches!(ready, Ok(Ok(true))) {
        bail!(
            "clew serve did not print `ready` within 60 s.\nIt printed:\n{}\nIts log ({}):\n{}",
            printed.join("\n"),
            log.display(),
            tail(&log)
        );
    }
    // Keep draining stdout so a chatty server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let (grpc, http) = parse_serve_output(&printed)?;
    let runs = server.measure_all(protocols, &grpc, &http, load).await?;
    let peak_rss_bytes = peak_rss(server.pid);
    server.stop().await?;
    let usage = dir_size(&data_dir)?;
    let spans: u64 = runs.iter().map(|r| r.ingest.spans_acknowledged).sum();
    Ok(Contender {
        name: "clew serve (embedded store)".to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        runs,
        peak_rss_bytes,
        data_dir: Some(usage),
        bytes_per_span: (spans > 0).then(|| usage.allocated as f64 / spans as f64),
    })
}

/// The OTLP/gRPC address and the OTLP/HTTP URL from `clew serve`'s start-up lines.
fn parse_serve_output(lines: &[String]) -> Result<(Endpoint, Endpoint)> {
    let value = |label: &str| {
        lines
            .iter()
            .find_map(|l| l.trim().strip_prefix(label).map(str::trim))
            .with_context(|| format!("clew serve printed no `{label}` line"))
    };
    let grpc: SocketAddr = value("OTLP/gRPC")?
        .parse()
        .context("clew serve printed an OTLP/gRPC address that is not HOST:PORT")?;
    let http = Endpoint::parse(value("OTLP/HTTP")?)?;
    Ok((Endpoint::Grpc(format!("http://{grpc}")), http))
}

async fn run_rotel(
    binary: &Path,
    version: String,
    work: &Path,
    load: &LoadArgs,
    protocols: &[Protocol],
) -> Result<Contender> {
    let grpc = free_port()?;
    let http = free_port()?;
    let mut command = Command::new(binary);
    command.arg("start").args(["--exporter", "blackhole"]);
    command.arg("--otlp-grpc-endpoint").arg(grpc.to_string());
    command.arg("--otlp-http-endpoint").arg(http.to_string());
    // rotel defaults these to fixed paths in /tmp, which would clash between runs.
    command.arg("--pid-file").arg(work.join("rotel.pid"));
    command.arg("--log-file").arg(work.join("rotel.log"));
    let log = work.join("rotel.out");
    let mut server = Server::spawn("rotel-agent", command, &log, false)?;
    let started = Instant::now();
    for addr in [grpc, http] {
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            if let Some(status) = server.child.try_wait()? {
                bail!(
                    "rotel-agent exited ({status}) before listening; its output:\n{}",
                    tail(&log)
                );
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!(
                    "rotel-agent did not listen on {addr} within 30 s; its output:\n{}",
                    tail(&log)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let grpc = Endpoint::Grpc(format!("http://{grpc}"));
    let http = Endpoint::Http(format!("http://{http}/v1/traces"));
    let runs = server.measure_all(protocols, &grpc, &http, load).await?;
    let peak_rss_bytes = peak_rss(server.pid);
    server.stop().await?;
    Ok(Contender {
        name: "rotel-agent (blackhole exporter)".to_string(),
        version,
        runs,
        peak_rss_bytes,
        data_dir: None,
        bytes_per_span: None,
    })
}

fn free_port() -> Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?)
}

/// A receiver running as a child process.
struct Server {
    name: &'static str,
    child: Child,
    pid: i32,
    log: PathBuf,
}

impl Server {
    /// Starts `command` with stderr (and stdout unless `pipe_stdout`) going to `log`.
    fn spawn(
        name: &'static str,
        mut command: Command,
        log: &Path,
        pipe_stdout: bool,
    ) -> Result<Server> {
        let log_file =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let stdout = if pipe_stdout {
            Stdio::piped()
        } else {
            Stdio::from(log_file.try_clone()?)
        };
        let child = command
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let pid = child.id().context("child has no pid")? as i32;
        Ok(Server {
            name,
            child,
            pid,
            log: log.to_path_buf(),
        })
    }

    async fn measure_all(
        &self,
        protocols: &[Protocol],
        grpc: &Endpoint,
        http: &Endpoint,
        load: &LoadArgs,
    ) -> Result<Vec<Run>> {
        let mut runs = Vec::new();
        for &protocol in protocols {
            let endpoint = match protocol {
                Protocol::Grpc => grpc,
                Protocol::Http => http,
            };
            let run = self.measure(protocol, endpoint, load).await?;
            eprintln!(
                "      {}: {} spans/s",
                protocol.label(),
                thousands(run.ingest.spans_per_sec)
            );
            runs.push(run);
        }
        Ok(runs)
    }

    /// Runs the load against this receiver, with the CPU time both sides spent.
    async fn measure(
        &self,
        protocol: Protocol,
        endpoint: &Endpoint,
        load: &LoadArgs,
    ) -> Result<Run> {
        let server_stat = format!("/proc/{}/stat", self.pid);
        let server_cpu = cpu_seconds(&server_stat);
        let own_cpu = cpu_seconds("/proc/self/stat");
        let ingest = ingest::run(endpoint, load, Stop::After(load.duration), false)
            .await
            .with_context(|| format!("{} (log: {})", self.name, self.log.display()))?;
        let delta = |before: Option<f64>, path: &str| Some(cpu_seconds(path)? - before?);
        Ok(Run {
            protocol,
            server_cpu_secs: delta(server_cpu, &server_stat),
            generator_cpu_secs: delta(own_cpu, "/proc/self/stat"),
            ingest,
        })
    }

    /// SIGTERM, then wait: clew flushes and closes its store on SIGTERM, and the data
    /// directory is only measured once that is done.
    async fn stop(mut self) -> Result<()> {
        // SAFETY: kill(2) with a pid this process spawned and has not yet reaped.
        if unsafe { libc::kill(self.pid, libc::SIGTERM) } != 0 {
            bail!(
                "cannot signal {}: {}",
                self.name,
                std::io::Error::last_os_error()
            );
        }
        match tokio::time::timeout(Duration::from_secs(60), self.child.wait()).await {
            Ok(status) => {
                let status = status?;
                // rotel and clew both exit 0 on SIGTERM; anything else deserves a look.
                if !status.success() {
                    eprintln!(
                        "warning: {} exited with {status}; log: {}",
                        self.name,
                        self.log.display()
                    );
                }
                Ok(())
            }
            Err(_) => {
                self.child.kill().await?;
                bail!(
                    "{} did not stop within 60 s of SIGTERM; log: {}",
                    self.name,
                    self.log.display()
                )
            }
        }
    }
}

/// User plus system CPU seconds from a `/proc/PID/stat` file.
fn cpu_seconds(stat_path: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(stat_path).ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    parse_cpu_ticks(&stat).map(|t| t as f64 / ticks.max(1) as f64)
}

/// utime + stime: fields 14 and 15, counted after the parenthesised command name,
/// which may itself contain spaces.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn peak_rss(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = proc_value(&status, "VmHWM")?
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(kb * 1024)
}

/// What a directory's files cost on disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DiskUsage {
    /// Blocks actually allocated, as `du` counts them: what the spans cost.
    pub allocated: u64,
    /// Sum of file lengths, which also counts space a store preallocated but has not
    /// written (sparse journal files).
    pub apparent: u64,
}

pub fn dir_size(dir: &Path) -> Result<DiskUsage> {
    use std::os::unix::fs::MetadataExt;
    let mut total = DiskUsage::default();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            let sub = dir_size(&entry.path())?;
            total.allocated += sub.allocated;
            total.apparent += sub.apparent;
        } else {
            // st_blocks is in 512-byte units whatever the filesystem's block size.
            total.allocated += meta.blocks() * 512;
            total.apparent += meta.len();
        }
    }
    Ok(total)
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

async fn version_of(binary: &Path, flag: &str) -> String {
    match Command::new(binary).arg(flag).output().await {
        Ok(out) => String::from_utf8_lossy(&out.stdout).trim().to_string(),
        Err(_) => "unknown".to_string(),
    }
}

/// How to get rotel when it is missing; printed verbatim.
const ROTEL_HELP: &str = "\
`clew bench compare` measures clew against rotel (a Rust OTLP collector) in the same run,
and rotel-agent was not found. Install it into a virtualenv and point at it:

    python3 -m venv .bench-venv
    .bench-venv/bin/pip install rotel
    clew bench compare --rotel \"$(.bench-venv/bin/python -c 'import os, rotel; print(os.path.dirname(rotel.__file__))')/rotel-agent\"

(or set ROTEL_AGENT to the binary, or run scripts/bench compare, which does all of this)";

fn find_rotel(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = explicit {
        if is_executable(path) {
            return Ok(path.to_path_buf());
        }
        bail!(
            "--rotel {}: no executable there.\n\n{ROTEL_HELP}",
            path.display()
        );
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("rotel-agent"))
        .find(|p| is_executable(p));
    if let Some(path) = on_path {
        return Ok(path);
    }
    // `pip install rotel` puts the binary inside the package, not on PATH.
    for python in ["python3", "python"] {
        let output = std::process::Command::new(python)
            .args([
                "-c",
                "import os, rotel; print(os.path.dirname(rotel.__file__))",
            ])
            .stderr(Stdio::null())
            .output();
        if let Ok(out) = output {
            let candidate =
                PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("rotel-agent");
            if out.status.success() && is_executable(&candidate) {
                return Ok(candidate);
            }
        }
    }
    bail!("{ROTEL_HELP}")
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A directory for one run's data and logs, deleted afterwards unless kept.
struct WorkDir {
    path: PathBuf,
    keep: bool,
}

impl WorkDir {
    fn create(parent: &Path, keep: bool) -> Result<WorkDir> {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let path = parent.join(format!("clew-bench-{}-{stamp}", std::process::id()));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(WorkDir { path, keep })
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_grpc_address_in_serve_output() {
        let lines: Vec<String> = [
            "clew serving",
            "  data dir    /tmp/x",
            "  OTLP/gRPC   127.0.0.1:40123",
            "  OTLP/HTTP   http://127.0.0.1:40124/v1/traces",
            "  query API   http://127.0.0.1:40125/api",
            "ready",
        ]
        .map(String::from)
        .to_vec();
        let (grpc, http) = parse_serve_output(&lines).unwrap();
        assert_eq!(grpc, Endpoint::Grpc("http://127.0.0.1:40123".to_string()));
        assert_eq!(
            http,
            Endpoint::Http("http://127.0.0.1:40124/v1/traces".to_string())
        );
        assert!(parse_serve_output(&lines[..1]).is_err());
        assert!(parse_serve_output(&["  OTLP/gRPC   nowhere".to_string()]).is_err());
    }

    #[test]
    fn cpu_ticks_survive_spaces_in_the_command_name() {
        let stat = "1234 (tokio worker 1) S 1 2 3 4 5 6 7 8 9 10 250 30 0 0 20 0";
        assert_eq!(parse_cpu_ticks(stat), Some(280));
        assert_eq!(parse_cpu_ticks("garbage"), None);
        assert!(cpu_seconds("/proc/self/stat").is_some());
    }

    #[test]
    fn proc_values_and_machine_description() {
        let meminfo = "MemTotal:       24576000 kB\nMemFree: 1 kB\n";
        assert_eq!(proc_value(meminfo, "MemTotal"), Some("24576000 kB"));
        assert_eq!(proc_value(meminfo, "Missing"), None);
        let machine = Machine::collect();
        assert!(machine.cpus >= 1);
        assert!(machine.describe().contains("CPUs"));
    }

    #[test]
    fn dir_size_counts_nested_files() {
        let parent = std::env::temp_dir();
        let work = WorkDir::create(&parent, false).unwrap();
        std::fs::create_dir(work.path.join("sub")).unwrap();
        std::fs::write(work.path.join("a"), [0u8; 100]).unwrap();
        std::fs::write(work.path.join("sub/b"), [0u8; 23]).unwrap();
        let usage = dir_size(&work.path).unwrap();
        assert_eq!(usage.apparent, 123);
        assert!(usage.allocated >= 123, "{usage:?}");
        let path = work.path.clone();
        drop(work);
        assert!(!path.exists(), "an unkept work dir is removed");
    }

    #[test]
    fn a_missing_rotel_says_how_to_install_it() {
        let err = find_rotel(Some(Path::new("/nonexistent/rotel-agent")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("pip install rotel"), "{err}");
    }
}
