//! The HTTP query API: how the web UI, Grafana and the `clew` CLI read stored traces.
//!
//! Owns three sets of `/api/…` routes over one [`SpanStore`], served on the UI's port
//! (16686):
//!
//! - **Jaeger v1** (`/api/services`, `/api/operations`, `/api/traces`, `/api/traces/{id}`,
//!   `/api/dependencies`), in exactly the JSON shapes Jaeger's UI and Grafana's Jaeger
//!   data source expect, with the tags Jaeger derives from OpenTelemetry spans
//!   (`span.kind`, `otel.status_code`, `error`, …).
//! - **Jaeger v3** (`/api/v3/…`): traces as OTLP JSON, trace summaries, services and
//!   operations.
//! - **clew's native API** (`/api/clew/…`), which the CLI uses; see [`native`] for its
//!   endpoints and JSON.
//!
//! Bad parameters get a 400 whose message names the parameter, an unknown trace a 404,
//! and a failing store a 500, each in the error shape of the API that was called.
//!
//! It imports the model, the store contract and the OTLP encoder, and must never import
//! the ingest, server or CLI crates: they sit above it (the server mounts this router).

use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use clew_registry::Registry;
use clew_store::SpanStore;

mod lifecycle;
pub mod native;
mod params;
mod replay;
mod search;
mod v1;
mod v1_model;
mod v3;

/// Builds the query API. Use [`QueryApi::router`] to get the routes; options may be
/// added here without changing callers.
pub struct QueryApi {
    store: Arc<dyn SpanStore>,
    lifecycle: Option<Arc<dyn Registry>>,
    orphan_threshold: std::time::Duration,
}

impl QueryApi {
    pub fn new(store: Arc<dyn SpanStore>) -> QueryApi {
        QueryApi {
            store,
            lifecycle: None,
            orphan_threshold: clew_registry::WatchdogConfig::default().orphan_threshold,
        }
    }

    /// Shows each trace's lifecycle state from `registry` and serves
    /// `/api/clew/lifecycle/…`; a manual sweep uses `orphan_threshold` unless told otherwise.
    pub fn with_lifecycle(
        mut self,
        registry: Arc<dyn Registry>,
        orphan_threshold: std::time::Duration,
    ) -> QueryApi {
        self.lifecycle = Some(registry);
        self.orphan_threshold = orphan_threshold;
        self
    }

    /// Every `/api/…` route. It has no fallback, so it merges with the UI's router.
    pub fn router(self) -> Router {
        let state = AppState {
            store: self.store,
            lifecycle: self.lifecycle,
            orphan_threshold: self.orphan_threshold,
        };
        Router::new()
            .route("/api/services", get(v1::services))
            .route(
                "/api/services/{service}/operations",
                get(v1::service_operations),
            )
            .route("/api/operations", get(v1::operations))
            .route("/api/traces", get(v1::find_traces))
            .route("/api/traces/{trace_id}", get(v1::get_trace))
            .route("/api/dependencies", get(v1::dependencies))
            .route("/api/v3/traces", get(v3::find_traces))
            .route("/api/v3/traces/{trace_id}", get(v3::get_trace))
            .route("/api/v3/trace-summaries", get(v3::trace_summaries))
            .route("/api/v3/services", get(v3::services))
            .route("/api/v3/operations", get(v3::operations))
            .route("/api/clew/traces/{trace_id}", get(native::get_trace))
            .route("/api/clew/search", get(native::search))
            .route("/api/clew/services", get(native::services))
            .route("/api/clew/dependencies", get(native::dependencies))
            .route("/api/clew/replay/diff", get(replay::diff))
            .route("/api/clew/replay/{trace_id}", get(replay::timeline))
            .route(
                "/api/clew/replay/{trace_id}/timeline",
                get(replay::timeline),
            )
            .route(
                "/api/clew/replay/{trace_id}/snapshot",
                get(replay::snapshot),
            )
            .route(
                "/api/clew/replay/{trace_id}/signature",
                get(replay::signature),
            )
            .route("/api/clew/replay/{trace_id}/select", get(replay::select))
            .route("/api/clew/replay/{trace_id}/bundle", get(replay::bundle))
            .route("/api/clew/lifecycle/active", get(lifecycle::active))
            .route("/api/clew/lifecycle/orphans", get(lifecycle::orphans))
            .route(
                "/api/clew/lifecycle/sweep",
                axum::routing::post(lifecycle::sweep),
            )
            // Without this, a mistyped API path would reach the UI's fallback and answer
            // 200 with an HTML page, which a script would then fail to parse.
            .route("/api/{*rest}", get(native::no_such_endpoint))
            .with_state(state)
    }
}

/// The query API over `store`: `QueryApi::new(store).router()`.
pub fn router(store: Arc<dyn SpanStore>) -> Router {
    QueryApi::new(store).router()
}

#[derive(Clone)]
pub(crate) struct AppState {
    store: Arc<dyn SpanStore>,
    lifecycle: Option<Arc<dyn Registry>>,
    orphan_threshold: std::time::Duration,
}

impl AppState {
    /// The lifecycle registry, or a 404 explaining that this server runs without one.
    pub(crate) fn registry(&self) -> Result<&Arc<dyn Registry>, Failure> {
        self.lifecycle
            .as_ref()
            .ok_or_else(|| Failure::not_found("this server keeps no trace lifecycle registry"))
    }

    /// A trace's lifecycle entry; `None` without a registry or when it is unknown. A
    /// registry that fails is logged and treated as unknown: reading traces must not
    /// depend on it.
    pub(crate) async fn lifecycle_of(
        &self,
        id: clew_model::TraceId,
    ) -> Option<clew_registry::TraceRecord> {
        let registry = self.lifecycle.as_ref()?;
        match registry.get(id).await {
            Ok(record) => record,
            Err(error) => {
                tracing::warn!(%error, trace_id = %id, "lifecycle registry unavailable");
                None
            }
        }
    }

    /// Runs store work on a blocking thread: the store's methods block on disk I/O.
    pub(crate) async fn run<T, F>(&self, work: F) -> Result<T, Failure>
    where
        T: Send + 'static,
        F: FnOnce(&dyn SpanStore) -> clew_store::Result<T> + Send + 'static,
    {
        let store = Arc::clone(&self.store);
        match tokio::task::spawn_blocking(move || work(store.as_ref())).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => {
                tracing::error!(%error, "query API: store request failed");
                Err(Failure::internal(format!("store error: {error}")))
            }
            Err(join_error) => {
                tracing::error!(error = %join_error, "query API: store task did not finish");
                Err(Failure::internal(
                    "store request did not finish".to_string(),
                ))
            }
        }
    }
}

/// Why a request failed, before it is dressed in the error shape of the API called.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn bad_request(message: impl Into<String>) -> Failure {
        Failure {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Failure {
        Failure {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }

    pub(crate) fn internal(message: String) -> Failure {
        Failure {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message,
        }
    }
}
