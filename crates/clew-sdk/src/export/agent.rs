//! The exporter to a clew agent (`clew agent start`, or the agent inside `clew serve`),
//! over the APM core-agent protocol, as language agents talk to their per-host daemon.

use std::sync::Arc;
use std::time::Duration;

use clew_agent::protocol::{Batch, Command, Reply};
use clew_agent::{AgentAddress, AgentClient, ClientError};
use clew_model::{Resource, Span};

use super::{ExportError, SpanBatch, SpanExporter};

/// Sends each export call as one `BatchCommand` frame to a clew agent, using clew's span
/// batch extension so ids, kind, status, events and links arrive as they were recorded.
///
/// With [`crate::Batching::PerHandler`] an export call is everything one request or
/// message handler produced, so the agent receives one `BatchCommand` per handler (see
/// [`AgentExporter::batch_config`]). Connects on the first export and again after a
/// failure, so it can be created before the agent runs; the agent answers each frame
/// only after it has taken the spans, so a successful export is a delivered one.
pub struct AgentExporter {
    address: AgentAddress,
    timeout: Duration,
    connection: Option<Connection>,
    next_request: u64,
}

struct Connection {
    client: AgentClient,
    /// The resource the agent was last told about on this connection.
    registered: Option<Arc<Resource>>,
}

impl AgentExporter {
    /// `address` is a unix socket path or `tcp://host:port`.
    pub fn new(address: &str) -> Result<AgentExporter, ExportError> {
        let address = address
            .parse::<AgentAddress>()
            .map_err(|e| ExportError::Config(e.to_string()))?;
        Ok(AgentExporter::to(address))
    }

    pub fn to(address: AgentAddress) -> AgentExporter {
        AgentExporter {
            address,
            timeout: Duration::from_secs(10),
            connection: None,
            next_request: 0,
        }
    }

    /// The longest connecting may take (default 10 s); the export call as a whole is
    /// bounded by the processor's `export_timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The processor settings this exporter is meant for: one export call per handler.
    pub fn batch_config() -> crate::BatchConfig {
        crate::BatchConfig::per_handler()
    }

    /// The commands of one export call: a `Register` whenever the resource changes, then
    /// one span batch per trace, in the order the spans came.
    fn commands(&mut self, spans: &[Span], mut registered: Option<Arc<Resource>>) -> Commands {
        let mut commands = Vec::new();
        let mut rest: Vec<&Span> = spans.iter().collect();
        while let Some(first) = rest.first().copied() {
            let (group, others): (Vec<&Span>, Vec<&Span>) = rest.into_iter().partition(|s| {
                s.trace_id == first.trace_id && same_resource(&s.resource, &first.resource)
            });
            rest = others;
            if !registered
                .as_ref()
                .is_some_and(|r| same_resource(r, &first.resource))
            {
                commands.push(clew_agent::register_resource(&first.resource, "rust"));
                registered = Some(Arc::clone(&first.resource));
            }
            self.next_request += 1;
            commands.extend(clew_agent::span_batch_commands(
                &format!("{:x}", self.next_request),
                &group,
            ));
        }
        Commands {
            commands,
            registered,
        }
    }

    async fn send(&mut self, spans: &[Span]) -> Result<(), ExportError> {
        if self.connection.is_none() {
            let client = AgentClient::connect_timeout(&self.address, self.timeout)
                .await
                .map_err(|e| self.unreachable(e))?;
            self.connection = Some(Connection {
                client,
                registered: None,
            });
        }
        let registered = self.connection.as_ref().and_then(|c| c.registered.clone());
        let Commands {
            commands,
            registered,
        } = self.commands(spans, registered);
        let connection = self.connection.as_mut().expect("connected above");
        let reply = connection
            .client
            .request(&Command::BatchCommand(Batch { commands }))
            .await;
        match reply {
            Ok(Reply::Success { .. }) => {
                connection.registered = registered;
                Ok(())
            }
            // The agent applied what it could and said what it refused; the connection
            // is fine, and the refused commands would be refused again.
            Ok(Reply::Failure { message }) => {
                connection.registered = registered;
                Err(ExportError::Rejected {
                    endpoint: self.address.to_string(),
                    reason: message,
                })
            }
            Ok(other) => {
                self.connection = None;
                Err(ExportError::Other(format!(
                    "the agent at {} answered {other:?} to a BatchCommand",
                    self.address
                )))
            }
            Err(error) => {
                self.connection = None;
                Err(self.unreachable(error))
            }
        }
    }

    fn unreachable(&self, error: ClientError) -> ExportError {
        ExportError::Unreachable {
            endpoint: self.address.to_string(),
            reason: error.to_string(),
        }
    }
}

struct Commands {
    commands: Vec<Command>,
    registered: Option<Arc<Resource>>,
}

fn same_resource(a: &Arc<Resource>, b: &Arc<Resource>) -> bool {
    Arc::ptr_eq(a, b) || a == b
}

#[async_trait::async_trait]
impl SpanExporter for AgentExporter {
    async fn export(&mut self, batch: &mut SpanBatch) -> Result<(), ExportError> {
        let spans = batch.take_model();
        if spans.is_empty() {
            return Ok(());
        }
        let reused = self.connection.is_some();
        match self.send(&spans).await {
            // A connection the agent closed while idle (it restarted) only shows up on
            // the next exchange: one fresh connection gets the batch through.
            Err(ExportError::Unreachable { .. }) if reused => self.send(&spans).await,
            outcome => outcome,
        }
    }

    async fn shutdown(&mut self) -> Result<(), ExportError> {
        self.connection = None;
        Ok(())
    }
}
