//! The causal timeline: one trace as an indexed sequence of events.
//!
//! Order is decided by a happens-before graph first, then skew-corrected time, then a
//! key that does not depend on span ids:
//!
//! * inside a span: start → its events (by recorded time, one clock) → end;
//! * parent start → child start (this is also every send → receive: a CONSUMER is the
//!   child of its PRODUCER, a SERVER of its CLIENT);
//! * a linked span's start → the linking span's start (links inside the trace);
//! * child end → parent end when the child is a synchronous call and the recorded
//!   times agree it was one: an in-process INTERNAL/CLIENT/PRODUCER/UNSPECIFIED child,
//!   or the SERVER half of a CLIENT call, that ended (skew-corrected) no later than its
//!   parent. A child that outlived its parent was detached (background work,
//!   fire-and-forget) and orders nothing.
//!
//! Kahn's algorithm with a min-heap keyed by (corrected time, service, span name,
//! canonical ordinal, position in span) linearises the graph in O(n log n) without
//! recursion. A receive is therefore never indexed before its send, whatever the
//! consumer's clock says. Links can close a cycle (a span linking to its own
//! descendant); the earliest waiting event is then released and a warning recorded.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;

use clew_model::tree::{SkewMode, TraceTree};
use clew_model::{Span, SpanId, SpanKind, TraceId};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::canon::{self, Hash};
use crate::conventions::{self, FaultKind};
use crate::signature::{self, Canonical, SignatureOptions};
use crate::snapshot::Checkpoints;

/// What one timeline event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// An INTERNAL or UNSPECIFIED span starts.
    SpanStart,
    /// A PRODUCER or CLIENT span starts: a message or request leaves.
    MessageSend,
    /// A CONSUMER or SERVER span starts: a message or request arrives.
    MessageReceive,
    /// A span event.
    SpanEvent,
    /// A span event that records a process exit (see [`crate::conventions`]).
    ProcessExit,
    SpanEnd,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::SpanStart => "start",
            EventKind::MessageSend => "send",
            EventKind::MessageReceive => "receive",
            EventKind::SpanEvent => "event",
            EventKind::ProcessExit => "exit",
            EventKind::SpanEnd => "end",
        }
    }

    pub fn is_start(self) -> bool {
        matches!(
            self,
            EventKind::SpanStart | EventKind::MessageSend | EventKind::MessageReceive
        )
    }

    fn for_start(kind: SpanKind) -> EventKind {
        match kind {
            SpanKind::Producer | SpanKind::Client => EventKind::MessageSend,
            SpanKind::Consumer | SpanKind::Server => EventKind::MessageReceive,
            SpanKind::Internal | SpanKind::Unspecified => EventKind::SpanStart,
        }
    }
}

/// One indexed event of a [`Timeline`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineEvent {
    pub index: usize,
    /// Skew-corrected microseconds since the trace's (corrected) start. Not monotonic
    /// where causality overrode a clock: a receive stays after its send.
    pub at_us: u64,
    pub kind: EventKind,
    /// Human-readable, free of ids and times: `ares: send publish_death_striker
    /// (PRODUCER) → death-knell`.
    pub label: String,
    pub service: String,
    pub span_id: SpanId,
    pub span_name: String,
    pub span_kind: SpanKind,
    /// Index of the span in [`Timeline::spans`].
    pub span_index: usize,
    /// For span events and exits: the event's name and index in the span's `events`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_index: Option<usize>,
    /// As the sender recorded it.
    pub raw_unix_nano: u64,
    pub corrected_unix_nano: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<FaultKind>,
    /// SHA-256 (hex) of the previous event's signature followed by this event's
    /// canonical form (no ids, no times): equal prefixes of two timelines have equal
    /// signatures, and the first difference marks where they diverge.
    pub state_signature: String,
}

impl TimelineEvent {
    pub fn at_ms(&self) -> f64 {
        self.at_us as f64 / 1000.0
    }
}

/// "expected X at index N, got Y": where two event sequences first differ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Divergence {
    pub index: usize,
    /// `None` when the expected sequence had already ended.
    pub expected: Option<String>,
    /// `None` when the actual sequence had already ended.
    pub actual: Option<String>,
    /// Where the same point is in the actual sequence, when that differs from `index`
    /// (a structural divergence between two timelines whose concurrent branches
    /// interleaved differently).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual_index: Option<usize>,
}

impl fmt::Display for Divergence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |s: &Option<String>| s.clone().unwrap_or_else(|| "end of trace".into());
        write!(
            f,
            "expected {} at index {}, got {}",
            show(&self.expected),
            self.index,
            show(&self.actual)
        )?;
        match self.actual_index {
            Some(at) if at != self.index => write!(f, " at index {at}"),
            _ => Ok(()),
        }
    }
}

/// Finds the first index where two sequences of comparable items differ, reporting
/// each side with `label`.
pub(crate) fn first_difference<T, L>(
    expected: &[T],
    actual: &[T],
    same: impl Fn(&T, &T) -> bool,
    label: L,
) -> Option<Divergence>
where
    L: Fn(&T) -> String,
{
    let common = expected.len().min(actual.len());
    let index = (0..common)
        .find(|&i| !same(&expected[i], &actual[i]))
        .or_else(|| (expected.len() != actual.len()).then_some(common))?;
    Some(Divergence {
        index,
        expected: expected.get(index).map(&label),
        actual: actual.get(index).map(&label),
        actual_index: None,
    })
}

/// The serializable overview of a timeline, as `clew replay signature` and the HTTP API
/// report it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineSummary {
    pub trace_id: Option<TraceId>,
    pub span_count: usize,
    pub event_count: usize,
    pub services: Vec<String>,
    pub start_unix_nano: u64,
    pub duration_us: u64,
    pub trace_signature: String,
    pub timeline_signature: String,
    pub fault_count: usize,
    pub first_fault_index: Option<usize>,
    pub warnings: Vec<String>,
}

/// A window of a timeline's events, for paging through a large trace over HTTP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelinePage {
    pub summary: TimelineSummary,
    /// Index of the first event in `events`.
    pub offset: usize,
    pub events: Vec<TimelineEvent>,
}

/// A trace as a causally ordered, indexed event sequence, with snapshots at any index.
#[derive(Debug)]
pub struct Timeline {
    pub(crate) tree: TraceTree,
    pub(crate) options: SignatureOptions,
    pub(crate) canonical: Canonical,
    pub(crate) events: Vec<TimelineEvent>,
    pub(crate) span_start_index: Vec<usize>,
    pub(crate) span_end_index: Vec<usize>,
    /// Sorted distinct service names; `span_service[i]` indexes it.
    pub(crate) services: Vec<String>,
    pub(crate) span_service: Vec<u32>,
    pub(crate) warnings: Vec<String>,
    pub(crate) timeline_signature: Hash,
    pub(crate) checkpoints: Checkpoints,
}

/// Where the chain of state signatures starts; versioned so that a change to the
/// canonical event form can never produce signatures equal to the old ones.
const CHAIN_SEED: &[u8] = b"clew-replay/timeline/1";

impl Timeline {
    /// Builds the timeline of one trace's spans (any order, duplicates and broken
    /// parents repaired as [`TraceTree`] does) with the default signature options.
    pub fn build(spans: Vec<Span>) -> Timeline {
        Timeline::build_with(spans, &SignatureOptions::default())
    }

    pub fn build_with(spans: Vec<Span>, options: &SignatureOptions) -> Timeline {
        let tree = TraceTree::build(spans, SkewMode::Adjust);
        let canonical = Canonical::compute(&tree, options);
        let mut warnings: Vec<String> = tree.warnings().iter().map(|w| w.to_string()).collect();
        if tree.orphan_count() > 0 {
            warnings.push(format!(
                "{} span(s) name a parent that is not in the trace; they start unordered",
                tree.orphan_count()
            ));
        }

        let spans = tree.spans();
        let nodes = tree.nodes();
        let n = spans.len();

        let mut services: Vec<String> =
            spans.iter().map(|s| s.service_name().to_string()).collect();
        services.sort();
        services.dedup();
        let span_service: Vec<u32> = spans
            .iter()
            .map(|s| {
                services
                    .binary_search_by(|x| x.as_str().cmp(s.service_name()))
                    .unwrap_or(0) as u32
            })
            .collect();

        // Event ids: span i owns base[i] .. base[i + 1]: start, its events, end.
        let event_order: Vec<Vec<usize>> = spans.iter().map(signature::ordered_events).collect();
        let mut base = Vec::with_capacity(n + 1);
        let mut total = 0usize;
        for order in &event_order {
            base.push(total);
            total += order.len() + 2;
        }
        base.push(total);
        let mut owner = vec![0u32; total];
        for i in 0..n {
            owner[base[i]..base[i + 1]].fill(i as u32);
        }

        let parent_of =
            |i: usize| -> Option<usize> { nodes[i].parent.map(|p| p.index()).filter(|&p| p < n) };

        let trace_id = spans.first().map(|s| s.trace_id);
        let mut by_id = std::collections::HashMap::with_capacity(n);
        for (i, s) in spans.iter().enumerate() {
            by_id.insert(s.span_id, i);
        }
        let mut links_in: Vec<Vec<u32>> = vec![Vec::new(); n];
        let mut linked_by: Vec<Vec<u32>> = vec![Vec::new(); n];
        for (i, s) in spans.iter().enumerate() {
            for link in &s.links {
                if Some(link.trace_id) != trace_id {
                    continue;
                }
                if let Some(&t) = by_id.get(&link.span_id)
                    && t != i
                    && !links_in[i].contains(&(t as u32))
                {
                    links_in[i].push(t as u32);
                    linked_by[t].push(i as u32);
                }
            }
        }

        let mut sync = vec![false; n];
        for i in 0..n {
            let Some(p) = parent_of(i) else { continue };
            let (child, parent) = (&spans[i], &spans[p]);
            let call = (child.service_name() == parent.service_name()
                && matches!(
                    child.kind,
                    SpanKind::Internal
                        | SpanKind::Client
                        | SpanKind::Producer
                        | SpanKind::Unspecified
                ))
                || (parent.kind == SpanKind::Client && child.kind == SpanKind::Server);
            sync[i] = call && nodes[i].adjusted_end_unix_nano <= nodes[p].adjusted_end_unix_nano;
        }

        let mut indegree = vec![0u32; total];
        for i in 0..n {
            indegree[base[i]] = u32::from(parent_of(i).is_some()) + links_in[i].len() as u32;
            for slot in &mut indegree[base[i] + 1..base[i + 1]] {
                *slot = 1;
            }
        }
        // A second pass: a parent may come after its children in the input.
        for (i, &is_sync) in sync.iter().enumerate() {
            if is_sync && let Some(p) = parent_of(i) {
                indegree[base[p + 1] - 1] += 1;
            }
        }

        let time_of = |e: usize| -> (u64, u64) {
            let i = owner[e] as usize;
            let seq = e - base[i];
            let node = &nodes[i];
            let span = &spans[i];
            let last = base[i + 1] - base[i] - 1;
            if seq == 0 {
                (span.start_unix_nano, node.adjusted_start_unix_nano)
            } else if seq == last {
                (span.end_unix_nano, node.adjusted_end_unix_nano)
            } else {
                let raw = span.events[event_order[i][seq - 1]].time_unix_nano;
                let corrected = raw
                    .saturating_add_signed(node.total_shift_nanos)
                    .clamp(node.adjusted_start_unix_nano, node.adjusted_end_unix_nano);
                (raw, corrected)
            }
        };

        // The tie-break after time: service, then span name, then the canonical
        // ordinal, all id-free, so renaming ids never reorders the timeline.
        let mut rank_order: Vec<usize> = (0..n).collect();
        rank_order.sort_by(|&a, &b| {
            (
                spans[a].service_name(),
                &spans[a].name,
                canonical.ordinal[a],
            )
                .cmp(&(
                    spans[b].service_name(),
                    &spans[b].name,
                    canonical.ordinal[b],
                ))
        });
        let mut rank = vec![0u32; n];
        for (r, &i) in rank_order.iter().enumerate() {
            rank[i] = r as u32;
        }
        let key = |e: usize| -> (u64, u32, u32, u32) {
            let i = owner[e] as usize;
            (time_of(e).1, rank[i], (e - base[i]) as u32, e as u32)
        };

        let mut heap: BinaryHeap<Reverse<(u64, u32, u32, u32)>> = BinaryHeap::new();
        let mut queued = vec![false; total];
        for e in 0..total {
            if indegree[e] == 0 {
                queued[e] = true;
                heap.push(Reverse(key(e)));
            }
        }
        let mut order: Vec<usize> = Vec::with_capacity(total);
        let mut fallback: Option<(Vec<usize>, usize)> = None;
        let mut successors: Vec<usize> = Vec::new();
        while order.len() < total {
            let Some(Reverse((_, _, _, e))) = heap.pop() else {
                // Only links can close a cycle; release the earliest waiting event.
                let (sorted, pos) = fallback.get_or_insert_with(|| {
                    let mut all: Vec<usize> = (0..total).collect();
                    all.sort_by_key(|&e| key(e));
                    (all, 0)
                });
                while queued[sorted[*pos]] {
                    *pos += 1;
                }
                let e = sorted[*pos];
                let i = owner[e] as usize;
                warnings.push(format!(
                    "links form a causal cycle; released {}/{} early",
                    spans[i].service_name(),
                    spans[i].name
                ));
                queued[e] = true;
                heap.push(Reverse(key(e)));
                continue;
            };
            let e = e as usize;
            order.push(e);
            let i = owner[e] as usize;
            let seq = e - base[i];
            let last = base[i + 1] - base[i] - 1;
            successors.clear();
            if seq < last {
                successors.push(e + 1);
            }
            if seq == 0 {
                successors.extend(
                    nodes[i]
                        .children
                        .iter()
                        .map(|c| c.index())
                        .filter(|&c| c < n)
                        .map(|c| base[c]),
                );
                successors.extend(linked_by[i].iter().map(|&l| base[l as usize]));
            }
            if seq == last
                && sync[i]
                && let Some(p) = parent_of(i)
            {
                successors.push(base[p + 1] - 1);
            }
            for &s in &successors {
                indegree[s] = indegree[s].saturating_sub(1);
                if indegree[s] == 0 && !queued[s] {
                    queued[s] = true;
                    heap.push(Reverse(key(s)));
                }
            }
        }

        let start = tree.start_unix_nano();
        let mut events = Vec::with_capacity(total);
        let mut span_start_index = vec![0usize; n];
        let mut span_end_index = vec![0usize; n];
        let mut chain: Hash = canon::sha256(&[CHAIN_SEED]);
        for (index, &e) in order.iter().enumerate() {
            let i = owner[e] as usize;
            let span = &spans[i];
            let seq = e - base[i];
            let last = base[i + 1] - base[i] - 1;
            let (raw, corrected) = time_of(e);
            let service = span.service_name();
            let (kind, event_index) = if seq == 0 {
                span_start_index[i] = index;
                (EventKind::for_start(span.kind), None)
            } else if seq == last {
                span_end_index[i] = index;
                (EventKind::SpanEnd, None)
            } else {
                let ei = event_order[i][seq - 1];
                let kind = if conventions::is_process_exit(&span.events[ei]) {
                    EventKind::ProcessExit
                } else {
                    EventKind::SpanEvent
                };
                (kind, Some(ei))
            };
            let event = event_index.map(|ei| &span.events[ei]);
            let fault = match (kind, event) {
                (EventKind::SpanEnd, _) if span.is_error() => Some(FaultKind::ErrorStatus),
                (EventKind::ProcessExit, Some(ev)) if conventions::is_abnormal_exit(span, ev) => {
                    Some(FaultKind::AbnormalExit)
                }
                (_, Some(ev)) if conventions::is_exception(ev) => Some(FaultKind::Exception),
                _ => None,
            };
            let canonical_event =
                canonical_event(kind, span, canonical.depth[i], event, fault, options);
            chain = canon::sha256(&[&chain, canon::canonical_string(&canonical_event).as_bytes()]);
            events.push(TimelineEvent {
                index,
                at_us: corrected.saturating_sub(start) / 1000,
                kind,
                label: label(kind, span, event, fault),
                service: service.to_string(),
                span_id: span.span_id,
                span_name: span.name.clone(),
                span_kind: span.kind,
                span_index: i,
                event_name: event.map(|ev| ev.name.clone()),
                event_index,
                raw_unix_nano: raw,
                corrected_unix_nano: corrected,
                fault,
                state_signature: canon::hex(&chain),
            });
        }

        let mut timeline = Timeline {
            tree,
            options: options.clone(),
            canonical,
            events,
            span_start_index,
            span_end_index,
            services,
            span_service,
            warnings,
            timeline_signature: chain,
            checkpoints: Checkpoints::default(),
        };
        timeline.checkpoints = Checkpoints::build(&timeline);
        timeline
    }

    pub fn events(&self) -> &[TimelineEvent] {
        &self.events
    }

    pub fn event(&self, index: usize) -> Option<&TimelineEvent> {
        self.events.get(index)
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The spans (duplicates dropped) that [`TimelineEvent::span_index`] points into.
    pub fn spans(&self) -> &[Span] {
        self.tree.spans()
    }

    /// The tree the timeline was built from, with the skew-corrected times.
    pub fn tree(&self) -> &TraceTree {
        &self.tree
    }

    pub fn options(&self) -> &SignatureOptions {
        &self.options
    }

    pub fn trace_id(&self) -> Option<TraceId> {
        self.tree.trace_id()
    }

    /// Distinct service names, sorted.
    pub fn services(&self) -> &[String] {
        &self.services
    }

    /// The corrected start of the trace, which `at_us` counts from.
    pub fn start_unix_nano(&self) -> u64 {
        self.tree.start_unix_nano()
    }

    /// Timeline indices of a span's start and end.
    pub fn span_event_range(&self, span_index: usize) -> (usize, usize) {
        (
            self.span_start_index[span_index],
            self.span_end_index[span_index],
        )
    }

    /// What the input needed repairing (duplicates, cycles, orphans, link cycles).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The canonical trace signature (see the crate docs).
    pub fn trace_signature(&self) -> String {
        canon::hex(&self.canonical.signature)
    }

    /// The last state signature: the whole event sequence, without ids or times.
    pub fn timeline_signature(&self) -> String {
        canon::hex(&self.timeline_signature)
    }

    /// The canonical JSON document whose SHA-256 is [`Timeline::trace_signature`].
    pub fn canonical_document(&self) -> String {
        self.canonical.document(&self.tree)
    }

    /// The time-free canonical event sequence `verify` compares.
    pub fn canonical_steps(&self) -> Vec<String> {
        self.canonical.steps(&self.tree, &self.options)
    }

    /// Indices of the fault events, in timeline order.
    pub fn fault_indices(&self) -> impl Iterator<Item = usize> + '_ {
        self.events
            .iter()
            .filter(|e| e.fault.is_some())
            .map(|e| e.index)
    }

    pub fn summary(&self) -> TimelineSummary {
        TimelineSummary {
            trace_id: self.trace_id(),
            span_count: self.spans().len(),
            event_count: self.len(),
            services: self.services.clone(),
            start_unix_nano: self.start_unix_nano(),
            duration_us: self.tree.duration_nanos() / 1000,
            trace_signature: self.trace_signature(),
            timeline_signature: self.timeline_signature(),
            fault_count: self.fault_indices().count(),
            first_fault_index: self.fault_indices().next(),
            warnings: self.warnings.clone(),
        }
    }

    /// Up to `limit` events from index `offset` (an empty page past the end).
    pub fn page(&self, offset: usize, limit: usize) -> TimelinePage {
        let start = offset.min(self.len());
        let end = start.saturating_add(limit).min(self.len());
        TimelinePage {
            summary: self.summary(),
            offset: start,
            events: self.events[start..end].to_vec(),
        }
    }

    /// The first index where the two timelines' canonical events differ (ids and
    /// times ignored), as "expected (self) X at index N, got (other) Y".
    pub fn first_divergence(&self, actual: &Timeline) -> Option<Divergence> {
        first_difference(
            &self.events,
            &actual.events,
            |a, b| a.state_signature == b.state_signature,
            |e| e.label.clone(),
        )
    }

    /// Like [`Timeline::first_divergence`] but ids and recorded times must match too:
    /// what a double run of a seeded flow must satisfy.
    pub fn first_divergence_exact(&self, actual: &Timeline) -> Option<Divergence> {
        first_difference(
            &self.events,
            &actual.events,
            |a, b| {
                a.state_signature == b.state_signature
                    && a.span_id == b.span_id
                    && a.raw_unix_nano == b.raw_unix_nano
            },
            |e| format!("{} (span {} at {} ns)", e.label, e.span_id, e.raw_unix_nano),
        )
    }
}

fn canonical_event(
    kind: EventKind,
    span: &Span,
    depth: u32,
    event: Option<&clew_model::Event>,
    fault: Option<FaultKind>,
    options: &SignatureOptions,
) -> Value {
    let attrs = match (kind, event) {
        (_, Some(ev)) => options.chosen(&ev.attributes),
        (k, None) if k.is_start() => options.chosen(&span.attributes),
        _ => serde_json::Map::new(),
    };
    json!({
        "kind": kind.as_str(),
        "service": span.service_name(),
        "span": span.name,
        "span_kind": span.kind.as_str(),
        "depth": depth,
        "event": event.map(|e| e.name.as_str()),
        "attrs": attrs,
        "status": (kind == EventKind::SpanEnd).then(|| signature::status_str(span.status.code)),
        "fault": fault.map(FaultKind::as_str),
    })
}

fn label(
    kind: EventKind,
    span: &Span,
    event: Option<&clew_model::Event>,
    fault: Option<FaultKind>,
) -> String {
    let service = span.service_name();
    let name = &span.name;
    let mut text = match kind {
        EventKind::SpanStart => format!("{service}: start {name} ({})", span.kind),
        EventKind::MessageSend => {
            let mut t = format!("{service}: send {name} ({})", span.kind);
            if let Some(dest) = span.messaging_destination() {
                t.push_str(&format!(" → {dest}"));
            }
            t
        }
        EventKind::MessageReceive => {
            let mut t = format!("{service}: receive {name} ({})", span.kind);
            if let Some(dest) = span.messaging_destination() {
                t.push_str(&format!(" ← {dest}"));
            }
            t
        }
        EventKind::SpanEvent => {
            let ev = event.map_or("", |e| e.name.as_str());
            format!("{service}: event {ev} in {name}")
        }
        EventKind::ProcessExit => {
            let ev = event.map_or("", |e| e.name.as_str());
            match event.and_then(conventions::exit_code) {
                Some(code) => format!("{service}: exit ({ev}, code {code}) in {name}"),
                None => format!("{service}: exit ({ev}) in {name}"),
            }
        }
        EventKind::SpanEnd => format!("{service}: end {name}"),
    };
    match fault {
        Some(FaultKind::ErrorStatus) => {
            if span.status.message.is_empty() {
                text.push_str(" [ERROR]");
            } else {
                text.push_str(&format!(" [ERROR: {}]", span.status.message));
            }
        }
        Some(FaultKind::Exception) => {
            if let Some(ev) = event {
                text.push_str(&format!(" [{}]", conventions::exception_text(ev)));
            }
        }
        Some(FaultKind::AbnormalExit) => text.push_str(" [ABNORMAL]"),
        None => {}
    }
    text
}
