//! Drawing a [`TraceTree`] as text, the way `clew trace show` prints it.
//!
//! The layout follows the hand-drawn trace of the drone-intercept seed document: spans
//! numbered in reading order, box-drawing branches, `service: name (KIND)`, the parent
//! named by number, the channel a message went through, events as numbered sub-items
//! and `[PARALLEL]` on overlapping siblings. On top of that it says what the document
//! could not: where each span sits in time, which parents never arrived, and which
//! clocks were corrected.
//!
//! Every string that came from a span is escaped before it is printed, so a hostile or
//! broken attribute can neither inject terminal escape codes nor break the tree apart.

use std::borrow::Cow;
use std::time::{Duration, UNIX_EPOCH};

use clew_model::tree::{NodeId, SkewMode, TraceTree};
use clew_model::{Event, KeyValue, Span, SpanKind, StatusCode};

/// How much to show and whether to colour it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderOptions {
    /// ANSI colours; the caller decides (a terminal on stdout, no `--json`).
    pub color: bool,
    /// `key: value` lines for span, event and link attributes.
    pub show_attributes: bool,
    pub show_events: bool,
    /// Longer attribute values are cut and end in `…`; 0 means no limit.
    pub max_attr_value_len: usize,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            color: false,
            show_attributes: true,
            show_events: true,
            max_attr_value_len: 120,
        }
    }
}

const RULE_WIDTH: usize = 79;

/// Attributes already shown as `Publishes to:` / `Receives from:`; printing them again
/// would only add noise.
const DESTINATION_KEYS: [&str; 2] = ["messaging.destination.name", "messaging.destination"];

/// Beyond this depth branches stop moving right: a 50,000-deep chain would otherwise
/// print lines hundreds of kilobytes wide. Deeper spans carry a `(depth N)` note.
const MAX_DRAWN_DEPTH: usize = 40;

/// The trace as a tree with a header and a footer; ends with a newline.
pub fn render_trace(tree: &TraceTree, opts: &RenderOptions) -> String {
    let paint = Paint { on: opts.color };
    let mut out = String::new();
    if tree.is_empty() {
        out.push_str("Trace has no spans.\n");
        return out;
    }
    let labels = number_spans(tree);
    header(&mut out, tree, &paint);
    Body {
        tree,
        opts,
        paint: &paint,
        labels: &labels,
        out: &mut out,
    }
    .draw();
    footer(&mut out, tree, &paint);
    out
}

/// A duration for people: `850ns`, `12.3µs`, `4.1ms`, `245ms`, `1.5s`, `2m03s`.
pub fn format_duration(nanos: u64) -> String {
    if nanos == 0 {
        return "0s".to_string();
    }
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    for (scale, unit) in [(1e3, "µs"), (1e6, "ms")] {
        let value = nanos as f64 / scale;
        // Thresholds sit just below the rounding point so 99.96 never prints as 100.0.
        if value < 99.95 {
            return format!("{value:.1}{unit}");
        }
        if value < 999.5 {
            return format!("{value:.0}{unit}");
        }
    }
    let seconds = nanos as f64 / 1e9;
    if seconds < 59.95 {
        return format!("{seconds:.1}s");
    }
    let total = (nanos + 500_000_000) / 1_000_000_000;
    let (hours, minutes, secs) = (total / 3600, total / 60 % 60, total % 60);
    if hours > 0 {
        format!("{hours}h{minutes:02}m{secs:02}s")
    } else {
        format!("{minutes}m{secs:02}s")
    }
}

/// A duration with its sign always shown: `+3.2ms`, `-850ns`.
pub fn format_signed_duration(nanos: i64) -> String {
    let sign = if nanos < 0 { '-' } else { '+' };
    format!("{sign}{}", format_duration(nanos.unsigned_abs()))
}

/// `[n]` for each span in reading order, so a child can name its parent by number.
fn number_spans(tree: &TraceTree) -> Vec<Option<usize>> {
    let mut labels = vec![None; tree.nodes().len()];
    let mut next = 1;
    for (id, _) in tree.pre_order() {
        if tree.span(id).is_some() {
            labels[id.index()] = Some(next);
            next += 1;
        }
    }
    labels
}

fn header(out: &mut String, tree: &TraceTree, paint: &Paint) {
    let rule = "═".repeat(RULE_WIDTH);
    out.push_str(&rule);
    out.push('\n');
    let trace_id = tree.trace_id().map(|t| t.to_string()).unwrap_or_default();
    out.push_str(&format!("TRACE {}\n", paint.bold(&trace_id)));
    let root_spans: Vec<&Span> = tree.roots().iter().filter_map(|&r| tree.span(r)).collect();
    if let ([root], 1) = (root_spans.as_slice(), tree.roots().len()) {
        out.push_str(&format!(
            "Root: {}: {}\n",
            paint.service(root.service_name()),
            clean(&root.name)
        ));
    } else {
        let missing = tree.roots().len() - root_spans.len();
        out.push_str(&format!(
            "Roots: {} ({}, {})\n",
            tree.roots().len(),
            count(
                root_spans.len(),
                "span without a parent",
                "spans without a parent"
            ),
            count(missing, "missing parent", "missing parents"),
        ));
    }
    out.push_str(&format!(
        "Services: {} ({})\n",
        tree.service_count(),
        service_list(tree, paint)
    ));
    let start =
        humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_nanos(tree.start_unix_nano()));
    out.push_str(&format!(
        "Spans: {} · Start: {start} · Duration: {}\n",
        tree.span_count(),
        format_duration(tree.duration_nanos())
    ));
    out.push_str(&rule);
    out.push('\n');
}

fn footer(out: &mut String, tree: &TraceTree, paint: &Paint) {
    out.push_str(&"─".repeat(RULE_WIDTH));
    out.push('\n');
    let errors = format!("Errors: {}", tree.error_count());
    out.push_str(&format!(
        "Total spans: {} · Services: {} ({}) · {} · Orphans: {}\n",
        tree.span_count(),
        tree.service_count(),
        service_list(tree, paint),
        if tree.error_count() > 0 {
            paint.error(&errors)
        } else {
            errors
        },
        tree.orphan_count()
    ));
    let missing = tree.missing_span_ids();
    if !missing.is_empty() {
        let ids: Vec<String> = missing.iter().map(|id| id.to_string()).collect();
        out.push_str(&format!(
            "Missing spans: {} ({}); their children are shown under [?]\n",
            missing.len(),
            ids.join(", ")
        ));
    }
    match tree.skew_mode() {
        SkewMode::Off => out.push_str("Clock skew adjustment: off (times as recorded)\n"),
        SkewMode::Adjust => {
            let summary = skew_summary(tree, paint);
            if summary.is_empty() {
                out.push_str("Clock skew: none detected\n");
            } else {
                out.push_str(&format!("Clock skew adjusted: {summary}\n"));
            }
        }
    }
    for warning in tree.warnings() {
        out.push_str(&format!(
            "{} {}\n",
            paint.warn("Warning:"),
            clean(&warning.to_string())
        ));
    }
}

/// One entry per service: `ares +3.2ms`, or the range and count when several of its
/// spans were corrected by different amounts.
fn skew_summary(tree: &TraceTree, paint: &Paint) -> String {
    let mut per_service: Vec<(String, i64, i64, usize)> = Vec::new();
    for adjustment in tree.adjustments() {
        match per_service
            .iter_mut()
            .find(|(s, ..)| *s == adjustment.service)
        {
            Some((_, min, max, count)) => {
                *min = (*min).min(adjustment.delta_nanos);
                *max = (*max).max(adjustment.delta_nanos);
                *count += 1;
            }
            None => per_service.push((
                adjustment.service,
                adjustment.delta_nanos,
                adjustment.delta_nanos,
                1,
            )),
        }
    }
    let parts: Vec<String> = per_service
        .iter()
        .map(|(service, min, max, count)| {
            let amount = if min == max {
                format_signed_duration(*min)
            } else {
                format!(
                    "{}…{}",
                    format_signed_duration(*min),
                    format_signed_duration(*max)
                )
            };
            let spans = if *count > 1 {
                format!(" ({count} spans)")
            } else {
                String::new()
            };
            format!("{} {amount}{spans}", paint.service(service))
        })
        .collect();
    parts.join(", ")
}

fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn service_list(tree: &TraceTree, paint: &Paint) -> String {
    let names: Vec<String> = tree.services().iter().map(|s| paint.service(s)).collect();
    names.join(", ")
}

/// What a line of the tree stands for: a span (or placeholder), or one of a span's events.
#[derive(Clone, Copy)]
enum Item {
    Node(NodeId),
    Event {
        node: NodeId,
        index: usize,
        ordinal: usize,
    },
}

struct Body<'a> {
    tree: &'a TraceTree,
    opts: &'a RenderOptions,
    paint: &'a Paint,
    labels: &'a [Option<usize>],
    out: &'a mut String,
}

impl Body<'_> {
    /// Pre-order over spans and events with an explicit stack. `open[k]` says whether
    /// the item drawn at depth k still has siblings below it, i.e. whether column k
    /// carries a `│`.
    fn draw(&mut self) {
        let mut stack: Vec<(Item, usize, bool)> = Vec::new();
        let roots = self.tree.roots();
        for (k, &root) in roots.iter().enumerate().rev() {
            stack.push((Item::Node(root), 0, k + 1 == roots.len()));
        }
        let mut open: Vec<bool> = Vec::new();
        let mut first = true;
        while let Some((item, depth, last)) = stack.pop() {
            if depth == 0 && !first {
                self.out.push('\n');
            }
            first = false;
            open.truncate(depth);
            open.push(!last);
            let drawn = depth.min(MAX_DRAWN_DEPTH);
            let bars: String = open[1.min(drawn)..drawn]
                .iter()
                .map(|&o| if o { "│  " } else { "   " })
                .collect();
            let (connector, continuation) = match (depth, last) {
                (0, _) => ("", ""),
                (_, true) => ("└─ ", "   "),
                (_, false) => ("├─ ", "│  "),
            };
            let subs = match item {
                Item::Node(id) => self.sub_items(id),
                Item::Event { .. } => Vec::new(),
            };
            let detail_prefix = format!(
                "{bars}{continuation}{}",
                if subs.is_empty() { "  " } else { "│ " }
            );
            let mut line = match item {
                Item::Node(id) => self.node_line(id),
                Item::Event {
                    node,
                    index,
                    ordinal,
                } => self.event_line(node, index, ordinal),
            };
            if depth > MAX_DRAWN_DEPTH {
                line.push_str(&format!("  (depth {depth})"));
            }
            self.out.push_str(&format!("{bars}{connector}{line}\n"));
            let details = match item {
                Item::Node(id) => self.node_details(id),
                Item::Event { node, index, .. } => self.event_details(node, index),
            };
            for detail in details {
                self.out.push_str(&format!("{detail_prefix}{detail}\n"));
            }
            for (k, sub) in subs.iter().enumerate().rev() {
                stack.push((*sub, depth + 1, k + 1 == subs.len()));
            }
        }
    }

    /// Child spans and events of a node, merged in time order (an event at the same
    /// instant as a child's start comes first: it usually caused the call).
    fn sub_items(&self, id: NodeId) -> Vec<Item> {
        let children = self.tree.children(id);
        let mut events: Vec<(u64, usize)> = Vec::new();
        if self.opts.show_events
            && let Some(span) = self.tree.span(id)
        {
            let shift = self.tree.node(id).total_shift_nanos;
            events = span
                .events
                .iter()
                .enumerate()
                .map(|(i, e)| (e.time_unix_nano.saturating_add_signed(shift), i))
                .collect();
            events.sort_by_key(|&(time, i)| (time, i));
        }
        let mut items = Vec::with_capacity(children.len() + events.len());
        let (mut c, mut e) = (0, 0);
        while c < children.len() || e < events.len() {
            let take_event = e < events.len()
                && (c == children.len() || events[e].0 <= self.tree.adjusted_start(children[c]));
            if take_event {
                items.push(Item::Event {
                    node: id,
                    index: events[e].1,
                    ordinal: e + 1,
                });
                e += 1;
            } else {
                items.push(Item::Node(children[c]));
                c += 1;
            }
        }
        items
    }

    fn label(&self, id: NodeId) -> String {
        match self.labels[id.index()] {
            Some(n) => format!("[{n}]"),
            None => "[?]".to_string(),
        }
    }

    fn offset(&self, unix_nano: u64) -> String {
        let delta = i128::from(unix_nano) - i128::from(self.tree.start_unix_nano());
        format_signed_duration(i64::try_from(delta).unwrap_or(i64::MAX))
    }

    fn node_line(&self, id: NodeId) -> String {
        let p = self.paint;
        let Some(span) = self.tree.span(id) else {
            return p.warn(&format!(
                "[?] missing span {} (not received)",
                self.tree.node_span_id(id)
            ));
        };
        let node = self.tree.node(id);
        let mut line = format!(
            "{} {}: {} {}  {} {}",
            p.bold(&self.label(id)),
            p.service(span.service_name()),
            clean(&span.name),
            p.dim(&format!("({})", span.kind)),
            self.offset(node.adjusted_start_unix_nano),
            format_duration(node.adjusted_duration_nanos()),
        );
        if node.parent.is_none() {
            line.push_str(&format!("  {}", p.bold("ROOT")));
        }
        if node.parallel {
            line.push_str(&format!("  {}", p.parallel("[PARALLEL]")));
        }
        match span.status.code {
            StatusCode::Error if span.status.message.is_empty() => {
                line.push_str(&format!("  {}", p.error("✗ ERROR")));
            }
            StatusCode::Error => {
                let message = format!("✗ ERROR: {}", clean(&span.status.message));
                line.push_str(&format!("  {}", p.error(&message)));
            }
            StatusCode::Ok => line.push_str("  ✓"),
            StatusCode::Unset => {}
        }
        line
    }

    fn node_details(&self, id: NodeId) -> Vec<String> {
        let Some(span) = self.tree.span(id) else {
            return Vec::new();
        };
        let node = self.tree.node(id);
        let mut lines = Vec::new();
        match node.parent {
            Some(parent) => lines.push(format!("parent: {}", self.parent_name(parent, span))),
            None => {
                if let Some(pid) = span.parent_span_id.filter(|p| p.is_valid()) {
                    // Only a cut cycle makes a span with a parent id a root.
                    lines.push(format!("parent: {pid} (ignored: parent ids form a cycle)"));
                }
            }
        }
        let direction = match span.kind {
            SpanKind::Producer => Some("Publishes to"),
            SpanKind::Consumer => Some("Receives from"),
            _ => None,
        };
        let mut shown_destination = false;
        if let (Some(direction), Some(destination)) = (direction, span.messaging_destination()) {
            lines.push(format!("{direction}: {}", clean(destination)));
            shown_destination = true;
        }
        if node.skew_adjustment_nanos != 0 {
            lines.push(self.paint.warn(&format!(
                "clock skew adjusted {}",
                format_signed_duration(node.skew_adjustment_nanos)
            )));
        }
        if self.opts.show_attributes {
            lines.extend(
                span.attributes
                    .iter()
                    .filter(|kv| {
                        !(shown_destination && DESTINATION_KEYS.contains(&kv.key.as_str()))
                    })
                    .map(|kv| self.attribute(kv)),
            );
        }
        for link in &span.links {
            let target = match self.tree.node_of(link.span_id) {
                Some(linked) if Some(link.trace_id) == self.tree.trace_id() => {
                    let linked_span = self.tree.span(linked).expect("node_of finds spans");
                    format!(
                        "{} {}: {}",
                        self.label(linked),
                        self.paint.service(linked_span.service_name()),
                        clean(&linked_span.name)
                    )
                }
                _ => format!("trace {} span {}", link.trace_id, link.span_id),
            };
            let mut line = format!("link → {target}");
            if self.opts.show_attributes && !link.attributes.is_empty() {
                let attrs: Vec<String> = link
                    .attributes
                    .iter()
                    .map(|kv| self.attribute(kv))
                    .collect();
                line.push_str(&format!(" ({})", attrs.join(", ")));
            }
            lines.push(line);
        }
        lines
    }

    /// `[n] service KIND` across services (the seed's style: who sent it and how),
    /// `[n] name` within one service, where the operation says more than the kind.
    fn parent_name(&self, parent: NodeId, child: &Span) -> String {
        let label = self.label(parent);
        let Some(pspan) = self.tree.span(parent) else {
            return format!(
                "{label} missing span {} (not received)",
                self.tree.node_span_id(parent)
            );
        };
        let service = pspan.service_name();
        if service == child.service_name() {
            return format!("{label} {}", clean(&pspan.name));
        }
        let what = match pspan.kind {
            SpanKind::Client | SpanKind::Server | SpanKind::Producer | SpanKind::Consumer => {
                pspan.kind.to_string()
            }
            SpanKind::Internal | SpanKind::Unspecified => clean(&pspan.name).into_owned(),
        };
        format!("{label} {} {what}", self.paint.service(service))
    }

    fn event(&self, node: NodeId, index: usize) -> (&Span, &Event) {
        let span = self.tree.span(node).expect("events belong to spans");
        (span, &span.events[index])
    }

    fn event_line(&self, node: NodeId, index: usize, ordinal: usize) -> String {
        let (span, event) = self.event(node, index);
        let time = event
            .time_unix_nano
            .saturating_add_signed(self.tree.node(node).total_shift_nanos);
        let label = match self.labels[node.index()] {
            Some(n) => format!("[{n}.{ordinal}]"),
            None => format!("[?.{ordinal}]"),
        };
        format!(
            "{} {}: {} {}  {}",
            self.paint.bold(&label),
            self.paint.service(span.service_name()),
            clean(&event.name),
            self.paint.dim("(event)"),
            self.offset(time)
        )
    }

    fn event_details(&self, node: NodeId, index: usize) -> Vec<String> {
        if !self.opts.show_attributes {
            return Vec::new();
        }
        let (_, event) = self.event(node, index);
        event
            .attributes
            .iter()
            .map(|kv| self.attribute(kv))
            .collect()
    }

    fn attribute(&self, kv: &KeyValue) -> String {
        let value = kv.value.to_string();
        let max = self.opts.max_attr_value_len;
        let value = if max > 0 && value.chars().count() > max {
            let cut: String = value.chars().take(max).collect();
            format!("{}…", clean(&cut))
        } else {
            clean(&value).into_owned()
        };
        format!("{}: {value}", clean(&kv.key))
    }
}

/// Escapes control characters (newlines would break the tree, ESC would let span data
/// drive the terminal).
fn clean(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// ANSI styling that turns into the identity when colour is off.
struct Paint {
    on: bool,
}

impl Paint {
    fn wrap(&self, code: &str, text: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    /// Each service keeps its colour across runs and traces (a hash of the name, not
    /// of the order it appears in). Red and yellow are left out: they mean error and warning.
    fn service(&self, name: &str) -> String {
        const PALETTE: [&str; 8] = ["32", "34", "35", "36", "92", "94", "95", "96"];
        let hash = name.bytes().fold(0x811c_9dc5_u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        });
        self.wrap(PALETTE[hash as usize % PALETTE.len()], &clean(name))
    }

    fn bold(&self, text: &str) -> String {
        self.wrap("1", text)
    }

    fn dim(&self, text: &str) -> String {
        self.wrap("2", text)
    }

    fn error(&self, text: &str) -> String {
        self.wrap("1;31", text)
    }

    fn warn(&self, text: &str) -> String {
        self.wrap("33", text)
    }

    fn parallel(&self, text: &str) -> String {
        self.wrap("36", text)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use clew_model::{AttributeValue, Link, Resource, SpanId, Status, TraceId};

    use super::*;

    const T0: u64 = 1_762_459_440_000_000_000;
    const US: u64 = 1_000;

    fn sid(n: u64) -> SpanId {
        SpanId(n.to_be_bytes())
    }

    fn trace_id() -> TraceId {
        TraceId([0xab; 16])
    }

    fn span(
        id: u64,
        parent: Option<u64>,
        service: &str,
        name: &str,
        kind: SpanKind,
        start_us: u64,
        end_us: u64,
    ) -> Span {
        Span {
            trace_id: trace_id(),
            span_id: sid(id),
            parent_span_id: parent.map(sid),
            trace_state: String::new(),
            name: name.to_string(),
            kind,
            start_unix_nano: T0 + start_us * US,
            end_unix_nano: T0 + end_us * US,
            attributes: Vec::new(),
            events: Vec::new(),
            links: Vec::new(),
            status: Status::default(),
            resource: Arc::new(Resource::for_service(service)),
            scope: Default::default(),
            flags: 1,
        }
    }

    fn event(at_us: u64, name: &str, attributes: &[(&str, &str)]) -> Event {
        Event {
            time_unix_nano: T0 + at_us * US,
            name: name.to_string(),
            attributes: attributes
                .iter()
                .map(|(k, v)| KeyValue::new(*k, *v))
                .collect(),
        }
    }

    fn channel(span: &mut Span, name: &str) {
        span.attributes
            .push(KeyValue::new("messaging.destination.name", name));
    }

    /// The seed's lock request: fpv-ops publishes, the sidecar observes and forwards,
    /// striker and drone-cmd consume in parallel and record events.
    fn lock_request() -> Vec<Span> {
        let mut publish = span(
            1,
            None,
            "fpv-ops",
            "publish_lock_request_striker",
            SpanKind::Producer,
            0,
            800,
        );
        channel(&mut publish, "striker_control_channel");
        publish
            .attributes
            .push(KeyValue::new("ops_team", "fpv-ops-alpha"));
        let mut observe = span(
            2,
            Some(1),
            "tower-sidecar",
            "tower_receive_striker_control_channel",
            SpanKind::Consumer,
            1_000,
            1_300,
        );
        channel(&mut observe, "striker_control_channel");
        let mut forward = span(
            3,
            Some(2),
            "tower-sidecar",
            "tower_forward_striker_control_channel",
            SpanKind::Producer,
            1_100,
            1_200,
        );
        channel(&mut forward, "striker_control_channel");
        let mut striker = span(
            4,
            Some(1),
            "striker",
            "consume_striker_control_channel",
            SpanKind::Consumer,
            1_050,
            4_000,
        );
        channel(&mut striker, "striker_control_channel");
        striker.events.push(event(
            1_500,
            "lock_request_received",
            &[
                ("interceptor", "striker"),
                ("target", "orlan"),
                ("ops_team", "fpv-ops-alpha"),
            ],
        ));
        let mut drone_cmd = span(
            5,
            Some(1),
            "drone-cmd",
            "consume_striker_control_channel",
            SpanKind::Consumer,
            1_080,
            2_500,
        );
        channel(&mut drone_cmd, "striker_control_channel");
        drone_cmd.events.push(event(
            2_000,
            "interceptor_locked",
            &[("interceptor", "striker"), ("target", "orlan")],
        ));
        // Arrival order is not reading order.
        vec![drone_cmd, forward, striker, publish, observe]
    }

    fn plain(tree: &TraceTree) -> String {
        render_trace(tree, &RenderOptions::default())
    }

    #[test]
    fn renders_the_seed_lock_request_like_the_document() {
        let tree = TraceTree::build(lock_request(), SkewMode::Adjust);
        let text = plain(&tree);
        let expected_body = "\
[1] fpv-ops: publish_lock_request_striker (PRODUCER)  +0s 800µs  ROOT
│ Publishes to: striker_control_channel
│ ops_team: fpv-ops-alpha
├─ [2] tower-sidecar: tower_receive_striker_control_channel (CONSUMER)  +1.0ms 300µs  [PARALLEL]
│  │ parent: [1] fpv-ops PRODUCER
│  │ Receives from: striker_control_channel
│  └─ [3] tower-sidecar: tower_forward_striker_control_channel (PRODUCER)  +1.1ms 100µs
│       parent: [2] tower_receive_striker_control_channel
│       Publishes to: striker_control_channel
├─ [4] striker: consume_striker_control_channel (CONSUMER)  +1.1ms 3.0ms  [PARALLEL]
│  │ parent: [1] fpv-ops PRODUCER
│  │ Receives from: striker_control_channel
│  └─ [4.1] striker: lock_request_received (event)  +1.5ms
│       interceptor: striker
│       target: orlan
│       ops_team: fpv-ops-alpha
└─ [5] drone-cmd: consume_striker_control_channel (CONSUMER)  +1.1ms 1.4ms  [PARALLEL]
   │ parent: [1] fpv-ops PRODUCER
   │ Receives from: striker_control_channel
   └─ [5.1] drone-cmd: interceptor_locked (event)  +2.0ms
        interceptor: striker
        target: orlan
";
        assert!(
            text.contains(expected_body),
            "body differs:\n{text}\nexpected:\n{expected_body}"
        );
        assert!(text.contains(&format!("TRACE {}", trace_id())));
        assert!(text.contains("Root: fpv-ops: publish_lock_request_striker\n"));
        assert!(text.contains("Services: 4 (fpv-ops, tower-sidecar, striker, drone-cmd)\n"));
        assert!(text.contains("Spans: 5 · Start: 2025-11-06T20:04:00.000Z · Duration: 4.0ms\n"));
        assert!(text.contains(
            "Total spans: 5 · Services: 4 (fpv-ops, tower-sidecar, striker, drone-cmd) · Errors: 0 · Orphans: 0\n"
        ));
        assert!(text.contains("Clock skew: none detected\n"));
        assert!(!text.contains('\x1b'));
    }

    #[test]
    fn colour_only_when_asked() {
        let tree = TraceTree::build(lock_request(), SkewMode::Adjust);
        let coloured = render_trace(
            &tree,
            &RenderOptions {
                color: true,
                ..RenderOptions::default()
            },
        );
        assert!(coloured.contains('\x1b'));
        // Same service, same colour, wherever it appears.
        let paint = Paint { on: true };
        let striker = paint.service("striker");
        assert!(coloured.matches(&striker).count() >= 3);
        assert_eq!(paint.service("striker"), striker);
        assert!(!plain(&tree).contains('\x1b'));
    }

    #[test]
    fn errors_are_marked_and_counted() {
        let mut spans = lock_request();
        spans[0].status = Status {
            code: StatusCode::Error,
            message: "redis: connection reset".into(),
        };
        let tree = TraceTree::build(spans, SkewMode::Adjust);
        let text = plain(&tree);
        assert!(text.contains(
            "[5] drone-cmd: consume_striker_control_channel (CONSUMER)  +1.1ms 1.4ms  [PARALLEL]  ✗ ERROR: redis: connection reset\n"
        ));
        assert!(text.contains("· Errors: 1 ·"));
        let coloured = render_trace(
            &tree,
            &RenderOptions {
                color: true,
                ..RenderOptions::default()
            },
        );
        assert!(coloured.contains("\x1b[1;31m✗ ERROR: redis: connection reset\x1b[0m"));
    }

    #[test]
    fn orphans_hang_under_a_visible_placeholder() {
        let mut spans = lock_request();
        // The sidecar's span never arrived; its forward still must show.
        spans.retain(|s| s.span_id != sid(2));
        let tree = TraceTree::build(spans, SkewMode::Adjust);
        let text = plain(&tree);
        let missing = sid(2);
        assert!(
            text.contains(&format!(
                "\n\n[?] missing span {missing} (not received)\n\
             └─ [4] tower-sidecar: tower_forward_striker_control_channel (PRODUCER)  +1.1ms 100µs\n\
             \x20    parent: [?] missing span {missing} (not received)\n"
            )),
            "{text}"
        );
        assert!(text.contains(&format!(
            "parent: [?] missing span {missing} (not received)"
        )));
        assert!(text.contains("· Orphans: 1\n"));
        assert!(text.contains(&format!("Missing spans: 1 ({missing})")));
        assert!(text.contains("Roots: 2 (1 span without a parent, 1 missing parent)"));
    }

    #[test]
    fn placeholder_children_are_not_marked_root() {
        let tree = TraceTree::build(
            vec![span(
                7,
                Some(99),
                "ares",
                "receive_prayer",
                SpanKind::Server,
                0,
                10,
            )],
            SkewMode::Adjust,
        );
        let text = plain(&tree);
        let body = format!(
            "[?] missing span {} (not received)\n└─ [1] ares: receive_prayer (SERVER)  +0s 10.0µs\n     parent: [?] missing span {} (not received)\n",
            sid(99),
            sid(99)
        );
        assert!(text.contains(&body), "{text}");
    }

    #[test]
    fn skew_corrections_are_noted_on_the_span_and_summed_up() {
        let spans = vec![
            span(
                1,
                None,
                "fpv-ops",
                "send_prayer_tcp",
                SpanKind::Client,
                100,
                200,
            ),
            span(
                2,
                Some(1),
                "ares",
                "receive_prayer",
                SpanKind::Server,
                50,
                90,
            ),
        ];
        let tree = TraceTree::build(spans.clone(), SkewMode::Adjust);
        let text = plain(&tree);
        assert!(
            text.contains("[2] ares: receive_prayer (SERVER)  +30.0µs 40.0µs\n"),
            "{text}"
        );
        assert!(
            text.contains("│ clock skew adjusted +80.0µs\n")
                || text.contains("  clock skew adjusted +80.0µs\n")
        );
        assert!(text.contains("Clock skew adjusted: ares +80.0µs\n"));

        let off = plain(&TraceTree::build(spans, SkewMode::Off));
        assert!(!off.contains("clock skew adjusted"));
        assert!(off.contains("Clock skew adjustment: off (times as recorded)\n"));
        // As recorded, the server seems to answer before it was called.
        assert!(off.contains("[1] fpv-ops: send_prayer_tcp (CLIENT)  +50.0µs 100µs  ROOT\n"));
        assert!(
            off.contains("[2] ares: receive_prayer (SERVER)  +0s 40.0µs\n"),
            "{off}"
        );
    }

    #[test]
    fn brief_mode_leaves_out_attributes_and_events() {
        let tree = TraceTree::build(lock_request(), SkewMode::Adjust);
        let text = render_trace(
            &tree,
            &RenderOptions {
                show_attributes: false,
                show_events: false,
                ..RenderOptions::default()
            },
        );
        assert!(!text.contains("(event)"));
        assert!(!text.contains("ops_team"));
        assert!(text.contains("parent: [1] fpv-ops PRODUCER"));
        assert!(text.contains("Receives from: striker_control_channel"));
        // Without its event, striker's span has no sub-items and draws no `│` below it.
        assert!(text.contains("├─ [4] striker: consume_striker_control_channel (CONSUMER)  +1.1ms 3.0ms  [PARALLEL]\n│    parent: [1] fpv-ops PRODUCER\n"));
    }

    #[test]
    fn links_name_spans_of_this_trace_by_number() {
        let mut spans = lock_request();
        let elsewhere = TraceId([0x11; 16]);
        spans[0].links.push(Link {
            trace_id: trace_id(),
            span_id: sid(4),
            trace_state: String::new(),
            attributes: vec![KeyValue::new("reason", "same message")],
        });
        spans[0].links.push(Link {
            trace_id: elsewhere,
            span_id: sid(42),
            trace_state: String::new(),
            attributes: Vec::new(),
        });
        let text = plain(&TraceTree::build(spans, SkewMode::Adjust));
        assert!(text.contains(
            "link → [4] striker: consume_striker_control_channel (reason: same message)\n"
        ));
        assert!(text.contains(&format!("link → trace {elsewhere} span {}\n", sid(42))));
    }

    #[test]
    fn span_data_cannot_break_the_layout_or_the_terminal() {
        let mut spans = lock_request();
        spans[3]
            .attributes
            .push(KeyValue::new("payload", "x".repeat(500)));
        spans[3]
            .attributes
            .push(KeyValue::new("evil", "line1\nline2\x1b[31mred"));
        spans[3].attributes.push(KeyValue {
            key: "heading".into(),
            value: AttributeValue::Double(94.5),
        });
        let text = render_trace(
            &TraceTree::build(spans, SkewMode::Adjust),
            &RenderOptions {
                max_attr_value_len: 30,
                ..RenderOptions::default()
            },
        );
        assert!(text.contains(&format!("│ payload: {}…\n", "x".repeat(30))));
        assert!(text.contains("│ evil: line1\\nline2\\u{1b}[31mred\n"));
        assert!(text.contains("│ heading: 94.5\n"));
        assert!(!text.contains('\x1b'));
    }

    #[test]
    fn durations_read_like_a_person_wrote_them() {
        let cases = [
            (0, "0s"),
            (850, "850ns"),
            (1_000, "1.0µs"),
            (12_340, "12.3µs"),
            (99_960, "100µs"),
            (999_600, "1.0ms"),
            (4_100_000, "4.1ms"),
            (245_000_000, "245ms"),
            (1_500_000_000, "1.5s"),
            (59_960_000_000, "1m00s"),
            (123_000_000_000, "2m03s"),
            (3_723_000_000_000, "1h02m03s"),
        ];
        for (nanos, text) in cases {
            assert_eq!(format_duration(nanos), text, "{nanos}ns");
        }
        assert_eq!(format_signed_duration(-3_200_000), "-3.2ms");
        assert_eq!(format_signed_duration(3_200_000), "+3.2ms");
    }

    #[test]
    fn several_roots_and_warnings() {
        let spans = vec![
            span(1, None, "a", "first", SpanKind::Internal, 0, 10),
            span(2, None, "b", "second", SpanKind::Internal, 20, 30),
            span(2, None, "b", "second", SpanKind::Internal, 20, 30),
        ];
        let text = plain(&TraceTree::build(spans, SkewMode::Adjust));
        assert!(text.contains("[1] a: first (INTERNAL)  +0s 10.0µs  ROOT\n\n[2] b: second (INTERNAL)  +20.0µs 10.0µs  ROOT\n"), "{text}");
        assert!(text.contains(&format!(
            "Warning: span {} was received 2 times; kept the last copy\n",
            sid(2)
        )));
    }

    #[test]
    fn a_very_deep_chain_renders_without_running_off_the_page() {
        let spans: Vec<Span> = (1..=50_000u64)
            .map(|i| {
                span(
                    i,
                    (i > 1).then(|| i - 1),
                    "a",
                    "step",
                    SpanKind::Internal,
                    i,
                    i + 1,
                )
            })
            .collect();
        let text = plain(&TraceTree::build(spans, SkewMode::Adjust));
        assert!(text.contains("[50000] a: step (INTERNAL)"));
        assert!(text.contains("(depth 49999)"));
        let widest = text.lines().map(|l| l.chars().count()).max().unwrap();
        assert!(widest < 3 * MAX_DRAWN_DEPTH + 100, "{widest} columns");
    }

    #[test]
    fn empty_trace() {
        assert_eq!(
            plain(&TraceTree::build(Vec::new(), SkewMode::Adjust)),
            "Trace has no spans.\n"
        );
    }
}
