//! clew's SDK against `opentelemetry_sdk` and `fastrace`, in the same run.
//!
//! Every library records spans with three string attributes and sends them to an
//! exporter that discards them (clew's counts them, one addition per batch, to report
//! its drops), through its usual background pipeline (clew's and
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

use criterion::{Criterion, criterion_group};

mod clew {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use clew_sdk::{
        BatchConfig, BatchProcessor, ExportError, Sampler, SpanBatch, SpanExporter, Tracer,
        TracerProvider,
    };

    /// Discards every batch, counting its spans (one addition per batch, so that the
    /// run can say what share of the spans were dropped).
    struct Noop(Arc<AtomicU64>);

    #[async_trait::async_trait]
    impl SpanExporter for Noop {
        async fn export(&mut self, batch: &mut SpanBatch) -> Result<(), ExportError> {
            self.0.fetch_add(batch.len() as u64, Ordering::Relaxed);
            Ok(())
        }
    }

    /// Spans exported so far by every provider `setup` made.
    pub static EXPORTED: std::sync::LazyLock<Arc<AtomicU64>> =
        std::sync::LazyLock::new(Default::default);

    pub fn setup() -> (TracerProvider, Tracer) {
        let exporter = Noop(EXPORTED.clone());
        let provider = TracerProvider::builder()
            .with_processor(BatchProcessor::new(exporter, BatchConfig::default()))
            .with_sampler(Sampler::always_on())
            .build();
        let tracer = provider.tracer("bench");
        (provider, tracer)
    }

    /// "dropped D of N spans (P%)" for `provider`, which must be the only provider
    /// made by `setup` that has ended spans (`EXPORTED` counts for all of them).
    pub fn drops(provider: &TracerProvider) -> String {
        let dropped = provider.dropped_spans();
        let ended = dropped + EXPORTED.load(Ordering::Relaxed);
        format!(
            "dropped {dropped} of {ended} spans ({:.1}%)",
            100.0 * dropped as f64 / ended.max(1) as f64
        )
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
        "clew {} so far (queue full while the export thread caught up)",
        clew::drops(&clew_provider)
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
    eprintln!("clew {} in total", clew::drops(&clew_provider));

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

/// `CLEW_SDK_PROFILE="<library>-<shape> <n>"` runs `n` spans of one library and exits
/// instead of benchmarking, for counting instructions under
/// `valgrind --tool=callgrind` (repeatable on a loaded machine, unlike wall-clock time).
/// `<library>` is `clew`, `otel` or `fastrace`; `<shape>` is `root` (what `root_span`
/// runs) or `trace` (what `trace_of_11` runs). It flushes after every 1,000 spans, as
/// `1000_spans_then_flush` does, so the export thread's work is counted and nothing is
/// dropped; the run prints how many spans clew dropped anyway. Subtract the counts of
/// two runs with different `n` to cancel the setup.
///
/// It also prints the CPU time spent per span by the recording thread and by the whole
/// process (CPU clocks, so time spent descheduled on a loaded machine does not count).
#[inline(never)]
fn profile(spec: &str) {
    let (what, n) = spec.split_once(' ').expect("\"<library>-<shape> <n>\"");
    let n: usize = n.trim().parse().expect("a span count");
    let per_iteration = if what.ends_with("trace") { 11 } else { 1 };
    let iterations = n / per_iteration;
    let per_flush = (1000 / per_iteration).max(1);
    let cpu_started = cpu_nanos(CLOCK_THREAD_CPUTIME_ID);
    let process_started = cpu_nanos(CLOCK_PROCESS_CPUTIME_ID);
    match what {
        "clew-root" | "clew-trace" => {
            let (provider, tracer) = clew::setup();
            for i in 0..iterations {
                if per_iteration == 1 {
                    clew::span(&tracer, "root");
                } else {
                    clew::trace(&tracer, 10);
                }
                if (i + 1) % per_flush == 0 {
                    provider.force_flush().unwrap();
                }
            }
            provider.force_flush().unwrap();
            eprintln!("clew {}", clew::drops(&provider));
            provider.shutdown().unwrap();
        }
        "otel-root" | "otel-trace" => {
            let (provider, tracer) = otel::setup();
            for i in 0..iterations {
                if per_iteration == 1 {
                    otel::span(&tracer, "root");
                } else {
                    otel::trace(&tracer, 10);
                }
                if (i + 1) % per_flush == 0 {
                    provider.force_flush().unwrap();
                }
            }
            provider.force_flush().unwrap();
            let _ = provider.shutdown();
        }
        "fastrace-root" | "fastrace-trace" => {
            fast::setup();
            for i in 0..iterations {
                if per_iteration == 1 {
                    fast::root_span();
                } else {
                    fast::trace(10);
                }
                if (i + 1) % per_flush == 0 {
                    fastrace::flush();
                }
            }
            fastrace::flush();
        }
        other => panic!("unknown profile {other:?}"),
    }
    let spans = (iterations * per_iteration) as f64;
    let thread = cpu_nanos(CLOCK_THREAD_CPUTIME_ID) - cpu_started;
    let process = cpu_nanos(CLOCK_PROCESS_CPUTIME_ID) - process_started;
    eprintln!(
        "{what}: CPU time per span: {:.1} ns on the recording thread, {:.1} ns in all threads",
        thread as f64 / spans,
        process as f64 / spans
    );
}

const CLOCK_PROCESS_CPUTIME_ID: i32 = 2;
const CLOCK_THREAD_CPUTIME_ID: i32 = 3;

/// CPU time of this thread or process in nanoseconds (0 where unsupported).
fn cpu_nanos(clock: i32) -> u64 {
    #[cfg(all(target_os = "linux", target_pointer_width = "64"))]
    {
        #[repr(C)]
        struct Timespec {
            tv_sec: i64,
            tv_nsec: i64,
        }
        unsafe extern "C" {
            fn clock_gettime(clock: i32, time: *mut Timespec) -> i32;
        }
        let mut time = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `time` is a valid `struct timespec` for the call to fill.
        unsafe { clock_gettime(clock, &mut time) };
        time.tv_sec as u64 * 1_000_000_000 + time.tv_nsec as u64
    }
    #[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
    {
        let _ = clock;
        0
    }
}

criterion_group!(benches, spans, propagation);

fn main() {
    if let Ok(spec) = std::env::var("CLEW_SDK_PROFILE") {
        profile(&spec);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
