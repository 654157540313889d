use std::future::Future;

use clew_otlp::proto::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use clew_otlp::{ExportTraceServiceRequest, ExportTraceServiceResponse, spans_from_request};
use tokio::net::TcpListener;
use tonic::codec::CompressionEncoding;
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Request, Response, Status};

use crate::{IngestError, Pipeline, export};

struct OtlpGrpc {
    pipeline: Pipeline,
}

#[tonic::async_trait]
impl TraceService for OtlpGrpc {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let decoded = spans_from_request(request.into_inner());
        export(&self.pipeline, decoded)
            .await
            .map(Response::new)
            .map_err(grpc_status)
    }
}

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
pub fn grpc_service(
    pipeline: Pipeline,
    max_message_bytes: usize,
) -> TraceServiceServer<impl TraceService> {
    TraceServiceServer::new(OtlpGrpc { pipeline })
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(max_message_bytes)
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
