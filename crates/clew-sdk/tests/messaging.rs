//! Publish/consume over the in-process bus and a private Redis, and TCP
//! request/response, with their spans and semantic-convention attributes.

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use clew_model::{AttributeValue, SpanKind};
use clew_sdk::messaging::{self, Operation, semconv::*};
use clew_sdk::{Bus, InProcBus, RedisBus, kv, tcp};
use serde::{Deserialize, Serialize};
use support::{Pipeline, RedisServer, all_named, attr, by_name, names};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct LockRequest {
    interceptor: String,
    target: String,
}

fn lock_request() -> LockRequest {
    LockRequest {
        interceptor: "striker".into(),
        target: "orlan".into(),
    }
}

/// One PRODUCER, three subscribers (an observer that forwards, and two consumers):
/// every CONSUMER is a child of the PRODUCER, each in its own service.
async fn fan_out(bus: Arc<dyn Bus>, system: &str) {
    let pipeline = Pipeline::new();
    let fpv = pipeline.provider.tracer("fpv-ops");
    let tower = pipeline.provider.tracer("tower-sidecar");
    let striker = pipeline.provider.tracer("striker");
    let drone_cmd = pipeline.provider.tracer("drone-cmd");
    let channel = "striker_control_channel";

    let mut subscriptions = Vec::new();
    for _ in 0..3 {
        subscriptions.push(bus.subscribe(&[channel]).await.unwrap());
    }
    let published = messaging::publish(fpv, &*bus, channel, &lock_request())
        .name("publish_lock_request_striker")
        .attribute("ops_team", "fpv-ops-alpha")
        .root()
        .send()
        .await
        .unwrap();
    assert_eq!(published.receivers, 3);

    let mut handlers = Vec::new();
    for (i, mut subscription) in subscriptions.into_iter().enumerate() {
        handlers.push(tokio::spawn(async move {
            let message = tokio::time::timeout(Duration::from_secs(10), subscription.recv())
                .await
                .expect("a message")
                .expect("the bus is open");
            assert_eq!(message.payload::<LockRequest>().unwrap(), lock_request());
            match i {
                0 => {
                    let mut receive = messaging::consume_as(tower, &message, Operation::Receive)
                        .name("tower_receive_striker_control_channel")
                        .start();
                    let _current = receive.enter();
                    messaging::producer(tower, message.system, &message.channel)
                        .name("tower_forward_striker_control_channel")
                        .start()
                        .end();
                    receive.end();
                }
                1 => {
                    let mut consume = messaging::consume(striker, &message)
                        .name("consume_striker_control_channel")
                        .start();
                    consume.add_event(
                        "lock_request_received",
                        [kv("interceptor", "striker"), kv("target", "orlan")],
                    );
                }
                _ => {
                    messaging::consume(drone_cmd, &message)
                        .name("consume_striker_control_channel")
                        .start()
                        .add_event("interceptor_locked", [kv("interceptor", "striker")]);
                }
            }
        }));
    }
    for handler in handlers {
        handler.await.unwrap();
    }

    let spans = pipeline.flush_async().await;
    assert_eq!(spans.len(), 5, "{:?}", names(&spans));
    let producer = by_name(&spans, "publish_lock_request_striker");
    assert_eq!(producer.kind, SpanKind::Producer);
    assert_eq!(producer.parent_span_id, None);
    assert_eq!(producer.service_name(), "fpv-ops");
    assert_eq!(producer.span_id, published.span_context.span_id());
    assert_eq!(
        attr(producer, MESSAGING_SYSTEM),
        &AttributeValue::from(system)
    );
    assert_eq!(
        attr(producer, MESSAGING_DESTINATION_NAME),
        &AttributeValue::from(channel)
    );
    assert_eq!(
        attr(producer, MESSAGING_OPERATION_TYPE),
        &AttributeValue::from("send")
    );
    assert_eq!(
        attr(producer, MESSAGING_MESSAGE_ID),
        &AttributeValue::from(published.message_id.as_str())
    );

    let consumers = all_named(&spans, "consume_striker_control_channel");
    assert_eq!(consumers.len(), 2);
    let receive = by_name(&spans, "tower_receive_striker_control_channel");
    for consumer in consumers.iter().copied().chain([receive]) {
        assert_eq!(consumer.kind, SpanKind::Consumer);
        assert_eq!(consumer.trace_id, producer.trace_id);
        assert_eq!(consumer.parent_span_id, Some(producer.span_id));
        assert_eq!(
            attr(consumer, MESSAGING_DESTINATION_NAME),
            &AttributeValue::from(channel)
        );
        assert_eq!(
            attr(consumer, MESSAGING_MESSAGE_ID),
            &AttributeValue::from(published.message_id.as_str())
        );
        assert_eq!(
            attr(consumer, MESSAGING_SYSTEM),
            &AttributeValue::from(system)
        );
    }
    assert_eq!(
        attr(receive, MESSAGING_OPERATION_TYPE),
        &AttributeValue::from("receive")
    );
    assert_eq!(
        attr(consumers[0], MESSAGING_OPERATION_TYPE),
        &AttributeValue::from("process")
    );
    let mut services: Vec<_> = consumers.iter().map(|c| c.service_name()).collect();
    services.sort();
    assert_eq!(services, ["drone-cmd", "striker"]);
    let forward = by_name(&spans, "tower_forward_striker_control_channel");
    assert_eq!(forward.kind, SpanKind::Producer);
    assert_eq!(forward.parent_span_id, Some(receive.span_id));
    let striker_consumer = consumers
        .iter()
        .find(|c| c.service_name() == "striker")
        .unwrap();
    assert_eq!(striker_consumer.events[0].name, "lock_request_received");
}

/// Three producers, one consumer that takes all three messages at once: its span links
/// to each producer.
async fn batch_consumer(bus: Arc<dyn Bus>) {
    let pipeline = Pipeline::new();
    let ares = pipeline.provider.tracer("ares");
    let mut subscription = bus.subscribe(&["prayers"]).await.unwrap();
    let mut producers = Vec::new();
    for sender in ["fpv-ops", "striker", "orlan"] {
        let tracer = pipeline.provider.tracer(sender);
        let published = messaging::publish(
            tracer,
            &*bus,
            "prayers",
            &serde_json::json!({"from": sender}),
        )
        .root()
        .send()
        .await
        .unwrap();
        producers.push(published);
    }
    let mut batch = Vec::new();
    while batch.len() < 3 {
        batch.extend(
            subscription
                .recv_batch(3 - batch.len(), Duration::from_millis(200))
                .await,
        );
    }
    messaging::consume_batch(ares, &batch)
        .name("judge_prayers")
        .start()
        .end();

    let spans = pipeline.flush_async().await;
    let judge = by_name(&spans, "judge_prayers");
    assert_eq!(judge.kind, SpanKind::Consumer);
    assert_eq!(judge.parent_span_id, None);
    assert_eq!(
        attr(judge, MESSAGING_BATCH_MESSAGE_COUNT),
        &AttributeValue::Int(3)
    );
    assert_eq!(
        attr(judge, MESSAGING_DESTINATION_NAME),
        &AttributeValue::from("prayers")
    );
    assert_eq!(judge.links.len(), 3);
    for published in &producers {
        let link = judge
            .links
            .iter()
            .find(|l| l.span_id == published.span_context.span_id())
            .expect("a link to every producer");
        assert_eq!(link.trace_id, published.span_context.trace_id());
        assert_eq!(
            link.attributes[0].value,
            AttributeValue::from(published.message_id.as_str())
        );
    }
    let traces: std::collections::HashSet<_> = judge.links.iter().map(|l| l.trace_id).collect();
    assert_eq!(traces.len(), 3, "three producers, three traces");
}

/// A message from a producer that does not use envelopes (or sends a bad
/// traceparent): the consumer starts a new trace and still gets the body.
async fn foreign_messages(bus: Arc<dyn Bus>) {
    let pipeline = Pipeline::new();
    let tracer = pipeline.provider.tracer("orlan");
    let mut subscription = bus.subscribe(&["death-knell"]).await.unwrap();
    for raw in [
        &br#"{"recipient":"orlan"}"#[..],
        br#"{"traceparent":"00-bad","payload":{"recipient":"orlan"}}"#,
        b"\x00not json",
    ] {
        bus.publish_bytes("death-knell", Bytes::copy_from_slice(raw))
            .await
            .unwrap();
        let message = tokio::time::timeout(Duration::from_secs(10), subscription.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(message.producer().is_none());
        match message.payload::<serde_json::Value>() {
            Ok(body) => assert_eq!(body["recipient"], "orlan"),
            Err(error) => assert!(raw.starts_with(b"\x00"), "{error}"),
        }
        messaging::consume(tracer, &message)
            .name("consume_death-knell")
            .start()
            .end();
    }
    let spans = pipeline.flush_async().await;
    assert_eq!(spans.len(), 3);
    assert!(spans.iter().all(|s| s.parent_span_id.is_none()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inproc_bus_fan_out() {
    fan_out(Arc::new(InProcBus::new()), "inproc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inproc_bus_batch_consumer_links_each_producer() {
    batch_consumer(Arc::new(InProcBus::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inproc_bus_foreign_messages_start_new_traces() {
    foreign_messages(Arc::new(InProcBus::new())).await;
}

#[tokio::test]
async fn inproc_bus_delivers_only_to_current_subscribers() {
    let bus = InProcBus::new();
    assert_eq!(
        bus.publish_bytes("c", Bytes::from_static(b"1"))
            .await
            .unwrap(),
        0
    );
    let mut a = bus.subscribe(&["c", "d"]).await.unwrap();
    assert_eq!(
        bus.publish_bytes("c", Bytes::from_static(b"2"))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        bus.publish_bytes("d", Bytes::from_static(b"3"))
            .await
            .unwrap(),
        1
    );
    let mut got = [a.recv().await.unwrap(), a.recv().await.unwrap()];
    got.sort_by(|x, y| x.channel.cmp(&y.channel));
    assert_eq!(
        (got[0].channel.as_str(), &got[0].bytes[..]),
        ("c", &b"2"[..])
    );
    assert_eq!(
        (got[1].channel.as_str(), &got[1].bytes[..]),
        ("d", &b"3"[..])
    );
    drop(a);
    tokio::task::yield_now().await;
    assert_eq!(
        bus.publish_bytes("c", Bytes::from_static(b"4"))
            .await
            .unwrap(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_pubsub_fan_out_batch_and_foreign_messages() {
    let redis = RedisServer::start();
    let bus: Arc<dyn Bus> = Arc::new(RedisBus::connect(&redis.url()).await.unwrap());
    fan_out(bus.clone(), "redis").await;
    batch_consumer(bus.clone()).await;
    foreign_messages(bus).await;
}

#[tokio::test]
async fn redis_unreachable_is_a_clear_error() {
    let port = support::free_port();
    let error = match RedisBus::connect(&format!("redis://127.0.0.1:{port}/")).await {
        Ok(_) => panic!("nothing listens on {port}"),
        Err(error) => error.to_string(),
    };
    assert!(error.contains(&port.to_string()), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_request_response_client_and_server_spans() {
    let pipeline = Pipeline::new();
    let fpv = pipeline.provider.tracer("fpv-ops");
    let ares = pipeline.provider.tracer("ares");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(tcp::serve(
        listener,
        ares,
        "receive_prayer",
        move |mut request: tcp::Request| async move {
            let prayer = String::from_utf8(request.frame.payload.clone()).unwrap();
            request.span.set_attribute("prayer", prayer.clone());
            // Work done by the handler is a child of the SERVER span.
            ares.span("queue_for_judgment").start().end();
            format!("heard: {prayer}").into_bytes()
        },
    ));

    let mut authorize = fpv.span("request_strike_authorization").start();
    let response = {
        let cx = authorize.context();
        clew_sdk::FutureExt::with_context(
            tcp::call(
                fpv.span("send_prayer_tcp").attribute("prayer.number", 1),
                addr,
                b"Authorize strike on orlan".to_vec(),
            ),
            cx,
        )
        .await
        .unwrap()
    };
    assert_eq!(response.payload, b"heard: Authorize strike on orlan");
    // A request without context on a connection of its own: a new trace on the server.
    let mut raw = tokio::net::TcpStream::connect(addr).await.unwrap();
    clew_sdk::Frame::new(b"anonymous".to_vec())
        .write_to(&mut raw)
        .await
        .unwrap();
    let answer = clew_sdk::Frame::read_from(&mut raw).await.unwrap().unwrap();
    assert_eq!(answer.payload, b"heard: anonymous");
    authorize.end();

    // A refused connection is recorded on the CLIENT span.
    let closed = support::free_port();
    let error = tcp::call(
        fpv.span("send_prayer_tcp_refused"),
        ([127, 0, 0, 1], closed).into(),
        b"x".to_vec(),
    )
    .await
    .unwrap_err();
    assert!(error.to_string().contains("cannot connect"), "{error}");

    tokio::time::sleep(Duration::from_millis(50)).await;
    let spans = pipeline.flush_async().await;
    let authorize = by_name(&spans, "request_strike_authorization");
    let client = by_name(&spans, "send_prayer_tcp");
    let servers = all_named(&spans, "receive_prayer");
    assert_eq!(servers.len(), 2);
    let server = servers
        .iter()
        .find(|s| s.trace_id == client.trace_id)
        .unwrap();
    let anonymous = servers
        .iter()
        .find(|s| s.trace_id != client.trace_id)
        .unwrap();
    assert_eq!(client.kind, SpanKind::Client);
    assert_eq!(client.parent_span_id, Some(authorize.span_id));
    assert_eq!(
        attr(client, tcp::SERVER_PORT),
        &AttributeValue::Int(addr.port().into())
    );
    assert_eq!(attr(client, "prayer.number"), &AttributeValue::Int(1));
    assert_eq!(server.kind, SpanKind::Server);
    assert_eq!(server.service_name(), "ares");
    assert_eq!(server.parent_span_id, Some(client.span_id));
    assert_eq!(
        attr(server, "prayer"),
        &AttributeValue::from("Authorize strike on orlan")
    );
    assert!(client.start_unix_nano <= server.start_unix_nano);
    assert!(client.end_unix_nano >= server.end_unix_nano);
    let queued: Vec<_> = all_named(&spans, "queue_for_judgment");
    assert!(
        queued
            .iter()
            .any(|q| q.parent_span_id == Some(server.span_id))
    );
    assert_eq!(anonymous.parent_span_id, None);
    let refused = by_name(&spans, "send_prayer_tcp_refused");
    assert_eq!(refused.status.code, clew_model::StatusCode::Error);
    assert_eq!(refused.events[0].name, "exception");
}
