//! The `tracing` layer: `#[instrument]` functions and `tracing::span!` become clew
//! spans, inside and around clew's own spans.

mod support;

use clew_model::{AttributeValue, SpanKind, StatusCode};
use clew_sdk::{ClewLayer, SpanContext};
use support::{Pipeline, attr, by_name, names};
use tracing::instrument;
use tracing_subscriber::layer::SubscriberExt;

#[instrument(fields(target = %target, heading = 94.5))]
fn execute_intercept(target: &str, distance_km: f64) -> f64 {
    tracing::info!(distance_km, "reached_intercept_distance");
    send_lock_ack(target);
    distance_km / 2.0
}

#[instrument(fields(otel.kind = "producer", otel.name = "publish_lock_ack"))]
fn send_lock_ack(target: &str) {
    tracing::error!(reason = "jammed", "ack failed");
}

#[test]
fn instrumented_functions_become_clew_spans() {
    let pipeline = Pipeline::new();
    let tracer = pipeline.provider.tracer("striker");
    let subscriber = tracing_subscriber::registry().with(ClewLayer::new(tracer));
    tracing::subscriber::with_default(subscriber, || {
        // Under a clew span that arrived from elsewhere.
        let remote = SpanContext::remote(
            "4bf92f3577b34da6a3ce929d0e0e4736".parse().unwrap(),
            "00f067aa0ba902b7".parse().unwrap(),
            1,
            None,
        );
        let consume = tracer.span("consume_drone_command").parent(&remote).start();
        let _current = consume.enter();
        assert_eq!(execute_intercept("orlan", 1.8), 0.9);
        let manual = tracing::info_span!("flight_mission", leg = 2u64);
        manual.in_scope(|| {
            manual.record("leg", 3u64);
            tracing::warn!(fuel = 0.2, "low fuel");
        });
        // An event outside every tracing span is not recorded anywhere.
        tracing::info!("outside");
    });

    let spans = pipeline.flush();
    assert_eq!(spans.len(), 4, "{:?}", names(&spans));
    let consume = by_name(&spans, "consume_drone_command");
    let intercept = by_name(&spans, "execute_intercept");
    let ack = by_name(&spans, "publish_lock_ack");
    let flight = by_name(&spans, "flight_mission");
    assert_eq!(intercept.parent_span_id, Some(consume.span_id));
    assert_eq!(intercept.trace_id, remote_trace());
    assert_eq!(attr(intercept, "target"), &AttributeValue::from("orlan"));
    assert_eq!(attr(intercept, "heading"), &AttributeValue::Double(94.5));
    assert_eq!(attr(intercept, "distance_km"), &AttributeValue::Double(1.8));
    assert_eq!(intercept.events[0].name, "reached_intercept_distance");
    assert_eq!(
        intercept.events[0].attributes[0].value,
        AttributeValue::Double(1.8)
    );
    assert_eq!(intercept.service_name(), "striker");

    assert_eq!(ack.parent_span_id, Some(intercept.span_id));
    assert_eq!(ack.kind, SpanKind::Producer);
    assert_eq!(ack.status.code, StatusCode::Error);
    assert_eq!(ack.events[0].name, "ack failed");
    assert_eq!(attr(ack, "target"), &AttributeValue::from("orlan"));

    assert_eq!(flight.parent_span_id, Some(consume.span_id));
    assert_eq!(attr(flight, "leg"), &AttributeValue::Int(3));
    assert_eq!(flight.events[0].name, "low fuel");
    assert_eq!(consume.events.len(), 0);
}

fn remote_trace() -> clew_model::TraceId {
    "4bf92f3577b34da6a3ce929d0e0e4736".parse().unwrap()
}
