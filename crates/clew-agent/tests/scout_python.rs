//! The real Python `scout-apm` agent, from PyPI, pointed at a clew agent over TCP and over
//! a unix socket, with Scout's own core-agent neither downloaded nor launched.
//!
//! The interpreter comes from `CLEW_TEST_PYTHON` (prepared by `scripts/test`, whose
//! requirements include `scout-apm`).

mod support;

use std::collections::HashMap;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clew_agent::AgentAddress;
use clew_model::{AttributeValue, Span, SpanKind};
use support::{TestAgent, output_within, text};

const JOIN_TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn python() -> String {
    let python = std::env::var("CLEW_TEST_PYTHON").expect(
        "CLEW_TEST_PYTHON is not set: run the tests with ./scripts/test, which prepares a \
         Python environment with scout-apm",
    );
    let check = output_within(
        Command::new(&python).args(["-c", "import scout_apm"]),
        Duration::from_secs(60),
    );
    assert!(
        check.status.success(),
        "{python} cannot import scout_apm: add scout-apm to tests/python/requirements.txt \
         (scripts/test installs it)\n{}",
        text(&check)
    );
    python
}

fn run_scout_app(python: &str, address: &AgentAddress) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/scout_app.py");
    let output = output_within(
        Command::new(python)
            .arg(script)
            .env("SCOUT_MONITOR", "true")
            .env("SCOUT_CORE_AGENT_LAUNCH", "false")
            .env("SCOUT_CORE_AGENT_DOWNLOAD", "false")
            .env("SCOUT_CORE_AGENT_SOCKET_PATH", address.to_string())
            .env_remove("SCOUT_SOCKET_PATH")
            .env("SCOUT_KEY", "abcdefghij0123456789")
            .env("SCOUT_NAME", "orders-app")
            .env("SCOUT_HOSTNAME", "test-host")
            .env("SCOUT_ERRORS_ENABLED", "false")
            .env("SCOUT_LOG_LEVEL", "debug")
            .env("JOIN_TRACEPARENT", JOIN_TRACEPARENT),
        Duration::from_secs(90),
    );
    assert!(
        output.status.success(),
        "the instrumented program failed\n{}",
        text(&output)
    );
}

fn children_of<'a>(spans: &'a [Span], parent: &Span) -> Vec<&'a Span> {
    let mut children: Vec<_> = spans
        .iter()
        .filter(|s| s.parent_span_id == Some(parent.span_id) && s.trace_id == parent.trace_id)
        .collect();
    children.sort_by_key(|s| s.start_unix_nano);
    children
}

fn names(spans: &[&Span]) -> Vec<String> {
    spans.iter().map(|s| s.name.clone()).collect()
}

fn assert_python_traces(spans: &[Span]) {
    let mut traces: HashMap<_, Vec<&Span>> = HashMap::new();
    for span in spans {
        traces.entry(span.trace_id).or_default().push(span);
    }
    assert_eq!(traces.len(), 2, "one trace per transaction: {spans:#?}");
    for span in spans {
        assert_eq!(span.service_name(), "orders-app");
        let resource = &span.resource.attributes;
        assert!(resource.contains(&clew_model::KeyValue::new("host.name", "test-host")));
        assert!(resource.contains(&clew_model::KeyValue::new(
            "telemetry.sdk.language",
            "python"
        )));
        assert!(
            !resource
                .iter()
                .any(|kv| kv.value.to_text().contains("abcdefghij")),
            "the account key is never stored"
        );
        assert!(span.start_unix_nano <= span.end_unix_nano);
        assert_eq!(
            span.start_unix_nano % 1_000,
            0,
            "Python sends microseconds, kept exactly"
        );
        assert_eq!(span.attribute("clew.unfinished"), None);
    }

    // The background job: a fresh UUIDv7 trace.
    let job_root = spans
        .iter()
        .find(|s| s.parent_span_id.is_none())
        .expect("the job's root has no parent");
    assert_eq!(job_root.name, "Job/nightly-report");
    assert_eq!(job_root.kind, SpanKind::Consumer);
    assert!(job_root.trace_id.v7_unix_ms().is_some());
    assert_eq!(
        job_root.attribute("customer"),
        Some(&AttributeValue::from("acme"))
    );
    assert_eq!(job_root.attribute("attempt"), Some(&AttributeValue::Int(2)));
    assert_eq!(
        job_root.attribute("dry_run"),
        Some(&AttributeValue::Bool(false))
    );
    assert_eq!(
        job_root.attribute("ratio"),
        Some(&AttributeValue::Double(0.25))
    );
    assert!(
        job_root
            .attribute("scout.request_id")
            .and_then(AttributeValue::as_str)
            .is_some_and(|id| id.starts_with("req-"))
    );
    let [job] = &children_of(spans, job_root)[..] else {
        panic!("one transaction span under the request")
    };
    assert_eq!(job.name, "Job/nightly-report");
    let under_job = children_of(spans, job);
    assert_eq!(names(&under_job), ["SQL/load-orders", "Custom/render"]);
    let load = under_job[0];
    assert_eq!(load.kind, SpanKind::Client);
    assert_eq!(load.attribute("rows"), Some(&AttributeValue::Int(3)));
    assert_eq!(
        load.attribute("db.statement"),
        Some(&AttributeValue::from("SELECT * FROM orders"))
    );
    let [decode] = &children_of(spans, load)[..] else {
        panic!("decode nests under load-orders")
    };
    assert_eq!(decode.name, "Custom/decode");
    assert_eq!(
        decode.attribute("format"),
        Some(&AttributeValue::from("json"))
    );
    assert!(decode.end_unix_nano - decode.start_unix_nano >= 2_000_000);
    assert!(job_root.start_unix_nano <= job.start_unix_nano);
    assert!(job.start_unix_nano <= load.start_unix_nano);
    assert!(load.start_unix_nano <= decode.start_unix_nano);
    assert!(decode.end_unix_nano <= load.end_unix_nano);
    assert!(job.end_unix_nano <= job_root.end_unix_nano);

    // The web request carried a traceparent: it joined that trace.
    let web_root = spans
        .iter()
        .find(|s| {
            s.trace_id.to_string() == "4bf92f3577b34da6a3ce929d0e0e4736"
                && s.kind == SpanKind::Server
        })
        .expect("the web request joined the propagated trace");
    assert_eq!(web_root.name, "Controller/orders#index");
    assert_eq!(
        web_root.parent_span_id.map(|p| p.to_string()).as_deref(),
        Some("00f067aa0ba902b7")
    );
    assert_eq!(
        web_root.attribute("path"),
        Some(&AttributeValue::from("/orders"))
    );
    let [controller] = &children_of(spans, web_root)[..] else {
        panic!()
    };
    assert_eq!(
        names(&children_of(spans, controller)),
        ["HTTP/GET inventory"]
    );
}

async fn scout_python_reaches_the_agent(via_unix_socket: bool) {
    let python = python();
    let agent = TestAgent::start().await;
    let address = if via_unix_socket {
        agent.unix_address()
    } else {
        agent.tcp_address()
    };
    let run = {
        let python = python.clone();
        let address = address.clone();
        tokio::task::spawn_blocking(move || run_scout_app(&python, &address))
    };
    run.await.unwrap();
    // Job: request root + transaction + 3 spans; web: request root + controller + 1 span.
    let spans = agent.spans(8).await;
    assert_eq!(spans.len(), 8, "{spans:#?}");
    assert_python_traces(&spans);
    // Register, the metadata event, two BatchCommands (and perhaps sampler events): all
    // answered with success.
    assert!(agent.stats.frames.load(Ordering::Relaxed) >= 4);
    assert_eq!(agent.stats.failure_replies.load(Ordering::Relaxed), 0);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_scout_apm_over_tcp() {
    scout_python_reaches_the_agent(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_scout_apm_over_a_unix_socket() {
    scout_python_reaches_the_agent(true).await;
}
