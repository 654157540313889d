//! Comparing two traces: which spans were inserted, deleted or changed, how each
//! aligned span's duration moved, and where the two timelines first diverge.
//!
//! Spans are aligned top-down: the children of two aligned spans are matched by
//! (service, operation) and occurrence (the first `db/query` under a parent with the
//! first, the second with the second, in timeline order), so the ancestry path is part
//! of every match. Children left over on both sides with the same service and kind are
//! taken to be one span renamed; what is still left was deleted or inserted, reported
//! once for the whole subtree.
//!
//! The first divergence follows from that alignment: on each timeline, the first event
//! without an equal on the other side (a span's start, event or end, where the span was
//! deleted, inserted or changed in what that event shows). Concurrent branches that
//! merely ran in another order do not diverge.

use std::collections::{BTreeMap, VecDeque};

use clew_model::Span;
use clew_model::tree::NodeKind;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::signature::{self, SignatureOptions};
use crate::timeline::{Divergence, Timeline};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EditOp {
    /// Only in the actual trace.
    Inserted,
    /// Only in the expected trace.
    Deleted,
    /// In both, with different name, kind, status, chosen attributes or events.
    Changed,
}

/// What a span was, for an edit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpanSummary {
    pub service: String,
    pub name: String,
    pub kind: String,
    pub status: String,
    pub duration_us: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChange {
    /// `name`, `kind`, `status`, `events` or `attr.KEY`.
    pub field: String,
    pub expected: String,
    pub actual: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Edit {
    pub op: EditOp,
    /// `service/operation` segments from the root, `[n]` marking the n-th (from 0)
    /// same-named sibling; long paths keep their first and last segments.
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<SpanSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual: Option<SpanSummary>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<FieldChange>,
    /// Spans in the inserted or deleted subtree, the root included; 1 for a change.
    pub subtree_spans: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DurationDelta {
    pub path: String,
    pub expected_us: u64,
    pub actual_us: u64,
    pub delta_us: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceDiff {
    pub expected_signature: String,
    pub actual_signature: String,
    pub edits: Vec<Edit>,
    /// One entry per aligned span pair, in the expected trace's order.
    pub durations: Vec<DurationDelta>,
    pub first_divergence: Option<Divergence>,
}

impl TraceDiff {
    /// No edits and no timeline divergence (durations may still differ).
    pub fn is_empty(&self) -> bool {
        self.edits.is_empty() && self.first_divergence.is_none()
    }

    /// The `n` aligned spans whose duration moved most, largest first.
    pub fn largest_duration_changes(&self, n: usize) -> Vec<&DurationDelta> {
        let mut all: Vec<&DurationDelta> =
            self.durations.iter().filter(|d| d.delta_us != 0).collect();
        all.sort_by(|a, b| {
            b.delta_us
                .unsigned_abs()
                .cmp(&a.delta_us.unsigned_abs())
                .then(a.path.cmp(&b.path))
        });
        all.truncate(n);
        all
    }
}

/// Diffs two traces with the default signature options.
pub fn diff(expected: &[Span], actual: &[Span]) -> TraceDiff {
    diff_with(expected, actual, &SignatureOptions::default())
}

pub fn diff_with(expected: &[Span], actual: &[Span], options: &SignatureOptions) -> TraceDiff {
    let a = Timeline::build_with(expected.to_vec(), options);
    let b = Timeline::build_with(actual.to_vec(), options);
    diff_timelines(&a, &b)
}

/// Diffs two built timelines; chosen attributes are the expected timeline's.
pub fn diff_timelines(expected: &Timeline, actual: &Timeline) -> TraceDiff {
    let options = expected.options();
    let ta = Side::new(expected);
    let tb = Side::new(actual);
    let mut paths = Paths::default();
    let mut edits = Vec::new();
    let mut durations = Vec::new();

    // (expected node, actual node, path entry); `None` nodes are the virtual root.
    let mut alignment = Alignment::new(&ta, &tb);
    let mut stack: Vec<(Option<usize>, Option<usize>, Option<usize>)> = vec![(None, None, None)];
    while let Some((na, nb, entry)) = stack.pop() {
        let kids_a = ta.children(na);
        let kids_b = tb.children(nb);
        let matching = match_children(&ta, &kids_a, &tb, &kids_b);
        let mut next = Vec::new();
        for m in matching {
            match m {
                Match::Pair {
                    a,
                    b,
                    occurrence,
                    renamed,
                } => {
                    let e = paths.push(entry, ta.segment(a, occurrence));
                    let changes = compare(&ta, a, &tb, b, renamed, options);
                    alignment.pair(a, b, &changes);
                    if !changes.is_empty() {
                        edits.push(Edit {
                            op: EditOp::Changed,
                            path: paths.render(e),
                            expected: ta.summary(a),
                            actual: tb.summary(b),
                            changes,
                            subtree_spans: 1,
                        });
                    }
                    if let (Some(da), Some(db)) = (ta.duration_us(a), tb.duration_us(b)) {
                        durations.push(DurationDelta {
                            path: paths.render(e),
                            expected_us: da,
                            actual_us: db,
                            delta_us: db as i64 - da as i64,
                        });
                    }
                    next.push((Some(a), Some(b), Some(e)));
                }
                Match::OnlyExpected { a, occurrence } => {
                    let e = paths.push(entry, ta.segment(a, occurrence));
                    edits.push(Edit {
                        op: EditOp::Deleted,
                        path: paths.render(e),
                        expected: ta.summary(a),
                        actual: None,
                        changes: Vec::new(),
                        subtree_spans: ta.subtree_spans[a],
                    });
                }
                Match::OnlyActual { b, occurrence } => {
                    let e = paths.push(entry, tb.segment(b, occurrence));
                    edits.push(Edit {
                        op: EditOp::Inserted,
                        path: paths.render(e),
                        expected: None,
                        actual: tb.summary(b),
                        changes: Vec::new(),
                        subtree_spans: tb.subtree_spans[b],
                    });
                }
            }
        }
        // Reversed so the walk visits children in order (depth-first, like a tree
        // is read), keeping the edit list in reading order.
        stack.extend(next.into_iter().rev());
    }

    TraceDiff {
        expected_signature: expected.trace_signature(),
        actual_signature: actual.trace_signature(),
        edits,
        durations,
        first_divergence: alignment.first_divergence(&ta, &tb),
    }
}

/// Which spans of the two sides were paired, and what about each pair differs.
struct Alignment {
    counterpart_a: Vec<Option<usize>>,
    counterpart_b: Vec<Option<usize>>,
    /// Per node of either side: its start (name, kind, chosen attributes) differs, its
    /// end (status) differs.
    start_differs: Vec<bool>,
    end_differs: Vec<bool>,
}

impl Alignment {
    fn new(ta: &Side<'_>, tb: &Side<'_>) -> Alignment {
        let (na, nb) = (ta.order.len(), tb.order.len());
        Alignment {
            counterpart_a: vec![None; na],
            counterpart_b: vec![None; nb],
            start_differs: vec![false; na],
            end_differs: vec![false; na],
        }
    }

    fn pair(&mut self, a: usize, b: usize, changes: &[FieldChange]) {
        self.counterpart_a[a] = Some(b);
        self.counterpart_b[b] = Some(a);
        for change in changes {
            match change.field.as_str() {
                "status" => self.end_differs[a] = true,
                "events" => {}
                _ => self.start_differs[a] = true,
            }
        }
    }

    fn first_divergence(&self, ta: &Side<'_>, tb: &Side<'_>) -> Option<Divergence> {
        let expected = first_unmatched(ta, tb, &self.counterpart_a, |a, _| {
            (self.start_differs[a], self.end_differs[a])
        });
        let actual = first_unmatched(tb, ta, &self.counterpart_b, |_, a| {
            (self.start_differs[a], self.end_differs[a])
        });
        if expected.is_none() && actual.is_none() {
            // Every span and event paired: if the signatures still differ, only link
            // targets do, and the plain timeline order shows where.
            return if ta.timeline.trace_signature() == tb.timeline.trace_signature() {
                None
            } else {
                ta.timeline.first_divergence(tb.timeline)
            };
        }
        let label = |side: &Side<'_>, at: Option<usize>| {
            at.and_then(|i| side.timeline.event(i))
                .map(|e| e.label.clone())
        };
        Some(Divergence {
            index: expected.unwrap_or(ta.timeline.len()),
            expected: label(ta, expected),
            actual: label(tb, actual),
            actual_index: Some(actual.unwrap_or(tb.timeline.len())),
        })
    }
}

/// The index of the first event on `this` side's timeline with no equal on the other:
/// its span has no counterpart, or differs in what the event shows. `differs(this node,
/// expected-side node)` says whether a pair's start and end differ.
fn first_unmatched(
    this: &Side<'_>,
    other: &Side<'_>,
    counterpart: &[Option<usize>],
    differs: impl Fn(usize, usize) -> (bool, bool),
) -> Option<usize> {
    this.timeline.events().iter().position(|event| {
        let node = event.span_index;
        let Some(paired) = counterpart[node] else {
            return true;
        };
        let (start, end) = differs(node, paired);
        match event.event_index {
            _ if event.kind.is_start() => start,
            None => end,
            Some(index) => {
                // The n-th event of a span must be the n-th of its counterpart, and all
                // before it must agree too.
                let (Some(ours), Some(theirs)) = (this.span(node), other.span(paired)) else {
                    return true;
                };
                let our_order = signature::ordered_events(ours);
                let their_order = signature::ordered_events(theirs);
                let rank = our_order.iter().position(|&e| e == index).unwrap_or(0);
                (0..=rank).any(|r| {
                    their_order.get(r).map(|&e| &theirs.events[e].name)
                        != Some(&ours.events[our_order[r]].name)
                })
            }
        }
    })
}

/// One trace's tree, with children in timeline order.
struct Side<'t> {
    timeline: &'t Timeline,
    order: Vec<usize>,
    subtree_spans: Vec<usize>,
}

impl<'t> Side<'t> {
    fn new(timeline: &'t Timeline) -> Side<'t> {
        let tree = timeline.tree();
        let nodes = tree.nodes();
        let n = timeline.spans().len();
        let mut order = vec![usize::MAX; nodes.len()];
        for (i, slot) in order.iter_mut().enumerate().take(n) {
            *slot = timeline.span_event_range(i).0;
        }
        for i in n..nodes.len() {
            order[i] = nodes[i]
                .children
                .iter()
                .map(|c| order[c.index()])
                .min()
                .unwrap_or(usize::MAX);
        }
        let mut subtree_spans = vec![0usize; nodes.len()];
        let pre: Vec<usize> = tree.pre_order().map(|(id, _)| id.index()).collect();
        for &i in pre.iter().rev() {
            let own = usize::from(i < n);
            subtree_spans[i] = own
                + nodes[i]
                    .children
                    .iter()
                    .map(|c| subtree_spans[c.index()])
                    .sum::<usize>();
        }
        Side {
            timeline,
            order,
            subtree_spans,
        }
    }

    fn children(&self, node: Option<usize>) -> Vec<usize> {
        let tree = self.timeline.tree();
        let mut kids: Vec<usize> = match node {
            Some(n) => tree.nodes()[n].children.iter().map(|c| c.index()).collect(),
            None => tree.roots().iter().map(|r| r.index()).collect(),
        };
        kids.sort_by_key(|&k| self.order[k]);
        kids
    }

    fn span(&self, node: usize) -> Option<&'t Span> {
        match self.timeline.tree().nodes()[node].kind {
            NodeKind::Span(i) => Some(&self.timeline.spans()[i]),
            NodeKind::Missing(_) => None,
        }
    }

    fn key(&self, node: usize) -> (&'t str, &'t str) {
        self.span(node)
            .map_or(("", ""), |s| (s.service_name(), s.name.as_str()))
    }

    fn segment(&self, node: usize, occurrence: usize) -> String {
        let base = match self.span(node) {
            Some(s) => format!("{}/{}", s.service_name(), s.name),
            None => "(missing parent)".to_string(),
        };
        if occurrence == 0 {
            base
        } else {
            format!("{base}[{occurrence}]")
        }
    }

    fn duration_us(&self, node: usize) -> Option<u64> {
        self.span(node)?;
        Some(self.timeline.tree().nodes()[node].adjusted_duration_nanos() / 1000)
    }

    fn summary(&self, node: usize) -> Option<SpanSummary> {
        let s = self.span(node)?;
        Some(SpanSummary {
            service: s.service_name().to_string(),
            name: s.name.clone(),
            kind: s.kind.as_str().to_string(),
            status: signature::status_str(s.status.code).to_string(),
            duration_us: self.duration_us(node).unwrap_or(0),
        })
    }
}

enum Match {
    Pair {
        a: usize,
        b: usize,
        occurrence: usize,
        renamed: bool,
    },
    OnlyExpected {
        a: usize,
        occurrence: usize,
    },
    OnlyActual {
        b: usize,
        occurrence: usize,
    },
}

fn match_children(ta: &Side<'_>, kids_a: &[usize], tb: &Side<'_>, kids_b: &[usize]) -> Vec<Match> {
    let mut by_key: BTreeMap<(&str, &str), VecDeque<(usize, usize)>> = BTreeMap::new();
    for &a in kids_a {
        let queue = by_key.entry(ta.key(a)).or_default();
        let occurrence = queue.len();
        queue.push_back((a, occurrence));
    }
    let mut out = Vec::new();
    let mut matched_a = vec![false; kids_a.len()];
    let position_a: BTreeMap<usize, usize> =
        kids_a.iter().enumerate().map(|(p, &a)| (a, p)).collect();
    let mut unmatched_b: Vec<(usize, usize)> = Vec::new();
    let mut seen_b: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for &b in kids_b {
        let key = tb.key(b);
        let occurrence = {
            let c = seen_b.entry(key).or_default();
            *c += 1;
            *c - 1
        };
        match by_key.get_mut(&key).and_then(VecDeque::pop_front) {
            Some((a, occ_a)) => {
                matched_a[position_a[&a]] = true;
                out.push(Match::Pair {
                    a,
                    b,
                    occurrence: occ_a,
                    renamed: false,
                });
            }
            None => unmatched_b.push((b, occurrence)),
        }
    }
    let mut left_a: Vec<(usize, usize)> = Vec::new();
    let mut occ_a: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for (p, &a) in kids_a.iter().enumerate() {
        let c = occ_a.entry(ta.key(a)).or_default();
        if !matched_a[p] {
            left_a.push((a, *c));
        }
        *c += 1;
    }
    for (b, occ_b) in unmatched_b {
        let partner = tb.span(b).and_then(|sb| {
            left_a.iter().position(|&(a, _)| {
                ta.span(a)
                    .is_some_and(|sa| sa.service_name() == sb.service_name() && sa.kind == sb.kind)
            })
        });
        match partner {
            Some(p) => {
                let (a, occurrence) = left_a.remove(p);
                out.push(Match::Pair {
                    a,
                    b,
                    occurrence,
                    renamed: true,
                });
            }
            None => out.push(Match::OnlyActual {
                b,
                occurrence: occ_b,
            }),
        }
    }
    out.extend(
        left_a
            .into_iter()
            .map(|(a, occurrence)| Match::OnlyExpected { a, occurrence }),
    );
    out
}

fn compare(
    ta: &Side<'_>,
    a: usize,
    tb: &Side<'_>,
    b: usize,
    renamed: bool,
    options: &SignatureOptions,
) -> Vec<FieldChange> {
    let (Some(sa), Some(sb)) = (ta.span(a), tb.span(b)) else {
        return Vec::new();
    };
    let mut changes = Vec::new();
    let mut field = |field: &str, expected: String, actual: String| {
        if expected != actual {
            changes.push(FieldChange {
                field: field.to_string(),
                expected,
                actual,
            });
        }
    };
    if renamed {
        field("name", sa.name.clone(), sb.name.clone());
    }
    field("kind", sa.kind.as_str().into(), sb.kind.as_str().into());
    field(
        "status",
        signature::status_str(sa.status.code).into(),
        signature::status_str(sb.status.code).into(),
    );
    let attrs_a = options.chosen(&sa.attributes);
    let attrs_b = options.chosen(&sb.attributes);
    for key in &options.attributes {
        let show = |v: Option<&Value>| v.map_or_else(|| "(absent)".to_string(), Value::to_string);
        field(
            &format!("attr.{key}"),
            show(attrs_a.get(key)),
            show(attrs_b.get(key)),
        );
    }
    let events = |s: &Span| {
        signature::ordered_events(s)
            .into_iter()
            .map(|e| s.events[e].name.clone())
            .collect::<Vec<_>>()
            .join(", ")
    };
    field("events", events(sa), events(sb));
    changes
}

/// Path entries: each a parent entry and a segment, rendered on demand so a 50,000-deep
/// trace does not build 50,000 ever-longer strings. Each entry remembers its depth and
/// its first two ancestors, so rendering walks at most [`PATH_TAIL`] steps.
#[derive(Default)]
struct Paths {
    entries: Vec<PathEntry>,
}

struct PathEntry {
    parent: Option<usize>,
    segment: String,
    depth: usize,
    head: [usize; PATH_HEAD],
}

const PATH_HEAD: usize = 2;
const PATH_TAIL: usize = 8;

impl Paths {
    fn push(&mut self, parent: Option<usize>, segment: String) -> usize {
        let id = self.entries.len();
        let (depth, head) = match parent {
            None => (0, [id; PATH_HEAD]),
            Some(p) => {
                let pe = &self.entries[p];
                let mut head = pe.head;
                if pe.depth + 1 < PATH_HEAD {
                    head[pe.depth + 1] = id;
                }
                (pe.depth + 1, head)
            }
        };
        self.entries.push(PathEntry {
            parent,
            segment,
            depth,
            head,
        });
        id
    }

    fn render(&self, entry: usize) -> String {
        let segments = self.entries[entry].depth + 1;
        let short = segments <= PATH_HEAD + PATH_TAIL;
        let keep = if short { segments } else { PATH_TAIL };
        let mut tail: Vec<&str> = Vec::with_capacity(keep);
        let mut at = Some(entry);
        while let Some(e) = at.filter(|_| tail.len() < keep) {
            tail.push(&self.entries[e].segment);
            at = self.entries[e].parent;
        }
        tail.reverse();
        if short {
            return tail.join(" > ");
        }
        let head: Vec<&str> = self.entries[entry]
            .head
            .iter()
            .map(|&h| self.entries[h].segment.as_str())
            .collect();
        format!("{} > … > {}", head.join(" > "), tail.join(" > "))
    }
}
