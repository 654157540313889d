//! The JSON message envelope: how trace context travels with a message on a bus.
//!
//! ```json
//! {"traceparent":"00-…-…-01","tracestate":"…","baggage":"…","message_id":"…","payload":{…}}
//! ```
//!
//! The message body goes under `payload` byte for byte as the producer serialized it
//! (it is held as raw JSON and never re-encoded), so its shape is whatever the
//! application chose; the context fields sit beside it rather than inside it, so a body
//! never has to reserve field names and may be any JSON value, not just an object.
//! `tracestate`, `baggage` and `message_id` are omitted when empty.
//!
//! A message is read as an envelope when it is a JSON object with a `payload` field and
//! no fields other than the five above. Anything else that is JSON is taken as a plain
//! body without context (a message from a producer that does not use clew), so its
//! consumer starts a new trace, as it does when `traceparent` is malformed.

use std::collections::HashMap;

use clew_propagation::{BAGGAGE, Extractor, Injector, TRACEPARENT, TRACESTATE};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use crate::Context;
use crate::propagation::{extract_context, inject_context};

/// Why bytes could not be read or written as a message.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("the message is not JSON: {0}")]
    NotJson(serde_json::Error),
    #[error("the message is JSON but not a clew envelope (an object with a `payload` field)")]
    NotAnEnvelope,
    #[error("the message body does not have the expected shape: {0}")]
    Body(serde_json::Error),
    #[error("the message body cannot be serialized as JSON: {0}")]
    Serialize(serde_json::Error),
}

/// A message body with the trace context beside it.
#[derive(Debug, Clone, Serialize)]
pub struct Envelope {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baggage: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    pub payload: Box<RawValue>,
}

const MESSAGE_ID: &str = "message_id";
const PAYLOAD: &str = "payload";
const FIELDS: [&str; 5] = [TRACEPARENT, TRACESTATE, BAGGAGE, MESSAGE_ID, PAYLOAD];

impl Envelope {
    /// An envelope around `body`, without context yet.
    pub fn new<T: Serialize + ?Sized>(body: &T) -> Result<Envelope, EnvelopeError> {
        let payload = serde_json::value::to_raw_value(body).map_err(EnvelopeError::Serialize)?;
        Ok(Envelope::from_raw(payload))
    }

    /// An envelope around an already-serialized JSON body.
    pub fn from_raw(payload: Box<RawValue>) -> Envelope {
        Envelope {
            traceparent: None,
            tracestate: None,
            baggage: None,
            message_id: None,
            payload,
        }
    }

    /// Writes `cx` (span and baggage) into the envelope.
    pub fn inject(&mut self, cx: &Context) {
        inject_context(cx, self);
    }

    /// `with_context(cx)` for builders.
    pub fn with_context(mut self, cx: &Context) -> Envelope {
        self.inject(cx);
        self
    }

    /// The context that arrived with the message: its span is the producer's, or there
    /// is none (absent or malformed `traceparent`).
    pub fn context(&self) -> Context {
        extract_context(self)
    }

    /// The body, deserialized.
    pub fn payload<T: DeserializeOwned>(&self) -> Result<T, EnvelopeError> {
        serde_json::from_str(self.payload.get()).map_err(EnvelopeError::Body)
    }

    /// The body as the producer serialized it.
    pub fn payload_json(&self) -> &str {
        self.payload.get()
    }

    pub fn to_vec(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an envelope of strings and raw JSON always serializes")
    }

    /// Reads an envelope, and only an envelope (see the module docs). Context fields
    /// that are not strings are ignored, as a malformed `traceparent` is.
    pub fn decode(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
        let fields: HashMap<String, Box<RawValue>> = match serde_json::from_slice(bytes) {
            Ok(fields) => fields,
            Err(error) if error.is_data() => return Err(EnvelopeError::NotAnEnvelope),
            Err(error) => return Err(EnvelopeError::NotJson(error)),
        };
        if !fields.contains_key(PAYLOAD) || fields.keys().any(|k| !FIELDS.contains(&k.as_str())) {
            return Err(EnvelopeError::NotAnEnvelope);
        }
        let mut fields = fields;
        let text = |fields: &mut HashMap<String, Box<RawValue>>, key: &str| {
            fields
                .remove(key)
                .and_then(|raw| serde_json::from_str::<String>(raw.get()).ok())
        };
        Ok(Envelope {
            traceparent: text(&mut fields, TRACEPARENT),
            tracestate: text(&mut fields, TRACESTATE),
            baggage: text(&mut fields, BAGGAGE),
            message_id: text(&mut fields, MESSAGE_ID),
            payload: fields.remove(PAYLOAD).expect("checked above"),
        })
    }

    /// Reads a message as an envelope if it is one, or else as a bare JSON body
    /// without context. Fails only when the bytes are not JSON at all.
    pub fn decode_lenient(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
        match Envelope::decode(bytes) {
            Ok(envelope) => Ok(envelope),
            Err(EnvelopeError::NotAnEnvelope) => {
                let raw: Box<RawValue> =
                    serde_json::from_slice(bytes).map_err(EnvelopeError::NotJson)?;
                Ok(Envelope::from_raw(raw))
            }
            Err(error) => Err(error),
        }
    }
}

impl Injector for Envelope {
    fn set(&mut self, key: &str, value: String) {
        let slot = match key {
            TRACEPARENT => &mut self.traceparent,
            TRACESTATE => &mut self.tracestate,
            BAGGAGE => &mut self.baggage,
            _ => return,
        };
        *slot = Some(value);
    }
}

impl Extractor for Envelope {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            TRACEPARENT => self.traceparent.as_deref(),
            TRACESTATE => self.tracestate.as_deref(),
            BAGGAGE => self.baggage.as_deref(),
            MESSAGE_ID => self.message_id.as_deref(),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        [TRACEPARENT, TRACESTATE, BAGGAGE, MESSAGE_ID]
            .into_iter()
            .filter(|k| self.get(k).is_some())
            .collect()
    }
}
