//! Tracers, span builders and spans.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use clew_model::{Resource, Scope, SpanId, SpanKind, Status, StatusCode, TraceId};
use clew_propagation::{FLAG_RANDOM, FLAG_SAMPLED};

use crate::attr::{Attribute, AttributeList, Key, Value, into_model_dedup};
use crate::clock::{now_unix_nanos, system_time_nanos};
use crate::export::ExportError;
use crate::ids::{new_span_id, new_trace_id};
use crate::processor::{BatchConfig, BatchProcessor, BatchQueue, NoopProcessor, SpanProcessor};
use crate::{Context, ContextGuard, Sampler, SpanContext, SpanExporter};

/// Attributes set at start: four cover most spans without a heap allocation.
pub(crate) type Attributes = AttributeList;

/// Owns the export pipeline and the sampler, and hands out one [`Tracer`] per service.
///
/// Cloning is cheap and clones share everything. Call [`TracerProvider::shutdown`] (or
/// [`TracerProvider::shutdown_async`]) before the process exits: it exports every span
/// that has ended, and nothing else can, since a process that exits does not run
/// destructors of what is still referenced.
#[derive(Clone)]
pub struct TracerProvider {
    inner: Arc<ProviderInner>,
}

struct ProviderInner {
    processor: Arc<dyn SpanProcessor>,
    /// The processor's queue when it is a [`BatchProcessor`]: spans go straight in.
    batch: Option<BatchQueue>,
    sampler: Sampler,
    scope: Scope,
    tracers: Mutex<Vec<&'static TracerInner>>,
}

/// Configures a [`TracerProvider`].
pub struct TracerProviderBuilder {
    processor: Option<(Arc<dyn SpanProcessor>, Option<BatchQueue>)>,
    sampler: Sampler,
    scope: Scope,
}

impl TracerProviderBuilder {
    /// Where ended spans go. Without one, spans are recorded and dropped.
    pub fn with_processor(mut self, processor: impl SpanProcessor) -> Self {
        let batch = (&processor as &dyn std::any::Any)
            .downcast_ref::<BatchProcessor>()
            .map(BatchProcessor::queue);
        self.processor = Some((Arc::new(processor), batch));
        self
    }

    /// Shorthand for a [`BatchProcessor`] with the default configuration.
    pub fn with_batch_exporter(self, exporter: impl SpanExporter) -> Self {
        self.with_processor(BatchProcessor::new(exporter, BatchConfig::default()))
    }

    pub fn with_sampler(mut self, sampler: Sampler) -> Self {
        self.sampler = sampler;
        self
    }

    /// The instrumentation scope recorded on every span (default: `clew-sdk` and its
    /// version).
    pub fn with_scope(mut self, name: impl Into<String>, version: impl Into<String>) -> Self {
        self.scope = Scope {
            name: name.into(),
            version: version.into(),
        };
        self
    }

    pub fn build(self) -> TracerProvider {
        let (processor, batch) = self
            .processor
            .unwrap_or_else(|| (Arc::new(NoopProcessor), None));
        TracerProvider {
            inner: Arc::new(ProviderInner {
                processor,
                batch,
                sampler: self.sampler,
                scope: self.scope,
                tracers: Mutex::new(Vec::new()),
            }),
        }
    }
}

impl TracerProvider {
    pub fn builder() -> TracerProviderBuilder {
        TracerProviderBuilder {
            processor: None,
            sampler: Sampler::default(),
            scope: Scope {
                name: "clew-sdk".into(),
                version: env!("CARGO_PKG_VERSION").into(),
            },
        }
    }

    /// The tracer of the service `service_name` (its resource carries `service.name`).
    /// Asking twice for the same service returns the same tracer.
    pub fn tracer(&self, service_name: &str) -> Tracer {
        self.tracer_with_resource(Resource::for_service(service_name))
    }

    /// The tracer for `resource`; asking twice for an equal resource returns the same
    /// tracer.
    ///
    /// A tracer lives until the process exits: spans refer to it without reference
    /// counting, which keeps starting and ending a span free of shared atomic writes.
    /// Create tracers once per service, not per request; the provider hands back the
    /// existing one for a resource it has seen, so repeated calls cost no memory.
    pub fn tracer_with_resource(&self, resource: Resource) -> Tracer {
        let mut tracers = self.inner.tracers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(existing) = tracers.iter().find(|t| *t.resource == resource) {
            return Tracer { inner: existing };
        }
        let inner: &'static TracerInner = Box::leak(Box::new(TracerInner {
            resource: Arc::new(resource),
            scope: self.inner.scope.clone(),
            sampler: self.inner.sampler.clone(),
            processor: Some(self.inner.processor.clone()),
            batch: self.inner.batch.clone(),
        }));
        tracers.push(inner);
        Tracer { inner }
    }

    /// Exports every span that has ended so far and waits for the export. Blocks the
    /// calling thread; from async code prefer [`TracerProvider::force_flush_async`].
    pub fn force_flush(&self) -> Result<(), ExportError> {
        self.inner.processor.force_flush()
    }

    /// Flushes, shuts the exporter down and waits for both. Spans that end later are
    /// dropped (and counted). Blocks the calling thread; from async code prefer
    /// [`TracerProvider::shutdown_async`].
    pub fn shutdown(&self) -> Result<(), ExportError> {
        self.inner.processor.shutdown()
    }

    pub async fn force_flush_async(&self) -> Result<(), ExportError> {
        self.inner.processor.force_flush_async().await
    }

    pub async fn shutdown_async(&self) -> Result<(), ExportError> {
        self.inner.processor.shutdown_async().await
    }

    /// Spans dropped because the export queue was full or the provider shut down.
    pub fn dropped_spans(&self) -> u64 {
        self.inner.processor.dropped_spans()
    }

    #[cfg(test)]
    pub(crate) fn batch_queue(&self) -> Option<BatchQueue> {
        self.inner.batch.clone()
    }
}

pub(crate) struct TracerInner {
    resource: Arc<Resource>,
    scope: Scope,
    sampler: Sampler,
    processor: Option<Arc<dyn SpanProcessor>>,
    batch: Option<BatchQueue>,
}

/// Starts spans for one service. Copy it freely: it is a reference.
#[derive(Clone, Copy)]
pub struct Tracer {
    inner: &'static TracerInner,
}

static NOOP_TRACER: std::sync::LazyLock<TracerInner> = std::sync::LazyLock::new(|| TracerInner {
    resource: Arc::new(Resource::default()),
    scope: Scope::default(),
    sampler: Sampler::always_off(),
    processor: None,
    batch: None,
});

impl Tracer {
    /// A tracer that records nothing; its spans still get ids and propagate context.
    pub fn noop() -> Tracer {
        Tracer {
            inner: &NOOP_TRACER,
        }
    }

    pub fn resource(&self) -> &Arc<Resource> {
        &self.inner.resource
    }

    pub fn service_name(&self) -> &str {
        self.inner.resource.service_name()
    }

    /// A builder for a span named `name`, by default INTERNAL and a child of the
    /// current context.
    #[inline]
    pub fn span(&self, name: impl Into<Cow<'static, str>>) -> SpanBuilder {
        let mut data = pooled_block().unwrap_or_else(|| Box::new(SpanData::empty(*self)));
        // Pooled blocks are empty (see `SpanData::empty`): only these need setting.
        data.tracer = *self;
        data.name = name.into();
        data.kind = SpanKind::Internal;
        SpanBuilder {
            data,
            parent: Parent::Current,
            explicit_start: false,
        }
    }

    /// Runs `f` inside a new INTERNAL span that is current while `f` runs, then ends it.
    pub fn in_span<T>(
        &self,
        name: impl Into<Cow<'static, str>>,
        f: impl FnOnce(&mut Span) -> T,
    ) -> T {
        let mut span = self.span(name).start();
        let _guard = span.enter();
        let out = f(&mut span);
        span.end();
        out
    }
}

impl Tracer {
    /// Whether two tracers are the same one (and so share resource and scope).
    pub(crate) fn same(&self, other: &Tracer) -> bool {
        std::ptr::eq(self.inner, other.inner)
    }

    pub(crate) fn scope(&self) -> &Scope {
        &self.inner.scope
    }
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracer")
            .field("service", &self.service_name())
            .finish()
    }
}

#[derive(Clone, Copy)]
enum Parent {
    Current,
    /// The one the builder was given, kept in the block's `context` until the start.
    Given,
    Root,
}

/// A span about to start. Every setting has a default; [`SpanBuilder::start`] starts it.
///
/// The span's data lives in one heap block from here until it ends, so the builder and
/// the span handle stay a few words wide and chained calls move no more.
#[must_use = "a span builder does nothing until started"]
pub struct SpanBuilder {
    data: Box<SpanData>,
    parent: Parent,
    /// Whether `data.start` was set by the caller.
    explicit_start: bool,
}

impl SpanBuilder {
    #[inline]
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.data.name = name.into();
        self
    }

    #[inline]
    pub fn kind(mut self, kind: SpanKind) -> Self {
        self.data.kind = kind;
        self
    }

    #[inline]
    pub fn attribute(mut self, key: impl Into<Key>, value: impl Into<Value>) -> Self {
        self.data.attributes.push_new(key, value);
        self
    }

    pub fn attributes<A: Into<Attribute>>(
        mut self,
        attributes: impl IntoIterator<Item = A>,
    ) -> Self {
        self.data
            .attributes
            .extend(attributes.into_iter().map(Into::into));
        self
    }

    /// A causal link to a span that is not the parent (for example each message of a
    /// batch).
    pub fn link(self, context: &SpanContext) -> Self {
        self.link_with_attributes(context, Vec::<Attribute>::new())
    }

    pub fn link_with_attributes<A: Into<Attribute>>(
        mut self,
        context: &SpanContext,
        attributes: impl IntoIterator<Item = A>,
    ) -> Self {
        self.data.extra().links.push(LinkData {
            context: context.clone(),
            attributes: attributes.into_iter().map(Into::into).collect(),
        });
        self
    }

    /// The parent span, local or remote, instead of the current context.
    pub fn parent(mut self, parent: &SpanContext) -> Self {
        self.data.context = parent.clone();
        self.parent = Parent::Given;
        self
    }

    /// The span of `cx` as parent; a context without a span makes this span a root.
    pub fn parent_context(mut self, cx: &Context) -> Self {
        match cx.span_context() {
            Some(span) => {
                self.data.context = span.clone();
                self.parent = Parent::Given;
            }
            None => self.parent = Parent::Root,
        }
        self
    }

    /// Start a new trace whatever is current.
    pub fn root(mut self) -> Self {
        self.parent = Parent::Root;
        self
    }

    pub fn start_time(mut self, time: SystemTime) -> Self {
        self.data.start = system_time_nanos(time);
        self.explicit_start = true;
        self
    }

    pub fn start_unix_nanos(mut self, unix_nanos: u64) -> Self {
        self.data.start = unix_nanos;
        self.explicit_start = true;
        self
    }

    pub fn start(self) -> Span {
        let SpanBuilder {
            mut data,
            parent,
            explicit_start,
        } = self;
        let start = if explicit_start {
            data.start
        } else {
            now_unix_nanos()
        };
        let span_id = new_span_id();
        let tracer = data.tracer;
        let inner = tracer.inner;
        let parent = match parent {
            Parent::Current => Context::current_span(),
            Parent::Given => Some(std::mem::replace(
                &mut data.context,
                SpanContext::placeholder(),
            )),
            Parent::Root => None,
        };
        let (trace_id, inherited_flags, local_root) = match &parent {
            Some(parent) => (
                parent.trace_id(),
                parent.flags(),
                parent.local_root().unwrap_or(span_id),
            ),
            None => (new_trace_id(start / 1_000_000), FLAG_RANDOM, span_id),
        };
        let sampled =
            inner.processor.is_some() && inner.sampler.should_sample(parent.as_ref(), trace_id);
        let flags = if sampled {
            inherited_flags | FLAG_SAMPLED
        } else {
            inherited_flags & !FLAG_SAMPLED
        };
        let (parent_span_id, trace_state) = match parent {
            Some(parent) => (parent.span_id(), parent.into_trace_state()),
            None => (SpanId::INVALID, None),
        };
        let data = if sampled {
            data.parent_span_id = parent_span_id;
            data.start = start;
            Some(data)
        } else {
            return_to_pool(data);
            None
        };
        // Built last, straight into the returned span: built before the call above,
        // the context would be copied out of a temporary with wide loads over its
        // narrow stores, which stalls the CPU.
        Span {
            context: SpanContext::local(trace_id, span_id, flags, trace_state, local_root),
            tracer,
            data,
        }
    }
}

/// Everything recorded about a span. While the span is open it lives in a heap block
/// from the thread's pool (so builder and handle stay a few words wide); when it ends
/// it is copied, by value, into the processor's queue and the block goes back to the
/// pool of the thread that ended it. No block ever crosses to the export thread, so a
/// span costs no allocation once a thread's pool is warm.
pub(crate) struct SpanData {
    /// Filled in when the span ends.
    context: SpanContext,
    tracer: Tracer,
    /// [`SpanId::INVALID`] for a root.
    parent_span_id: SpanId,
    name: Cow<'static, str>,
    kind: SpanKind,
    status: StatusCode,
    start: u64,
    end: u64,
    attributes: Attributes,
    /// Events, links and a status message: most spans have none, so they live behind
    /// one pointer rather than widening every span.
    extra: Option<Box<Extra>>,
}

#[derive(Default)]
struct Extra {
    events: Vec<EventData>,
    links: Vec<LinkData>,
    status_message: Cow<'static, str>,
}

#[derive(Debug, Clone)]
struct EventData {
    time: u64,
    name: Cow<'static, str>,
    attributes: Vec<Attribute>,
}

#[derive(Debug, Clone)]
struct LinkData {
    context: SpanContext,
    attributes: Vec<Attribute>,
}

impl SpanData {
    /// A record that owns nothing: what pooled blocks hold between spans.
    #[inline]
    fn empty(tracer: Tracer) -> SpanData {
        SpanData {
            context: SpanContext::placeholder(),
            tracer,
            parent_span_id: SpanId::INVALID,
            name: Cow::Borrowed(""),
            kind: SpanKind::Internal,
            status: StatusCode::Unset,
            start: 0,
            end: 0,
            attributes: AttributeList::new(),
            extra: None,
        }
    }

    /// A record that owns heap memory (an owned name and attribute).
    #[cfg(test)]
    pub(crate) fn for_test(tracer: Tracer, name: String) -> SpanData {
        let mut data = SpanData::empty(tracer);
        data.attributes.push_new("owned", name.clone());
        data.name = name.into();
        data
    }

    #[cfg(test)]
    pub(crate) fn is_empty_for_test(&self) -> bool {
        self.owns_nothing() && self.name.is_empty() && self.attributes.iter().next().is_none()
    }

    /// Whether dropping this record would free nothing.
    #[inline]
    fn owns_nothing(&self) -> bool {
        self.extra.is_none()
            && self.context.trace_state().is_none()
            && matches!(self.name, Cow::Borrowed(_))
            && self.attributes.owns_nothing()
    }

    #[inline]
    fn extra(&mut self) -> &mut Extra {
        self.extra.get_or_insert_with(Box::default)
    }

    /// Moves the record out, leaving this one empty.
    #[inline]
    pub(crate) fn take(&mut self) -> SpanData {
        let tracer = self.tracer;
        std::mem::replace(self, SpanData::empty(tracer))
    }

    /// Moves the record into `slot` with one copy, leaving this one empty.
    ///
    /// # Safety
    /// `slot` must be valid for writing a `SpanData` and hold no live value (it is
    /// overwritten, not dropped).
    #[inline]
    pub(crate) unsafe fn move_to(&mut self, slot: *mut SpanData) {
        // SAFETY: `self` is a valid record and `slot` is writable (the caller's
        // promise). The bitwise copy moves ownership of everything `self` held to
        // `slot`; the fields that own something are then overwritten without being
        // dropped, so nothing is freed twice, and `self` is left as `empty` leaves it
        // (the other fields are plain values that the next span overwrites).
        unsafe {
            std::ptr::copy_nonoverlapping(self as *const SpanData, slot, 1);
            std::ptr::write(&mut self.context, SpanContext::placeholder());
            std::ptr::write(&mut self.name, Cow::Borrowed(""));
            std::ptr::write(&mut self.attributes, AttributeList::new());
            std::ptr::write(&mut self.extra, None);
        }
        self.status = StatusCode::Unset;
    }
}

/// A started span. It ends when [`Span::end`] is called or when it is dropped.
///
/// Changing a span takes `&mut self` and no lock: a span belongs to whoever started
/// it. Other code refers to it by its [`SpanContext`].
pub struct Span {
    context: SpanContext,
    tracer: Tracer,
    /// `None` when the span is not sampled or has ended.
    data: Option<Box<SpanData>>,
}

impl Span {
    pub fn span_context(&self) -> &SpanContext {
        &self.context
    }

    pub fn trace_id(&self) -> TraceId {
        self.context.trace_id()
    }

    pub fn span_id(&self) -> SpanId {
        self.context.span_id()
    }

    /// The current context with this span as its span: pass it to
    /// [`crate::FutureExt::with_context`] or to a builder's `parent_context`.
    pub fn context(&self) -> Context {
        Context::current().with_span_context(self.context.clone())
    }

    /// Makes this span current on this thread (new spans become its children) until
    /// the guard drops. The guard does not borrow the span, so the span can still be
    /// changed while it is current.
    pub fn enter(&self) -> ContextGuard {
        Context::enter_span(self.context.clone())
    }

    /// Whether this span is recorded (sampled and not yet ended).
    pub fn is_recording(&self) -> bool {
        self.data.is_some()
    }

    pub fn tracer(&self) -> Tracer {
        self.tracer
    }

    pub fn update_name(&mut self, name: impl Into<Cow<'static, str>>) {
        if let Some(data) = &mut self.data {
            data.name = name.into();
        }
    }

    /// Sets an attribute; setting a key again replaces its value.
    #[inline]
    pub fn set_attribute(&mut self, key: impl Into<Key>, value: impl Into<Value>) {
        if let Some(data) = &mut self.data {
            data.attributes.push_new(key, value);
        }
    }

    pub fn set_attributes<A: Into<Attribute>>(&mut self, attributes: impl IntoIterator<Item = A>) {
        if let Some(data) = &mut self.data {
            data.attributes
                .extend(attributes.into_iter().map(Into::into));
        }
    }

    /// Records that something happened now, with attributes.
    pub fn add_event<A: Into<Attribute>>(
        &mut self,
        name: impl Into<Cow<'static, str>>,
        attributes: impl IntoIterator<Item = A>,
    ) {
        if self.data.is_some() {
            self.add_event_at(name, now_unix_nanos(), attributes);
        }
    }

    pub fn add_event_at<A: Into<Attribute>>(
        &mut self,
        name: impl Into<Cow<'static, str>>,
        unix_nanos: u64,
        attributes: impl IntoIterator<Item = A>,
    ) {
        if let Some(data) = &mut self.data {
            data.extra().events.push(EventData {
                time: unix_nanos,
                name: name.into(),
                attributes: attributes.into_iter().map(Into::into).collect(),
            });
        }
    }

    /// Adds a link after the start (OpenTelemetry prefers links at start, where
    /// samplers can see them; this is for links learned later).
    pub fn add_link(&mut self, context: &SpanContext) {
        if let Some(data) = &mut self.data {
            data.extra().links.push(LinkData {
                context: context.clone(),
                attributes: Vec::new(),
            });
        }
    }

    /// Sets the status, following OpenTelemetry's rules: `Ok` is final, `Unset` never
    /// replaces a status, and a description is kept only with `Error`.
    pub fn set_status(&mut self, code: StatusCode, description: impl Into<Cow<'static, str>>) {
        let Some(data) = &mut self.data else { return };
        if data.status == StatusCode::Ok || code == StatusCode::Unset {
            return;
        }
        data.status = code;
        if code == StatusCode::Error {
            data.extra().status_message = description.into();
        } else if let Some(extra) = &mut data.extra {
            extra.status_message = Cow::Borrowed("");
        }
    }

    /// Records `error` as an `exception` event (type, message, and the chain of
    /// sources) and sets the status to `Error` with the error's message.
    pub fn record_error<E: std::error::Error + ?Sized>(&mut self, error: &E) {
        if self.data.is_none() {
            return;
        }
        let message = error.to_string();
        let mut chain = message.clone();
        let mut source = error.source();
        while let Some(cause) = source {
            chain.push_str(": ");
            chain.push_str(&cause.to_string());
            source = cause.source();
        }
        self.add_event(
            "exception",
            [
                Attribute::new("exception.type", std::any::type_name::<E>().to_string()),
                Attribute::new("exception.message", chain),
            ],
        );
        self.set_status(StatusCode::Error, message);
    }

    /// Ends the span now. Later calls, and the drop, do nothing.
    #[inline]
    pub fn end(&mut self) {
        if self.data.is_some() {
            self.end_at(now_unix_nanos());
        }
    }

    pub fn end_at(&mut self, unix_nanos: u64) {
        let Some(mut data) = self.data.take() else {
            return;
        };
        let inner = self.tracer.inner;
        data.end = unix_nanos.max(data.start);
        data.context = self.context.clone();
        if let Some(queue) = &inner.batch {
            queue.push(&mut data);
        } else if let Some(processor) = &inner.processor {
            processor.on_end(FinishedSpan { data: data.take() });
        }
        recycle_block(data);
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        self.end();
    }
}

impl std::fmt::Debug for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Span")
            .field("context", &self.context)
            .field("name", &self.data.as_ref().map(|d| &d.name))
            .field("recording", &self.is_recording())
            .finish()
    }
}

/// A span that has ended, on its way to a processor. Turning it into the model's span
/// (allocating owned strings) is left to the processor's thread.
#[repr(transparent)]
pub struct FinishedSpan {
    data: SpanData,
}

impl FinishedSpan {
    pub(crate) fn from_data(data: SpanData) -> FinishedSpan {
        FinishedSpan { data }
    }

    pub(crate) fn data_mut(&mut self) -> &mut SpanData {
        &mut self.data
    }

    /// Empties `spans`, dropping what each owns. Most spans own nothing (literal
    /// names, keys and values, or records an exporter has taken): those are skipped
    /// without running their drop code.
    pub(crate) fn discard_all(spans: &mut Vec<FinishedSpan>) {
        let len = spans.len();
        // SAFETY: the length is cleared first, so a panic while dropping leaks the
        // rest instead of dropping anything twice; each record below `len` is live
        // and is either dropped once here or skipped, and skipping a drop is always
        // sound (and leaks nothing when the record owns nothing).
        unsafe {
            spans.set_len(0);
            let base = spans.as_mut_ptr();
            for i in 0..len {
                let span = base.add(i);
                if !(*span).data.owns_nothing() {
                    std::ptr::drop_in_place(span);
                }
            }
        }
    }

    pub fn span_context(&self) -> &SpanContext {
        &self.data.context
    }

    pub fn name(&self) -> &str {
        &self.data.name
    }

    /// The first span of this trace in this process that this span descends from
    /// (itself, for a span whose parent is remote or absent): a request or message
    /// handler's entry span.
    pub fn local_root(&self) -> SpanId {
        let context = &self.data.context;
        context.local_root().unwrap_or(context.span_id())
    }

    /// Whether this span is its handler's entry span.
    pub fn is_local_root(&self) -> bool {
        self.local_root() == self.data.context.span_id()
    }

    pub fn into_model(mut self) -> clew_model::Span {
        self.take_model()
    }

    /// Moves the recorded data out into a model span, leaving this record empty.
    pub(crate) fn take_model(&mut self) -> clew_model::Span {
        let data = self.data.take();
        let context = data.context;
        let extra = data.extra.map(|extra| *extra).unwrap_or_default();
        clew_model::Span {
            trace_id: context.trace_id(),
            span_id: context.span_id(),
            parent_span_id: data
                .parent_span_id
                .is_valid()
                .then_some(data.parent_span_id),
            trace_state: context
                .trace_state()
                .map(|s| s.to_header())
                .unwrap_or_default(),
            name: data.name.into_owned(),
            kind: data.kind,
            start_unix_nano: data.start,
            end_unix_nano: data.end,
            attributes: into_model_dedup(data.attributes),
            events: extra
                .events
                .into_iter()
                .map(|e| clew_model::Event {
                    time_unix_nano: e.time,
                    name: e.name.into_owned(),
                    attributes: into_model_dedup(e.attributes),
                })
                .collect(),
            links: extra
                .links
                .into_iter()
                .map(|l| clew_model::Link {
                    trace_id: l.context.trace_id(),
                    span_id: l.context.span_id(),
                    trace_state: l
                        .context
                        .trace_state()
                        .map(|s| s.to_header())
                        .unwrap_or_default(),
                    attributes: into_model_dedup(l.attributes),
                })
                .collect(),
            status: Status {
                code: data.status,
                message: extra.status_message.into_owned(),
            },
            resource: data.tracer.inner.resource.clone(),
            scope: data.tracer.inner.scope.clone(),
            flags: u32::from(context.flags()),
        }
    }

    pub(crate) fn tracer(&self) -> Tracer {
        self.data.tracer
    }

    /// Moves the recorded data out as an OTLP span, leaving this record empty like
    /// [`FinishedSpan::take_model`] does.
    pub(crate) fn take_otlp(&mut self) -> clew_otlp::proto::trace::v1::Span {
        use clew_otlp::proto::trace::v1 as trace;
        let data = self.data.take();
        let context = data.context;
        let extra = data.extra.map(|extra| *extra).unwrap_or_default();
        let trace_state =
            |c: &SpanContext| c.trace_state().map(|s| s.to_header()).unwrap_or_default();
        trace::Span {
            trace_id: context.trace_id().0.to_vec(),
            span_id: context.span_id().0.to_vec(),
            trace_state: trace_state(&context),
            parent_span_id: if data.parent_span_id.is_valid() {
                data.parent_span_id.0.to_vec()
            } else {
                Vec::new()
            },
            flags: u32::from(context.flags()),
            name: data.name.into_owned(),
            kind: data.kind.as_otlp(),
            start_time_unix_nano: data.start,
            end_time_unix_nano: data.end,
            attributes: crate::attr::into_otlp_dedup(data.attributes),
            dropped_attributes_count: 0,
            events: extra
                .events
                .into_iter()
                .map(|e| trace::span::Event {
                    time_unix_nano: e.time,
                    name: e.name.into_owned(),
                    attributes: crate::attr::into_otlp_dedup(e.attributes),
                    dropped_attributes_count: 0,
                })
                .collect(),
            dropped_events_count: 0,
            links: extra
                .links
                .into_iter()
                .map(|l| trace::span::Link {
                    trace_id: l.context.trace_id().0.to_vec(),
                    span_id: l.context.span_id().0.to_vec(),
                    trace_state: trace_state(&l.context),
                    attributes: crate::attr::into_otlp_dedup(l.attributes),
                    dropped_attributes_count: 0,
                    flags: 0,
                })
                .collect(),
            dropped_links_count: 0,
            status: Some(trace::Status {
                message: extra.status_message.into_owned(),
                code: data.status.as_otlp(),
            }),
        }
    }
}

/// How many empty blocks a thread keeps at hand: as many as it has spans open at once,
/// in the usual case.
const POOL_SIZE: usize = 64;

/// The pool holds the blocks themselves: a block is what spans borrow and give back.
#[allow(clippy::vec_box)]
type Pool = Vec<Box<SpanData>>;

thread_local! {
    static POOL: std::cell::RefCell<Pool> =
        const { std::cell::RefCell::new(Vec::new()) };
}

#[inline]
fn pooled_block() -> Option<Box<SpanData>> {
    POOL.try_with(|pool| pool.borrow_mut().pop()).ok().flatten()
}

/// Keeps an emptied block for this thread's next span.
#[inline]
fn recycle_block(data: Box<SpanData>) {
    let _ = POOL.try_with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.len() < POOL_SIZE {
            pool.push(data);
        }
    });
}

/// Keeps the block of a span that will not be recorded (only the builder touched it).
fn return_to_pool(mut data: Box<SpanData>) {
    data.attributes.clear();
    data.extra = None;
    data.name = Cow::Borrowed("");
    recycle_block(data);
}
