//! The reading verbs against a real server: search, services, and their error messages.

mod support;

use std::sync::Arc;

use clew_model::{KeyValue, Resource, Span, SpanId, SpanKind, TraceId};
use support::Clew;

fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn span(
    trace_id: TraceId,
    parent: Option<SpanId>,
    service: &str,
    name: &str,
    kind: SpanKind,
    millis: u64,
) -> Span {
    let start = now_nanos() - 5_000_000_000;
    Span {
        trace_id,
        span_id: SpanId::generate(),
        parent_span_id: parent,
        trace_state: String::new(),
        name: name.into(),
        kind,
        start_unix_nano: start,
        end_unix_nano: start + millis * 1_000_000,
        attributes: vec![KeyValue::new("target", "orlan")],
        events: vec![],
        links: vec![],
        status: Default::default(),
        resource: Arc::new(Resource::for_service(service)),
        scope: Default::default(),
        flags: 1,
    }
}

fn stdout(output: &std::process::Output) -> String {
    assert!(
        output.status.success(),
        "clew failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[test]
fn search_and_services_read_what_was_sent() {
    let dir = tempfile::tempdir().unwrap();
    let clew = Clew::start(dir.path());
    let slow = TraceId::generate();
    let fast = TraceId::generate();
    let slow_root = span(
        slow,
        None,
        "drone-cmd",
        "calculate_intercept_commands",
        SpanKind::Internal,
        300,
    );
    let slow_child = span(
        slow,
        Some(slow_root.span_id),
        "striker",
        "consume_drone_command",
        SpanKind::Consumer,
        20,
    );
    let fast_root = span(
        fast,
        None,
        "drone-cmd",
        "calculate_intercept_commands",
        SpanKind::Internal,
        2,
    );
    assert_eq!(clew.send_spans(&[slow_root, slow_child, fast_root]), 200);

    let services = stdout(&clew.cli(&["services"]));
    assert!(
        services.contains("drone-cmd\n  calculate_intercept_commands (INTERNAL)"),
        "{services}"
    );
    assert!(
        services.contains("striker\n  consume_drone_command (CONSUMER)"),
        "{services}"
    );

    let all = stdout(&clew.cli(&["trace", "search", "--service", "drone-cmd"]));
    assert!(
        all.contains(&slow.to_string()) && all.contains(&fast.to_string()),
        "{all}"
    );
    let only_slow = stdout(&clew.cli(&[
        "trace",
        "search",
        "--service",
        "drone-cmd",
        "--min-duration",
        "100ms",
    ]));
    assert!(only_slow.contains(&slow.to_string()), "{only_slow}");
    assert!(!only_slow.contains(&fast.to_string()), "{only_slow}");
    assert!(
        only_slow.contains("drone-cmd: calculate_intercept_commands"),
        "{only_slow}"
    );

    let json = stdout(&clew.cli(&[
        "trace",
        "search",
        "--service",
        "striker",
        "--attr",
        "target=orlan",
        "--json",
    ]));
    let found: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(found.as_array().unwrap().len(), 1);
    assert_eq!(found[0]["trace_id"], slow.to_string());
    let none = stdout(&clew.cli(&[
        "trace",
        "search",
        "--service",
        "striker",
        "--attr",
        "target=nobody",
    ]));
    assert!(none.contains("no traces found"), "{none}");
}

#[test]
fn errors_say_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let clew = Clew::start(dir.path());

    let unknown = clew.cli(&["trace", "show", &TraceId::generate().to_string()]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("not found"));

    let malformed = clew.cli(&["trace", "show", "not-an-id"]);
    assert!(!malformed.status.success());
    assert!(String::from_utf8_lossy(&malformed.stderr).contains("is not a trace id"));

    let bad_attr = clew.cli(&["trace", "search", "--attr", "novalue"]);
    assert!(String::from_utf8_lossy(&bad_attr.stderr).contains("KEY=VALUE"));

    // Nothing listens on this port once the listener is dropped.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let unreachable = std::process::Command::new(support::clew_binary())
        .args(["--http-addr", &free.to_string(), "services"])
        .output()
        .unwrap();
    assert!(!unreachable.status.success());
    assert!(String::from_utf8_lossy(&unreachable.stderr).contains("is `clew serve` running?"));
}

#[test]
fn every_verb_has_help() {
    for verb in [
        &["serve"][..],
        &["trace", "show"],
        &["trace", "search"],
        &["services"],
        &["bench"],
    ] {
        let output = std::process::Command::new(support::clew_binary())
            .args(verb)
            .arg("--help")
            .output()
            .unwrap();
        assert!(output.status.success(), "{verb:?} --help");
        assert!(
            String::from_utf8_lossy(&output.stdout).contains("Usage:"),
            "{verb:?}"
        );
    }
}
