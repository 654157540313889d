//! The collector keeps each trace's lifecycle: completed when its root ended and it went
//! quiet, errored on an error span, orphaned when its root never came; in-process and in
//! a real Redis, which may restart without costing a span.

mod support;

use std::sync::Arc;
use std::time::Duration;

use clew_model::{Resource, Span, SpanId, SpanKind, Status, StatusCode, TraceId};
use support::{Clew, RedisServer, eventually, get_json};

fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn span(trace_id: TraceId, parent: Option<SpanId>, name: &str, error: bool) -> Span {
    let start = now_nanos() - 1_000_000;
    Span {
        trace_id,
        span_id: SpanId::generate(),
        parent_span_id: parent,
        trace_state: String::new(),
        name: name.into(),
        kind: SpanKind::Internal,
        start_unix_nano: start,
        end_unix_nano: start + 500_000,
        attributes: vec![],
        events: vec![],
        links: vec![],
        status: if error {
            Status {
                code: StatusCode::Error,
                message: "engine failure".into(),
            }
        } else {
            Status::default()
        },
        resource: Arc::new(Resource::for_service("striker")),
        scope: Default::default(),
        flags: 1,
    }
}

fn lifecycle(clew: &Clew, id: TraceId) -> serde_json::Value {
    get_json(&clew.api(&format!("/api/clew/traces/{id}"))).1["lifecycle"].clone()
}

fn wait_for_state(clew: &Clew, id: TraceId, state: &str) -> serde_json::Value {
    eventually(Duration::from_secs(15), || {
        let record = lifecycle(clew, id);
        (record["state"] == state).then_some(record)
    })
    .unwrap_or_else(|| panic!("trace {id} never reached {state}: {}", lifecycle(clew, id)))
}

/// Sends one finished trace, one with an error span, and one whose root never arrives.
fn three_traces(clew: &Clew) -> (TraceId, TraceId, TraceId) {
    let (done, failed, abandoned) = (
        TraceId::generate(),
        TraceId::generate(),
        TraceId::generate(),
    );
    let done_root = span(done, None, "flight_mission", false);
    let failed_root = span(failed, None, "flight_mission", false);
    let never_sent_root = SpanId::generate();
    let spans = [
        span(done, Some(done_root.span_id), "execute_intercept", false),
        done_root,
        span(failed, Some(failed_root.span_id), "execute_intercept", true),
        failed_root,
        span(abandoned, Some(never_sent_root), "execute_intercept", false),
    ];
    assert_eq!(clew.send_spans(&spans), 200);
    (done, failed, abandoned)
}

fn check_lifecycle(clew: &Clew) -> (TraceId, TraceId, TraceId) {
    let (done, failed, abandoned) = three_traces(clew);
    wait_for_state(clew, done, "COMPLETED");
    let errored = wait_for_state(clew, failed, "ERRORED");
    assert!(
        errored["error"]
            .as_str()
            .unwrap()
            .contains("engine failure"),
        "{errored}"
    );
    assert!(errored["orphaned_at_ms"].is_null());
    assert_eq!(
        wait_for_state(clew, abandoned, "IN_PROGRESS")["metadata"]["service"],
        "striker"
    );

    let active = String::from_utf8(clew.cli(&["traces", "active"]).stdout).unwrap();
    assert!(active.contains(&abandoned.to_string()), "{active}");
    assert!(!active.contains(&done.to_string()), "{active}");

    // Threshold 0: everything not finished is orphaned now.
    let sweep = clew.cli(&["registry", "sweep", "--once", "--threshold", "0s"]);
    let sweep = String::from_utf8(sweep.stdout).unwrap();
    assert!(
        sweep.contains("1 orphaned") && sweep.contains(&abandoned.to_string()),
        "{sweep}"
    );
    let orphan = lifecycle(clew, abandoned);
    assert_eq!(orphan["state"], "ERRORED");
    assert!(orphan["orphaned_at_ms"].is_u64(), "{orphan}");
    assert_eq!(
        lifecycle(clew, done)["state"],
        "COMPLETED",
        "a finished trace is never swept"
    );

    let orphans = String::from_utf8(clew.cli(&["traces", "orphans"]).stdout).unwrap();
    assert!(
        orphans.contains(&abandoned.to_string()) && orphans.contains("striker"),
        "{orphans}"
    );
    let shown =
        String::from_utf8(clew.cli(&["trace", "show", &abandoned.to_string()]).stdout).unwrap();
    assert!(shown.contains("Lifecycle: ORPHANED"), "{shown}");
    assert!(
        shown.contains("striker: execute_intercept"),
        "the span that did arrive is kept: {shown}"
    );
    let found = String::from_utf8(
        clew.cli(&["trace", "search", "--state", "orphaned", "--json"])
            .stdout,
    )
    .unwrap();
    let found: serde_json::Value = serde_json::from_str(&found).unwrap();
    let ids: Vec<&str> = found
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["trace_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![abandoned.to_string()]);
    (done, failed, abandoned)
}

#[test]
fn embedded_registry_tracks_completion_errors_and_orphans() {
    let dir = tempfile::tempdir().unwrap();
    let clew = Clew::start_with(dir.path(), &["--trace-quiet-period", "300ms"]);
    check_lifecycle(&clew);
}

#[test]
fn redis_registry_keeps_the_seed_keyspace_and_survives_a_redis_restart() {
    let mut redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let url = redis.url();
    let clew = Clew::start_with(
        dir.path(),
        &[
            "--trace-quiet-period",
            "300ms",
            "--redis",
            &url,
            "--key-prefix",
            "sg:",
        ],
    );
    let (done, _, abandoned) = check_lifecycle(&clew);

    let key = format!("sg:trace:{done}");
    assert_eq!(redis.cli(&["HGET", &key, "state"]), "COMPLETED");
    let ttl: i64 = redis.cli(&["TTL", &key]).parse().unwrap();
    assert!(
        ttl > 3000 && ttl <= 3600,
        "terminal TTL of one hour, got {ttl}"
    );
    assert_eq!(
        redis.cli(&["HGET", &format!("sg:trace:{abandoned}"), "error"]),
        "orphaned"
    );
    assert!(
        redis
            .cli(&["ZSCORE", "sg:traces:active", &done.to_string()])
            .is_empty()
    );

    // Redis goes away: ingestion carries on; when it is back, the registry catches up.
    redis.stop();
    let during_outage = TraceId::generate();
    let root = span(during_outage, None, "calculate_intercept_commands", false);
    assert_eq!(
        clew.send_spans(&[root]),
        200,
        "ingestion does not depend on Redis"
    );
    let (status, stored) = get_json(&clew.api(&format!("/api/clew/traces/{during_outage}")));
    assert_eq!(status, 200);
    assert_eq!(stored["spans"].as_array().unwrap().len(), 1);
    std::thread::sleep(Duration::from_millis(500));
    redis.restart();
    let caught_up = eventually(Duration::from_secs(40), || {
        (redis.cli(&["HGET", &format!("sg:trace:{during_outage}"), "state"]) == "COMPLETED")
            .then_some(())
    });
    assert!(
        caught_up.is_some(),
        "the registry caught up after Redis came back: {}",
        lifecycle(&clew, during_outage)
    );
}

/// A request that joined a caller's `traceparent` has no root here; it still completes
/// when all it lacks is that caller. A trace missing one of its own spans does not, nor
/// does a consumer whose producer never reported (it crashed before exporting).
#[test]
fn a_trace_entered_from_an_unreporting_caller_completes_one_missing_its_own_span_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let clew = Clew::start_with(dir.path(), &["--trace-quiet-period", "200ms"]);
    let (joined, broken, unpublished) = (
        TraceId::generate(),
        TraceId::generate(),
        TraceId::generate(),
    );
    let browser = SpanId::generate();
    let with_kind = |mut span: Span, kind| {
        span.kind = kind;
        span
    };
    let joined_entry = with_kind(
        span(joined, Some(browser), "GET /orders", false),
        SpanKind::Server,
    );
    let broken_entry = with_kind(
        span(broken, Some(browser), "GET /orders", false),
        SpanKind::Server,
    );
    let never_sent = SpanId::generate();
    let spans = [
        with_kind(
            span(joined, Some(joined_entry.span_id), "SELECT orders", false),
            SpanKind::Client,
        ),
        joined_entry,
        span(broken, Some(broken_entry.span_id), "render", false),
        broken_entry,
        span(broken, Some(never_sent), "format_row", false),
        with_kind(
            span(unpublished, Some(never_sent), "consume_death-knell", false),
            SpanKind::Consumer,
        ),
    ];
    assert_eq!(clew.send_spans(&spans), 200);
    wait_for_state(&clew, joined, "COMPLETED");
    // Both went quiet at the same moment, so the broken one had as long.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(lifecycle(&clew, broken)["state"], "IN_PROGRESS");
    assert_eq!(lifecycle(&clew, unpublished)["state"], "IN_PROGRESS");
}

/// The in-process registry lives in the data directory: after a crash and a restart,
/// finished traces keep their state and one still running is swept as an orphan.
#[test]
fn the_embedded_registry_survives_a_crash_and_still_sweeps_what_was_running() {
    let dir = tempfile::tempdir().unwrap();
    let clew = Clew::start_with(dir.path(), &["--trace-quiet-period", "200ms"]);
    let (done, failed, abandoned) = three_traces(&clew);
    wait_for_state(&clew, done, "COMPLETED");
    wait_for_state(&clew, failed, "ERRORED");
    wait_for_state(&clew, abandoned, "IN_PROGRESS");
    // The registry writes its file out every 200 ms.
    std::thread::sleep(Duration::from_millis(600));
    clew.kill_hard();

    let clew = Clew::start_with(dir.path(), &["--trace-quiet-period", "200ms"]);
    assert_eq!(lifecycle(&clew, done)["state"], "COMPLETED");
    let errored = lifecycle(&clew, failed);
    assert_eq!(errored["state"], "ERRORED");
    assert!(
        errored["error"]
            .as_str()
            .unwrap()
            .contains("engine failure"),
        "{errored}"
    );
    assert_eq!(lifecycle(&clew, abandoned)["state"], "IN_PROGRESS");
    let sweep = clew.cli(&["registry", "sweep", "--once", "--threshold", "0s"]);
    let sweep = String::from_utf8(sweep.stdout).unwrap();
    assert!(
        sweep.contains("1 orphaned") && sweep.contains(&abandoned.to_string()),
        "{sweep}"
    );
    assert_eq!(lifecycle(&clew, done)["state"], "COMPLETED");
}
