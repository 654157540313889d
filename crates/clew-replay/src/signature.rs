//! Canonical form of a trace and the signatures hashed from it.
//!
//! See the crate documentation for the rules; this module is their one implementation,
//! shared by the trace signature, the timeline's tie-breaking order and `verify`'s
//! canonical event sequence, so the three can never disagree about what "the same
//! trace" means.

use std::collections::VecDeque;

use clew_model::tree::{NodeKind, SkewMode, TraceTree};
use clew_model::{Event, KeyValue, Span, SpanId, SpanKind, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::canon::{self, ArrayHasher, Hash};
use crate::conventions;

/// Which attributes take part in signatures, canonical events and diffs.
///
/// Everything else about attributes (their order, values of unlisted keys) is ignored,
/// because ids, timestamps and host names vary from run to run while the trace is,
/// for every purpose that matters, the same.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SignatureOptions {
    /// Attribute keys (span and span-event attributes) whose values count. Default:
    /// [`DEFAULT_SIGNATURE_ATTRIBUTES`].
    pub attributes: Vec<String>,
}

/// The messaging destination decides who can receive a message, so it is part of the
/// causal structure; nothing else is by default.
pub const DEFAULT_SIGNATURE_ATTRIBUTES: &[&str] = &["messaging.destination.name"];

impl Default for SignatureOptions {
    fn default() -> Self {
        SignatureOptions {
            attributes: DEFAULT_SIGNATURE_ATTRIBUTES
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }
}

impl SignatureOptions {
    /// No attribute counts: only structure, names, kinds, statuses and events.
    pub fn structure_only() -> SignatureOptions {
        SignatureOptions {
            attributes: Vec::new(),
        }
    }

    pub fn with_attributes<I, S>(keys: I) -> SignatureOptions
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut attributes: Vec<String> = keys.into_iter().map(Into::into).collect();
        attributes.sort();
        attributes.dedup();
        SignatureOptions { attributes }
    }

    /// The chosen attributes of a list, as a canonical JSON object.
    pub(crate) fn chosen(&self, attributes: &[KeyValue]) -> Map<String, Value> {
        let mut out = Map::new();
        for key in &self.attributes {
            if let Some(v) = clew_model::find_attribute(attributes, key) {
                out.insert(key.clone(), canon::attribute_json(v));
            }
        }
        out
    }

    /// `{k=v, …}` for labels; empty when nothing was chosen.
    pub(crate) fn chosen_text(&self, attributes: &[KeyValue]) -> String {
        let mut parts = Vec::new();
        for key in &self.attributes {
            if let Some(v) = clew_model::find_attribute(attributes, key) {
                parts.push(format!("{key}={v}"));
            }
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!(" {{{}}}", parts.join(", "))
        }
    }
}

pub(crate) fn status_str(code: StatusCode) -> &'static str {
    match code {
        StatusCode::Unset => "UNSET",
        StatusCode::Ok => "OK",
        StatusCode::Error => "ERROR",
    }
}

/// A span's events in the order they happened: recorded time, then name, then the
/// order they were recorded in (one clock, so time order inside a span is trustworthy).
pub(crate) fn ordered_events(span: &Span) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..span.events.len()).collect();
    idx.sort_by(|&a, &b| {
        let (ea, eb): (&Event, &Event) = (&span.events[a], &span.events[b]);
        (ea.time_unix_nano, &ea.name, a).cmp(&(eb.time_unix_nano, &eb.name, b))
    });
    idx
}

/// The canonical view of one trace tree: sibling order, renumbered ids and the hashes.
/// Indices are [`TraceTree`] node indices (span `i` is node `i`; placeholders follow).
pub(crate) struct Canonical {
    /// Breadth-first number of each node over the canonically sorted tree.
    pub ordinal: Vec<u32>,
    pub depth: Vec<u32>,
    /// Children of each node in canonical order.
    pub children: Vec<Vec<u32>>,
    pub roots: Vec<u32>,
    pub signature: Hash,
    /// Canonical JSON of each node's own content (no children), kept for the document.
    content: Vec<String>,
    links: Vec<Vec<u32>>,
    external_links: Vec<u32>,
}

impl std::fmt::Debug for Canonical {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Canonical({})", canon::hex(&self.signature))
    }
}

type SortKey<'a> = (&'a str, &'a str, Option<SpanKind>, Hash, u64, SpanId);

impl Canonical {
    pub(crate) fn compute(tree: &TraceTree, options: &SignatureOptions) -> Canonical {
        let nodes = tree.nodes();
        let spans = tree.spans();
        let count = nodes.len();

        let mut by_id = std::collections::HashMap::with_capacity(spans.len());
        for (i, s) in spans.iter().enumerate() {
            by_id.insert(s.span_id, i);
        }
        let trace_id = spans.first().map(|s| s.trace_id);

        // Links are described by what they point at, never by id, so renaming ids
        // cannot change a hash; the document below also gives the target's ordinal.
        let mut links: Vec<Vec<u32>> = vec![Vec::new(); count];
        let mut external_links = vec![0u32; count];
        let mut content = Vec::with_capacity(count);
        for (i, node) in nodes.iter().enumerate() {
            let NodeKind::Span(si) = node.kind else {
                content.push(canon::canonical_string(&json!({ "missing": true })));
                continue;
            };
            let span = &spans[si];
            let mut link_targets: Vec<String> = Vec::new();
            for link in &span.links {
                match by_id.get(&link.span_id) {
                    Some(&t) if Some(link.trace_id) == trace_id => {
                        links[i].push(t as u32);
                        let target = &spans[t];
                        link_targets.push(format!("{}/{}", target.service_name(), target.name));
                    }
                    _ => external_links[i] += 1,
                }
            }
            link_targets.sort();
            let events: Vec<Value> = ordered_events(span)
                .into_iter()
                .map(|e| {
                    let ev = &span.events[e];
                    json!({ "name": ev.name, "attrs": options.chosen(&ev.attributes) })
                })
                .collect();
            content.push(canon::canonical_string(&json!({
                "service": span.service_name(),
                "name": span.name,
                "kind": span.kind.as_str(),
                "status": status_str(span.status.code),
                "attrs": options.chosen(&span.attributes),
                "events": events,
                "links": link_targets,
                "external_links": external_links[i],
            })));
        }

        let key = |i: usize, hashes: &[Hash]| -> SortKey<'_> {
            match nodes[i].kind {
                NodeKind::Span(si) => {
                    let s = &spans[si];
                    (
                        s.service_name(),
                        s.name.as_str(),
                        Some(s.kind),
                        hashes[i],
                        nodes[i].adjusted_start_unix_nano,
                        s.span_id,
                    )
                }
                NodeKind::Missing(id) => ("", "", None, hashes[i], 0, id),
            }
        };

        // Children before parents: the reverse of a pre-order walk.
        let pre: Vec<usize> = tree.pre_order().map(|(id, _)| id.index()).collect();
        let mut hashes: Vec<Hash> = vec![[0; 32]; count];
        let mut children: Vec<Vec<u32>> = vec![Vec::new(); count];
        let mut depth = vec![0u32; count];
        for &i in pre.iter().rev() {
            depth[i] = nodes[i].depth as u32;
            let mut kids: Vec<u32> = nodes[i].children.iter().map(|c| c.index() as u32).collect();
            kids.sort_by(|&a, &b| key(a as usize, &hashes).cmp(&key(b as usize, &hashes)));
            let mut parts: Vec<&[u8]> = Vec::with_capacity(kids.len() + 2);
            parts.push(content[i].as_bytes());
            parts.push(b"|");
            for &k in &kids {
                parts.push(&hashes[k as usize]);
            }
            hashes[i] = canon::sha256(&parts);
            children[i] = kids;
        }
        let mut roots: Vec<u32> = tree.roots().iter().map(|r| r.index() as u32).collect();
        roots.sort_by(|&a, &b| key(a as usize, &hashes).cmp(&key(b as usize, &hashes)));

        let mut ordinal = vec![0u32; count];
        let mut queue: VecDeque<u32> = roots.iter().copied().collect();
        let mut next = 0u32;
        while let Some(i) = queue.pop_front() {
            ordinal[i as usize] = next;
            next += 1;
            queue.extend(children[i as usize].iter().copied());
        }

        let mut canonical = Canonical {
            ordinal,
            depth,
            children,
            roots,
            signature: [0; 32],
            content,
            links,
            external_links,
        };
        let mut hasher = ArrayHasher::new();
        canonical.for_each_document_item(tree, |item| hasher.push(item));
        canonical.signature = hasher.finish();
        canonical
    }

    /// Calls `f` with the canonical JSON of each node, in ordinal order:
    /// `{"i":ordinal,"l":[linked ordinals],"p":parent ordinal or null,"s":content}`.
    fn for_each_document_item(&self, tree: &TraceTree, mut f: impl FnMut(&str)) {
        let mut by_ordinal = vec![0usize; self.ordinal.len()];
        for (node, &ord) in self.ordinal.iter().enumerate() {
            by_ordinal[ord as usize] = node;
        }
        let mut item = String::new();
        for (ord, &node) in by_ordinal.iter().enumerate() {
            let parent = tree.nodes()[node]
                .parent
                .map(|p| self.ordinal[p.index()].to_string())
                .unwrap_or_else(|| "null".into());
            let mut linked: Vec<u32> = self.links[node]
                .iter()
                .map(|&t| self.ordinal[t as usize])
                .collect();
            linked.sort_unstable();
            let linked: Vec<String> = linked.iter().map(u32::to_string).collect();
            item.clear();
            item.push_str(&format!(
                "{{\"i\":{ord},\"l\":[{}],\"p\":{parent},\"s\":{}}}",
                linked.join(","),
                self.content[node]
            ));
            f(&item);
        }
    }

    pub(crate) fn document(&self, tree: &TraceTree) -> String {
        let mut out = String::from("[");
        let mut first = true;
        self.for_each_document_item(tree, |item| {
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(item);
        });
        out.push(']');
        out
    }

    /// The time-free canonical event sequence: a depth-first walk of the canonically
    /// sorted tree, each span as its start, its events, its children, its end. Two
    /// runs with the same structure give the same lines whatever their clocks, ids or
    /// the interleaving of concurrent branches.
    pub(crate) fn steps(&self, tree: &TraceTree, options: &SignatureOptions) -> Vec<String> {
        let spans = tree.spans();
        let nodes = tree.nodes();
        let mut out = Vec::with_capacity(spans.len() * 2);
        // (node, false) = enter, (node, true) = leave.
        let mut stack: Vec<(u32, bool)> = self.roots.iter().rev().map(|&r| (r, false)).collect();
        while let Some((node, leaving)) = stack.pop() {
            let depth = self.depth[node as usize];
            let NodeKind::Span(si) = nodes[node as usize].kind else {
                if !leaving {
                    out.push(format!("{depth} missing parent"));
                    stack.push((node, true));
                    stack.extend(
                        self.children[node as usize]
                            .iter()
                            .rev()
                            .map(|&c| (c, false)),
                    );
                }
                continue;
            };
            let span = &spans[si];
            let who = format!("{}/{} {}", span.service_name(), span.name, span.kind);
            if leaving {
                let mut line = format!("{depth} end {who} {}", status_str(span.status.code));
                if span.is_error() {
                    line.push_str(" fault");
                }
                out.push(line);
                continue;
            }
            out.push(format!(
                "{depth} start {who}{}{}",
                options.chosen_text(&span.attributes),
                if self.links[node as usize].is_empty() && self.external_links[node as usize] == 0 {
                    String::new()
                } else {
                    format!(
                        " links={}",
                        self.links[node as usize].len()
                            + self.external_links[node as usize] as usize
                    )
                }
            ));
            for e in ordered_events(span) {
                let ev = &span.events[e];
                let verb = if conventions::is_process_exit(ev) {
                    "exit"
                } else {
                    "event"
                };
                let fault =
                    conventions::is_exception(ev) || conventions::is_abnormal_exit(span, ev);
                out.push(format!(
                    "{depth} {verb} {}{} in {who}{}",
                    ev.name,
                    options.chosen_text(&ev.attributes),
                    if fault { " fault" } else { "" }
                ));
            }
            stack.push((node, true));
            stack.extend(
                self.children[node as usize]
                    .iter()
                    .rev()
                    .map(|&c| (c, false)),
            );
        }
        out
    }
}

/// The canonical trace signature with the default options: 64 hex digits of SHA-256.
pub fn trace_signature(spans: &[Span]) -> String {
    trace_signature_with(spans, &SignatureOptions::default())
}

pub fn trace_signature_with(spans: &[Span], options: &SignatureOptions) -> String {
    let tree = TraceTree::build(spans.to_vec(), SkewMode::Adjust);
    canon::hex(&Canonical::compute(&tree, options).signature)
}

/// The canonical JSON document whose SHA-256 is the trace signature, for inspecting
/// why two signatures differ.
pub fn canonical_document(spans: &[Span], options: &SignatureOptions) -> String {
    let tree = TraceTree::build(spans.to_vec(), SkewMode::Adjust);
    Canonical::compute(&tree, options).document(&tree)
}

/// The time-free canonical event sequence (see [`mod@crate::verify`]), one line per event.
pub fn canonical_steps(spans: &[Span], options: &SignatureOptions) -> Vec<String> {
    let tree = TraceTree::build(spans.to_vec(), SkewMode::Adjust);
    Canonical::compute(&tree, options).steps(&tree, options)
}
