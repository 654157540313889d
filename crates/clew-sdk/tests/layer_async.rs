//! The `tracing` layer with `#[instrument]` async functions on a multi-thread runtime.
//! The subscriber is the process-wide default here, as in an application: a
//! thread-local default would not reach the runtime's worker threads.

mod support;

use std::sync::OnceLock;

use clew_model::SpanKind;
use clew_sdk::{ClewLayer, FutureExt, Tracer};
use support::{Pipeline, by_name, names};
use tracing::instrument;
use tracing_subscriber::layer::SubscriberExt;

#[instrument(skip(tracer))]
async fn request_strike_authorization(tracer: Tracer, prayer: u32) {
    tokio::task::yield_now().await;
    // A clew span started inside an instrumented function is its child.
    tracer
        .span("send_prayer_tcp")
        .kind(SpanKind::Client)
        .start()
        .end();
    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    tracing::info!(prayer, "prayer sent");
}

fn pipeline() -> &'static Pipeline {
    static PIPELINE: OnceLock<Pipeline> = OnceLock::new();
    PIPELINE.get_or_init(|| {
        let pipeline = Pipeline::new();
        let tracer = pipeline.provider.tracer("fpv-ops");
        tracing::subscriber::set_global_default(
            tracing_subscriber::registry().with(ClewLayer::new(tracer)),
        )
        .expect("the only global subscriber of this test binary");
        pipeline
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instrumented_async_functions_across_await() {
    let pipeline = pipeline();
    let tracer = pipeline.provider.tracer("fpv-ops");
    let root = tracer.span("consume_lock_response").start();
    let root_id = root.span_id();
    let handles: Vec<_> = (1..=8)
        .map(|prayer| {
            tokio::spawn(request_strike_authorization(tracer, prayer).with_context(root.context()))
        })
        .collect();
    drop(root);
    for handle in handles {
        handle.await.unwrap();
    }

    let spans = pipeline.flush_async().await;
    let authorizations: Vec<_> = spans
        .iter()
        .filter(|s| s.name == "request_strike_authorization")
        .collect();
    assert_eq!(authorizations.len(), 8, "{:?}", names(&spans));
    let root = by_name(&spans, "consume_lock_response");
    assert_eq!(root.span_id, root_id);
    for auth in &authorizations {
        assert_eq!(auth.parent_span_id, Some(root_id));
        assert_eq!(auth.trace_id, root.trace_id);
        let client = spans
            .iter()
            .find(|s| s.name == "send_prayer_tcp" && s.parent_span_id == Some(auth.span_id))
            .expect("the clew span is a child of the instrumented function");
        assert_eq!(client.trace_id, auth.trace_id);
        assert_eq!(
            auth.events
                .iter()
                .filter(|e| e.name == "prayer sent")
                .count(),
            1
        );
        assert!(auth.end_unix_nano >= client.end_unix_nano);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdks_own_logs_are_not_recorded() {
    // The export thread's gRPC client (h2, hyper, tower) opens `tracing` spans and
    // logs in them, and the SDK warns through `tracing` when an export fails. All of
    // it reaches the global subscriber, whose clew layer must ignore it, or it would
    // become spans, be exported, make more spans, and so on.
    let pipeline = pipeline();
    let (addr, received) = support::quiet_grpc_receiver();
    let working = clew_sdk::TracerProvider::builder()
        .with_batch_exporter(clew_sdk::OtlpGrpcExporter::new(format!("http://{addr}")))
        .build();
    let port = support::free_port();
    let failing = clew_sdk::TracerProvider::builder()
        .with_batch_exporter(clew_sdk::OtlpGrpcExporter::new(format!(
            "http://127.0.0.1:{port}"
        )))
        .build();
    for _ in 0..3 {
        working.tracer("svc").span("exported").start().end();
        working.force_flush_async().await.unwrap();
        failing.tracer("svc").span("lost").start().end();
        assert!(failing.force_flush_async().await.is_err());
    }
    working.shutdown_async().await.unwrap();
    failing.shutdown_async().await.unwrap();
    assert_eq!(received.spans().len(), 3);
    {
        let span = tracing::info_span!("own_logs_handler");
        let _entered = span.enter();
        tracing::info!("handled");
    }
    let spans = pipeline.flush_async().await;
    let handler = by_name(&spans, "own_logs_handler");
    assert_eq!(handler.events.len(), 1);
    for span in &spans {
        assert!(
            [
                "own_logs_handler",
                "consume_lock_response",
                "request_strike_authorization",
                "send_prayer_tcp"
            ]
            .contains(&span.name.as_str()),
            "the SDK recorded its own activity: {span:?}"
        );
        for event in &span.events {
            assert!(!event.name.contains("clew-sdk"), "{event:?}");
        }
    }
}
