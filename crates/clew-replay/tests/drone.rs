//! The drone scenario as replay sees it: the story without faults, and the two
//! injected faults, each found and explained.

use clew_model::{Span, SpanKind};
use clew_replay::flows::{self, Fault, Flow, FlowSpec};
use clew_replay::{EventKind, FaultKind, Selector, ServiceStatus, Timeline};

fn drone(seed: u64, faults: &[Fault]) -> Vec<Vec<Span>> {
    let mut spec = FlowSpec::new(Flow::Drone, seed);
    for &f in faults {
        spec = spec.with_fault(f);
    }
    flows::generate(&spec)
        .unwrap()
        .traces
        .into_iter()
        .map(|t| t.spans)
        .collect()
}

fn intercept(seed: u64, faults: &[Fault]) -> Timeline {
    let mut traces = drone(seed, faults);
    Timeline::build(traces.remove(1))
}

#[test]
fn the_story_has_the_seed_documents_shape() {
    let traces = drone(7, &[]);
    // lock request, intercept execution and striker's flight_mission, which
    // execute_intercept continues (a link to the other trace).
    assert_eq!(traces.len(), 3);
    assert_eq!(traces[2].len(), 1);
    assert_eq!(traces[2][0].name, "flight_mission");
    let exec = traces[1]
        .iter()
        .find(|s| s.name == "execute_intercept")
        .unwrap();
    assert_eq!(exec.links.len(), 1);
    assert_eq!(exec.links[0].span_id, traces[2][0].span_id);
    let lock = Timeline::build(traces[0].clone());
    assert_eq!(lock.spans().len(), 5);
    assert_eq!(
        lock.services(),
        ["drone-cmd", "fpv-ops", "striker", "tower-sidecar"]
    );
    let labels: Vec<&str> = lock.events().iter().map(|e| e.label.as_str()).collect();
    assert_eq!(
        labels[0],
        "fpv-ops: send publish_lock_request_striker (PRODUCER) → striker_control_channel"
    );
    assert!(
        labels.contains(&"striker: event lock_request_received in consume_striker_control_channel")
    );
    assert!(
        labels.contains(&"drone-cmd: event interceptor_locked in consume_striker_control_channel")
    );

    let t = Timeline::build(traces[1].clone());
    assert_eq!(t.spans().len(), 29);
    assert_eq!(
        t.services(),
        [
            "ares",
            "drone-cmd",
            "fpv-ops",
            "orlan",
            "striker",
            "tower-sidecar"
        ]
    );
    for trace in &traces {
        let id = trace[0].trace_id;
        assert!(trace.iter().all(|s| s.trace_id == id));
        let ms = id.v7_unix_ms().expect("trace ids are UUIDv7");
        assert!(ms >= flows::EPOCH_UNIX_MS);
    }
    // The seed's steps, found by selector.
    let find = |sel: &str| t.select(&Selector::parse(sel).unwrap()).len();
    assert_eq!(
        find(r#"span[service="striker" name="execute_intercept"]"#),
        1
    );
    assert_eq!(
        find(r#"span[service=ares name=receive_prayer kind=SERVER]"#),
        2
    );
    assert_eq!(
        find(r#"span[kind=PRODUCER name^=publish_death] > span[kind=CONSUMER]"#),
        6
    );
    // publish_death_notice, the two publishes, and their eight consumers and forwards.
    assert_eq!(
        find(r#"span[name=execute_intercept] span[name~="death"]"#),
        11
    );
    assert_eq!(find(r#"span[service=ares] span[event=drone_destroyed]"#), 2);
    assert_eq!(
        find("span[attr.process.exit.code]"),
        0,
        "the exit code is on the event"
    );
}

#[test]
fn exits_after_death_notices_are_the_story_not_faults() {
    let t = intercept(7, &[]);
    assert!(t.first_fault().is_none());
    assert_eq!(t.fault_indices().count(), 0);
    let exits: Vec<&str> = t
        .events()
        .iter()
        .filter(|e| e.kind == EventKind::ProcessExit)
        .map(|e| e.label.as_str())
        .collect();
    assert_eq!(exits.len(), 2);
    assert!(exits.contains(&"striker: exit (drone_destroyed, code 666) in consume_death-knell"));
    assert!(exits.contains(&"orlan: exit (drone_destroyed, code 666) in consume_death-knell"));

    let latest = t.latest().unwrap();
    let status = |svc: &str| {
        latest
            .services
            .iter()
            .find(|s| s.service == svc)
            .unwrap()
            .status
    };
    assert_eq!(status("striker"), ServiceStatus::Exited);
    assert_eq!(status("orlan"), ServiceStatus::Exited);
    assert_eq!(status("ares"), ServiceStatus::Alive);
    assert_eq!(latest.open_span_count, 0);
    assert!(latest.last_error.is_none());
    // Only the sidecar's re-broadcasts, which no one in the trace consumes, stay in
    // flight.
    assert!(
        latest
            .in_flight
            .iter()
            .all(|m| m.span.name.starts_with("tower_forward_"))
    );
    assert_eq!(latest.in_flight.len(), 4);
}

#[test]
fn orlans_slow_clock_never_puts_its_receive_before_the_send() {
    let t = intercept(11, &[]);
    let send = t
        .events()
        .iter()
        .find(|e| e.kind == EventKind::MessageSend && e.span_name == "publish_death_orlan")
        .unwrap();
    let receive = t
        .events()
        .iter()
        .find(|e| e.kind == EventKind::MessageReceive && e.service == "orlan")
        .unwrap();
    assert!(
        receive.raw_unix_nano < send.raw_unix_nano,
        "the recorded clock says orlan received before ares sent"
    );
    assert!(receive.index > send.index);
    assert!(receive.corrected_unix_nano >= send.corrected_unix_nano);

    // ares judged only after both prayers: the link orders the judgment.
    let judged = t
        .events()
        .iter()
        .find(|e| e.span_name == "execute_judgment")
        .unwrap();
    let prayers: Vec<usize> = t
        .events()
        .iter()
        .filter(|e| e.span_name == "receive_prayer" && e.kind == EventKind::MessageReceive)
        .map(|e| e.index)
        .collect();
    assert_eq!(prayers.len(), 2);
    assert!(prayers.iter().all(|&p| p < judged.index));
}

#[test]
fn ares_down_first_fault_is_a_refused_prayer_explained_by_its_ancestors() {
    let t = intercept(7, &[Fault::AresDown]);
    assert!(!t.services().iter().any(|s| s == "ares"));
    let first = t.first_fault().expect("a fault");
    assert_eq!(first.fault.kind, FaultKind::Exception);
    assert_eq!(first.fault.span_name, "send_prayer_tcp");
    assert!(
        first.fault.message.contains("ConnectionRefusedError"),
        "{}",
        first.fault.message
    );
    let failed = first.span_path.last().unwrap();
    assert_eq!(failed.kind, SpanKind::Client);
    let path: Vec<String> = first
        .span_path
        .iter()
        .map(|s| format!("{}/{}", s.service, s.name))
        .collect();
    assert_eq!(
        path.first().unwrap(),
        "drone-cmd/calculate_intercept_commands"
    );
    assert!(path.contains(&"striker/execute_intercept".to_string()));
    assert!(path[path.len() - 2].ends_with("request_strike_authorization"));
    // The chain ends at the fault and is in timeline order.
    assert_eq!(
        first.causal_chain.last().unwrap().index,
        first.fault.event.index
    );
    assert!(
        first
            .causal_chain
            .windows(2)
            .all(|w| w[0].index < w[1].index)
    );
    // Both prayers fail; the later one is the last error.
    let errors: Vec<usize> = t.fault_indices().collect();
    assert_eq!(
        errors.len(),
        4,
        "an exception and an error status per prayer"
    );
    assert!(t.latest().unwrap().last_error.is_some());
    let snapshot = &first.snapshot;
    let striker = snapshot
        .services
        .iter()
        .find(|s| s.service == "striker")
        .unwrap();
    assert_eq!(striker.status, ServiceStatus::Alive);
    assert!(
        striker
            .open_spans
            .iter()
            .any(|s| s.name == "send_prayer_tcp")
    );
}

#[test]
fn lost_death_notice_first_fault_is_the_unreceived_publish() {
    let t = intercept(7, &[Fault::LostDeathNotice]);
    let first = t.first_fault().expect("a fault");
    assert_eq!(first.fault.kind, FaultKind::ErrorStatus);
    assert_eq!(first.fault.span_name, "publish_death_orlan");
    assert_eq!(
        first.fault.message,
        "death notice for orlan reached no subscriber"
    );
    let names: Vec<&str> = first.span_path.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        &names[names.len() - 4..],
        [
            "receive_prayer",
            "execute_judgment",
            "publish_death_notice",
            "publish_death_orlan"
        ]
    );
    // The other prayer, which ares waited for, is a linked cause.
    assert_eq!(first.linked_causes.len(), 1);
    assert_eq!(first.linked_causes[0].service, "ares");
    assert!(first.linked_causes[0].label.contains("receive_prayer"));

    assert!(
        !t.services().iter().any(|s| s == "orlan"),
        "orlan never heard"
    );
    let latest = t.latest().unwrap();
    assert!(
        latest
            .in_flight
            .iter()
            .any(|m| m.span.name == "publish_death_orlan"
                && m.destination.as_deref() == Some("death_knell"))
    );
    let striker = latest
        .services
        .iter()
        .find(|s| s.service == "striker")
        .unwrap();
    assert_eq!(striker.status, ServiceStatus::Exited);
}

#[test]
fn stepping_through_the_intercept_forward_and_back() {
    let t = intercept(3, &[Fault::AresDown]);
    let mut cursor = t.cursor();
    let mut seen = 0;
    while let Some(event) = cursor.step_forward() {
        assert_eq!(Some(event.index), cursor.position());
        seen += 1;
    }
    assert_eq!(seen, t.len());
    let fault = cursor.jump_to_first_fault().unwrap();
    assert_eq!(
        cursor.snapshot().unwrap(),
        t.first_fault().unwrap().snapshot
    );
    cursor.step_back();
    assert_eq!(cursor.position(), Some(fault - 1));
    assert!(cursor.snapshot().unwrap().last_error.is_none());
    cursor.rewind();
    assert!(cursor.snapshot().is_none());
}
