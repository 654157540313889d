//! Malformed and oversized OTLP requests get clear errors, and the server keeps serving.

mod support;

use std::io::Write;
use std::sync::Arc;

use clew_model::{Resource, Span, SpanId, SpanKind, TraceId};
use clew_otlp::proto::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;
use support::{Clew, get_json};

const MAX_REQUEST: usize = 64 * 1024;

fn spans(trace_id: TraceId, count: usize, name_len: usize) -> Vec<Span> {
    (0..count)
        .map(|_| Span {
            trace_id,
            span_id: SpanId::generate(),
            parent_span_id: None,
            trace_state: String::new(),
            name: "x".repeat(name_len),
            kind: SpanKind::Server,
            start_unix_nano: 1_700_000_000_000_000_000,
            end_unix_nano: 1_700_000_000_000_100_000,
            attributes: vec![],
            events: vec![],
            links: vec![],
            status: Default::default(),
            resource: Arc::new(Resource::for_service("bad-input")),
            scope: Default::default(),
            flags: 0,
        })
        .collect()
}

struct Reply {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn post(clew: &Clew, content_type: &str, encoding: Option<&str>, body: Vec<u8>) -> Reply {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut request = reqwest::Client::new()
            .post(format!("http://{}/v1/traces", clew.otlp_http))
            .header("content-type", content_type)
            .body(body);
        if let Some(encoding) = encoding {
            request = request.header("content-encoding", encoding);
        }
        let response = request.send().await.expect("POST");
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        Reply {
            status: response.status().as_u16(),
            content_type,
            body: response.bytes().await.unwrap().to_vec(),
        }
    })
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn assert_still_serving(clew: &mut Clew) {
    assert!(clew.is_running(), "clew died");
    let trace_id = TraceId::generate();
    let body = clew_otlp::to_request(&spans(trace_id, 2, 8)).encode_to_vec();
    let reply = post(clew, "application/x-protobuf", None, body);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let (status, trace) = get_json(&clew.api(&format!("/api/traces/{trace_id}")));
    assert_eq!(status, 200);
    assert_eq!(trace["data"][0]["spans"].as_array().unwrap().len(), 2);
}

#[test]
fn malformed_requests_get_clear_errors_and_lose_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let max = MAX_REQUEST.to_string();
    let mut clew = Clew::start_with(dir.path(), &["--max-request-bytes", &max]);

    let garbage = post(&clew, "application/x-protobuf", None, vec![0xff; 64]);
    assert_eq!(garbage.status, 400);
    assert_eq!(garbage.content_type, "application/x-protobuf");
    assert!(
        garbage.text().contains("malformed OTLP protobuf"),
        "{}",
        garbage.text()
    );

    let bad_json = post(
        &clew,
        "application/json",
        None,
        b"{\"resourceSpans\": [".to_vec(),
    );
    assert_eq!(bad_json.status, 400);
    assert!(
        bad_json.text().contains("malformed OTLP/JSON"),
        "{}",
        bad_json.text()
    );

    let snake = br#"{"resource_spans":[{"scope_spans":[{"spans":[{"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7","name":"x"}]}]}]}"#;
    let snake = post(&clew, "application/json", None, snake.to_vec());
    assert_eq!(
        snake.status, 400,
        "zero spans from unknown keys is not a success"
    );
    assert!(snake.text().contains("camelCase"), "{}", snake.text());

    let wrong_type = post(&clew, "text/plain", None, b"hello".to_vec());
    assert_eq!(wrong_type.status, 415);

    let broken_gzip = post(
        &clew,
        "application/x-protobuf",
        Some("gzip"),
        b"not gzip at all".to_vec(),
    );
    assert_eq!(broken_gzip.status, 400);
    assert!(
        broken_gzip.text().contains("gzip"),
        "{}",
        broken_gzip.text()
    );

    let oversized = clew_otlp::to_request(&spans(TraceId::generate(), 100, 1024)).encode_to_vec();
    assert!(oversized.len() > MAX_REQUEST);
    assert_eq!(
        post(&clew, "application/x-protobuf", None, oversized).status,
        413
    );

    // A gzip bomb: tiny on the wire, far beyond the limit once expanded.
    let bomb = gzip(&vec![0u8; 64 * MAX_REQUEST]);
    assert!(bomb.len() < MAX_REQUEST);
    let bomb = post(&clew, "application/x-protobuf", Some("gzip"), bomb);
    assert_eq!(bomb.status, 413, "{}", bomb.text());

    // Valid gzip and JSON are accepted, and invalid spans are reported as partial success.
    let trace_id = TraceId::generate();
    let mut request = clew_otlp::to_request(&spans(trace_id, 3, 8));
    request.resource_spans[0].scope_spans[0].spans[1].span_id = vec![0; 8];
    let json = serde_json::to_vec(&request).unwrap();
    let partial = post(&clew, "application/json", Some("gzip"), gzip(&json));
    assert_eq!(partial.status, 200, "{}", partial.text());
    let partial: serde_json::Value = serde_json::from_slice(&partial.body).unwrap();
    assert_eq!(partial["partialSuccess"]["rejectedSpans"], 1, "{partial}");
    assert!(
        partial["partialSuccess"]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("span id")
    );
    let (_, stored) = get_json(&clew.api(&format!("/api/traces/{trace_id}")));
    assert_eq!(stored["data"][0]["spans"].as_array().unwrap().len(), 2);

    assert_still_serving(&mut clew);
}

#[test]
fn oversized_grpc_messages_are_refused_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let max = MAX_REQUEST.to_string();
    let mut clew = Clew::start_with(dir.path(), &["--max-request-bytes", &max]);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut client = TraceServiceClient::connect(format!("http://{}", clew.otlp_grpc))
            .await
            .unwrap();
        let too_big = clew_otlp::to_request(&spans(TraceId::generate(), 100, 1024));
        let status = client.export(too_big).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::OutOfRange, "{status:?}");

        let trace_id = TraceId::generate();
        let mut request = clew_otlp::to_request(&spans(trace_id, 2, 8));
        request.resource_spans[0].scope_spans[0].spans[0].trace_id = vec![1, 2, 3];
        let response = client.export(request).await.unwrap().into_inner();
        let partial = response.partial_success.expect("partial success reported");
        assert_eq!(partial.rejected_spans, 1);
        assert!(
            partial.error_message.contains("trace id"),
            "{}",
            partial.error_message
        );
    });
    assert_still_serving(&mut clew);
}
