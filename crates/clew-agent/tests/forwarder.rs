//! The standalone agent's OTLP forwarding: retries, back-off, and a spool that makes a
//! collector restart (or an agent restart) lose nothing.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use clew_agent::{
    Agent, AgentClient, AgentConfig, ForwarderConfig, OtlpForwarder, RequestCommands, SpanSink,
    Timestamp,
};
use clew_model::Span;
use prost::Message;
use support::{WAIT, eventually};
use tokio::sync::oneshot;

/// A minimal OTLP/HTTP collector that can be told to refuse requests.
#[derive(Clone, Default)]
struct CollectorState {
    spans: Arc<Mutex<Vec<Span>>>,
    refuse_next: Arc<AtomicUsize>,
    refuse_with: Arc<AtomicU16>,
    requests: Arc<AtomicUsize>,
}

struct Collector {
    addr: SocketAddr,
    state: CollectorState,
    stop: Option<oneshot::Sender<()>>,
    serving: tokio::task::JoinHandle<()>,
}

async fn receive(State(state): State<CollectorState>, body: Bytes) -> (StatusCode, Vec<u8>) {
    state.requests.fetch_add(1, Ordering::SeqCst);
    let refuse = state
        .refuse_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if refuse {
        let status = StatusCode::from_u16(state.refuse_with.load(Ordering::SeqCst)).unwrap();
        return (status, b"not now".to_vec());
    }
    let request = clew_otlp::decode_protobuf(&body).expect("the forwarder sends valid OTLP");
    state
        .spans
        .lock()
        .unwrap()
        .extend(clew_otlp::spans_from_request(request).spans);
    (
        StatusCode::OK,
        clew_otlp::ExportTraceServiceResponse::default().encode_to_vec(),
    )
}

impl Collector {
    async fn start(addr: SocketAddr, state: CollectorState) -> Collector {
        // The port was just released by an earlier collector; the OS may need a moment.
        let mut tries = 0;
        let listener = loop {
            match tokio::net::TcpListener::bind(addr).await {
                Ok(listener) => break listener,
                Err(error) if tries < 100 => {
                    tries += 1;
                    let _ = error;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(error) => panic!("rebinding {addr}: {error}"),
            }
        };
        let addr = listener.local_addr().unwrap();
        let router = axum::Router::new()
            .route("/v1/traces", axum::routing::post(receive))
            .with_state(state.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let serving = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Collector {
            addr,
            state,
            stop: Some(stop),
            serving,
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.serving.await.unwrap();
    }

    fn endpoint(&self) -> String {
        format!("http://{}/v1/traces", self.addr)
    }

    fn span_count(&self) -> usize {
        self.state.spans.lock().unwrap().len()
    }

    async fn wait_for_spans(&self, count: usize) -> Vec<Span> {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.span_count() < count && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let spans = self.state.spans.lock().unwrap().clone();
        assert_eq!(spans.len(), count, "spans at the collector");
        spans
    }
}

fn fast(config: &mut ForwarderConfig) {
    config.first_backoff = Duration::from_millis(20);
    config.max_backoff = Duration::from_millis(200);
    config.request_timeout = Duration::from_secs(5);
}

fn request(n: usize) -> Vec<clew_agent::Command> {
    let t = Timestamp::now();
    let mut request = RequestCommands::start(format!("req-{n}"), t);
    request.span(format!("span-{n}"), None, "Job/work", t, t, []);
    request.finish(t)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_restart_loses_nothing_sent_through_the_agent() {
    let collector = Collector::start(([127, 0, 0, 1], 0).into(), CollectorState::default()).await;
    let addr = collector.addr;
    let spool = tempfile::tempdir().unwrap();
    let mut config = ForwarderConfig::new(collector.endpoint(), spool.path());
    fast(&mut config);
    let forwarder = Arc::new(OtlpForwarder::start(config).unwrap());

    let data = tempfile::tempdir().unwrap();
    let mut agent_config = AgentConfig::in_data_dir(data.path());
    agent_config.tcp_addr = None;
    let agent = Agent::bind(agent_config, forwarder.clone()).await.unwrap();
    let address = agent.addresses()[0].clone();
    let (stop_agent, agent_stopped) = oneshot::channel::<()>();
    let serving = tokio::spawn(agent.serve(async {
        let _ = agent_stopped.await;
    }));
    let mut client = AgentClient::connect(&address).await.unwrap();
    client.register("forwarded", None, "rust").await.unwrap();

    for n in 0..5 {
        client.send_batch(request(n)).await.unwrap();
    }
    collector.wait_for_spans(10).await;

    let state = collector.state.clone();
    collector.stop().await;
    for n in 5..15 {
        client.send_batch(request(n)).await.unwrap();
    }
    assert!(
        eventually(WAIT, || forwarder.stats().batches > 0),
        "batches wait in the spool while the collector is down"
    );
    let collector = Collector::start(addr, state).await;
    let spans = collector.wait_for_spans(30).await;
    let ids: std::collections::HashSet<_> = spans
        .iter()
        .filter_map(|s| s.attribute("scout.request_id").map(|v| v.to_text()))
        .collect();
    assert_eq!(ids.len(), 15, "every request, exactly once");
    assert!(spans.iter().all(|s| s.service_name() == "forwarded"));
    assert!(eventually(WAIT, || forwarder.stats().batches == 0));

    let _ = stop_agent.send(());
    let report = serving.await.unwrap();
    assert_eq!(report.spans_delivered, 30);
    assert_eq!(forwarder.stats().batches_dropped, 0);
    collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_retried_and_bad_batches_are_not() {
    let state = CollectorState::default();
    state.refuse_next.store(3, Ordering::SeqCst);
    state.refuse_with.store(503, Ordering::SeqCst);
    let collector = Collector::start(([127, 0, 0, 1], 0).into(), state.clone()).await;
    let spool = tempfile::tempdir().unwrap();
    let mut config = ForwarderConfig::new(collector.endpoint(), spool.path());
    fast(&mut config);
    let forwarder = OtlpForwarder::start(config).unwrap();

    let spans = spans_of(1);
    forwarder.send(&spans).await.unwrap();
    collector.wait_for_spans(2).await;
    assert_eq!(
        state.requests.load(Ordering::SeqCst),
        4,
        "3 refusals, then accepted"
    );

    // A 400 means the collector will never take that batch: dropped, and the next goes on.
    state.refuse_next.store(1, Ordering::SeqCst);
    state.refuse_with.store(400, Ordering::SeqCst);
    forwarder.send(&spans_of(2)).await.unwrap();
    assert!(eventually(WAIT, || forwarder.stats().batches_dropped == 1));
    forwarder.send(&spans_of(3)).await.unwrap();
    collector.wait_for_spans(4).await;
    forwarder.flush().await.unwrap();
    assert_eq!(forwarder.stats().batches_sent, 2);
    collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spool_is_bounded_and_picked_up_by_the_next_run() {
    // Nothing listens here yet.
    let addr = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    let endpoint = format!("http://{addr}/v1/traces");
    let spool = tempfile::tempdir().unwrap();
    let one_batch = clew_otlp::to_request(&spans_of(0)).encode_to_vec().len() as u64;
    let mut config = ForwarderConfig::new(endpoint.clone(), spool.path());
    fast(&mut config);
    config.max_spool_bytes = one_batch * 3 + one_batch / 2;
    config.flush_timeout = Duration::from_millis(100);
    let forwarder = OtlpForwarder::start(config.clone()).unwrap();
    for n in 0..5 {
        forwarder.send(&spans_of(n)).await.unwrap();
    }
    let stats = forwarder.stats();
    assert_eq!(stats.batches, 3, "{stats:?}");
    assert_eq!(stats.batches_dropped, 2, "the oldest went to make room");
    assert!(stats.bytes <= config.max_spool_bytes);
    let flushed = forwarder.flush().await;
    assert!(
        flushed.is_err_and(|e| e.to_string().contains("are sent at the next start")),
        "stopping with a collector away says where the batches are"
    );
    drop(forwarder);

    let collector = Collector::start(addr, CollectorState::default()).await;
    let forwarder = OtlpForwarder::start(config).unwrap();
    let spans = collector.wait_for_spans(6).await;
    let mut kept: Vec<_> = spans
        .iter()
        .filter(|s| s.parent_span_id.is_none())
        .map(|s| s.name.clone())
        .collect();
    kept.sort();
    assert_eq!(
        kept,
        ["batch-2", "batch-3", "batch-4"],
        "the newest survived"
    );
    forwarder.flush().await.unwrap();
    collector.stop().await;
}

/// Two spans (a root and a child) named after `n`.
fn spans_of(n: usize) -> Vec<clew_model::Span> {
    let mut session = clew_agent::Session::new("test", Default::default());
    let mut finished = Vec::new();
    let t = Timestamp::now();
    let mut request = RequestCommands::start(format!("req-{n}"), t);
    request.tag("transaction.name", format!("batch-{n}"));
    request.span("span-a", None, "Job/work", t, t, []);
    session.handle(
        clew_agent::Command::BatchCommand(clew_agent::protocol::Batch {
            commands: request.finish(t),
        }),
        t,
        &mut finished,
    );
    finished.remove(0).spans
}
