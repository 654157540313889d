//! Properties of timelines, signatures and diffs over random traces, and the ordering
//! rules on small hand-made ones.

use clew_model::{KeyValue, Link, Span, SpanId, SpanKind, Status, StatusCode};
use proptest::prelude::*;

use crate::test_support::{BASE, MS, arb_trace, event, sid, span, timed, trace_id};
use crate::{EditOp, EventKind, FaultKind, Timeline, diff, trace_signature};

/// Gives every span a distinct name, so that any structural change is visible
/// (two identical sibling subtrees can swap children without changing the trace).
fn unique_names(mut spans: Vec<Span>) -> Vec<Span> {
    for (i, s) in spans.iter_mut().enumerate() {
        s.name = format!("op{i}");
    }
    spans
}

fn renumbered(spans: &[Span], salt: u64) -> Vec<Span> {
    let map = |id: SpanId| {
        SpanId((id.to_u64().wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ salt | 1).to_be_bytes())
    };
    let mut trace = trace_id();
    trace.0[15] ^= 0x5a;
    spans
        .iter()
        .map(|s| {
            let mut s = s.clone();
            s.trace_id = trace;
            s.span_id = map(s.span_id);
            s.parent_span_id = s.parent_span_id.map(map);
            for l in &mut s.links {
                l.trace_id = trace;
                l.span_id = map(l.span_id);
            }
            s
        })
        .collect()
}

fn shifted(spans: &[Span], by: u64) -> Vec<Span> {
    spans
        .iter()
        .map(|s| {
            let mut s = s.clone();
            s.start_unix_nano += by;
            s.end_unix_nano += by;
            for e in &mut s.events {
                e.time_unix_nano += by;
            }
            s
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn diffing_a_trace_with_itself_is_empty(spans in arb_trace(30)) {
        let d = diff(&spans, &spans);
        prop_assert!(d.is_empty(), "{:?}", d);
        prop_assert!(d.durations.iter().all(|x| x.delta_us == 0));
        prop_assert_eq!(d.expected_signature, d.actual_signature);
    }

    #[test]
    fn renaming_ids_shifting_times_and_reordering_keep_signatures(
        spans in arb_trace(30),
        salt in any::<u64>(),
        shift in 0u64..1_000_000_000_000,
        rotate in any::<usize>(),
    ) {
        let original = Timeline::build(spans.clone());
        let mut moved = shifted(&renumbered(&spans, salt), shift);
        let len = moved.len();
        moved.rotate_left(rotate % len);
        for s in &mut moved {
            s.attributes.reverse();
        }
        let other = Timeline::build(moved);
        prop_assert_eq!(original.trace_signature(), other.trace_signature());
        prop_assert_eq!(original.timeline_signature(), other.timeline_signature());
        prop_assert!(original.first_divergence(&other).is_none());
    }

    #[test]
    fn moving_a_span_to_another_parent_changes_the_signature(
        spans in arb_trace(30),
        pick in any::<usize>(),
        target in any::<usize>(),
    ) {
        let mut spans = unique_names(spans);
        prop_assume!(spans.len() >= 3);
        let i = 1 + pick % (spans.len() - 1);
        // Spans only have parents with smaller indices, so any j < i is not a descendant.
        let j = target % i;
        prop_assume!(spans[i].parent_span_id != Some(spans[j].span_id));
        let before = trace_signature(&spans);
        spans[i].parent_span_id = Some(spans[j].span_id);
        prop_assert_ne!(before, trace_signature(&spans));
    }

    #[test]
    fn swapping_two_ordered_events_changes_both_signatures(spans in arb_trace(20), pick in any::<usize>()) {
        let mut spans = spans;
        let i = pick % spans.len();
        let s = &mut spans[i];
        s.end_unix_nano = s.start_unix_nano + 10 * MS;
        s.events = Vec::new();
        let start = s.start_unix_nano;
        s.events.push(clew_model::Event { time_unix_nano: start + MS, name: "first".into(), attributes: vec![] });
        s.events.push(clew_model::Event { time_unix_nano: start + 2 * MS, name: "second".into(), attributes: vec![] });
        let before = Timeline::build(spans.clone());
        let s = &mut spans[i];
        s.events[0].time_unix_nano = start + 2 * MS;
        s.events[1].time_unix_nano = start + MS;
        let after = Timeline::build(spans);
        prop_assert_ne!(before.trace_signature(), after.trace_signature());
        prop_assert_ne!(before.timeline_signature(), after.timeline_signature());
        prop_assert!(before.first_divergence(&after).is_some());
    }

    #[test]
    fn a_single_change_yields_exactly_one_edit(spans in arb_trace(25), pick in any::<usize>(), change in 0u8..5) {
        let expected = unique_names(spans);
        let mut actual = expected.clone();
        let i = pick % actual.len();
        let s = &mut actual[i];
        let field = match change {
            0 => {
                s.status = Status {
                    code: if s.is_error() { StatusCode::Ok } else { StatusCode::Error },
                    message: String::new(),
                };
                "status"
            }
            1 => {
                s.kind = if s.kind == SpanKind::Internal { SpanKind::Client } else { SpanKind::Internal };
                "kind"
            }
            2 => {
                s.attributes.retain(|kv| kv.key != "messaging.destination.name");
                s.attributes.push(KeyValue::new("messaging.destination.name", "elsewhere"));
                "attr.messaging.destination.name"
            }
            3 => {
                s.name = "renamed".into();
                "name"
            }
            _ => {
                let at = s.end_unix_nano;
                s.events.push(clew_model::Event { time_unix_nano: at, name: "extra".into(), attributes: vec![] });
                "events"
            }
        };
        let d = diff(&expected, &actual);
        prop_assert_eq!(d.edits.len(), 1, "{:#?}", d.edits);
        prop_assert_eq!(d.edits[0].op, EditOp::Changed);
        prop_assert_eq!(d.edits[0].changes.len(), 1);
        prop_assert_eq!(&d.edits[0].changes[0].field, field);
        prop_assert!(d.first_divergence.is_some());
    }

    #[test]
    fn every_span_yields_a_start_and_an_end_in_causal_order(spans in arb_trace(40)) {
        let timeline = Timeline::build(spans);
        let n = timeline.spans().len();
        let events: usize = timeline.spans().iter().map(|s| s.events.len() + 2).sum();
        prop_assert_eq!(timeline.len(), events);
        for (i, e) in timeline.events().iter().enumerate() {
            prop_assert_eq!(e.index, i);
        }
        for i in 0..n {
            let (start, end) = timeline.span_event_range(i);
            prop_assert!(start < end);
            let node = &timeline.tree().nodes()[i];
            if let Some(p) = node.parent.map(|p| p.index()).filter(|&p| p < n) {
                prop_assert!(timeline.span_event_range(p).0 < start, "a child starts after its parent");
            }
        }
    }
}

#[test]
fn a_receive_is_never_indexed_before_its_send() {
    // The consumer's clock runs 30 ms behind: recorded, it starts before the send.
    let producer = timed(
        span(1, None, "ares", "publish_death_orlan"),
        SpanKind::Producer,
        100,
        101,
    );
    let mut consumer = timed(
        span(2, Some(1), "orlan", "consume_death-knell"),
        SpanKind::Consumer,
        72,
        75,
    );
    event(
        &mut consumer,
        73,
        "drone_destroyed",
        vec![KeyValue::new("process.exit.code", 666i64)],
    );
    let timeline = Timeline::build(vec![consumer, producer]);
    let kinds: Vec<EventKind> = timeline.events().iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            EventKind::MessageSend,
            EventKind::MessageReceive,
            EventKind::SpanEnd,
            EventKind::ProcessExit,
            EventKind::SpanEnd
        ]
    );
    let receive = &timeline.events()[1];
    assert_eq!(receive.raw_unix_nano, BASE + 72 * MS, "raw time kept");
    assert!(receive.corrected_unix_nano >= timeline.events()[0].corrected_unix_nano);
    assert_eq!(
        receive.label,
        "orlan: receive consume_death-knell (CONSUMER)"
    );
    let exit = &timeline.events()[3];
    assert_eq!(
        exit.label,
        "orlan: exit (drone_destroyed, code 666) in consume_death-knell"
    );
    assert_eq!(exit.fault, None, "an exit is not a fault by itself");
    assert!(timeline.first_fault().is_none());
}

#[test]
fn causality_wins_over_an_uncorrected_clock() {
    // Under a placeholder parent nothing is skew-corrected, but a link still orders:
    // the batch consumer cannot start before the message it links to was sent.
    let producer = timed(
        span(1, Some(99), "a", "publish"),
        SpanKind::Producer,
        50,
        51,
    );
    let mut batch = timed(
        span(2, Some(98), "b", "consume_batch"),
        SpanKind::Consumer,
        10,
        60,
    );
    batch.links.push(Link {
        trace_id: trace_id(),
        span_id: sid(1),
        trace_state: String::new(),
        attributes: vec![],
    });
    let timeline = Timeline::build(vec![batch, producer]);
    let order: Vec<&str> = timeline
        .events()
        .iter()
        .map(|e| e.span_name.as_str())
        .collect();
    assert_eq!(
        order,
        ["publish", "consume_batch", "publish", "consume_batch"]
    );
    assert_eq!(
        timeline.events()[1].at_us,
        0,
        "corrected time kept, not invented"
    );
    // The receive cleared the message from flight.
    let snap = timeline.snapshot_at(1).unwrap();
    assert!(snap.in_flight.is_empty());
    assert!(
        timeline
            .warnings()
            .iter()
            .any(|w| w.contains("parent that is not in the trace"))
    );
}

#[test]
fn a_synchronous_child_ends_before_its_parent_even_at_the_same_instant() {
    let parent = timed(span(9, None, "svc", "handle"), SpanKind::Server, 0, 10);
    let child = timed(span(1, Some(9), "svc", "query"), SpanKind::Client, 2, 10);
    let timeline = Timeline::build(vec![parent, child]);
    let labels: Vec<&str> = timeline.events().iter().map(|e| e.label.as_str()).collect();
    assert_eq!(
        labels,
        [
            "svc: receive handle (SERVER)",
            "svc: send query (CLIENT)",
            "svc: end query",
            "svc: end handle"
        ]
    );
}

#[test]
fn a_detached_child_may_outlive_its_parent() {
    let parent = timed(span(1, None, "svc", "handle"), SpanKind::Internal, 0, 5);
    let child = timed(
        span(2, Some(1), "svc", "background"),
        SpanKind::Internal,
        1,
        20,
    );
    let timeline = Timeline::build(vec![parent, child]);
    let labels: Vec<&str> = timeline.events().iter().map(|e| e.label.as_str()).collect();
    assert_eq!(
        labels,
        [
            "svc: start handle (INTERNAL)",
            "svc: start background (INTERNAL)",
            "svc: end handle",
            "svc: end background"
        ]
    );
}

#[test]
fn link_cycles_are_broken_with_a_warning() {
    let mut root = timed(span(1, None, "a", "root"), SpanKind::Internal, 0, 10);
    root.links.push(Link {
        trace_id: trace_id(),
        span_id: sid(2),
        trace_state: String::new(),
        attributes: vec![],
    });
    let child = timed(span(2, Some(1), "a", "child"), SpanKind::Internal, 1, 2);
    let timeline = Timeline::build(vec![root, child]);
    assert_eq!(timeline.len(), 4);
    assert!(
        timeline
            .warnings()
            .iter()
            .any(|w| w.contains("causal cycle"))
    );
}

#[test]
fn faults_are_errors_exceptions_and_abnormal_exits() {
    let root = timed(span(1, None, "api", "request"), SpanKind::Server, 0, 100);
    let mut call = timed(span(2, Some(1), "api", "call"), SpanKind::Client, 10, 50);
    event(
        &mut call,
        20,
        "exception",
        vec![KeyValue::new("exception.type", "Timeout")],
    );
    call.status = Status {
        code: StatusCode::Error,
        message: "timed out".into(),
    };
    let mut worker = timed(
        span(3, Some(2), "worker", "serve"),
        SpanKind::Server,
        12,
        15,
    );
    event(
        &mut worker,
        14,
        "process.exit",
        vec![KeyValue::new("clew.abnormal", true)],
    );
    let timeline = Timeline::build(vec![root, call, worker]);
    let faults: Vec<(FaultKind, &str)> = timeline
        .events()
        .iter()
        .filter_map(|e| e.fault.map(|f| (f, e.label.as_str())))
        .collect();
    assert_eq!(
        faults,
        [
            (
                FaultKind::AbnormalExit,
                "worker: exit (process.exit) in serve [ABNORMAL]"
            ),
            (
                FaultKind::Exception,
                "api: event exception in call [Timeout]"
            ),
            (FaultKind::ErrorStatus, "api: end call [ERROR: timed out]"),
        ]
    );
    let first = timeline.first_fault().unwrap();
    assert_eq!(first.fault.kind, FaultKind::AbnormalExit);
    let path: Vec<&str> = first.span_path.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(path, ["request", "call", "serve"]);
    let chain: Vec<&str> = first
        .causal_chain
        .iter()
        .map(|e| e.label.as_str())
        .collect();
    assert_eq!(
        chain,
        [
            "api: receive request (SERVER)",
            "api: send call (CLIENT)",
            "worker: receive serve (SERVER)",
            "worker: exit (process.exit) in serve [ABNORMAL]"
        ]
    );
    assert_eq!(first.snapshot.index, first.fault.event.index);
    let worker = first
        .snapshot
        .services
        .iter()
        .find(|s| s.service == "worker")
        .unwrap();
    assert_eq!(worker.status, crate::ServiceStatus::Exited);
    assert_eq!(
        timeline.latest().unwrap().last_error.unwrap().kind,
        FaultKind::ErrorStatus
    );
}

#[test]
fn snapshots_show_every_service_open_spans_and_messages_in_flight() {
    let mut producer = timed(
        span(1, None, "fpv-ops", "publish_lock_request_striker"),
        SpanKind::Producer,
        0,
        1,
    );
    producer.attributes.push(KeyValue::new(
        "messaging.destination.name",
        "striker_control_channel",
    ));
    let consumer = timed(
        span(2, Some(1), "striker", "consume_striker_control_channel"),
        SpanKind::Consumer,
        5,
        8,
    );
    let timeline = Timeline::build(vec![producer, consumer]);
    let after_send = timeline.snapshot_at(1).unwrap();
    assert_eq!(
        after_send.label,
        "fpv-ops: end publish_lock_request_striker"
    );
    assert_eq!(after_send.in_flight.len(), 1);
    assert_eq!(
        after_send.in_flight[0].destination.as_deref(),
        Some("striker_control_channel")
    );
    let striker = after_send
        .services
        .iter()
        .find(|s| s.service == "striker")
        .unwrap();
    assert_eq!(striker.status, crate::ServiceStatus::NotStarted);
    let received = timeline.snapshot_at(2).unwrap();
    assert!(received.in_flight.is_empty());
    let striker = received
        .services
        .iter()
        .find(|s| s.service == "striker")
        .unwrap();
    assert_eq!(striker.status, crate::ServiceStatus::Alive);
    assert_eq!(striker.open_spans.len(), 1);
    assert_eq!(received.open_span_count, 1);
    assert_eq!(received.at_us, 5_000);
    assert!(matches!(
        timeline.snapshot_at(4),
        Err(crate::ReplayError::IndexOutOfRange { index: 4, len: 4 })
    ));
    assert!(Timeline::build(vec![]).latest().is_none());
    let page = timeline.page(1, 2);
    assert_eq!(
        (page.offset, page.events.len(), page.summary.event_count),
        (1, 2, 4)
    );
    assert_eq!(page.events[0].index, 1);
    assert!(timeline.page(10, 5).events.is_empty());
}

#[test]
fn a_fifty_thousand_span_trace_builds_steps_and_signs() {
    const N: u64 = 50_000;
    // A wide trace: a root, 500 consumers, each with 99 children, some with events.
    let mut spans = vec![timed(
        span(1, None, "root", "fan_out"),
        SpanKind::Producer,
        0,
        1,
    )];
    let mut id = 2;
    while id <= N {
        let consumer = id;
        spans.push(timed(
            span(consumer, Some(1), "consumer", "handle"),
            SpanKind::Consumer,
            2,
            2 + 100,
        ));
        id += 1;
        for k in 0..99 {
            if id > N {
                break;
            }
            let mut s = timed(
                span(id, Some(consumer), "worker", "step"),
                SpanKind::Internal,
                3 + k,
                4 + k,
            );
            if k % 10 == 0 {
                event(&mut s, 3 + k, "checkpoint", vec![]);
            }
            spans.push(s);
            id += 1;
        }
    }
    let timeline = Timeline::build(spans);
    assert_eq!(timeline.spans().len(), N as usize);
    assert!(timeline.len() > 2 * N as usize);
    let mut cursor = timeline.cursor();
    for _ in 0..1_000 {
        cursor.step_forward().unwrap();
    }
    let middle = timeline.len() / 2;
    cursor.jump_to(middle).unwrap();
    for _ in 0..200 {
        cursor.step_back().unwrap();
    }
    assert_eq!(cursor.position(), Some(middle - 200));
    assert_eq!(cursor.snapshot(), timeline.snapshot_at(middle - 200).ok());
    assert_eq!(timeline.latest().unwrap().open_span_count, 0);
    assert_eq!(timeline.trace_signature().len(), 64);

    // And a 50,000-deep chain, which must not overflow any stack.
    let chain: Vec<Span> = (1..=N)
        .map(|i| {
            timed(
                span(
                    i,
                    (i > 1).then(|| i - 1),
                    if i % 2 == 0 { "a" } else { "b" },
                    "hop",
                ),
                SpanKind::Internal,
                i,
                2 * N - i,
            )
        })
        .collect();
    let deep = Timeline::build(chain.clone());
    assert_eq!(deep.len(), 2 * N as usize);
    assert_eq!(deep.latest().unwrap().open_span_count, 0);
    assert_eq!(
        deep.snapshot_at(N as usize - 1).unwrap().open_span_count,
        N as usize
    );
    assert_eq!(deep.canonical_steps().len(), 2 * N as usize);
    let d = diff(&chain, &chain);
    assert!(d.is_empty());
}

#[test]
fn edit_paths_name_the_ancestry_and_shorten_deep_ones() {
    let chain = |depth: u64, last: &str| -> Vec<Span> {
        (1..=depth)
            .map(|i| {
                let name = if i == depth {
                    last.to_string()
                } else {
                    format!("level{i}")
                };
                timed(
                    span(i, (i > 1).then(|| i - 1), "svc", &name),
                    SpanKind::Internal,
                    i,
                    100 - i,
                )
            })
            .collect()
    };
    let d = diff(&chain(3, "leaf"), &chain(3, "other"));
    assert_eq!(d.edits.len(), 1);
    assert_eq!(d.edits[0].path, "svc/level1 > svc/level2 > svc/leaf");
    assert_eq!(d.edits[0].changes[0].actual, "other");

    let d = diff(&chain(30, "leaf"), &chain(30, "other"));
    assert_eq!(
        d.edits[0].path,
        "svc/level1 > svc/level2 > … > svc/level23 > svc/level24 > svc/level25 > svc/level26 > svc/level27 > svc/level28 > svc/level29 > svc/leaf"
    );

    // Same-named siblings are matched by occurrence; a removed second one is named so.
    let mut two = chain(1, "root");
    two.push(timed(
        span(2, Some(1), "svc", "call"),
        SpanKind::Client,
        2,
        3,
    ));
    two.push(timed(
        span(3, Some(1), "svc", "call"),
        SpanKind::Client,
        4,
        5,
    ));
    let d = diff(&two, &two[..2]);
    assert_eq!(d.edits.len(), 1);
    assert_eq!(d.edits[0].op, EditOp::Deleted);
    assert_eq!(d.edits[0].path, "svc/root > svc/call[1]");
}
