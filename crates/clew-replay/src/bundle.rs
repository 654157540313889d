//! Investigation bundles: one self-contained JSON file per investigation of one trace.
//!
//! A bundle carries the workflow (fault triage or ETL), its parameters, the trace's
//! spans and signatures, the first fault, and a readiness report that lists what is
//! still missing before the investigation can be trusted (spans, a settled lifecycle
//! state, required spans, a fault to triage, delivered batches). Its signature binds
//! the workflow, the parameters and the trace signature, so a bundle opened elsewhere
//! is checked against the spans it carries.
//!
//! The lifecycle state comes from the caller (the CLI or server reads the registry);
//! this crate never talks to the registry itself.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use clew_model::{Span, TraceId};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::canon;
use crate::selector::Selector;
use crate::signature::SignatureOptions;
use crate::snapshot::FirstFault;
use crate::timeline::{Timeline, TimelineSummary};

pub const BUNDLE_FORMAT: &str = "clew-replay-bundle/1";

/// Parameter: selectors (separated by `;`) that must each match at least one span.
pub const PARAM_REQUIRE: &str = "require";
/// ETL parameter: the stage selectors (separated by `;`), replacing the default
/// extract / transform / load name matches.
pub const PARAM_STAGES: &str = "stages";
const DEFAULT_ETL_STAGES: &str =
    r#"span[name~="extract"];span[name~="transform"];span[name~="load"]"#;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Workflow {
    /// Fault triage: where did it first go wrong, and why.
    Fault,
    /// ETL investigation: did every stage run and every batch arrive.
    Etl,
}

impl Workflow {
    pub fn as_str(self) -> &'static str {
        match self {
            Workflow::Fault => "fault",
            Workflow::Etl => "etl",
        }
    }
}

impl fmt::Display for Workflow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Workflow {
    type Err = BundleError;
    fn from_str(s: &str) -> Result<Workflow, BundleError> {
        match s.to_ascii_lowercase().as_str() {
            "fault" | "fault-triage" => Ok(Workflow::Fault),
            "etl" => Ok(Workflow::Etl),
            _ => Err(BundleError::UnknownWorkflow(s.to_string())),
        }
    }
}

/// The trace's state in the lifecycle registry, as the caller found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Completeness {
    /// Finished: no more spans will come.
    Complete,
    /// Still running: spans may still arrive.
    Active,
    /// Marked errored (for example abandoned by a crashed worker): no more spans will
    /// come, and that is itself a finding.
    Errored,
    /// The registry has no record, or was not asked.
    #[default]
    Unknown,
}

/// One readiness check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Readiness {
    pub ready: bool,
    pub checks: Vec<Check>,
}

impl Readiness {
    /// The failed checks, as "name: detail" lines.
    pub fn missing(&self) -> Vec<String> {
        self.checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleRequest {
    pub workflow: Workflow,
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    #[serde(default)]
    pub completeness: Completeness,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bundle {
    pub format: String,
    pub workflow: Workflow,
    pub params: BTreeMap<String, String>,
    pub completeness: Completeness,
    pub trace_id: Option<TraceId>,
    pub trace_signature: String,
    pub timeline_signature: String,
    pub summary: TimelineSummary,
    pub readiness: Readiness,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_fault: Option<FirstFault>,
    pub spans: Vec<Span>,
    /// SHA-256 of the canonical `{"format","params","trace_signature","workflow"}`.
    pub signature: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("unknown workflow {0:?}; expected fault or etl")]
    UnknownWorkflow(String),
    #[error("parameter {param}: selector {selector:?} does not parse:\n{reason}")]
    Selector {
        param: String,
        selector: String,
        reason: String,
    },
    #[error("not a bundle: {0}")]
    Parse(String),
    #[error(
        "bundle format {0:?} is not {BUNDLE_FORMAT:?}; export it again with this version of clew"
    )]
    Format(String),
    #[error("bundle has been altered: {0}")]
    Tampered(String),
}

/// The signature binding a workflow, its parameters and a trace signature.
pub fn bundle_signature(
    workflow: Workflow,
    params: &BTreeMap<String, String>,
    trace_signature: &str,
) -> String {
    let doc = json!({
        "format": BUNDLE_FORMAT,
        "workflow": workflow.as_str(),
        "params": params,
        "trace_signature": trace_signature,
    });
    canon::hex(&canon::sha256(&[canon::canonical_string(&doc).as_bytes()]))
}

fn selectors(
    params: &BTreeMap<String, String>,
    param: &str,
    default: &str,
) -> Result<Vec<Selector>, BundleError> {
    let text = params.get(param).map_or(default, String::as_str);
    text.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            Selector::parse(s).map_err(|e| BundleError::Selector {
                param: param.to_string(),
                selector: s.to_string(),
                reason: e.render(s),
            })
        })
        .collect()
}

fn readiness(
    timeline: &Timeline,
    request: &BundleRequest,
    first_fault: Option<&FirstFault>,
) -> Result<Readiness, BundleError> {
    let mut checks = Vec::new();
    let mut check = |name: &str, ok: bool, detail: String| {
        checks.push(Check {
            name: name.to_string(),
            ok,
            detail,
        })
    };
    check(
        "spans",
        !timeline.is_empty(),
        format!("{} span(s)", timeline.spans().len()),
    );
    let (settled, detail) = match request.completeness {
        Completeness::Complete => (true, "the registry reports the trace complete".to_string()),
        Completeness::Errored => (
            true,
            "the registry marked the trace errored; no more spans will come".to_string(),
        ),
        Completeness::Active => (
            false,
            "the trace is still active; spans may still arrive".to_string(),
        ),
        Completeness::Unknown => (
            false,
            "the lifecycle registry has no record of the trace".to_string(),
        ),
    };
    check("complete", settled, detail);
    let orphans = timeline.tree().orphan_count();
    check(
        "no_missing_parents",
        orphans == 0,
        if orphans == 0 {
            "every parent is present".into()
        } else {
            let missing: Vec<String> = timeline
                .tree()
                .missing_span_ids()
                .iter()
                .map(ToString::to_string)
                .collect();
            format!(
                "{orphans} span(s) wait for missing parent(s) {}",
                missing.join(", ")
            )
        },
    );
    match request.workflow {
        Workflow::Fault => check(
            "fault_found",
            first_fault.is_some(),
            first_fault.map_or_else(
                || "no error status, exception or abnormal exit in the trace".to_string(),
                |f| format!("index {}: {}", f.fault.event.index, f.fault.event.label),
            ),
        ),
        Workflow::Etl => {
            for (selector, stage) in selectors(&request.params, PARAM_STAGES, DEFAULT_ETL_STAGES)?
                .iter()
                .zip(1..)
            {
                let n = timeline.select(selector).len();
                check(
                    &format!("stage_{stage}"),
                    n > 0,
                    format!("{selector} matched {n} span(s)"),
                );
            }
            let in_flight = timeline.latest().map(|s| s.in_flight).unwrap_or_default();
            check(
                "batches_delivered",
                in_flight.is_empty(),
                if in_flight.is_empty() {
                    "every message sent was received".to_string()
                } else {
                    let lost: Vec<String> = in_flight
                        .iter()
                        .map(|m| format!("{}/{}", m.span.service, m.span.name))
                        .collect();
                    format!("never received: {}", lost.join(", "))
                },
            );
        }
    }
    for selector in selectors(&request.params, PARAM_REQUIRE, "")? {
        let n = timeline.select(&selector).len();
        check(
            &format!("required {selector}"),
            n > 0,
            format!("matched {n} span(s)"),
        );
    }
    let ready = checks.iter().all(|c| c.ok);
    Ok(Readiness { ready, checks })
}

/// Builds a bundle for one trace's spans.
pub fn build_bundle(spans: Vec<Span>, request: &BundleRequest) -> Result<Bundle, BundleError> {
    let timeline = Timeline::build_with(spans.clone(), &SignatureOptions::default());
    let first_fault = timeline.first_fault();
    let readiness = readiness(&timeline, request, first_fault.as_ref())?;
    let trace_signature = timeline.trace_signature();
    Ok(Bundle {
        format: BUNDLE_FORMAT.to_string(),
        workflow: request.workflow,
        params: request.params.clone(),
        completeness: request.completeness,
        trace_id: timeline.trace_id(),
        signature: bundle_signature(request.workflow, &request.params, &trace_signature),
        trace_signature,
        timeline_signature: timeline.timeline_signature(),
        summary: timeline.summary(),
        readiness,
        first_fault,
        spans,
    })
}

impl Bundle {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Reads an exported bundle and checks that its spans, trace signature and
    /// bundle signature still agree.
    pub fn from_json(text: &str) -> Result<Bundle, BundleError> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| BundleError::Parse(e.to_string()))?;
        let format = value.get("format").and_then(|f| f.as_str()).unwrap_or("");
        if format != BUNDLE_FORMAT {
            return Err(BundleError::Format(format.to_string()));
        }
        let bundle: Bundle =
            serde_json::from_value(value).map_err(|e| BundleError::Parse(e.to_string()))?;
        let recomputed = crate::signature::trace_signature(&bundle.spans);
        if recomputed != bundle.trace_signature {
            return Err(BundleError::Tampered(format!(
                "its spans have signature {recomputed}, the bundle says {}",
                bundle.trace_signature
            )));
        }
        let signature = bundle_signature(bundle.workflow, &bundle.params, &bundle.trace_signature);
        if signature != bundle.signature {
            return Err(BundleError::Tampered(format!(
                "workflow and parameters sign as {signature}, the bundle says {}",
                bundle.signature
            )));
        }
        Ok(bundle)
    }

    /// The timeline of the bundled spans, to replay them.
    pub fn timeline(&self) -> Timeline {
        Timeline::build(self.spans.clone())
    }
}
