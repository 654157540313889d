//! The SDK's agent exporter against a real clew agent (in this process, on a private
//! unix socket and TCP port): one `BatchCommand` per handler, nothing lost or invented on
//! the way, and the same spans whether the commands travel batched or one by one.

use std::sync::Arc;
use std::time::Duration;

use clew_agent::protocol::Reply;
use clew_agent::{Agent, AgentAddress, AgentClient, AgentConfig, AgentStats, MemorySink};
use clew_model::{AttributeValue, KeyValue, SpanId, TraceId};
use clew_sdk::{
    AgentExporter, BatchProcessor, ExportError, SpanContext, SpanKind, StatusCode, TracerProvider,
};
use tokio::sync::oneshot;

const WAIT: Duration = Duration::from_secs(20);

struct RunningAgent {
    socket: std::path::PathBuf,
    tcp: std::net::SocketAddr,
    sink: Arc<MemorySink>,
    stats: Arc<AgentStats>,
    stop: Option<oneshot::Sender<()>>,
    serving: Option<tokio::task::JoinHandle<clew_agent::DrainReport>>,
    _dir: Option<tempfile::TempDir>,
}

impl RunningAgent {
    async fn start() -> RunningAgent {
        let dir = tempfile::tempdir().unwrap();
        let mut agent = RunningAgent::start_in(dir.path()).await;
        agent._dir = Some(dir);
        agent
    }

    async fn start_in(dir: &std::path::Path) -> RunningAgent {
        let mut config = AgentConfig::in_data_dir(dir);
        config.tcp_addr = Some(([127, 0, 0, 1], 0).into());
        let socket = config.unix_socket.clone().unwrap();
        let sink = Arc::new(MemorySink::new());
        let agent = Agent::bind(config, sink.clone()).await.unwrap();
        let tcp = agent.tcp_addr().unwrap();
        let stats = agent.stats();
        let (stop, stopped) = oneshot::channel::<()>();
        let serving = tokio::spawn(agent.serve(async {
            let _ = stopped.await;
        }));
        RunningAgent {
            socket,
            tcp,
            sink,
            stats,
            stop: Some(stop),
            serving: Some(serving),
            _dir: None,
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.serving.take().unwrap().await.unwrap();
    }

    fn frames(&self) -> u64 {
        self.stats.frames.load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn spans(&self, count: usize) -> Vec<clew_model::Span> {
        let spans = self.sink.wait_for(WAIT, |s| s.len() >= count).await;
        assert_eq!(spans.len(), count, "{spans:#?}");
        spans
    }
}

impl Drop for RunningAgent {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn provider(address: &str) -> TracerProvider {
    TracerProvider::builder()
        .with_processor(BatchProcessor::new(
            AgentExporter::new(address).unwrap(),
            AgentExporter::batch_config(),
        ))
        .with_scope("drone-cmd", "0.3.0")
        .build()
}

fn sorted(mut spans: Vec<clew_model::Span>) -> Vec<clew_model::Span> {
    spans.sort_by_key(|s| (s.trace_id, s.span_id));
    spans
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_handler_is_one_batch_command_and_arrives_as_it_was_recorded() {
    let agent = RunningAgent::start().await;
    let provider = provider(agent.socket.to_str().unwrap());
    let tracer = provider.tracer("drone-cmd");

    // Handler 1: a message consumed from a producer in another process.
    let producer = SpanContext::remote(
        TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
        SpanId::from_hex("00f067aa0ba902b7").unwrap(),
        1,
        None,
    );
    let other = SpanContext::remote(
        TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap(),
        SpanId::from_hex("b7ad6b7169203331").unwrap(),
        1,
        None,
    );
    let mut receive = tracer
        .span("drone_command receive")
        .kind(SpanKind::Consumer)
        .parent(&producer)
        .link(&other)
        .attribute("messaging.system", "redis")
        .attribute("attempt", 2i64)
        .start();
    let mut compute = tracer
        .span("compute_vector")
        .parent(receive.span_context())
        .attribute("distance.m", 412.5)
        .start();
    compute.add_event("lock_acquired", [("target", "orlan")]);
    compute.end();
    receive.set_status(StatusCode::Error, "target lost");
    let (receive_id, compute_id) = (receive.span_id(), compute.span_id());
    receive.end();

    // Handler 2: a request that starts a trace here.
    let mut request = tracer
        .span("GET /status")
        .kind(SpanKind::Server)
        .root()
        .start();
    for name in ["read_state", "render"] {
        tracer
            .span(name)
            .parent(request.span_context())
            .start()
            .end();
    }
    let request_trace = request.trace_id();
    request.end();

    provider.force_flush_async().await.unwrap();
    let spans = agent.spans(5).await;
    assert_eq!(
        agent.frames(),
        2,
        "one BatchCommand per handler, the Register inside the first"
    );

    let received = spans.iter().find(|s| s.span_id == receive_id).unwrap();
    assert_eq!(received.trace_id, producer.trace_id());
    assert_eq!(received.parent_span_id, Some(producer.span_id()));
    assert_eq!(received.kind, clew_model::SpanKind::Consumer);
    assert_eq!(received.status.code, StatusCode::Error);
    assert_eq!(received.status.message, "target lost");
    assert_eq!(received.links.len(), 1);
    assert_eq!(received.links[0].span_id, other.span_id());
    assert_eq!(received.scope.name, "drone-cmd");
    assert_eq!(
        received.resource.attributes[0],
        KeyValue::new("service.name", "drone-cmd")
    );
    assert!(
        received
            .attributes
            .contains(&KeyValue::new("attempt", 2i64))
    );
    let computed = spans.iter().find(|s| s.span_id == compute_id).unwrap();
    assert_eq!(computed.parent_span_id, Some(receive_id));
    assert_eq!(computed.kind, clew_model::SpanKind::Internal);
    assert_eq!(
        computed.attributes,
        vec![KeyValue::new("distance.m", AttributeValue::Double(412.5))]
    );
    assert_eq!(computed.events.len(), 1);
    assert_eq!(computed.events[0].name, "lock_acquired");
    assert!(computed.end_unix_nano >= computed.start_unix_nano);

    let request_spans: Vec<_> = spans
        .iter()
        .filter(|s| s.trace_id == request_trace)
        .collect();
    assert_eq!(request_spans.len(), 3, "no synthetic request span");
    let root = request_spans
        .iter()
        .find(|s| s.name == "GET /status")
        .unwrap();
    assert_eq!(root.parent_span_id, None);
    assert_eq!(root.kind, clew_model::SpanKind::Server);
    assert!(
        request_spans
            .iter()
            .filter(|s| s.name != "GET /status")
            .all(|s| s.parent_span_id == Some(root.span_id))
    );
    provider.shutdown_async().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_spans_whether_sent_as_a_batch_or_command_by_command() {
    let batched = RunningAgent::start().await;
    let provider = provider(&format!("tcp://{}", batched.tcp));
    let tracer = provider.tracer("striker");
    let mut root = tracer
        .span("execute_intercept")
        .kind(SpanKind::Producer)
        .root()
        .start();
    let mut child = tracer.span("path_a").parent(root.span_context()).start();
    child.add_event("prayer_sent", [("to", "ares")]);
    child.end();
    root.end();
    provider.shutdown_async().await.unwrap();
    let from_batch = sorted(batched.spans(2).await);
    assert_eq!(batched.frames(), 1);

    let single = RunningAgent::start().await;
    let mut client = AgentClient::connect(&AgentAddress::Unix(single.socket.clone()))
        .await
        .unwrap();
    let mut commands = vec![clew_agent::register_resource(
        &from_batch[0].resource,
        "rust",
    )];
    commands.extend(clew_agent::span_batch_commands("one-by-one", &from_batch));
    let sent = commands.len() as u64;
    for command in commands {
        let reply = client.request(&command).await.unwrap();
        assert!(matches!(reply, Reply::Success { .. }), "{reply:?}");
    }
    let from_commands = sorted(single.spans(2).await);
    assert_eq!(single.frames(), sent);
    assert_eq!(from_commands, from_batch);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absent_agent_is_a_reported_export_error_and_a_restarted_one_is_found_again() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join(clew_agent::DEFAULT_SOCKET_NAME);
    let provider = provider(socket.to_str().unwrap());
    let tracer = provider.tracer("orlan");
    tracer.span("lost").start().end();
    let error = provider.force_flush_async().await.unwrap_err();
    assert!(
        matches!(&error, ExportError::Unreachable { endpoint, .. } if endpoint.contains(clew_agent::DEFAULT_SOCKET_NAME)),
        "{error}"
    );

    // The agent comes up later: the next handler gets through.
    let first = RunningAgent::start_in(dir.path()).await;
    tracer.span("while_up").start().end();
    provider.force_flush_async().await.unwrap();
    assert_eq!(first.spans(1).await[0].name, "while_up");
    first.stop().await;

    // It restarts: the exporter's connection is dead, and a fresh one finds the new agent.
    let second = RunningAgent::start_in(dir.path()).await;
    tracer.span("after_restart").start().end();
    provider.force_flush_async().await.unwrap();
    assert_eq!(second.spans(1).await[0].name, "after_restart");
    provider.shutdown_async().await.unwrap();
}
