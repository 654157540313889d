//! A `tracing` layer, so code instrumented with `#[instrument]` and `tracing::span!`
//! is traced by clew.
//!
//! Each `tracing` span becomes a clew span: its fields become attributes, events inside
//! it become span events, and its parent is the parent `tracing` span or, for a span
//! without one, whatever clew span is current (so `#[instrument]` functions called from
//! a handler that received a remote context join that trace). While a `tracing` span
//! is entered its clew span is current, so clew spans started inside it are its
//! children.
//!
//! Fields named `otel.name`, `otel.kind` (`client`, `server`, `producer`, `consumer`,
//! `internal`) and `otel.status_code` (`error`, `ok`) rename the span, set its kind and
//! its status. An event at `ERROR` level sets the span's status to error. Events
//! outside any `tracing` span are not recorded (a clew span can only be changed through
//! its handle). The SDK's own logs and the export thread's are never recorded.

use std::cell::RefCell;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};

use clew_model::{SpanKind, StatusCode};
use smallvec::SmallVec;
use tracing_core::field::{Field, Visit};
use tracing_core::span::{Attributes, Id, Record};
use tracing_core::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context as LayerContext;
use tracing_subscriber::registry::LookupSpan;

use crate::attr::Attribute;
use crate::{ContextGuard, Span, Tracer, suppress};

/// Records `tracing` spans and events with a clew [`Tracer`]. Add it to a
/// `tracing_subscriber::registry()`.
pub struct ClewLayer {
    tracer: Tracer,
    /// Tells this layer's spans from another `ClewLayer`'s in the same registry (one
    /// per service, say), since they share each `tracing` span's extensions.
    id: usize,
}

impl ClewLayer {
    pub fn new(tracer: Tracer) -> ClewLayer {
        static NEXT_ID: AtomicUsize = AtomicUsize::new(0);
        ClewLayer {
            tracer,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        }
    }
}

/// The clew spans of one `tracing` span, one per `ClewLayer` that recorded it.
#[derive(Default)]
struct State {
    spans: SmallVec<[(usize, Span); 1]>,
}

impl State {
    fn get(&self, layer: usize) -> Option<&Span> {
        self.spans
            .iter()
            .find(|(id, _)| *id == layer)
            .map(|(_, span)| span)
    }

    fn get_mut(&mut self, layer: usize) -> Option<&mut Span> {
        self.spans
            .iter_mut()
            .find(|(id, _)| *id == layer)
            .map(|(_, span)| span)
    }

    fn take(&mut self, layer: usize) -> Option<Span> {
        let at = self.spans.iter().position(|(id, _)| *id == layer)?;
        Some(self.spans.remove(at).1)
    }
}

thread_local! {
    /// One entry per `on_enter` on this thread: the guard that restores clew's current
    /// context at the matching `on_exit` (`None` for spans clew does not record).
    static ENTERED: RefCell<Vec<Option<ContextGuard>>> = const { RefCell::new(Vec::new()) };
}

fn ignored(metadata: &tracing_core::Metadata<'_>) -> bool {
    suppress::is_suppressed() || metadata.target().starts_with("clew_sdk")
}

#[derive(Default)]
struct Fields {
    attributes: Vec<Attribute>,
    name: Option<String>,
    kind: Option<SpanKind>,
    status: Option<StatusCode>,
    message: Option<String>,
}

impl Fields {
    fn special(&mut self, field: &Field, value: &str) -> bool {
        match field.name() {
            "otel.name" => self.name = Some(value.to_string()),
            "otel.kind" => self.kind = SpanKind::parse(value),
            "otel.status_code" => {
                self.status = match value.to_ascii_lowercase().as_str() {
                    "error" => Some(StatusCode::Error),
                    "ok" => Some(StatusCode::Ok),
                    _ => None,
                }
            }
            "message" => self.message = Some(value.to_string()),
            _ => return false,
        }
        true
    }

    fn push(&mut self, field: &Field, value: impl Into<crate::Value>) {
        self.attributes.push(Attribute::new(field.name(), value));
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if !self.special(field, value) {
            self.push(field, value.to_string());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        if !self.special(field, &text) {
            self.push(field, text);
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field, value);
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.push(field, value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, value);
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.push(field, value.to_string());
    }
}

impl<S> tracing_subscriber::Layer<S> for ClewLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: LayerContext<'_, S>) {
        let metadata = attrs.metadata();
        if ignored(metadata) {
            return;
        }
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        let mut builder = self
            .tracer
            .span(metadata.name())
            .kind(fields.kind.unwrap_or(SpanKind::Internal))
            .attributes(fields.attributes.drain(..));
        if let Some(module) = metadata.module_path() {
            builder = builder.attribute("code.namespace", module);
        }
        if let Some(name) = fields.name.take() {
            builder = builder.name(name);
        }
        if let Some(parent) = attrs.parent() {
            // An explicit parent: clew's current context may belong to another span.
            match ctx.span(parent).and_then(|p| {
                p.extensions()
                    .get::<State>()
                    .and_then(|s| s.get(self.id).map(|span| span.span_context().clone()))
            }) {
                Some(parent) => builder = builder.parent(&parent),
                None => builder = builder.root(),
            }
        } else if attrs.is_root() {
            builder = builder.root();
        }
        // Otherwise the parent is clew's current context, which `on_enter` keeps in
        // step with the innermost entered `tracing` span.
        let mut span = builder.start();
        if let Some(status) = fields.status {
            span.set_status(status, "");
        }
        if let Some(registry_span) = ctx.span(id) {
            let mut extensions = registry_span.extensions_mut();
            match extensions.get_mut::<State>() {
                Some(state) => state.spans.push((self.id, span)),
                None => extensions.insert(State {
                    spans: smallvec::smallvec![(self.id, span)],
                }),
            }
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: LayerContext<'_, S>) {
        let Some(registry_span) = ctx.span(id) else {
            return;
        };
        let mut extensions = registry_span.extensions_mut();
        let Some(span) = extensions
            .get_mut::<State>()
            .and_then(|s| s.get_mut(self.id))
        else {
            return;
        };
        let mut fields = Fields::default();
        values.record(&mut fields);
        span.set_attributes(fields.attributes);
        if let Some(name) = fields.name {
            span.update_name(name);
        }
        if let Some(status) = fields.status {
            span.set_status(status, "");
        }
    }

    fn on_follows_from(&self, id: &Id, follows: &Id, ctx: LayerContext<'_, S>) {
        let Some(cause) = ctx.span(follows).and_then(|s| {
            s.extensions()
                .get::<State>()
                .and_then(|s| s.get(self.id).map(|span| span.span_context().clone()))
        }) else {
            return;
        };
        if let Some(registry_span) = ctx.span(id)
            && let Some(span) = registry_span
                .extensions_mut()
                .get_mut::<State>()
                .and_then(|s| s.get_mut(self.id))
        {
            span.add_link(&cause);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: LayerContext<'_, S>) {
        let metadata = event.metadata();
        if ignored(metadata) {
            return;
        }
        let Some(registry_span) = ctx.event_span(event) else {
            return;
        };
        // The nearest enclosing span that clew records.
        let Some(registry_span) = registry_span.scope().find(|s| {
            s.extensions()
                .get::<State>()
                .is_some_and(|s| s.get(self.id).is_some())
        }) else {
            return;
        };
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut extensions = registry_span.extensions_mut();
        let Some(span) = extensions
            .get_mut::<State>()
            .and_then(|s| s.get_mut(self.id))
        else {
            return;
        };
        let name = fields
            .message
            .clone()
            .unwrap_or_else(|| metadata.name().to_string());
        fields
            .attributes
            .push(Attribute::new("level", metadata.level().as_str()));
        span.add_event(name.clone(), fields.attributes);
        if *metadata.level() == Level::ERROR {
            span.set_status(StatusCode::Error, name);
        }
    }

    fn on_enter(&self, id: &Id, ctx: LayerContext<'_, S>) {
        let guard = if suppress::is_suppressed() {
            None
        } else {
            ctx.span(id).and_then(|s| {
                s.extensions()
                    .get::<State>()
                    .and_then(|state| state.get(self.id).map(Span::enter))
            })
        };
        let _ = ENTERED.try_with(|entered| entered.borrow_mut().push(guard));
    }

    fn on_exit(&self, _id: &Id, _ctx: LayerContext<'_, S>) {
        let guard = ENTERED
            .try_with(|entered| entered.borrow_mut().pop())
            .ok()
            .flatten();
        drop(guard);
    }

    fn on_close(&self, id: Id, ctx: LayerContext<'_, S>) {
        let Some(registry_span) = ctx.span(&id) else {
            return;
        };
        let span = registry_span
            .extensions_mut()
            .get_mut::<State>()
            .and_then(|s| s.take(self.id));
        if let Some(mut span) = span {
            span.end();
        }
    }
}
