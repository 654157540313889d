//! `/api/clew/lifecycle/…`: the registry's view of traces that are still running or
//! were abandoned, and a manual sweep.

use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use clew_registry::{ActiveCursor, TraceRecord, TraceState};

use crate::native::NativeError;
use crate::params::{Params, bad_param, parse_duration, parse_limit};
use crate::{AppState, Failure};

/// The lifecycle states a search can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StateFilter {
    /// Not yet COMPLETED or ERRORED.
    Active,
    InProgress,
    Completed,
    Errored,
    /// ERRORED by the watchdog because nothing finished it.
    Orphaned,
}

impl StateFilter {
    pub(crate) fn parse(name: &str, value: &str) -> Result<StateFilter, Failure> {
        Ok(match value.to_ascii_lowercase().as_str() {
            "active" => StateFilter::Active,
            "in_progress" | "in-progress" => StateFilter::InProgress,
            "completed" => StateFilter::Completed,
            "errored" => StateFilter::Errored,
            "orphaned" => StateFilter::Orphaned,
            _ => {
                return Err(bad_param(
                    name,
                    format!(
                        "unknown state {value:?}: use active, in_progress, completed, errored or orphaned"
                    ),
                ));
            }
        })
    }

    pub(crate) fn matches(self, record: Option<&TraceRecord>) -> bool {
        let Some(record) = record else { return false };
        match self {
            StateFilter::Active => !record.state.is_terminal(),
            StateFilter::InProgress => record.state == TraceState::InProgress,
            StateFilter::Completed => record.state == TraceState::Completed,
            StateFilter::Errored => record.state == TraceState::Errored,
            StateFilter::Orphaned => record.is_orphaned(),
        }
    }
}

fn registry_failure(error: clew_registry::RegistryError) -> NativeError {
    tracing::warn!(%error, "lifecycle registry request failed");
    Failure {
        status: axum::http::StatusCode::SERVICE_UNAVAILABLE,
        message: format!("lifecycle registry: {error}"),
    }
    .into()
}

pub(crate) async fn active(
    State(state): State<AppState>,
    params: Params,
) -> Result<impl IntoResponse, NativeError> {
    let registry = state.registry()?;
    let limit = parse_limit("limit", params.get("limit"), 100)?;
    let after = params
        .get("after")
        .map(|a| {
            a.parse::<ActiveCursor>()
                .map_err(|e| bad_param("after", e.to_string()))
        })
        .transpose()?;
    let page = registry
        .list_active(limit, after)
        .await
        .map_err(registry_failure)?;
    Ok(Json(page))
}

pub(crate) async fn orphans(
    State(state): State<AppState>,
    params: Params,
) -> Result<impl IntoResponse, NativeError> {
    let registry = state.registry()?;
    let limit = parse_limit("limit", params.get("limit"), 100)?;
    let traces = registry
        .list_orphans(limit)
        .await
        .map_err(registry_failure)?;
    Ok(Json(serde_json::json!({ "traces": traces })))
}

/// One sweep now, with the given threshold (default: the server's orphan threshold). It is safe
/// beside the watchdog: every step is atomic and idempotent.
pub(crate) async fn sweep(
    State(state): State<AppState>,
    params: Params,
) -> Result<impl IntoResponse, NativeError> {
    let registry = state.registry()?;
    let threshold = match params.get("threshold") {
        Some(value) => std::time::Duration::from_nanos(parse_duration("threshold", value)?),
        None => state.orphan_threshold,
    };
    let report = registry
        .sweep_once(registry.now_ms(), threshold, None)
        .await
        .map_err(registry_failure)?;
    for orphan in &report.orphaned {
        tracing::warn!(trace_id = %orphan.id, age_s = orphan.age.as_secs(), "trace_orphaned");
    }
    Ok(Json(report))
}
