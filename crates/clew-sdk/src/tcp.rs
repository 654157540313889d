//! Request/response over TCP with the trace context in each request [`Frame`].
//!
//! The caller's CLIENT span covers connecting, sending and waiting for the answer; the
//! callee's SERVER span is the child of that CLIENT span, whose context came in the
//! request frame's headers.

use std::borrow::Cow;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use clew_model::SpanKind;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

use crate::frame::{Frame, FrameError};
use crate::{FutureExt, Span, SpanBuilder, Tracer};

pub const NETWORK_TRANSPORT: &str = "network.transport";
pub const NETWORK_PEER_ADDRESS: &str = "network.peer.address";
pub const NETWORK_PEER_PORT: &str = "network.peer.port";
pub const SERVER_ADDRESS: &str = "server.address";
pub const SERVER_PORT: &str = "server.port";

#[derive(Debug, thiserror::Error)]
pub enum TcpError {
    #[error("cannot connect to {addr}: {source} (is the server listening there?)")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("the server closed the connection without answering")]
    NoResponse,
}

impl From<Vec<u8>> for Frame {
    fn from(payload: Vec<u8>) -> Frame {
        Frame::new(payload)
    }
}

impl From<&[u8]> for Frame {
    fn from(payload: &[u8]) -> Frame {
        Frame::new(payload)
    }
}

/// Connects to `addr`, sends `request` and returns the response, all inside a CLIENT
/// span built from `span` (name, attributes and parent are the caller's; kind and the
/// network attributes are set here). The connection is closed afterwards.
pub async fn call(
    span: SpanBuilder,
    addr: SocketAddr,
    request: impl Into<Frame>,
) -> Result<Frame, TcpError> {
    let mut span = client_span(span, addr).start();
    let result = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|source| TcpError::Connect { addr, source })?;
        exchange(&mut stream, &span, request.into()).await
    }
    .await;
    finish(&mut span, result)
}

/// Like [`call`], on a connection the caller already has (and keeps).
pub async fn call_on<S: AsyncRead + AsyncWrite + Unpin + ?Sized>(
    stream: &mut S,
    span: SpanBuilder,
    request: impl Into<Frame>,
) -> Result<Frame, TcpError> {
    let mut span = span
        .kind(SpanKind::Client)
        .attribute(NETWORK_TRANSPORT, "tcp")
        .start();
    let result = exchange(stream, &span, request.into()).await;
    finish(&mut span, result)
}

fn client_span(span: SpanBuilder, addr: SocketAddr) -> SpanBuilder {
    span.kind(SpanKind::Client)
        .attribute(NETWORK_TRANSPORT, "tcp")
        .attribute(SERVER_ADDRESS, addr.ip().to_string())
        .attribute(SERVER_PORT, i64::from(addr.port()))
        .attribute(NETWORK_PEER_ADDRESS, addr.ip().to_string())
        .attribute(NETWORK_PEER_PORT, i64::from(addr.port()))
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin + ?Sized>(
    stream: &mut S,
    span: &Span,
    mut request: Frame,
) -> Result<Frame, TcpError> {
    request.inject(&span.context());
    request.write_to(stream).await?;
    Frame::read_from(stream).await?.ok_or(TcpError::NoResponse)
}

fn finish(span: &mut Span, result: Result<Frame, TcpError>) -> Result<Frame, TcpError> {
    if let Err(error) = &result {
        span.record_error(error);
    }
    span.end();
    result
}

/// A request received by a server, with its SERVER span (started, child of the
/// caller's CLIENT span, or a new root when the frame carried no valid context).
pub struct Request {
    pub frame: Frame,
    pub span: Span,
    pub peer: Option<SocketAddr>,
}

/// Reads the next request from `stream` and starts its SERVER span named `name`.
/// `Ok(None)` when the client closed the connection.
pub async fn read_request<S: AsyncRead + Unpin + ?Sized>(
    tracer: Tracer,
    name: impl Into<Cow<'static, str>>,
    stream: &mut S,
    peer: Option<SocketAddr>,
) -> Result<Option<Request>, TcpError> {
    let Some(frame) = Frame::read_from(stream).await? else {
        return Ok(None);
    };
    let mut span = tracer
        .span(name)
        .kind(SpanKind::Server)
        .parent_context(&frame.context())
        .attribute(NETWORK_TRANSPORT, "tcp");
    if let Some(peer) = peer {
        span = span
            .attribute(NETWORK_PEER_ADDRESS, peer.ip().to_string())
            .attribute(NETWORK_PEER_PORT, i64::from(peer.port()));
    }
    Ok(Some(Request {
        frame,
        span: span.start(),
        peer,
    }))
}

/// Writes a response frame.
pub async fn respond<S: AsyncWrite + Unpin + ?Sized>(
    stream: &mut S,
    response: impl Into<Frame>,
) -> Result<(), TcpError> {
    response.into().write_to(stream).await?;
    Ok(())
}

/// Accepts connections forever, answering each request with `handler`. The handler
/// runs with the request's SERVER span current and owns the span (it ends when the
/// handler drops it, or may be moved elsewhere to outlive the request). A connection
/// may carry any number of requests, one after the other.
pub async fn serve<H, Fut, R>(
    listener: TcpListener,
    tracer: Tracer,
    span_name: impl Into<Cow<'static, str>>,
    handler: H,
) -> std::io::Result<()>
where
    H: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
    R: Into<Frame> + Send + 'static,
{
    let handler = Arc::new(handler);
    let span_name: Cow<'static, str> = span_name.into();
    loop {
        let (mut stream, peer) = listener.accept().await?;
        let handler = handler.clone();
        let span_name = span_name.clone();
        tokio::spawn(async move {
            loop {
                let request =
                    match read_request(tracer, span_name.clone(), &mut stream, Some(peer)).await {
                        Ok(Some(request)) => request,
                        Ok(None) => return,
                        Err(error) => {
                            crate::suppress::warn(format_args!(
                                "clew-sdk: dropping TCP connection from {peer}: {error}"
                            ));
                            return;
                        }
                    };
                let cx = request.span.context();
                let response = handler(request).with_context(cx).await;
                if respond(&mut stream, response).await.is_err() {
                    return;
                }
            }
        });
    }
}
