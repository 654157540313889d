//! OTLP exporters: gRPC (tonic) and HTTP/protobuf (reqwest), to any collector.

use std::time::Duration;

use clew_otlp::proto::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;
use tonic::transport::{Channel, Endpoint};

use super::{ExportError, SpanBatch, SpanExporter};

/// Sends batches to an OTLP/gRPC collector (`http://host:4317`). Connects on the
/// first export and again after a failure, so it can be created before the collector
/// is up.
pub struct OtlpGrpcExporter {
    endpoint: String,
    timeout: Duration,
    client: Option<TraceServiceClient<Channel>>,
}

impl OtlpGrpcExporter {
    pub fn new(endpoint: impl Into<String>) -> OtlpGrpcExporter {
        OtlpGrpcExporter {
            endpoint: endpoint.into(),
            timeout: Duration::from_secs(10),
            client: None,
        }
    }

    /// The longest one request may take (default 10 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    async fn client(&mut self) -> Result<&mut TraceServiceClient<Channel>, ExportError> {
        if self.client.is_none() {
            let endpoint = Endpoint::from_shared(self.endpoint.clone())
                .map_err(|e| ExportError::Config(format!("{:?} is not a URL: {e}", self.endpoint)))?
                .timeout(self.timeout)
                .connect_timeout(self.timeout);
            let channel = endpoint
                .connect()
                .await
                .map_err(|e| ExportError::Unreachable {
                    endpoint: self.endpoint.clone(),
                    reason: error_chain(&e),
                })?;
            self.client = Some(TraceServiceClient::new(channel));
        }
        Ok(self.client.as_mut().expect("just connected"))
    }
}

#[async_trait::async_trait]
impl SpanExporter for OtlpGrpcExporter {
    async fn export(&mut self, batch: &mut SpanBatch) -> Result<(), ExportError> {
        let request = batch.take_otlp();
        let endpoint = self.endpoint.clone();
        let client = self.client().await?;
        match client.export(request).await {
            Ok(response) => partial_success(&endpoint, response.into_inner().partial_success),
            Err(status) => {
                // A broken connection is re-established on the next export.
                self.client = None;
                Err(match status.code() {
                    tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => {
                        ExportError::Unreachable {
                            endpoint,
                            reason: status.message().to_string(),
                        }
                    }
                    code => ExportError::Rejected {
                        endpoint,
                        reason: format!("{code:?}: {}", status.message()),
                    },
                })
            }
        }
    }
}

/// Sends batches to an OTLP/HTTP collector as protobuf. `endpoint` is the collector's
/// base URL (`http://host:4318`, to which `/v1/traces` is appended) or the full
/// traces URL.
pub struct OtlpHttpExporter {
    url: String,
    client: reqwest::Client,
}

impl OtlpHttpExporter {
    pub fn new(endpoint: impl Into<String>) -> OtlpHttpExporter {
        OtlpHttpExporter::with_timeout(endpoint, Duration::from_secs(10))
    }

    pub fn with_timeout(endpoint: impl Into<String>, timeout: Duration) -> OtlpHttpExporter {
        let endpoint = endpoint.into();
        let trimmed = endpoint.trim_end_matches('/');
        let url = if trimmed.ends_with("/v1/traces") {
            trimmed.to_string()
        } else {
            format!("{trimmed}/v1/traces")
        };
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .unwrap_or_default();
        OtlpHttpExporter { url, client }
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

#[async_trait::async_trait]
impl SpanExporter for OtlpHttpExporter {
    async fn export(&mut self, batch: &mut SpanBatch) -> Result<(), ExportError> {
        let body = batch.take_otlp().encode_to_vec();
        let response = self
            .client
            .post(&self.url)
            .header(http::header::CONTENT_TYPE, "application/x-protobuf")
            .body(body)
            .send()
            .await
            .map_err(|e| ExportError::Unreachable {
                endpoint: self.url.clone(),
                reason: error_chain(&e),
            })?;
        let status = response.status();
        let bytes = response.bytes().await.unwrap_or_default();
        if !status.is_success() {
            let text = String::from_utf8_lossy(&bytes);
            return Err(ExportError::Rejected {
                endpoint: self.url.clone(),
                reason: format!("HTTP {status}: {}", text.trim()),
            });
        }
        let decoded = clew_otlp::ExportTraceServiceResponse::decode(bytes.as_ref()).ok();
        partial_success(&self.url, decoded.and_then(|r| r.partial_success))
    }
}

fn partial_success(
    endpoint: &str,
    partial: Option<clew_otlp::ExportTracePartialSuccess>,
) -> Result<(), ExportError> {
    match partial {
        Some(partial) if partial.rejected_spans > 0 => Err(ExportError::Rejected {
            endpoint: endpoint.to_string(),
            reason: format!(
                "{} spans rejected: {}",
                partial.rejected_spans, partial.error_message
            ),
        }),
        _ => Ok(()),
    }
}

/// An error and its sources on one line: transport errors hide the useful part
/// ("connection refused") in a source.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
