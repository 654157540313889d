//! The client side of the protocol: what clew's SDK and `clew agent send` use.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};

use crate::address::AgentAddress;
use crate::frame::{self, FrameError};
use crate::protocol::{
    Batch, Command, FinishRequest, MessageError, Register, Reply, StartRequest, StartSpan,
    StopSpan, TagRequest, TagSpan, VersionProbe,
};
use crate::timestamp::Timestamp;

/// Replies are small; anything much larger is not an agent answering.
const MAX_REPLY_BYTES: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to the agent at {address}: {source} (is `clew agent start` running?)")]
    Connect {
        address: AgentAddress,
        source: std::io::Error,
    },
    #[error("connecting to the agent at {address} timed out after {timeout:?}")]
    ConnectTimeout {
        address: AgentAddress,
        timeout: Duration,
    },
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("the agent's reply is not a protocol message: {0}")]
    Reply(#[from] MessageError),
    #[error("cannot encode the command: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("the agent answered with a failure: {0}")]
    Failure(String),
    #[error("the agent answered {got:?} to {sent}")]
    Unexpected { sent: String, got: Reply },
}

trait Connection: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Connection for T {}

/// One connection to an agent. Requests are answered one at a time, in order, as the
/// protocol requires: share a client behind a lock, or open one per worker.
pub struct AgentClient {
    connection: Box<dyn Connection>,
}

impl AgentClient {
    pub async fn connect(address: &AgentAddress) -> Result<AgentClient, ClientError> {
        Self::connect_timeout(address, Duration::from_secs(5)).await
    }

    pub async fn connect_timeout(
        address: &AgentAddress,
        timeout: Duration,
    ) -> Result<AgentClient, ClientError> {
        let connect = async {
            Ok::<Box<dyn Connection>, std::io::Error>(match address {
                AgentAddress::Unix(path) => Box::new(UnixStream::connect(path).await?),
                AgentAddress::Tcp(addr) => {
                    let stream = TcpStream::connect(addr).await?;
                    stream.set_nodelay(true)?;
                    Box::new(stream)
                }
            })
        };
        match tokio::time::timeout(timeout, connect).await {
            Ok(Ok(connection)) => Ok(AgentClient { connection }),
            Ok(Err(source)) => Err(ClientError::Connect {
                address: address.clone(),
                source,
            }),
            Err(_) => Err(ClientError::ConnectTimeout {
                address: address.clone(),
                timeout,
            }),
        }
    }

    /// Sends one message and reads its reply.
    pub async fn request(&mut self, command: &Command) -> Result<Reply, ClientError> {
        let payload = command.to_json()?;
        self.exchange(&payload)
            .await
            .and_then(|reply| Ok(Reply::from_slice(&reply)?))
    }

    /// Sends any JSON as one frame and returns the reply as JSON, unchecked: for scripts
    /// and tests that need to send what the typed API would not.
    pub async fn request_json(&mut self, message: &Value) -> Result<Value, ClientError> {
        let reply = self.exchange(&serde_json::to_vec(message)?).await?;
        serde_json::from_slice(&reply).map_err(|e| MessageError::Json(e.to_string()).into())
    }

    async fn exchange(&mut self, payload: &[u8]) -> Result<Vec<u8>, ClientError> {
        frame::write_frame(&mut self.connection, payload).await?;
        Ok(frame::read_frame(&mut self.connection, MAX_REPLY_BYTES).await?)
    }

    /// Says who is sending: `app` becomes the spans' `service.name`.
    pub async fn register(
        &mut self,
        app: &str,
        host: Option<&str>,
        language: &str,
    ) -> Result<(), ClientError> {
        let command = Command::Register(Register {
            app: Some(app.to_string()),
            key: None,
            host: host.map(str::to_string),
            language: Some(language.to_string()),
            api_version: Some("1.0".into()),
            resource: None,
        });
        self.expect_success(command).await
    }

    /// Sends the commands of one or more requests as one `BatchCommand` frame.
    pub async fn send_batch(&mut self, commands: Vec<Command>) -> Result<(), ClientError> {
        self.expect_success(Command::BatchCommand(Batch { commands }))
            .await
    }

    pub async fn version(&mut self) -> Result<String, ClientError> {
        match self
            .request(&Command::CoreAgentVersion(VersionProbe {}))
            .await?
        {
            Reply::Version { version } => Ok(version),
            Reply::Failure { message } => Err(ClientError::Failure(message)),
            got => Err(ClientError::Unexpected {
                sent: "CoreAgentVersion".into(),
                got,
            }),
        }
    }

    async fn expect_success(&mut self, command: Command) -> Result<(), ClientError> {
        let sent = command.name().to_string();
        match self.request(&command).await? {
            Reply::Success { command } if command == sent => Ok(()),
            Reply::Failure { message } => Err(ClientError::Failure(message)),
            got => Err(ClientError::Unexpected { sent, got }),
        }
    }
}

/// `clew agent send`: each message as one frame, on one connection, returning the
/// replies in order. Failure replies are returned, not raised: the caller decides.
pub async fn send_messages(
    address: &AgentAddress,
    messages: impl IntoIterator<Item = Value>,
) -> Result<Vec<Value>, ClientError> {
    let mut client = AgentClient::connect(address).await?;
    let mut replies = Vec::new();
    for message in messages {
        replies.push(client.request_json(&message).await?);
    }
    Ok(replies)
}

/// Builds the commands of one request in the order the agent expects them, for a single
/// `BatchCommand` per request (as the Python agent sends).
///
/// Ids are the caller's: a request id of 32 hex digits becomes the trace id, and span ids
/// of 16 hex digits are kept, so an SDK can propagate them in `traceparent` headers. A
/// request that continues a distributed trace carries a `traceparent` tag instead.
pub struct RequestCommands {
    request_id: String,
    commands: Vec<Command>,
}

impl RequestCommands {
    pub fn start(request_id: impl Into<String>, at: Timestamp) -> RequestCommands {
        let request_id = request_id.into();
        RequestCommands {
            commands: vec![Command::StartRequest(StartRequest {
                timestamp: Some(at),
                request_id: request_id.clone(),
                trace_id: None,
            })],
            request_id,
        }
    }

    pub fn tag(&mut self, key: impl Into<String>, value: impl Into<Value>) -> &mut Self {
        self.commands.push(Command::TagRequest(TagRequest {
            timestamp: None,
            request_id: self.request_id.clone(),
            tag: key.into(),
            value: value.into(),
        }));
        self
    }

    /// Records a finished span; `parent_id: None` puts it directly under the request.
    pub fn span(
        &mut self,
        span_id: impl Into<String>,
        parent_id: Option<&str>,
        operation: impl Into<String>,
        start: Timestamp,
        end: Timestamp,
        tags: impl IntoIterator<Item = (String, Value)>,
    ) -> &mut Self {
        let span_id = span_id.into();
        self.commands.push(Command::StartSpan(StartSpan {
            timestamp: Some(start),
            request_id: self.request_id.clone(),
            span_id: span_id.clone(),
            parent_id: parent_id.map(str::to_string),
            operation: operation.into(),
            ..StartSpan::default()
        }));
        for (tag, value) in tags {
            self.commands.push(Command::TagSpan(TagSpan {
                timestamp: Some(start),
                request_id: Some(self.request_id.clone()),
                span_id: span_id.clone(),
                tag,
                value,
            }));
        }
        self.commands.push(Command::StopSpan(StopSpan {
            timestamp: Some(end),
            request_id: Some(self.request_id.clone()),
            span_id,
            status: None,
        }));
        self
    }

    pub fn finish(mut self, at: Timestamp) -> Vec<Command> {
        self.commands.push(Command::FinishRequest(FinishRequest {
            timestamp: Some(at),
            request_id: self.request_id,
        }));
        self.commands
    }
}
