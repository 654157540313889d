//! clew's SDK against `opentelemetry_sdk` and `fastrace`, in the same run.
//!
//! Every library records spans with three string attributes and sends them to an
//! exporter that discards them, through its usual background pipeline (clew's and
//! OpenTelemetry's batch processors, fastrace's global collector), with every span
//! sampled.
//!
//! - `root_span`: one span that starts a new trace, per iteration.
//! - `trace_of_11`: a root and ten children, per iteration (the common case inside a
//!   request handler; divide by 11 for the cost of one span).
//! - `1000_spans_then_flush`: 100 traces of 10 spans, then a flush that waits for the
//!   exporter: the whole cost, background work included, where the two benchmarks
//!   above only measure the application thread.
//! - `propagation`: injecting a context into carrier headers and extracting it back.
//!
//! The first two measure the thread that records spans; each library's background
//! thread runs concurrently and, if it falls behind, each drops spans rather than
//! block (the run prints how many clew dropped).

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};

mod clew {
    use clew_sdk::{BatchConfig, BatchProcessor, NoopExporter, Sampler, Tracer, TracerProvider};

    pub fn setup() -> (TracerProvider, Tracer) {
        let provider = TracerProvider::builder()
            .with_processor(BatchProcessor::new(NoopExporter, BatchConfig::default()))
            .with_sampler(Sampler::always_on())
            .build();
        let tracer = provider.tracer("bench");
        (provider, tracer)
    }

    #[inline]
    pub fn span(tracer: &Tracer, name: &'static str) {
        let mut span = tracer
            .span(name)
            .attribute("http.method", "GET")
            .attribute("http.route", "/api/traces")
            .attribute("peer.service", "ares")
            .start();
        span.end();
    }

    pub fn trace(tracer: &Tracer, children: usize) {
        let mut root = tracer
            .span("root")
            .root()
            .attribute("http.method", "GET")
            .attribute("http.route", "/api/traces")
            .attribute("peer.service", "ares")
            .start();
        {
            let _current = root.enter();
            for _ in 0..children {
                span(tracer, "child");
            }
        }
        root.end();
    }
}

mod otel {
    use super::*;
    use opentelemetry::KeyValue;
    use opentelemetry::trace::{Span, TraceContextExt, Tracer, TracerProvider};
    use opentelemetry_sdk::error::OTelSdkResult;
    use opentelemetry_sdk::trace::{
        BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider, SpanData, SpanExporter,
    };

    #[derive(Debug)]
    struct Noop;

    impl SpanExporter for Noop {
        async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
            Ok(())
        }
    }

    pub fn setup() -> (SdkTracerProvider, SdkTracer) {
        let provider = SdkTracerProvider::builder()
            .with_span_processor(BatchSpanProcessor::builder(Noop).build())
            .with_sampler(Sampler::AlwaysOn)
            .build();
        let tracer = provider.tracer("bench");
        (provider, tracer)
    }

    fn attributes() -> Vec<KeyValue> {
        vec![
            KeyValue::new("http.method", "GET"),
            KeyValue::new("http.route", "/api/traces"),
            KeyValue::new("peer.service", "ares"),
        ]
    }

    #[inline]
    pub fn span(tracer: &SdkTracer, name: &'static str) {
        let mut span = tracer
            .span_builder(name)
            .with_attributes(attributes())
            .start(tracer);
        span.end();
    }

    pub fn trace(tracer: &SdkTracer, children: usize) {
        let root = tracer
            .span_builder("root")
            .with_attributes(attributes())
            .start_with_context(tracer, &opentelemetry::Context::new());
        let cx = opentelemetry::Context::current_with_span(root);
        {
            let _current = cx.clone().attach();
            for _ in 0..children {
                span(tracer, "child");
            }
        }
        cx.span().end();
    }

    pub fn propagation() -> impl FnMut() {
        use opentelemetry::propagation::TextMapPropagator;
        use opentelemetry_sdk::propagation::TraceContextPropagator;
        let (_provider, tracer) = setup();
        let span = tracer.start("parent");
        let cx = opentelemetry::Context::current_with_span(span);
        let propagator = TraceContextPropagator::new();
        move || {
            let mut headers: HashMap<String, String> = HashMap::new();
            propagator.inject_context(&cx, &mut headers);
            let extracted = propagator.extract(&headers);
            black_box(extracted.span().span_context().trace_id());
        }
    }
}

mod fast {
    use super::*;
    use fastrace::Span;
    use fastrace::collector::{Config, Reporter, SpanContext, SpanRecord};
    use fastrace::local::LocalSpan;

    struct Noop;

    impl Reporter for Noop {
        fn report(&mut self, spans: Vec<SpanRecord>) {
            black_box(spans);
        }
    }

    pub fn setup() {
        fastrace::set_reporter(
            Noop,
            Config::default().report_interval(Duration::from_millis(10)),
        );
    }

    const PROPERTIES: [(&str, &str); 3] = [
        ("http.method", "GET"),
        ("http.route", "/api/traces"),
        ("peer.service", "ares"),
    ];

    #[inline]
    pub fn root_span() {
        let span = Span::root("root", SpanContext::random()).with_properties(|| PROPERTIES);
        drop(span);
    }

    pub fn trace(children: usize) {
        let root = Span::root("root", SpanContext::random()).with_properties(|| PROPERTIES);
        {
            let _current = root.set_local_parent();
            for _ in 0..children {
                let child =
                    LocalSpan::enter_with_local_parent("child").with_properties(|| PROPERTIES);
                drop(child);
            }
        }
        drop(root);
    }

    pub fn propagation() -> impl FnMut() {
        let context = SpanContext::random();
        move || {
            let mut headers: HashMap<String, String> = HashMap::new();
            headers.insert("traceparent".into(), context.encode_w3c_traceparent());
            let extracted = SpanContext::decode_w3c_traceparent(&headers["traceparent"]);
            black_box(extracted);
        }
    }
}

fn spans(c: &mut Criterion) {
    let (clew_provider, clew_tracer) = clew::setup();
    let (otel_provider, otel_tracer) = otel::setup();
    fast::setup();

    let mut group = c.benchmark_group("root_span");
    group.bench_function("clew", |b| b.iter(|| clew::span(&clew_tracer, "root")));
    let unexported = clew_sdk::TracerProvider::builder()
        .with_processor(clew_sdk::NoopProcessor)
        .with_sampler(clew_sdk::Sampler::always_on())
        .build()
        .tracer("bench");
    group.bench_function("clew_recorded_not_queued", |b| {
        b.iter(|| clew::span(&unexported, "root"))
    });
    group.bench_function("opentelemetry_sdk", |b| {
        b.iter(|| otel::span(&otel_tracer, "root"))
    });
    group.bench_function("fastrace", |b| b.iter(fast::root_span));
    group.finish();

    let mut group = c.benchmark_group("trace_of_11");
    group.bench_function("clew", |b| b.iter(|| clew::trace(&clew_tracer, 10)));
    group.bench_function("opentelemetry_sdk", |b| {
        b.iter(|| otel::trace(&otel_tracer, 10))
    });
    group.bench_function("fastrace", |b| b.iter(|| fast::trace(10)));
    group.finish();

    clew_provider.force_flush().unwrap();
    eprintln!(
        "clew dropped {} spans so far (queue full while the export thread caught up)",
        clew_provider.dropped_spans()
    );

    let mut group = c.benchmark_group("1000_spans_then_flush");
    group.sample_size(20);
    group.bench_function("clew", |b| {
        b.iter(|| {
            for _ in 0..100 {
                clew::trace(&clew_tracer, 9);
            }
            clew_provider.force_flush().unwrap();
        })
    });
    group.bench_function("opentelemetry_sdk", |b| {
        b.iter(|| {
            for _ in 0..100 {
                otel::trace(&otel_tracer, 9);
            }
            otel_provider.force_flush().unwrap();
        })
    });
    group.bench_function("fastrace", |b| {
        b.iter(|| {
            for _ in 0..100 {
                fast::trace(9);
            }
            fastrace::flush();
        })
    });
    group.finish();
    eprintln!(
        "clew dropped {} spans in total",
        clew_provider.dropped_spans()
    );

    clew_provider.shutdown().unwrap();
    let _ = otel_provider.shutdown();
}

fn propagation(c: &mut Criterion) {
    use clew_sdk::propagation::{extract_context, extract_headers, inject_context, inject_headers};
    let (provider, tracer) = clew::setup();
    let span = tracer.span("parent").start();
    let cx = span.context();

    let mut group = c.benchmark_group("inject_extract");
    group.bench_function("clew_hashmap", |b| {
        b.iter(|| {
            let mut headers: HashMap<String, String> = HashMap::new();
            inject_context(&cx, &mut headers);
            black_box(extract_context(&headers));
        })
    });
    group.bench_function("clew_http_headermap", |b| {
        b.iter(|| {
            let mut headers = http::HeaderMap::new();
            inject_headers(&cx, &mut headers);
            black_box(extract_headers(&headers));
        })
    });
    group.bench_function("clew_envelope", |b| {
        let body = serde_json::json!({"interceptor": "striker", "target": "orlan"});
        b.iter(|| {
            let bytes = clew_sdk::Envelope::new(&body)
                .unwrap()
                .with_context(&cx)
                .to_vec();
            let envelope = clew_sdk::Envelope::decode(&bytes).unwrap();
            black_box(envelope.context());
        })
    });
    group.bench_function("opentelemetry_sdk_hashmap", |b| b.iter(otel::propagation()));
    group.bench_function("fastrace_traceparent_only", |b| b.iter(fast::propagation()));
    group.finish();
    drop(span);
    provider.shutdown().unwrap();
}

criterion_group!(benches, spans, propagation);
criterion_main!(benches);
