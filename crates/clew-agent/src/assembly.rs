//! Turning one connection's commands into traces.
//!
//! A [`Session`] holds what one connection has said so far: who registered, and the
//! requests and spans still open. Commands are applied one by one, whether they arrived
//! alone or inside a `BatchCommand`, so both paths build the same trace. A request is
//! turned into spans only when it finishes (or is abandoned), because inside a batch spans
//! come in completion order: a child may name a parent that has not been started yet.
//!
//! The mapping:
//! - the request becomes the root span: named after `transaction.name`, else the first
//!   top-level span's operation (`Controller/…`, `Job/…`), else the `path` tag, else
//!   `request`; it carries the request tags and `scout.request_id`;
//! - every agent span becomes a child span, nested by `parent_id`; a parent that never
//!   arrived is recorded as `clew.missing_parent` and the span hangs under the root;
//! - the trace id comes from a `traceparent` request tag (the request then joins that
//!   trace, its root's parent being the traceparent's parent id), else from a request id
//!   that is itself 32 hex digits (as the clew SDK sends), else it is a new UUIDv7 whose
//!   time is the request's start;
//! - span ids that are 16 hex digits are kept; others (`span-<uuid>`) are hashed to 64 bits,
//!   so the same commands always give the same ids.
//!
//! A *span batch* (a request started with clew's `trace_id` extension, see
//! [`crate::protocol`]) is mapped without any of that guessing: no root is invented, ids
//! and parents are kept as sent, and kind, status, events and links come from the
//! commands.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use clew_model::{
    AttributeValue, Event, KeyValue, Link, Resource, SERVICE_NAME, Scope, Span, SpanId, SpanKind,
    Status, StatusCode, TraceId,
};
use clew_propagation::{TRACEPARENT, TRACESTATE, TraceParent};
use serde_json::Value;

use crate::protocol::{Attributes, Command, Register, Reply, ScopeName, SpanLink, SpanStatus};
use crate::timestamp::Timestamp;

/// Attribute on the root span holding the agent's own request id.
pub const REQUEST_ID_ATTRIBUTE: &str = "scout.request_id";
/// Attribute set to `true` on spans that never received their end.
pub const UNFINISHED_ATTRIBUTE: &str = "clew.unfinished";
/// Attribute naming a `parent_id` that no span of the request had.
pub const MISSING_PARENT_ATTRIBUTE: &str = "clew.missing_parent";
/// The application event in which Scout's agents describe their process.
const METADATA_EVENT: &str = "scout.metadata";
/// Request tag that renames the transaction (Scout's `rename_transaction`).
const TRANSACTION_NAME_TAG: &str = "transaction.name";
/// Status message of spans left open by a worker that went away.
pub const DISCONNECTED_MESSAGE: &str = "worker disconnected mid-request";
/// Status message of spans left open when the agent itself stopped.
pub const AGENT_STOPPED_MESSAGE: &str = "agent stopped mid-request";

/// Why a request was closed without its `FinishRequest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbandonReason {
    /// The connection closed (the worker exited or crashed) with the request open.
    ClientDisconnected,
    /// The agent shut down while the connection still had the request open.
    AgentStopped,
}

impl AbandonReason {
    pub fn message(self) -> &'static str {
        match self {
            AbandonReason::ClientDisconnected => DISCONNECTED_MESSAGE,
            AbandonReason::AgentStopped => AGENT_STOPPED_MESSAGE,
        }
    }
}

/// The spans of one request, ready for a sink.
#[derive(Debug, Clone)]
pub struct AssembledTrace {
    pub trace_id: TraceId,
    pub root_span_id: SpanId,
    pub request_id: String,
    /// The root span first.
    pub spans: Vec<Span>,
    /// Set when the request never finished.
    pub abandoned: Option<AbandonReason>,
    /// The last instant the agent heard about this request.
    pub last_seen: Timestamp,
}

#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    /// Requests plus spans one connection may hold open at once. A client that starts
    /// spans and never stops them is told so instead of growing the agent without bound.
    pub max_open_items: usize,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            max_open_items: 100_000,
        }
    }
}

/// One connection's state.
pub struct Session {
    resource: Arc<Resource>,
    version: String,
    limits: SessionLimits,
    requests: HashMap<String, OpenRequest>,
    /// Which open request each open span belongs to, for commands that omit `request_id`.
    span_owner: HashMap<String, String>,
    open_items: usize,
}

struct OpenRequest {
    /// Set for a span batch (clew's extension): the trace its spans belong to.
    batch_trace: Option<TraceId>,
    start: Option<Timestamp>,
    finish: Option<Timestamp>,
    tags: Vec<(String, Value)>,
    /// In the order they were started.
    spans: Vec<RecordedSpan>,
    span_index: HashMap<String, usize>,
    last_seen: Timestamp,
}

struct RecordedSpan {
    agent_span_id: String,
    parent: Option<String>,
    operation: String,
    start: Timestamp,
    end: Option<Timestamp>,
    tags: Vec<(String, Value)>,
    /// In a span batch: the span's own id and its parent's, as sent.
    w3c_ids: Option<(SpanId, Option<SpanId>)>,
    /// What clew's extensions said; absent for Scout's agents.
    kind: Option<SpanKind>,
    trace_state: Option<String>,
    flags: Option<u32>,
    scope: Option<ScopeName>,
    links: Vec<Link>,
    events: Vec<Event>,
    status: Option<Status>,
}

impl Session {
    /// `version` is what `CoreAgentVersion` answers.
    pub fn new(version: impl Into<String>, limits: SessionLimits) -> Session {
        Session {
            resource: Arc::new(Resource::default()),
            version: version.into(),
            limits,
            requests: HashMap::new(),
            span_owner: HashMap::new(),
            open_items: 0,
        }
    }

    /// The resource spans from this connection carry (service name from `Register`).
    pub fn resource(&self) -> &Arc<Resource> {
        &self.resource
    }

    pub fn open_requests(&self) -> usize {
        self.requests.len()
    }

    /// Applies one frame's message and says what to answer. Requests it finished are
    /// appended to `finished`. `now` stands in for missing timestamps.
    pub fn handle(
        &mut self,
        command: Command,
        now: Timestamp,
        finished: &mut Vec<AssembledTrace>,
    ) -> Reply {
        match command {
            Command::CoreAgentVersion(_) => Reply::Version {
                version: self.version.clone(),
            },
            Command::BatchCommand(batch) => {
                let total = batch.commands.len();
                let mut failures = Vec::new();
                for command in batch.commands {
                    let name = command.name().to_string();
                    if let Err(error) = self.apply(command, now, finished) {
                        failures.push(format!("{name}: {error}"));
                    }
                }
                if failures.is_empty() {
                    Reply::success("BatchCommand")
                } else {
                    tracing::warn!(
                        failed = failures.len(),
                        total,
                        first = %failures[0],
                        "commands in a BatchCommand failed; the others were applied"
                    );
                    Reply::failure(format!(
                        "{} of {total} commands in the batch failed (the others were applied); first: {}",
                        failures.len(),
                        failures[0]
                    ))
                }
            }
            command => {
                let name = command.name().to_string();
                match self.apply(command, now, finished) {
                    Ok(()) => Reply::success(name),
                    Err(error) => {
                        tracing::warn!(command = %name, %error, "command failed");
                        Reply::failure(format!("{name}: {error}"))
                    }
                }
            }
        }
    }

    fn apply(
        &mut self,
        command: Command,
        now: Timestamp,
        finished: &mut Vec<AssembledTrace>,
    ) -> Result<(), String> {
        match command {
            Command::Register(register) => {
                self.register(&register);
                Ok(())
            }
            Command::ApplicationEvent(event) => {
                tracing::debug!(event_type = %event.event_type, "application event");
                if event.event_type == METADATA_EVENT {
                    self.add_metadata(&event.event_value);
                }
                Ok(())
            }
            Command::CoreAgentVersion(_) => Ok(()),
            Command::BatchCommand(_) => {
                Err("a BatchCommand cannot contain another BatchCommand".into())
            }
            Command::StartRequest(start) => {
                let at = start.timestamp.unwrap_or(now);
                if let Some(open) = self.requests.get(&start.request_id)
                    && open.start.is_some()
                {
                    return Err(format!("request {} was already started", start.request_id));
                }
                let batch_trace = match &start.trace_id {
                    None => None,
                    Some(hex) => Some(
                        parse_trace_id(hex)
                            .map_err(|e| format!("request {}: trace_id {e}", start.request_id))?,
                    ),
                };
                if !self.requests.contains_key(&start.request_id) {
                    self.reserve_items(1)?;
                }
                let request = self.request_entry(&start.request_id, at);
                if batch_trace.is_some() && !request.spans.is_empty() {
                    return Err(format!(
                        "request {}: a span batch's trace_id must come before its spans",
                        start.request_id
                    ));
                }
                request.start = Some(at);
                request.batch_trace = batch_trace;
                request.seen(at);
                Ok(())
            }
            Command::TagRequest(tag) => {
                let at = tag.timestamp.unwrap_or(now);
                let request = self
                    .requests
                    .get_mut(&tag.request_id)
                    .ok_or_else(|| format!("unknown request {}", tag.request_id))?;
                set_tag(&mut request.tags, tag.tag, tag.value);
                request.seen(at);
                Ok(())
            }
            Command::StartSpan(start) => {
                let at = start.timestamp.unwrap_or(now);
                if self.span_owner.contains_key(&start.span_id) {
                    return Err(format!("span {} was already started", start.span_id));
                }
                let span_error = |e: String| format!("span {}: {e}", start.span_id);
                let parent = start.parent_id.filter(|p| !p.is_empty());
                let w3c_ids = if self
                    .requests
                    .get(&start.request_id)
                    .is_some_and(|r| r.batch_trace.is_some())
                {
                    // A span batch keeps its ids, so they must be ids.
                    let id = parse_span_id(&start.span_id).map_err(span_error)?;
                    let parent_id = parent
                        .as_deref()
                        .map(parse_span_id)
                        .transpose()
                        .map_err(|e| span_error(format!("parent_id {e}")))?;
                    Some((id, parent_id))
                } else {
                    None
                };
                let kind = start
                    .kind
                    .as_deref()
                    .map(|k| {
                        SpanKind::parse(k).ok_or_else(|| {
                            span_error(format!(
                                "unknown kind {k:?} (expected SERVER, CLIENT, PRODUCER, CONSUMER or INTERNAL)"
                            ))
                        })
                    })
                    .transpose()?;
                let links = start
                    .links
                    .iter()
                    .map(to_link)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(span_error)?;
                let new_request = !self.requests.contains_key(&start.request_id);
                self.reserve_items(1 + usize::from(new_request))?;
                let request = self.request_entry(&start.request_id, at);
                request.seen(at);
                request
                    .span_index
                    .insert(start.span_id.clone(), request.spans.len());
                request.spans.push(RecordedSpan {
                    agent_span_id: start.span_id.clone(),
                    parent,
                    operation: start.operation,
                    start: at,
                    end: None,
                    tags: Vec::new(),
                    w3c_ids,
                    kind,
                    trace_state: start.trace_state,
                    flags: start.flags,
                    scope: start.scope,
                    links,
                    events: Vec::new(),
                    status: None,
                });
                self.span_owner.insert(start.span_id, start.request_id);
                Ok(())
            }
            Command::StopSpan(stop) => {
                let at = stop.timestamp.unwrap_or(now);
                let status = stop.status.as_ref().map(to_status).transpose()?;
                let (request, index) = self.find_span(stop.request_id.as_deref(), &stop.span_id)?;
                let span = &mut request.spans[index];
                if span.end.is_some() {
                    return Err(format!("span {} was already stopped", stop.span_id));
                }
                span.end = Some(at.max(span.start));
                span.status = status;
                request.seen(at);
                Ok(())
            }
            Command::AddSpanEvent(event) => {
                let at = event.timestamp.unwrap_or(now);
                let (request, index) =
                    self.find_span(event.request_id.as_deref(), &event.span_id)?;
                request.spans[index].events.push(Event {
                    time_unix_nano: at.0,
                    name: event.name,
                    attributes: map_attributes(&event.attributes),
                });
                request.seen(at);
                Ok(())
            }
            Command::TagSpan(tag) => {
                let at = tag.timestamp.unwrap_or(now);
                let (request, index) = self.find_span(tag.request_id.as_deref(), &tag.span_id)?;
                set_tag(&mut request.spans[index].tags, tag.tag, tag.value);
                request.seen(at);
                Ok(())
            }
            Command::FinishRequest(finish) => {
                let at = finish.timestamp.unwrap_or(now);
                let mut request = self
                    .requests
                    .remove(&finish.request_id)
                    .ok_or_else(|| format!("unknown request {}", finish.request_id))?;
                request.finish = Some(at);
                request.seen(at);
                self.forget(&request);
                finished.push(assemble(&finish.request_id, request, &self.resource, None));
                Ok(())
            }
            Command::Unknown { name } => {
                tracing::info!(command = %name, "unknown command ignored");
                Err(format!("unknown command {name:?}; ignored"))
            }
            Command::Malformed { error, .. } => Err(error),
        }
    }

    /// Closes every open request, keeping what arrived: open spans end at the last instant
    /// the agent heard about their request and are marked unfinished and in error.
    pub fn abandon_all(&mut self, reason: AbandonReason) -> Vec<AssembledTrace> {
        let requests: Vec<_> = self.requests.drain().collect();
        self.span_owner.clear();
        self.open_items = 0;
        requests
            .into_iter()
            .map(|(id, request)| assemble(&id, request, &self.resource, Some(reason)))
            .collect()
    }

    fn register(&mut self, register: &Register) {
        let mut attributes = vec![KeyValue::new(
            SERVICE_NAME,
            register
                .app
                .clone()
                .filter(|a| !a.is_empty())
                .unwrap_or_else(|| clew_model::UNKNOWN_SERVICE.to_string()),
        )];
        if let Some(host) = register.host.clone().filter(|h| !h.is_empty()) {
            attributes.push(KeyValue::new("host.name", host));
        }
        if let Some(language) = register.language.clone().filter(|l| !l.is_empty()) {
            attributes.push(KeyValue::new("telemetry.sdk.language", language));
        }
        for (key, value) in register.resource.iter().flat_map(|r| &r.0) {
            if value.is_null() || attributes.iter().any(|a| a.key == *key) {
                continue;
            }
            attributes.push(KeyValue::new(key.as_str(), json_to_attribute(value)));
        }
        tracing::debug!(
            app = register.app.as_deref().unwrap_or(""),
            host = register.host.as_deref().unwrap_or(""),
            language = register.language.as_deref().unwrap_or(""),
            "client registered"
        );
        self.resource = Arc::new(Resource { attributes });
    }

    /// Scout's Node agent registers with only the app name and reports host and language
    /// in its `scout.metadata` event; they belong on the resource like Python's.
    fn add_metadata(&mut self, metadata: &Value) {
        let mut attributes = self.resource.attributes.clone();
        for (field, key) in [
            ("hostname", "host.name"),
            ("language", "telemetry.sdk.language"),
            ("language_version", "process.runtime.version"),
        ] {
            let Some(value) = metadata.get(field).and_then(Value::as_str) else {
                continue;
            };
            if !value.is_empty() && !attributes.iter().any(|a| a.key == key) {
                attributes.push(KeyValue::new(key, value));
            }
        }
        if attributes.len() != self.resource.attributes.len() {
            self.resource = Arc::new(Resource { attributes });
        }
    }

    fn reserve_items(&mut self, count: usize) -> Result<(), String> {
        if self.open_items + count > self.limits.max_open_items {
            return Err(format!(
                "this connection already holds {} open requests and spans (the limit is {}); finish requests before starting more",
                self.open_items, self.limits.max_open_items
            ));
        }
        self.open_items += count;
        Ok(())
    }

    /// The open request, created if this is the first the agent hears of it (room for it
    /// must have been reserved).
    fn request_entry(&mut self, request_id: &str, at: Timestamp) -> &mut OpenRequest {
        match self.requests.entry(request_id.to_string()) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => entry.insert(OpenRequest {
                batch_trace: None,
                start: None,
                finish: None,
                tags: Vec::new(),
                spans: Vec::new(),
                span_index: HashMap::new(),
                last_seen: at,
            }),
        }
    }

    fn find_span(
        &mut self,
        request_id: Option<&str>,
        span_id: &str,
    ) -> Result<(&mut OpenRequest, usize), String> {
        // The span's own record is authoritative; a request id that disagrees with it is a
        // client slip, not a reason to lose the command.
        let owner = self
            .span_owner
            .get(span_id)
            .map(String::as_str)
            .or(request_id)
            .ok_or_else(|| format!("unknown span {span_id}"))?
            .to_string();
        let request = self
            .requests
            .get_mut(&owner)
            .ok_or_else(|| format!("unknown span {span_id}"))?;
        let index = *request
            .span_index
            .get(span_id)
            .ok_or_else(|| format!("unknown span {span_id}"))?;
        Ok((request, index))
    }

    fn forget(&mut self, request: &OpenRequest) {
        for span in &request.spans {
            self.span_owner.remove(&span.agent_span_id);
        }
        self.open_items = self.open_items.saturating_sub(1 + request.spans.len());
    }
}

impl OpenRequest {
    fn seen(&mut self, at: Timestamp) {
        self.last_seen = self.last_seen.max(at);
    }
}

fn set_tag(tags: &mut Vec<(String, Value)>, key: String, value: Value) {
    match tags.iter_mut().find(|(k, _)| *k == key) {
        Some(existing) => existing.1 = value,
        None => tags.push((key, value)),
    }
}

fn assemble(
    request_id: &str,
    request: OpenRequest,
    resource: &Arc<Resource>,
    abandoned: Option<AbandonReason>,
) -> AssembledTrace {
    if let Some(trace_id) = request.batch_trace {
        return assemble_batch(request_id, trace_id, request, resource, abandoned);
    }
    let traceparent = tag_str(&request.tags, TRACEPARENT).and_then(|text| {
        TraceParent::parse(text)
            .map_err(|error| {
                tracing::debug!(%error, request_id, "ignoring an invalid traceparent tag");
            })
            .ok()
    });
    let request_start = request
        .start
        .or_else(|| request.spans.iter().map(|s| s.start).min())
        .unwrap_or(request.last_seen);
    let trace_id = match &traceparent {
        Some(parent) => parent.trace_id,
        None => TraceId::from_hex(request_id)
            .ok()
            .filter(|_| request_id.len() == 32)
            .unwrap_or_else(|| TraceId::v7_from(request_start.0 / 1_000_000, &mut rand::rng())),
    };
    let root_span_id = derive_span_id("request", request_id);
    let flags = traceparent
        .map(|p| u32::from(p.flags))
        .unwrap_or(u32::from(clew_propagation::FLAG_SAMPLED));
    let span_ids: HashMap<&str, SpanId> = request
        .spans
        .iter()
        .map(|s| {
            (
                s.agent_span_id.as_str(),
                derive_span_id("span", &s.agent_span_id),
            )
        })
        .collect();
    // Open spans of a request that did finish end with it; of an abandoned one, at the last
    // moment anything was heard.
    let cutoff = request.finish.unwrap_or(request.last_seen);

    let mut spans = Vec::with_capacity(request.spans.len() + 1);
    let mut transaction_operation = None;
    for recorded in &request.spans {
        let mut attributes = to_attributes(&recorded.tags);
        let parent = match &recorded.parent {
            None => {
                transaction_operation.get_or_insert(recorded.operation.as_str());
                root_span_id
            }
            Some(parent) => match span_ids.get(parent.as_str()) {
                Some(id) => *id,
                None => {
                    attributes.push(KeyValue::new(MISSING_PARENT_ATTRIBUTE, parent.as_str()));
                    root_span_id
                }
            },
        };
        let placement = Placement {
            trace_id,
            span_id: span_ids[recorded.agent_span_id.as_str()],
            parent_span_id: Some(parent),
            kind: child_kind(&recorded.operation),
            flags,
        };
        spans.push(recorded.to_span(placement, attributes, cutoff, abandoned, resource));
    }

    let root_tags: Vec<_> = request
        .tags
        .iter()
        .filter(|(k, _)| k != TRACEPARENT && k != TRACESTATE)
        .cloned()
        .collect();
    let mut root_attributes = vec![KeyValue::new(REQUEST_ID_ATTRIBUTE, request_id)];
    root_attributes.extend(to_attributes(&root_tags));
    let name = tag_str(&request.tags, TRANSACTION_NAME_TAG)
        .or(transaction_operation)
        .or_else(|| tag_str(&request.tags, "path"))
        .unwrap_or("request")
        .to_string();
    let kind = root_kind(
        transaction_operation,
        tag_str(&request.tags, "path").is_some(),
    );
    let mut root_status = match request.tags.iter().find(|(k, _)| k == "error") {
        Some((_, value)) if is_truthy(value) => Status {
            code: StatusCode::Error,
            message: String::new(),
        },
        _ => Status::default(),
    };
    let root_end = match request.finish {
        Some(finish) => finish,
        None => {
            root_attributes.push(KeyValue::new(UNFINISHED_ATTRIBUTE, true));
            if let Some(reason) = abandoned {
                root_status = error_status(reason);
            }
            spans
                .iter()
                .map(|s| Timestamp(s.end_unix_nano))
                .max()
                .unwrap_or(request.last_seen)
                .max(request.last_seen)
        }
    };
    let root = Span {
        trace_id,
        span_id: root_span_id,
        parent_span_id: traceparent.map(|p| p.parent_id),
        trace_state: tag_str(&request.tags, TRACESTATE)
            .unwrap_or_default()
            .to_string(),
        name,
        kind,
        start_unix_nano: request_start.0,
        end_unix_nano: root_end.max(request_start).0,
        attributes: root_attributes,
        events: Vec::new(),
        links: Vec::new(),
        status: root_status,
        resource: Arc::clone(resource),
        scope: agent_scope(),
        flags,
    };
    spans.insert(0, root);
    AssembledTrace {
        trace_id,
        root_span_id,
        request_id: request_id.to_string(),
        spans,
        abandoned,
        last_seen: request.last_seen,
    }
}

/// A span batch: every span as sent, nothing invented.
fn assemble_batch(
    request_id: &str,
    trace_id: TraceId,
    request: OpenRequest,
    resource: &Arc<Resource>,
    abandoned: Option<AbandonReason>,
) -> AssembledTrace {
    let cutoff = request.finish.unwrap_or(request.last_seen);
    let request_tags: Vec<_> = request
        .tags
        .iter()
        .filter(|(k, _)| k != TRACEPARENT && k != TRACESTATE)
        .cloned()
        .collect();
    let mut spans = Vec::with_capacity(request.spans.len());
    let mut entry = None;
    for recorded in &request.spans {
        // Set for every span, since a span batch's trace id must precede its spans.
        let Some((span_id, parent_span_id)) = recorded.w3c_ids else {
            continue;
        };
        let is_entry = !recorded
            .parent
            .as_ref()
            .is_some_and(|p| request.span_index.contains_key(p));
        let mut attributes = Vec::new();
        if is_entry {
            entry.get_or_insert(span_id);
            attributes.extend(to_attributes(&request_tags));
        }
        attributes.extend(to_attributes(&recorded.tags));
        let placement = Placement {
            trace_id,
            span_id,
            parent_span_id,
            kind: SpanKind::Internal,
            flags: u32::from(clew_propagation::FLAG_SAMPLED),
        };
        spans.push(recorded.to_span(placement, attributes, cutoff, abandoned, resource));
    }
    AssembledTrace {
        trace_id,
        root_span_id: entry.unwrap_or_else(|| derive_span_id("request", request_id)),
        request_id: request_id.to_string(),
        spans,
        abandoned,
        last_seen: request.last_seen,
    }
}

/// Where a recorded span goes in its trace, and what it is when the commands did not
/// say (kind and flags).
struct Placement {
    trace_id: TraceId,
    span_id: SpanId,
    parent_span_id: Option<SpanId>,
    kind: SpanKind,
    flags: u32,
}

impl RecordedSpan {
    /// The span as stored. One that never ended ends at `cutoff`, marked unfinished (and
    /// in error when its request was abandoned).
    fn to_span(
        &self,
        placement: Placement,
        mut attributes: Vec<KeyValue>,
        cutoff: Timestamp,
        abandoned: Option<AbandonReason>,
        resource: &Arc<Resource>,
    ) -> Span {
        let mut status = self.status.clone().unwrap_or_default();
        let end = match self.end {
            Some(end) => end,
            None => {
                attributes.push(KeyValue::new(UNFINISHED_ATTRIBUTE, true));
                if let Some(reason) = abandoned {
                    status = error_status(reason);
                }
                cutoff.max(self.start)
            }
        };
        Span {
            trace_id: placement.trace_id,
            span_id: placement.span_id,
            parent_span_id: placement.parent_span_id,
            trace_state: self.trace_state.clone().unwrap_or_default(),
            name: self.operation.clone(),
            kind: self.kind.unwrap_or(placement.kind),
            start_unix_nano: self.start.0,
            end_unix_nano: end.0,
            attributes,
            events: self.events.clone(),
            links: self.links.clone(),
            status,
            resource: Arc::clone(resource),
            scope: self
                .scope
                .as_ref()
                .map(to_scope)
                .unwrap_or_else(agent_scope),
            flags: self.flags.unwrap_or(placement.flags),
        }
    }
}

fn agent_scope() -> Scope {
    Scope {
        name: "clew-agent".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    }
}

fn to_scope(scope: &ScopeName) -> Scope {
    Scope {
        name: scope.name.clone(),
        version: scope.version.clone(),
    }
}

fn parse_trace_id(hex: &str) -> Result<TraceId, String> {
    match TraceId::from_hex(hex) {
        Ok(id) if hex.len() == 32 && id != TraceId([0; 16]) => Ok(id),
        _ => Err(format!(
            "{hex:?} is not a W3C trace id (32 hex digits, not all zero)"
        )),
    }
}

fn parse_span_id(hex: &str) -> Result<SpanId, String> {
    match SpanId::from_hex(hex) {
        Ok(id) if hex.len() == 16 && id != SpanId([0; 8]) => Ok(id),
        _ => Err(format!(
            "{hex:?} is not a W3C span id (16 hex digits, not all zero)"
        )),
    }
}

fn to_link(link: &SpanLink) -> Result<Link, String> {
    Ok(Link {
        trace_id: parse_trace_id(&link.trace_id).map_err(|e| format!("link trace_id {e}"))?,
        span_id: parse_span_id(&link.span_id).map_err(|e| format!("link span_id {e}"))?,
        trace_state: link.trace_state.clone(),
        attributes: map_attributes(&link.attributes),
    })
}

fn to_status(status: &SpanStatus) -> Result<Status, String> {
    let code = match status.code.to_ascii_uppercase().as_str() {
        "UNSET" | "STATUS_CODE_UNSET" => StatusCode::Unset,
        "OK" | "STATUS_CODE_OK" => StatusCode::Ok,
        "ERROR" | "STATUS_CODE_ERROR" => StatusCode::Error,
        other => {
            return Err(format!(
                "unknown status code {other:?} (expected UNSET, OK or ERROR)"
            ));
        }
    };
    Ok(Status {
        code,
        message: status.message.clone(),
    })
}

fn map_attributes(attributes: &Attributes) -> Vec<KeyValue> {
    attributes
        .0
        .iter()
        .filter(|(_, value)| !value.is_null())
        .map(|(key, value)| KeyValue::new(key.as_str(), json_to_attribute(value)))
        .collect()
}

fn error_status(reason: AbandonReason) -> Status {
    Status {
        code: StatusCode::Error,
        message: reason.message().into(),
    }
}

fn tag_str<'a>(tags: &'a [(String, Value)], key: &str) -> Option<&'a str> {
    tags.iter()
        .find(|(k, _)| k == key)
        .and_then(|(_, v)| v.as_str())
}

fn is_truthy(value: &Value) -> bool {
    match value {
        Value::Bool(b) => *b,
        Value::String(s) => matches!(s.to_ascii_lowercase().as_str(), "true" | "1" | "yes"),
        Value::Number(n) => n.as_f64().is_some_and(|n| n != 0.0),
        _ => false,
    }
}

fn root_kind(transaction_operation: Option<&str>, has_path: bool) -> SpanKind {
    match transaction_operation {
        Some(op) if op.starts_with("Controller/") => SpanKind::Server,
        Some(op) if op.starts_with("Job/") => SpanKind::Consumer,
        _ if has_path => SpanKind::Server,
        _ => SpanKind::Internal,
    }
}

/// Scout names operations `<Kind>/<name>`; those kinds that call out of the process are
/// clients in OpenTelemetry's terms.
fn child_kind(operation: &str) -> SpanKind {
    const CLIENT_PREFIXES: [&str; 8] = [
        "SQL/",
        "HTTP/",
        "Redis/",
        "MongoDB/",
        "Elasticsearch/",
        "Memcache/",
        "Memcached/",
        "Cache/",
    ];
    if CLIENT_PREFIXES.iter().any(|p| operation.starts_with(p)) {
        SpanKind::Client
    } else {
        SpanKind::Internal
    }
}

/// Keeps an id that already is a W3C span id, so a client that propagates its span ids
/// finds them in the stored trace; hashes any other id deterministically.
fn derive_span_id(namespace: &str, agent_id: &str) -> SpanId {
    if namespace == "span"
        && agent_id.len() == 16
        && let Ok(id) = SpanId::from_hex(agent_id)
    {
        return id;
    }
    // FNV-1a, then the SplitMix64 finalizer to spread FNV's weak low bits.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in namespace.bytes().chain([0]).chain(agent_id.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash = (hash ^ (hash >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash = (hash ^ (hash >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^= hash >> 31;
    SpanId(hash.max(1).to_be_bytes())
}

fn to_attributes(tags: &[(String, Value)]) -> Vec<KeyValue> {
    tags.iter()
        .filter(|(_, value)| !value.is_null())
        .map(|(key, value)| KeyValue::new(key.as_str(), json_to_attribute(value)))
        .collect()
}

/// JSON values map to the closest typed attribute: integers that fit stay integers,
/// larger ones keep their exact digits as text, arrays and objects stay structured.
pub fn json_to_attribute(value: &Value) -> AttributeValue {
    match value {
        Value::String(s) => AttributeValue::String(s.clone()),
        Value::Bool(b) => AttributeValue::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => AttributeValue::Int(i),
            (None, Some(_), _) => AttributeValue::String(n.to_string()),
            (_, _, Some(f)) => AttributeValue::Double(f),
            _ => AttributeValue::String(n.to_string()),
        },
        Value::Array(items) => AttributeValue::Array(items.iter().map(json_to_attribute).collect()),
        Value::Object(map) => AttributeValue::Map(
            map.iter()
                .map(|(k, v)| KeyValue::new(k.as_str(), json_to_attribute(v)))
                .collect(),
        ),
        Value::Null => AttributeValue::String("null".into()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const T0: u64 = 1_793_620_800_000_000_000;

    fn at(offset_micros: u64) -> String {
        Timestamp(T0 + offset_micros * 1_000).to_string()
    }

    fn command(value: Value) -> Command {
        Command::from_value(value).unwrap()
    }

    fn session() -> Session {
        let mut s = Session::new("test", SessionLimits::default());
        let mut out = Vec::new();
        s.handle(
            command(json!({"Register": {"app": "shop", "key": "secret", "host": "h1", "language": "python", "api_version": "1.0"}})),
            Timestamp(T0),
            &mut out,
        );
        s
    }

    /// A Python-shaped request: children reported before their parents.
    fn python_request(request_id: &str) -> Vec<Value> {
        vec![
            json!({"StartRequest": {"timestamp": at(0), "request_id": request_id}}),
            json!({"TagRequest": {"timestamp": at(0), "request_id": request_id, "tag": "path", "value": "/orders"}}),
            json!({"TagRequest": {"timestamp": at(0), "request_id": request_id, "tag": "user_count", "value": 3}}),
            json!({"StartSpan": {"timestamp": at(20), "request_id": request_id, "span_id": "span-sql", "parent_id": "span-ctrl", "operation": "SQL/Query"}}),
            json!({"TagSpan": {"timestamp": at(20), "request_id": request_id, "span_id": "span-sql", "tag": "db.statement", "value": "SELECT 1"}}),
            json!({"StopSpan": {"timestamp": at(30), "request_id": request_id, "span_id": "span-sql"}}),
            json!({"StartSpan": {"timestamp": at(10), "request_id": request_id, "span_id": "span-ctrl", "parent_id": null, "operation": "Controller/orders"}}),
            json!({"StopSpan": {"timestamp": at(40), "request_id": request_id, "span_id": "span-ctrl"}}),
            json!({"FinishRequest": {"timestamp": at(50), "request_id": request_id}}),
        ]
    }

    const SDK_TRACE: &str = "0192f3a1b2c3d4e5f60718293a4b5c6d";
    const REMOTE_PARENT: &str = "00f067aa0ba902b7";

    /// What clew's SDK sends for one handler: a CONSUMER entry span under a remote
    /// producer, with an event, a link and an error status, and a child that ended first.
    fn sdk_batch(request_id: &str) -> Vec<Value> {
        vec![
            json!({"StartRequest": {"timestamp": at(0), "request_id": request_id, "trace_id": SDK_TRACE}}),
            json!({"TagRequest": {"request_id": request_id, "tag": "messaging.system", "value": "redis"}}),
            json!({"StartSpan": {"timestamp": at(5), "request_id": request_id, "span_id": "b000000000000002", "parent_id": "a000000000000001", "operation": "compute_vector", "kind": "INTERNAL"}}),
            json!({"TagSpan": {"request_id": request_id, "span_id": "b000000000000002", "tag": "distance.m", "value": 412.5}}),
            json!({"StopSpan": {"timestamp": at(8), "request_id": request_id, "span_id": "b000000000000002"}}),
            json!({"StartSpan": {"timestamp": at(1), "request_id": request_id, "span_id": "a000000000000001", "parent_id": REMOTE_PARENT, "operation": "drone_command receive", "kind": "CONSUMER",
                "trace_state": "clew=1", "scope": {"name": "drone-cmd", "version": "0.3"},
                "links": [{"trace_id": "0192f3a1b2c3d4e5f60718293a4b5c00", "span_id": "c000000000000003", "attributes": {"reason": "batch"}}]}}),
            json!({"TagSpan": {"request_id": request_id, "span_id": "a000000000000001", "tag": "retries", "value": 2}}),
            json!({"AddSpanEvent": {"timestamp": at(6), "request_id": request_id, "span_id": "a000000000000001", "name": "lock_acquired", "attributes": {"target": "orlan", "ok": true}}}),
            json!({"StopSpan": {"timestamp": at(9), "request_id": request_id, "span_id": "a000000000000001", "status": {"code": "ERROR", "message": "target lost"}}}),
            json!({"FinishRequest": {"timestamp": at(9), "request_id": request_id}}),
        ]
    }

    #[test]
    fn a_span_batch_keeps_everything_the_sdk_sent_and_invents_nothing() {
        let mut s = session();
        let mut out = Vec::new();
        let reply = s.handle(
            command(json!({"BatchCommand": {"commands": sdk_batch("h-1")}})),
            Timestamp(T0),
            &mut out,
        );
        assert_eq!(reply, Reply::success("BatchCommand"));
        let trace = out.pop().unwrap();
        assert_eq!(trace.trace_id.to_string(), SDK_TRACE);
        assert_eq!(trace.spans.len(), 2, "no synthetic request span");
        let entry = trace
            .spans
            .iter()
            .find(|s| s.name == "drone_command receive")
            .unwrap();
        assert_eq!(trace.root_span_id, entry.span_id);
        assert_eq!(entry.span_id.to_string(), "a000000000000001");
        assert_eq!(
            entry.parent_span_id.map(|p| p.to_string()).as_deref(),
            Some(REMOTE_PARENT)
        );
        assert_eq!(entry.kind, SpanKind::Consumer);
        assert_eq!(entry.trace_state, "clew=1");
        assert_eq!(entry.scope.name, "drone-cmd");
        assert_eq!(entry.start_unix_nano, T0 + 1_000);
        assert_eq!(entry.end_unix_nano, T0 + 9_000);
        assert_eq!(
            entry.status,
            Status {
                code: StatusCode::Error,
                message: "target lost".into()
            }
        );
        assert_eq!(entry.events.len(), 1);
        assert_eq!(entry.events[0].name, "lock_acquired");
        assert_eq!(entry.events[0].time_unix_nano, T0 + 6_000);
        assert_eq!(
            entry.events[0].attributes,
            vec![KeyValue::new("ok", true), KeyValue::new("target", "orlan")]
        );
        assert_eq!(entry.links.len(), 1);
        assert_eq!(entry.links[0].span_id.to_string(), "c000000000000003");
        assert_eq!(
            entry.links[0].attributes,
            vec![KeyValue::new("reason", "batch")]
        );
        // Request tags go on the entry span only.
        assert_eq!(
            entry.attributes,
            vec![
                KeyValue::new("messaging.system", "redis"),
                KeyValue::new("retries", 2i64)
            ]
        );
        let child = trace
            .spans
            .iter()
            .find(|s| s.name == "compute_vector")
            .unwrap();
        assert_eq!(child.parent_span_id, Some(entry.span_id));
        assert_eq!(child.kind, SpanKind::Internal);
        assert_eq!(child.scope.name, "clew-agent");
        assert_eq!(
            child.attributes,
            vec![KeyValue::new("distance.m", AttributeValue::Double(412.5))]
        );
        assert!(
            !trace
                .spans
                .iter()
                .flat_map(|s| &s.attributes)
                .any(|a| a.key == REQUEST_ID_ATTRIBUTE || a.key == UNFINISHED_ATTRIBUTE)
        );
    }

    #[test]
    fn a_span_batch_is_the_same_sent_whole_or_command_by_command() {
        let mut batched = Vec::new();
        session().handle(
            command(json!({"BatchCommand": {"commands": sdk_batch("h-1")}})),
            Timestamp(T0),
            &mut batched,
        );
        let mut s = session();
        let mut single = Vec::new();
        for message in sdk_batch("h-1") {
            let reply = s.handle(command(message), Timestamp(T0), &mut single);
            assert!(matches!(reply, Reply::Success { .. }), "{reply:?}");
        }
        assert_eq!(batched[0].spans, single[0].spans);
    }

    #[test]
    fn a_span_batch_refuses_what_it_cannot_keep_and_says_why() {
        let mut s = session();
        let mut out = Vec::new();
        let reply = s.handle(
            command(json!({"StartRequest": {"request_id": "h", "trace_id": "not-hex"}})),
            Timestamp(T0),
            &mut out,
        );
        assert!(
            matches!(&reply, Reply::Failure { message } if message.contains("not a W3C trace id")),
            "{reply:?}"
        );
        s.handle(
            command(json!({"StartRequest": {"request_id": "h2", "trace_id": SDK_TRACE}})),
            Timestamp(T0),
            &mut out,
        );
        for (bad, expected) in [
            (
                json!({"StartSpan": {"request_id": "h2", "span_id": "span-1", "operation": "x"}}),
                "not a W3C span id",
            ),
            (
                json!({"StartSpan": {"request_id": "h2", "span_id": "a000000000000001", "parent_id": "0000000000000000", "operation": "x"}}),
                "parent_id",
            ),
            (
                json!({"StartSpan": {"request_id": "h2", "span_id": "a000000000000001", "operation": "x", "kind": "SIDEWAYS"}}),
                "unknown kind",
            ),
            (
                json!({"StartSpan": {"request_id": "h2", "span_id": "a000000000000001", "operation": "x", "links": [{"trace_id": SDK_TRACE, "span_id": "zz"}]}}),
                "link span_id",
            ),
        ] {
            let reply = s.handle(command(bad), Timestamp(T0), &mut out);
            assert!(
                matches!(&reply, Reply::Failure { message } if message.contains(expected)),
                "{expected}: {reply:?}"
            );
        }
        // The request is still usable after the refusals.
        s.handle(
            command(json!({"StartSpan": {"request_id": "h2", "span_id": "a000000000000001", "operation": "x"}})),
            Timestamp(T0),
            &mut out,
        );
        let reply = s.handle(
            command(
                json!({"StopSpan": {"span_id": "a000000000000001", "status": {"code": "MAYBE"}}}),
            ),
            Timestamp(T0),
            &mut out,
        );
        assert!(
            matches!(&reply, Reply::Failure { message } if message.contains("unknown status code")),
            "{reply:?}"
        );
        s.handle(
            command(json!({"FinishRequest": {"request_id": "h2"}})),
            Timestamp(T0),
            &mut out,
        );
        let trace = out.pop().unwrap();
        assert_eq!(trace.spans.len(), 1);
        assert_eq!(trace.spans[0].parent_span_id, None, "a root of its trace");
    }

    #[test]
    fn the_node_agents_metadata_event_completes_the_resource() {
        let mut s = Session::new("test", SessionLimits::default());
        let mut out = Vec::new();
        for message in [
            json!({"Register": {"api_version": "1.0", "app": "orders-node", "key": "k"}}),
            json!({"ApplicationEvent": {"event_type": "scout.metadata", "source": "Pid: 7",
                "event_value": {"language": "nodejs", "language_version": "20.20.2", "hostname": "test-host", "libraries": []}}}),
            json!({"StartRequest": {"request_id": "r"}}),
            json!({"FinishRequest": {"request_id": "r"}}),
        ] {
            s.handle(command(message), Timestamp(T0), &mut out);
        }
        assert_eq!(
            out[0].spans[0].resource.attributes,
            vec![
                KeyValue::new(SERVICE_NAME, "orders-node"),
                KeyValue::new("host.name", "test-host"),
                KeyValue::new("telemetry.sdk.language", "nodejs"),
                KeyValue::new("process.runtime.version", "20.20.2"),
            ]
        );
    }

    #[test]
    fn scout_requests_honour_an_explicit_kind_and_register_resource() {
        let mut s = Session::new("test", SessionLimits::default());
        let mut out = Vec::new();
        s.handle(
            command(json!({"Register": {"app": "shop", "resource": {"service.version": "1.2", "service.name": "ignored"}}})),
            Timestamp(T0),
            &mut out,
        );
        for message in [
            json!({"StartRequest": {"request_id": "r"}}),
            json!({"StartSpan": {"request_id": "r", "span_id": "s", "operation": "Custom/publish", "kind": "producer"}}),
            json!({"StopSpan": {"span_id": "s"}}),
            json!({"FinishRequest": {"request_id": "r"}}),
        ] {
            s.handle(command(message), Timestamp(T0), &mut out);
        }
        let trace = out.pop().unwrap();
        assert_eq!(trace.spans.len(), 2, "Scout requests keep their root");
        assert_eq!(trace.spans[1].kind, SpanKind::Producer);
        assert_eq!(
            trace.spans[0].resource.attributes,
            vec![
                KeyValue::new(SERVICE_NAME, "shop"),
                KeyValue::new("service.version", "1.2")
            ]
        );
    }

    #[test]
    fn a_request_becomes_a_rooted_tree_with_tags() {
        let mut s = session();
        let mut out = Vec::new();
        let reply = s.handle(
            command(json!({"BatchCommand": {"commands": python_request("req-1")}})),
            Timestamp(T0),
            &mut out,
        );
        assert_eq!(reply, Reply::success("BatchCommand"));
        assert_eq!(out.len(), 1);
        let trace = &out[0];
        let [root, sql, ctrl] = &trace.spans[..] else {
            panic!("{:#?}", trace.spans)
        };
        assert_eq!(root.name, "Controller/orders");
        assert_eq!(root.kind, SpanKind::Server);
        assert_eq!(root.parent_span_id, None);
        assert_eq!(root.start_unix_nano, T0);
        assert_eq!(root.end_unix_nano, T0 + 50_000);
        assert_eq!(root.service_name(), "shop");
        assert_eq!(
            root.attribute(REQUEST_ID_ATTRIBUTE),
            Some(&AttributeValue::from("req-1"))
        );
        assert_eq!(root.attribute("user_count"), Some(&AttributeValue::Int(3)));
        assert_eq!(ctrl.parent_span_id, Some(root.span_id));
        assert_eq!(sql.parent_span_id, Some(ctrl.span_id));
        assert_eq!(sql.kind, SpanKind::Client);
        assert_eq!(sql.start_unix_nano, T0 + 20_000);
        assert_eq!(sql.end_unix_nano, T0 + 30_000);
        assert_eq!(
            sql.attribute("db.statement"),
            Some(&AttributeValue::from("SELECT 1"))
        );
        assert!(trace.spans.iter().all(|s| s.trace_id == trace.trace_id));
        assert_eq!(trace.trace_id.v7_unix_ms(), Some(T0 / 1_000_000));
        assert!(
            !root
                .resource
                .attributes
                .iter()
                .any(|kv| kv.value.to_text().contains("secret"))
        );
    }

    #[test]
    fn individual_commands_build_the_same_trace_as_a_batch() {
        let id = "0af7651916cd43dd8448eb211c80319c";
        let mut batch_out = Vec::new();
        session().handle(
            command(json!({"BatchCommand": {"commands": python_request(id)}})),
            Timestamp(T0),
            &mut batch_out,
        );
        let mut single_out = Vec::new();
        let mut s = session();
        for c in python_request(id) {
            let name = c.as_object().unwrap().keys().next().unwrap().clone();
            assert_eq!(
                s.handle(command(c), Timestamp(T0), &mut single_out),
                Reply::success(name)
            );
        }
        assert_eq!(batch_out[0].spans, single_out[0].spans);
        assert_eq!(batch_out[0].trace_id.to_string(), id);
    }

    #[test]
    fn a_traceparent_tag_joins_the_distributed_trace() {
        let mut commands = python_request("req-2");
        commands.insert(
            1,
            json!({"TagRequest": {"request_id": "req-2", "tag": "traceparent",
                "value": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}),
        );
        let mut out = Vec::new();
        session().handle(
            command(json!({"BatchCommand": {"commands": commands}})),
            Timestamp(T0),
            &mut out,
        );
        let root = &out[0].spans[0];
        assert_eq!(
            root.trace_id.to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(
            root.parent_span_id.map(|p| p.to_string()).as_deref(),
            Some("00f067aa0ba902b7")
        );
        assert!(root.attribute("traceparent").is_none());
        assert_eq!(root.flags, 1);
    }

    #[test]
    fn abandoned_requests_keep_their_spans_marked_unfinished() {
        let mut s = session();
        let mut out = Vec::new();
        for c in python_request("req-3").into_iter().take(7) {
            s.handle(command(c), Timestamp(T0), &mut out);
        }
        assert!(out.is_empty());
        let abandoned = s.abandon_all(AbandonReason::ClientDisconnected);
        let [trace] = &abandoned[..] else { panic!() };
        let [root, sql, ctrl] = &trace.spans[..] else {
            panic!()
        };
        assert_eq!(sql.attribute(UNFINISHED_ATTRIBUTE), None);
        assert_eq!(sql.status.code, StatusCode::Unset);
        for open in [root, ctrl] {
            assert_eq!(
                open.attribute(UNFINISHED_ATTRIBUTE),
                Some(&AttributeValue::Bool(true))
            );
            assert_eq!(open.status.code, StatusCode::Error);
            assert_eq!(open.status.message, DISCONNECTED_MESSAGE);
            assert_eq!(open.end_unix_nano, T0 + 30_000, "{}", open.name);
        }
        assert_eq!(s.open_requests(), 0);
    }

    #[test]
    fn mistakes_are_answered_not_fatal() {
        let mut s = session();
        let mut out = Vec::new();
        let reply = s.handle(
            command(json!({"StopSpan": {"span_id": "span-never"}})),
            Timestamp(T0),
            &mut out,
        );
        assert!(
            matches!(reply, Reply::Failure { ref message } if message.contains("unknown span span-never"))
        );
        let reply = s.handle(command(json!({"Frobnicate": {}})), Timestamp(T0), &mut out);
        assert!(matches!(reply, Reply::Failure { ref message } if message.contains("Frobnicate")));
        let mut commands = python_request("req-4");
        commands.insert(
            3,
            json!({"TagSpan": {"span_id": "nope", "tag": "a", "value": 1}}),
        );
        let reply = s.handle(
            command(json!({"BatchCommand": {"commands": commands}})),
            Timestamp(T0),
            &mut out,
        );
        assert!(matches!(reply, Reply::Failure { ref message } if message.starts_with("1 of 10")));
        assert_eq!(out.len(), 1, "the rest of the batch still made a trace");
        assert_eq!(out[0].spans.len(), 3);
    }

    #[test]
    fn missing_parents_and_the_open_item_limit() {
        let mut s = Session::new("v", SessionLimits { max_open_items: 2 });
        let mut out = Vec::new();
        let start = |span: &str, parent: Option<&str>| {
            command(
                json!({"StartSpan": {"request_id": "r", "span_id": span, "parent_id": parent, "operation": "Custom/x"}}),
            )
        };
        assert_eq!(
            s.handle(start("a", Some("ghost")), Timestamp(T0), &mut out),
            Reply::success("StartSpan")
        );
        assert!(matches!(
            s.handle(start("b", None), Timestamp(T0), &mut out),
            Reply::Failure { .. }
        ));
        s.handle(
            command(json!({"FinishRequest": {"request_id": "r"}})),
            Timestamp(T0 + 5),
            &mut out,
        );
        let span = &out[0].spans[1];
        assert_eq!(span.parent_span_id, Some(out[0].root_span_id));
        assert_eq!(
            span.attribute(MISSING_PARENT_ATTRIBUTE),
            Some(&AttributeValue::from("ghost"))
        );
        assert_eq!(
            s.handle(start("c", None), Timestamp(T0), &mut out),
            Reply::success("StartSpan"),
            "finishing freed the slots"
        );
    }

    #[test]
    fn json_values_become_typed_attributes() {
        assert_eq!(json_to_attribute(&json!(1.5)), AttributeValue::Double(1.5));
        assert_eq!(json_to_attribute(&json!(-7)), AttributeValue::Int(-7));
        assert_eq!(
            json_to_attribute(&json!(u64::MAX)),
            AttributeValue::String(u64::MAX.to_string())
        );
        assert_eq!(
            json_to_attribute(&json!([{"file": "a.py", "line": 3}])),
            AttributeValue::Array(vec![AttributeValue::Map(vec![
                KeyValue::new("file", "a.py"),
                KeyValue::new("line", 3i64),
            ])])
        );
        assert_eq!(
            to_attributes(&[("gone".into(), Value::Null)]),
            Vec::<KeyValue>::new()
        );
    }

    #[test]
    fn derived_span_ids_are_stable_and_keep_hex_ids() {
        assert_eq!(
            derive_span_id("span", "span-1"),
            derive_span_id("span", "span-1")
        );
        assert_ne!(
            derive_span_id("span", "span-1"),
            derive_span_id("request", "span-1")
        );
        assert_eq!(
            derive_span_id("span", "00f067aa0ba902b7").to_string(),
            "00f067aa0ba902b7"
        );
    }
}
