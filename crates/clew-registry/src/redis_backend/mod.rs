//! The Redis backend: seed-compatible keys, Lua for every read-check-write step.

mod conn;
mod election;
mod scripts;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use clew_model::TraceId;
use redis::Value;

pub use conn::{RedisConn, RedisTarget};
pub use election::RedisLeaderElection;

use crate::config::RegistryConfig;
use crate::error::{RegistryError, Result};
use crate::keys::KeyLayout;
use crate::leader::{LeaderElection, LeaseConfig};
use crate::model::{
    ActiveCursor, ActivePage, ActiveTrace, CreateOutcome, Metadata, Orphan, SweepReport,
    TraceRecord, TraceState, Transition, parse_member, parse_secs, secs_text,
};
use crate::{Registry, check_metadata, log_orphans};
use conn::bounded;
use scripts::Scripts;

/// What the registry and its elections share.
#[derive(Debug)]
pub(crate) struct Shared {
    conn: RedisConn,
    endpoint: String,
    keys: KeyLayout,
    config: RegistryConfig,
    scripts: Scripts,
}

impl Shared {
    fn conn(&self) -> RedisConn {
        self.conn.clone()
    }

    async fn run<T>(
        &self,
        fut: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T> {
        bounded(&self.endpoint, self.config.op_timeout, fut).await
    }
}

/// The lifecycle registry in Redis (one server or a cluster).
#[derive(Debug, Clone)]
pub struct RedisRegistry {
    shared: Arc<Shared>,
}

impl RedisRegistry {
    /// Connects to `redis://host:port` or `redis+cluster://host:port,host:port`, failing
    /// with [`RegistryError::Unavailable`] or [`RegistryError::Timeout`] if the server
    /// does not answer.
    pub async fn connect(url: &str, config: RegistryConfig) -> Result<RedisRegistry> {
        let target = RedisTarget::parse(url)?;
        let conn = target.connect(config.op_timeout, false).await?;
        RedisRegistry::from_conn(conn, target.endpoint(), config)
    }

    /// Like [`connect`](Self::connect) but never waits for the server: a single-server
    /// connection is made on first use, so a collector can start (and ingest) while Redis
    /// is down. Cluster URLs still connect eagerly.
    pub async fn connect_lazy(url: &str, config: RegistryConfig) -> Result<RedisRegistry> {
        let target = RedisTarget::parse(url)?;
        let conn = target.connect(config.op_timeout, true).await?;
        RedisRegistry::from_conn(conn, target.endpoint(), config)
    }

    /// Wraps an existing connection. In cluster mode the key prefix must hold a hash tag
    /// (e.g. `{clew}:`), because the sweep updates the index and the trace hashes in one
    /// script and Redis Cluster only allows that within one slot.
    pub fn from_conn(
        conn: RedisConn,
        endpoint: impl Into<String>,
        config: RegistryConfig,
    ) -> Result<RedisRegistry> {
        let keys = KeyLayout::new(config.key_prefix.clone());
        if matches!(conn, RedisConn::Cluster(_)) && !keys.has_hash_tag() {
            return Err(RegistryError::Config(format!(
                "in Redis Cluster the key prefix must contain a hash tag so that all registry keys \
                 share one slot; use e.g. \"{{{}}}:\" instead of {:?}",
                keys.prefix().trim_end_matches(':'),
                keys.prefix()
            )));
        }
        if config.sweep_batch == 0 {
            return Err(RegistryError::Config(
                "sweep_batch must be at least 1".into(),
            ));
        }
        Ok(RedisRegistry {
            shared: Arc::new(Shared {
                conn,
                endpoint: endpoint.into(),
                keys,
                config,
                scripts: Scripts::new(),
            }),
        })
    }

    pub fn keys(&self) -> &KeyLayout {
        &self.shared.keys
    }

    pub fn config(&self) -> &RegistryConfig {
        &self.shared.config
    }

    /// The underlying connection (for tools and tests that read keys directly).
    pub fn connection(&self) -> RedisConn {
        self.shared.conn()
    }

    /// Loads the Lua scripts so that the first calls cost one round trip each (they are
    /// otherwise loaded on first use, and again after a server restart).
    pub async fn preload_scripts(&self) -> Result<()> {
        for script in self.shared.scripts.all() {
            let mut conn = self.shared.conn();
            self.shared.run(script.load_async(&mut conn)).await?;
        }
        Ok(())
    }

    pub fn leader_election(&self, config: LeaseConfig) -> RedisLeaderElection {
        RedisLeaderElection::new(self.shared.clone(), config)
    }

    async fn set_state(
        &self,
        id: TraceId,
        to: TraceState,
        error: Option<&str>,
    ) -> Result<Transition> {
        let s = &self.shared;
        let member = id.to_string();
        let now = s.config.clock.now_ms();
        let mut inv = s.scripts.transition.prepare_invoke();
        inv.key(s.keys.trace_member(&member))
            .key(s.keys.active())
            .arg(&member)
            .arg(to.as_str())
            .arg(secs_text(now))
            .arg(s.config.terminal_secs())
            .arg(error.unwrap_or(""));
        let mut conn = s.conn();
        let (outcome, previous): (String, String) = s.run(inv.invoke_async(&mut conn)).await?;
        let key = || s.keys.trace(id);
        let parse_state = |text: &str| {
            text.parse::<TraceState>()
                .map_err(|e| RegistryError::Corrupt {
                    key: key(),
                    detail: e.to_string(),
                })
        };
        Ok(match outcome.as_str() {
            "APPLIED" => Transition::Applied {
                from: parse_state(&previous)?,
            },
            "UNCHANGED" => Transition::Unchanged,
            "REFUSED" => Transition::Refused {
                current: parse_state(&previous)?,
            },
            "NOT_FOUND" => Transition::NotFound,
            other => {
                return Err(RegistryError::Corrupt {
                    key: key(),
                    detail: format!("unexpected transition outcome {other:?}"),
                });
            }
        })
    }

    /// One atomic check-and-mark step over `entries`; `Ok(Err(current token))` when
    /// fenced off.
    async fn sweep_batch(
        &self,
        entries: &[(String, f64)],
        now_ms: u64,
        cutoff_ms: u64,
        fence: Option<u64>,
    ) -> Result<Result<BatchResult, String>> {
        let s = &self.shared;
        let mut inv = s.scripts.sweep.prepare_invoke();
        inv.key(s.keys.active())
            .key(s.keys.orphaned())
            .key(s.keys.fence())
            .arg(fence.map(|t| t.to_string()).unwrap_or_default())
            .arg(secs_text(now_ms))
            .arg(secs_text(cutoff_ms))
            .arg(s.config.terminal_secs())
            .arg(secs_text(
                now_ms.saturating_sub(s.config.terminal_ttl.as_millis() as u64),
            ));
        for (member, _) in entries {
            inv.key(s.keys.trace_member(member));
        }
        for (member, _) in entries {
            inv.arg(member);
        }
        let mut conn = s.conn();
        let reply: Value = s.run(inv.invoke_async(&mut conn)).await?;
        let corrupt = |detail: String| RegistryError::Corrupt {
            key: s.keys.active(),
            detail,
        };
        let Value::Array(items) = reply else {
            return Err(corrupt(format!("unexpected sweep reply {reply:?}")));
        };
        match items.first().and_then(value_text).as_deref() {
            Some("FENCED") => Ok(Err(items.get(1).and_then(value_text).unwrap_or_default())),
            Some("OK") if items.len() == 5 => {
                let int = |i: usize| match &items[i] {
                    Value::Int(n) => Ok(*n as u64),
                    other => Err(corrupt(format!("unexpected count {other:?}"))),
                };
                let orphaned = match &items[4] {
                    Value::Array(members) => members.iter().filter_map(value_text).collect(),
                    _ => Vec::new(),
                };
                Ok(Ok(BatchResult {
                    expired: int(1)?,
                    finished: int(2)?,
                    skipped: int(3)?,
                    orphaned,
                }))
            }
            _ => Err(corrupt(format!("unexpected sweep reply {items:?}"))),
        }
    }
}

struct BatchResult {
    expired: u64,
    finished: u64,
    skipped: u64,
    orphaned: Vec<String>,
}

fn value_text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Okay => Some("OK".to_string()),
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

fn score_ms(score: f64) -> u64 {
    (score * 1000.0).round().max(0.0) as u64
}

/// Reads a trace hash as HGETALL returned it.
pub(crate) fn record_from_hash(
    id: TraceId,
    key: &str,
    mut fields: HashMap<String, String>,
) -> Result<TraceRecord> {
    let corrupt = |detail: String| RegistryError::Corrupt {
        key: key.to_string(),
        detail,
    };
    let state = fields
        .remove("state")
        .ok_or_else(|| corrupt("no state field".into()))?
        .parse::<TraceState>()
        .map_err(|e| corrupt(e.to_string()))?;
    let created = fields
        .remove("created_at")
        .ok_or_else(|| corrupt("no created_at field".into()))?;
    let created_at_ms = parse_secs(&created)
        .ok_or_else(|| corrupt(format!("created_at {created:?} is not a time")))?;
    let mut time = |field: &str| fields.remove(field).and_then(|t| parse_secs(&t));
    let finished_at_ms = time("finished_at");
    let orphaned_at_ms = time("orphaned_at");
    let error = fields.remove("error");
    Ok(TraceRecord {
        id,
        state,
        created_at_ms,
        finished_at_ms,
        orphaned_at_ms,
        error,
        metadata: fields.into_iter().collect(),
    })
}

#[async_trait]
impl Registry for RedisRegistry {
    async fn create_trace(
        &self,
        id: TraceId,
        initial: TraceState,
        metadata: &Metadata,
    ) -> Result<CreateOutcome> {
        check_metadata(metadata)?;
        let s = &self.shared;
        let member = id.to_string();
        let now = s.config.clock.now_ms();
        let (ttl, index) = if initial.is_terminal() {
            (s.config.terminal_secs(), "0")
        } else {
            (s.config.failsafe_secs(), "1")
        };
        let mut inv = s.scripts.create.prepare_invoke();
        inv.key(s.keys.trace_member(&member))
            .key(s.keys.active())
            .arg(&member)
            .arg(initial.as_str())
            .arg(secs_text(now))
            .arg(ttl)
            .arg(index);
        for (field, value) in metadata {
            inv.arg(field).arg(value);
        }
        let mut conn = s.conn();
        let created: i64 = s.run(inv.invoke_async(&mut conn)).await?;
        Ok(if created == 1 {
            CreateOutcome::Created
        } else {
            CreateOutcome::AlreadyExists
        })
    }

    async fn transition(&self, id: TraceId, to: TraceState) -> Result<Transition> {
        self.set_state(id, to, None).await
    }

    async fn mark_errored(&self, id: TraceId, reason: &str) -> Result<Transition> {
        self.set_state(id, TraceState::Errored, Some(reason)).await
    }

    async fn get(&self, id: TraceId) -> Result<Option<TraceRecord>> {
        let s = &self.shared;
        let key = s.keys.trace(id);
        let mut conn = s.conn();
        let fields: HashMap<String, String> = s
            .run(redis::cmd("HGETALL").arg(&key).query_async(&mut conn))
            .await?;
        if fields.is_empty() {
            return Ok(None);
        }
        record_from_hash(id, &key, fields).map(Some)
    }

    async fn list_active(&self, limit: usize, after: Option<ActiveCursor>) -> Result<ActivePage> {
        let s = &self.shared;
        let min = after.map_or_else(|| "-inf".to_string(), |c| secs_text(c.created_at_ms));
        // One extra entry tells whether another page follows.
        let want = limit.saturating_add(1);
        let mut traces = Vec::with_capacity(want.min(10_000));
        let mut offset = 0usize;
        loop {
            // Entries sharing the cursor's millisecond are skipped below, so a page may
            // need a second read when many traces started in the same millisecond.
            let count = want - traces.len() + 16;
            let mut conn = s.conn();
            let batch: Vec<(String, f64)> = s
                .run(
                    redis::cmd("ZRANGEBYSCORE")
                        .arg(s.keys.active())
                        .arg(&min)
                        .arg("+inf")
                        .arg("WITHSCORES")
                        .arg("LIMIT")
                        .arg(offset)
                        .arg(count)
                        .query_async(&mut conn),
                )
                .await?;
            let fetched = batch.len();
            for (member, score) in batch {
                let Some(id) = parse_member(&member) else {
                    tracing::debug!(member, "skipping unparsable active-index member");
                    continue;
                };
                let entry = ActiveTrace {
                    id,
                    created_at_ms: score_ms(score),
                };
                if after.is_some_and(|c| ActiveCursor::from(entry) <= c) {
                    continue;
                }
                traces.push(entry);
                if traces.len() == want {
                    break;
                }
            }
            if traces.len() == want || fetched < count {
                break;
            }
            offset += fetched;
        }
        let next = if traces.len() > limit {
            traces.truncate(limit);
            traces.last().map(|t| ActiveCursor::from(*t))
        } else {
            None
        };
        Ok(ActivePage { traces, next })
    }

    async fn active_count(&self) -> Result<u64> {
        let s = &self.shared;
        let mut conn = s.conn();
        s.run(
            redis::cmd("ZCARD")
                .arg(s.keys.active())
                .query_async(&mut conn),
        )
        .await
    }

    async fn list_orphans(&self, limit: usize) -> Result<Vec<TraceRecord>> {
        let s = &self.shared;
        let oldest = s
            .config
            .clock
            .now_ms()
            .saturating_sub(s.config.terminal_ttl.as_millis() as u64);
        let mut conn = s.conn();
        let members: Vec<String> = s
            .run(
                redis::cmd("ZREVRANGEBYSCORE")
                    .arg(s.keys.orphaned())
                    .arg("+inf")
                    .arg(secs_text(oldest))
                    .arg("LIMIT")
                    .arg(0)
                    .arg(limit)
                    .query_async(&mut conn),
            )
            .await?;
        if members.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for member in &members {
            pipe.cmd("HGETALL").arg(s.keys.trace_member(member));
        }
        let hashes: Vec<HashMap<String, String>> = s.run(pipe.query_async(&mut conn)).await?;
        let mut out = Vec::with_capacity(members.len());
        for (member, fields) in members.iter().zip(hashes) {
            // An expired hash just means the orphan aged out; not worth an error.
            let Some(id) = parse_member(member) else {
                continue;
            };
            if fields.is_empty() {
                continue;
            }
            out.push(record_from_hash(id, &s.keys.trace_member(member), fields)?);
        }
        Ok(out)
    }

    async fn sweep_once(
        &self,
        now_ms: u64,
        threshold: Duration,
        fence: Option<u64>,
    ) -> Result<SweepReport> {
        let s = &self.shared;
        let started = Instant::now();
        let cutoff_ms = now_ms.saturating_sub(threshold.as_millis() as u64);
        let mut report = SweepReport::default();
        loop {
            // Only entries old enough to be orphans are read: the index is ordered by
            // creation time, so this costs O(orphans), not O(active).
            let mut conn = s.conn();
            let entries: Vec<(String, f64)> = s
                .run(
                    redis::cmd("ZRANGEBYSCORE")
                        .arg(s.keys.active())
                        .arg("-inf")
                        .arg(secs_text(cutoff_ms))
                        .arg("WITHSCORES")
                        .arg("LIMIT")
                        .arg(0)
                        .arg(s.config.sweep_batch)
                        .query_async(&mut conn),
                )
                .await?;
            report.round_trips += 1;
            if entries.is_empty() {
                break;
            }
            let result = self.sweep_batch(&entries, now_ms, cutoff_ms, fence).await?;
            report.round_trips += 1;
            report.batches += 1;
            let batch = match result {
                Ok(batch) => batch,
                Err(current) => {
                    return Err(RegistryError::Fenced {
                        presented: fence.unwrap_or_default(),
                        current: if current.is_empty() {
                            "none".to_string()
                        } else {
                            current
                        },
                    });
                }
            };
            report.expired += batch.expired;
            report.finished += batch.finished;
            report.skipped += batch.skipped;
            let scores: HashMap<&str, f64> =
                entries.iter().map(|(m, sc)| (m.as_str(), *sc)).collect();
            let first_new = report.orphaned.len();
            for member in &batch.orphaned {
                let created_at_ms = scores.get(member.as_str()).map_or(0, |sc| score_ms(*sc));
                match parse_member(member) {
                    Some(id) => report.orphaned.push(Orphan {
                        id,
                        created_at_ms,
                        age: Duration::from_millis(now_ms.saturating_sub(created_at_ms)),
                    }),
                    None => tracing::warn!(
                        trace_id = member.as_str(),
                        age_s = now_ms.saturating_sub(created_at_ms) / 1000,
                        "trace_orphaned"
                    ),
                }
            }
            log_orphans(&report.orphaned[first_new..]);
            if entries.len() < s.config.sweep_batch {
                break;
            }
        }
        report.elapsed = started.elapsed();
        Ok(report)
    }

    fn election(&self, config: LeaseConfig) -> Arc<dyn LeaderElection> {
        Arc::new(self.leader_election(config))
    }

    fn now_ms(&self) -> u64 {
        self.shared.config.clock.now_ms()
    }

    fn backend_name(&self) -> &'static str {
        match self.shared.conn {
            RedisConn::Single(_) => "redis",
            RedisConn::Cluster(_) => "redis-cluster",
        }
    }
}
