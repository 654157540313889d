//! Trace search shared by the three APIs, including tags the store cannot see.
//!
//! Jaeger shows tags it derives from a span's kind, status and scope (`span.kind`,
//! `error`, `otel.status_code`, …), and its users search by them (`error=true` is the
//! most common search there is). Those are not attributes, so the store cannot match
//! them; they are checked here on the fetched traces instead, over-fetching from the
//! store until enough traces pass.

use clew_model::{AttributeValue, Span, StatusCode, find_attribute};
use clew_store::{SpanStore, TraceQuery};

/// What the store returns when asked for no particular number of traces.
pub(crate) const DEFAULT_LIMIT: usize = 100;

/// How many traces a search with derived tags may examine before it settles for fewer
/// results than asked: bounds the work a rare tag value can cause.
const MAX_EXAMINED: usize = 20_000;

/// Tags that the v1 API derives from span fields rather than attributes.
const DERIVED_TAGS: [&str; 7] = [
    "span.kind",
    "error",
    "otel.status_code",
    "otel.status_description",
    "otel.scope.name",
    "otel.scope.version",
    "w3c.tracestate",
];

/// A search: the store's query plus `key=value` criteria on derived tags.
#[derive(Debug, Clone, Default)]
pub(crate) struct Search {
    pub(crate) query: TraceQuery,
    derived: Vec<(String, String)>,
}

impl Search {
    /// Adds tag criteria, keeping attribute ones in the store query and derived ones here.
    pub(crate) fn new(mut query: TraceQuery, tags: Vec<(String, String)>) -> Search {
        let mut derived = Vec::new();
        for (key, value) in tags {
            if DERIVED_TAGS.contains(&key.as_str()) {
                derived.push((key, value));
            } else {
                query.attributes.push((key, value));
            }
        }
        Search { query, derived }
    }

    fn limit(&self) -> usize {
        if self.query.limit == 0 {
            DEFAULT_LIMIT
        } else {
            self.query.limit
        }
    }

    /// Matching traces, newest first, each with all its stored spans.
    pub(crate) fn run(&self, store: &dyn SpanStore) -> clew_store::Result<Vec<Vec<Span>>> {
        let want = self.limit();
        if self.derived.is_empty() {
            let ids = store.find_traces(&self.query)?;
            return fetch(store, &ids, |_| true);
        }
        let mut examine = want.saturating_mul(4).clamp(50, MAX_EXAMINED).max(want);
        loop {
            let query = TraceQuery {
                limit: examine,
                ..self.query.clone()
            };
            let ids = store.find_traces(&query)?;
            let mut found = fetch(store, &ids, |spans| {
                spans
                    .iter()
                    .any(|s| self.query.matches(s) && self.derived_match(s))
            })?;
            if found.len() >= want || ids.len() < examine || examine >= MAX_EXAMINED {
                found.truncate(want);
                return Ok(found);
            }
            examine = examine.saturating_mul(4).min(MAX_EXAMINED);
        }
    }

    fn derived_match(&self, span: &Span) -> bool {
        self.derived.iter().all(|(key, want)| {
            // A real attribute of the same name counts too, as it would in Jaeger, where
            // it would sit among the span's tags.
            let attribute = span
                .attribute(key)
                .or_else(|| find_attribute(&span.resource.attributes, key))
                .map(AttributeValue::to_text);
            attribute.as_deref() == Some(want.as_str())
                || derived_tag(span, key).as_deref() == Some(want.as_str())
        })
    }
}

/// The text of a derived tag on a span, `None` when Jaeger would not show that tag.
pub(crate) fn derived_tag(span: &Span, key: &str) -> Option<String> {
    let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_string());
    match key {
        "span.kind" => non_empty(span.kind.jaeger_name()),
        "error" => span.is_error().then(|| "true".to_string()),
        "otel.status_code" => status_code_name(span.status.code).map(str::to_string),
        "otel.status_description" => non_empty(&span.status.message),
        "otel.scope.name" => non_empty(&span.scope.name),
        "otel.scope.version" => non_empty(&span.scope.version),
        "w3c.tracestate" => non_empty(&span.trace_state),
        _ => None,
    }
}

pub(crate) fn status_code_name(code: StatusCode) -> Option<&'static str> {
    match code {
        StatusCode::Unset => None,
        StatusCode::Ok => Some("OK"),
        StatusCode::Error => Some("ERROR"),
    }
}

/// Fetches traces in order, skipping any that vanished since the search (retention may
/// run in between) and any that `keep` rejects.
fn fetch(
    store: &dyn SpanStore,
    ids: &[clew_model::TraceId],
    keep: impl Fn(&[Span]) -> bool,
) -> clew_store::Result<Vec<Vec<Span>>> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(spans) = store.trace(*id)?
            && !spans.is_empty()
            && keep(&spans)
        {
            out.push(spans);
        }
    }
    Ok(out)
}
