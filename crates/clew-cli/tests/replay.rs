//! `clew replay` and `/api/clew/replay/…` against a real server holding the seeded drone
//! scenario, with and without the `ares-down` fault.

mod support;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use clew_model::{Span, SpanId, TraceId};
use clew_replay::flows::{self, Fault, Flow, FlowSpec};
use support::{Clew, clew_binary, get_json};

const NORMAL_SEED: u64 = 7;
const FAULT_SEED: u64 = 8;

/// The flow's simulated epoch is 2025-01-01: without this the server's retention would
/// purge the traces as soon as it restarts.
const KEEP: &[&str] = &["--retention", "36500d"];

/// `(lock_request, intercept_execution)` of one drone run.
fn drone(seed: u64, fault: Option<Fault>) -> (Vec<Span>, Vec<Span>) {
    let mut spec = FlowSpec::new(Flow::Drone, seed);
    if let Some(fault) = fault {
        spec = spec.with_fault(fault);
    }
    let run = flows::generate(&spec).expect("generating the drone flow");
    let trace = |label: &str| {
        run.traces
            .iter()
            .find(|t| t.label == label)
            .unwrap_or_else(|| panic!("the drone flow has no {label} trace"))
            .spans
            .clone()
    };
    (trace("lock_request"), trace("intercept_execution"))
}

/// The same spans under fresh trace and span ids, as a second run of one seed would be
/// recorded by another deployment.
fn renumbered(spans: &[Span]) -> Vec<Span> {
    let old = spans[0].trace_id;
    let mut bytes = old.0;
    bytes[15] ^= 0x5a;
    bytes[14] ^= 0xa5;
    let new = TraceId(bytes);
    let remap = |id: SpanId| {
        let mut b = id.0;
        b[7] ^= 0x3c;
        SpanId(b)
    };
    spans
        .iter()
        .cloned()
        .map(|mut s| {
            s.trace_id = new;
            s.span_id = remap(s.span_id);
            s.parent_span_id = s.parent_span_id.map(remap);
            for link in &mut s.links {
                if link.trace_id == old {
                    link.trace_id = new;
                    link.span_id = remap(link.span_id);
                }
            }
            s
        })
        .collect()
}

fn id_of(spans: &[Span]) -> String {
    spans[0].trace_id.to_string()
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn ok(output: Output) -> String {
    let (stdout, stderr) = text(&output);
    assert!(
        output.status.success(),
        "clew failed ({:?}): {stderr}\n{stdout}",
        output.status
    );
    stdout
}

fn interactive(clew: &Clew, id: &str, commands: &str) -> Output {
    let mut child = Command::new(clew_binary())
        .args(["--http-addr", &clew.http.to_string(), "replay", id])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running clew replay");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(commands.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

struct Loaded {
    clew: Clew,
    _dir: tempfile::TempDir,
    normal: String,
    faulty: String,
    renumbered: String,
}

fn load() -> Loaded {
    let dir = tempfile::tempdir().unwrap();
    let clew = Clew::start_with(dir.path(), KEEP);
    let (normal_lock, normal) = drone(NORMAL_SEED, None);
    let (_, faulty) = drone(FAULT_SEED, Some(Fault::AresDown));
    let copy = renumbered(&normal);
    for spans in [&normal_lock, &normal, &faulty, &copy] {
        assert_eq!(clew.send_spans(spans), 200);
    }
    Loaded {
        normal: id_of(&normal),
        faulty: id_of(&faulty),
        renumbered: id_of(&copy),
        clew,
        _dir: dir,
    }
}

#[test]
fn http_api_answers_timeline_snapshot_diff_select_and_bundle() {
    let t = load();
    let api = |path: &str| get_json(&t.clew.api(path));

    let (status, page) = api(&format!("/api/clew/replay/{}", t.faulty));
    assert_eq!(status, 200, "{page}");
    let first_fault = page["summary"]["first_fault_index"]
        .as_u64()
        .expect("ares-down has a fault");
    assert!(page["summary"]["event_count"].as_u64().unwrap() > first_fault);
    assert_eq!(page["offset"], 0);
    assert!(!page["events"].as_array().unwrap().is_empty());

    let (status, page) = api(&format!(
        "/api/clew/replay/{}/timeline?offset=2&limit=3",
        t.faulty
    ));
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["offset"], 2);
    let events = page["events"].as_array().unwrap();
    assert_eq!(events.len(), 3);
    assert_eq!(events[0]["index"], 2);

    let (status, fault) = api(&format!(
        "/api/clew/replay/{}/snapshot?at=first_fault",
        t.faulty
    ));
    assert_eq!(status, 200, "{fault}");
    assert_eq!(fault["fault"]["span_name"], "send_prayer_tcp");
    assert_eq!(fault["snapshot"]["index"].as_u64(), Some(first_fault));
    assert!(!fault["span_path"].as_array().unwrap().is_empty());
    assert!(!fault["causal_chain"].as_array().unwrap().is_empty());

    let (status, snapshot) = api(&format!("/api/clew/replay/{}/snapshot?at=3", t.faulty));
    assert_eq!(status, 200, "{snapshot}");
    assert_eq!(snapshot["index"], 3);
    assert!(snapshot["services"].as_array().unwrap().len() > 1);
    let (status, latest) = api(&format!("/api/clew/replay/{}/snapshot?at=latest", t.faulty));
    assert_eq!(status, 200);
    assert_eq!(
        latest["index"].as_u64().unwrap() + 1,
        page["summary"]["event_count"].as_u64().unwrap()
    );

    // Without the fault there is none: exits after death notices are the story.
    let (status, page) = api(&format!("/api/clew/replay/{}", t.normal));
    assert_eq!(status, 200);
    assert!(page["summary"]["first_fault_index"].is_null(), "{page}");
    let (status, body) = api(&format!(
        "/api/clew/replay/{}/snapshot?at=first_fault",
        t.normal
    ));
    assert_eq!(status, 404);
    assert!(body["error"].as_str().unwrap().contains("no fault"));

    let (status, body) = api(&format!("/api/clew/replay/{}/snapshot?at=999999", t.normal));
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().contains("index 999999"),
        "{body}"
    );
    let (status, body) = api(&format!("/api/clew/replay/{}/snapshot?at=soon", t.normal));
    assert_eq!(status, 400, "{body}");
    let (status, _) = api("/api/clew/replay/0190c5a8e7b77c3a9d2f4e1b6a8c0d12/snapshot?at=0");
    assert_eq!(status, 404);
    let (status, _) = api("/api/clew/replay/not-a-trace");
    assert_eq!(status, 400);

    let (status, diff) = api(&format!(
        "/api/clew/replay/diff?a={}&b={}",
        t.normal, t.faulty
    ));
    assert_eq!(status, 200, "{diff}");
    let edits = diff["edits"].as_array().unwrap();
    assert!(!edits.is_empty());
    assert!(
        edits
            .iter()
            .any(|e| e["path"].as_str().unwrap().contains("send_prayer_tcp")),
        "{diff}"
    );
    assert!(!diff["first_divergence"].is_null());
    let (status, same) = api(&format!(
        "/api/clew/replay/diff?a={}&b={}",
        t.normal, t.renumbered
    ));
    assert_eq!(status, 200);
    assert!(same["edits"].as_array().unwrap().is_empty(), "{same}");
    let (status, _) = api(&format!("/api/clew/replay/diff?a={}", t.normal));
    assert_eq!(status, 400);

    let (status, selected) = api(&format!(
        "/api/clew/replay/{}/select?q=span[name=%22send_prayer_tcp%22]",
        t.faulty
    ));
    assert_eq!(status, 200, "{selected}");
    let spans = selected["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 2, "{selected}");
    assert!(spans.iter().all(|s| s["name"] == "send_prayer_tcp"));
    let (status, open) = api(&format!(
        "/api/clew/replay/{}/select?q=span[name=%22send_prayer_tcp%22]&at=0",
        t.faulty
    ));
    assert_eq!(status, 200);
    assert!(open["spans"].as_array().unwrap().is_empty(), "{open}");
    let (status, body) = api(&format!("/api/clew/replay/{}/select?q=span[", t.faulty));
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains('^'), "{body}");

    let (status, signature) = api(&format!("/api/clew/replay/{}/signature", t.normal));
    assert_eq!(status, 200);
    assert_eq!(signature["trace_signature"].as_str().unwrap().len(), 64);
    let (_, other) = api(&format!("/api/clew/replay/{}/signature", t.renumbered));
    assert_eq!(signature["trace_signature"], other["trace_signature"]);
    assert_eq!(signature["timeline_signature"], other["timeline_signature"]);

    let (status, bundle) = api(&format!(
        "/api/clew/replay/{}/bundle?workflow=fault",
        t.faulty
    ));
    assert_eq!(status, 200, "{bundle}");
    assert_eq!(bundle["workflow"], "fault");
    assert_eq!(
        bundle["first_fault"]["fault"]["span_name"],
        "send_prayer_tcp"
    );
    assert!(bundle["readiness"]["checks"].as_array().unwrap().len() >= 3);
    let (status, _) = api(&format!(
        "/api/clew/replay/{}/bundle?workflow=sightseeing",
        t.faulty
    ));
    assert_eq!(status, 400);
    let (status, body) = api(&format!(
        "/api/clew/replay/{}/bundle?workflow=fault&param=require=span[",
        t.faulty
    ));
    assert_eq!(status, 400, "{body}");
}

#[test]
fn cli_steps_snapshots_diffs_signs_and_bundles() {
    let t = load();
    let cli = |args: &[&str]| t.clew.cli(args);

    let out = ok(cli(&["replay", "snapshot", &t.faulty, "--first-fault"]));
    assert!(out.contains("first fault at index"), "{out}");
    assert!(out.contains("send_prayer_tcp"), "{out}");
    assert!(out.contains("causal chain"), "{out}");
    let out = ok(cli(&["replay", "snapshot", &t.normal, "--first-fault"]));
    assert!(out.contains("no fault"), "{out}");
    let out = ok(cli(&["replay", "snapshot", &t.normal, "--at", "2"]));
    assert!(out.starts_with("after event 2 at"), "{out}");
    let json: serde_json::Value = serde_json::from_str(&ok(cli(&[
        "replay", "snapshot", &t.normal, "--latest", "--json",
    ])))
    .unwrap();
    assert!(json["index"].as_u64().unwrap() > 10);
    let failed = cli(&["replay", "snapshot", &t.normal, "--at", "999999"]);
    assert!(!failed.status.success());
    assert!(
        text(&failed).1.contains("index 999999"),
        "{}",
        text(&failed).1
    );
    let failed = cli(&["replay", "snapshot", "0190c5a8e7b77c3a9d2f4e1b6a8c0d12"]);
    assert!(!failed.status.success());
    assert!(text(&failed).1.contains("not found"));

    let out = ok(cli(&["replay", "diff", &t.normal, &t.faulty]));
    assert!(out.contains("edit(s)"), "{out}");
    assert!(out.contains("send_prayer_tcp"), "{out}");
    assert!(out.contains("first divergence: expected"), "{out}");
    let out = ok(cli(&["replay", "diff", &t.normal, &t.renumbered]));
    assert!(out.contains("no differences"), "{out}");
    let json: serde_json::Value = serde_json::from_str(&ok(cli(&[
        "replay", "diff", &t.normal, &t.faulty, "--json",
    ])))
    .unwrap();
    assert!(!json["edits"].as_array().unwrap().is_empty());

    let signature = |id: &str| -> serde_json::Value {
        serde_json::from_str(&ok(cli(&["replay", "signature", id, "--json"]))).unwrap()
    };
    let (a, b) = (signature(&t.normal), signature(&t.renumbered));
    assert_ne!(t.normal, t.renumbered);
    assert_eq!(a["trace_signature"], b["trace_signature"]);
    assert_eq!(a["timeline_signature"], b["timeline_signature"]);
    assert_ne!(
        a["trace_signature"],
        signature(&t.faulty)["trace_signature"]
    );
    let out = ok(cli(&["replay", "signature", &t.normal]));
    assert!(
        out.contains(a["trace_signature"].as_str().unwrap()),
        "{out}"
    );

    let session = interactive(&t.clew, &t.faulty, "n\nn\np\nf\ns\nq\n");
    let out = ok(session);
    assert!(out.contains("[0/"), "{out}");
    assert!(out.contains("[1/"), "{out}");
    let stepped_back = out.split("replay> p").nth(1).expect("the p command echoed");
    assert!(stepped_back.trim_start().starts_with("[0/"), "{out}");
    assert!(
        out.contains("FAULT (exception)") || out.contains("FAULT ("),
        "{out}"
    );
    let after_fault = out.split("replay> f").nth(1).unwrap();
    assert!(after_fault.contains("send_prayer_tcp"), "{out}");
    assert!(after_fault.contains("last error"), "{out}");
    let out = ok(interactive(&t.clew, &t.normal, "f\ng 3\nl\n"));
    assert!(out.contains("no fault in this trace"), "{out}");
    assert!(out.contains("[3/"), "{out}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fault.json");
    let file_arg = file.to_str().unwrap();
    let out = ok(cli(&[
        "replay",
        "bundle",
        &t.faulty,
        "--workflow",
        "fault",
        "--param",
        "require=span[service=\"ares\"]",
        "-o",
        file_arg,
    ]));
    assert!(out.contains("wrote"), "{out}");
    let opened = ok(cli(&["replay", "open", file_arg]));
    assert!(opened.contains(&t.faulty), "{opened}");
    assert!(opened.contains("first fault at index"), "{opened}");
    assert!(opened.contains("send_prayer_tcp"), "{opened}");
    assert!(
        opened.contains("require=span[service=\"ares\"]"),
        "{opened}"
    );
    // A bundle edited after export is refused, not silently misread: in its findings
    // (the first occurrence is the summary's fault) or in its spans (the last).
    let exported = std::fs::read_to_string(&file).unwrap();
    let at = exported.rfind("\"send_prayer_tcp\"").unwrap();
    let in_spans = format!(
        "{}\"send_prayer_udp\"{}",
        &exported[..at],
        &exported[at + "\"send_prayer_tcp\"".len()..]
    );
    let in_findings = exported.replacen("\"send_prayer_tcp\"", "\"send_prayer_udp\"", 1);
    for altered in [in_findings, in_spans] {
        std::fs::write(&file, altered).unwrap();
        let failed = cli(&["replay", "open", file_arg]);
        assert!(!failed.status.success());
        assert!(text(&failed).1.contains("altered"), "{}", text(&failed).1);
    }
}

#[test]
fn verify_checks_recorded_traces_and_golden_files() {
    let dir = tempfile::tempdir().unwrap();
    let clew = Clew::start_with(dir.path(), KEEP);
    let (lock, intercept) = drone(NORMAL_SEED, None);
    // ares behaves differently: it judges under another name.
    let mut mutated = renumbered(&intercept);
    let judged = mutated
        .iter_mut()
        .find(|s| s.service_name() == "ares" && s.name == "execute_judgment")
        .expect("ares judges in the drone flow");
    judged.name = "execute_clemency".into();
    let (_, faulty) = drone(FAULT_SEED, Some(Fault::AresDown));
    for spans in [&lock, &intercept, &mutated, &faulty] {
        assert_eq!(clew.send_spans(spans), 200);
    }
    let seed = NORMAL_SEED.to_string();
    let verify = |extra: &[&str]| {
        let mut args = vec!["replay", "verify", "--flow", "drone", "--seed", &seed];
        args.extend_from_slice(extra);
        clew.cli(&args)
    };

    let out = ok(verify(&["--trace", &id_of(&intercept)]));
    assert!(out.starts_with("ok"), "{out}");
    ok(verify(&[
        "--trace",
        &id_of(&lock),
        "--trace",
        &id_of(&intercept),
    ]));
    let fault_seed = FAULT_SEED.to_string();
    ok(clew.cli(&[
        "replay",
        "verify",
        "--flow",
        "drone",
        "--seed",
        &fault_seed,
        "--fault",
        "ares-down",
        "--trace",
        &id_of(&faulty),
    ]));

    let failed = verify(&["--trace", &id_of(&mutated)]);
    let (_, stderr) = text(&failed);
    assert_eq!(failed.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("index"), "{stderr}");
    assert!(stderr.contains("execute_judgment"), "{stderr}");
    let failed = verify(&["--trace", "0190c5a8e7b77c3a9d2f4e1b6a8c0d12"]);
    assert_eq!(failed.status.code(), Some(3), "{}", text(&failed).1);
    assert!(text(&failed).1.contains("not found"));

    let golden = dir.path().join("drone.golden.json");
    let golden_arg = golden.to_str().unwrap();
    let failed = verify(&["--golden", golden_arg, "--ci"]);
    assert_eq!(failed.status.code(), Some(1));
    assert!(text(&failed).1.contains("--ci"), "{}", text(&failed).1);
    assert!(!golden.exists(), "CI mode must never create a golden file");
    let out = ok(verify(&["--golden", golden_arg]));
    assert!(out.contains("created"), "{out}");
    assert!(golden.exists());
    let out = ok(verify(&["--golden", golden_arg, "--ci"]));
    assert!(out.starts_with("ok"), "{out}");
    let failed = clew.cli(&[
        "replay",
        "verify",
        "--flow",
        "drone",
        "--seed",
        &seed,
        "--fault",
        "ares-down",
        "--golden",
        golden_arg,
        "--ci",
    ]);
    assert_eq!(failed.status.code(), Some(1));
    assert!(text(&failed).1.contains("index"), "{}", text(&failed).1);
}
