//! `clew demo`: the drone scenario of the seed document, run by the real binary over
//! the in-process bus, over a private Redis, and as separate OS processes; the stored
//! traces are checked span by span, and the printed trees against a golden rendering.
//!
//! The golden file is `tests/golden/demo-seed-1.txt`. `UPDATE_GOLDEN=1 cargo test -p
//! clew-cli --test demo` rewrites it; without that variable a missing or different
//! golden file fails the test.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use clew_model::{AttributeValue, Span, SpanKind, StatusCode, find_attribute};
use support::{Clew, RedisServer, clew_binary, get_json};

/// A finished `clew demo --once`: what it printed and where its store is.
struct DemoRun {
    stdout: String,
    data_dir: tempfile::TempDir,
    lock_request: String,
    intercept_execution: String,
    flight: String,
}

fn run_demo(extra: &[&str]) -> DemoRun {
    let data_dir = tempfile::tempdir().unwrap();
    let run = support::run_demo(data_dir.path(), extra);
    DemoRun {
        stdout: run.stdout,
        lock_request: run.lock_request,
        intercept_execution: run.intercept_execution,
        flight: run.flight,
        data_dir,
    }
}

/// The stored spans of the run's three traces, read back through the API of a server
/// started on the demo's data directory.
struct Stored {
    lock_request: Vec<Span>,
    intercept_execution: Vec<Span>,
    flight: Vec<Span>,
}

fn stored(run: &DemoRun) -> Stored {
    let clew = Clew::start(run.data_dir.path());
    let spans = |id: &str| -> Vec<Span> {
        let (status, body) = get_json(&clew.api(&format!("/api/clew/traces/{id}")));
        assert_eq!(status, 200, "trace {id}: {body}");
        serde_json::from_value(body["spans"].clone()).expect("spans")
    };
    Stored {
        lock_request: spans(&run.lock_request),
        intercept_execution: spans(&run.intercept_execution),
        flight: spans(&run.flight),
    }
}

// ---- what the seed document says ------------------------------------------------

type Edge = (
    &'static str,
    &'static str,
    SpanKind,
    Option<(&'static str, &'static str)>,
);

const LOCK_REQUEST: &[Edge] = &[
    (
        "fpv-ops",
        "publish_lock_request_striker",
        SpanKind::Producer,
        None,
    ),
    (
        "tower-sidecar",
        "tower_receive_striker_control_channel",
        SpanKind::Consumer,
        Some(("fpv-ops", "publish_lock_request_striker")),
    ),
    (
        "tower-sidecar",
        "tower_forward_striker_control_channel",
        SpanKind::Producer,
        Some(("tower-sidecar", "tower_receive_striker_control_channel")),
    ),
    (
        "striker",
        "consume_striker_control_channel",
        SpanKind::Consumer,
        Some(("fpv-ops", "publish_lock_request_striker")),
    ),
    (
        "drone-cmd",
        "consume_striker_control_channel",
        SpanKind::Consumer,
        Some(("fpv-ops", "publish_lock_request_striker")),
    ),
];

/// The intercept execution up to both prayers (what remains when ares is down).
const INTERCEPT_UNTIL_PRAYERS: &[Edge] = &[
    (
        "drone-cmd",
        "calculate_intercept_commands",
        SpanKind::Internal,
        None,
    ),
    (
        "drone-cmd",
        "publish_intercept_commands",
        SpanKind::Producer,
        Some(("drone-cmd", "calculate_intercept_commands")),
    ),
    (
        "tower-sidecar",
        "tower_receive_drone_command",
        SpanKind::Consumer,
        Some(("drone-cmd", "publish_intercept_commands")),
    ),
    (
        "tower-sidecar",
        "tower_forward_drone_command",
        SpanKind::Producer,
        Some(("tower-sidecar", "tower_receive_drone_command")),
    ),
    (
        "striker",
        "consume_drone_command",
        SpanKind::Consumer,
        Some(("drone-cmd", "publish_intercept_commands")),
    ),
    (
        "striker",
        "execute_intercept",
        SpanKind::Internal,
        Some(("striker", "consume_drone_command")),
    ),
    // Path A.
    (
        "striker",
        "send_lock_ack",
        SpanKind::Internal,
        Some(("striker", "execute_intercept")),
    ),
    (
        "striker",
        "publish_lock_ack",
        SpanKind::Producer,
        Some(("striker", "send_lock_ack")),
    ),
    (
        "tower-sidecar",
        "tower_receive_lock_response",
        SpanKind::Consumer,
        Some(("striker", "publish_lock_ack")),
    ),
    (
        "tower-sidecar",
        "tower_forward_lock_response",
        SpanKind::Producer,
        Some(("tower-sidecar", "tower_receive_lock_response")),
    ),
    (
        "fpv-ops",
        "consume_lock_response",
        SpanKind::Consumer,
        Some(("striker", "publish_lock_ack")),
    ),
    (
        "fpv-ops",
        "request_strike_authorization",
        SpanKind::Internal,
        Some(("fpv-ops", "consume_lock_response")),
    ),
    (
        "fpv-ops",
        "send_prayer_tcp",
        SpanKind::Client,
        Some(("fpv-ops", "request_strike_authorization")),
    ),
    // Path B.
    (
        "striker",
        "request_strike_authorization",
        SpanKind::Internal,
        Some(("striker", "execute_intercept")),
    ),
    (
        "striker",
        "send_prayer_tcp",
        SpanKind::Client,
        Some(("striker", "request_strike_authorization")),
    ),
];

/// Both prayers heard, the judgment and the two death notices without their consumers.
const INTERCEPT_JUDGMENT: &[Edge] = &[
    (
        "ares",
        "receive_prayer",
        SpanKind::Server,
        Some(("fpv-ops", "send_prayer_tcp")),
    ),
    (
        "ares",
        "receive_prayer",
        SpanKind::Server,
        Some(("striker", "send_prayer_tcp")),
    ),
    (
        "ares",
        "execute_judgment",
        SpanKind::Internal,
        Some(("ares", "receive_prayer")),
    ),
    (
        "ares",
        "publish_death_notice",
        SpanKind::Internal,
        Some(("ares", "execute_judgment")),
    ),
    (
        "ares",
        "publish_death_striker",
        SpanKind::Producer,
        Some(("ares", "publish_death_notice")),
    ),
    (
        "ares",
        "publish_death_orlan",
        SpanKind::Producer,
        Some(("ares", "publish_death_notice")),
    ),
];

/// The fan-out of one death notice: the sidecar's pair, the recipient, drone-cmd.
fn death_fan_out(producer: &'static str, recipient: &'static str) -> Vec<Edge> {
    vec![
        (
            "tower-sidecar",
            "tower_receive_death-knell",
            SpanKind::Consumer,
            Some(("ares", producer)),
        ),
        (
            "tower-sidecar",
            "tower_forward_death-knell",
            SpanKind::Producer,
            Some(("tower-sidecar", "tower_receive_death-knell")),
        ),
        (
            recipient,
            "consume_death-knell",
            SpanKind::Consumer,
            Some(("ares", producer)),
        ),
        (
            "drone-cmd",
            "consume_death-knell",
            SpanKind::Consumer,
            Some(("ares", producer)),
        ),
    ]
}

fn full_intercept() -> Vec<Edge> {
    let mut edges = INTERCEPT_UNTIL_PRAYERS.to_vec();
    edges.extend_from_slice(INTERCEPT_JUDGMENT);
    edges.extend(death_fan_out("publish_death_striker", "striker"));
    edges.extend(death_fan_out("publish_death_orlan", "orlan"));
    edges
}

// ---- checking stored spans ------------------------------------------------------

/// A span as (service, name, kind, its parent's service and name).
type Place = (String, String, String, Option<(String, String)>);

/// Every span's place, sorted: two traces with the same multiset have the same shape,
/// whatever the ids and times.
fn shape(spans: &[Span]) -> Vec<Place> {
    let mut shape: Vec<_> = spans
        .iter()
        .map(|span| {
            let parent = span.parent_span_id.map(|pid| {
                let parent = spans
                    .iter()
                    .find(|s| s.span_id == pid)
                    .unwrap_or_else(|| panic!("the parent of {} was not stored", span.name));
                (parent.service_name().to_string(), parent.name.clone())
            });
            (
                span.service_name().to_string(),
                span.name.clone(),
                span.kind.to_string(),
                parent,
            )
        })
        .collect();
    shape.sort();
    shape
}

fn expected_shape(edges: &[Edge]) -> Vec<Place> {
    let mut shape: Vec<_> = edges
        .iter()
        .map(|(service, name, kind, parent)| {
            (
                service.to_string(),
                name.to_string(),
                kind.to_string(),
                parent.map(|(s, n)| (s.to_string(), n.to_string())),
            )
        })
        .collect();
    shape.sort();
    shape
}

fn assert_shape(label: &str, spans: &[Span], edges: &[Edge]) {
    assert_eq!(
        shape(spans),
        expected_shape(edges),
        "the {label} trace does not have the seed's structure"
    );
    let trace_ids: std::collections::BTreeSet<_> = spans.iter().map(|s| s.trace_id).collect();
    assert_eq!(trace_ids.len(), 1, "{label}: spans of several traces");
}

fn find<'a>(spans: &'a [Span], service: &str, name: &str) -> Vec<&'a Span> {
    spans
        .iter()
        .filter(|s| s.service_name() == service && s.name == name)
        .collect()
}

fn one<'a>(spans: &'a [Span], service: &str, name: &str) -> &'a Span {
    let found = find(spans, service, name);
    assert_eq!(found.len(), 1, "expected one {service}: {name}");
    found[0]
}

fn parent<'a>(spans: &'a [Span], span: &Span) -> &'a Span {
    let pid = span.parent_span_id.expect("has a parent");
    spans
        .iter()
        .find(|s| s.span_id == pid)
        .expect("parent stored")
}

fn text<'a>(attributes: &'a [clew_model::KeyValue], key: &str) -> &'a str {
    find_attribute(attributes, key)
        .and_then(AttributeValue::as_str)
        .unwrap_or_else(|| panic!("no string attribute {key} in {attributes:?}"))
}

fn number(attributes: &[clew_model::KeyValue], key: &str) -> f64 {
    match find_attribute(attributes, key) {
        Some(AttributeValue::Double(d)) => *d,
        Some(AttributeValue::Int(i)) => *i as f64,
        other => panic!("attribute {key} is not a number: {other:?}"),
    }
}

fn event<'a>(span: &'a Span, name: &str) -> &'a clew_model::Event {
    let found: Vec<_> = span.events.iter().filter(|e| e.name == name).collect();
    assert_eq!(
        found.len(),
        1,
        "expected one {name} event on {}: {}",
        span.service_name(),
        span.name
    );
    found[0]
}

/// Every PRODUCER and CONSUMER says which bus and channel it used.
fn assert_messaging(spans: &[Span], system: &str) {
    for span in spans
        .iter()
        .filter(|s| matches!(s.kind, SpanKind::Producer | SpanKind::Consumer))
    {
        assert_eq!(
            text(&span.attributes, "messaging.system"),
            system,
            "{}",
            span.name
        );
        assert!(span.messaging_destination().is_some(), "{}", span.name);
    }
}

fn assert_lock_request(spans: &[Span], system: &str) {
    assert_shape("lock request", spans, LOCK_REQUEST);
    assert_messaging(spans, system);
    let root = one(spans, "fpv-ops", "publish_lock_request_striker");
    assert_eq!(
        root.messaging_destination(),
        Some("striker_control_channel")
    );
    let striker = one(spans, "striker", "consume_striker_control_channel");
    let received = event(striker, "lock_request_received");
    assert_eq!(text(&received.attributes, "interceptor"), "striker");
    assert_eq!(text(&received.attributes, "target"), "orlan");
    assert_eq!(text(&received.attributes, "ops_team"), "fpv-ops-alpha");
    let drone_cmd = one(spans, "drone-cmd", "consume_striker_control_channel");
    let locked = event(drone_cmd, "interceptor_locked");
    assert_eq!(text(&locked.attributes, "interceptor"), "striker");
    assert_eq!(text(&locked.attributes, "ops_team"), "fpv-ops");
    assert_eq!(text(&locked.attributes, "target"), "orlan");
}

/// The intercept execution up to the prayers, common to every run.
fn assert_intercept_until_prayers(spans: &[Span], flight: &[Span]) {
    let command = one(spans, "striker", "consume_drone_command");
    assert_eq!(command.messaging_destination(), Some("drone_command"));
    assert_eq!(text(&command.attributes, "target"), "orlan");
    let heading = number(&command.attributes, "heading");
    let distance = number(&command.attributes, "distance_km");
    assert!((0.0..360.0).contains(&heading), "heading {heading}");
    assert!((100.0..=150.0).contains(&distance), "distance {distance}");

    let execute = one(spans, "striker", "execute_intercept");
    let reached = event(execute, "reached_intercept_distance");
    assert!(number(&reached.attributes, "distance_km") <= 1.0);
    assert_eq!(text(&reached.attributes, "mode"), "boogie");
    // flight_mission "continues": a link to the striker's long-lived flight span.
    assert_eq!(flight.len(), 1, "the flight trace is one span");
    assert_eq!(flight[0].name, "flight_mission");
    assert_eq!(flight[0].service_name(), "striker");
    assert!(
        execute
            .links
            .iter()
            .any(|l| l.span_id == flight[0].span_id && l.trace_id == flight[0].trace_id),
        "execute_intercept links to flight_mission"
    );
    // Paths A and B both start from execute_intercept after the intercept distance.
    for path in [
        one(spans, "striker", "send_lock_ack"),
        one(spans, "striker", "request_strike_authorization"),
    ] {
        assert!(path.start_unix_nano >= reached.time_unix_nano);
    }
    let ack = one(spans, "striker", "publish_lock_ack");
    assert_eq!(
        ack.messaging_destination(),
        Some("striker_lock_response_channel")
    );
    assert_eq!(text(&ack.attributes, "status"), "loiter-and-await-fpv-ops");
    for service in ["striker", "fpv-ops"] {
        let prayer = one(spans, service, "send_prayer_tcp");
        assert_eq!(text(&prayer.attributes, "network.transport"), "tcp");
    }
}

fn assert_intercept(spans: &[Span], flight: &[Span], system: &str) {
    assert_shape("intercept execution", spans, &full_intercept());
    assert_messaging(spans, system);
    assert_intercept_until_prayers(spans, flight);

    let prayers = find(spans, "ares", "receive_prayer");
    let from = |sender: &str| {
        *prayers
            .iter()
            .find(|p| text(&p.attributes, "sender") == sender)
            .unwrap_or_else(|| panic!("no prayer from {sender}"))
    };
    let (operators, striker) = (from("fpv-ops-alpha"), from("striker"));
    assert_eq!(text(&operators.attributes, "striker_id"), "striker");
    assert_eq!(parent(spans, operators).service_name(), "fpv-ops");
    assert_eq!(parent(spans, striker).service_name(), "striker");
    for prayer in [operators, striker] {
        assert_eq!(text(&prayer.attributes, "target"), "orlan");
    }

    // The judgment answers the striker's prayer and links the operators'.
    let judgment = one(spans, "ares", "execute_judgment");
    assert_eq!(judgment.parent_span_id, Some(striker.span_id));
    assert!(
        judgment
            .links
            .iter()
            .any(|l| l.span_id == operators.span_id)
    );
    let complete = event(judgment, "judgment_complete");
    assert_eq!(number(&complete.attributes, "eliminated"), 2.0);

    // Each death notice fans out to three consumers: sidecar, recipient, drone-cmd.
    for (producer, recipient) in [
        ("publish_death_striker", "striker"),
        ("publish_death_orlan", "orlan"),
    ] {
        let notice = one(spans, "ares", producer);
        assert_eq!(notice.messaging_destination(), Some("death-knell"));
        assert_eq!(text(&notice.attributes, "type"), "SACRIFICE");
        assert_eq!(text(&notice.attributes, "recipient"), recipient);
        let mut consumers: Vec<&str> = spans
            .iter()
            .filter(|s| s.parent_span_id == Some(notice.span_id))
            .inspect(|s| assert_eq!(s.kind, SpanKind::Consumer))
            .map(|s| s.service_name())
            .collect();
        consumers.sort();
        let mut want = vec!["drone-cmd", recipient, "tower-sidecar"];
        want.sort();
        assert_eq!(consumers, want, "the consumers of {producer}");

        let death = one(spans, recipient, "consume_death-knell");
        assert_eq!(text(&death.attributes, "recipient"), recipient);
        let destroyed = event(death, "drone_destroyed");
        assert_eq!(
            find_attribute(&destroyed.attributes, "alive"),
            Some(&AttributeValue::Bool(false))
        );
        assert_eq!(number(&destroyed.attributes, "process.exit.code"), 666.0);

        let metrics = find(spans, "drone-cmd", "consume_death-knell")
            .into_iter()
            .find(|s| s.parent_span_id == Some(notice.span_id))
            .expect("drone-cmd consumed the notice");
        let recorded = event(metrics, "death_metrics_recorded");
        assert_eq!(text(&recorded.attributes, "drone"), recipient);
        let latitude = number(&recorded.attributes, "latitude");
        let longitude = number(&recorded.attributes, "longitude");
        assert!((49.0..51.0).contains(&latitude), "latitude {latitude}");
        assert!((34.0..38.5).contains(&longitude), "longitude {longitude}");
    }
    assert!(spans.iter().all(|s| s.status.code != StatusCode::Error));
}

// ---- the golden rendering -------------------------------------------------------

fn golden_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

/// Compares `actual` with the golden file, or rewrites it with `UPDATE_GOLDEN=1`.
fn assert_golden(name: &str, actual: &str) {
    let path = golden_path(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "golden file {} is missing: create it with UPDATE_GOLDEN=1 cargo test -p clew-cli --test demo",
            path.display()
        )
    });
    if expected != actual {
        let first = expected
            .lines()
            .zip(actual.lines())
            .position(|(e, a)| e != a)
            .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()));
        panic!(
            "the demo's trees differ from {} from line {}:\n  golden: {:?}\n  actual: {:?}\n\
             (if the change is intended, rerun with UPDATE_GOLDEN=1)\n\nactual:\n{actual}",
            path.display(),
            first + 1,
            expected.lines().nth(first),
            actual.lines().nth(first),
        );
    }
}

/// One line of a printed tree (a span or an event) with its detail lines and children.
#[derive(Debug, Clone)]
struct Item {
    old_label: String,
    text: String,
    details: Vec<String>,
    children: Vec<Item>,
}

impl Item {
    fn is_event(&self) -> bool {
        self.old_label.contains('.')
    }

    /// What siblings are ordered by: everything but labels, recursively.
    fn key(&self) -> String {
        let mut key = format!("{}\n", self.text);
        for detail in &self.details {
            key.push_str(&strip_labels(detail));
            key.push('\n');
        }
        for child in &self.children {
            key.push_str(&child.key());
        }
        key
    }
}

fn strip_labels(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find('[') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        match after.find(']') {
            Some(end) if after[..end].chars().all(|c| c.is_ascii_digit() || c == '.') => {
                out.push_str("[]");
                rest = &after[end + 1..];
            }
            _ => {
                out.push('[');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

const BOX: [char; 5] = ['│', ' ', '├', '└', '─'];

/// `[12]` or `[12.3]` at the start of `text`, with its length in bytes.
fn label_at(text: &str) -> Option<(String, usize)> {
    let inner = text.strip_prefix('[')?;
    let end = inner.find(']')?;
    let label = &inner[..end];
    (!label.is_empty() && label.chars().all(|c| c.is_ascii_digit() || c == '.'))
        .then(|| (label.to_string(), end + 2))
}

/// Replaces what differs between two runs of one seed: ids, times, ports, the
/// interleaving of parallel work (siblings are sorted, `[PARALLEL]` is dropped).
fn normalise_item_text(line: &str) -> String {
    let mut parts = line.split("  ");
    let head = parts.next().unwrap_or_default().to_string();
    let _times = parts.next();
    let mut text = head;
    for flag in parts.filter(|f| !f.is_empty() && *f != "[PARALLEL]") {
        text.push_str("  ");
        text.push_str(&normalise_ports(flag));
    }
    text
}

fn normalise_ports(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("127.0.0.1:") {
        let (before, after) = rest.split_at(at + "127.0.0.1:".len());
        out.push_str(before);
        let digits = after.chars().take_while(char::is_ascii_digit).count();
        out.push_str(if digits > 0 { "<port>" } else { "" });
        rest = &after[digits..];
    }
    out.push_str(rest);
    out
}

fn normalise_detail(detail: &str) -> Option<String> {
    if detail.starts_with("clock skew adjusted") {
        return None;
    }
    if let Some((key, _)) = detail.split_once(": ")
        && ["messaging.message.id", "network.peer.port", "server.port"].contains(&key)
    {
        return Some(format!("{key}: <varies>"));
    }
    if let Some(rest) = detail.strip_prefix("link → trace ") {
        let attributes = rest.find(" (").map_or("", |at| &rest[at..]);
        return Some(format!(
            "link → trace <trace-id> span <span-id>{attributes}"
        ));
    }
    Some(normalise_ports(detail))
}

fn parse_tree(lines: &[&str]) -> Vec<Item> {
    // (depth, item) for the open path from the root to the current item.
    let mut roots: Vec<Item> = Vec::new();
    let mut path: Vec<(usize, Item)> = Vec::new();
    fn close(path: &mut Vec<(usize, Item)>, roots: &mut Vec<Item>, depth: usize) {
        while path.last().is_some_and(|(d, _)| *d >= depth) {
            let (_, item) = path.pop().unwrap();
            match path.last_mut() {
                Some((_, parent)) => parent.children.push(item),
                None => roots.push(item),
            }
        }
    }
    for line in lines {
        let prefix_chars = line.chars().take_while(|c| BOX.contains(c)).count();
        let prefix_bytes: usize = line.chars().take(prefix_chars).map(char::len_utf8).sum();
        let rest = &line[prefix_bytes..];
        if let (Some((label, len)), true) = (label_at(rest), prefix_chars % 3 == 0) {
            let depth = prefix_chars / 3;
            close(&mut path, &mut roots, depth);
            path.push((
                depth,
                Item {
                    old_label: label,
                    text: normalise_item_text(&rest[len + 1..]),
                    details: Vec::new(),
                    children: Vec::new(),
                },
            ));
        } else if let (Some((_, item)), Some(detail)) = (path.last_mut(), normalise_detail(rest)) {
            item.details.push(detail);
        }
    }
    close(&mut path, &mut roots, 0);
    roots
}

fn sort_tree(items: &mut [Item]) {
    for item in items.iter_mut() {
        sort_tree(&mut item.children);
    }
    items.sort_by_cached_key(Item::key);
}

fn renumber(
    items: &mut [Item],
    parent: Option<&str>,
    next: &mut usize,
    map: &mut Vec<(String, String)>,
) {
    let mut events = 0;
    for item in items.iter_mut() {
        let label = if item.is_event() {
            events += 1;
            format!("{}.{events}", parent.unwrap_or("?"))
        } else {
            *next += 1;
            next.to_string()
        };
        map.push((item.old_label.clone(), label.clone()));
        item.old_label = label.clone();
        renumber(&mut item.children, Some(&label), next, map);
    }
}

fn relabel(detail: &str, map: &[(String, String)]) -> String {
    for prefix in ["parent: [", "link → ["] {
        if let Some(rest) = detail.strip_prefix(prefix)
            && let Some(end) = rest.find(']')
            && let Some((_, new)) = map.iter().find(|(old, _)| old == &rest[..end])
        {
            return format!("{prefix}{new}{}", &rest[end..]);
        }
    }
    detail.to_string()
}

fn draw(items: &[Item], bars: &str, root: bool, map: &[(String, String)], out: &mut String) {
    for (k, item) in items.iter().enumerate() {
        let last = k + 1 == items.len();
        let (connector, continuation) = match (root, last) {
            (true, _) => ("", ""),
            (false, true) => ("└─ ", "   "),
            (false, false) => ("├─ ", "│  "),
        };
        out.push_str(&format!(
            "{bars}{connector}[{}] {}\n",
            item.old_label, item.text
        ));
        let bar = if item.children.is_empty() {
            "  "
        } else {
            "│ "
        };
        for detail in &item.details {
            out.push_str(&format!(
                "{bars}{continuation}{bar}{}\n",
                relabel(detail, map)
            ));
        }
        draw(
            &item.children,
            &format!("{bars}{continuation}"),
            false,
            map,
            out,
        );
    }
}

/// Sorts the names in `… (a, b, c)` at the end of a `Services:` clause, which the
/// renderer lists in order of appearance.
fn sort_service_list(line: &str) -> String {
    let Some(open) = line.find("Services: ") else {
        return line.to_string();
    };
    let Some(start) = line[open..].find('(').map(|i| open + i + 1) else {
        return line.to_string();
    };
    let end = start + line[start..].find(')').unwrap();
    let mut names: Vec<&str> = line[start..end].split(", ").collect();
    names.sort();
    format!("{}{}{}", &line[..start], names.join(", "), &line[end..])
}

/// The printed trees and summary of a run, with everything that legitimately differs
/// between two runs of the same seed replaced or put in a canonical order.
fn normalise(stdout: &str) -> String {
    let lines: Vec<&str> = stdout.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.starts_with("Lock request trace: "))
        .expect("the lock request trace is printed");
    let mut out = String::new();
    let mut i = start;
    while i < lines.len() {
        let line = lines[i];
        if let Some((title, _)) = line.split_once(" trace: ")
            && !line.starts_with("The ")
        {
            out.push_str(&format!("{title} trace: <trace-id>\n"));
        } else if line.starts_with("TRACE ") {
            out.push_str("TRACE <trace-id>\n");
        } else if let Some(rest) = line.strip_prefix("Spans: ") {
            let count = rest.split(' ').next().unwrap_or_default();
            out.push_str(&format!("Spans: {count}\n"));
        } else if line.starts_with("Services: ") || line.starts_with("Total spans: ") {
            out.push_str(&sort_service_list(line));
            out.push('\n');
        } else if line.starts_with("Clock skew") {
        } else if line.starts_with("The striker's flight_mission is trace ") {
            out.push_str("The striker's flight_mission is trace <trace-id> (execute_intercept links to it).\n");
        } else if line.contains(" exited with code ") {
            let cut = line.find(" (process status").unwrap_or(line.len());
            out.push_str(&line[..cut]);
            out.push('\n');
        } else if line.starts_with('[') {
            // A tree: everything up to the footer's rule.
            let end = (i..lines.len())
                .find(|&j| lines[j].starts_with('─'))
                .expect("the tree ends with a rule");
            let mut items = parse_tree(&lines[i..end]);
            sort_tree(&mut items);
            let mut map = Vec::new();
            renumber(&mut items, None, &mut 0, &mut map);
            draw(&items, "", true, &map, &mut out);
            i = end;
            continue;
        } else {
            out.push_str(line);
            out.push('\n');
        }
        i += 1;
    }
    out
}

// ---- the tests ------------------------------------------------------------------

#[test]
fn over_the_in_process_bus_both_traces_have_the_seeds_structure() {
    let run = run_demo(&[]);
    let stored = stored(&run);
    assert_lock_request(&stored.lock_request, "inproc");
    assert_intercept(&stored.intercept_execution, &stored.flight, "inproc");
    assert!(run.stdout.contains("striker exited with code 666"));
    assert!(run.stdout.contains("orlan exited with code 666"));
    assert!(
        run.stdout
            .contains("Result: mission success, 2 targets eliminated")
    );
}

#[test]
fn the_printed_trees_match_the_golden_rendering() {
    let run = run_demo(&["--seed", "1"]);
    assert_golden("demo-seed-1.txt", &normalise(&run.stdout));
}

#[test]
fn over_a_real_redis_both_traces_have_the_seeds_structure() {
    let redis = RedisServer::start();
    let run = run_demo(&["--redis", &redis.url(), "--otlp-protocol", "http"]);
    let stored = stored(&run);
    assert_lock_request(&stored.lock_request, "redis");
    assert_intercept(&stored.intercept_execution, &stored.flight, "redis");
    // The same seed tells the same story over either bus.
    let printed =
        normalise(&run.stdout).replace("messaging.system: redis", "messaging.system: inproc");
    assert_golden("demo-seed-1.txt", &printed);
}

#[test]
fn through_the_agent_protocol_the_story_is_the_same() {
    let run = run_demo(&["--export", "agent"]);
    assert!(
        run.stdout.contains("export      agent protocol "),
        "{}",
        run.stdout
    );
    let stored = stored(&run);
    assert_lock_request(&stored.lock_request, "inproc");
    assert_intercept(&stored.intercept_execution, &stored.flight, "inproc");
    // Nothing the agent protocol would add on its own: no request spans, no Scout ids.
    for span in stored
        .lock_request
        .iter()
        .chain(&stored.intercept_execution)
    {
        assert!(
            !span
                .attributes
                .iter()
                .any(|a| a.key.starts_with("scout.") || a.key.starts_with("clew.")),
            "{}: {:?}",
            span.name,
            span.attributes
        );
        assert_eq!(span.scope.name, "clew-demo", "{}", span.name);
    }
    assert_golden("demo-seed-1.txt", &normalise(&run.stdout));
}

/// The drones' processes export through the agent protocol: each shuts its provider
/// down and exits with 666 right after, as in the seed, and the agent still has it all.
#[test]
fn as_processes_over_redis_the_drones_that_exited_sent_all_their_spans() {
    let redis = RedisServer::start();
    let run = run_demo(&["--redis", &redis.url(), "--processes", "--export", "agent"]);
    // A process status keeps 8 bits of 666.
    for drone in ["striker", "orlan"] {
        assert!(
            run.stdout
                .contains(&format!("{drone} exited with code 666 (process status 154")),
            "{drone} did not exit with 666:\n{}",
            run.stdout
        );
    }
    let stored = stored(&run);
    assert_lock_request(&stored.lock_request, "redis");
    assert_intercept(&stored.intercept_execution, &stored.flight, "redis");
    // The striker's last span, ended just before it exited.
    let flight = &stored.flight[0];
    let ended = flight
        .events
        .iter()
        .find(|e| e.name == "flight_ended")
        .expect("flight_ended");
    assert_eq!(
        find_attribute(&ended.attributes, "alive"),
        Some(&AttributeValue::Bool(false))
    );
    let printed =
        normalise(&run.stdout).replace("messaging.system: redis", "messaging.system: inproc");
    assert_golden("demo-seed-1.txt", &printed);
}

#[test]
fn the_same_seed_tells_the_same_story_and_another_seed_another() {
    let first = normalise(&run_demo(&["--seed", "42"]).stdout);
    let second = normalise(&run_demo(&["--seed", "42", "--otlp-protocol", "http"]).stdout);
    assert_eq!(first, second, "two runs of seed 42 differ");
    let other = normalise(&run_demo(&["--seed", "43"]).stdout);
    assert_ne!(first, other, "seeds 42 and 43 tell the same story");
    let heading = |text: &str| {
        text.lines()
            .find(|l| l.trim_start_matches(BOX).starts_with("heading: "))
            .map(str::to_string)
    };
    assert_ne!(heading(&first), heading(&other));
}

#[test]
fn with_ares_down_both_prayers_fail_and_nobody_dies() {
    let run = run_demo(&["--fault", "ares-down"]);
    let stored = stored(&run);
    assert_lock_request(&stored.lock_request, "inproc");
    let spans = &stored.intercept_execution;
    assert_shape("intercept execution", spans, INTERCEPT_UNTIL_PRAYERS);
    assert_intercept_until_prayers(spans, &stored.flight);
    for service in ["fpv-ops", "striker"] {
        let prayer = one(spans, service, "send_prayer_tcp");
        assert_eq!(prayer.status.code, StatusCode::Error, "{service}'s prayer");
        let exception = event(prayer, "exception");
        assert!(
            text(&exception.attributes, "exception.message").contains("refused"),
            "{exception:?}"
        );
    }
    assert!(!run.stdout.contains("exited with code 666"));
    assert!(run.stdout.contains("Result: no strike"));
}

#[test]
fn with_a_lost_death_notice_orlan_survives() {
    let run = run_demo(&["--fault", "lost-death-notice"]);
    let stored = stored(&run);
    let spans = &stored.intercept_execution;
    let mut edges = INTERCEPT_UNTIL_PRAYERS.to_vec();
    edges.extend_from_slice(INTERCEPT_JUDGMENT);
    edges.extend(death_fan_out("publish_death_striker", "striker"));
    assert_shape("intercept execution", spans, &edges);
    let lost = one(spans, "ares", "publish_death_orlan");
    assert_eq!(lost.status.code, StatusCode::Error);
    assert_eq!(number(&lost.attributes, "clew.demo.receivers"), 0.0);
    assert!(spans.iter().all(|s| s.parent_span_id != Some(lost.span_id)));
    let judgment = one(spans, "ares", "execute_judgment");
    assert_eq!(
        number(
            &event(judgment, "judgment_complete").attributes,
            "eliminated"
        ),
        1.0
    );
    assert!(run.stdout.contains("striker exited with code 666"));
    assert!(!run.stdout.contains("orlan exited"));
}

#[test]
fn processes_without_redis_are_refused_with_a_way_out() {
    let data_dir = tempfile::tempdir().unwrap();
    let output = Command::new(clew_binary())
        .args([
            "--http-addr",
            "127.0.0.1:0",
            "demo",
            "--once",
            "--processes",
            "--data-dir",
        ])
        .arg(data_dir.path())
        .env_remove("CLEW_REDIS_URL")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("in-process bus cannot cross processes") && stderr.contains("--redis"),
        "{stderr}"
    );
}

#[test]
fn the_normaliser_keeps_structure_and_drops_what_varies() {
    let printed = "\
Lock request trace: 01a2
═══
TRACE 01a2
Root: a: x
Services: 2 (b, a)
Spans: 2 · Start: 2026 · Duration: 1ms
═══
[1] a: x (PRODUCER)  +0s 1ms  ROOT
│ messaging.message.id: 77
├─ [2] b: z (CONSUMER)  +5µs 1µs  [PARALLEL]
│    parent: [1] a PRODUCER
└─ [3] b: y (CONSUMER)  +2µs 1µs  [PARALLEL]
   │ parent: [1] a PRODUCER
   └─ [3.1] b: e (event)  +3µs
        k: v
───
Total spans: 3 · Services: 2 (b, a) · Errors: 0 · Orphans: 0
Clock skew: none detected
";
    let expected = "\
Lock request trace: <trace-id>
═══
TRACE <trace-id>
Root: a: x
Services: 2 (a, b)
Spans: 2
═══
[1] a: x (PRODUCER)  ROOT
│ messaging.message.id: <varies>
├─ [2] b: y (CONSUMER)
│  │ parent: [1] a PRODUCER
│  └─ [2.1] b: e (event)
│       k: v
└─ [3] b: z (CONSUMER)
     parent: [1] a PRODUCER
───
Total spans: 3 · Services: 2 (a, b) · Errors: 0 · Orphans: 0
";
    assert_eq!(normalise(printed), expected);
}
