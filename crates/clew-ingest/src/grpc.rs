use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use clew_otlp::{ExportTraceServiceResponse, OtlpError, Received, receive_protobuf};
use tokio::net::TcpListener;
use tonic::body::Body as TonicBody;
use tonic::codec::{BufferSettings, Codec, CompressionEncoding, DecodeBuf, Decoder};
use tonic::codegen::{Body, BoxFuture, Service, StdError, http};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Request, Response, Status};

use crate::{IngestError, Pipeline, export};

/// The one method of OTLP's trace service.
const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// OTLP's retryable codes for an overloaded or unavailable server are UNAVAILABLE (and
/// RESOURCE_EXHAUSTED only with retry information); a request that can never fit is
/// INVALID_ARGUMENT so the client drops it instead of retrying forever.
fn grpc_status(error: IngestError) -> Status {
    let code = match error {
        IngestError::Overloaded { .. } | IngestError::Unavailable(_) => Code::Unavailable,
        IngestError::TooLarge { .. } => Code::InvalidArgument,
    };
    Status::new(code, error.to_string())
}

/// The OTLP trace service, accepting gzip and bounded in message size.
///
/// Written out instead of using the generated `TraceServiceServer` so that the request
/// is decoded in place ([`receive_protobuf`]) rather than into the generated request
/// type and then model spans; everything else (path, compression, size limit, status
/// codes, INTERNAL for undecodable messages) is what the generated server does.
#[derive(Clone)]
pub struct OtlpGrpcService {
    pipeline: Pipeline,
    max_message_bytes: usize,
}

pub fn grpc_service(pipeline: Pipeline, max_message_bytes: usize) -> OtlpGrpcService {
    OtlpGrpcService {
        pipeline,
        max_message_bytes,
    }
}

impl NamedService for OtlpGrpcService {
    const NAME: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
}

impl<B> Service<http::Request<B>> for OtlpGrpcService
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<TonicBody>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != EXPORT_PATH {
            return Box::pin(async move {
                let mut response = http::Response::new(TonicBody::default());
                let headers = response.headers_mut();
                headers.insert(Status::GRPC_STATUS, (Code::Unimplemented as i32).into());
                headers.insert(
                    http::header::CONTENT_TYPE,
                    tonic::metadata::GRPC_CONTENT_TYPE,
                );
                Ok(response)
            });
        }
        let export = Export(self.pipeline.clone());
        let max = self.max_message_bytes;
        Box::pin(async move {
            let mut grpc = Grpc::new(ExportCodec)
                .accept_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(max);
            Ok(grpc.unary(export, req).await)
        })
    }
}

struct Export(Pipeline);

impl UnaryService<Received> for Export {
    type Response = ExportTraceServiceResponse;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Self::Response>, Status>> + Send>>;

    fn call(&mut self, request: Request<Received>) -> Self::Future {
        let pipeline = self.0.clone();
        Box::pin(async move {
            export(&pipeline, request.into_inner())
                .await
                .map(Response::new)
                .map_err(grpc_status)
        })
    }
}

/// Responses as prost encodes them; requests straight into spans.
#[derive(Clone, Copy)]
struct ExportCodec;

impl Codec for ExportCodec {
    type Encode = ExportTraceServiceResponse;
    type Decode = Received;
    type Encoder = tonic_prost::ProstEncoder<ExportTraceServiceResponse>;
    type Decoder = SpanDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        tonic_prost::ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        SpanDecoder
    }
}

struct SpanDecoder;

impl Decoder for SpanDecoder {
    type Item = Received;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Received>, Status> {
        use prost::bytes::Buf;
        // The message's bytes, split off tonic's buffer without a copy; the spans refer
        // to them until they are stored.
        let len = src.remaining();
        match receive_protobuf(src.copy_to_bytes(len)) {
            Ok(decoded) => Ok(Some(decoded)),
            // As the generated server answers an undecodable message.
            Err(OtlpError::Protobuf(error)) => Err(Status::internal(error.to_string())),
            Err(other) => Err(Status::internal(other.to_string())),
        }
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}

pub async fn serve_grpc(
    listener: TcpListener,
    pipeline: Pipeline,
    max_message_bytes: usize,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .add_service(grpc_service(pipeline, max_message_bytes))
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await
}
