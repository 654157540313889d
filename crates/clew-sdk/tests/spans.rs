//! Tracers, spans, the current context (threads and `.await`), sampling and batching.

mod support;

use std::sync::Arc;
use std::time::Duration;

use clew_model::{AttributeValue, SpanKind, StatusCode};
use clew_sdk::{
    BatchConfig, BatchProcessor, Context, FutureExt, InMemoryExporter, Sampler, SpanContext,
    Tracer, TracerProvider, kv,
};
use support::{Pipeline, attr, by_name, names};

#[test]
fn parent_child_events_attributes_and_status() {
    let pipeline = Pipeline::new();
    let tracer = pipeline.provider.tracer("striker");

    let mut root = tracer
        .span("consume_drone_command")
        .kind(SpanKind::Consumer)
        .attribute("target", "orlan")
        .attribute("heading", 94.5)
        .start();
    {
        let _current = root.enter();
        let mut child = tracer.span("execute_intercept").start();
        child.add_event(
            "reached_intercept_distance",
            [kv("distance_km", 0.9), kv("mode", "boogie")],
        );
        child.set_attribute("speed", 3);
        child.set_attribute("speed", 4);
        let io = std::io::Error::other("link lost");
        child.record_error(&io);
        // Ends on drop.
    }
    root.set_status(StatusCode::Ok, "ignored for Ok");
    root.set_status(StatusCode::Error, "Ok is final");
    root.end();
    root.end();

    let spans = pipeline.flush();
    assert_eq!(spans.len(), 2, "{:?}", names(&spans));
    let root = by_name(&spans, "consume_drone_command");
    let child = by_name(&spans, "execute_intercept");
    assert_eq!(root.parent_span_id, None);
    assert_eq!(root.kind, SpanKind::Consumer);
    assert_eq!(root.service_name(), "striker");
    assert_eq!(attr(root, "target"), &AttributeValue::from("orlan"));
    assert_eq!(attr(root, "heading"), &AttributeValue::Double(94.5));
    assert_eq!(root.status.code, StatusCode::Ok);
    assert_eq!(root.status.message, "");
    assert!(
        root.trace_id.v7_unix_ms().is_some(),
        "new trace ids are UUIDv7"
    );
    assert_eq!(root.flags & 1, 1);

    assert_eq!(child.trace_id, root.trace_id);
    assert_eq!(child.parent_span_id, Some(root.span_id));
    assert_eq!(child.kind, SpanKind::Internal);
    assert_eq!(attr(child, "speed"), &AttributeValue::Int(4));
    assert_eq!(
        child
            .attributes
            .iter()
            .filter(|kv| kv.key == "speed")
            .count(),
        1
    );
    assert_eq!(child.events[0].name, "reached_intercept_distance");
    assert_eq!(
        child.events[0].attributes[0].value,
        AttributeValue::Double(0.9)
    );
    assert_eq!(child.events[1].name, "exception");
    assert_eq!(child.status.code, StatusCode::Error);
    assert_eq!(child.status.message, "link lost");
    assert!(child.start_unix_nano >= root.start_unix_nano);
    assert!(child.end_unix_nano <= root.end_unix_nano);
    assert!(root.end_unix_nano >= root.start_unix_nano);
}

#[test]
fn explicit_parents_roots_and_links() {
    let pipeline = Pipeline::new();
    let tracer = pipeline.provider.tracer("ares");
    let prayer_a = tracer.span("receive_prayer_a").start();
    let prayer_b = tracer.span("receive_prayer_b").start();
    let a = prayer_a.span_context().clone();
    let b = prayer_b.span_context().clone();
    drop((prayer_a, prayer_b));

    let current = tracer.span("unrelated").start();
    let _guard = current.enter();
    let judgment = tracer
        .span("execute_judgment")
        .parent(&b)
        .link(&a)
        .link_with_attributes(&b, [kv("prayer", 2)])
        .start();
    let fresh = tracer.span("fresh").root().start();
    let from_empty = tracer
        .span("from_empty")
        .parent_context(&Context::new())
        .start();
    let judgment_cx = judgment.span_context().clone();
    drop((judgment, fresh, from_empty));
    drop(_guard);
    drop(current);

    let spans = pipeline.flush();
    let judgment = by_name(&spans, "execute_judgment");
    assert_eq!(judgment.trace_id, b.trace_id());
    assert_eq!(judgment.parent_span_id, Some(b.span_id()));
    assert_eq!(judgment.links.len(), 2);
    assert_eq!(judgment.links[0].span_id, a.span_id());
    assert_eq!(judgment.links[0].trace_id, a.trace_id());
    assert_eq!(judgment.links[1].attributes[0].key, "prayer");
    assert_eq!(judgment_cx.trace_id(), b.trace_id());
    for root in ["fresh", "from_empty", "unrelated"] {
        assert_eq!(by_name(&spans, root).parent_span_id, None, "{root}");
    }
    assert_ne!(
        by_name(&spans, "fresh").trace_id,
        by_name(&spans, "unrelated").trace_id
    );
}

#[test]
fn each_service_has_its_own_resource_and_tracers_are_reused() {
    let pipeline = Pipeline::new();
    let striker = pipeline.provider.tracer("striker");
    let orlan = pipeline.provider.tracer("orlan");
    assert!(Arc::ptr_eq(
        striker.resource(),
        pipeline.provider.tracer("striker").resource()
    ));
    let s = striker.span("a").start();
    let _g = s.enter();
    orlan.span("b").start().end();
    drop(_g);
    drop(s);
    let spans = pipeline.flush();
    assert_eq!(by_name(&spans, "a").service_name(), "striker");
    assert_eq!(by_name(&spans, "b").service_name(), "orlan");
    assert_eq!(
        by_name(&spans, "b").parent_span_id,
        Some(by_name(&spans, "a").span_id)
    );
}

#[test]
fn guards_restore_the_previous_context() {
    let tracer = Tracer::noop();
    assert!(Context::current_span().is_none());
    let outer = tracer.span("outer").start();
    let g1 = outer.enter();
    let inner = tracer.span("inner").start();
    {
        let _g2 = inner.enter();
        assert_eq!(Context::current_span().unwrap().span_id(), inner.span_id());
    }
    assert_eq!(Context::current_span().unwrap().span_id(), outer.span_id());
    drop(g1);
    assert!(Context::current_span().is_none());
    // A noop tracer still propagates: the child continues the trace.
    assert_eq!(inner.trace_id(), outer.trace_id());
    assert!(!outer.is_recording());
    assert!(!outer.span_context().is_sampled());

    let value = tracer.in_span("closure", |span| span.span_id());
    assert!(value.is_valid());
    assert!(Context::current_span().is_none());
}

#[test]
fn context_is_per_thread() {
    let tracer = Tracer::noop();
    let span = tracer.span("main").start();
    let _g = span.enter();
    std::thread::spawn(|| assert!(Context::current_span().is_none()))
        .join()
        .unwrap();
    let cx = Context::current();
    let id = span.span_id();
    std::thread::spawn(move || {
        let _g = cx.attach();
        assert_eq!(Context::current_span().unwrap().span_id(), id);
    })
    .join()
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn context_follows_tasks_across_await_on_a_multi_thread_runtime() {
    let pipeline = Pipeline::new();
    let tracer = pipeline.provider.tracer("drone-cmd");
    let mut tasks = Vec::new();
    let mut roots = Vec::new();
    for i in 0..8 {
        let root = tracer.span(format!("root-{i}")).root().start();
        let expected = root.span_context().clone();
        roots.push(expected.clone());
        let task = async move {
            let mut threads = std::collections::HashSet::new();
            for step in 0..20 {
                threads.insert(std::thread::current().id());
                assert_eq!(
                    Context::current_span().map(|c| c.span_id()),
                    Some(expected.span_id()),
                    "task {i} step {step}"
                );
                if step % 2 == 0 {
                    tokio::task::yield_now().await;
                } else {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            let child = tracer.span(format!("child-{i}")).start();
            // A nested future in its own span, and a spawned task that carries the
            // context explicitly.
            async {
                tokio::time::sleep(Duration::from_millis(2)).await;
                tracer.span(format!("grandchild-{i}")).start().end();
            }
            .in_span(tracer.span(format!("nested-{i}")).start())
            .await;
            let spawned = tokio::spawn(
                async move {
                    tokio::task::yield_now().await;
                    tracer.span(format!("spawned-{i}")).start().end();
                }
                .with_current_context(),
            );
            spawned.await.unwrap();
            drop(child);
            threads.len()
        }
        .in_span(root);
        tasks.push(tokio::spawn(task));
    }
    // Tasks without a context never see another task's context.
    let bystander = tokio::spawn(async {
        for _ in 0..50 {
            assert!(Context::current_span().is_none());
            tokio::task::yield_now().await;
        }
    });
    for task in tasks {
        task.await.unwrap();
    }
    bystander.await.unwrap();
    assert!(Context::current_span().is_none());

    let spans = pipeline.flush_async().await;
    assert_eq!(spans.len(), 8 * 5, "{:?}", names(&spans));
    for (i, root) in roots.iter().enumerate() {
        let root_span = by_name(&spans, &format!("root-{i}"));
        assert_eq!(root_span.span_id, root.span_id());
        let child = by_name(&spans, &format!("child-{i}"));
        let nested = by_name(&spans, &format!("nested-{i}"));
        let grandchild = by_name(&spans, &format!("grandchild-{i}"));
        let spawned = by_name(&spans, &format!("spawned-{i}"));
        assert_eq!(child.parent_span_id, Some(root.span_id()));
        assert_eq!(
            nested.parent_span_id,
            Some(root.span_id()),
            "in_span takes the current context at start"
        );
        assert_eq!(grandchild.parent_span_id, Some(nested.span_id));
        assert_eq!(spawned.parent_span_id, Some(root.span_id()));
        for span in [child, nested, grandchild, spawned] {
            assert_eq!(span.trace_id, root.trace_id());
        }
        assert!(nested.end_unix_nano >= grandchild.end_unix_nano);
    }
}

#[test]
fn sampling_decisions_propagate_with_the_trace() {
    let pipeline = Pipeline::with(
        Sampler::parent_based(Sampler::always_off()),
        BatchConfig::default(),
    );
    let tracer = pipeline.provider.tracer("svc");
    // Roots are dropped, and their children follow.
    let root = tracer.span("dropped-root").start();
    assert!(!root.span_context().is_sampled());
    tracer
        .span("dropped-child")
        .parent(root.span_context())
        .start()
        .end();
    drop(root);
    // A sampled remote parent is followed.
    let remote = SpanContext::remote(
        "4bf92f3577b34da6a3ce929d0e0e4736".parse().unwrap(),
        "00f067aa0ba902b7".parse().unwrap(),
        1,
        None,
    );
    let kept = tracer.span("kept").parent(&remote).start();
    assert!(kept.span_context().is_sampled());
    assert!(kept.is_recording());
    drop(kept);
    let spans = pipeline.flush();
    assert_eq!(names(&spans), ["kept"]);

    let ratio = Pipeline::with(Sampler::ratio(0.5), BatchConfig::default());
    let tracer = ratio.provider.tracer("svc");
    let mut expected = 0;
    for _ in 0..400 {
        let span = tracer.span("r").start();
        if Sampler::ratio(0.5).should_sample(None, span.trace_id()) {
            expected += 1;
        }
        assert_eq!(span.is_recording(), span.span_context().is_sampled());
    }
    assert_eq!(ratio.flush().len(), expected);
    assert!((100..300).contains(&expected), "{expected}");

    let never = Pipeline::with(Sampler::always_off(), BatchConfig::default());
    never.provider.tracer("svc").span("x").start().end();
    assert!(never.flush().is_empty());
}

#[test]
fn per_handler_batching_sends_each_handlers_spans_together() {
    let pipeline = Pipeline::with(Sampler::default(), BatchConfig::per_handler());
    let tracer = pipeline.provider.tracer("fpv-ops");
    let remote = SpanContext::remote(
        "4bf92f3577b34da6a3ce929d0e0e4736".parse().unwrap(),
        "00f067aa0ba902b7".parse().unwrap(),
        1,
        None,
    );
    // Two handlers interleaved on one thread: each is the local root of its own group.
    let h1 = tracer.span("handler-1").parent(&remote).start();
    let h2 = tracer.span("handler-2").root().start();
    let a = tracer.span("h1-a").parent(h1.span_context()).start();
    let b = tracer.span("h2-a").parent(h2.span_context()).start();
    let c = tracer.span("h1-b").parent(a.span_context()).start();
    drop(c);
    drop(b);
    drop(a);
    drop(h2);
    drop(h1);
    pipeline.provider.force_flush().unwrap();
    let batches: Vec<Vec<String>> = pipeline
        .exporter
        .batches()
        .into_iter()
        .map(|b| b.into_iter().map(|s| s.name).collect())
        .collect();
    assert_eq!(
        batches,
        vec![
            vec!["h2-a".to_string(), "handler-2".into()],
            vec!["h1-b".to_string(), "h1-a".into(), "handler-1".into()],
        ]
    );
}

#[test]
fn a_full_queue_drops_and_counts_instead_of_blocking() {
    struct Slow;
    #[async_trait::async_trait]
    impl clew_sdk::SpanExporter for Slow {
        async fn export(
            &mut self,
            _batch: &mut clew_sdk::SpanBatch,
        ) -> Result<(), clew_sdk::ExportError> {
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok(())
        }
    }
    let provider = TracerProvider::builder()
        .with_processor(BatchProcessor::new(
            Slow,
            BatchConfig {
                max_queue_size: 8,
                max_export_batch_size: 4,
                ..BatchConfig::default()
            },
        ))
        .build();
    let tracer = provider.tracer("svc");
    let started = std::time::Instant::now();
    for _ in 0..1_000 {
        tracer.span("s").start().end();
    }
    assert!(provider.dropped_spans() > 0);
    // Not a timing assertion on the SDK's speed: only that ending spans did not wait
    // for the 300 ms exporter on every batch (1000 spans / 4 per batch * 300 ms).
    assert!(started.elapsed() < Duration::from_secs(30));
    provider.shutdown().unwrap();
    let dropped = provider.dropped_spans();
    tracer.span("after-shutdown").start().end();
    assert_eq!(provider.dropped_spans(), dropped + 1);
    assert_eq!(provider.force_flush(), Err(clew_sdk::ExportError::ShutDown));
}

#[test]
fn shutdown_flushes_everything_that_ended() {
    let exporter = InMemoryExporter::new();
    let provider = TracerProvider::builder()
        .with_processor(BatchProcessor::new(
            exporter.clone(),
            BatchConfig {
                scheduled_delay: Duration::from_secs(3600),
                ..BatchConfig::default()
            },
        ))
        .build();
    let tracer = provider.tracer("svc");
    for i in 0..1_500 {
        tracer.span("s").attribute("i", i).start().end();
    }
    provider.shutdown().unwrap();
    assert_eq!(exporter.spans().len(), 1_500);
    assert!(exporter.batches().iter().all(|b| b.len() <= 512));
    // A second shutdown is harmless.
    provider.shutdown().unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn async_flush_works_on_a_single_threaded_runtime() {
    let pipeline = Pipeline::new();
    pipeline.provider.tracer("svc").span("s").start().end();
    assert_eq!(pipeline.flush_async().await.len(), 1);
    pipeline.provider.shutdown_async().await.unwrap();
}

#[test]
fn reused_span_blocks_carry_nothing_over() {
    let pipeline = Pipeline::new();
    let tracer = pipeline.provider.tracer("svc");
    let remote = SpanContext::remote(
        "4bf92f3577b34da6a3ce929d0e0e4736".parse().unwrap(),
        "00f067aa0ba902b7".parse().unwrap(),
        1,
        Some("congo=t61rcWkgMzE".parse().unwrap()),
    );
    for _ in 0..20 {
        let mut span = tracer
            .span("full")
            .kind(SpanKind::Producer)
            .parent(&remote)
            .link(&remote)
            .attribute("a", 1)
            .start();
        span.add_event("e", [kv("k", "v")]);
        span.set_status(StatusCode::Error, "bad".to_string());
    }
    pipeline.flush();
    // This span's end takes the emptied blocks back into the thread's pool; the
    // spans after it are built in them.
    tracer.span("refill").root().start().end();
    for _ in 0..20 {
        tracer.span("plain").root().start().end();
    }
    let spans = pipeline.flush();
    let plain: Vec<_> = spans.iter().filter(|s| s.name == "plain").collect();
    assert_eq!(plain.len(), 20);
    for span in plain {
        assert_eq!(span.kind, SpanKind::Internal);
        assert_eq!(span.parent_span_id, None);
        assert!(span.attributes.is_empty() && span.events.is_empty() && span.links.is_empty());
        assert_eq!(span.status.code, StatusCode::Unset);
        assert_eq!(span.status.message, "");
        assert_eq!(span.trace_state, "");
        assert_ne!(span.trace_id, remote.trace_id());
    }
    let full = spans.iter().find(|s| s.name == "full").unwrap();
    assert_eq!(full.trace_state, "congo=t61rcWkgMzE");
    assert_eq!(full.status.message, "bad");
}

#[test]
fn spans_ended_on_threads_that_have_exited_are_exported() {
    let exporter = InMemoryExporter::new();
    let provider = TracerProvider::builder()
        .with_processor(BatchProcessor::new(
            exporter.clone(),
            BatchConfig {
                max_queue_size: 10_000,
                max_export_batch_size: 100,
                scheduled_delay: Duration::from_millis(5),
                ..BatchConfig::default()
            },
        ))
        .build();
    let tracer = provider.tracer("svc");
    let threads: Vec<_> = (0..8)
        .map(|t| {
            std::thread::spawn(move || {
                for i in 0..1_000 {
                    tracer
                        .span("s")
                        .attribute("t", t)
                        .attribute("i", i)
                        .start()
                        .end();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    provider.shutdown().unwrap();
    let spans = exporter.spans();
    assert_eq!(spans.len(), 8_000);
    assert_eq!(provider.dropped_spans(), 0);
    let distinct: std::collections::HashSet<_> = spans.iter().map(|s| s.span_id).collect();
    assert_eq!(distinct.len(), 8_000);
}
