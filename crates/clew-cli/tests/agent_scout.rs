//! The real scout-apm Python agent, pointed at `clew serve`'s agent socket (TCP and
//! unix), instruments a program; its transactions come back through the query API.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{Clew, eventually, get_json, python, repo_root};

const JOIN_TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn run_scout_app(address: &str) {
    let script = repo_root().join("crates/clew-agent/tests/python/scout_app.py");
    let output = Command::new(python())
        .arg(script)
        .env("SCOUT_MONITOR", "true")
        .env("SCOUT_CORE_AGENT_LAUNCH", "false")
        .env("SCOUT_CORE_AGENT_DOWNLOAD", "false")
        .env("SCOUT_CORE_AGENT_SOCKET_PATH", address)
        .env_remove("SCOUT_SOCKET_PATH")
        .env("SCOUT_KEY", "abcdefghij0123456789")
        .env("SCOUT_NAME", "orders-app")
        .env("SCOUT_HOSTNAME", "test-host")
        .env("SCOUT_ERRORS_ENABLED", "false")
        .env("JOIN_TRACEPARENT", JOIN_TRACEPARENT)
        .output()
        .expect("running the scout-apm program");
    assert!(
        output.status.success(),
        "scout app failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn check(clew: &Clew) {
    // The web request carried a traceparent, so it joined that trace.
    let trace = eventually(Duration::from_secs(15), || {
        let (status, body) =
            get_json(&clew.api("/api/clew/traces/4bf92f3577b34da6a3ce929d0e0e4736"));
        (status == 200).then_some(body)
    })
    .expect("the web transaction joined the propagated trace");
    let spans = trace["spans"].as_array().unwrap();
    assert!(
        spans.iter().any(|s| s["name"] == "HTTP/GET inventory"),
        "{trace}"
    );
    let root = spans
        .iter()
        .find(|s| s["parent_span_id"] == "00f067aa0ba902b7")
        .expect("root under the caller");
    assert_eq!(
        root["resource"]["attributes"][0]["value"]["String"], "orders-app",
        "{root}"
    );

    let (_, found) =
        get_json(&clew.api("/api/traces?service=orders-app&operation=Job/nightly-report"));
    let job = &found["data"][0];
    let names: Vec<&str> = job["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["operationName"].as_str().unwrap())
        .collect();
    for expected in ["SQL/load-orders", "Custom/decode", "Custom/render"] {
        assert!(names.contains(&expected), "{expected} in {names:?}");
    }
    let tags = job["spans"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["tags"].as_array().unwrap().clone())
        .collect::<Vec<_>>();
    assert!(
        tags.iter()
            .any(|t| t["key"] == "customer" && t["value"] == "acme"),
        "request tags on the root"
    );
    assert!(
        tags.iter().any(|t| t["key"] == "rows" && t["value"] == 3),
        "span tags as attributes"
    );
}

#[test]
fn scout_python_agent_over_tcp_reaches_the_query_api() {
    let dir = tempfile::tempdir().unwrap();
    let clew = Clew::start(dir.path());
    run_scout_app(&clew.agent_tcp());
    check(&clew);
}

#[test]
fn scout_python_agent_over_the_unix_socket_reaches_the_query_api() {
    let dir = tempfile::tempdir().unwrap();
    let clew = Clew::start(dir.path());
    let socket = dir.path().join("agent.sock");
    assert!(
        clew.agent.contains(&socket.display().to_string()),
        "{:?}",
        clew.agent
    );
    run_scout_app(&socket.display().to_string());
    check(&clew);
}
