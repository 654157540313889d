//! Messaging over a publish/subscribe bus, traced by OpenTelemetry's messaging
//! conventions.
//!
//! [`publish`] starts a PRODUCER span, puts the message body in an [`Envelope`] with the
//! span's context beside it, publishes it and ends the span. On the other side,
//! [`consume`] starts a CONSUMER span whose parent is the producer span that arrived
//! with the message, so one message fanned out to several subscribers gives one
//! PRODUCER with several CONSUMER children. [`consume_batch`] handles several messages
//! at once: its span links to each message's producer instead.
//!
//! The same code runs over Redis pub/sub ([`RedisBus`]) and over an in-process bus
//! ([`InProcBus`]): both implement [`Bus`].

mod inproc;
mod redis_bus;

use std::borrow::Cow;
use std::time::Duration;

use bytes::Bytes;
use clew_model::SpanKind;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use inproc::InProcBus;
pub use redis_bus::RedisBus;

use crate::attr::{Attribute, kv};
use crate::envelope::{Envelope, EnvelopeError};
use crate::{Context, SpanBuilder, SpanContext, Tracer};

/// OpenTelemetry semantic-convention attribute names for messaging.
pub mod semconv {
    pub const MESSAGING_SYSTEM: &str = "messaging.system";
    pub const MESSAGING_DESTINATION_NAME: &str = "messaging.destination.name";
    pub const MESSAGING_OPERATION_TYPE: &str = "messaging.operation.type";
    pub const MESSAGING_OPERATION_NAME: &str = "messaging.operation.name";
    pub const MESSAGING_MESSAGE_ID: &str = "messaging.message.id";
    pub const MESSAGING_MESSAGE_BODY_SIZE: &str = "messaging.message.body.size";
    pub const MESSAGING_BATCH_MESSAGE_COUNT: &str = "messaging.batch.message_count";
}
use semconv::*;

/// `messaging.operation.type` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// A message is handed to the bus (PRODUCER).
    Send,
    /// A message is taken from the bus (CONSUMER), for example by an observer.
    Receive,
    /// A received message is handled (CONSUMER).
    Process,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Send => "send",
            Operation::Receive => "receive",
            Operation::Process => "process",
        }
    }
}

/// Why a message could not be published or subscribed to.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("redis at {url}: {source}")]
    Redis {
        url: String,
        #[source]
        source: redis::RedisError,
    },
    #[error("the bus is closed")]
    Closed,
}

#[derive(Debug, thiserror::Error)]
pub enum MessagingError {
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// A publish/subscribe bus: fire-and-forget delivery to whoever is subscribed at the
/// moment of publishing.
#[async_trait::async_trait]
pub trait Bus: Send + Sync {
    /// The `messaging.system` value (`redis`, `inproc`).
    fn system(&self) -> &'static str;

    /// Publishes raw bytes; returns how many subscribers received them.
    async fn publish_bytes(&self, channel: &str, bytes: Bytes) -> Result<usize, BusError>;

    /// Subscribes to `channels`; messages published after this returns are delivered.
    async fn subscribe(&self, channels: &[&str]) -> Result<Subscription, BusError>;
}

/// A message as it arrived, with its envelope read.
#[derive(Debug, Clone)]
pub struct Message {
    pub system: &'static str,
    pub channel: String,
    pub bytes: Bytes,
    /// `None` when the bytes are not JSON (a producer that does not use envelopes).
    pub envelope: Option<Envelope>,
}

impl Message {
    pub fn new(system: &'static str, channel: impl Into<String>, bytes: Bytes) -> Message {
        let envelope = Envelope::decode_lenient(&bytes).ok();
        Message {
            system,
            channel: channel.into(),
            bytes,
            envelope,
        }
    }

    /// The producer's context; without one (no envelope, malformed `traceparent`) the
    /// consumer's span starts a new trace.
    pub fn context(&self) -> Context {
        self.envelope
            .as_ref()
            .map(Envelope::context)
            .unwrap_or_default()
    }

    /// The producer span's context, if it arrived intact.
    pub fn producer(&self) -> Option<SpanContext> {
        self.context().span_context().cloned()
    }

    pub fn message_id(&self) -> Option<&str> {
        self.envelope.as_ref()?.message_id.as_deref()
    }

    /// The body, deserialized.
    pub fn payload<T: DeserializeOwned>(&self) -> Result<T, EnvelopeError> {
        match &self.envelope {
            Some(envelope) => envelope.payload(),
            // Not JSON at all: parsing again yields the error that says where.
            None => serde_json::from_slice(&self.bytes).map_err(EnvelopeError::NotJson),
        }
    }

    fn body_size(&self) -> usize {
        self.envelope
            .as_ref()
            .map_or(self.bytes.len(), |e| e.payload_json().len())
    }
}

/// Messages from a [`Bus::subscribe`]. Dropping it unsubscribes.
pub struct Subscription {
    rx: mpsc::Receiver<Message>,
    tasks: Vec<JoinHandle<()>>,
}

impl Subscription {
    /// For [`Bus`] implementations: messages arrive on `rx`; `tasks` feed it and are
    /// aborted when the subscription is dropped.
    pub fn new(rx: mpsc::Receiver<Message>, tasks: Vec<JoinHandle<()>>) -> Subscription {
        Subscription { rx, tasks }
    }

    /// The next message; `None` once the bus is gone.
    pub async fn recv(&mut self) -> Option<Message> {
        self.rx.recv().await
    }

    pub fn try_recv(&mut self) -> Option<Message> {
        self.rx.try_recv().ok()
    }

    /// Waits for one message, then gathers up to `max` in total, waiting at most
    /// `linger` for more. Empty once the bus is gone.
    pub async fn recv_batch(&mut self, max: usize, linger: Duration) -> Vec<Message> {
        let Some(first) = self.recv().await else {
            return Vec::new();
        };
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + linger;
        while batch.len() < max {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(message)) => batch.push(message),
                _ => break,
            }
        }
        batch
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// A message published by [`Publish::send`].
#[derive(Debug, Clone)]
pub struct Published {
    /// The PRODUCER span (already ended), for linking or parenting follow-up work.
    pub span_context: SpanContext,
    pub message_id: String,
    /// How many subscribers received it.
    pub receivers: usize,
}

/// Starts publishing `body` on `channel`; customise the PRODUCER span, then
/// [`Publish::send`]. The span is named `send {channel}` unless renamed and is a child
/// of the current context unless told otherwise.
pub fn publish<'a, T: Serialize + ?Sized>(
    tracer: Tracer,
    bus: &'a dyn Bus,
    channel: &str,
    body: &T,
) -> Publish<'a> {
    Publish {
        span: producer(tracer, bus.system(), channel),
        bus,
        channel: channel.to_string(),
        body: serde_json::value::to_raw_value(body).map_err(EnvelopeError::Serialize),
        message_id: None,
    }
}

/// A message about to be published. See [`publish`].
#[must_use = "nothing is published until `send` is awaited"]
pub struct Publish<'a> {
    span: SpanBuilder,
    bus: &'a dyn Bus,
    channel: String,
    body: Result<Box<RawValue>, EnvelopeError>,
    message_id: Option<String>,
}

impl Publish<'_> {
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.span = self.span.name(name);
        self
    }

    pub fn attribute(mut self, key: impl Into<crate::Key>, value: impl Into<crate::Value>) -> Self {
        self.span = self.span.attribute(key, value);
        self
    }

    pub fn attributes<A: Into<Attribute>>(
        mut self,
        attributes: impl IntoIterator<Item = A>,
    ) -> Self {
        self.span = self.span.attributes(attributes);
        self
    }

    pub fn parent(mut self, parent: &SpanContext) -> Self {
        self.span = self.span.parent(parent);
        self
    }

    pub fn parent_context(mut self, cx: &Context) -> Self {
        self.span = self.span.parent_context(cx);
        self
    }

    /// Makes the PRODUCER span the root of a new trace.
    pub fn root(mut self) -> Self {
        self.span = self.span.root();
        self
    }

    /// The message id (default: 16 random hex digits).
    pub fn message_id(mut self, id: impl Into<String>) -> Self {
        self.message_id = Some(id.into());
        self
    }

    pub async fn send(self) -> Result<Published, MessagingError> {
        let payload = self.body?;
        let message_id = self.message_id.unwrap_or_else(crate::ids::random_hex64);
        let mut span = self
            .span
            .attribute(MESSAGING_MESSAGE_ID, message_id.clone())
            .attribute(MESSAGING_MESSAGE_BODY_SIZE, payload.get().len())
            .start();
        let mut envelope = Envelope::from_raw(payload).with_context(&span.context());
        envelope.message_id = Some(message_id.clone());
        let result = self
            .bus
            .publish_bytes(&self.channel, Bytes::from(envelope.to_vec()))
            .await;
        let span_context = span.span_context().clone();
        match result {
            Ok(receivers) => {
                span.end();
                Ok(Published {
                    span_context,
                    message_id,
                    receivers,
                })
            }
            Err(error) => {
                span.record_error(&error);
                span.end();
                Err(error.into())
            }
        }
    }
}

/// A PRODUCER span for `channel` on `system`, named `send {channel}`: for publishing
/// through something other than [`publish`], or for a span that stands for a
/// re-broadcast (a sidecar's forward) without sending anything.
pub fn producer(tracer: Tracer, system: &'static str, channel: &str) -> SpanBuilder {
    tracer
        .span(format!("send {channel}"))
        .kind(SpanKind::Producer)
        .attribute(MESSAGING_SYSTEM, system)
        .attribute(MESSAGING_DESTINATION_NAME, channel.to_string())
        .attribute(MESSAGING_OPERATION_TYPE, Operation::Send.as_str())
}

/// A CONSUMER span for handling `message`, named `process {channel}`, child of the
/// producer span that arrived with it (a new root if none did).
pub fn consume(tracer: Tracer, message: &Message) -> SpanBuilder {
    consume_as(tracer, message, Operation::Process)
}

/// Like [`consume`] with another operation type, such as [`Operation::Receive`] for
/// an observer that only looks at the message.
pub fn consume_as(tracer: Tracer, message: &Message, operation: Operation) -> SpanBuilder {
    let mut span = tracer
        .span(format!("{} {}", operation.as_str(), message.channel))
        .kind(SpanKind::Consumer)
        .parent_context(&message.context())
        .attribute(MESSAGING_SYSTEM, message.system)
        .attribute(MESSAGING_DESTINATION_NAME, message.channel.clone())
        .attribute(MESSAGING_OPERATION_TYPE, operation.as_str())
        .attribute(MESSAGING_MESSAGE_BODY_SIZE, message.body_size());
    if let Some(id) = message.message_id() {
        span = span.attribute(MESSAGING_MESSAGE_ID, id.to_string());
    }
    span
}

/// A CONSUMER span for handling several messages at once. It cannot be the child of
/// every producer, so it links to each message's producer span (with the message id
/// on the link) and stays in the current context's trace.
pub fn consume_batch(tracer: Tracer, messages: &[Message]) -> SpanBuilder {
    let system = messages.first().map_or("unknown", |m| m.system);
    let channel = messages
        .first()
        .map(|m| m.channel.as_str())
        .filter(|first| messages.iter().all(|m| m.channel == *first));
    let mut span = tracer
        .span(match channel {
            Some(channel) => format!("process {channel}"),
            None => "process".to_string(),
        })
        .kind(SpanKind::Consumer)
        .attribute(MESSAGING_SYSTEM, system)
        .attribute(MESSAGING_OPERATION_TYPE, Operation::Process.as_str())
        .attribute(MESSAGING_BATCH_MESSAGE_COUNT, messages.len());
    if let Some(channel) = channel {
        span = span.attribute(MESSAGING_DESTINATION_NAME, channel.to_string());
    }
    for message in messages {
        if let Some(producer) = message.producer() {
            let attributes: Vec<Attribute> = message
                .message_id()
                .map(|id| kv(MESSAGING_MESSAGE_ID, id.to_string()))
                .into_iter()
                .collect();
            span = span.link_with_attributes(&producer, attributes);
        }
    }
    span
}
