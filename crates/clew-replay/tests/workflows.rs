//! Seeded flows, double runs, verification, golden files, diffs and bundles, through
//! the public API as the CLI and the HTTP API use them.

use std::collections::{BTreeMap, BTreeSet};

use clew_model::{Span, StatusCode};
use clew_replay::bundle::{self, BundleRequest, Completeness, Workflow};
use clew_replay::flows::{self, Fault, Flow, FlowSpec, FlowTrace};
use clew_replay::verify::{GoldenError, Side};
use clew_replay::{
    Assertion, EditOp, Golden, GoldenMode, GoldenOutcome, SignatureOptions, Timeline, VerifyResult,
    check_golden_file, diff, trace_signature, verify, verify_flow,
};

fn run(flow: Flow, seed: u64) -> Vec<FlowTrace> {
    flows::generate(&FlowSpec::new(flow, seed)).unwrap().traces
}

fn spans(traces: &[FlowTrace]) -> Vec<Vec<Span>> {
    traces.iter().map(|t| t.spans.clone()).collect()
}

#[test]
fn the_same_seed_gives_the_same_bytes_and_signatures() {
    for flow in Flow::ALL {
        let a = flows::generate(&FlowSpec::new(flow, 42)).unwrap();
        let b = flows::generate(&FlowSpec::new(flow, 42)).unwrap();
        assert_eq!(a.to_json(), b.to_json(), "{flow}");
        let check = flows::double_run_check(&FlowSpec::new(flow, 42)).unwrap();
        assert!(check.identical, "{flow}: {check:?}");
        for t in &check.traces {
            assert_eq!(t.trace_signatures[0], t.trace_signatures[1]);
            assert_eq!(t.timeline_signatures[0], t.timeline_signatures[1]);
        }
    }
    let check = flows::double_run_check(&FlowSpec::new(Flow::Drone, 5).with_fault(Fault::AresDown))
        .unwrap();
    assert!(check.identical);
}

#[test]
fn another_seed_gives_other_bytes_and_for_most_flows_another_shape() {
    for flow in Flow::ALL {
        let a = flows::generate(&FlowSpec::new(flow, 1)).unwrap();
        let b = flows::generate(&FlowSpec::new(flow, 2)).unwrap();
        assert_ne!(a.to_json(), b.to_json(), "{flow}");
        let cmp = flows::compare_runs(&a.traces, &b.traces);
        assert!(!cmp.identical);
        assert_eq!(
            cmp.traces[0].first_divergence.as_ref().map(|d| d.index),
            Some(0),
            "ids differ from the first event"
        );
    }
    for flow in [Flow::Runtime, Flow::Session, Flow::Pipeline] {
        let shapes: BTreeSet<String> = (0..12)
            .map(|seed| trace_signature(&run(flow, seed)[0].spans))
            .collect();
        assert!(
            shapes.len() > 1,
            "{flow} should vary in shape with the seed"
        );
    }
    // The drone story has one shape whatever the seed.
    let shapes: BTreeSet<String> = (0..6)
        .map(|seed| trace_signature(&run(Flow::Drone, seed)[1].spans))
        .collect();
    assert_eq!(shapes.len(), 1);
}

#[test]
fn double_run_reports_where_a_changed_run_diverges() {
    let a = run(Flow::Drone, 9);
    let mut b = a.clone();
    let span = b[1]
        .spans
        .iter_mut()
        .find(|s| s.name == "execute_judgment")
        .unwrap();
    span.name = "execute_mercy".into();
    let cmp = flows::compare_runs(&a, &b);
    assert!(!cmp.identical);
    assert!(cmp.traces[0].first_divergence.is_none());
    let d = cmp.traces[1].first_divergence.as_ref().unwrap();
    assert!(
        d.expected.as_deref().unwrap().contains("execute_judgment"),
        "{d}"
    );
    assert!(
        d.actual.as_deref().unwrap().contains("execute_mercy"),
        "{d}"
    );
    assert!(
        d.to_string()
            .starts_with("expected ares: start execute_judgment")
    );
}

#[test]
fn faults_apply_to_the_drone_only_and_names_parse() {
    assert!(matches!(
        flows::generate(&FlowSpec::new(Flow::Runtime, 1).with_fault(Fault::AresDown)),
        Err(flows::FlowError::FaultNotApplicable { .. })
    ));
    assert_eq!("ares-down".parse::<Fault>().unwrap(), Fault::AresDown);
    assert_eq!(
        "Lost-Death-Notice".parse::<Fault>().unwrap(),
        Fault::LostDeathNotice
    );
    assert!("meteor".parse::<Fault>().is_err());
    assert_eq!("pipeline".parse::<Flow>().unwrap(), Flow::Pipeline);
    let err = "etl".parse::<Flow>().unwrap_err();
    assert!(err.to_string().contains("expected one of"));
}

#[test]
fn seeded_flows_have_their_faults_where_the_story_puts_them() {
    let runtime = Timeline::build(run(Flow::Runtime, 4).remove(0).spans);
    let first = runtime.first_fault().unwrap();
    assert_eq!(first.fault.kind, clew_replay::FaultKind::AbnormalExit);
    assert_eq!(first.fault.event.service, "sandbox");
    assert_eq!(first.span_path[0].name, "POST /v1/runs");

    let session = Timeline::build(run(Flow::Session, 4).remove(0).spans);
    let first = session.first_fault().unwrap();
    assert_eq!(first.fault.event.service, "session-store");
    assert!(
        session
            .events()
            .iter()
            .any(|e| e.event_name.as_deref() == Some("session.resumed"))
    );
    let latest = session.latest().unwrap();
    let store = latest
        .services
        .iter()
        .find(|s| s.service == "session-store")
        .unwrap();
    assert_eq!(
        store.status,
        clew_replay::ServiceStatus::Alive,
        "restarted after the kill"
    );

    let pipeline = Timeline::build(run(Flow::Pipeline, 4).remove(0).spans);
    assert!(pipeline.first_fault().is_none());
    assert!(pipeline.latest().unwrap().in_flight.is_empty());
}

#[test]
fn verify_accepts_a_rerun_and_reports_a_changed_service() {
    let recorded = run(Flow::Drone, 21);
    let rerun = run(Flow::Drone, 21);
    let result = verify(&recorded[1].spans, &rerun[1].spans);
    assert!(result.is_ok(), "{result}");
    assert_eq!(result.exit_code(), 0);

    // Another seed: other ids and timings, same behaviour.
    let other_seed = run(Flow::Drone, 22);
    assert!(verify(&recorded[1].spans, &other_seed[1].spans).is_ok());

    // ares behaving differently (down) is a divergence with a position.
    let broken =
        flows::generate(&FlowSpec::new(Flow::Drone, 21).with_fault(Fault::AresDown)).unwrap();
    let result = verify(&recorded[1].spans, &broken.traces[1].spans);
    let VerifyResult::Divergence {
        index,
        expected,
        actual,
        ..
    } = &result
    else {
        panic!("expected a divergence, got {result}");
    };
    assert!(*index > 0);
    assert_ne!(expected, actual);
    assert_eq!(result.exit_code(), 1);
    assert!(result.to_string().contains(&format!("at step {index}")));

    let result = verify(&[], &rerun[1].spans);
    assert!(matches!(
        result,
        VerifyResult::InvalidTrace {
            side: Side::Recorded,
            ..
        }
    ));
    assert_eq!(result.exit_code(), 2);
    let mut orphaned = rerun[1].spans.clone();
    orphaned.retain(|s| s.name != "execute_intercept");
    let result = verify(&recorded[1].spans, &orphaned);
    let VerifyResult::InvalidTrace { side, reason, .. } = &result else {
        panic!("{result}");
    };
    assert_eq!(*side, Side::Rerun);
    assert!(reason.contains("incomplete"), "{reason}");

    // Re-running the seeded flow against a recording.
    let spec = FlowSpec::new(Flow::Drone, 21);
    assert!(
        verify_flow(&spec, &spans(&recorded), &SignatureOptions::default())
            .unwrap()
            .is_ok()
    );
    let lost = FlowSpec::new(Flow::Drone, 21).with_fault(Fault::LostDeathNotice);
    let result = verify_flow(&lost, &spans(&recorded), &SignatureOptions::default()).unwrap();
    let VerifyResult::Divergence { trace, .. } = &result else {
        panic!("{result}");
    };
    assert_eq!(trace, "intercept_execution");
}

#[test]
fn golden_files_are_created_matched_failed_and_required_in_ci() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("drone.golden.json");
    let labelled = |traces: Vec<FlowTrace>| -> Vec<(String, Vec<Span>)> {
        traces.into_iter().map(|t| (t.label, t.spans)).collect()
    };
    let options = SignatureOptions::default();
    let ci = GoldenMode {
        ci: true,
        update: false,
    };
    let local = GoldenMode::default();

    let outcome =
        check_golden_file(&path, &labelled(run(Flow::Drone, 1)), &options, None, ci).unwrap();
    assert_eq!(outcome, GoldenOutcome::MissingInCi);
    assert_eq!(outcome.exit_code(), 1);
    assert!(!path.exists(), "CI never writes a golden file");

    let mut template = Golden::for_flow(&FlowSpec::new(Flow::Drone, 1), &options).unwrap();
    template.assertions = vec![
        Assertion::exactly("span[event=drone_destroyed]", 2),
        Assertion::at_least(r#"span[service=ares name=receive_prayer]"#, 2),
    ];
    let outcome = check_golden_file(
        &path,
        &labelled(run(Flow::Drone, 1)),
        &options,
        Some(&template),
        local,
    )
    .unwrap();
    assert_eq!(outcome, GoldenOutcome::Created);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("\"format\": \"clew-replay-golden/1\""));
    assert!(
        text.contains("start ares/execute_judgment INTERNAL links=1"),
        "steps are readable"
    );
    assert!(
        text.contains("start striker/execute_intercept INTERNAL links=1"),
        "execute_intercept continues the flight_mission trace"
    );
    let golden = Golden::from_json(&text).unwrap();
    // lock request, intercept execution, striker's flight_mission
    assert_eq!(golden.traces.len(), 3);
    assert_eq!(golden.assertions.len(), 2);

    // Another seed of the same story matches, in CI too.
    let outcome =
        check_golden_file(&path, &labelled(run(Flow::Drone, 2)), &options, None, ci).unwrap();
    assert_eq!(outcome, GoldenOutcome::Matched);

    let broken =
        flows::generate(&FlowSpec::new(Flow::Drone, 1).with_fault(Fault::LostDeathNotice)).unwrap();
    let outcome =
        check_golden_file(&path, &labelled(broken.traces.clone()), &options, None, ci).unwrap();
    let GoldenOutcome::Failed { result } = &outcome else {
        panic!("{outcome:?}");
    };
    assert!(matches!(result, VerifyResult::Divergence { .. }));
    assert_eq!(outcome.exit_code(), 1);

    // An assertion that no longer holds fails even when the structure is recorded.
    let outcome = check_golden_file(
        &path,
        &labelled(broken.traces.clone()),
        &options,
        None,
        GoldenMode {
            ci: false,
            update: true,
        },
    )
    .unwrap();
    assert_eq!(outcome, GoldenOutcome::Updated);
    let outcome = check_golden_file(&path, &labelled(broken.traces), &options, None, ci).unwrap();
    let GoldenOutcome::Failed { result } = &outcome else {
        panic!("{outcome:?}");
    };
    assert!(
        matches!(
            result,
            VerifyResult::AssertionFailed {
                matched: 1,
                min: 2,
                ..
            }
        ),
        "{result}"
    );

    std::fs::write(&path, "{\"format\": \"something-else\"}").unwrap();
    assert!(matches!(
        check_golden_file(&path, &[], &options, None, ci),
        Err(GoldenError::Parse { .. } | GoldenError::Format { .. })
    ));
}

#[test]
fn diff_reports_edits_durations_and_the_first_divergence() {
    let normal = run(Flow::Drone, 5).remove(1).spans;
    let down = flows::generate(&FlowSpec::new(Flow::Drone, 5).with_fault(Fault::AresDown))
        .unwrap()
        .traces
        .remove(1)
        .spans;
    let d = diff(&normal, &down);
    assert!(!d.is_empty());
    let deleted: Vec<&str> = d
        .edits
        .iter()
        .filter(|e| e.op == EditOp::Deleted)
        .map(|e| e.path.as_str())
        .collect();
    assert_eq!(deleted.len(), 2, "{deleted:?}");
    assert!(deleted.iter().all(|p| p.ends_with("ares/receive_prayer")));
    let striker_prayer_subtree = d
        .edits
        .iter()
        .filter(|e| e.op == EditOp::Deleted)
        .map(|e| e.subtree_spans)
        .max()
        .unwrap();
    assert_eq!(
        striker_prayer_subtree, 13,
        "judgment, notices and their consumers go with it"
    );
    let changed: Vec<_> = d.edits.iter().filter(|e| e.op == EditOp::Changed).collect();
    assert_eq!(changed.len(), 2);
    for c in changed {
        assert!(c.path.ends_with("send_prayer_tcp"));
        let fields: Vec<&str> = c.changes.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, ["status", "events"]);
        assert_eq!(c.actual.as_ref().unwrap().status, "ERROR");
    }
    let div = d.first_divergence.as_ref().unwrap();
    assert!(div.to_string().starts_with("expected "));
    // Located on both timelines: where ares received the prayer in the expected run,
    // the refused prayer's exception in the actual one.
    let (normal_timeline, down_timeline) = (
        Timeline::build(normal.clone()),
        Timeline::build(down.clone()),
    );
    let expected_event = normal_timeline.event(div.index).unwrap();
    let actual_event = down_timeline.event(div.actual_index.unwrap()).unwrap();
    assert_eq!(
        (
            expected_event.service.as_str(),
            expected_event.span_name.as_str()
        ),
        ("ares", "receive_prayer"),
        "{div}"
    );
    assert_eq!(actual_event.span_name, "send_prayer_tcp", "{div}");
    assert_eq!(
        actual_event.event_name.as_deref(),
        Some("exception"),
        "{div}"
    );
    assert!(
        div.expected
            .as_deref()
            .unwrap()
            .starts_with("ares: receive receive_prayer")
            && div
                .actual
                .as_deref()
                .unwrap()
                .starts_with("striker: event exception in send_prayer_tcp"),
        "{div}"
    );

    // Same story, another seed: nothing inserted or deleted, only durations moved.
    let other = run(Flow::Drone, 6).remove(1).spans;
    let d = diff(&normal, &other);
    assert!(d.edits.is_empty(), "{:?}", d.edits);
    assert_eq!(d.durations.len(), 29);
    assert!(!d.largest_duration_changes(3).is_empty());
    assert!(d.largest_duration_changes(3)[0].delta_us != 0);
}

#[test]
fn bundles_check_readiness_and_survive_export_and_import() {
    let down = flows::generate(&FlowSpec::new(Flow::Drone, 3).with_fault(Fault::AresDown))
        .unwrap()
        .traces
        .remove(1)
        .spans;
    let mut request = BundleRequest {
        workflow: Workflow::Fault,
        params: BTreeMap::new(),
        completeness: Completeness::Active,
    };
    let b = bundle::build_bundle(down.clone(), &request).unwrap();
    assert!(!b.readiness.ready);
    assert_eq!(
        b.readiness.missing(),
        ["complete: the trace is still active; spans may still arrive"]
    );

    request.completeness = Completeness::Complete;
    request.params.insert(
        bundle::PARAM_REQUIRE.into(),
        r#"span[service=striker name=execute_intercept]"#.into(),
    );
    let b = bundle::build_bundle(down.clone(), &request).unwrap();
    assert!(b.readiness.ready, "{:?}", b.readiness);
    assert_eq!(
        b.first_fault.as_ref().unwrap().fault.span_name,
        "send_prayer_tcp"
    );

    let text = b.to_json();
    let back = bundle::Bundle::from_json(&text).unwrap();
    assert_eq!(back, b);
    assert_eq!(back.timeline().trace_signature(), b.trace_signature);

    // The signature binds the parameters and the spans.
    let tampered = text.replace("execute_intercept]", "calculate_intercept_commands]");
    assert!(matches!(
        bundle::Bundle::from_json(&tampered),
        Err(bundle::BundleError::Tampered(_))
    ));
    let mut other = b.clone();
    other.spans.retain(|s| s.status.code != StatusCode::Error);
    assert!(matches!(
        bundle::Bundle::from_json(&other.to_json()),
        Err(bundle::BundleError::Tampered(_))
    ));
    let mut request2 = request.clone();
    request2.params.clear();
    assert_ne!(
        bundle::build_bundle(down.clone(), &request2)
            .unwrap()
            .signature,
        b.signature
    );

    // The healthy story has nothing to triage.
    let healthy = run(Flow::Drone, 3).remove(1).spans;
    let b = bundle::build_bundle(healthy.clone(), &request).unwrap();
    assert!(!b.readiness.ready);
    assert!(b.readiness.missing()[0].starts_with("fault_found"));

    // ETL: the pipeline is ready; the drone trace has no ETL stages.
    let etl = BundleRequest {
        workflow: Workflow::Etl,
        params: BTreeMap::new(),
        completeness: Completeness::Complete,
    };
    let b = bundle::build_bundle(run(Flow::Pipeline, 8).remove(0).spans, &etl).unwrap();
    assert!(b.readiness.ready, "{:?}", b.readiness);
    let b = bundle::build_bundle(healthy, &etl).unwrap();
    assert!(!b.readiness.ready);
    assert!(
        b.readiness
            .missing()
            .iter()
            .any(|m| m.starts_with("stage_1"))
    );
    assert!(
        b.readiness
            .missing()
            .iter()
            .any(|m| m.starts_with("batches_delivered"))
    );

    let mut bad = etl.clone();
    bad.params
        .insert(bundle::PARAM_STAGES.into(), "span[".into());
    assert!(matches!(
        bundle::build_bundle(vec![], &bad),
        Err(bundle::BundleError::Selector { .. })
    ));
    assert!("triage".parse::<Workflow>().is_err());
}

/// Parallel consumers of one message may run in either order; a diff of two such runs
/// finds no divergence, though their timelines interleave differently.
#[test]
fn diff_ignores_how_concurrent_branches_interleaved() {
    let normal = run(Flow::Drone, 5).remove(1).spans;
    let timeline = Timeline::build(normal.clone());
    // Two CONSUMER spans of the same message in different services: the fan-out.
    let (first, second) = timeline
        .spans()
        .iter()
        .enumerate()
        .flat_map(|(i, a)| timeline.spans()[i + 1..].iter().map(move |b| (a, b)))
        .find(|(a, b)| {
            a.parent_span_id == b.parent_span_id
                && a.kind == clew_model::SpanKind::Consumer
                && b.kind == clew_model::SpanKind::Consumer
                && a.service_name() != b.service_name()
        })
        .expect("a fan-out to two consumers");
    let (earlier, later) = if first.start_unix_nano <= second.start_unix_nano {
        (first, second)
    } else {
        (second, first)
    };
    // Move the earlier consumer's whole subtree to after the later one has ended.
    let shift = later.end_unix_nano - earlier.start_unix_nano + 1_000;
    let mut moved: BTreeSet<clew_model::SpanId> = BTreeSet::from([earlier.span_id]);
    let mut reordered = normal.clone();
    let mut grew = true;
    while grew {
        grew = false;
        for span in &reordered {
            if span.parent_span_id.is_some_and(|p| moved.contains(&p)) {
                grew |= moved.insert(span.span_id);
            }
        }
    }
    for span in &mut reordered {
        if moved.contains(&span.span_id) {
            span.start_unix_nano += shift;
            span.end_unix_nano += shift;
            for event in &mut span.events {
                event.time_unix_nano += shift;
            }
        }
    }
    let reordered_timeline = Timeline::build(reordered.clone());
    assert!(
        timeline.first_divergence(&reordered_timeline).is_some(),
        "the shift must change the interleaving for this test to mean anything"
    );
    let d = diff(&normal, &reordered);
    assert!(d.edits.is_empty(), "{:?}", d.edits);
    assert_eq!(d.first_divergence, None);
    assert!(d.is_empty());
}
