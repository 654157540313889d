//! Replay on the real drone scenario: `clew demo --once` runs the services (with a fault
//! injected by `--fault NAME`), then a server started on the demo's data directory
//! answers the `clew replay` verbs about the recorded traces.

mod support;

use serde_json::Value;
use support::{Clew, DemoRun, RedisServer, run_demo};

/// Runs a `clew` verb against the server; returns its stdout, asserting it succeeded.
fn cli_ok(clew: &Clew, args: &[&str]) -> String {
    let output = clew.cli(args);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "clew {args:?} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn cli_json(clew: &Clew, args: &[&str]) -> Value {
    let stdout = cli_ok(clew, args);
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("clew {args:?}: {e}:\n{stdout}"))
}

fn first_fault(clew: &Clew, id: &str) -> Value {
    cli_json(clew, &["replay", "snapshot", id, "--first-fault", "--json"])
}

fn signature(clew: &Clew, id: &str) -> Value {
    cli_json(clew, &["replay", "signature", id, "--json"])
}

/// The failed span is the last step of `span_path`, which runs from the trace root
/// (`drone-cmd/calculate_intercept_commands`) down through its ancestors, each started
/// before the fault; the causal chain ends at the fault event.
fn assert_explained(fault: &Value, service: &str, span_name: &str, kind: &str) {
    assert_eq!(fault["fault"]["span_name"], span_name, "{fault:#}");
    assert_eq!(fault["fault"]["kind"], kind, "{fault:#}");
    assert_eq!(fault["fault"]["event"]["service"], service, "{fault:#}");
    let fault_index = fault["fault"]["event"]["index"].as_u64().expect("index");
    assert_eq!(fault["snapshot"]["index"].as_u64(), Some(fault_index));

    let path = fault["span_path"].as_array().expect("span_path");
    assert!(path.len() >= 2, "the fault has ancestors: {fault:#}");
    let root = &path[0];
    assert_eq!(root["service"], "drone-cmd");
    assert_eq!(root["name"], "calculate_intercept_commands");
    let failed = path.last().unwrap();
    assert_eq!(failed["name"], span_name);
    assert_eq!(failed["service"], service);
    assert_eq!(failed["span_id"], fault["fault"]["event"]["span_id"]);
    let starts: Vec<u64> = path
        .iter()
        .map(|s| s["start_index"].as_u64().unwrap())
        .collect();
    assert!(
        starts.windows(2).all(|w| w[0] < w[1]),
        "ancestors start before their children: {starts:?}"
    );
    assert!(*starts.last().unwrap() <= fault_index);

    let chain = fault["causal_chain"].as_array().expect("causal_chain");
    assert!(!chain.is_empty());
    assert_eq!(chain.last().unwrap()["index"].as_u64(), Some(fault_index));
    // Every ancestor's start is in the happens-before chain.
    for step in path {
        assert!(
            chain.iter().any(|e| e["span_id"] == step["span_id"]),
            "{} is missing from the causal chain: {fault:#}",
            step["name"]
        );
    }
}

#[test]
fn ares_down_first_fault_is_the_failed_prayer_explained_by_its_ancestors() {
    let dir = tempfile::tempdir().unwrap();
    let run = run_demo(dir.path(), &["--fault", "ares-down"]);
    let clew = Clew::start(dir.path());
    let fault = first_fault(&clew, &run.intercept_execution);
    // fpv-ops (path A) and the striker (path B) pray to ares concurrently: the first
    // fault is whichever connection was refused first.
    let service = fault["fault"]["event"]["service"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(service == "fpv-ops" || service == "striker", "{fault:#}");
    assert_explained(&fault, &service, "send_prayer_tcp", "exception");
    assert!(
        fault["fault"]["message"]
            .as_str()
            .unwrap()
            .contains("Connection refused"),
        "{fault:#}"
    );
    let names: Vec<&str> = fault["span_path"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    for ancestor in [
        "publish_intercept_commands",
        "execute_intercept",
        "request_strike_authorization",
    ] {
        assert!(names.contains(&ancestor), "{ancestor} not in {names:?}");
    }
    let summary = &signature(&clew, &run.intercept_execution)["summary"];
    assert_eq!(
        summary["first_fault_index"],
        fault["fault"]["event"]["index"]
    );
}

#[test]
fn lost_death_notice_first_fault_is_the_unheard_death_notice() {
    let dir = tempfile::tempdir().unwrap();
    let run = run_demo(dir.path(), &["--fault", "lost-death-notice"]);
    let clew = Clew::start(dir.path());
    let fault = first_fault(&clew, &run.intercept_execution);
    assert_explained(&fault, "ares", "publish_death_orlan", "error_status");
    assert!(
        fault["fault"]["message"]
            .as_str()
            .unwrap()
            .contains("no subscriber"),
        "{fault:#}"
    );
}

#[test]
fn without_a_fault_there_is_none_and_exits_after_death_notices_are_not_faults() {
    let dir = tempfile::tempdir().unwrap();
    let run = run_demo(dir.path(), &[]);
    // The story ends with processes exiting after their death notice…
    assert!(
        run.stdout.contains("striker exited with code 666"),
        "{}",
        run.stdout
    );
    let clew = Clew::start(dir.path());
    // …which is not a fault in any of the traces.
    for id in [&run.lock_request, &run.intercept_execution] {
        assert_eq!(first_fault(&clew, id), Value::Null, "trace {id}");
        let summary = &signature(&clew, id)["summary"];
        assert!(summary["first_fault_index"].is_null(), "{summary:#}");
        assert_eq!(summary["fault_count"], 0, "{summary:#}");
    }
    let text = cli_ok(
        &clew,
        &[
            "replay",
            "snapshot",
            &run.intercept_execution,
            "--first-fault",
        ],
    );
    assert!(text.starts_with("no fault in trace"), "{text}");
}

#[test]
fn signatures_are_equal_across_runs_of_one_seed_in_process_and_over_redis() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let seed = ["--seed", "7"];
    let first = run_demo(dir.path(), &seed);
    let second = run_demo(dir.path(), &seed);
    let redis_url = redis.url();
    let over_redis = run_demo(dir.path(), &[&seed[..], &["--redis", &redis_url]].concat());
    let clew = Clew::start(dir.path());
    for (label, pick) in [
        (
            "intercept execution",
            (|r: &DemoRun| r.intercept_execution.clone()) as fn(&DemoRun) -> String,
        ),
        ("lock request", |r: &DemoRun| r.lock_request.clone()),
    ] {
        let signatures: Vec<Value> = [&first, &second, &over_redis]
            .iter()
            .map(|run| signature(&clew, &pick(run)))
            .collect();
        let trace_sig = |i: usize| {
            signatures[i]["trace_signature"]
                .as_str()
                .unwrap()
                .to_string()
        };
        assert_eq!(trace_sig(0).len(), 64);
        assert_eq!(
            trace_sig(0),
            trace_sig(1),
            "{label}: two in-process runs of one seed"
        );
        assert_eq!(
            trace_sig(0),
            trace_sig(2),
            "{label}: in-process and over Redis"
        );
        assert_eq!(
            signatures[0]["summary"]["span_count"],
            signatures[2]["summary"]["span_count"]
        );
    }
}

/// `clew replay diff` of a normal run against one where ares is down (one service
/// behaving differently): the edits name exactly the failed prayers and the missing
/// ares subtrees, and the first divergence names an index no later than the fault.
///
/// The timeline's first divergence is not asserted to name the prayer: the tower
/// sidecar and the striker consume `drone_command` in parallel, and which is recorded
/// first varies from run to run, so two runs of one seed already part at index 2–4
/// (see `same_seed_runs_have_the_same_spans`).
#[test]
fn diff_reports_the_first_divergence_when_ares_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let normal = run_demo(dir.path(), &[]);
    let faulty = run_demo(dir.path(), &["--fault", "ares-down"]);
    let clew = Clew::start(dir.path());
    let (a, b) = (&normal.intercept_execution, &faulty.intercept_execution);

    let diff = cli_json(&clew, &["replay", "diff", a, b, "--json"]);
    let mut edits: Vec<(String, String)> = diff["edits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let path = e["path"].as_str().unwrap();
            let last_two: Vec<&str> = path.rsplitn(3, " > ").take(2).collect();
            (
                e["op"].as_str().unwrap().to_string(),
                format!("{} > {}", last_two[1], last_two[0]),
            )
        })
        .collect();
    edits.sort();
    assert_eq!(
        edits,
        [
            (
                "changed",
                "fpv-ops/request_strike_authorization > fpv-ops/send_prayer_tcp"
            ),
            (
                "changed",
                "striker/request_strike_authorization > striker/send_prayer_tcp"
            ),
            ("deleted", "fpv-ops/send_prayer_tcp > ares/receive_prayer"),
            ("deleted", "striker/send_prayer_tcp > ares/receive_prayer"),
        ]
        .map(|(op, path)| (op.to_string(), path.to_string())),
        "{diff:#}"
    );
    for edit in diff["edits"].as_array().unwrap() {
        if edit["op"] == "changed" {
            let status = edit["changes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["field"] == "status")
                .unwrap_or_else(|| panic!("no status change: {edit:#}"));
            assert_eq!(status["expected"], "UNSET");
            assert_eq!(status["actual"], "ERROR");
        }
    }

    // Where the structure first differs, located on both timelines: on the run with ares
    // down it is no later than its first fault.
    let divergence = &diff["first_divergence"];
    let index = divergence["index"].as_u64().expect("a first divergence");
    let actual_index = divergence["actual_index"]
        .as_u64()
        .expect("located on the actual timeline too");
    assert!(divergence["expected"].is_string() && divergence["actual"].is_string());
    let fault_index = signature(&clew, b)["summary"]["first_fault_index"]
        .as_u64()
        .expect("ares-down has a fault");
    assert!(
        actual_index <= fault_index,
        "the runs part at {actual_index}, after the fault at {fault_index}"
    );

    let text = cli_ok(&clew, &["replay", "diff", a, b]);
    assert!(text.contains("4 edit(s):"), "{text}");
    let line = text
        .lines()
        .find(|l| l.starts_with("first divergence: "))
        .unwrap_or_else(|| panic!("no first divergence line:\n{text}"));
    assert!(line.contains(&format!(" at index {index}, got ")), "{line}");
    assert!(
        line.contains(divergence["expected"].as_str().unwrap()),
        "{line}"
    );
}

/// Two runs of one seed record the same spans: `diff` finds no edits.
#[test]
fn same_seed_runs_have_the_same_spans() {
    let dir = tempfile::tempdir().unwrap();
    let first = run_demo(dir.path(), &[]);
    let second = run_demo(dir.path(), &[]);
    let clew = Clew::start(dir.path());
    for (a, b) in [
        (&first.intercept_execution, &second.intercept_execution),
        (&first.lock_request, &second.lock_request),
    ] {
        let diff = cli_json(&clew, &["replay", "diff", a, b, "--json"]);
        assert!(diff["edits"].as_array().unwrap().is_empty(), "{diff:#}");
    }
}

/// `clew replay verify` re-runs the seeded drone flow and checks real demo recordings
/// against it: a healthy run of seed S matches `--flow drone --seed S`, an ares-down
/// run (and a lost-death-notice one) matches the flow with the same fault, and an ares-down run checked against the
/// healthy flow diverges (exit 1) at a named index.
#[test]
fn verify_accepts_a_demo_recording_and_rejects_a_changed_one() {
    let dir = tempfile::tempdir().unwrap();
    let seed = "7";
    let healthy = run_demo(dir.path(), &["--seed", seed]);
    let ares_down = run_demo(dir.path(), &["--seed", seed, "--fault", "ares-down"]);
    let lost_notice = run_demo(
        dir.path(),
        &["--seed", seed, "--fault", "lost-death-notice"],
    );
    let clew = Clew::start(dir.path());
    let verify = |run: &DemoRun, faults: &[&str]| {
        let mut args = vec!["replay", "verify", "--flow", "drone", "--seed", seed];
        for fault in faults {
            args.extend(["--fault", fault]);
        }
        args.extend(["--trace", &run.lock_request]);
        args.extend(["--trace", &run.intercept_execution]);
        let output = clew.cli(&args);
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };

    let (code, stdout, stderr) = verify(&healthy, &[]);
    assert_eq!(code, Some(0), "healthy run:\n{stdout}\n{stderr}");
    assert!(
        stdout.starts_with("ok: 2 recorded trace(s) match"),
        "{stdout}"
    );

    let (code, stdout, stderr) = verify(&ares_down, &["ares-down"]);
    assert_eq!(
        code,
        Some(0),
        "ares-down on both sides:\n{stdout}\n{stderr}"
    );

    let (code, stdout, stderr) = verify(&lost_notice, &["lost-death-notice"]);
    assert_eq!(
        code,
        Some(0),
        "lost-death-notice on both sides:\n{stdout}\n{stderr}"
    );

    let (code, stdout, stderr) = verify(&ares_down, &[]);
    assert_eq!(
        code,
        Some(1),
        "ares-down against healthy:\n{stdout}\n{stderr}"
    );
    assert!(
        stderr.contains("first divergence at index "),
        "{stdout}\n{stderr}"
    );
}
