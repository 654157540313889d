//! Requests over real connections: batches and single commands agree, connections are
//! isolated, and a client killed mid-request leaves its spans marked unfinished.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use clew_agent::{AgentClient, RequestCommands, Timestamp};
use clew_model::{AttributeValue, Span, StatusCode};
use serde_json::json;
use support::{Raw, TestAgent, WAIT};

const T0: u64 = 1_793_620_800_000_000_000;

fn at(micros: u64) -> Timestamp {
    Timestamp(T0 + micros * 1_000)
}

/// The commands of one request as clew's SDK builds them: hex ids, so the trace id is
/// known, and a child reported before its parent.
fn checkout_request(request_id: &str) -> Vec<clew_agent::Command> {
    let mut request = RequestCommands::start(request_id, at(0));
    request.tag("path", "/checkout").tag("items", 3);
    request.span(
        "b7ad6b7169203331",
        Some("00f067aa0ba902b7"),
        "SQL/Query",
        at(20),
        at(30),
        [("db.statement".to_string(), json!("SELECT 1"))],
    );
    request.span(
        "00f067aa0ba902b7",
        None,
        "Controller/checkout",
        at(10),
        at(40),
        [],
    );
    request.finish(at(50))
}

fn sorted(mut spans: Vec<Span>) -> Vec<Span> {
    spans.sort_by_key(|s| s.span_id);
    spans
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_and_the_same_commands_one_by_one_give_the_same_trace() {
    let batch_agent = TestAgent::start().await;
    let mut client = AgentClient::connect(&batch_agent.unix_address())
        .await
        .unwrap();
    client.register("shop", Some("h1"), "rust").await.unwrap();
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    client.send_batch(checkout_request(trace_id)).await.unwrap();
    let batched = sorted(batch_agent.spans(3).await);

    let single_agent = TestAgent::start().await;
    let mut client = AgentClient::connect(&single_agent.tcp_address())
        .await
        .unwrap();
    client.register("shop", Some("h1"), "rust").await.unwrap();
    for command in checkout_request(trace_id) {
        let name = command.name().to_string();
        assert_eq!(
            client.request(&command).await.unwrap(),
            clew_agent::Reply::success(name)
        );
    }
    let single = sorted(single_agent.spans(3).await);

    assert_eq!(batched, single);
    assert_eq!(batched.len(), 3);
    assert!(batched.iter().all(|s| s.trace_id.to_string() == trace_id));
    let controller = batched
        .iter()
        .find(|s| s.span_id.to_string() == "00f067aa0ba902b7")
        .unwrap();
    let sql = batched
        .iter()
        .find(|s| s.span_id.to_string() == "b7ad6b7169203331")
        .unwrap();
    assert_eq!(sql.parent_span_id, Some(controller.span_id));
    assert_eq!(sql.start_unix_nano, T0 + 20_000);
    assert_eq!(sql.end_unix_nano, T0 + 30_000);
    batch_agent.stop().await;
    single_agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_keep_their_own_registration_and_open_requests() {
    let agent = TestAgent::start().await;
    let mut clients = Vec::new();
    for n in 0..8 {
        let address = if n % 2 == 0 {
            agent.tcp_address()
        } else {
            agent.unix_address()
        };
        let mut client = AgentClient::connect(&address).await.unwrap();
        client
            .register(&format!("svc-{n}"), None, "rust")
            .await
            .unwrap();
        clients.push(client);
    }
    // Every client uses the same agent-side ids; per-connection state keeps them apart.
    let mut sending = tokio::task::JoinSet::new();
    for mut client in clients {
        sending.spawn(async move {
            for _ in 0..5 {
                client
                    .send_batch(checkout_request("req-same-id"))
                    .await
                    .unwrap();
            }
        });
    }
    while let Some(done) = sending.join_next().await {
        done.unwrap();
    }
    let spans = agent.spans(8 * 5 * 3).await;
    assert_eq!(spans.len(), 120);
    for n in 0..8 {
        let service = format!("svc-{n}");
        assert_eq!(
            spans.iter().filter(|s| s.service_name() == service).count(),
            15
        );
    }
    let traces: std::collections::HashSet<_> = spans.iter().map(|s| s.trace_id).collect();
    assert_eq!(traces.len(), 40, "each request is its own trace");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_killed_mid_request_leaves_its_spans_marked_unfinished() {
    let agent = TestAgent::start().await;
    let mut worker = Command::new(env!("CARGO_BIN_EXE_clew-agent-harness"))
        .args(["hang-mid-request", &format!("tcp://{}", agent.tcp)])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = worker.stdout.take().unwrap();
    let sent = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    });
    let line = tokio::time::timeout(WAIT, sent)
        .await
        .expect("the worker sends in time")
        .unwrap()
        .unwrap();
    assert_eq!(line.trim(), "sent");
    assert!(agent.sink.spans().is_empty(), "nothing is final yet");

    worker.kill().unwrap(); // SIGKILL: no goodbye on the wire
    worker.wait().unwrap();

    let spans = agent.spans(4).await;
    let by_name = |name: &str| spans.iter().find(|s| s.name == name).unwrap();
    let root = by_name("Controller/checkout");
    let root = if root.parent_span_id.is_none() {
        root
    } else {
        spans.iter().find(|s| s.parent_span_id.is_none()).unwrap()
    };
    let controller = spans
        .iter()
        .find(|s| s.name == "Controller/checkout" && s.parent_span_id.is_some())
        .unwrap();
    let sql = by_name("SQL/Query");
    let payment = by_name("HTTP/POST");
    assert_eq!(root.service_name(), "doomed-worker");
    assert_eq!(
        root.attribute("path"),
        Some(&AttributeValue::from("/checkout"))
    );
    for open in [root, controller, payment] {
        assert_eq!(
            open.attribute("clew.unfinished"),
            Some(&AttributeValue::Bool(true)),
            "{}",
            open.name
        );
        assert_eq!(open.status.code, StatusCode::Error);
        assert_eq!(open.status.message, "worker disconnected mid-request");
        assert!(open.end_unix_nano >= open.start_unix_nano);
        assert_eq!(
            open.end_unix_nano, payment.start_unix_nano,
            "open spans end at the last instant heard"
        );
    }
    assert_eq!(sql.attribute("clew.unfinished"), None);
    assert_eq!(sql.status.code, StatusCode::Unset);
    assert_eq!(
        sql.attribute("db.statement"),
        Some(&AttributeValue::from("SELECT * FROM carts"))
    );
    assert_eq!(sql.parent_span_id, Some(controller.span_id));
    assert_eq!(payment.parent_span_id, Some(controller.span_id));

    let abandoned = agent.hook.abandoned.lock().unwrap().clone();
    let [trace] = &abandoned[..] else {
        panic!("{abandoned:?}")
    };
    assert_eq!(trace.trace_id, root.trace_id);
    assert_eq!(trace.request_id, "req-doomed");
    assert_eq!(trace.service, "doomed-worker");
    assert_eq!(trace.span_count, 4);

    // The agent itself is unaffected.
    let mut other = Raw::connect(&agent.unix_address()).await;
    assert!(other.request(json!({"CoreAgentVersion": {}})).await["CoreAgentVersion"].is_object());
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_delivers_everything_including_requests_still_open() {
    let agent = TestAgent::start().await;
    let mut client = AgentClient::connect(&agent.tcp_address()).await.unwrap();
    client.register("shop", None, "rust").await.unwrap();
    for n in 0..50 {
        client
            .send_batch(checkout_request(&format!("req-{n}")))
            .await
            .unwrap();
    }
    let mut open = Raw::connect(&agent.unix_address()).await;
    open.request(
        json!({"StartRequest": {"request_id": "req-open", "timestamp": at(0).to_string()}}),
    )
    .await;
    open.request(json!({"StartSpan": {"request_id": "req-open", "span_id": "span-1", "operation": "Job/long", "timestamp": at(5).to_string()}}))
        .await;

    let hook = agent.hook.clone();
    let sink = agent.sink.clone();
    let report = tokio::time::timeout(Duration::from_secs(30), agent.stop())
        .await
        .unwrap();
    let spans = sink.spans();
    assert_eq!(spans.len(), 50 * 3 + 2);
    assert_eq!(report.spans_delivered, 152);
    assert_eq!(report.spans_dropped, 0);
    let unfinished: Vec<_> = spans
        .iter()
        .filter(|s| s.attribute("clew.unfinished").is_some())
        .collect();
    assert_eq!(unfinished.len(), 2);
    assert!(
        unfinished
            .iter()
            .all(|s| s.status.message == "agent stopped mid-request")
    );
    assert_eq!(hook.abandoned.lock().unwrap().len(), 1);
    assert!(open.closed_by_agent().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binding_where_an_agent_already_answers_is_refused_not_stolen() {
    let agent = TestAgent::start().await;
    for config in [
        clew_agent::AgentConfig {
            tcp_addr: Some(agent.tcp),
            ..Default::default()
        },
        clew_agent::AgentConfig {
            unix_socket: Some(agent.socket.clone()),
            ..Default::default()
        },
    ] {
        let second = clew_agent::Agent::bind(config, agent.sink.clone()).await;
        assert!(
            matches!(second, Err(clew_agent::AgentError::AlreadyServed { .. })),
            "{:?}",
            second.err()
        );
    }
    let mut still = Raw::connect(&agent.unix_address()).await;
    assert!(still.request(json!({"CoreAgentVersion": {}})).await["CoreAgentVersion"].is_object());
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_socket_gets_exactly_the_configured_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let private = TestAgent::start().await;
    let mode = std::fs::metadata(&private.socket)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let shared = TestAgent::start_with(|config| config.unix_socket_mode = 0o660).await;
    let mode = std::fs::metadata(&shared.socket)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o660);
    private.stop().await;
    shared.stop().await;
}
