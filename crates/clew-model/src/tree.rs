//! Assembly of a trace's flat spans into a tree.
//!
//! Spans arrive in any order, from processes that crash mid-trace, with clocks that
//! disagree, and occasionally with broken data (duplicate ids, parent cycles). The tree
//! keeps every span it can: a span whose parent never arrived hangs under a visible
//! placeholder instead of vanishing, duplicates and cycles become warnings instead of
//! panics, and clock skew is corrected in a *view* (adjusted times per node) so the
//! spans themselves stay exactly as recorded.
//!
//! Everything is iterative with explicit stacks: a 50,000-deep parent chain is legal
//! input and must not overflow the stack, here or in a renderer built on [`PreOrder`].

use std::collections::HashMap;
use std::fmt;

use crate::{Span, SpanId, SpanKind, TraceId};

/// Whether [`TraceTree::build`] corrects clock skew between services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SkewMode {
    /// Shift spans of a service whose clock visibly disagrees with its caller's.
    #[default]
    Adjust,
    /// Show the times exactly as the senders recorded them.
    Off,
}

/// The position of a node in [`TraceTree::nodes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(usize);

impl NodeId {
    pub fn index(self) -> usize {
        self.0
    }
}

/// What a node stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// A received span: the index into [`TraceTree::spans`].
    Span(usize),
    /// A parent span id that other spans name but that never arrived.
    Missing(SpanId),
}

/// One node of the tree, with the clock-skew view of its times.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub kind: NodeKind,
    pub parent: Option<NodeId>,
    /// Sorted by adjusted start time, then span id.
    pub children: Vec<NodeId>,
    /// 0 for roots.
    pub depth: usize,
    /// The shift this node's own clock correction introduced (0 when it inherited one).
    pub skew_adjustment_nanos: i64,
    /// The whole shift applied to the recorded times: inherited from ancestors of the
    /// same service, plus [`Node::skew_adjustment_nanos`].
    pub total_shift_nanos: i64,
    /// For a placeholder: the earliest start of its children.
    pub adjusted_start_unix_nano: u64,
    /// Never before the adjusted start. For a placeholder: the latest child end.
    pub adjusted_end_unix_nano: u64,
    /// This span's adjusted time range overlaps a sibling span's. Placeholders never are.
    pub parallel: bool,
}

impl Node {
    pub fn span_index(&self) -> Option<usize> {
        match self.kind {
            NodeKind::Span(i) => Some(i),
            NodeKind::Missing(_) => None,
        }
    }

    pub fn is_placeholder(&self) -> bool {
        matches!(self.kind, NodeKind::Missing(_))
    }

    pub fn adjusted_duration_nanos(&self) -> u64 {
        self.adjusted_end_unix_nano - self.adjusted_start_unix_nano
    }
}

/// Something wrong with the input that the tree worked around.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TreeWarning {
    /// Several spans had this id; the last one received was kept.
    DuplicateSpanId {
        span_id: SpanId,
        copies_dropped: usize,
    },
    /// Parent ids formed a loop; `detached` (the earliest span of the loop, the most
    /// plausible origin) lost its parent and became a root.
    ParentCycle {
        span_ids: Vec<SpanId>,
        detached: SpanId,
    },
}

impl fmt::Display for TreeWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TreeWarning::DuplicateSpanId {
                span_id,
                copies_dropped,
            } => write!(
                f,
                "span {span_id} was received {} times; kept the last copy",
                copies_dropped + 1
            ),
            TreeWarning::ParentCycle { span_ids, detached } => {
                f.write_str("parent ids form a cycle (")?;
                for id in span_ids {
                    write!(f, "{id} → ")?;
                }
                write!(
                    f,
                    "{}); span {detached} is shown as a root",
                    span_ids.first().copied().unwrap_or(*detached)
                )
            }
        }
    }
}

/// A clock-skew correction the tree applied, for "clock skew adjusted: ares +3.2ms".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkewAdjustment {
    pub node: NodeId,
    pub span_id: SpanId,
    pub service: String,
    pub delta_nanos: i64,
}

/// The spans of one trace arranged by parent, with placeholders for parents that never
/// arrived and a clock-skew-corrected view of the times.
#[derive(Debug, Clone)]
pub struct TraceTree {
    spans: Vec<Span>,
    nodes: Vec<Node>,
    roots: Vec<NodeId>,
    by_span_id: HashMap<SpanId, NodeId>,
    warnings: Vec<TreeWarning>,
    skew_mode: SkewMode,
    orphan_count: usize,
    services: Vec<String>,
    depth: usize,
    start_unix_nano: u64,
    end_unix_nano: u64,
}

impl TraceTree {
    /// Arranges `spans` (one trace's, in any order) into a tree. Never fails: whatever
    /// is wrong with the input is repaired and reported in [`TraceTree::warnings`].
    pub fn build(spans: Vec<Span>, skew_mode: SkewMode) -> TraceTree {
        let mut warnings = Vec::new();
        let spans = drop_duplicates(spans, &mut warnings);
        let n = spans.len();
        let by_index: HashMap<SpanId, usize> = spans
            .iter()
            .enumerate()
            .map(|(i, s)| (s.span_id, i))
            .collect();

        // Parents as plain indices first: indices >= n are placeholders.
        let mut parent: Vec<Option<usize>> = vec![None; n];
        let mut missing: Vec<SpanId> = Vec::new();
        let mut placeholder_of: HashMap<SpanId, usize> = HashMap::new();
        let mut orphan_count = 0;
        for (i, span) in spans.iter().enumerate() {
            // Some senders write an all-zero parent id for "no parent".
            let Some(pid) = span.parent_span_id.filter(SpanId::is_valid) else {
                continue;
            };
            parent[i] = Some(match by_index.get(&pid) {
                Some(&p) => p,
                None => {
                    orphan_count += 1;
                    *placeholder_of.entry(pid).or_insert_with(|| {
                        missing.push(pid);
                        n + missing.len() - 1
                    })
                }
            });
        }
        break_cycles(&spans, &mut parent, &mut warnings);

        let mut nodes: Vec<Node> = (0..n)
            .map(NodeKind::Span)
            .chain(missing.iter().copied().map(NodeKind::Missing))
            .map(|kind| Node {
                kind,
                parent: None,
                children: Vec::new(),
                depth: 0,
                skew_adjustment_nanos: 0,
                total_shift_nanos: 0,
                adjusted_start_unix_nano: 0,
                adjusted_end_unix_nano: 0,
                parallel: false,
            })
            .collect();
        let mut roots = Vec::new();
        for (i, p) in parent.iter().copied().enumerate() {
            match p {
                Some(p) => {
                    nodes[i].parent = Some(NodeId(p));
                    nodes[p].children.push(NodeId(i));
                }
                None => roots.push(NodeId(i)),
            }
        }
        roots.extend((n..nodes.len()).map(NodeId));

        let mut tree = TraceTree {
            by_span_id: by_index.into_iter().map(|(k, v)| (k, NodeId(v))).collect(),
            spans,
            nodes,
            roots,
            warnings,
            skew_mode,
            orphan_count,
            services: Vec::new(),
            depth: 0,
            start_unix_nano: 0,
            end_unix_nano: 0,
        };
        tree.adjust_times();
        tree.sort_siblings();
        tree.mark_parallel();
        tree.summarise();
        tree
    }

    /// Computes depths and the adjusted times top-down, so every node sees its parent's
    /// final times.
    fn adjust_times(&mut self) {
        let mut stack: Vec<NodeId> = self.roots.iter().rev().copied().collect();
        while let Some(id) = stack.pop() {
            let parent = self.nodes[id.0].parent;
            let depth = parent.map_or(0, |p| self.nodes[p.0].depth + 1);
            if let NodeKind::Span(i) = self.nodes[id.0].kind {
                let span = &self.spans[i];
                let parent_span = parent.and_then(|p| Some((p, self.nodes[p.0].span_index()?)));
                let (inherited, own) = match parent_span {
                    Some((p, pi)) => {
                        let pspan = &self.spans[pi];
                        let pnode = &self.nodes[p.0];
                        if pspan.service_name() == span.service_name() {
                            // Same process clock: move with the parent, never on our own.
                            (pnode.total_shift_nanos, 0)
                        } else if self.skew_mode == SkewMode::Adjust {
                            // Another process's clock owes nothing to the parent's
                            // shift, so judge the recorded times against the parent's
                            // adjusted ones.
                            let own = skew_delta(
                                pspan.kind,
                                span.kind,
                                (pnode.adjusted_start_unix_nano, pnode.adjusted_end_unix_nano),
                                (span.start_unix_nano, span.end_unix_nano),
                            );
                            (0, own)
                        } else {
                            (0, 0)
                        }
                    }
                    None => (0, 0),
                };
                let total = inherited.saturating_add(own);
                let start = span.start_unix_nano.saturating_add_signed(total);
                let end = span.end_unix_nano.saturating_add_signed(total).max(start);
                let node = &mut self.nodes[id.0];
                node.skew_adjustment_nanos = own;
                node.total_shift_nanos = total;
                node.adjusted_start_unix_nano = start;
                node.adjusted_end_unix_nano = end;
            }
            self.nodes[id.0].depth = depth;
            stack.extend(self.nodes[id.0].children.iter().rev().copied());
        }
        // Placeholders span their children, which are all received spans (a missing
        // span has no recorded parent), so their times are final by now.
        for idx in self.spans.len()..self.nodes.len() {
            let (start, end) = self.nodes[idx]
                .children
                .iter()
                .map(|c| &self.nodes[c.0])
                .fold((u64::MAX, 0), |(s, e), c| {
                    (
                        s.min(c.adjusted_start_unix_nano),
                        e.max(c.adjusted_end_unix_nano),
                    )
                });
            let node = &mut self.nodes[idx];
            node.adjusted_start_unix_nano = start;
            node.adjusted_end_unix_nano = end.max(start);
        }
    }

    fn sort_key(&self, id: NodeId) -> (u64, SpanId) {
        let node = &self.nodes[id.0];
        (node.adjusted_start_unix_nano, self.node_span_id(id))
    }

    fn sort_siblings(&mut self) {
        for idx in 0..self.nodes.len() {
            if self.nodes[idx].children.len() > 1 {
                let mut children = std::mem::take(&mut self.nodes[idx].children);
                children.sort_by_key(|&c| self.sort_key(c));
                self.nodes[idx].children = children;
            }
        }
        let mut roots = std::mem::take(&mut self.roots);
        roots.sort_by_key(|&r| self.sort_key(r));
        self.roots = roots;
    }

    fn mark_parallel(&mut self) {
        let roots = std::mem::take(&mut self.roots);
        mark_parallel_siblings(&mut self.nodes, &roots);
        self.roots = roots;
        for idx in 0..self.nodes.len() {
            let children = std::mem::take(&mut self.nodes[idx].children);
            mark_parallel_siblings(&mut self.nodes, &children);
            self.nodes[idx].children = children;
        }
    }

    fn summarise(&mut self) {
        let mut seen = std::collections::HashSet::new();
        let mut services = Vec::new();
        let mut depth = 0;
        for (id, d) in self.pre_order() {
            depth = depth.max(d + 1);
            if let Some(span) = self.span(id) {
                let service = span.service_name();
                if seen.insert(service) {
                    services.push(service.to_string());
                }
            }
        }
        let real = &self.nodes[..self.spans.len()];
        self.start_unix_nano = real
            .iter()
            .map(|n| n.adjusted_start_unix_nano)
            .min()
            .unwrap_or(0);
        self.end_unix_nano = real
            .iter()
            .map(|n| n.adjusted_end_unix_nano)
            .max()
            .unwrap_or(0);
        self.services = services;
        self.depth = depth;
    }

    /// The received spans (duplicates dropped), as recorded. Index with
    /// [`NodeKind::Span`]; the span at index `i` is node `i`.
    pub fn spans(&self) -> &[Span] {
        &self.spans
    }

    pub fn into_spans(self) -> Vec<Span> {
        self.spans
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.0]
    }

    /// Spans without a parent, spans whose parent cycle was cut, and placeholders for
    /// missing parents, sorted by adjusted start time.
    pub fn roots(&self) -> &[NodeId] {
        &self.roots
    }

    pub fn children(&self, id: NodeId) -> &[NodeId] {
        &self.nodes[id.0].children
    }

    pub fn parent(&self, id: NodeId) -> Option<NodeId> {
        self.nodes[id.0].parent
    }

    /// The span behind a node, or `None` for a placeholder.
    pub fn span(&self, id: NodeId) -> Option<&Span> {
        self.nodes[id.0].span_index().map(|i| &self.spans[i])
    }

    /// The node of a received span.
    pub fn node_of(&self, span_id: SpanId) -> Option<NodeId> {
        self.by_span_id.get(&span_id).copied()
    }

    /// The span id a node stands for (the missing id for a placeholder).
    pub fn node_span_id(&self, id: NodeId) -> SpanId {
        match self.nodes[id.0].kind {
            NodeKind::Span(i) => self.spans[i].span_id,
            NodeKind::Missing(span_id) => span_id,
        }
    }

    /// Whether the node's adjusted time range overlaps a sibling span's.
    pub fn is_parallel(&self, id: NodeId) -> bool {
        self.nodes[id.0].parallel
    }

    /// Whether the node is the last of its siblings (or of the roots), which decides
    /// between `├─` and `└─` when drawing.
    pub fn is_last_sibling(&self, id: NodeId) -> bool {
        let siblings = match self.nodes[id.0].parent {
            Some(p) => &self.nodes[p.0].children,
            None => &self.roots,
        };
        siblings.last() == Some(&id)
    }

    pub fn adjusted_start(&self, id: NodeId) -> u64 {
        self.nodes[id.0].adjusted_start_unix_nano
    }

    pub fn adjusted_end(&self, id: NodeId) -> u64 {
        self.nodes[id.0].adjusted_end_unix_nano
    }

    /// Depth-first, pre-order, children in their sorted order: the order a tree is read.
    pub fn pre_order(&self) -> PreOrder<'_> {
        PreOrder {
            tree: self,
            stack: self.roots.iter().rev().map(|&r| (r, 0)).collect(),
        }
    }

    /// Levels in the deepest branch: 1 for a lone span, 0 for an empty trace.
    pub fn depth(&self) -> usize {
        self.depth
    }

    pub fn span_count(&self) -> usize {
        self.spans.len()
    }

    /// Distinct service names, in the order a reader meets them (pre-order).
    pub fn services(&self) -> &[String] {
        &self.services
    }

    pub fn service_count(&self) -> usize {
        self.services.len()
    }

    pub fn error_count(&self) -> usize {
        self.spans.iter().filter(|s| s.is_error()).count()
    }

    /// Spans whose parent never arrived (each hangs under a placeholder).
    pub fn orphan_count(&self) -> usize {
        self.orphan_count
    }

    /// Parent ids that spans name but that are not in the trace, in display order.
    pub fn missing_span_ids(&self) -> Vec<SpanId> {
        self.roots
            .iter()
            .filter_map(|&r| match self.nodes[r.0].kind {
                NodeKind::Missing(id) => Some(id),
                NodeKind::Span(_) => None,
            })
            .collect()
    }

    pub fn warnings(&self) -> &[TreeWarning] {
        &self.warnings
    }

    /// Number of span copies dropped because another span had the same id.
    pub fn duplicate_count(&self) -> usize {
        self.warnings
            .iter()
            .map(|w| match w {
                TreeWarning::DuplicateSpanId { copies_dropped, .. } => *copies_dropped,
                TreeWarning::ParentCycle { .. } => 0,
            })
            .sum()
    }

    pub fn skew_mode(&self) -> SkewMode {
        self.skew_mode
    }

    /// Every clock correction made, in pre-order. Descendants that merely moved along
    /// with a corrected ancestor of their own service are not listed.
    pub fn adjustments(&self) -> Vec<SkewAdjustment> {
        self.pre_order()
            .filter_map(|(id, _)| {
                let node = &self.nodes[id.0];
                let span = self.span(id)?;
                (node.skew_adjustment_nanos != 0).then(|| SkewAdjustment {
                    node: id,
                    span_id: span.span_id,
                    service: span.service_name().to_string(),
                    delta_nanos: node.skew_adjustment_nanos,
                })
            })
            .collect()
    }

    /// The trace id of the spans (of the first received one, should they disagree).
    pub fn trace_id(&self) -> Option<TraceId> {
        self.spans.first().map(|s| s.trace_id)
    }

    /// Earliest adjusted start of any span; 0 for an empty trace.
    pub fn start_unix_nano(&self) -> u64 {
        self.start_unix_nano
    }

    /// Latest adjusted end of any span; 0 for an empty trace.
    pub fn end_unix_nano(&self) -> u64 {
        self.end_unix_nano
    }

    pub fn duration_nanos(&self) -> u64 {
        self.end_unix_nano.saturating_sub(self.start_unix_nano)
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }
}

/// Depth-first pre-order walk yielding each node with its depth (roots are 0).
pub struct PreOrder<'a> {
    tree: &'a TraceTree,
    stack: Vec<(NodeId, usize)>,
}

impl Iterator for PreOrder<'_> {
    type Item = (NodeId, usize);

    fn next(&mut self) -> Option<(NodeId, usize)> {
        let (id, depth) = self.stack.pop()?;
        self.stack.extend(
            self.tree.nodes[id.0]
                .children
                .iter()
                .rev()
                .map(|&c| (c, depth + 1)),
        );
        Some((id, depth))
    }
}

/// Keeps the last copy of each span id: a retried export carries the most complete
/// version of a span, and the last one received is the best guess at that.
fn drop_duplicates(spans: Vec<Span>, warnings: &mut Vec<TreeWarning>) -> Vec<Span> {
    let mut last: HashMap<SpanId, usize> = HashMap::with_capacity(spans.len());
    let mut dropped: HashMap<SpanId, usize> = HashMap::new();
    for (i, span) in spans.iter().enumerate() {
        if last.insert(span.span_id, i).is_some() {
            *dropped.entry(span.span_id).or_default() += 1;
        }
    }
    if dropped.is_empty() {
        return spans;
    }
    let mut dropped: Vec<(SpanId, usize)> = dropped.into_iter().collect();
    dropped.sort_unstable();
    warnings.extend(dropped.into_iter().map(|(span_id, copies_dropped)| {
        TreeWarning::DuplicateSpanId {
            span_id,
            copies_dropped,
        }
    }));
    spans
        .into_iter()
        .enumerate()
        .filter(|(i, span)| last.get(&span.span_id) == Some(i))
        .map(|(_, span)| span)
        .collect()
}

/// Finds loops in the parent pointers of received spans and cuts each one, in O(n):
/// every walk up the parents stops at the first node an earlier walk finished.
fn break_cycles(spans: &[Span], parent: &mut [Option<usize>], warnings: &mut Vec<TreeWarning>) {
    const DONE: usize = usize::MAX;
    let n = spans.len();
    let up = |parent: &[Option<usize>], i: usize| parent[i].filter(|&p| p < n);
    // 0: not visited; `start + 1`: on the walk that began at `start`.
    let mut mark = vec![0usize; n];
    for start in 0..n {
        if mark[start] != 0 {
            continue;
        }
        let stamp = start + 1;
        let mut cur = start;
        loop {
            if mark[cur] == DONE {
                break;
            }
            if mark[cur] == stamp {
                let mut members = vec![cur];
                let mut m = cur;
                while let Some(p) = up(parent, m) {
                    if p == cur {
                        break;
                    }
                    members.push(p);
                    m = p;
                }
                let cut = members
                    .iter()
                    .copied()
                    .min_by_key(|&m| (spans[m].start_unix_nano, spans[m].span_id))
                    .unwrap_or(cur);
                parent[cut] = None;
                warnings.push(TreeWarning::ParentCycle {
                    span_ids: members.iter().map(|&m| spans[m].span_id).collect(),
                    detached: spans[cut].span_id,
                });
                break;
            }
            mark[cur] = stamp;
            match up(parent, cur) {
                Some(p) => cur = p,
                None => break,
            }
        }
        // Cycle members past the cut keep a stale stamp; a later walk through them
        // treats them as unvisited and finishes them, so nothing is walked a third time.
        let mut cur = start;
        while mark[cur] == stamp {
            mark[cur] = DONE;
            match up(parent, cur) {
                Some(p) => cur = p,
                None => break,
            }
        }
    }
}

/// The shift that makes a child of another service plausible against its parent's
/// (adjusted) times; 0 when the recorded times already are.
///
/// A synchronous call (CLIENT → SERVER) brackets the server's work, so a server span
/// sticking out on either side is wrong; without better knowledge the network latency
/// is split evenly, which centres the server in the client. Anything else, notably a
/// message from a PRODUCER to a CONSUMER, only promises that the receiver started after
/// the sender did: a consumer may well outlive the producer, so only an early start is
/// corrected.
fn skew_delta(
    parent_kind: SpanKind,
    child_kind: SpanKind,
    (parent_start, parent_end): (u64, u64),
    (child_start, child_end): (u64, u64),
) -> i64 {
    let child_end = child_end.max(child_start);
    let target_start = if parent_kind == SpanKind::Client && child_kind == SpanKind::Server {
        if child_start >= parent_start && child_end <= parent_end {
            return 0;
        }
        let parent_len = parent_end.saturating_sub(parent_start);
        let child_len = child_end - child_start;
        if child_len < parent_len {
            parent_start + (parent_len - child_len) / 2
        } else {
            parent_start
        }
    } else {
        if child_start >= parent_start {
            return 0;
        }
        parent_start
    };
    let delta = i128::from(target_start) - i128::from(child_start);
    i64::try_from(delta).unwrap_or(if delta < 0 { i64::MIN } else { i64::MAX })
}

/// Sets `parallel` on every span among `siblings` (sorted by start) whose range
/// overlaps another's: one starts before the other has ended.
fn mark_parallel_siblings(nodes: &mut [Node], siblings: &[NodeId]) {
    let spans: Vec<NodeId> = siblings
        .iter()
        .copied()
        .filter(|s| !nodes[s.0].is_placeholder())
        .collect();
    if spans.len() < 2 {
        return;
    }
    // Forward: overlaps an earlier sibling iff it starts before the latest end so far.
    let mut latest_end = 0;
    for (k, s) in spans.iter().enumerate() {
        let node = &mut nodes[s.0];
        if k > 0 && node.adjusted_start_unix_nano < latest_end {
            node.parallel = true;
        }
        latest_end = latest_end.max(node.adjusted_end_unix_nano);
    }
    // Backward: overlaps a later sibling iff the next one (the earliest-starting of the
    // later ones) starts before this one ends.
    for pair in spans.windows(2) {
        if nodes[pair[1].0].adjusted_start_unix_nano < nodes[pair[0].0].adjusted_end_unix_nano {
            nodes[pair[0].0].parallel = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{Resource, Status, StatusCode};

    const MS: u64 = 1_000_000;
    const IMS: i64 = MS as i64;

    fn trace_id() -> TraceId {
        TraceId([7; 16])
    }

    fn sid(n: u64) -> SpanId {
        SpanId(n.to_be_bytes())
    }

    fn span(
        id: u64,
        parent: Option<u64>,
        service: &str,
        kind: SpanKind,
        start_ms: u64,
        end_ms: u64,
    ) -> Span {
        Span {
            trace_id: trace_id(),
            span_id: sid(id),
            parent_span_id: parent.map(sid),
            trace_state: String::new(),
            name: format!("op{id}"),
            kind,
            start_unix_nano: 1_000_000 * MS + start_ms * MS,
            end_unix_nano: 1_000_000 * MS + end_ms * MS,
            attributes: Vec::new(),
            events: Vec::new(),
            links: Vec::new(),
            status: Status::default(),
            resource: Arc::new(Resource::for_service(service)),
            scope: Default::default(),
            flags: 1,
        }
    }

    fn node(tree: &TraceTree, id: u64) -> &Node {
        tree.node(tree.node_of(sid(id)).expect("span in tree"))
    }

    fn ids(tree: &TraceTree, nodes: &[NodeId]) -> Vec<SpanId> {
        nodes.iter().map(|&n| tree.node_span_id(n)).collect()
    }

    fn shifted(ms: u64) -> u64 {
        1_000_000 * MS + ms * MS
    }

    #[test]
    fn single_root_with_children() {
        let tree = TraceTree::build(
            vec![
                span(2, Some(1), "a", SpanKind::Internal, 1, 3),
                span(1, None, "a", SpanKind::Server, 0, 10),
                span(3, Some(2), "b", SpanKind::Server, 2, 3),
            ],
            SkewMode::Adjust,
        );
        assert_eq!(ids(&tree, tree.roots()), vec![sid(1)]);
        assert_eq!(tree.depth(), 3);
        assert_eq!(tree.span_count(), 3);
        assert_eq!(tree.services(), ["a", "b"]);
        assert_eq!(tree.orphan_count(), 0);
        assert!(tree.warnings().is_empty());
        let order: Vec<(SpanId, usize)> = tree
            .pre_order()
            .map(|(n, d)| (tree.node_span_id(n), d))
            .collect();
        assert_eq!(order, vec![(sid(1), 0), (sid(2), 1), (sid(3), 2)]);
        assert_eq!(tree.start_unix_nano(), shifted(0));
        assert_eq!(tree.duration_nanos(), 10 * MS);
    }

    #[test]
    fn several_roots_are_kept_in_time_order() {
        let tree = TraceTree::build(
            vec![
                span(1, None, "a", SpanKind::Internal, 5, 6),
                span(2, None, "b", SpanKind::Internal, 0, 1),
                span(3, Some(sid(0).to_u64()), "c", SpanKind::Internal, 2, 3),
            ],
            SkewMode::Adjust,
        );
        // An all-zero parent id means "no parent", not a missing span.
        assert_eq!(ids(&tree, tree.roots()), vec![sid(2), sid(3), sid(1)]);
        assert_eq!(tree.orphan_count(), 0);
    }

    #[test]
    fn orphans_hang_under_one_placeholder_per_missing_parent() {
        let tree = TraceTree::build(
            vec![
                span(1, None, "a", SpanKind::Producer, 0, 1),
                span(2, Some(99), "b", SpanKind::Consumer, 3, 4),
                span(3, Some(99), "c", SpanKind::Consumer, 2, 5),
                span(4, Some(98), "d", SpanKind::Consumer, 6, 7),
                span(5, Some(2), "b", SpanKind::Internal, 3, 4),
            ],
            SkewMode::Adjust,
        );
        assert_eq!(tree.orphan_count(), 3);
        assert_eq!(tree.missing_span_ids(), vec![sid(99), sid(98)]);
        assert_eq!(tree.roots().len(), 3);
        let placeholder = tree.roots()[1];
        let node = tree.node(placeholder);
        assert_eq!(node.kind, NodeKind::Missing(sid(99)));
        assert!(tree.span(placeholder).is_none());
        assert_eq!(ids(&tree, &node.children), vec![sid(3), sid(2)]);
        assert_eq!(node.adjusted_start_unix_nano, shifted(2));
        assert_eq!(node.adjusted_end_unix_nano, shifted(5));
        assert!(!node.parallel);
        // A placeholder's children are not skew-adjusted: their real parent is unknown.
        assert!(tree.adjustments().is_empty());
        assert_eq!(tree.span_count(), 5);
        assert_eq!(node_depth(&tree, 5), 2);
    }

    fn node_depth(tree: &TraceTree, id: u64) -> usize {
        node(tree, id).depth
    }

    #[test]
    fn duplicate_ids_keep_the_last_copy_and_warn() {
        let mut last = span(2, Some(1), "a", SpanKind::Internal, 1, 2);
        last.name = "second".into();
        let tree = TraceTree::build(
            vec![
                span(1, None, "a", SpanKind::Internal, 0, 5),
                span(2, Some(1), "a", SpanKind::Internal, 1, 2),
                span(2, Some(1), "a", SpanKind::Internal, 1, 2),
                last,
            ],
            SkewMode::Adjust,
        );
        assert_eq!(tree.span_count(), 2);
        assert_eq!(tree.duplicate_count(), 2);
        assert_eq!(
            tree.warnings(),
            [TreeWarning::DuplicateSpanId {
                span_id: sid(2),
                copies_dropped: 2
            }]
        );
        assert_eq!(
            tree.span(tree.node_of(sid(2)).unwrap()).unwrap().name,
            "second"
        );
        assert!(tree.warnings()[0].to_string().contains("3 times"));
    }

    #[test]
    fn parent_cycles_are_cut_at_the_earliest_span() {
        let tree = TraceTree::build(
            vec![
                span(1, Some(3), "a", SpanKind::Internal, 5, 6),
                span(2, Some(1), "a", SpanKind::Internal, 1, 2),
                span(3, Some(2), "a", SpanKind::Internal, 3, 4),
                span(4, Some(3), "a", SpanKind::Internal, 3, 4),
                span(5, Some(5), "b", SpanKind::Internal, 0, 1),
            ],
            SkewMode::Adjust,
        );
        let cycles: Vec<&TreeWarning> = tree.warnings().iter().collect();
        assert_eq!(cycles.len(), 2);
        assert!(cycles.iter().any(|w| matches!(
            w,
            TreeWarning::ParentCycle { span_ids, detached } if span_ids.len() == 3 && *detached == sid(2)
        )));
        assert!(cycles.iter().any(|w| matches!(
            w,
            TreeWarning::ParentCycle { span_ids, detached } if span_ids == &[sid(5)] && *detached == sid(5)
        )));
        assert_eq!(ids(&tree, tree.roots()), vec![sid(5), sid(2)]);
        assert_eq!(tree.pre_order().count(), 5);
        assert_eq!(node_depth(&tree, 1), 2);
        assert_eq!(node_depth(&tree, 4), 2);
    }

    #[test]
    fn server_that_sticks_out_of_its_client_is_centred() {
        // The server's clock runs 10ms behind: it appears to start before the call.
        let tree = TraceTree::build(
            vec![
                span(1, None, "fpv-ops", SpanKind::Client, 100, 120),
                span(2, Some(1), "ares", SpanKind::Server, 95, 105),
            ],
            SkewMode::Adjust,
        );
        let server = node(&tree, 2);
        assert_eq!(server.skew_adjustment_nanos, 10 * IMS);
        assert_eq!(server.adjusted_start_unix_nano, shifted(105));
        assert_eq!(server.adjusted_end_unix_nano, shifted(115));
        assert_eq!(
            tree.spans()[1].start_unix_nano,
            shifted(95),
            "recorded times untouched"
        );
        assert_eq!(
            tree.adjustments(),
            vec![SkewAdjustment {
                node: tree.node_of(sid(2)).unwrap(),
                span_id: sid(2),
                service: "ares".into(),
                delta_nanos: 10 * IMS
            }]
        );
    }

    #[test]
    fn server_longer_than_its_client_is_aligned_to_the_start() {
        let tree = TraceTree::build(
            vec![
                span(1, None, "a", SpanKind::Client, 100, 110),
                span(2, Some(1), "b", SpanKind::Server, 150, 170),
            ],
            SkewMode::Adjust,
        );
        assert_eq!(node(&tree, 2).skew_adjustment_nanos, -50 * IMS);
        assert_eq!(node(&tree, 2).adjusted_start_unix_nano, shifted(100));
    }

    #[test]
    fn server_inside_its_client_is_left_alone() {
        let tree = TraceTree::build(
            vec![
                span(1, None, "a", SpanKind::Client, 100, 110),
                span(2, Some(1), "b", SpanKind::Server, 101, 109),
            ],
            SkewMode::Adjust,
        );
        assert_eq!(node(&tree, 2).skew_adjustment_nanos, 0);
    }

    #[test]
    fn consumer_before_its_producer_is_moved_to_the_send_but_may_end_later() {
        let tree = TraceTree::build(
            vec![
                span(1, None, "fpv-ops", SpanKind::Producer, 100, 101),
                span(2, Some(1), "striker", SpanKind::Consumer, 97, 150),
                span(3, Some(1), "drone-cmd", SpanKind::Consumer, 102, 200),
            ],
            SkewMode::Adjust,
        );
        let early = node(&tree, 2);
        assert_eq!(early.skew_adjustment_nanos, 3 * IMS);
        assert_eq!(early.adjusted_start_unix_nano, shifted(100));
        assert_eq!(early.adjusted_end_unix_nano, shifted(153));
        assert_eq!(
            node(&tree, 3).skew_adjustment_nanos,
            0,
            "ending late is normal"
        );
    }

    #[test]
    fn spans_of_one_service_are_never_adjusted_against_each_other() {
        let tree = TraceTree::build(
            vec![
                span(1, None, "a", SpanKind::Client, 100, 110),
                span(2, Some(1), "a", SpanKind::Server, 90, 95),
                span(3, Some(1), "a", SpanKind::Consumer, 80, 85),
            ],
            SkewMode::Adjust,
        );
        assert!(tree.adjustments().is_empty());
        assert_eq!(node(&tree, 2).adjusted_start_unix_nano, shifted(90));
    }

    #[test]
    fn off_mode_shows_recorded_times() {
        let tree = TraceTree::build(
            vec![
                span(1, None, "a", SpanKind::Client, 100, 120),
                span(2, Some(1), "b", SpanKind::Server, 95, 105),
                span(3, Some(2), "b", SpanKind::Internal, 96, 97),
            ],
            SkewMode::Off,
        );
        assert_eq!(tree.skew_mode(), SkewMode::Off);
        for n in tree.nodes() {
            assert_eq!(n.skew_adjustment_nanos, 0);
            assert_eq!(n.total_shift_nanos, 0);
        }
        assert_eq!(node(&tree, 2).adjusted_start_unix_nano, shifted(95));
        assert!(tree.adjustments().is_empty());
    }

    #[test]
    fn a_shift_carries_the_subtree_of_the_same_service() {
        let tree = TraceTree::build(
            vec![
                span(1, None, "a", SpanKind::Client, 100, 120),
                span(2, Some(1), "b", SpanKind::Server, 95, 105),
                span(3, Some(2), "b", SpanKind::Client, 96, 104),
                // Back in service a, whose clock needs no correction: recorded 111..113
                // fits inside b's adjusted call (106..114), so it stays put.
                span(4, Some(3), "a", SpanKind::Server, 111, 113),
                span(5, Some(3), "c", SpanKind::Server, 50, 52),
            ],
            SkewMode::Adjust,
        );
        let child = node(&tree, 3);
        assert_eq!(child.skew_adjustment_nanos, 0);
        assert_eq!(child.total_shift_nanos, 10 * IMS);
        assert_eq!(child.adjusted_start_unix_nano, shifted(106));
        assert_eq!(child.adjusted_end_unix_nano, shifted(114));
        assert_eq!(node(&tree, 4).total_shift_nanos, 0);
        // c is judged against b's adjusted times: centred in 106..114.
        assert_eq!(node(&tree, 5).adjusted_start_unix_nano, shifted(109));
        let services: Vec<(String, i64)> = tree
            .adjustments()
            .into_iter()
            .map(|a| (a.service, a.delta_nanos))
            .collect();
        assert_eq!(
            services,
            vec![("b".into(), 10 * IMS), ("c".into(), 59 * IMS)]
        );
    }

    #[test]
    fn overlapping_siblings_are_parallel() {
        let tree = TraceTree::build(
            vec![
                span(1, None, "a", SpanKind::Producer, 0, 100),
                span(2, Some(1), "b", SpanKind::Consumer, 10, 20),
                span(3, Some(1), "c", SpanKind::Consumer, 15, 30),
                span(4, Some(1), "d", SpanKind::Consumer, 40, 50),
                span(5, Some(1), "e", SpanKind::Consumer, 60, 90),
                span(6, Some(1), "f", SpanKind::Consumer, 61, 62),
                span(7, Some(1), "g", SpanKind::Consumer, 70, 71),
            ],
            SkewMode::Adjust,
        );
        let parallel: Vec<bool> = (1..=7).map(|i| node(&tree, i).parallel).collect();
        assert_eq!(parallel, [false, true, true, false, true, true, true]);
        assert!(tree.is_parallel(tree.node_of(sid(7)).unwrap()));
    }

    #[test]
    fn children_are_ordered_by_start_then_span_id() {
        let tree = TraceTree::build(
            vec![
                span(1, None, "a", SpanKind::Internal, 0, 100),
                span(9, Some(1), "a", SpanKind::Internal, 30, 40),
                span(4, Some(1), "a", SpanKind::Internal, 10, 20),
                span(6, Some(1), "a", SpanKind::Internal, 10, 12),
                span(5, Some(1), "a", SpanKind::Internal, 10, 11),
            ],
            SkewMode::Adjust,
        );
        let root = tree.roots()[0];
        assert_eq!(
            ids(&tree, tree.children(root)),
            vec![sid(4), sid(5), sid(6), sid(9)]
        );
        assert!(tree.is_last_sibling(tree.node_of(sid(9)).unwrap()));
        assert!(!tree.is_last_sibling(tree.node_of(sid(4)).unwrap()));
    }

    #[test]
    fn counts_errors_and_services() {
        let mut failed = span(2, Some(1), "b", SpanKind::Server, 1, 2);
        failed.status = Status {
            code: StatusCode::Error,
            message: "boom".into(),
        };
        let tree = TraceTree::build(
            vec![span(1, None, "a", SpanKind::Client, 0, 3), failed],
            SkewMode::Adjust,
        );
        assert_eq!(tree.error_count(), 1);
        assert_eq!(tree.service_count(), 2);
        assert_eq!(tree.trace_id(), Some(trace_id()));
    }

    #[test]
    fn empty_trace() {
        let tree = TraceTree::build(Vec::new(), SkewMode::Adjust);
        assert!(tree.is_empty());
        assert_eq!(tree.depth(), 0);
        assert_eq!(tree.pre_order().count(), 0);
        assert_eq!(tree.trace_id(), None);
    }

    #[test]
    fn a_fifty_thousand_deep_chain_does_not_overflow_the_stack() {
        const N: u64 = 50_000;
        // Alternating services, each child recorded as starting before its parent, so
        // every level needs a clock correction.
        let spans: Vec<Span> = (1..=N)
            .rev()
            .map(|i| {
                let service = if i % 2 == 0 { "even" } else { "odd" };
                let parent = (i > 1).then(|| i - 1);
                span(i, parent, service, SpanKind::Consumer, N - i, 2 * N - i)
            })
            .collect();
        let tree = TraceTree::build(spans, SkewMode::Adjust);
        assert_eq!(tree.depth(), N as usize);
        assert_eq!(tree.roots().len(), 1);
        let (last, depth) = tree.pre_order().last().unwrap();
        assert_eq!(depth, N as usize - 1);
        assert_eq!(tree.node_span_id(last), sid(N));
        assert_eq!(tree.adjustments().len(), N as usize - 1);
        assert_eq!(tree.adjusted_start(last), tree.start_unix_nano());

        // A chain closed into a loop must be cut, not walked forever.
        let mut looped: Vec<Span> = (1..=N)
            .map(|i| {
                span(
                    i,
                    Some(if i == 1 { N } else { i - 1 }),
                    "a",
                    SpanKind::Internal,
                    i,
                    i + 1,
                )
            })
            .collect();
        looped.swap(0, 7);
        let tree = TraceTree::build(looped, SkewMode::Adjust);
        assert_eq!(tree.warnings().len(), 1);
        assert_eq!(tree.depth(), N as usize);
    }
}
