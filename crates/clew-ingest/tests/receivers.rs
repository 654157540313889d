//! Both receivers, over real sockets: every encoding a client may use (gRPC plain and
//! gzip, HTTP protobuf plain and gzip, HTTP JSON) stores the valid spans, reports the
//! invalid ones as partial success, and tells the observer what was stored.

use std::io::Write;
use std::sync::{Arc, Mutex};

use clew_ingest::{HttpLimits, Pipeline, PipelineConfig, SpanBatch, StoredSpans};
use clew_model::{KeyValue, Resource, Scope, Span, SpanId, SpanKind, Status, TraceId};
use clew_otlp::proto::collector::trace::v1::trace_service_client::TraceServiceClient;
use clew_otlp::{ExportTraceServiceRequest, ExportTraceServiceResponse, to_request};
use clew_store::{FjallStore, SpanStore};
use prost::Message;
use tokio::net::TcpListener;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;

/// The embedded store in a private directory: what the receivers stored is read back
/// from it, as the query API would.
fn real_store() -> (tempfile::TempDir, Arc<FjallStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(FjallStore::open(&dir.path().join("spans")).unwrap());
    (dir, store)
}

/// Records the (trace, span, name) of every span it is told about.
#[derive(Default)]
struct Observer(Mutex<Vec<(TraceId, SpanId, String)>>);

impl StoredSpans for Observer {
    fn stored(&self, batches: &[SpanBatch]) {
        let mut seen = self.0.lock().unwrap();
        for span in batches.iter().flat_map(SpanBatch::iter) {
            seen.push((span.trace_id(), span.span_id(), span.name().to_string()));
        }
    }
}

fn sample(n: u8) -> Vec<Span> {
    let resource = Arc::new(Resource {
        attributes: vec![
            KeyValue::new("service.name", "receiver-test"),
            KeyValue::new("host.name", "h1"),
        ],
    });
    let mut trace = [n; 16];
    trace[0] = 0x42;
    (1..=3u8)
        .map(|i| Span {
            trace_id: TraceId(trace),
            span_id: SpanId([i; 8]),
            parent_span_id: (i > 1).then_some(SpanId([1; 8])),
            trace_state: String::new(),
            name: format!("op-{i}"),
            kind: SpanKind::Server,
            start_unix_nano: 1_700_000_000_000_000_000 + u64::from(i),
            end_unix_nano: 1_700_000_000_000_100_000,
            attributes: vec![
                KeyValue::new("http.route", "/x"),
                KeyValue::new("n", i64::from(i)),
            ],
            events: vec![],
            links: vec![],
            status: Status::default(),
            resource: Arc::clone(&resource),
            scope: Scope {
                name: "test".into(),
                version: "1".into(),
            },
            flags: 1,
        })
        .collect()
}

/// The sample's spans plus one with an all-zero trace id, which must be rejected alone.
fn request(n: u8) -> (ExportTraceServiceRequest, Vec<Span>) {
    let good = sample(n);
    let mut bad = good[0].clone();
    bad.trace_id = TraceId([0; 16]);
    bad.name = "invalid".into();
    let mut all = good.clone();
    all.push(bad);
    (to_request(&all), good)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn key(s: &Span) -> (TraceId, SpanId) {
    (s.trace_id, s.span_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_encoding_stores_the_valid_spans_and_reports_the_rest() {
    let (_dir, store) = real_store();
    let observer = Arc::new(Observer::default());
    let pipeline = Pipeline::start_observed(
        Arc::clone(&store) as Arc<dyn SpanStore>,
        PipelineConfig::default(),
        Some(Arc::clone(&observer) as Arc<dyn StoredSpans>),
    );
    let grpc_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc_addr = grpc_listener.local_addr().unwrap();
    let http_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_addr = http_listener.local_addr().unwrap();
    tokio::spawn(clew_ingest::serve_grpc(
        grpc_listener,
        pipeline.clone(),
        4 << 20,
        std::future::pending(),
    ));
    tokio::spawn(clew_ingest::serve_http(
        http_listener,
        clew_ingest::http_router(pipeline.clone(), HttpLimits::default()),
        std::future::pending(),
    ));

    let mut expected: Vec<Span> = Vec::new();
    let check = |response: ExportTraceServiceResponse, how: &str| {
        let partial = response.partial_success.expect(how);
        assert_eq!(partial.rejected_spans, 1, "{how}");
        assert!(
            partial.error_message.contains("invalid"),
            "{how}: {partial:?}"
        );
    };

    // gRPC, plain and gzip.
    let mut client = TraceServiceClient::connect(format!("http://{grpc_addr}"))
        .await
        .unwrap();
    let (req, good) = request(1);
    check(client.export(req).await.unwrap().into_inner(), "gRPC");
    expected.extend(good);
    let mut gzipped = client.clone().send_compressed(CompressionEncoding::Gzip);
    let (req, good) = request(2);
    check(gzipped.export(req).await.unwrap().into_inner(), "gRPC gzip");
    expected.extend(good);

    // HTTP: protobuf, protobuf gzip, JSON.
    let http = reqwest::Client::new();
    let url = format!("http://{http_addr}/v1/traces");
    for (n, how) in [(3u8, "protobuf"), (4, "protobuf gzip"), (5, "json")] {
        let (req, good) = request(n);
        let (content_type, body) = match how {
            "protobuf" => ("application/x-protobuf", req.encode_to_vec()),
            "protobuf gzip" => ("application/x-protobuf", gzip(&req.encode_to_vec())),
            _ => ("application/json", serde_json::to_vec(&req).unwrap()),
        };
        let mut post = http
            .post(&url)
            .header("content-type", content_type)
            .body(body);
        if how.ends_with("gzip") {
            post = post.header("content-encoding", "gzip");
        }
        let reply = post.send().await.unwrap();
        assert_eq!(reply.status(), 200, "{how}");
        let bytes = reply.bytes().await.unwrap();
        let response = if how == "json" {
            serde_json::from_slice(&bytes).unwrap()
        } else {
            ExportTraceServiceResponse::decode(bytes).unwrap()
        };
        check(response, how);
        expected.extend(good);
    }

    let mut traces: Vec<TraceId> = expected.iter().map(|s| s.trace_id).collect();
    traces.sort();
    traces.dedup();
    let mut stored: Vec<Span> = traces
        .into_iter()
        .flat_map(|id| store.trace(id).unwrap().unwrap_or_default())
        .collect();
    stored.sort_by_key(key);
    expected.sort_by_key(key);
    assert_eq!(format!("{stored:?}"), format!("{expected:?}"));
    let mut seen = observer.0.lock().unwrap().clone();
    seen.sort();
    let mut want: Vec<_> = expected
        .iter()
        .map(|s| (s.trace_id, s.span_id, s.name.clone()))
        .collect();
    want.sort();
    assert_eq!(seen, want);
    pipeline.shutdown();
}

/// Sends raw bytes as the gRPC message, to see what the service makes of garbage.
#[derive(Clone, Copy)]
struct RawCodec;
struct RawEncoder;
struct ResponseDecoder;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = ExportTraceServiceResponse;
    type Encoder = RawEncoder;
    type Decoder = ResponseDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> ResponseDecoder {
        ResponseDecoder
    }
}

impl Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        use prost::bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for ResponseDecoder {
    type Item = ExportTraceServiceResponse;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, tonic::Status> {
        ExportTraceServiceResponse::decode(src)
            .map(Some)
            .map_err(|e| tonic::Status::internal(e.to_string()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_answers_garbage_and_unknown_methods_as_the_generated_server_does() {
    let (_dir, store) = real_store();
    let pipeline = Pipeline::start(Arc::clone(&store) as Arc<dyn SpanStore>, Default::default());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(clew_ingest::serve_grpc(
        listener,
        pipeline.clone(),
        4 << 20,
        std::future::pending(),
    ));
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    let call = |path: &'static str, body: Vec<u8>| {
        let mut grpc = grpc.clone();
        async move {
            grpc.ready().await.unwrap();
            grpc.unary(
                tonic::Request::new(body),
                PathAndQuery::from_static(path),
                RawCodec,
            )
            .await
        }
    };
    let export = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
    let garbage = call(export, vec![0xff, 0xff, 0xff]).await.unwrap_err();
    assert_eq!(garbage.code(), tonic::Code::Internal, "{garbage:?}");
    let unknown = call(
        "/opentelemetry.proto.collector.trace.v1.TraceService/Nope",
        Vec::new(),
    )
    .await
    .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::Unimplemented);
    // An empty request is a legal empty export.
    let empty = call(export, Vec::new()).await.unwrap().into_inner();
    assert_eq!(empty.partial_success, None);
    assert!(store.services().unwrap().is_empty(), "nothing was stored");
    grpc.ready().await.unwrap();
    pipeline.shutdown();
}
