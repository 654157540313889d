//! OTLP exporters against real OTLP receivers (tonic and axum servers in the test that
//! decode with `clew-otlp`), and a process that shuts its provider down and then calls
//! `exit(666)` without losing its last spans.

mod support;

use std::process::Stdio;
use std::time::Duration;

use clew_model::{AttributeValue, SpanKind};
use clew_sdk::{
    BatchConfig, BatchProcessor, ExportError, OtlpGrpcExporter, OtlpHttpExporter, SpanBatch,
    SpanExporter, TracerProvider, kv,
};
use support::{attr, by_name, grpc_receiver, http_receiver};

const CHILD_SPANS: usize = 25;

fn provider(exporter: impl SpanExporter, delay: Duration) -> TracerProvider {
    TracerProvider::builder()
        .with_processor(BatchProcessor::new(
            exporter,
            BatchConfig {
                scheduled_delay: delay,
                max_export_batch_size: 10,
                ..BatchConfig::default()
            },
        ))
        .build()
}

fn record(provider: &TracerProvider, spans: usize) {
    let tracer = provider.tracer("striker");
    let mut root = tracer
        .span("consume_death-knell")
        .kind(SpanKind::Consumer)
        .attribute("recipient", "striker")
        .start();
    let _current = root.enter();
    for i in 0..spans - 1 {
        tracer.span("work").attribute("i", i).start().end();
    }
    root.add_event("drone_destroyed", [kv("alive", false)]);
    drop(_current);
    root.end();
}

fn check(spans: &[clew_model::Span], expected: usize) {
    assert_eq!(spans.len(), expected);
    let root = by_name(spans, "consume_death-knell");
    assert_eq!(root.service_name(), "striker");
    assert_eq!(root.kind, SpanKind::Consumer);
    assert_eq!(attr(root, "recipient"), &AttributeValue::from("striker"));
    assert_eq!(root.events[0].name, "drone_destroyed");
    let children = spans.iter().filter(|s| s.name == "work");
    assert!(
        children
            .into_iter()
            .all(|s| s.parent_span_id == Some(root.span_id) && s.trace_id == root.trace_id)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_grpc_exporter_delivers_batches() {
    let (addr, received) = grpc_receiver().await;
    let provider = provider(
        OtlpGrpcExporter::new(format!("http://{addr}")),
        Duration::from_millis(50),
    );
    record(&provider, 30);
    // Scheduled export, without an explicit flush.
    check(&received.wait_for(30).await, 30);
    assert!(received.requests().iter().all(|r| r.len() <= 10));
    provider.shutdown_async().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_http_exporter_delivers_batches() {
    let (addr, received) = http_receiver().await;
    let provider = provider(
        OtlpHttpExporter::new(format!("http://{addr}/")),
        Duration::from_secs(3600),
    );
    record(&provider, 12);
    provider.force_flush_async().await.unwrap();
    check(&received.spans(), 12);
    provider.shutdown_async().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_collector_is_reported_not_fatal() {
    let port = support::free_port();
    for exporter in [
        Box::new(OtlpGrpcExporter::new(format!("http://127.0.0.1:{port}")))
            as Box<dyn SpanExporter>,
        Box::new(OtlpHttpExporter::new(format!("http://127.0.0.1:{port}"))),
    ] {
        struct Boxed(Box<dyn SpanExporter>);
        #[async_trait::async_trait]
        impl SpanExporter for Boxed {
            async fn export(&mut self, batch: &mut SpanBatch) -> Result<(), ExportError> {
                self.0.export(batch).await
            }
        }
        let provider = provider(Boxed(exporter), Duration::from_secs(3600));
        record(&provider, 2);
        match provider.force_flush_async().await {
            Err(ExportError::Unreachable { endpoint, .. }) => {
                assert!(endpoint.contains(&port.to_string()))
            }
            other => panic!("expected Unreachable, got {other:?}"),
        }
        // Spans keep flowing (and failing) without blocking or panicking.
        record(&provider, 2);
        assert!(provider.shutdown_async().await.is_err());
    }
    assert!(matches!(
        OtlpGrpcExporter::new("not a url")
            .export(&mut SpanBatch::default())
            .await,
        Err(ExportError::Config(_))
    ));
}

/// Not a test on its own: the body of the child process that
/// `shutdown_then_exit_666_loses_nothing` starts (it returns at once otherwise).
#[test]
fn child_process_entry() {
    let (Ok(protocol), Ok(endpoint)) = (
        std::env::var("CLEW_SDK_TEST_CHILD_PROTOCOL"),
        std::env::var("CLEW_SDK_TEST_CHILD_ENDPOINT"),
    ) else {
        return;
    };
    // An hour between scheduled exports: only `shutdown` can send these spans.
    let provider = match protocol.as_str() {
        "grpc" => provider(OtlpGrpcExporter::new(endpoint), Duration::from_secs(3600)),
        _ => provider(OtlpHttpExporter::new(endpoint), Duration::from_secs(3600)),
    };
    record(&provider, CHILD_SPANS);
    provider.shutdown().expect("shutdown exports every span");
    std::process::exit(666);
}

/// What the parent sees of `exit(666)`: Unix keeps only the low 8 bits of a status.
const EXIT_666: i32 = 666 & 0xff;

async fn run_child(protocol: &str, endpoint: String) -> i32 {
    let status = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "child_process_entry",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("CLEW_SDK_TEST_CHILD_PROTOCOL", protocol)
        .env("CLEW_SDK_TEST_CHILD_ENDPOINT", endpoint)
        .stdout(Stdio::null())
        .status()
        .await
        .unwrap();
    status.code().expect("exited, not killed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_then_exit_666_loses_nothing() {
    let (grpc, grpc_received) = grpc_receiver().await;
    assert_eq!(run_child("grpc", format!("http://{grpc}")).await, EXIT_666);
    check(&grpc_received.spans(), CHILD_SPANS);

    let (http, http_received) = http_receiver().await;
    assert_eq!(run_child("http", format!("http://{http}")).await, EXIT_666);
    check(&http_received.spans(), CHILD_SPANS);
}

/// Collects what `SpanBatch::take_otlp` produces, decoded again by `clew-otlp`.
#[derive(Clone, Default)]
struct OtlpCapture(std::sync::Arc<std::sync::Mutex<Vec<clew_otlp::ExportTraceServiceRequest>>>);

#[async_trait::async_trait]
impl SpanExporter for OtlpCapture {
    async fn export(&mut self, batch: &mut SpanBatch) -> Result<(), ExportError> {
        let request = batch.take_otlp();
        assert!(batch.take_model().is_empty(), "taken once");
        self.0.lock().unwrap().push(request);
        Ok(())
    }
}

#[test]
fn otlp_encoding_keeps_everything_and_groups_by_service() {
    let capture = OtlpCapture::default();
    let provider = provider(capture.clone(), Duration::from_secs(3600));
    let striker = provider.tracer("striker");
    let orlan = provider.tracer("orlan");
    let remote = clew_sdk::SpanContext::remote(
        "4bf92f3577b34da6a3ce929d0e0e4736".parse().unwrap(),
        "00f067aa0ba902b7".parse().unwrap(),
        1,
        Some("congo=t61rcWkgMzE".parse().unwrap()),
    );
    let mut span = striker
        .span("consume_death-knell")
        .kind(SpanKind::Consumer)
        .parent(&remote)
        .link_with_attributes(&remote, [kv("why", "batch")])
        .attribute("recipient", "striker")
        .attribute("recipient", "orlan")
        .attribute("distance_km", 0.9)
        .attribute("count", 2)
        .attribute("alive", false)
        .attribute(
            "path",
            clew_model::AttributeValue::Array(vec![clew_model::AttributeValue::Int(1)]),
        )
        .start();
    span.add_event("drone_destroyed", [kv("latitude", 49.9925)]);
    span.set_status(clew_model::StatusCode::Error, "shot down");
    span.end();
    orlan.span("flight_mission").start().end();
    provider.shutdown().unwrap();

    let requests = capture.0.lock().unwrap().clone();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].resource_spans.len(),
        2,
        "one ResourceSpans per service"
    );
    let decoded = clew_otlp::spans_from_request(requests[0].clone());
    assert_eq!(decoded.rejected, 0);
    let spans = decoded.spans;
    let consume = by_name(&spans, "consume_death-knell");
    assert_eq!(consume.service_name(), "striker");
    assert_eq!(consume.scope.name, "clew-sdk");
    assert_eq!(consume.kind, SpanKind::Consumer);
    assert_eq!(consume.trace_id, remote.trace_id());
    assert_eq!(consume.parent_span_id, Some(remote.span_id()));
    assert_eq!(consume.trace_state, "congo=t61rcWkgMzE");
    assert_eq!(consume.flags & 1, 1);
    assert_eq!(attr(consume, "recipient"), &AttributeValue::from("orlan"));
    assert_eq!(
        consume
            .attributes
            .iter()
            .filter(|a| a.key == "recipient")
            .count(),
        1
    );
    assert_eq!(attr(consume, "distance_km"), &AttributeValue::Double(0.9));
    assert_eq!(attr(consume, "count"), &AttributeValue::Int(2));
    assert_eq!(attr(consume, "alive"), &AttributeValue::Bool(false));
    assert_eq!(
        attr(consume, "path"),
        &AttributeValue::Array(vec![AttributeValue::Int(1)])
    );
    assert_eq!(consume.events[0].name, "drone_destroyed");
    assert_eq!(
        consume.events[0].attributes[0].value,
        AttributeValue::Double(49.9925)
    );
    assert_eq!(consume.links[0].span_id, remote.span_id());
    assert_eq!(consume.links[0].trace_state, "congo=t61rcWkgMzE");
    assert_eq!(consume.links[0].attributes[0].key, "why");
    assert_eq!(consume.status.code, clew_model::StatusCode::Error);
    assert_eq!(consume.status.message, "shot down");
    assert!(consume.end_unix_nano >= consume.start_unix_nano);
    assert_eq!(by_name(&spans, "flight_mission").service_name(), "orlan");
}
