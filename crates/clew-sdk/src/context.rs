//! The span context (what crosses process boundaries) and the current context (what a
//! new span takes as its parent when none is given).
//!
//! The current context is thread-local. Synchronous code sets it with a guard
//! ([`Context::attach`], [`crate::Span::enter`]); asynchronous code wraps a future
//! ([`FutureExt::with_context`], [`FutureExt::in_span`]) so the context is set around
//! every poll, whichever worker thread runs it, and taken off again before the thread
//! moves on to another task.
//!
//! The context holds a span's ids, not the span: a span is owned by whoever started it
//! and changed without locks, so "add an event to the current span" is done through the
//! span handle, not through the context.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use clew_model::{SpanId, TraceId};
use clew_propagation::{Baggage, FLAG_SAMPLED, TraceContext, TraceParent, TraceState};

use crate::Span;

/// The identity of a span as another span (or another process) refers to it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SpanContext {
    trace_id: TraceId,
    span_id: SpanId,
    flags: u8,
    remote: bool,
    trace_state: Option<Arc<TraceState>>,
    /// The first span of this trace in this process (the handler's entry span), by
    /// which per-handler batching groups spans. Invalid for remote contexts.
    local_root: SpanId,
}

impl SpanContext {
    /// A context received from another process.
    pub fn remote(
        trace_id: TraceId,
        span_id: SpanId,
        flags: u8,
        trace_state: Option<TraceState>,
    ) -> SpanContext {
        SpanContext {
            trace_id,
            span_id,
            flags,
            remote: true,
            trace_state: trace_state.filter(|s| !s.is_empty()).map(Arc::new),
            local_root: SpanId::INVALID,
        }
    }

    /// The context carried by a W3C `traceparent` and `tracestate`.
    pub fn from_trace_context(context: TraceContext) -> SpanContext {
        SpanContext::remote(
            context.parent.trace_id,
            context.parent.parent_id,
            context.parent.flags,
            Some(context.state),
        )
    }

    /// Stands in until a recorded span ends and its real context is copied in.
    pub(crate) fn placeholder() -> SpanContext {
        SpanContext {
            trace_id: TraceId::INVALID,
            span_id: SpanId::INVALID,
            flags: 0,
            remote: false,
            trace_state: None,
            local_root: SpanId::INVALID,
        }
    }

    pub(crate) fn local(
        trace_id: TraceId,
        span_id: SpanId,
        flags: u8,
        trace_state: Option<Arc<TraceState>>,
        local_root: SpanId,
    ) -> SpanContext {
        SpanContext {
            trace_id,
            span_id,
            flags,
            remote: false,
            trace_state,
            local_root,
        }
    }

    pub fn trace_id(&self) -> TraceId {
        self.trace_id
    }

    pub fn span_id(&self) -> SpanId {
        self.span_id
    }

    /// W3C trace flags.
    pub fn flags(&self) -> u8 {
        self.flags
    }

    pub fn is_sampled(&self) -> bool {
        self.flags & FLAG_SAMPLED != 0
    }

    /// Whether this context arrived from another process.
    pub fn is_remote(&self) -> bool {
        self.remote
    }

    pub fn trace_state(&self) -> Option<&TraceState> {
        self.trace_state.as_deref()
    }

    pub(crate) fn into_trace_state(self) -> Option<Arc<TraceState>> {
        self.trace_state
    }

    pub(crate) fn local_root(&self) -> Option<SpanId> {
        (!self.remote && self.local_root.is_valid()).then_some(self.local_root)
    }

    /// This context as a `traceparent`.
    pub fn traceparent(&self) -> TraceParent {
        TraceParent::new(self.trace_id, self.span_id, self.flags)
    }

    /// This context as the W3C pair to inject into a carrier.
    pub fn to_trace_context(&self) -> TraceContext {
        TraceContext {
            parent: self.traceparent(),
            state: self.trace_state.as_deref().cloned().unwrap_or_default(),
        }
    }
}

/// Prints as a `traceparent`.
impl fmt::Display for SpanContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.traceparent().fmt(f)
    }
}

impl fmt::Debug for SpanContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpanContext")
            .field("traceparent", &self.traceparent().to_string())
            .field("remote", &self.remote)
            .field(
                "trace_state",
                &self.trace_state.as_deref().map(|s| s.to_string()),
            )
            .finish()
    }
}

/// What is current: the span new spans become children of, and the baggage that
/// travels with outgoing requests and messages.
#[derive(Clone, Default, PartialEq)]
pub struct Context {
    span: Option<SpanContext>,
    baggage: Option<Arc<Baggage>>,
}

thread_local! {
    static CURRENT: RefCell<Context> = RefCell::new(Context::default());
}

impl Context {
    /// An empty context: spans started under it are roots.
    pub fn new() -> Context {
        Context::default()
    }

    /// The context current on this thread (or in this task, inside
    /// [`FutureExt::with_context`]).
    pub fn current() -> Context {
        CURRENT
            .try_with(|current| current.borrow().clone())
            .unwrap_or_default()
    }

    /// Only the current span's context: cheaper than [`Context::current`] when the
    /// baggage is not needed.
    pub fn current_span() -> Option<SpanContext> {
        CURRENT
            .try_with(|current| current.borrow().span.clone())
            .ok()
            .flatten()
    }

    /// A context whose span is `span` (a remote parent or a local span).
    pub fn from_span_context(span: SpanContext) -> Context {
        Context {
            span: Some(span),
            baggage: None,
        }
    }

    pub fn span_context(&self) -> Option<&SpanContext> {
        self.span.as_ref()
    }

    pub fn with_span_context(&self, span: SpanContext) -> Context {
        Context {
            span: Some(span),
            baggage: self.baggage.clone(),
        }
    }

    /// The same context without a span, keeping the baggage.
    pub fn without_span(&self) -> Context {
        Context {
            span: None,
            baggage: self.baggage.clone(),
        }
    }

    pub fn baggage(&self) -> Option<&Baggage> {
        self.baggage.as_deref()
    }

    /// The same context with `baggage` (an empty baggage removes it).
    pub fn with_baggage(&self, baggage: Baggage) -> Context {
        Context {
            span: self.span.clone(),
            baggage: (!baggage.is_empty()).then(|| Arc::new(baggage)),
        }
    }

    /// Makes the current context, with `span` as its span, current until the guard
    /// drops: [`Context::current`]`.with_span_context(span).attach()` in one step.
    pub(crate) fn enter_span(span: SpanContext) -> ContextGuard {
        let previous = CURRENT
            .try_with(|current| {
                let mut current = current.borrow_mut();
                let next = Context {
                    span: Some(span),
                    baggage: current.baggage.clone(),
                };
                std::mem::replace(&mut *current, next)
            })
            .ok();
        ContextGuard {
            previous,
            _not_send: PhantomData,
        }
    }

    /// Makes this context current on this thread until the guard drops. Guards must
    /// drop in the reverse order of their creation, which scoping gives for free.
    pub fn attach(self) -> ContextGuard {
        let previous = CURRENT
            .try_with(|current| std::mem::replace(&mut *current.borrow_mut(), self))
            .ok();
        ContextGuard {
            previous,
            _not_send: PhantomData,
        }
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("span", &self.span)
            .field("baggage", &self.baggage.as_deref().map(|b| b.to_string()))
            .finish()
    }
}

/// Restores the previous context when dropped. It stays on the thread that made it:
/// holding one across an `.await` would leave the context on a thread the task has
/// left, so it is neither `Send` nor `Sync`.
#[must_use = "the context is current only until the guard is dropped"]
pub struct ContextGuard {
    previous: Option<Context>,
    _not_send: PhantomData<*const ()>,
}

impl Drop for ContextGuard {
    fn drop(&mut self) {
        if let Some(previous) = self.previous.take() {
            let _ = CURRENT.try_with(|current| *current.borrow_mut() = previous);
        }
    }
}

/// Swaps `cx` into the current slot and back out when dropped, so a future's context
/// costs two swaps per poll and no clone.
struct Swap<'a> {
    cx: &'a mut Context,
}

impl<'a> Swap<'a> {
    fn new(cx: &'a mut Context) -> Swap<'a> {
        let _ = CURRENT.try_with(|current| std::mem::swap(&mut *current.borrow_mut(), cx));
        Swap { cx }
    }
}

impl Drop for Swap<'_> {
    fn drop(&mut self) {
        let _ = CURRENT.try_with(|current| std::mem::swap(&mut *current.borrow_mut(), self.cx));
    }
}

pin_project_lite::pin_project! {
    /// A future that runs with a context current during each poll.
    pub struct WithContext<F> {
        #[pin]
        inner: F,
        cx: Context,
    }
}

impl<F: Future> Future for WithContext<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, task: &mut std::task::Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _swap = Swap::new(this.cx);
        this.inner.poll(task)
    }
}

pin_project_lite::pin_project! {
    /// A future that runs inside a span and ends it when it completes (or is dropped).
    pub struct InSpan<F> {
        #[pin]
        inner: F,
        cx: Context,
        span: Option<Span>,
    }
}

impl<F: Future> Future for InSpan<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, task: &mut std::task::Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let output = {
            let _swap = Swap::new(this.cx);
            this.inner.poll(task)
        };
        if output.is_ready()
            && let Some(mut span) = this.span.take()
        {
            span.end();
        }
        output
    }
}

/// Context propagation for futures.
pub trait FutureExt: Future + Sized {
    /// Runs this future with `cx` current during every poll.
    fn with_context(self, cx: Context) -> WithContext<Self> {
        WithContext { inner: self, cx }
    }

    /// Runs this future with the context that is current now, wherever it is polled
    /// later; use it on futures handed to `tokio::spawn`.
    fn with_current_context(self) -> WithContext<Self> {
        self.with_context(Context::current())
    }

    /// Runs this future inside `span` (its children are children of `span`) and ends
    /// the span when the future completes.
    fn in_span(self, span: Span) -> InSpan<Self> {
        InSpan {
            inner: self,
            cx: span.context(),
            span: Some(span),
        }
    }
}

impl<F: Future> FutureExt for F {}
