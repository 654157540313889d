//! The messages of the APM core-agent protocol.
//!
//! Every message is an externally tagged JSON object, `{"StartSpan": {...}}`. Field sets
//! follow what Scout's public Python and Node agents send: Python always writes every key
//! (with `null` for a root span's `parent_id`, and a `host` that may be `null`), Node leaves
//! `undefined` keys out and sends `Register` with only `api_version`, `app` and `key`. So
//! every field that one of them may leave out is optional here, and a missing timestamp
//! means "when the agent read it".
//!
//! # clew's extensions
//!
//! Scout's protocol describes a request as one synthetic root with spans under it, names
//! the span kind only through operation prefixes, and has no events, links or status. An
//! OpenTelemetry-style SDK (clew's own) needs all of those, so clew reads a few optional
//! fields and one extra command that Scout's agents never send; a message without them
//! means exactly what it means to Scout's core-agent.
//!
//! - `Register.resource`: further resource attributes (`[["service.version", "1.2"]]`);
//!   `app` stays the service name.
//! - `StartRequest.trace_id` (32 hex digits) makes the request a *span batch*: it is only
//!   the envelope of the spans one handler produced and gets no span of its own. Its span
//!   and parent ids must then be W3C ids (16 hex digits) and are stored as they are: a
//!   `parent_id` may name a span of another process or of an earlier batch, and a span
//!   without one is a root of the trace. Request tags go on the request's entry spans
//!   (those whose parent is not in the request).
//! - `StartSpan.kind` (`SERVER`, `CLIENT`, `PRODUCER`, `CONSUMER`, `INTERNAL`),
//!   `StartSpan.trace_state`, `StartSpan.flags` (W3C trace flags), `StartSpan.scope`
//!   (`{"name", "version"}` of the instrumentation) and `StartSpan.links`
//!   (`[{"trace_id", "span_id", "trace_state", "attributes"}]`).
//! - `StopSpan.status`: `{"code": "UNSET"|"OK"|"ERROR", "message": "..."}`.
//! - `AddSpanEvent {timestamp, request_id, span_id, name, attributes}`: a timestamped
//!   event on an open span.
//!
//! Attributes of resources, events and links are lists of `["key", value]` pairs, so their
//! order survives (see [`Attributes`]). Values are JSON: strings, booleans, integers (`3`),
//! doubles (`3.0`), arrays and objects map to the typed attribute of the same shape; byte
//! strings travel as arrays of integers.
//!
//! Parsing is done by hand from a [`serde_json::Value`] rather than by a derived
//! `Deserialize`, because one bad command inside a `BatchCommand` must not discard the
//! others, and an unknown command must be answered, not rejected as a syntax error.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::timestamp::Timestamp;

/// One command, as sent on its own or inside a [`Batch`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Command {
    Register(Register),
    ApplicationEvent(ApplicationEvent),
    CoreAgentVersion(VersionProbe),
    BatchCommand(Batch),
    StartRequest(StartRequest),
    FinishRequest(FinishRequest),
    TagRequest(TagRequest),
    StartSpan(StartSpan),
    StopSpan(StopSpan),
    TagSpan(TagSpan),
    /// clew's extension: an event on an open span.
    AddSpanEvent(AddSpanEvent),
    /// A command this agent does not know; answered with a failure and otherwise ignored.
    #[serde(skip_serializing)]
    Unknown {
        name: String,
    },
    /// A known command whose body could not be read.
    #[serde(skip_serializing)]
    Malformed {
        name: String,
        error: String,
    },
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Register {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// The APM account key. Read so the message parses, never stored or logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// clew's extension: resource attributes beyond `app`, `host` and `language`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<Attributes>,
}

/// Attributes in their order. Sent as `[["key", value], ...]`, because a JSON object's
/// order does not survive every parser (`serde_json`'s own map sorts its keys); an object
/// `{"key": value}` is read too, for hand-written messages, in the order its parser gives.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Attributes(pub Vec<(String, Value)>);

impl Attributes {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for Attributes {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(&self.0)
    }
}

impl<'de> Deserialize<'de> for Attributes {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match Value::deserialize(deserializer)? {
            Value::Object(map) => Ok(Attributes(map.into_iter().collect())),
            Value::Array(pairs) => pairs
                .into_iter()
                .map(|pair| match pair {
                    Value::Array(mut kv) if kv.len() == 2 && kv[0].is_string() => {
                        let value = kv.pop().unwrap_or_default();
                        let Some(Value::String(key)) = kv.pop() else {
                            unreachable!("checked to be a string")
                        };
                        Ok((key, value))
                    }
                    other => Err(D::Error::custom(format!(
                        "an attribute must be a [\"key\", value] pair, not {other}"
                    ))),
                })
                .collect::<Result<_, _>>()
                .map(Attributes),
            other => Err(D::Error::custom(format!(
                "attributes must be [[\"key\", value], ...] or an object, not {other}"
            ))),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApplicationEvent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Timestamp>,
    #[serde(default)]
    pub event_type: String,
    #[serde(default)]
    pub event_value: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// `{"CoreAgentVersion": {}}`: asks the agent's version; port probes send it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct VersionProbe {}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Batch {
    pub commands: Vec<Command>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Timestamp>,
    pub request_id: String,
    /// clew's extension: the trace the request's spans belong to. Makes the request a
    /// span batch with no span of its own (see the module documentation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinishRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Timestamp>,
    pub request_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TagRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Timestamp>,
    pub request_id: String,
    pub tag: String,
    #[serde(default)]
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct StartSpan {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Timestamp>,
    pub request_id: String,
    pub span_id: String,
    /// `null` (Python) or absent (Node) for a span directly under the request.
    #[serde(default)]
    pub parent_id: Option<String>,
    pub operation: String,
    /// clew's extension: `SERVER`, `CLIENT`, `PRODUCER`, `CONSUMER` or `INTERNAL`;
    /// without it the kind is guessed from the operation's prefix (`SQL/` is a client).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// clew's extension: the span's W3C `tracestate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_state: Option<String>,
    /// clew's extension: the span's W3C trace flags (`1` = sampled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flags: Option<u32>,
    /// clew's extension: the instrumentation that made the span.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<ScopeName>,
    /// clew's extension: spans this one is causally linked to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<SpanLink>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ScopeName {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpanLink {
    pub trace_id: String,
    pub span_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub trace_state: String,
    #[serde(default, skip_serializing_if = "Attributes::is_empty")]
    pub attributes: Attributes,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpanStatus {
    /// `UNSET`, `OK` or `ERROR`.
    pub code: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StopSpan {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    pub span_id: String,
    /// clew's extension: how the span's operation ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<SpanStatus>,
}

/// clew's extension: `{"AddSpanEvent": {...}}`, an event on an open span.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AddSpanEvent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    pub span_id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Attributes::is_empty")]
    pub attributes: Attributes,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TagSpan {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    pub span_id: String,
    pub tag: String,
    #[serde(default)]
    pub value: Value,
}

/// Why a frame's JSON is not a message at all (as opposed to an unknown or malformed
/// command, which still has a name to answer).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("the frame is not valid JSON: {0}")]
    Json(String),
    #[error(
        "a message must be a JSON object with exactly one key naming the command, like {{\"StartSpan\": {{...}}}}; got {0}"
    )]
    Shape(String),
}

impl Command {
    /// The outer key this command is sent under and answered with.
    pub fn name(&self) -> &str {
        match self {
            Command::Register(_) => "Register",
            Command::ApplicationEvent(_) => "ApplicationEvent",
            Command::CoreAgentVersion(_) => "CoreAgentVersion",
            Command::BatchCommand(_) => "BatchCommand",
            Command::StartRequest(_) => "StartRequest",
            Command::FinishRequest(_) => "FinishRequest",
            Command::TagRequest(_) => "TagRequest",
            Command::StartSpan(_) => "StartSpan",
            Command::StopSpan(_) => "StopSpan",
            Command::TagSpan(_) => "TagSpan",
            Command::AddSpanEvent(_) => "AddSpanEvent",
            Command::Unknown { name } | Command::Malformed { name, .. } => name,
        }
    }

    /// Reads one message from a frame's bytes.
    pub fn from_slice(frame: &[u8]) -> Result<Command, MessageError> {
        let value: Value =
            serde_json::from_slice(frame).map_err(|e| MessageError::Json(e.to_string()))?;
        Command::from_value(value)
    }

    /// Reads one message. A known command with a bad body and an unknown command are
    /// `Ok` (as [`Command::Malformed`] and [`Command::Unknown`]) so they can be answered.
    pub fn from_value(value: Value) -> Result<Command, MessageError> {
        let (name, body) = match value {
            Value::Object(map) if map.len() == 1 => map.into_iter().next().expect("one entry"),
            other => return Err(MessageError::Shape(describe_shape(&other))),
        };
        Ok(Command::from_named(name, body))
    }

    fn from_named(name: String, body: Value) -> Command {
        fn read<T: serde::de::DeserializeOwned>(
            name: String,
            body: Value,
            wrap: impl FnOnce(T) -> Command,
        ) -> Command {
            match serde_json::from_value(body) {
                Ok(inner) => wrap(inner),
                Err(e) => Command::Malformed {
                    name,
                    error: e.to_string(),
                },
            }
        }
        match name.as_str() {
            "Register" => read(name, body, Command::Register),
            "ApplicationEvent" => read(name, body, Command::ApplicationEvent),
            "CoreAgentVersion" => Command::CoreAgentVersion(VersionProbe {}),
            "StartRequest" => read(name, body, Command::StartRequest),
            "FinishRequest" => read(name, body, Command::FinishRequest),
            "TagRequest" => read(name, body, Command::TagRequest),
            "StartSpan" => read(name, body, Command::StartSpan),
            "StopSpan" => read(name, body, Command::StopSpan),
            "TagSpan" => read(name, body, Command::TagSpan),
            "AddSpanEvent" => read(name, body, Command::AddSpanEvent),
            "BatchCommand" => Command::batch_from(body),
            _ => Command::Unknown { name },
        }
    }

    fn batch_from(body: Value) -> Command {
        let malformed = |error: &str| Command::Malformed {
            name: "BatchCommand".into(),
            error: error.into(),
        };
        let Value::Object(mut body) = body else {
            return malformed("expected {\"commands\": [...]}");
        };
        let Some(Value::Array(items)) = body.remove("commands") else {
            return malformed("expected a \"commands\" array");
        };
        let commands = items
            .into_iter()
            .map(|item| match Command::from_value(item) {
                // A batch inside a batch has no meaning in the protocol, and refusing it
                // bounds the work one frame can ask for.
                Ok(Command::BatchCommand(_)) => Command::Malformed {
                    name: "BatchCommand".into(),
                    error: "a BatchCommand cannot contain another BatchCommand".into(),
                },
                Ok(command) => command,
                Err(e) => Command::Malformed {
                    name: "(unnamed)".into(),
                    error: e.to_string(),
                },
            })
            .collect();
        Command::BatchCommand(Batch { commands })
    }

    /// The JSON text of this message. Unknown and malformed commands have none.
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }
}

fn describe_shape(value: &Value) -> String {
    match value {
        Value::Object(map) if map.is_empty() => "an empty object".into(),
        Value::Object(map) => format!(
            "an object with keys {}",
            map.keys()
                .take(5)
                .map(|k| format!("{k:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Array(_) => "an array".into(),
        Value::String(_) => "a string".into(),
        Value::Number(_) => "a number".into(),
        Value::Bool(_) => "a boolean".into(),
        Value::Null => "null".into(),
    }
}

/// The agent's answer to one frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `{"<command>": {"result": "Success"}}`, under the key the command came with.
    Success { command: String },
    /// `{"CoreAgentVersion": {"version": "..."}}`.
    Version { version: String },
    /// `{"Failure": {"message": "..."}}`.
    Failure { message: String },
}

impl Reply {
    pub fn success(command: impl Into<String>) -> Reply {
        Reply::Success {
            command: command.into(),
        }
    }

    pub fn failure(message: impl Into<String>) -> Reply {
        Reply::Failure {
            message: message.into(),
        }
    }

    pub fn to_value(&self) -> Value {
        let mut outer = serde_json::Map::new();
        match self {
            Reply::Success { command } => {
                outer.insert(command.clone(), serde_json::json!({"result": "Success"}));
            }
            Reply::Version { version } => {
                outer.insert(
                    "CoreAgentVersion".into(),
                    serde_json::json!({"version": version}),
                );
            }
            Reply::Failure { message } => {
                outer.insert("Failure".into(), serde_json::json!({"message": message}));
            }
        }
        Value::Object(outer)
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(&self.to_value()).expect("a reply always serializes")
    }

    /// Reads a reply frame, as a client does.
    pub fn from_slice(frame: &[u8]) -> Result<Reply, MessageError> {
        let value: Value =
            serde_json::from_slice(frame).map_err(|e| MessageError::Json(e.to_string()))?;
        let (name, body) = match value {
            Value::Object(map) if map.len() == 1 => map.into_iter().next().expect("one entry"),
            other => return Err(MessageError::Shape(describe_shape(&other))),
        };
        let field = |key: &str| {
            body.get(key)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        Ok(match name.as_str() {
            "Failure" => Reply::Failure {
                message: field("message"),
            },
            "CoreAgentVersion" => Reply::Version {
                version: field("version"),
            },
            _ if field("result") == "Success" => Reply::Success { command: name },
            _ => Reply::Failure {
                message: format!("unexpected reply {body} to {name}"),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn python_messages_parse_with_nulls() {
        let register = Command::from_value(json!({"Register": {
            "app": "shop", "key": "k", "host": null, "language": "python", "api_version": "1.0"
        }}))
        .unwrap();
        assert_eq!(
            register,
            Command::Register(Register {
                app: Some("shop".into()),
                key: Some("k".into()),
                host: None,
                language: Some("python".into()),
                api_version: Some("1.0".into()),
                resource: None,
            })
        );
        let start = Command::from_value(json!({"StartSpan": {
            "timestamp": "2026-11-02T12:00:00.000001+00:00", "request_id": "req-1",
            "span_id": "span-1", "parent_id": null, "operation": "Job/x"
        }}))
        .unwrap();
        let Command::StartSpan(start) = start else {
            panic!("{start:?}")
        };
        assert_eq!(start.parent_id, None);
        assert_eq!(start.timestamp.unwrap().unix_nanos() % 1_000_000_000, 1_000);
    }

    #[test]
    fn node_messages_parse_without_optional_keys() {
        let register = Command::from_value(
            json!({"Register": {"api_version": "1.0", "app": "a", "key": "k"}}),
        );
        assert!(matches!(register, Ok(Command::Register(_))));
        let start = Command::from_value(json!({"StartSpan": {
            "operation": "Controller/x", "request_id": "req-1", "span_id": "span-1",
            "timestamp": "2026-11-02T12:00:00.123Z"
        }}));
        assert!(matches!(
            start,
            Ok(Command::StartSpan(StartSpan {
                parent_id: None,
                ..
            }))
        ));
    }

    #[test]
    fn a_bad_command_inside_a_batch_spares_the_others() {
        let batch = Command::from_value(json!({"BatchCommand": {"commands": [
            {"StartRequest": {"request_id": "req-1"}},
            {"StopSpan": {"timestamp": "not a time", "span_id": "s"}},
            {"Teleport": {}},
            {"BatchCommand": {"commands": []}},
            [1, 2]
        ]}}))
        .unwrap();
        let Command::BatchCommand(batch) = batch else {
            panic!()
        };
        let names: Vec<_> = batch
            .commands
            .iter()
            .map(|c| c.name().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "StartRequest",
                "StopSpan",
                "Teleport",
                "BatchCommand",
                "(unnamed)"
            ]
        );
        assert!(matches!(batch.commands[1], Command::Malformed { .. }));
        assert!(matches!(batch.commands[2], Command::Unknown { .. }));
        assert!(matches!(batch.commands[3], Command::Malformed { .. }));
    }

    #[test]
    fn frames_that_are_not_messages_are_errors() {
        assert!(matches!(
            Command::from_slice(b"{nope"),
            Err(MessageError::Json(_))
        ));
        assert!(matches!(
            Command::from_slice(b"[]"),
            Err(MessageError::Shape(_))
        ));
        assert!(matches!(
            Command::from_slice(br#"{"A": {}, "B": {}}"#),
            Err(MessageError::Shape(_))
        ));
    }

    #[test]
    fn commands_serialize_as_the_agents_send_them() {
        let batch = Command::BatchCommand(Batch {
            commands: vec![
                Command::CoreAgentVersion(VersionProbe {}),
                Command::StartSpan(StartSpan {
                    timestamp: Some(Timestamp(1)),
                    request_id: "req-1".into(),
                    span_id: "span-1".into(),
                    parent_id: None,
                    operation: "Job/x".into(),
                    ..StartSpan::default()
                }),
            ],
        });
        let text = String::from_utf8(batch.to_json().unwrap()).unwrap();
        assert_eq!(
            text,
            r#"{"BatchCommand":{"commands":[{"CoreAgentVersion":{}},{"StartSpan":{"timestamp":"1970-01-01T00:00:00.000000001Z","request_id":"req-1","span_id":"span-1","parent_id":null,"operation":"Job/x"}}]}}"#
        );
        assert_eq!(Command::from_slice(text.as_bytes()).unwrap(), batch);
    }

    #[test]
    fn replies_have_the_three_shapes() {
        assert_eq!(
            Reply::success("BatchCommand").to_value(),
            json!({"BatchCommand": {"result": "Success"}})
        );
        assert_eq!(
            Reply::Version {
                version: "1.0".into()
            }
            .to_value(),
            json!({"CoreAgentVersion": {"version": "1.0"}})
        );
        assert_eq!(
            Reply::failure("no").to_value(),
            json!({"Failure": {"message": "no"}})
        );
        for reply in [
            Reply::success("Register"),
            Reply::failure("x"),
            Reply::Version {
                version: "2".into(),
            },
        ] {
            assert_eq!(Reply::from_slice(&reply.to_json()).unwrap(), reply);
        }
    }
}
