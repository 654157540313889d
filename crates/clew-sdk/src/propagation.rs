//! Moving a [`Context`] across a process boundary through any carrier, and the HTTP
//! header carrier. The JSON envelope and the TCP frame are in
//! [`crate::envelope`] and [`crate::frame`].

use clew_propagation::{Extractor, Injector, extract, extract_baggage, inject};
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::{Context, SpanContext};

/// Writes `cx`'s span (as `traceparent`/`tracestate`) and baggage into `carrier`.
/// A context without a span writes only its baggage.
pub fn inject_context(cx: &Context, carrier: &mut (impl Injector + ?Sized)) {
    let empty = clew_propagation::Baggage::new();
    let baggage = cx.baggage().unwrap_or(&empty);
    match cx.span_context() {
        Some(span) => inject(&span.to_trace_context(), baggage, carrier),
        None if !baggage.is_empty() => {
            carrier.set(clew_propagation::BAGGAGE, baggage.to_string());
        }
        None => {}
    }
}

/// Reads a context from `carrier`: its span is the remote parent, and its baggage
/// comes along. An absent or malformed `traceparent` gives a context without a span, so
/// the receiver's span starts a new trace (as W3C requires); baggage is kept either way.
pub fn extract_context(carrier: &(impl Extractor + ?Sized)) -> Context {
    let cx = match extract(carrier) {
        Some(trace) => Context::from_span_context(SpanContext::from_trace_context(trace)),
        None => Context::new(),
    };
    cx.with_baggage(extract_baggage(carrier))
}

/// `http::HeaderMap` as an [`Injector`]. Values that are not valid header values
/// (which `inject` never produces) are skipped.
pub struct HeaderInjector<'a>(pub &'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::try_from(value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// `http::HeaderMap` as an [`Extractor`]: names match case-insensitively (the map
/// stores them lowercase), repeated headers are all seen, and values that are not
/// visible ASCII are ignored.
pub struct HeaderExtractor<'a>(pub &'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }

    fn get_all(&self, key: &str) -> Vec<&str> {
        self.0
            .get_all(key)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect()
    }
}

/// Injects `cx` into HTTP request headers.
pub fn inject_headers(cx: &Context, headers: &mut HeaderMap) {
    inject_context(cx, &mut HeaderInjector(headers));
}

/// Extracts the context of an incoming HTTP request.
pub fn extract_headers(headers: &HeaderMap) -> Context {
    extract_context(&HeaderExtractor(headers))
}
