use clew_model::{Span, SpanKind, TraceId};
use serde::{Deserialize, Serialize};

/// A trace search, with Jaeger's semantics: every criterion must hold for one and the
/// same span of the trace (the service's span that has the operation, the attributes and
/// the duration), and the trace is ranked by that span's start.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TraceQuery {
    pub service: Option<String>,
    pub operation: Option<String>,
    pub span_kind: Option<SpanKind>,
    /// `key=value` pairs compared with the attribute's text form (span attributes first,
    /// then resource attributes).
    pub attributes: Vec<(String, String)>,
    pub min_duration_nanos: Option<u64>,
    pub max_duration_nanos: Option<u64>,
    pub start_min_unix_nano: Option<u64>,
    pub start_max_unix_nano: Option<u64>,
    pub limit: usize,
}

impl TraceQuery {
    /// Whether one span satisfies every criterion except the limit.
    pub fn matches(&self, span: &Span) -> bool {
        if self
            .service
            .as_deref()
            .is_some_and(|s| s != span.service_name())
        {
            return false;
        }
        if self.operation.as_deref().is_some_and(|op| op != span.name) {
            return false;
        }
        if self.span_kind.is_some_and(|k| k != span.kind) {
            return false;
        }
        let duration = span.duration_nanos();
        if self.min_duration_nanos.is_some_and(|min| duration < min)
            || self.max_duration_nanos.is_some_and(|max| duration > max)
        {
            return false;
        }
        if self
            .start_min_unix_nano
            .is_some_and(|t| span.start_unix_nano < t)
            || self
                .start_max_unix_nano
                .is_some_and(|t| span.start_unix_nano > t)
        {
            return false;
        }
        self.attributes.iter().all(|(key, want)| {
            span.attribute(key)
                .or_else(|| clew_model::find_attribute(&span.resource.attributes, key))
                .is_some_and(|v| v.to_text() == *want)
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Operation {
    pub name: String,
    pub kind: SpanKind,
}

/// One edge of the service map.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Dependency {
    pub parent: String,
    pub child: String,
    /// The messaging destination for PRODUCER→CONSUMER edges, `None` for calls.
    pub channel: Option<String>,
    pub call_count: u64,
    pub error_count: u64,
}

/// What a search result list shows about one trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceSummary {
    pub trace_id: TraceId,
    pub root_service: String,
    pub root_operation: String,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    pub span_count: usize,
    pub error_count: usize,
    /// Spans whose parent is not in the trace.
    pub orphan_count: usize,
    /// Services with their span counts, sorted by name.
    pub services: Vec<(String, usize)>,
}

impl TraceSummary {
    /// Summarises a non-empty trace. The root is the earliest span without a parent, or,
    /// failing that, the earliest span.
    pub fn of(spans: &[Span]) -> Option<TraceSummary> {
        let first = spans.first()?;
        let ids: std::collections::HashSet<_> = spans.iter().map(|s| s.span_id).collect();
        let is_orphan = |s: &Span| s.parent_span_id.is_some_and(|p| !ids.contains(&p));
        let root = spans
            .iter()
            .filter(|s| s.parent_span_id.is_none())
            .min_by_key(|s| s.start_unix_nano)
            .unwrap_or_else(|| {
                spans
                    .iter()
                    .min_by_key(|s| s.start_unix_nano)
                    .unwrap_or(first)
            });
        let mut services = std::collections::BTreeMap::<&str, usize>::new();
        for span in spans {
            *services.entry(span.service_name()).or_default() += 1;
        }
        Some(TraceSummary {
            trace_id: first.trace_id,
            root_service: root.service_name().to_string(),
            root_operation: root.name.clone(),
            start_unix_nano: spans.iter().map(|s| s.start_unix_nano).min().unwrap_or(0),
            end_unix_nano: spans.iter().map(|s| s.end_unix_nano).max().unwrap_or(0),
            span_count: spans.len(),
            error_count: spans.iter().filter(|s| s.is_error()).count(),
            orphan_count: spans.iter().filter(|s| is_orphan(s)).count(),
            services: services
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        })
    }
}
