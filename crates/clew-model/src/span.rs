use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{SpanId, TraceId};

/// The resource attribute that names the service a span came from.
pub const SERVICE_NAME: &str = "service.name";
/// What OpenTelemetry SDKs call a service that did not name itself.
pub const UNKNOWN_SERVICE: &str = "unknown_service";

/// OpenTelemetry's span kinds. `Unspecified` is kept distinct because OTLP allows it
/// and a round trip must not invent a kind the sender never set.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
pub enum SpanKind {
    #[default]
    Unspecified,
    Internal,
    Server,
    Client,
    Producer,
    Consumer,
}

impl SpanKind {
    pub const ALL: [SpanKind; 6] = [
        SpanKind::Unspecified,
        SpanKind::Internal,
        SpanKind::Server,
        SpanKind::Client,
        SpanKind::Producer,
        SpanKind::Consumer,
    ];

    /// The OTLP enum value.
    pub fn as_otlp(self) -> i32 {
        self as i32
    }

    pub fn from_otlp(value: i32) -> Option<SpanKind> {
        SpanKind::ALL.get(usize::try_from(value).ok()?).copied()
    }

    /// Upper-case name, as the seed documents and the trace tree print it.
    pub fn as_str(self) -> &'static str {
        match self {
            SpanKind::Unspecified => "UNSPECIFIED",
            SpanKind::Internal => "INTERNAL",
            SpanKind::Server => "SERVER",
            SpanKind::Client => "CLIENT",
            SpanKind::Producer => "PRODUCER",
            SpanKind::Consumer => "CONSUMER",
        }
    }

    /// Lower-case name, as Jaeger's `span.kind` tag and `spanKind` parameter use it.
    pub fn jaeger_name(self) -> &'static str {
        match self {
            SpanKind::Unspecified => "",
            SpanKind::Internal => "internal",
            SpanKind::Server => "server",
            SpanKind::Client => "client",
            SpanKind::Producer => "producer",
            SpanKind::Consumer => "consumer",
        }
    }

    /// Accepts either spelling (`SERVER`, `server`, `SPAN_KIND_SERVER`).
    pub fn parse(s: &str) -> Option<SpanKind> {
        let s = s.strip_prefix("SPAN_KIND_").unwrap_or(s);
        SpanKind::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s))
    }

    /// A span that receives work from another process: its parent normally lives elsewhere.
    pub fn is_remote_receiver(self) -> bool {
        matches!(self, SpanKind::Server | SpanKind::Consumer)
    }
}

impl fmt::Display for SpanKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum StatusCode {
    #[default]
    Unset,
    Ok,
    Error,
}

impl StatusCode {
    pub fn as_otlp(self) -> i32 {
        self as i32
    }
    pub fn from_otlp(value: i32) -> Option<StatusCode> {
        match value {
            0 => Some(StatusCode::Unset),
            1 => Some(StatusCode::Ok),
            2 => Some(StatusCode::Error),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Status {
    pub code: StatusCode,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// A typed attribute value, as OpenTelemetry defines them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AttributeValue {
    String(String),
    Bool(bool),
    Int(i64),
    /// NaN and the infinities are valid attribute values but not JSON numbers: in JSON
    /// they are the strings `"NaN"`, `"Infinity"` and `"-Infinity"`, as in OTLP/JSON.
    Double(#[serde(with = "json_double")] f64),
    Bytes(Vec<u8>),
    Array(Vec<AttributeValue>),
    /// OTLP's `kvlist_value`: nested attributes, kept in their order.
    Map(Vec<KeyValue>),
}

impl AttributeValue {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            AttributeValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// The value as a user would type it in a `key=value` search.
    pub fn to_text(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for AttributeValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttributeValue::String(s) => f.write_str(s),
            AttributeValue::Bool(b) => write!(f, "{b}"),
            AttributeValue::Int(i) => write!(f, "{i}"),
            AttributeValue::Double(d) => write!(f, "{d}"),
            AttributeValue::Bytes(b) => {
                for byte in b {
                    write!(f, "{byte:02x}")?;
                }
                Ok(())
            }
            AttributeValue::Array(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
            AttributeValue::Map(items) => {
                f.write_str("{")?;
                for (i, kv) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{}: {}", kv.key, kv.value)?;
                }
                f.write_str("}")
            }
        }
    }
}

impl From<&str> for AttributeValue {
    fn from(v: &str) -> Self {
        AttributeValue::String(v.to_string())
    }
}
impl From<String> for AttributeValue {
    fn from(v: String) -> Self {
        AttributeValue::String(v)
    }
}
impl From<bool> for AttributeValue {
    fn from(v: bool) -> Self {
        AttributeValue::Bool(v)
    }
}
impl From<i64> for AttributeValue {
    fn from(v: i64) -> Self {
        AttributeValue::Int(v)
    }
}
impl From<f64> for AttributeValue {
    fn from(v: f64) -> Self {
        AttributeValue::Double(v)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: String,
    pub value: AttributeValue,
}

impl KeyValue {
    pub fn new(key: impl Into<String>, value: impl Into<AttributeValue>) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: value.into(),
        }
    }
}

/// Finds an attribute by key in a list (attribute lists are short; a scan beats a map).
pub fn find_attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a AttributeValue> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .map(|kv| &kv.value)
}

/// Something that happened at an instant inside a span (OpenTelemetry span event).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub time_unix_nano: u64,
    pub name: String,
    #[serde(default)]
    pub attributes: Vec<KeyValue>,
}

/// A causal reference to a span that is not this span's parent (for example each message
/// of a batch a consumer handled), possibly in another trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Link {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub trace_state: String,
    #[serde(default)]
    pub attributes: Vec<KeyValue>,
}

/// The process or service a span came from.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Resource {
    pub attributes: Vec<KeyValue>,
}

impl Resource {
    pub fn for_service(name: &str) -> Resource {
        Resource {
            attributes: vec![KeyValue::new(SERVICE_NAME, name)],
        }
    }

    pub fn service_name(&self) -> &str {
        find_attribute(&self.attributes, SERVICE_NAME)
            .and_then(AttributeValue::as_str)
            .unwrap_or(UNKNOWN_SERVICE)
    }
}

/// The instrumentation library that recorded a span.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Scope {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
}

/// One span, as stored and queried. Times are Unix nanoseconds as the sender recorded
/// them; clock-skew correction is a view computed by [`crate::tree`], never written back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Span {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent_span_id: Option<SpanId>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub trace_state: String,
    pub name: String,
    pub kind: SpanKind,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    #[serde(default)]
    pub attributes: Vec<KeyValue>,
    #[serde(default)]
    pub events: Vec<Event>,
    #[serde(default)]
    pub links: Vec<Link>,
    #[serde(default)]
    pub status: Status,
    /// Shared by every span of one OTLP `ResourceSpans`, so ingest does not copy it.
    pub resource: Arc<Resource>,
    #[serde(default)]
    pub scope: Scope,
    /// W3C trace flags (bit 0: sampled).
    #[serde(default)]
    pub flags: u32,
}

impl Span {
    pub fn service_name(&self) -> &str {
        self.resource.service_name()
    }

    pub fn duration_nanos(&self) -> u64 {
        self.end_unix_nano.saturating_sub(self.start_unix_nano)
    }

    pub fn attribute(&self, key: &str) -> Option<&AttributeValue> {
        find_attribute(&self.attributes, key)
    }

    pub fn is_error(&self) -> bool {
        self.status.code == StatusCode::Error
    }

    /// The messaging destination (channel, topic, queue) for PRODUCER and CONSUMER spans,
    /// under the current semantic-convention key or the older one.
    pub fn messaging_destination(&self) -> Option<&str> {
        ["messaging.destination.name", "messaging.destination"]
            .iter()
            .find_map(|k| self.attribute(k).and_then(AttributeValue::as_str))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_without_a_json_number_round_trip_through_json() {
        for (value, text) in [
            (f64::NAN, r#"{"Double":"NaN"}"#),
            (f64::INFINITY, r#"{"Double":"Infinity"}"#),
            (f64::NEG_INFINITY, r#"{"Double":"-Infinity"}"#),
            (412.5, r#"{"Double":412.5}"#),
        ] {
            let json = serde_json::to_string(&AttributeValue::Double(value)).unwrap();
            assert_eq!(json, text);
            let AttributeValue::Double(back) = serde_json::from_str(&json).unwrap() else {
                panic!("{json}")
            };
            assert!(back.to_bits() == value.to_bits() || (back.is_nan() && value.is_nan()));
        }
        assert_eq!(
            serde_json::from_str::<AttributeValue>(r#"{"Double":3}"#).unwrap(),
            AttributeValue::Double(3.0)
        );
        assert!(serde_json::from_str::<AttributeValue>(r#"{"Double":"lots"}"#).is_err());
    }

    #[test]
    fn span_kind_names_round_trip() {
        for kind in SpanKind::ALL {
            assert_eq!(SpanKind::from_otlp(kind.as_otlp()), Some(kind));
            assert_eq!(SpanKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(SpanKind::parse("server"), Some(SpanKind::Server));
        assert_eq!(
            SpanKind::parse("SPAN_KIND_CONSUMER"),
            Some(SpanKind::Consumer)
        );
        assert_eq!(SpanKind::from_otlp(9), None);
        assert_eq!(SpanKind::parse("sideways"), None);
    }

    #[test]
    fn service_name_falls_back_to_unknown_service() {
        assert_eq!(Resource::default().service_name(), UNKNOWN_SERVICE);
        assert_eq!(Resource::for_service("ares").service_name(), "ares");
    }

    #[test]
    fn attribute_values_print_as_a_user_types_them() {
        assert_eq!(AttributeValue::from("orlan").to_text(), "orlan");
        assert_eq!(AttributeValue::Int(-3).to_text(), "-3");
        assert_eq!(AttributeValue::Double(94.5).to_text(), "94.5");
        assert_eq!(AttributeValue::Bool(true).to_text(), "true");
        let array = AttributeValue::Array(vec![AttributeValue::Int(1), AttributeValue::Int(2)]);
        assert_eq!(array.to_text(), "[1, 2]");
    }
}

/// A double as a JSON number, or, when it has none, as protobuf's JSON names for it.
mod json_double {
    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
        if value.is_finite() {
            serializer.serialize_f64(*value)
        } else if value.is_nan() {
            serializer.serialize_str("NaN")
        } else if *value > 0.0 {
            serializer.serialize_str("Infinity")
        } else {
            serializer.serialize_str("-Infinity")
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
        struct Double;
        impl Visitor<'_> for Double {
            type Value = f64;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a number, or \"NaN\", \"Infinity\" or \"-Infinity\"")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
                Ok(v)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
                Ok(v as f64)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
                Ok(v as f64)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<f64, E> {
                match v {
                    "NaN" => Ok(f64::NAN),
                    "Infinity" => Ok(f64::INFINITY),
                    "-Infinity" => Ok(f64::NEG_INFINITY),
                    other => Err(E::invalid_value(de::Unexpected::Str(other), &self)),
                }
            }
        }
        deserializer.deserialize_any(Double)
    }
}
