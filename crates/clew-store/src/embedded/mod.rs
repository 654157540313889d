//! The embedded backend: spans in a fjall database inside the data directory.
//!
//! Keyspaces (all lz4-compressed at every level):
//!
//! | keyspace | key | value |
//! |---|---|---|
//! | `spans` | service id (4) · newest start (8) · trace id (16) · write seq (varint) | a span group ([`codec`]) |
//! | `traces` | trace id (16), for the trace's first write; later writes: trace id · write seq (varint) | the trace's groups from that write; children whose dependency edge was taken care of (first write: seq first) |
//! | `pending` | target trace · target span · child trace · child span; target trace alone (a marker) | what the edge needs of the child; — |
//! | `dependencies` | hour (8) · parent · child · channel | call count, error count |
//! | `services` | name | service id (4) |
//! | `operations` | service id (4) · kind (1) · name | — |
//! | `resources` | resource id (4) | encoded resource |
//! | `resource_hashes` | hash of encoded resource (8) · resource id (4) | — |
//! | `strings` | string id (4) | a string of the store-wide dictionary ([`dict`]) |
//! | `meta` | name | format version, write sequence number |
//!
//! Spans are stored in *groups*: the spans of one trace and one service from one
//! `write` call, whose starts lie within [`GROUP_SPREAD_NANOS`]. `spans` is ordered by
//! service and time, so it doubles as the search index: a search walks one service's
//! groups newest first and reads names, kinds, starts and durations from the group
//! headers. `traces` finds a trace's groups by id.

mod codec;
mod deps;
mod dict;
mod hash;
mod keys;
mod retention;
mod search;
mod write;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard};

use clew_model::{Resource, Span, SpanId, SpanKind, TraceId};
use clew_otlp::{SpanBatch, SpanRef};
use fjall::config::{BlockSizePolicy, CompressionPolicy, FilterPolicy};
use fjall::{CompressionType, Database, Keyspace, KeyspaceCreateOptions};

use crate::{Dependency, Operation, Result, SpanStore, StoreError, TraceQuery};
use codec::DecodeError;
use dict::Dict;
use keys::{GroupKey, ServiceId, TraceEntry};

/// Spans of one trace and service written together share a group only if their starts
/// are at most this far apart. The bound lets a search by time range know how far past
/// the range's end a group that still holds matching spans can be keyed.
pub(crate) const GROUP_SPREAD_NANOS: u64 = 10 * 1_000_000_000;

/// 2: `traces` head entries under the bare trace id, `pending` trace markers.
const FORMAT_VERSION: u8 = 2;
const META_FORMAT: &str = "format";
const META_SEQ: &str = "seq";

impl From<fjall::Error> for StoreError {
    fn from(e: fjall::Error) -> StoreError {
        match e {
            fjall::Error::Locked => StoreError::Engine(
                "the store is locked by another process; is another clew running with this data directory?"
                    .into(),
            ),
            other => StoreError::Engine(other.to_string()),
        }
    }
}

fn corrupt(key: &[u8], e: DecodeError) -> StoreError {
    StoreError::Corrupt {
        key: keys::hex(key),
        reason: e.0,
    }
}

struct Keyspaces {
    spans: Keyspace,
    traces: Keyspace,
    pending: Keyspace,
    dependencies: Keyspace,
    services: Keyspace,
    operations: Keyspace,
    resources: Keyspace,
    resource_hashes: Keyspace,
    strings: Keyspace,
    meta: Keyspace,
}

/// Service names and their ids; ids are dense, so `names[id]` is the name.
#[derive(Default)]
struct Services {
    by_name: HashMap<String, ServiceId>,
    names: Vec<String>,
}

/// The embedded span store (see the module docs for the layout).
pub struct FjallStore {
    db: Database,
    ks: Keyspaces,
    services: RwLock<Services>,
    dict: RwLock<Dict>,
    resources: RwLock<HashMap<u32, Arc<Resource>>>,
    writer: Mutex<write::Writer>,
}

fn options(block_size: u32, filters: bool) -> KeyspaceCreateOptions {
    let mut opts = KeyspaceCreateOptions::default()
        .data_block_size_policy(BlockSizePolicy::all(block_size))
        .data_block_compression_policy(CompressionPolicy::all(CompressionType::Lz4))
        .index_block_compression_policy(CompressionPolicy::all(CompressionType::Lz4));
    if !filters {
        // Keyspaces that are only ever scanned by prefix gain nothing from bloom filters.
        opts = opts.filter_policy(FilterPolicy::disabled());
    }
    opts
}

fn be_u32(key: &[u8], bytes: &[u8], what: &str) -> Result<u32> {
    bytes
        .try_into()
        .map(u32::from_be_bytes)
        .map_err(|_| corrupt(key, DecodeError(format!("bad {what}"))))
}

impl FjallStore {
    /// Opens the store in `dir` (created if missing; `clew serve` passes
    /// `<data-dir>/spans`). Fails if another process has it open.
    pub fn open(dir: &Path) -> Result<FjallStore> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::DataDir {
            path: dir.display().to_string(),
            source,
        })?;
        let db = Database::builder(dir).cache_size(64 * 1024 * 1024).open()?;
        let ks = Keyspaces {
            // Groups are read whole and in runs, so large blocks cost little and
            // compress better; every point read of a group is expected to hit.
            spans: db.keyspace("spans", || {
                options(32 * 1024, true).expect_point_read_hits(true)
            })?,
            // Bloom filters answer "anything stored for this trace?" (head entries,
            // pending markers) for the many traces that are new.
            traces: db.keyspace("traces", || options(16 * 1024, true))?,
            pending: db.keyspace("pending", || options(4 * 1024, true))?,
            dependencies: db.keyspace("dependencies", || options(4 * 1024, true))?,
            services: db.keyspace("services", || options(4 * 1024, true))?,
            operations: db.keyspace("operations", || options(4 * 1024, true))?,
            resources: db.keyspace("resources", || options(4 * 1024, true))?,
            resource_hashes: db.keyspace("resource_hashes", || options(4 * 1024, false))?,
            strings: db.keyspace("strings", || options(16 * 1024, false))?,
            meta: db.keyspace("meta", || options(4 * 1024, true))?,
        };

        match ks.meta.get(META_FORMAT)? {
            None => ks.meta.insert(META_FORMAT, [FORMAT_VERSION])?,
            Some(v) if v.as_ref() == [FORMAT_VERSION] => {}
            Some(v) => {
                return Err(StoreError::Engine(format!(
                    "{} holds store format {:?}, this clew reads format {FORMAT_VERSION}; \
                     use a matching clew version or a new data directory",
                    dir.display(),
                    v.as_ref()
                )));
            }
        }
        let seq = match ks.meta.get(META_SEQ)? {
            Some(v) => u64::from_be_bytes(v.as_ref().try_into().map_err(|_| {
                corrupt(
                    META_SEQ.as_bytes(),
                    DecodeError("bad sequence number".into()),
                )
            })?),
            None => 0,
        };
        // Resource ids are dense, so the next one follows the last stored.
        let next_resource = match ks.resources.last_key_value() {
            Some(guard) => {
                let key = guard.key()?;
                be_u32(&key, &key, "resource id")? + 1
            }
            None => 0,
        };

        let mut services = Services::default();
        for guard in ks.services.iter() {
            let (name, id) = guard.into_inner()?;
            let id = be_u32(&name, &id, "service id")?;
            let name = String::from_utf8(name.to_vec())
                .map_err(|_| corrupt(&name, DecodeError("service name is not UTF-8".into())))?;
            let idx = id as usize;
            if services.names.len() <= idx {
                services.names.resize(idx + 1, String::new());
            }
            services.names[idx] = name.clone();
            services.by_name.insert(name, id);
        }
        let mut dict = Dict::default();
        for guard in ks.strings.iter() {
            let (id, s) = guard.into_inner()?;
            let s = std::str::from_utf8(&s)
                .map_err(|_| corrupt(&id, DecodeError("string is not UTF-8".into())))?;
            dict.insert(be_u32(&id, &id, "string id")?, s);
        }

        tracing::debug!(
            dir = %dir.display(),
            services = services.names.len(),
            strings = dict.len(),
            seq,
            "opened embedded span store"
        );
        Ok(FjallStore {
            db,
            ks,
            services: RwLock::new(services),
            dict: RwLock::new(dict),
            resources: RwLock::new(HashMap::new()),
            writer: Mutex::new(write::Writer::new(seq, next_resource)),
        })
    }

    /// Bytes the store occupies on disk: tables and journal (whose current file is
    /// preallocated, so a new store already counts tens of MiB).
    pub fn disk_space(&self) -> Result<u64> {
        Ok(self.db.disk_space()?)
    }

    /// Bytes in tables per keyspace, journal excluded (the journal is transient: it is
    /// dropped once its contents are flushed into tables).
    pub fn keyspace_disk_space(&self) -> Vec<(String, u64)> {
        self.all_keyspaces()
            .iter()
            .map(|ks| (ks.name().to_string(), ks.disk_space()))
            .collect()
    }

    /// Flushes memtables and compacts every keyspace into its last level, so that
    /// sizes show the steady state. Blocks; meant for measurements and maintenance,
    /// not the write path.
    pub fn compact(&self) -> Result<()> {
        for ks in self.all_keyspaces() {
            ks.rotate_memtable_and_wait()?;
            ks.major_compact()?;
        }
        Ok(())
    }

    fn all_keyspaces(&self) -> [&Keyspace; 10] {
        let k = &self.ks;
        [
            &k.spans,
            &k.traces,
            &k.pending,
            &k.dependencies,
            &k.services,
            &k.operations,
            &k.resources,
            &k.resource_hashes,
            &k.strings,
            &k.meta,
        ]
    }

    fn lock_writer(&self) -> MutexGuard<'_, write::Writer> {
        // The writer's state changes only after a commit succeeds, so a panic in an
        // earlier write leaves it consistent.
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn read_dict(&self) -> RwLockReadGuard<'_, Dict> {
        self.dict.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn service_id(&self, name: &str) -> Option<ServiceId> {
        let services = self.services.read().unwrap_or_else(PoisonError::into_inner);
        services.by_name.get(name).copied()
    }

    fn service_name(&self, id: ServiceId) -> Option<String> {
        let services = self.services.read().unwrap_or_else(PoisonError::into_inner);
        services.names.get(id as usize).cloned()
    }

    fn service_count(&self) -> ServiceId {
        let services = self.services.read().unwrap_or_else(PoisonError::into_inner);
        services.names.len() as ServiceId
    }

    /// A stored resource by id, cached.
    fn resource(&self, id: u32) -> Result<Arc<Resource>> {
        if let Some(r) = self
            .resources
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
        {
            return Ok(Arc::clone(r));
        }
        let key = id.to_be_bytes();
        let Some(bytes) = self.ks.resources.get(key)? else {
            return Err(corrupt(
                &key,
                DecodeError("a span group refers to a missing resource".into()),
            ));
        };
        let resource = Arc::new(codec::decode_resource(&bytes).map_err(|e| corrupt(&key, e))?);
        self.resources
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, Arc::clone(&resource));
        Ok(resource)
    }

    /// Decodes every span of a group whose headers are parsed.
    fn view_spans(&self, key: &GroupKey, view: &codec::GroupView<'_>) -> Result<Vec<Span>> {
        let mut resolved = HashMap::new();
        for &id in view.resource_ids() {
            resolved.insert(id, self.resource(id)?);
        }
        view.spans(key.trace, |id| resolved.get(&id).cloned())
            .map_err(|e| corrupt(&key.span_key(), e))
    }

    /// Reads and decodes one stored group.
    fn group_spans(&self, group: &GroupKey) -> Result<Vec<Span>> {
        let key = group.span_key();
        let Some(bytes) = self.ks.spans.get(&key)? else {
            return Ok(Vec::new());
        };
        let dict = self.read_dict();
        let view =
            codec::decode_headers(&bytes, group.latest, &dict).map_err(|e| corrupt(&key, e))?;
        self.view_spans(group, &view)
    }

    /// Every write that stored spans of a trace, oldest first.
    fn trace_entries(&self, trace: TraceId) -> Result<Vec<TraceEntry>> {
        let mut out = Vec::new();
        // A trace with anything stored has its head entry (see `TraceEntry`); the point
        // read spares new traces the prefix scan.
        if !self.ks.traces.contains_key(trace.0)? {
            return Ok(out);
        }
        for guard in self.ks.traces.prefix(trace.0) {
            let (key, value) = guard.into_inner()?;
            out.push(TraceEntry::decode(&key, &value).map_err(|e| corrupt(&key, e))?);
        }
        // The varint sequence number in the key keeps keys unique but does not sort
        // numerically.
        out.sort_by_key(|e| e.seq);
        Ok(out)
    }

    /// Every stored span of a trace, the latest write of each span id winning.
    fn read_trace(&self, trace: TraceId) -> Result<Option<Vec<Span>>> {
        let entries = self.trace_entries(trace)?;
        if entries.is_empty() {
            return Ok(None);
        }
        // Entries come oldest write first, so a later copy of a span replaces an
        // earlier one.
        let mut latest: HashMap<SpanId, Span> = HashMap::new();
        for group in entries.iter().flat_map(|e| &e.groups) {
            let key = group.span_key();
            let Some(bytes) = self.ks.spans.get(&key)? else {
                // Only possible if the two keyspaces disagree, which atomic batches
                // prevent; the rest of the trace is still worth showing.
                tracing::warn!(key = %keys::hex(&key), "trace index points at a missing span group");
                continue;
            };
            let spans = {
                let dict = self.read_dict();
                let view = codec::decode_headers(&bytes, group.latest, &dict)
                    .map_err(|e| corrupt(&key, e))?;
                self.view_spans(group, &view)?
            };
            for span in spans {
                latest.insert(span.span_id, span);
            }
        }
        if latest.is_empty() {
            return Ok(None);
        }
        let mut spans: Vec<Span> = latest.into_values().collect();
        spans.sort_by_key(|s| (s.start_unix_nano, s.span_id));
        Ok(Some(spans))
    }
}

impl SpanStore for FjallStore {
    fn write(&self, spans: &[Span]) -> Result<()> {
        if spans.is_empty() {
            return Ok(());
        }
        let spans: Vec<SpanRef<'_>> = spans.iter().map(SpanRef::Model).collect();
        let mut w = self.lock_writer();
        write::write(self, &mut w, &spans)
    }

    fn write_batches(&self, batches: &[SpanBatch]) -> Result<()> {
        let spans: Vec<SpanRef<'_>> = batches.iter().flat_map(SpanBatch::iter).collect();
        if spans.is_empty() {
            return Ok(());
        }
        let mut w = self.lock_writer();
        write::write(self, &mut w, &spans)
    }

    fn trace(&self, trace_id: TraceId) -> Result<Option<Vec<Span>>> {
        self.read_trace(trace_id)
    }

    fn find_traces(&self, query: &TraceQuery) -> Result<Vec<TraceId>> {
        search::find_traces(self, query)
    }

    fn services(&self) -> Result<Vec<String>> {
        let services = self.services.read().unwrap_or_else(PoisonError::into_inner);
        let mut names = services.names.clone();
        names.sort();
        Ok(names)
    }

    fn operations(&self, service: &str) -> Result<Vec<Operation>> {
        let Some(svc) = self.service_id(service) else {
            return Ok(Vec::new());
        };
        let mut ops = Vec::new();
        for guard in self.ks.operations.prefix(svc.to_be_bytes()) {
            let key = guard.key()?;
            let kind = key.get(4).and_then(|&k| SpanKind::from_otlp(i32::from(k)));
            let name = key.get(5..).and_then(|n| std::str::from_utf8(n).ok());
            let (Some(kind), Some(name)) = (kind, name) else {
                return Err(corrupt(&key, DecodeError("bad operation key".into())));
            };
            ops.push(Operation {
                name: name.to_string(),
                kind,
            });
        }
        ops.sort();
        Ok(ops)
    }

    fn dependencies(&self, start_unix_nano: u64, end_unix_nano: u64) -> Result<Vec<Dependency>> {
        deps::read(self, start_unix_nano, end_unix_nano)
    }

    fn purge_older_than(&self, cutoff_unix_nano: u64) -> Result<u64> {
        retention::purge(self, cutoff_unix_nano)
    }
}
