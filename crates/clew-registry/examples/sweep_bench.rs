//! Sweep cost: clew's sweep against the seed's algorithm, in the same run, on a private
//! redis-server.
//!
//! ```text
//! cargo run --release -p clew-registry --example sweep_bench -- [--traces 1000000] [--orphan-pct 1]
//! ```
//!
//! Loads N active traces (`--orphan-pct` of them created two hours ago, the rest now)
//! once in clew's layout (sorted-set index, via `create_trace`) and twice in the seed's
//! layout (a plain SET index), then sweeps each with a 30-minute threshold:
//!
//! * clew: `ZRANGEBYSCORE` of the old end of the index + one Lua check-and-mark per 1000;
//! * seed: `SMEMBERS` of the whole index, an `HGET created_at` round trip per trace, an
//!   `HGET state` per old one, then `HSET`/`EXPIRE`/`SREM` per orphan (as the seed does);
//! * seed, pipelined: the same algorithm with its reads and writes pipelined 1000 at a
//!   time: the best the seed's layout allows, still reading every active trace.
//!
//! Round trips are requests sent to Redis (a pipeline counts once).

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use clew_model::TraceId;
use clew_registry::{
    Clock, ManualClock, Metadata, RedisRegistry, Registry, RegistryConfig, SystemClock, TraceState,
};
use redis::aio::MultiplexedConnection;

const THRESHOLD: Duration = Duration::from_secs(1800);
const CHUNK: usize = 1000;

struct Row {
    name: &'static str,
    orphans: u64,
    round_trips: u64,
    elapsed: Duration,
}

#[tokio::main]
async fn main() {
    let mut traces = 1_000_000usize;
    let mut orphan_pct = 1.0f64;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().expect("a value after the flag");
        match arg.as_str() {
            "--traces" => traces = value().parse().expect("--traces N"),
            "--orphan-pct" => orphan_pct = value().parse().expect("--orphan-pct P"),
            other => panic!("unknown argument {other}; use --traces N --orphan-pct P"),
        }
    }
    let orphans = ((traces as f64) * orphan_pct / 100.0).round() as usize;

    let server = support::RedisServer::start();
    let mut raw = server.raw().await;
    let now = SystemClock.now_ms();
    let old = now - 2 * 3_600_000;
    let version: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut raw)
        .await
        .unwrap();
    let version = version
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .unwrap_or("?")
        .trim()
        .to_string();
    eprintln!(
        "private redis-server {version} on port {}: {traces} active traces, {orphans} orphaned",
        server.port()
    );

    // clew layout, written through the registry itself.
    let clock = Arc::new(ManualClock::new(old));
    let registry = RedisRegistry::connect(
        &server.url(),
        RegistryConfig::default()
            .with_prefix("clew:")
            .with_clock(clock.clone()),
    )
    .await
    .unwrap();
    registry.preload_scripts().await.unwrap();
    let started = Instant::now();
    let old_ids: Vec<TraceId> = (0..orphans).map(|_| TraceId::generate()).collect();
    create_all(&registry, old_ids).await;
    clock.set(now);
    let new_ids: Vec<TraceId> = (0..traces - orphans).map(|_| TraceId::generate()).collect();
    create_all(&registry, new_ids).await;
    let load = started.elapsed();
    eprintln!(
        "clew layout loaded via create_trace in {:.1} s ({:.0} creates/s)",
        load.as_secs_f64(),
        traces as f64 / load.as_secs_f64()
    );

    // The seed's layout, twice (each baseline sweep consumes its own copy).
    for prefix in ["seed:", "seedp:"] {
        let started = Instant::now();
        load_seed_layout(&mut raw, prefix, traces, orphans, old, now).await;
        eprintln!(
            "{prefix} seed layout loaded in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    let memory: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut raw)
        .await
        .unwrap();
    if let Some(used) = memory
        .lines()
        .find_map(|l| l.strip_prefix("used_memory_human:"))
    {
        eprintln!("redis used memory: {}", used.trim());
    }

    let mut rows = Vec::new();
    let report = registry.sweep_once(now, THRESHOLD, None).await.unwrap();
    assert_eq!(report.orphaned.len(), orphans);
    rows.push(Row {
        name: "clew: sorted-set index + Lua check-and-mark",
        orphans: report.orphaned.len() as u64,
        round_trips: report.round_trips as u64,
        elapsed: report.elapsed,
    });
    let report = registry.sweep_once(now, THRESHOLD, None).await.unwrap();
    rows.push(Row {
        name: "clew: next sweep, nothing to do",
        orphans: report.orphaned.len() as u64,
        round_trips: report.round_trips as u64,
        elapsed: report.elapsed,
    });
    rows.push(seed_sweep(&mut raw, "seed:", now).await);
    rows.push(seed_sweep_pipelined(&mut raw, "seedp:", now).await);
    for row in &rows[2..] {
        assert_eq!(row.orphans as usize, orphans, "{}", row.name);
    }

    println!(
        "\nSweep of {traces} active traces, {orphans} orphaned ({orphan_pct}%), redis-server {version}, \
         loopback, {} cores\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("| sweep | orphans marked | Redis round trips | time | time per orphan |");
    println!("|---|---:|---:|---:|---:|");
    for row in &rows {
        let per_orphan = if row.orphans > 0 {
            format!(
                "{:.1} µs",
                row.elapsed.as_secs_f64() * 1e6 / row.orphans as f64
            )
        } else {
            "–".to_string()
        };
        println!(
            "| {} | {} | {} | {} | {} |",
            row.name,
            row.orphans,
            row.round_trips,
            human(row.elapsed),
            per_orphan
        );
    }
}

fn human(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs >= 1.0 {
        format!("{secs:.2} s")
    } else if secs >= 0.001 {
        format!("{:.1} ms", secs * 1e3)
    } else {
        format!("{:.0} µs", secs * 1e6)
    }
}

/// Registers ids with many concurrent callers, as many collectors would.
async fn create_all(registry: &RedisRegistry, ids: Vec<TraceId>) {
    let metadata: Metadata = [("service".to_string(), "bench".to_string())].into();
    let metadata = Arc::new(metadata);
    let ids = Arc::new(ids);
    let workers = 64;
    let mut tasks = Vec::new();
    for w in 0..workers {
        let registry = registry.clone();
        let ids = ids.clone();
        let metadata = metadata.clone();
        tasks.push(tokio::spawn(async move {
            for id in ids.iter().skip(w).step_by(workers) {
                registry
                    .create_trace(*id, TraceState::Received, &metadata)
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

fn secs(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// The seed's create_trace (HSET + EXPIRE + SADD), pipelined for loading speed.
async fn load_seed_layout(
    raw: &mut MultiplexedConnection,
    prefix: &str,
    traces: usize,
    orphans: usize,
    old: u64,
    now: u64,
) {
    let index = format!("{prefix}traces:active");
    let mut done = 0;
    while done < traces {
        let n = CHUNK.min(traces - done);
        let mut pipe = redis::pipe();
        for i in done..done + n {
            let id = TraceId::generate();
            let key = format!("{prefix}trace:{id}");
            let created = if i < orphans { old } else { now };
            pipe.cmd("HSET")
                .arg(&key)
                .arg("state")
                .arg("RECEIVED")
                .arg("created_at")
                .arg(secs(created))
                .arg("service")
                .arg("bench")
                .ignore();
            pipe.cmd("EXPIRE").arg(&key).arg(86_400).ignore();
            pipe.cmd("SADD").arg(&index).arg(id.to_string()).ignore();
        }
        let () = pipe.query_async(raw).await.unwrap();
        done += n;
    }
}

fn is_old(created: &str, now: u64) -> bool {
    let created_ms = (created.parse::<f64>().unwrap() * 1000.0) as u64;
    now.saturating_sub(created_ms) > THRESHOLD.as_millis() as u64
}

/// The seed's TraceWatchdog.sweep, one awaited request at a time.
async fn seed_sweep(raw: &mut MultiplexedConnection, prefix: &str, now: u64) -> Row {
    let index = format!("{prefix}traces:active");
    let started = Instant::now();
    let mut round_trips = 0u64;
    let mut orphans = 0u64;
    let members: Vec<String> = redis::cmd("SMEMBERS")
        .arg(&index)
        .query_async(raw)
        .await
        .unwrap();
    round_trips += 1;
    for id in members {
        let key = format!("{prefix}trace:{id}");
        let created: Option<String> = redis::cmd("HGET")
            .arg(&key)
            .arg("created_at")
            .query_async(raw)
            .await
            .unwrap();
        round_trips += 1;
        let Some(created) = created else {
            let () = redis::cmd("SREM")
                .arg(&index)
                .arg(&id)
                .query_async(raw)
                .await
                .unwrap();
            round_trips += 1;
            continue;
        };
        if !is_old(&created, now) {
            continue;
        }
        let state: Option<String> = redis::cmd("HGET")
            .arg(&key)
            .arg("state")
            .query_async(raw)
            .await
            .unwrap();
        round_trips += 1;
        if matches!(state.as_deref(), Some("COMPLETED" | "ERRORED")) {
            continue;
        }
        let () = redis::cmd("HSET")
            .arg(&key)
            .arg("state")
            .arg("ERRORED")
            .query_async(raw)
            .await
            .unwrap();
        let () = redis::cmd("EXPIRE")
            .arg(&key)
            .arg(3600)
            .query_async(raw)
            .await
            .unwrap();
        let () = redis::cmd("SREM")
            .arg(&index)
            .arg(&id)
            .query_async(raw)
            .await
            .unwrap();
        round_trips += 3;
        orphans += 1;
    }
    Row {
        name: "seed: SMEMBERS + per-trace HGET, per-orphan HSET/EXPIRE/SREM",
        orphans,
        round_trips,
        elapsed: started.elapsed(),
    }
}

/// The seed's algorithm with every phase pipelined CHUNK requests at a time.
async fn seed_sweep_pipelined(raw: &mut MultiplexedConnection, prefix: &str, now: u64) -> Row {
    let index = format!("{prefix}traces:active");
    let started = Instant::now();
    let mut round_trips = 0u64;
    let mut orphans = 0u64;
    let members: Vec<String> = redis::cmd("SMEMBERS")
        .arg(&index)
        .query_async(raw)
        .await
        .unwrap();
    round_trips += 1;
    for chunk in members.chunks(CHUNK) {
        let mut pipe = redis::pipe();
        for id in chunk {
            pipe.cmd("HMGET")
                .arg(format!("{prefix}trace:{id}"))
                .arg("created_at")
                .arg("state");
        }
        let fields: Vec<(Option<String>, Option<String>)> = pipe.query_async(raw).await.unwrap();
        round_trips += 1;
        let mut writes = redis::pipe();
        let mut any = false;
        for (id, (created, state)) in chunk.iter().zip(fields) {
            let key = format!("{prefix}trace:{id}");
            match created {
                None => {
                    writes.cmd("SREM").arg(&index).arg(id).ignore();
                    any = true;
                }
                Some(created)
                    if is_old(&created, now)
                        && !matches!(state.as_deref(), Some("COMPLETED" | "ERRORED")) =>
                {
                    writes
                        .cmd("HSET")
                        .arg(&key)
                        .arg("state")
                        .arg("ERRORED")
                        .ignore();
                    writes.cmd("EXPIRE").arg(&key).arg(3600).ignore();
                    writes.cmd("SREM").arg(&index).arg(id).ignore();
                    orphans += 1;
                    any = true;
                }
                Some(_) => {}
            }
        }
        if any {
            let () = writes.query_async(raw).await.unwrap();
            round_trips += 1;
        }
    }
    Row {
        name: "seed, pipelined ×1000 (same algorithm)",
        orphans,
        round_trips,
        elapsed: started.elapsed(),
    }
}
