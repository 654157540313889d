//! `clew agent send`: a script reports a request as one `BatchCommand` per line, in clew's
//! span-batch form, and reads the agent's replies.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::{Clew, clew_binary, eventually, get_json};

const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

fn send(address: &str, lines: &str) -> std::process::Output {
    let mut child = Command::new(clew_binary())
        .args(["agent", "send", "--address", address])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running clew agent send");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(lines.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn a_script_sends_a_request_as_one_batch_command_and_reads_the_replies() {
    let dir = tempfile::tempdir().unwrap();
    let clew = Clew::start(dir.path());
    let tcp = clew.agent_tcp();
    let batch = serde_json::json!({"BatchCommand": {"commands": [
        {"Register": {"app": "nightly-backup", "api_version": "1.0", "language": "shell"}},
        {"StartRequest": {"request_id": "run-1", "trace_id": TRACE, "timestamp": "2026-12-06T03:00:00Z"}},
        {"StartSpan": {"request_id": "run-1", "span_id": "b7ad6b7169203331", "operation": "backup", "kind": "SERVER", "timestamp": "2026-12-06T03:00:00Z"}},
        {"TagSpan": {"span_id": "b7ad6b7169203331", "tag": "bytes", "value": 1048576}},
        {"StartSpan": {"request_id": "run-1", "span_id": "00f067aa0ba902b7", "parent_id": "b7ad6b7169203331", "operation": "upload", "kind": "CLIENT", "timestamp": "2026-12-06T03:00:01Z"}},
        {"AddSpanEvent": {"span_id": "00f067aa0ba902b7", "name": "retry", "timestamp": "2026-12-06T03:00:02Z", "attributes": [["attempt", 2]]}},
        {"StopSpan": {"span_id": "00f067aa0ba902b7", "timestamp": "2026-12-06T03:00:05Z", "status": {"code": "ERROR", "message": "quota exceeded"}}},
        {"StopSpan": {"span_id": "b7ad6b7169203331", "timestamp": "2026-12-06T03:00:06Z"}},
        {"FinishRequest": {"request_id": "run-1", "timestamp": "2026-12-06T03:00:06Z"}}
    ]}});
    let output = send(&tcp, &format!("{batch}\n"));
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8(output.stdout).unwrap().trim(),
        r#"{"BatchCommand":{"result":"Success"}}"#
    );

    let spans = eventually(Duration::from_secs(15), || {
        let (status, body) = get_json(&clew.api(&format!("/api/clew/traces/{TRACE}")));
        (status == 200 && body["spans"].as_array().is_some_and(|s| s.len() == 2))
            .then(|| body["spans"].as_array().unwrap().clone())
    })
    .expect("the script's trace through the query API");
    let span = |id: &str| spans.iter().find(|s| s["span_id"] == id).unwrap();
    let backup = span("b7ad6b7169203331");
    assert_eq!(backup["name"], "backup");
    assert!(backup["parent_span_id"].is_null(), "{backup}");
    let upload = span("00f067aa0ba902b7");
    assert_eq!(upload["parent_span_id"], "b7ad6b7169203331");
    assert_eq!(upload["status"]["message"], "quota exceeded", "{upload}");
    assert_eq!(upload["events"][0]["name"], "retry", "{upload}");
    assert_eq!(
        upload["end_unix_nano"].as_u64().unwrap() - upload["start_unix_nano"].as_u64().unwrap(),
        4_000_000_000
    );

    // A refused message: the replies still come back, and the exit status says so.
    let output = send(&tcp, "{\"CoreAgentVersion\": {}}\n{\"Teleport\": {}}\n");
    assert!(!output.status.success());
    let replies = String::from_utf8(output.stdout).unwrap();
    assert!(replies.contains("CoreAgentVersion"), "{replies}");
    assert!(replies.contains("unknown command"), "{replies}");
    assert!(
        String::from_utf8(output.stderr)
            .unwrap()
            .contains("refused at least one message")
    );
}
