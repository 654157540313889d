//! Shared test helpers: an in-memory pipeline, a private redis-server, and OTLP
//! receivers (gRPC and HTTP) that decode with `clew-otlp`.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener as StdListener};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clew_model::Span as ModelSpan;
use clew_otlp::proto::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use clew_otlp::{ExportTraceServiceRequest, ExportTraceServiceResponse, spans_from_request};
use clew_sdk::{BatchConfig, BatchProcessor, InMemoryExporter, Sampler, TracerProvider};

/// A provider exporting to memory; `flush` returns everything ended so far.
pub struct Pipeline {
    pub provider: TracerProvider,
    pub exporter: InMemoryExporter,
}

impl Pipeline {
    pub fn new() -> Pipeline {
        Pipeline::with(Sampler::default(), BatchConfig::default())
    }

    pub fn with(sampler: Sampler, config: BatchConfig) -> Pipeline {
        let exporter = InMemoryExporter::new();
        let provider = TracerProvider::builder()
            .with_processor(BatchProcessor::new(exporter.clone(), config))
            .with_sampler(sampler)
            .build();
        Pipeline { provider, exporter }
    }

    pub fn flush(&self) -> Vec<ModelSpan> {
        self.provider.force_flush().expect("flush");
        self.exporter.spans()
    }

    pub async fn flush_async(&self) -> Vec<ModelSpan> {
        self.provider.force_flush_async().await.expect("flush");
        self.exporter.spans()
    }
}

pub fn by_name<'a>(spans: &'a [ModelSpan], name: &str) -> &'a ModelSpan {
    let found: Vec<_> = spans.iter().filter(|s| s.name == name).collect();
    assert_eq!(
        found.len(),
        1,
        "expected one span named {name:?} in {:#?}",
        names(spans)
    );
    found[0]
}

pub fn all_named<'a>(spans: &'a [ModelSpan], name: &str) -> Vec<&'a ModelSpan> {
    spans.iter().filter(|s| s.name == name).collect()
}

pub fn names(spans: &[ModelSpan]) -> Vec<&str> {
    spans.iter().map(|s| s.name.as_str()).collect()
}

pub fn attr<'a>(span: &'a ModelSpan, key: &str) -> &'a clew_model::AttributeValue {
    span.attribute(key).unwrap_or_else(|| {
        panic!(
            "span {:?} has no attribute {key:?}: {:?}",
            span.name, span.attributes
        )
    })
}

pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A redis-server of our own on a free loopback port, killed on drop.
pub struct RedisServer {
    child: Child,
    pub port: u16,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        let port = free_port();
        assert_ne!(port, 6379);
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (apt-get install redis-server)");
        let server = RedisServer { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What an OTLP receiver has been sent: one entry per request.
#[derive(Clone, Default)]
pub struct Received(Arc<Mutex<Vec<Vec<ModelSpan>>>>);

impl Received {
    pub fn requests(&self) -> Vec<Vec<ModelSpan>> {
        self.0.lock().unwrap().clone()
    }

    pub fn spans(&self) -> Vec<ModelSpan> {
        self.requests().into_iter().flatten().collect()
    }

    fn push(&self, request: ExportTraceServiceRequest) {
        let decoded = spans_from_request(request);
        assert_eq!(decoded.rejected, 0, "the receiver rejected spans");
        self.0.lock().unwrap().push(decoded.spans);
    }

    pub async fn wait_for(&self, count: usize) -> Vec<ModelSpan> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let spans = self.spans();
            if spans.len() >= count || Instant::now() > deadline {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

struct Grpc(Received);

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// An OTLP/gRPC receiver on a free port, running on the current runtime.
pub async fn grpc_receiver() -> (SocketAddr, Received) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Received::default();
    let service = TraceServiceServer::new(Grpc(received.clone()));
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await
            .unwrap();
    });
    (addr, received)
}

/// An OTLP/HTTP (protobuf) receiver on a free port, running on the current runtime.
pub async fn http_receiver() -> (SocketAddr, Received) {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, StatusCode};
    use prost::Message;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Received::default();
    let state = received.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let state = state.clone();
            async move {
                if headers.get("content-type").and_then(|v| v.to_str().ok())
                    != Some("application/x-protobuf")
                {
                    return (StatusCode::UNSUPPORTED_MEDIA_TYPE, Vec::new());
                }
                match clew_otlp::decode_protobuf(&body) {
                    Ok(request) => {
                        state.push(request);
                        (
                            StatusCode::OK,
                            ExportTraceServiceResponse::default().encode_to_vec(),
                        )
                    }
                    Err(_) => (StatusCode::BAD_REQUEST, Vec::new()),
                }
            }
        }),
    );
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (addr, received)
}

/// An OTLP/gRPC receiver on a runtime of its own whose threads send their `tracing`
/// output nowhere, so a test of the `tracing` layer sees only what it made itself.
pub fn quiet_grpc_receiver() -> (SocketAddr, Received) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _quiet = tracing::dispatcher::set_default(&tracing::Dispatch::none());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .on_thread_start(|| {
                std::mem::forget(tracing::dispatcher::set_default(&tracing::Dispatch::none()))
            })
            .build()
            .unwrap();
        runtime.block_on(async move {
            tx.send(grpc_receiver().await).unwrap();
            std::future::pending::<()>().await;
        });
    });
    rx.recv().unwrap()
}
