use std::future::Future;
use std::io::Read;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::serve::ListenerExt;
use clew_otlp::{OtlpError, Received, decode_json, receive_protobuf, spans_from_request};
use prost::Message;
use tokio::net::TcpListener;

use crate::{IngestError, Pipeline, export};

#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Largest request body as sent (compressed or not).
    pub max_body_bytes: usize,
    /// Largest body after gzip decompression, so a small bomb cannot expand without bound.
    pub max_decoded_bytes: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_body_bytes: 16 << 20,
            max_decoded_bytes: 64 << 20,
        }
    }
}

#[derive(Clone)]
struct HttpState {
    pipeline: Pipeline,
    limits: HttpLimits,
}

/// `google.rpc.Status`, the body OTLP/HTTP prescribes for errors.
#[derive(Clone, PartialEq, Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

#[derive(Clone, Copy, PartialEq)]
enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

pub fn http_router(pipeline: Pipeline, limits: HttpLimits) -> Router {
    Router::new()
        .route("/v1/traces", post(receive_traces))
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .with_state(HttpState { pipeline, limits })
}

pub async fn serve_http(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Without TCP_NODELAY, delayed ACKs meet Nagle and stall small responses ~40 ms.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn receive_traces(
    State(state): State<HttpState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let encoding = match content_type.as_str() {
        "application/x-protobuf" | "application/protobuf" => Encoding::Protobuf,
        "application/json" => Encoding::Json,
        other => {
            return error_response(
                Encoding::Json,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "unsupported content type {other:?}: OTLP/HTTP takes application/x-protobuf or application/json"
                ),
            );
        }
    };
    let body = match decompress(&headers, body, state.limits.max_decoded_bytes) {
        Ok(body) => body,
        Err((status, message)) => return error_response(encoding, status, message),
    };
    let decoded: Result<Received, OtlpError> = match encoding {
        Encoding::Protobuf => receive_protobuf(body),
        Encoding::Json => decode_json(&body).map(|r| spans_from_request(r).into()),
    };
    let decoded = match decoded {
        Ok(decoded) => decoded,
        Err(error) => return error_response(encoding, StatusCode::BAD_REQUEST, error.to_string()),
    };
    match export(&state.pipeline, decoded).await {
        Ok(response) => {
            let body = match encoding {
                Encoding::Protobuf => response.encode_to_vec(),
                Encoding::Json => serde_json::to_vec(&response).expect("OTLP response serializes"),
            };
            ([(header::CONTENT_TYPE, encoding.content_type())], body).into_response()
        }
        Err(error) => {
            let retry_after = match &error {
                IngestError::Overloaded { retry_after, .. } => Some(retry_after.as_secs().max(1)),
                IngestError::Unavailable(_) => Some(1),
                IngestError::TooLarge { .. } => None,
            };
            let status = match error {
                IngestError::Overloaded { .. } => StatusCode::TOO_MANY_REQUESTS,
                IngestError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
                IngestError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            };
            let mut response = error_response(encoding, status, error.to_string());
            if let Some(seconds) = retry_after {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            }
            response
        }
    }
}

fn decompress(
    headers: &HeaderMap,
    body: Bytes,
    max_decoded: usize,
) -> Result<Bytes, (StatusCode, String)> {
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .trim()
        .to_ascii_lowercase();
    match encoding.as_str() {
        "identity" | "" => Ok(body),
        "gzip" => {
            let mut decoded = Vec::new();
            let mut reader = flate2::read::GzDecoder::new(&body[..]).take(max_decoded as u64 + 1);
            reader
                .read_to_end(&mut decoded)
                .map_err(|e| (StatusCode::BAD_REQUEST, format!("invalid gzip body: {e}")))?;
            if decoded.len() > max_decoded {
                return Err((
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("gzip body expands beyond the {max_decoded}-byte limit"),
                ));
            }
            Ok(decoded.into())
        }
        other => Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("unsupported content encoding {other:?}: use gzip or none"),
        )),
    }
}

/// An OTLP/HTTP error: the status code, and a `google.rpc.Status` body in the request's
/// encoding so SDKs can log the message.
fn error_response(encoding: Encoding, status: StatusCode, message: String) -> Response {
    tracing::debug!(%status, %message, "OTLP/HTTP request refused");
    let rpc_code = match status {
        StatusCode::TOO_MANY_REQUESTS => 8,    // RESOURCE_EXHAUSTED
        StatusCode::SERVICE_UNAVAILABLE => 14, // UNAVAILABLE
        _ => 3,                                // INVALID_ARGUMENT
    };
    let body = match encoding {
        Encoding::Protobuf => RpcStatus {
            code: rpc_code,
            message,
        }
        .encode_to_vec(),
        Encoding::Json => {
            serde_json::to_vec(&serde_json::json!({ "code": rpc_code, "message": message }))
                .expect("status serializes")
        }
    };
    (
        status,
        [(header::CONTENT_TYPE, encoding.content_type())],
        body,
    )
        .into_response()
}
