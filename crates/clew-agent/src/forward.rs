//! The standalone agent's sink: OTLP/HTTP protobuf to a collector, through a spool.
//!
//! Every batch is first written to a file in the spool directory, and only deleted once
//! the collector accepted it. An uploader sends the files oldest first, retrying refusals
//! and unreachable collectors with exponential back-off. So a collector that restarts,
//! or an agent that restarts, loses nothing: the spool is read again at start. The spool
//! is bounded in bytes; when a collector stays away long enough to fill it, the oldest
//! batches are dropped (and logged) to make room for new ones, because recent traces are
//! the ones someone is about to look for.
//!
//! Files are not fsynced: the spool protects against the collector and the agent going
//! away, not against the machine losing power.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clew_model::Span;
use prost::Message;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::sink::{SinkError, SpanSink};

const SPOOL_SUFFIX: &str = "otlp";
const PARTIAL_SUFFIX: &str = "partial";

#[derive(Debug, Clone)]
pub struct ForwarderConfig {
    /// The collector's OTLP/HTTP traces endpoint, e.g. `http://127.0.0.1:4318/v1/traces`.
    pub endpoint: String,
    pub spool_dir: PathBuf,
    /// Bytes of encoded batches kept while the collector is unreachable.
    pub max_spool_bytes: u64,
    pub request_timeout: Duration,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// When the agent stops, how long to keep trying to empty the spool. What is left stays
    /// on disk for the next start.
    pub flush_timeout: Duration,
}

impl ForwarderConfig {
    pub fn new(endpoint: impl Into<String>, spool_dir: impl Into<PathBuf>) -> ForwarderConfig {
        ForwarderConfig {
            endpoint: endpoint.into(),
            spool_dir: spool_dir.into(),
            max_spool_bytes: 256 << 20,
            request_timeout: Duration::from_secs(10),
            first_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
            flush_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("cannot use {path} as the agent's spool directory: {source}")]
    Spool { path: PathBuf, source: io::Error },
    #[error("invalid collector endpoint {endpoint:?}: {reason}")]
    Endpoint { endpoint: String, reason: String },
}

/// Counters of the spool, for status output and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SpoolStats {
    pub batches: usize,
    pub bytes: u64,
    pub batches_sent: u64,
    pub batches_dropped: u64,
}

pub struct OtlpForwarder {
    inner: Arc<Inner>,
    uploader: Mutex<Option<JoinHandle<()>>>,
}

struct Inner {
    config: ForwarderConfig,
    client: reqwest::Client,
    spool: Mutex<Spool>,
    wake: Notify,
    /// Set by `flush`: the deadline after which the uploader gives up and exits.
    draining: watch::Sender<Option<tokio::time::Instant>>,
}

#[derive(Default)]
struct Spool {
    /// Sequence number to size, oldest first.
    files: BTreeMap<u64, u64>,
    bytes: u64,
    next_sequence: u64,
    batches_sent: u64,
    batches_dropped: u64,
}

impl OtlpForwarder {
    /// Opens (or creates) the spool, picks up batches a previous run left, and starts
    /// uploading. Must be called inside a tokio runtime.
    pub fn start(config: ForwarderConfig) -> Result<OtlpForwarder, ForwardError> {
        let url = reqwest::Url::parse(&config.endpoint).map_err(|e| ForwardError::Endpoint {
            endpoint: config.endpoint.clone(),
            reason: e.to_string(),
        })?;
        if url.scheme() != "http" {
            return Err(ForwardError::Endpoint {
                endpoint: config.endpoint.clone(),
                reason: "only http:// is supported (this build has no TLS); forward to a local collector".into(),
            });
        }
        let spool = load_spool(&config.spool_dir).map_err(|source| ForwardError::Spool {
            path: config.spool_dir.clone(),
            source,
        })?;
        if !spool.files.is_empty() {
            tracing::info!(
                batches = spool.files.len(),
                bytes = spool.bytes,
                "found spooled batches from an earlier run; sending them first"
            );
        }
        let client = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .build()
            .map_err(|e| ForwardError::Endpoint {
                endpoint: config.endpoint.clone(),
                reason: e.to_string(),
            })?;
        let inner = Arc::new(Inner {
            config,
            client,
            spool: Mutex::new(spool),
            wake: Notify::new(),
            draining: watch::channel(None).0,
        });
        let uploader = tokio::spawn(upload_loop(Arc::clone(&inner)));
        Ok(OtlpForwarder {
            inner,
            uploader: Mutex::new(Some(uploader)),
        })
    }

    pub fn stats(&self) -> SpoolStats {
        let spool = self.inner.spool.lock().expect("spool lock");
        SpoolStats {
            batches: spool.files.len(),
            bytes: spool.bytes,
            batches_sent: spool.batches_sent,
            batches_dropped: spool.batches_dropped,
        }
    }
}

#[async_trait::async_trait]
impl SpanSink for OtlpForwarder {
    async fn send(&self, spans: &[Span]) -> Result<(), SinkError> {
        let body = clew_otlp::to_request(spans).encode_to_vec();
        let size = body.len() as u64;
        let max = self.inner.config.max_spool_bytes;
        if size > max {
            return Err(SinkError::Rejected(format!(
                "a batch of {size} bytes is larger than the whole spool ({max} bytes); raise the spool size"
            )));
        }
        let (sequence, evicted) = {
            let mut spool = self.inner.spool.lock().expect("spool lock");
            let mut evicted = Vec::new();
            while spool.bytes + size > max {
                let Some((oldest, bytes)) = spool.files.pop_first() else {
                    break;
                };
                spool.bytes -= bytes;
                spool.batches_dropped += 1;
                evicted.push(oldest);
            }
            let sequence = spool.next_sequence;
            spool.next_sequence += 1;
            (sequence, evicted)
        };
        let dir = self.inner.config.spool_dir.clone();
        if !evicted.is_empty() {
            tracing::error!(
                batches = evicted.len(),
                max_spool_bytes = max,
                "the spool is full (the collector has been unreachable for long): dropped the oldest batches"
            );
        }
        let written = tokio::task::spawn_blocking(move || {
            for old in evicted {
                let _ = std::fs::remove_file(spool_path(&dir, old));
            }
            let partial = dir.join(format!("{sequence:020}.{PARTIAL_SUFFIX}"));
            std::fs::write(&partial, &body)?;
            std::fs::rename(&partial, spool_path(&dir, sequence))
        })
        .await
        .map_err(|e| SinkError::Retryable(e.to_string()))?;
        if let Err(error) = written {
            return Err(SinkError::Retryable(format!(
                "cannot write to the spool {}: {error}",
                self.inner.config.spool_dir.display()
            )));
        }
        {
            let mut spool = self.inner.spool.lock().expect("spool lock");
            spool.files.insert(sequence, size);
            spool.bytes += size;
        }
        self.inner.wake.notify_one();
        Ok(())
    }

    async fn flush(&self) -> Result<(), SinkError> {
        let deadline = tokio::time::Instant::now() + self.inner.config.flush_timeout;
        self.inner.draining.send_replace(Some(deadline));
        self.inner.wake.notify_one();
        let uploader = self.uploader.lock().expect("uploader lock").take();
        if let Some(uploader) = uploader {
            let _ = uploader.await;
        }
        let left = self.stats();
        if left.batches > 0 {
            return Err(SinkError::Retryable(format!(
                "{} batches ({} bytes) could not reach {} before stopping; they stay in {} and are sent at the next start",
                left.batches,
                left.bytes,
                self.inner.config.endpoint,
                self.inner.config.spool_dir.display()
            )));
        }
        Ok(())
    }
}

impl Drop for OtlpForwarder {
    fn drop(&mut self) {
        if let Some(uploader) = self.uploader.lock().expect("uploader lock").take() {
            uploader.abort();
        }
    }
}

fn spool_path(dir: &Path, sequence: u64) -> PathBuf {
    dir.join(format!("{sequence:020}.{SPOOL_SUFFIX}"))
}

fn load_spool(dir: &Path) -> io::Result<Spool> {
    std::fs::create_dir_all(dir)?;
    let mut spool = Spool::default();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let extension = path.extension().and_then(|e| e.to_str());
        if extension == Some(PARTIAL_SUFFIX) {
            // Written by a run that died mid-write: never acknowledged, incomplete.
            let _ = std::fs::remove_file(&path);
            continue;
        }
        let sequence = path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse::<u64>().ok());
        if let (Some(SPOOL_SUFFIX), Some(sequence)) = (extension, sequence) {
            let size = entry.metadata()?.len();
            spool.files.insert(sequence, size);
            spool.bytes += size;
            spool.next_sequence = spool.next_sequence.max(sequence + 1);
        }
    }
    Ok(spool)
}

enum Upload {
    Accepted,
    /// The collector will never take this batch (a 4xx other than 408/429).
    Refused(String),
    Retry(String),
}

async fn upload_loop(inner: Arc<Inner>) {
    let mut draining = inner.draining.subscribe();
    let mut backoff = inner.config.first_backoff;
    let mut failing_since_logged = false;
    loop {
        let oldest = inner
            .spool
            .lock()
            .expect("spool lock")
            .files
            .first_key_value()
            .map(|(sequence, _)| *sequence);
        let Some(sequence) = oldest else {
            if draining.borrow().is_some() {
                return;
            }
            tokio::select! {
                _ = inner.wake.notified() => {}
                _ = draining.changed() => {}
            }
            continue;
        };
        let path = spool_path(&inner.config.spool_dir, sequence);
        let body = match tokio::fs::read(&path).await {
            Ok(body) => body,
            Err(error) => {
                if error.kind() != io::ErrorKind::NotFound {
                    tracing::error!(path = %path.display(), %error, "cannot read a spooled batch; dropping it");
                }
                forget(&inner, sequence, false);
                continue;
            }
        };
        match upload(&inner, body).await {
            Upload::Accepted => {
                let _ = tokio::fs::remove_file(&path).await;
                forget(&inner, sequence, true);
                if failing_since_logged {
                    tracing::info!(endpoint = %inner.config.endpoint, "the collector accepts batches again");
                    failing_since_logged = false;
                }
                backoff = inner.config.first_backoff;
            }
            Upload::Refused(reason) => {
                tracing::error!(endpoint = %inner.config.endpoint, %reason, "the collector refused a batch; dropping it");
                let _ = tokio::fs::remove_file(&path).await;
                forget(&inner, sequence, false);
            }
            Upload::Retry(reason) => {
                let deadline = *draining.borrow();
                if let Some(deadline) = deadline
                    && tokio::time::Instant::now() + backoff > deadline
                {
                    tracing::warn!(endpoint = %inner.config.endpoint, %reason, "stopping with batches still spooled");
                    return;
                }
                if !failing_since_logged {
                    tracing::warn!(endpoint = %inner.config.endpoint, %reason, "cannot deliver to the collector; keeping batches spooled and retrying");
                    failing_since_logged = true;
                } else {
                    tracing::debug!(%reason, retry_in = ?backoff, "collector still unavailable");
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = draining.changed() => {}
                }
                backoff = (backoff * 2).min(inner.config.max_backoff);
            }
        }
    }
}

fn forget(inner: &Inner, sequence: u64, sent: bool) {
    let mut spool = inner.spool.lock().expect("spool lock");
    if let Some(size) = spool.files.remove(&sequence) {
        spool.bytes -= size;
        if sent {
            spool.batches_sent += 1;
        } else {
            spool.batches_dropped += 1;
        }
    }
}

async fn upload(inner: &Inner, body: Vec<u8>) -> Upload {
    let response = inner
        .client
        .post(&inner.config.endpoint)
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .await;
    let response = match response {
        Ok(response) => response,
        Err(error) => return Upload::Retry(error.to_string()),
    };
    let status = response.status();
    if status.is_success() {
        if let Ok(bytes) = response.bytes().await
            && let Ok(answer) = clew_otlp::ExportTraceServiceResponse::decode(bytes.as_ref())
            && let Some(partial) = answer.partial_success.filter(|p| p.rejected_spans > 0)
        {
            tracing::warn!(
                rejected = partial.rejected_spans,
                message = %partial.error_message,
                "the collector rejected some spans of a batch"
            );
        }
        return Upload::Accepted;
    }
    let text = response.text().await.unwrap_or_default();
    let reason = format!(
        "HTTP {status}: {}",
        text.chars().take(300).collect::<String>()
    );
    match status.as_u16() {
        408 | 429 => Upload::Retry(reason),
        400..=499 => Upload::Refused(reason),
        _ => Upload::Retry(reason),
    }
}
